"""`make loadtest-image`: builds image/loadtest (AIPerf and Qwen2-VL's tokenizer) into the stack's
registry with the stack's own builder (`image.builder`: ACR Tasks, or this machine's Docker
engine) and prints its digest reference, which `make loadtest-job LOADTEST_IMAGE=...` deploys.

usage: python -m tools.loadtest_image --config Pulumi.<stack>.yaml --registry <login server> [--dry-run]

The tag is a hash of what goes into the image (image/loadtest/ and requirements-aiperf.lock.txt),
so an unchanged image is found, not rebuilt: `az acr repository show` answers at once.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from pathlib import Path

from core.loading import load_stack

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "image/loadtest/Dockerfile"
# What the build copies from the repository root (the root .dockerignore admits only these).
INPUTS = ("image/loadtest", "requirements-aiperf.lock.txt")
REPOSITORY = "llamacpp-loadtest"
DIGEST_REF = re.compile(r"^[a-z0-9.-]+(?::[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$")


def content_tag(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    for name in INPUTS:
        path = root / name
        for file in sorted([path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())):
            digest.update(file.relative_to(root).as_posix().encode())
            digest.update(file.read_bytes())
    return f"aiperf-{digest.hexdigest()[:12]}"


def commands(builder: str, login_server: str, tag: str) -> list[list[str]]:
    """The commands that build and push the image; the last one prints its digest."""
    registry = login_server.split(".", 1)[0]
    image = f"{REPOSITORY}:{tag}"
    build = ["--platform", "linux/amd64", "--file", DOCKERFILE]
    if builder == "acr":
        return [
            ["az", "acr", "build", "--registry", registry, "--image", image, *build, "."],
            ["az", "acr", "repository", "show", "--name", registry, "--image", image, "--query", "digest", "-o", "tsv"],
        ]
    ref = f"{login_server}/{image}"
    return [
        ["az", "acr", "login", "--name", registry],
        ["docker", "build", *build, "--tag", ref, "."],
        ["docker", "push", ref],
        ["docker", "image", "inspect", "--format", "{{index .RepoDigests 0}}", ref],
    ]


def digest_ref(login_server: str, printed: str) -> str:
    """`<login server>/<repository>@sha256:...` from the last command's output, or a clear error."""
    text = printed.strip()
    ref = text if "@" in text else f"{login_server}/{REPOSITORY}@{text}"
    if not DIGEST_REF.fullmatch(ref):
        raise SystemExit(
            f"the build printed {text!r} instead of an image digest; run the commands of --dry-run by hand"
        )
    return ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the stack's Pulumi.<stack>.yaml")
    parser.add_argument(
        "--registry", required=True, help="the registry's login server (pulumi stack output registryLoginServer)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    args = parser.parse_args(argv)
    steps = commands(load_stack(args.config).image.builder, args.registry, content_tag())
    if args.dry_run:
        print("\n".join(" ".join(step) for step in steps))
        return 0
    *build, last = steps
    if build[0][:3] == ["az", "acr", "build"]:
        found = subprocess.run(last, cwd=ROOT, capture_output=True, text=True, check=False)
        if found.returncode == 0 and found.stdout.strip():
            print(digest_ref(args.registry, found.stdout))  # this content is already in the registry
            return 0
    for step in build:
        subprocess.run(step, cwd=ROOT, stdout=sys.stderr, check=True)
    printed = subprocess.run(last, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    print(digest_ref(args.registry, printed))
    return 0


if __name__ == "__main__":
    sys.exit(main())

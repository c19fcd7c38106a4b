"""`make runner-image`: builds image/runner/ (prod's GitHub Actions runner) with ACR Tasks into the
registry bootstrap makes for it (its output prodRunnerRegistry) and prints the `prodRunner.image`
to set in bootstrap's config, by digest.

usage: python -m bootstrap.runner_image --registry <login server> [--stack <bootstrap stack>] [--dry-run]

The tag is a hash of image/runner/, so an unchanged image is found, not rebuilt. `az acr build`
uploads the folder, builds it in the registry and streams the log (sent to stderr here); `az acr
repository show` reads the tag's digest (learn.microsoft.com/cli/azure/acr#az-acr-build), as
core/image.py does for the server's image.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from pathlib import Path

from pydantic import ValidationError

from bootstrap.plan import ProdRunner

ROOT = Path(__file__).resolve().parent.parent
CONTEXT = "image/runner"
REPOSITORY = "gh-runner"
LOGIN_SERVER = re.compile(r"^[a-z0-9]{5,50}\.azurecr\.io$")


def content_tag(root: Path = ROOT) -> str:
    digest = hashlib.sha256()
    folder = root / CONTEXT
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(file.relative_to(folder).as_posix().encode())
        digest.update(file.read_bytes())
    return f"runner-{digest.hexdigest()[:12]}"


def commands(login_server: str, tag: str) -> list[list[str]]:
    """The build, then the command that prints the tag's digest."""
    registry = login_server.split(".", 1)[0]
    image = f"{REPOSITORY}:{tag}"
    build = ["az", "acr", "build", "--registry", registry, "--image", image, "--platform", "linux/amd64"]
    return [
        [*build, "--file", f"{CONTEXT}/Dockerfile", CONTEXT],
        ["az", "acr", "repository", "show", "--name", registry, "--image", image, "--query", "digest", "-o", "tsv"],
    ]


def image_ref(login_server: str, printed: str) -> str:
    """`<login server>/gh-runner@sha256:...`, checked by the same rule as prodRunner.image."""
    ref = f"{login_server}/{REPOSITORY}@{printed.strip()}"
    try:
        ProdRunner(image=ref)
    except ValidationError:
        raise SystemExit(
            f"the build printed {printed.strip()!r} instead of an image digest; run the commands of --dry-run by hand."
        ) from None
    return ref


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--registry", required=True, help="bootstrap's output prodRunnerRegistry (a login server)")
    parser.add_argument("--stack", default="ci", help="the bootstrap stack, for the command printed at the end")
    parser.add_argument("--dry-run", action="store_true", help="print the commands instead of running them")
    args = parser.parse_args(argv)
    if not LOGIN_SERVER.fullmatch(args.registry):
        raise SystemExit(
            f"--registry={args.registry!r} is not a registry's login server (<name>.azurecr.io); set prodRunner in "
            "bootstrap's config, run make bootstrap, and make runner-image reads its output prodRunnerRegistry."
        )
    build, show = commands(args.registry, content_tag())
    if args.dry_run:
        print("\n".join(" ".join(step) for step in (build, show)))
        return 0
    found = subprocess.run(show, cwd=ROOT, capture_output=True, text=True, check=False)
    if found.returncode != 0 or not found.stdout.strip():  # this content is not in the registry yet
        if subprocess.run(build, cwd=ROOT, stdout=sys.stderr, check=False).returncode != 0:
            raise SystemExit(
                "az acr build failed (its log is above); fix what it names and run make runner-image again."
            )
        found = subprocess.run(show, cwd=ROOT, capture_output=True, text=True, check=False)
    ref = image_ref(args.registry, found.stdout)
    print(f"prodRunner.image: {ref}")
    print(
        f"set it with: cd bootstrap && pulumi config set --path prodRunner.image {ref} --stack {args.stack}; "
        "then run make bootstrap",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

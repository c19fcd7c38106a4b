"""The deploy workflow's image job: builds image/ into a stack's registry with ACR Tasks before that
stack's `pulumi up` starts, so the up finds the image's content tag and only reads its digest.

usage: python -m tools.image_job --config Pulumi.<stack>.yaml

It runs the script of the program's own build step (core/image.py, acr_build_script), with the
same content tag, so the job and `pulumi up` can never build two different images, and a tag the
job built is what the up deploys. It needs pydantic and PyYAML only (the job installs exactly
REQUIREMENTS from requirements.lock.txt with tools/lock_subset.py) and the Azure CLI, signed in
as the stack's deploy identity. What it did goes to stdout and, in CI, to the job's summary:
- `image.prebuilt`: nothing to build;
- `image.builder: local`: nothing here; `pulumi up` builds with the deployer's Docker engine;
- no registry in the stack's resource group yet (the stack's first deploy): nothing here;
  `pulumi up` creates the registry, then builds;
- otherwise the digest of the content tag, built now if the registry did not hold it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from core import labels
from core.config import Image
from core.image import acr_build_script, content_tag, digest_ref
from core.loading import ConfigError, read_stack

ROOT = Path(__file__).resolve().parent.parent
# What `import tools.image_job` needs besides the standard library: the job installs these from
# requirements.lock.txt and nothing else (tests hold both).
REQUIREMENTS = ("pydantic", "pydantic-core", "annotated-types", "typing-extensions", "typing-inspection", "pyyaml")


def az(*args: str) -> str:
    """Runs the Azure CLI and returns its output; a failure stops the job with the command and why."""
    result = subprocess.run(["az", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(
            f"`az {' '.join(args)}` failed ({reason}); the job must be signed in as the stack's deploy "
            "identity (azure/login, or `az login` by hand)."
        )
    return result.stdout.strip()


def registry(stack: str) -> str | None:
    """The login server of the stack's registry; None before the stack's first deploy made it."""
    group = labels.name(stack, "rg")
    if az("group", "exists", "--name", group, "--output", "tsv") != "true":
        return None
    servers = az("acr", "list", "--resource-group", group, "--query", "[].loginServer", "--output", "tsv").split()
    if len(servers) > 1:
        raise SystemExit(
            f"{group} holds {len(servers)} registries ({', '.join(servers)}); the stack makes one. "
            "Remove the others, or build by hand with the script of core/image.py."
        )
    return servers[0] if servers else None


def build(image: Image, login_server: str, tag: str) -> str:
    """Runs the program's ACR build script: builds `tag` (repository:content tag) unless the
    registry holds it, and returns its digest reference. The build's log streams to stderr."""
    env = {**os.environ, "LOGIN_SERVER": login_server, "IMAGE": tag}
    result = subprocess.run(
        ["/bin/sh", "-c", acr_build_script(image)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(
            f"the ACR build of {env['IMAGE']} failed (exit {result.returncode}; its log is above); "
            "fix image/ or its build args and push again: nothing was deployed."
        )
    return digest_ref(login_server, image.repository, result.stdout)


def run(config: Path) -> str:
    """What the job did, in one line."""
    stack, c = read_stack(config)
    image = c.image
    if image.prebuilt:
        return f"{stack}: image.prebuilt is set ({image.prebuilt}); nothing to build."
    if image.builder != "acr":
        return f"{stack}: image.builder is {image.builder}; `pulumi up` builds the image with the deployer's Docker engine."
    login_server = registry(stack)
    tag = f"{image.repository}:{content_tag(image)}"
    if login_server is None:
        return (
            f"{stack}: no registry in {labels.name(stack, 'rg')} yet (the stack's first deploy); "
            f"`pulumi up` creates it, then builds {tag}."
        )
    return f"{stack}: {tag} is {build(image, login_server, tag)}; `pulumi up` deploys it without building."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the stack's Pulumi.<stack>.yaml")
    args = parser.parse_args(argv)
    try:
        line = run(args.config)
    except ConfigError as err:
        print("\n".join(err.problems), file=sys.stderr)
        return 1
    print(line)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(f"### Image\n\n{line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

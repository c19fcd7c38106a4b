"""The llama-server image as content: the build args from the stack's `image` config, the content
tag that names what image/ and those args make, and the ACR Tasks script that builds it. Pure (no
Pulumi): the program's LlamaCppImage and the deploy workflow's image job (tools/image_job.py)
build the same tag with the same script."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from pathlib import Path

from core.catalog import CUDA_BASE_DIGESTS
from core.config import Image

IMAGE_DIR = Path(__file__).resolve().parent.parent / "image"
# Folders of image/ that hold other images, each built on its own: not in the server's content tag.
OTHER_IMAGES = ("loadtest", "runner")
# The ACR Tasks run's limit (`az acr build --timeout`, seconds): the CUDA compile alone took 54 min
# on 2 cores here (docs/measurements.md, "Build, test and render times"), and a Tasks agent has 2 vCPUs by default.
ACR_BUILD_TIMEOUT_SECONDS = 7200
# The build context, relative to the project root (where Pulumi runs the command): a machine path
# would differ between checkouts and show as a diff.
ACR_CONTEXT = "image"


# The Dockerfile of each way llama-server gets into the image (image.llamaServerFrom).
DOCKERFILES = {"source": "Dockerfile", "release": "Dockerfile.release"}
# Upstream's release binaries: one tarball per release and CUDA line, built by llama.cpp's release
# workflow (.github/workflows/release.yml) and published on the release's GitHub page.
RELEASE_DOWNLOAD_BASE = "https://github.com/ggml-org/llama.cpp/releases/download"


def release_asset(release: str, cuda_version: str) -> str:
    """`llama-b11434-bin-ubuntu-cuda-12.8-x64.tar.gz`: the asset name carries the CUDA major.minor."""
    major_minor = ".".join(cuda_version.split(".")[:2])
    return f"llama-{release}-bin-ubuntu-cuda-{major_minor}-x64.tar.gz"


def dockerfile(image: Image) -> str:
    return DOCKERFILES[image.llama_server_from]


def build_args(image: Image) -> dict[str, str]:
    devel, runtime = CUDA_BASE_DIGESTS[image.cuda_version]  # a rule refuses a version without digests
    if image.llama_server_from == "release":
        return {
            "LLAMA_CPP_RELEASE": image.llama_cpp_release,
            "LLAMA_CPP_RELEASE_ASSET": release_asset(image.llama_cpp_release, image.cuda_version),
            "LLAMA_CPP_RELEASE_SHA256": image.llama_cpp_release_sha256,
            "CUDA_VERSION": image.cuda_version,
            "CUDA_RUNTIME_DIGEST": runtime,
        }
    return {
        "LLAMA_CPP_RELEASE": image.llama_cpp_release,
        "LLAMA_CPP_SOURCE_SHA256": image.llama_cpp_source_sha256,
        "CUDA_VERSION": image.cuda_version,
        "CUDA_DEVEL_DIGEST": devel,
        "CUDA_RUNTIME_DIGEST": runtime,
        "CUDA_ARCHITECTURES": image.cuda_architectures,
    }


def content_tag(image: Image, directory: Path = IMAGE_DIR) -> str:
    """`<release>-<hash>`: the hash covers every file of image/ and the build args, so an unchanged
    image keeps its tag and shows no diff in preview, and any change gets a new tag."""
    digest = hashlib.sha256(json.dumps(build_args(image), sort_keys=True).encode())
    # image/loadtest/ and image/runner/ are other images (make loadtest-image, make runner-image):
    # a change there rebuilds nothing here.
    files = (p for p in directory.rglob("*") if p.is_file() and p.relative_to(directory).parts[0] not in OTHER_IMAGES)
    for path in sorted(files):
        digest.update(path.relative_to(directory).as_posix().encode())
        digest.update(path.read_bytes())
    return f"{image.llama_cpp_release}-{digest.hexdigest()[:12]}"


def acr_build_script(image: Image) -> str:
    """The shell script that builds image/ with ACR Tasks, unless its content tag is already in the
    registry, and prints only the pushed digest.

    `az acr build` uploads the context, runs the build in the registry and streams its log (sent to
    stderr here); `az acr repository show` reads the digest of the tag
    (learn.microsoft.com/cli/azure/acr#az-acr-build). A tag that is already there is not built
    again: the tag is a hash of image/ and the build args, and pulumi-command does not save a
    command that failed, so a run that failed after its hour-long build (an expired login, a
    cancelled job) would otherwise build it all again. $LOGIN_SERVER and $IMAGE come from the
    command's environment."""
    build_arg_flags = " ".join(f"--build-arg {shlex.quote(f'{k}={v}')}" for k, v in build_args(image).items())
    show = 'az acr repository show --name "$registry" --image "$IMAGE" --query digest --output tsv'
    return "\n".join(
        [
            "set -eu",
            'registry="${LOGIN_SERVER%%.*}"',
            f'if ! digest=$({show} 2>/dev/null) || [ -z "$digest" ]; then',
            '  az acr build --registry "$registry" --image "$IMAGE" --platform linux/amd64'
            f" --timeout {ACR_BUILD_TIMEOUT_SECONDS} --file {ACR_CONTEXT}/{dockerfile(image)}"
            f" {build_arg_flags} {ACR_CONTEXT} >&2",
            f"  digest=$({show})",
            "fi",
            'echo "$digest"',
        ]
    )


def digest_ref(login_server: str, repository: str, stdout: str) -> str:
    """`<login server>/<repository>@sha256:...` from the build script's output, or a clear error."""
    digest = stdout.strip()
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError(
            f"the ACR build printed {digest!r} instead of an image digest; run the build script of "
            "core/image.py (acr_build_script) by hand to see why."
        )
    return f"{login_server}/{repository}@{digest}"

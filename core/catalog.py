"""Facts from the world that the stack must respect, each table with its source.

Nothing here is configuration: these are the properties of Azure VM sizes, GPU drivers,
llama.cpp and the Qwen2-VL architecture that config values are checked against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GB = 1_000_000_000
GIB = 1024**3
MIB = 1024**2


@dataclass(frozen=True)
class GpuVmSize:
    name: str
    vcpus: int
    memory_gib: int
    gpus: int  # what the device plugin advertises as nvidia.com/gpu on one node
    gpu_memory_gb: float  # frame buffer one pod sees (per GPU)
    gpu_family: str
    ephemeral_os_disk: bool  # has a local temp disk large enough for an ephemeral OS disk


# NVadsA10 v5 series, learn.microsoft.com/azure/virtual-machines/sizes/gpu-accelerated/nvadsa10v5-series.
# Partial sizes get a slice of one A10 (NVIDIA vGPU profile), seen by the pod as one GPU.
GPU_VM_SIZES: dict[str, GpuVmSize] = {
    s.name: s
    for s in (
        GpuVmSize("Standard_NV6ads_A10_v5", 6, 55, 1, 4, "A10", True),
        GpuVmSize("Standard_NV12ads_A10_v5", 12, 110, 1, 8, "A10", True),
        GpuVmSize("Standard_NV18ads_A10_v5", 18, 220, 1, 12, "A10", True),
        GpuVmSize("Standard_NV36ads_A10_v5", 36, 440, 1, 24, "A10", True),
        GpuVmSize("Standard_NV36adms_A10_v5", 36, 880, 1, 24, "A10", True),
        GpuVmSize("Standard_NV72ads_A10_v5", 72, 880, 2, 24, "A10", True),
    )
}

# Share of a node's CPU and memory that Kubernetes can give to pods; AKS reserves the rest for
# kubelet, the OS and eviction thresholds (learn.microsoft.com/azure/aks/node-resource-reservations).
NODE_ALLOCATABLE_FRACTION = 0.9

# Highest CUDA runtime that the driver AKS installs on each GPU family supports.
# A10 sizes get NVIDIA's GRID R570 driver (570.211.01 as of 2026-05): CUDA 12.8, no forward
# compatibility on GRID. Other sizes get the R580 LTS datacenter driver: CUDA 13.0.
# Source: AKS GPU guide, learn.microsoft.com/azure/aks/gpu-cluster; NVIDIA CUDA release notes table 3.
DRIVER_CUDA_LIMIT: dict[str, tuple[int, int]] = {"A10": (12, 8)}
DEFAULT_DRIVER_CUDA_LIMIT = (13, 0)

# Kubernetes minor versions in AKS support (learn.microsoft.com/azure/aks/supported-kubernetes-versions, 2026-11).
AKS_KUBERNETES_VERSIONS = ("1.35", "1.36", "1.37")

# Bytes per element of llama.cpp KV cache types (ggml type sizes: q8_0 34 B / 32, q4_0 18 B / 32).
KV_CACHE_TYPE_BYTES: dict[str, float] = {"f16": 2.0, "bf16": 2.0, "q8_0": 1.0625, "q4_0": 0.5625}

# Elements per quantization block of each KV cache type: a quantized K or V row must hold whole
# blocks, so the head size must be a multiple of it (ggml/src/ggml.c:693-697 and 737-740 of b11434,
# QK4_0 = QK8_0 = 32 in ggml/src/ggml-common.h:194 and 251; f16 and bf16 are not blocked).
KV_CACHE_BLOCK_SIZE: dict[str, int] = {"f16": 1, "bf16": 1, "q8_0": 32, "q4_0": 32}

# llama.cpp pads each slot's context to a multiple of this (GGML_PAD(n_ctx_seq, 256) in llama-context.cpp).
LLAMA_CTX_PAD = 256

# Fixed GPU memory the CUDA context and cuBLAS workspace take before any buffer (observed 250-300 MiB).
CUDA_CONTEXT_BYTES = 256 * MIB

# Qwen2-VL vision: 14 px patches merged 2x2, so one token per 28x28 pixels, and two marker
# tokens (<|vision_start|>, <|vision_end|>) around each image (tools/mtmd in llama.cpp).
QWEN2VL_PIXELS_PER_TOKEN_SIDE = 28
QWEN2VL_IMAGE_MARKER_TOKENS = 2
QWEN2VL_IMAGE_MIN_TOKENS = 8  # llama-server's default --image-min-tokens for Qwen2-VL


@dataclass(frozen=True)
class VisionArithmetic:
    """How a model family turns an image into prompt tokens: one token per square of this many
    pixels a side, marker tokens around each image, and the fewest tokens an image gets."""

    pixels_per_token_side: int
    marker_tokens: int
    min_tokens: int


QWEN2VL_VISION = VisionArithmetic(QWEN2VL_PIXELS_PER_TOKEN_SIDE, QWEN2VL_IMAGE_MARKER_TOKENS, QWEN2VL_IMAGE_MIN_TOKENS)
# Model families, by a text GGUF's `general.architecture`, whose image arithmetic the sizing
# knows. Another family (gemma3, llama4, qwen3vl...) tiles or merges images differently: it is
# refused, not sized with Qwen2-VL's numbers, until its arithmetic is added here with a source.
VISION_FAMILIES: dict[str, VisionArithmetic] = {"qwen2vl": QWEN2VL_VISION}


# The CUDA base images of image/Dockerfile, pinned by the digest of their multi-arch index
# (`nvidia/cuda:<version>-devel-ubuntu24.04`, `...-runtime-ubuntu24.04`); the build checks them.
# 12.8.1, as published on Docker Hub (index digests; linux/amd64 manifests 4b9ed5fa... and
# 828c4d87...), 2026-11. Another CUDA version needs its two digests here.
CUDA_BASE_DIGESTS: dict[str, tuple[str, str]] = {
    "12.8.1": (
        "sha256:520292dbb4f755fd360766059e62956e9379485d9e073bbd2f6e3c20c270ed66",
        "sha256:ebef3c171eeef0298e4eb2e4be843105edf3b8b0ac45e0b43acee358e8046867",
    ),
}


def cuda_limit_for(vm: GpuVmSize) -> tuple[int, int]:
    return DRIVER_CUDA_LIMIT.get(vm.gpu_family, DEFAULT_DRIVER_CUDA_LIMIT)


# Azure built-in roles the stack grants, by id
# (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"
MONITORING_DATA_READER = "b0d8363b-8ddd-447d-831f-62ca05bff136"
GRAFANA_ADMIN = "22926164-76b3-42b3-bc55-97df8dab3e41"
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
# Application Gateway for Containers' own role: its data actions are in neither Owner nor
# Contributor (learn.microsoft.com/azure/application-gateway/for-containers/application-gateway-for-containers-components).
AGC_CONFIGURATION_MANAGER = "fbc52c3f-28ad-4303-a892-8a056630b8f1"
# Every role the stack assigns: CI's deploy identity may assign these and no other (bootstrap/).
STACK_GRANTED_ROLES = (
    ACR_PULL,
    ACR_PUSH,
    AKS_RBAC_CLUSTER_ADMIN,
    MONITORING_DATA_READER,
    GRAFANA_ADMIN,
    NETWORK_CONTRIBUTOR,
    READER,
    AGC_CONFIGURATION_MANAGER,
)

# Helm charts of the public endpoint (ingress.enabled), pinned by version.
# ALB controller 1.12.4: the 1.12 line (Gateway API v1.5.1, HTTPRoute timeouts since 1.11.1,
# Kubernetes 1.32 or later) with its security patches 1.12.2 and 1.12.4; Azure CNI Overlay needs
# 1.5.0 or later (alb-controller-release-notes.md and container-networking.md in
# MicrosoftDocs/azure-docs, articles/application-gateway/for-containers). 1.12.4 is listed in the
# release history of the newest stored copy of that page (learn.microsoft.com/ja-jp/azure/
# application-gateway/for-containers/alb-controller-release-notes: 1.12.1, 1.12.2, 1.12.4 "security
# patches"; latest 1.13.0, Kubernetes 1.32 or later); English copies stored earlier stop at 1.11.x.
ALB_CONTROLLER_CHART = ("oci://mcr.microsoft.com/application-lb/charts/alb-controller", "1.12.4")
# cert-manager v1.21.1 (2026-08), from its OCI registry (cert-manager.io/docs/installation/helm).
CERT_MANAGER_CHART = ("oci://quay.io/jetstack/charts/cert-manager", "v1.21.1")
# --- list prices (the cost in summary.md) ---------------------------------------------------
# Pay-as-you-go list prices in USD, Linux, before tax, discounts, reservations or savings plans.
# A price we could not find from a citable source is recorded as None with the reason: the
# summary then says "no list price recorded" instead of guessing. `make prices` refreshes it from
# Azure's retail prices API into core/prices.json (below), which wins over this hand-kept table.
PRICES_CHECKED = "2026-12-06"  # the last search for citable prices (the first was 2026-11-25)
_FIRST_CHECK = "2026-11-25"
# A 30-day month; Azure's own calculator uses 730 hours, so its months read ~1.4% higher.
HOURS_PER_MONTH = 24 * 30


@dataclass(frozen=True)
class ListPrice:
    usd: float | None  # None: no citable list price found (see `source`)
    per: str  # "hour", "day" or "month" for what is billed by time; a unit ("GB") for what is billed by use
    source: str  # where the figure comes from, or why there is none
    as_of: str  # the date the source gives for the figure (ISO), or when we looked
    url: str = ""  # the page the figure was read from; empty where none was recorded

    @property
    def hourly(self) -> float | None:
        """The price of an hour; None without a price or for what is billed by use."""
        if self.usd is None or self.per not in HOURS_PER:
            return None
        return self.usd / HOURS_PER[self.per]


# Hours in each period a price may be quoted per.
HOURS_PER = {"hour": 1, "day": 24, "month": HOURS_PER_MONTH}

_NOT_FOUND = "not found in a citable source"

# Region -> item -> price. Items: a VM size name, "aks-tier-<Free|Standard|Premium>",
# "premium-ssd-<P tier>", "azure-files-premium-gib" (provisioned v1, per GiB-month),
# "acr-<Basic|Standard|Premium>" (per registry a day), "lb-standard" (a Standard load balancer's
# hour, its first 5 rules included), "public-ip-standard" (a Standard static IPv4's hour),
# "grafana-standard-hour" (a Managed Grafana Standard instance), "agc-waf-<gateway|frontend|
# association>-hour" (Application Gateway for Containers' hourly meters at WAF rates); billed by use:
# "lb-standard-data-gb", "log-analytics-gb" (Analytics Logs ingested), "prometheus-10m-samples"
# (managed Prometheus ingestion), "grafana-standard-user" (active user a month),
# "agc-waf-capacity-unit-hour", "acr-task-vcpu-second" (an ACR Tasks build).
#
# Microsoft publishes these prices on azure.microsoft.com/pricing/details/... (virtual-machines/linux,
# kubernetes-service, managed-disks, storage/files) and in the retail prices API. The pricing pages
# fill their figures in with script: the one stored copy found (2026-11-25 search) shows "$-" where
# each price goes (azure.microsoft.com/en-in/pricing/details/storage/unmanaged-disks/), and no stored
# copy of the other pages, nor a dated copy of an API answer for these meters in eastus, was found.
# Every figure below is therefore third-party unless it says otherwise; each names its source, and
# its date where the source gives one.
# - NV36ads: GPUFlow, "GPU rental pricing comparison 2026" (updated 2026-09-30), Azure East US
#   Linux on-demand, read by GPUFlow from azure.microsoft.com/pricing/details/virtual-machines/linux
#   and the retail prices API. Third-party; its address was not recorded and was not found again.
# - AKS Free tier: Microsoft, learn.microsoft.com/azure/aks/free-standard-pricing-tiers (ms.date
#   2026-07-06): free cluster management.
# - AKS Standard tier: techmarmot.com, "Architectural economics of Azure Kubernetes Service"
#   (third-party, undated), quoting azure.microsoft.com/pricing/details/kubernetes-service. The same
#   $0.10/hour is what a third-party audit read from the retail prices API on 2026-02-22 for the meter
#   "Standard Uptime SLA" (github.com/ahmadabdalla/azure-cost-calculator/issues/200; no region stated).
# - AKS Premium tier: not recorded. That audit also lists the meter "Standard Long Term Support" at
#   $0.60/hour, but no source found says whether a Premium cluster is billed that meter alone or on
#   top of "Standard Uptime SLA", so the Premium tier's hourly price is not taken from it.
# - Premium SSD P10: TechTarget, "How does Azure Premium Storage billing work?" (third-party,
#   undated, no region; a figure from Premium Storage's early price list).
# - Container registry Basic: Microsoft's SKU page gives "$0.167 per day" as its worked example
#   (learn.microsoft.com/azure/container-registry/container-registry-skus, stored copy of the uk-ua
#   locale, English text; no region stated). Standard $0.667 and Premium $1.667 a day: c3x.dev's
#   cost page for azurerm_container_registry (third-party, undated, no region stated).
# - Standard load balancer $0.025/hour (first 5 rules; more rules and GB processed billed on top)
#   and Standard public IPv4 $0.005/hour: c3x.dev's pages for azurerm_lb and azurerm_public_ip
#   (third-party, undated). The load balancer's meter is global in the retail prices API.
# - Not found (2026-11-25, and again 2026-12-06 for the items added then): NV6ads, NV12ads,
#   NV18ads, NV36adms and NV72ads (a price scaled from another size would be a guess),
#   Standard_D4ds_v5, Premium SSD P6, Azure Files premium per GiB, Log Analytics ingestion,
#   managed Prometheus ingestion, Managed Grafana, Application Gateway for Containers and its WAF
#   (Microsoft's page on its billing names the meters; its figures are marked as examples only).
_GPUFLOW = "GPUFlow GPU price comparison (third-party)"
_TECHMARMOT = (
    "https://techmarmot.com/post/6188/architectural-economics-of-azure-kubernetes-service-a-comprehensive-"
    "analysis-of-pricing-tiers-resource-consumption-and-cost-optimization-strategies/"
)
_C3X = "c3x.dev cost page (third-party, undated, no region)"
_C3X_URL = "https://c3x.dev/resources/azure/"
_ACR_SKUS_URL = "https://learn.microsoft.com/uk-ua/azure/container-registry/container-registry-skus"
LIST_PRICES: dict[str, dict[str, ListPrice]] = {
    "eastus": {
        "Standard_NV36ads_A10_v5": ListPrice(3.20, "hour", _GPUFLOW, "2026-09-30"),
        "Standard_NV6ads_A10_v5": ListPrice(None, "hour", _NOT_FOUND, _FIRST_CHECK),
        "Standard_NV12ads_A10_v5": ListPrice(None, "hour", _NOT_FOUND, _FIRST_CHECK),
        "Standard_NV18ads_A10_v5": ListPrice(None, "hour", _NOT_FOUND, _FIRST_CHECK),
        "Standard_NV36adms_A10_v5": ListPrice(None, "hour", _NOT_FOUND, _FIRST_CHECK),
        "Standard_NV72ads_A10_v5": ListPrice(None, "hour", _NOT_FOUND, _FIRST_CHECK),
        "Standard_D4ds_v5": ListPrice(None, "hour", _NOT_FOUND, _FIRST_CHECK),
        "aks-tier-Standard": ListPrice(
            0.10, "hour", "techmarmot.com AKS pricing article (third-party, undated)", _FIRST_CHECK, _TECHMARMOT
        ),
        "aks-tier-Premium": ListPrice(None, "hour", _NOT_FOUND, _FIRST_CHECK),
        "premium-ssd-P6": ListPrice(None, "month", _NOT_FOUND, _FIRST_CHECK),
        "premium-ssd-P10": ListPrice(
            19.71,
            "month",
            "TechTarget (third-party, undated, no region, an early figure)",
            _FIRST_CHECK,
            "http://searchcloudcomputing.techtarget.com/answer/How-does-Azure-Premium-Storage-billing-work",
        ),
        "azure-files-premium-gib": ListPrice(None, "month", _NOT_FOUND, _FIRST_CHECK),
        "acr-Basic": ListPrice(
            0.167, "day", "Microsoft, ACR SKU docs' worked example (no region)", PRICES_CHECKED, _ACR_SKUS_URL
        ),
        "acr-Standard": ListPrice(0.667, "day", _C3X, PRICES_CHECKED, _C3X_URL + "azurerm_container_registry"),
        "acr-Premium": ListPrice(1.667, "day", _C3X, PRICES_CHECKED, _C3X_URL + "azurerm_container_registry"),
        "lb-standard": ListPrice(0.025, "hour", _C3X, PRICES_CHECKED, _C3X_URL + "azurerm_lb"),
        "lb-standard-data-gb": ListPrice(0.005, "GB", _C3X, PRICES_CHECKED, _C3X_URL + "azurerm_lb"),
        "public-ip-standard": ListPrice(0.005, "hour", _C3X, PRICES_CHECKED, _C3X_URL + "azurerm_public_ip"),
        "log-analytics-gb": ListPrice(None, "GB", _NOT_FOUND, PRICES_CHECKED),
        "prometheus-10m-samples": ListPrice(None, "10 million samples", _NOT_FOUND, PRICES_CHECKED),
        "grafana-standard-hour": ListPrice(None, "hour", _NOT_FOUND, PRICES_CHECKED),
        "grafana-standard-user": ListPrice(None, "active user", _NOT_FOUND, PRICES_CHECKED),
        "agc-waf-gateway-hour": ListPrice(None, "hour", _NOT_FOUND, PRICES_CHECKED),
        "agc-waf-frontend-hour": ListPrice(None, "hour", _NOT_FOUND, PRICES_CHECKED),
        "agc-waf-association-hour": ListPrice(None, "hour", _NOT_FOUND, PRICES_CHECKED),
        "agc-waf-capacity-unit-hour": ListPrice(None, "capacity unit hour", _NOT_FOUND, PRICES_CHECKED),
        "acr-task-vcpu-second": ListPrice(None, "vCPU-second", _NOT_FOUND, PRICES_CHECKED),
    },
}

# Prices that are the same in every region.
ANY_REGION: dict[str, ListPrice] = {
    # The Free tier has no cluster management fee, wherever the cluster runs.
    "aks-tier-Free": ListPrice(
        0.0,
        "hour",
        "Microsoft, AKS pricing tiers docs",
        "2026-07-06",
        "https://learn.microsoft.com/azure/aks/free-standard-pricing-tiers",
    ),
}

# Items whose meter in the retail prices API no citable source names: `make prices` does not ask
# for them, so they stay "not priced" until a meter is recorded in tools/prices.py.
NOT_FETCHED = frozenset(
    {
        "prometheus-10m-samples",
        "grafana-standard-hour",
        "grafana-standard-user",
        "agc-waf-gateway-hour",
        "agc-waf-frontend-hour",
        "agc-waf-association-hour",
        "agc-waf-capacity-unit-hour",
        "acr-task-vcpu-second",
        "aks-tier-Premium",
    }
)

# `make prices` (tools/prices.py) writes the retail prices API's answers here; they replace the
# table's figures for the same region and item, with the API's meter as their source.
RETAIL_PRICES_API = "https://prices.azure.com/api/retail/prices"
FETCHED_PRICES = Path(__file__).with_name("prices.json")


def with_fetched(table: dict[str, dict[str, ListPrice]], fetched: dict[str, Any]) -> dict[str, dict[str, ListPrice]]:
    """The table with the prices `make prices` fetched (the content of core/prices.json) laid over it."""
    out = {region: dict(items) for region, items in table.items()}
    for region, items in (fetched.get("regions") or {}).items():
        for key, p in items.items():
            source = f"Azure Retail Prices API, {p['meter']}"
            out.setdefault(region, {})[key] = ListPrice(p["usd"], p["per"], source, fetched["checked"], fetched["api"])
    return out


if FETCHED_PRICES.exists():
    _fetched = json.loads(FETCHED_PRICES.read_text())
    LIST_PRICES = with_fetched(LIST_PRICES, _fetched)
    PRICES_CHECKED = max(PRICES_CHECKED, _fetched["checked"] or PRICES_CHECKED)

# Premium SSD (v1) tiers: a disk is billed as the smallest tier that holds its size (GiB).
# learn.microsoft.com/azure/virtual-machines/disks-types#premium-ssd-size
PREMIUM_SSD_TIERS: tuple[tuple[str, int], ...] = (
    ("P1", 4),
    ("P2", 8),
    ("P3", 16),
    ("P4", 32),
    ("P6", 64),
    ("P10", 128),
    ("P15", 256),
    ("P20", 512),
    ("P30", 1024),
    ("P40", 2048),
    ("P50", 4096),
)
# Azure Files premium (provisioned v1) bills at least 100 GiB per share
# (learn.microsoft.com/azure/storage/files/understanding-billing).
AZURE_FILES_PREMIUM_MIN_GIB = 100
# How the AKS built-in storage classes bill (learn.microsoft.com/azure/aks/concepts-storage).
STORAGE_CLASS_BILLING: dict[str, str] = {
    "managed-csi-premium": "premium-ssd",
    "managed-premium": "premium-ssd",
    "azurefile-csi-premium": "azure-files-premium",
    "azurefile-premium": "azure-files-premium",
}


def list_price(region: str, item: str) -> ListPrice | None:
    """The recorded list price of `item` in `region`; None when the table has no row for it."""
    return LIST_PRICES.get(region, {}).get(item) or ANY_REGION.get(item)


def premium_ssd_tier(size_gi: int) -> str | None:
    """The Premium SSD tier a disk of `size_gi` is billed as; None above the largest tier listed."""
    return next((tier for tier, gib in PREMIUM_SSD_TIERS if size_gi <= gib), None)


# Scripts of image/ that the stack runs inside the server image: the download Job's command and
# the server's preStop hook. llama.cpp's own images (ghcr.io/ggml-org/llama.cpp, every tag:
# server, server-cuda, full, light) hold llama-server but neither script, so a prebuilt image
# must be a build of image/.
FETCH_MODEL_SCRIPT = "/usr/local/bin/fetch-model.sh"
DRAIN_SCRIPT = "/usr/local/bin/drain.sh"
IMAGE_SCRIPTS = (FETCH_MODEL_SCRIPT, DRAIN_SCRIPT)
UPSTREAM_IMAGES_WITHOUT_SCRIPTS = ("ghcr.io/ggml-org/llama.cpp", "ghcr.io/ggerganov/llama.cpp")

# Values the shipped Pulumi.prod.yaml holds as examples, to be replaced: documentation address
# ranges (RFC 5737, RFC 3849), the object id Microsoft's documentation uses, and the domains
# reserved for examples (RFC 2606). A production stack still holding one is a copy not yet made
# its own: preview and up refuse it; the offline render shows it as a warning.
EXAMPLE_NETWORKS = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
EXAMPLE_OBJECT_IDS = ("aaaaaaaa-0000-1111-2222-bbbbbbbbbbbb",)
EXAMPLE_DOMAINS = ("example.com", "example.net", "example.org", "example", "test", "invalid")

# The longest context a served model is trained for (Qwen2.5-1M and Llama 4 class models are at
# about a million tokens); more than that, from -c or a model's claimed shape, is a mistake.
MAX_CONTEXT_TOKENS = 1_048_576
# The longest one answer may take at the slowest decode rate (sizing.request_timeout_seconds):
# it becomes the public route's timeout, and a request that long holds a slot and a connection.
MAX_REQUEST_TIMEOUT_SECONDS = 3600
# The largest request body the request budget may imply (sizing.request_body_bytes): it becomes
# the WAF's body limit, and llama-server holds each body whole in memory while it parses it.
MAX_REQUEST_BODY_BYTES = 100 * 1000 * 1000

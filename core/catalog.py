"""Facts from the world that the stack must respect, each table with its source.

Nothing here is configuration: these are the properties of Azure VM sizes, GPU drivers,
llama.cpp and the Qwen2-VL architecture that config values are checked against.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def cuda_limit_for(vm: GpuVmSize) -> tuple[int, int]:
    return DRIVER_CUDA_LIMIT.get(vm.gpu_family, DEFAULT_DRIVER_CUDA_LIMIT)

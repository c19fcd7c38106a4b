"""Several GPUs in one replica: each GPU's memory, and the rules a split must pass.

Pure, like core/rules.py, which runs these rules with the others. llama.cpp b11434 places the
model as core.sizing.vram_per_device mirrors (src/llama-model.cpp load_tensors); llama-server
refuses `-sm tensor` without flash attention (src/llama-context.cpp), and a quantized KV cache
is not split by tensor parallelism.
"""

from __future__ import annotations

from core import sizing
from core.catalog import GB, GPU_VM_SIZES, GpuVmSize
from core.config import StackConfig, parse_quantity

QUANTIZED_KV = ("q8_0", "q4_0")


def gpu_vm(c: StackConfig) -> GpuVmSize | None:
    return GPU_VM_SIZES.get(c.cluster.gpu_pool.vm_size)


def _inputs(c: StackConfig) -> tuple[sizing.ModelShape, int, int, int, int, str, str, int]:
    """What the memory of a server depends on: the model's shape and files, and the server's settings."""
    s, m = c.server, c.model
    cells = sizing.allocated_context(s.context_size, s.parallel, s.kv_unified)
    return (
        m.shape,
        m.size_bytes,
        m.mmproj_size_bytes,
        s.gpu_layers,
        cells,
        s.cache_type_k,
        s.cache_type_v,
        s.ubatch_size,
    )


def whole(c: StackConfig) -> sizing.VramEstimate:
    """Memory of one server as if on one GPU (core.rules.vram)."""
    return sizing.vram_estimate(*_inputs(c))


def per_gpu(c: StackConfig) -> tuple[sizing.VramEstimate, ...]:
    """Memory of each GPU of one replica, in the order of -ts."""
    return sizing.vram_per_device(*_inputs(c), c.server.split, c.server.split_mode)


def replicas_per_node(c: StackConfig, vm: GpuVmSize) -> int:
    return vm.gpus // c.server.gpus_per_replica


def gpus_within_node(c: StackConfig) -> list[str]:
    vm, n = gpu_vm(c), c.server.gpus_per_replica
    if vm is None or n <= vm.gpus:
        return []
    fitting = [v.name for v in GPU_VM_SIZES.values() if v.gpus >= n]
    fix = (
        f"use cluster.gpuPool.vmSize={fitting[0]} ({GPU_VM_SIZES[fitting[0]].gpus} GPUs)"
        if fitting
        else (f"no A10 size has {n} GPUs")
    )
    return [
        f"server.gpusPerReplica={n} is more GPUs than one {vm.name} node has ({vm.gpus}), and a replica "
        f"cannot span nodes; {fix}, or set server.gpusPerReplica <= {vm.gpus}."
    ]


def split_matches_gpus(c: StackConfig) -> list[str]:
    s = c.server
    shares, n = s.tensor_split, s.gpus_per_replica
    if not shares:
        return []
    if len(shares) != n:
        return [
            f"server.tensorSplit has {len(shares)} shares for server.gpusPerReplica={n}; give one share "
            f"per GPU (e.g. [{', '.join(['1'] * n)}]) or leave it empty for equal shares."
        ]
    if sum(shares) <= 0:
        return [f"server.tensorSplit={shares} gives the GPUs nothing; give each GPU a positive share."]
    return []


def tensor_split_mode_supported(c: StackConfig) -> list[str]:
    s = c.server
    if s.split_mode != "tensor":
        return []
    problems = []
    if s.flash_attention == "off":
        problems.append(
            "server.splitMode=tensor needs flash attention, and llama-server refuses to start with "
            "server.flashAttention=off; set server.flashAttention=on or server.splitMode=layer."
        )
    quantized = [
        f"{key}={value}"
        for key, value in (("cacheTypeK", s.cache_type_k), ("cacheTypeV", s.cache_type_v))
        if value in QUANTIZED_KV
    ]
    if quantized:
        problems.append(
            f"server.splitMode=tensor splits an unquantized KV cache only, but server.{' and server.'.join(quantized)}; "
            f"set the cache types to f16 or server.splitMode=layer."
        )
    return problems


def each_gpu_fits(c: StackConfig) -> list[str]:
    """With several GPUs, each must hold its share; core.rules.fits_gpu_memory judges one GPU."""
    vm, s = gpu_vm(c), c.server
    if vm is None or s.gpus_per_replica == 1 or s.gpus_per_replica > vm.gpus or split_matches_gpus(c):
        return []
    limit = sizing.usable_gpu_bytes(vm, s.vram_headroom)
    devices = per_gpu(c)
    problems = []
    for i, device in enumerate(devices):
        if device.total_bytes <= limit:
            continue
        others = [j for j, d in enumerate(devices) if j != i and d.total_bytes < limit]
        move = (
            f"give GPU {others[0]} a larger share in server.tensorSplit (now {s.tensor_split_arg}), "
            if others and s.split_mode == "layer"
            else ""
        )
        problems.append(
            f"GPU {i} of {len(devices)} needs {device.total_bytes / GB:.2f} GB (weights "
            f"{device.weights_bytes / GB:.2f}, projector {device.mmproj_bytes / GB:.2f}, KV cache "
            f"{device.kv_bytes / GB:.2f}, compute {device.compute_bytes / GB:.2f}), over a {vm.name} GPU's "
            f"{vm.gpu_memory_gb:g} GB less {s.vram_headroom:.0%} headroom ({limit / GB:.2f} GB); {move}"
            f"lower server.contextSize or pick a smaller model.file."
        )
    return problems


def idle_gpus(c: StackConfig) -> int:
    """GPUs of the pool's nodes that no replica uses when the most replicas run."""
    vm = gpu_vm(c)
    if vm is None or c.server.gpus_per_replica > vm.gpus:
        return 0
    replicas = c.max_replicas
    return (
        sizing.gpu_nodes_for(replicas, vm, c.server.gpus_per_replica) * vm.gpus - replicas * c.server.gpus_per_replica
    )


def idle_gpu_warning(c: StackConfig) -> list[tuple[str, str]]:
    idle = idle_gpus(c)
    if not idle:
        return []
    vm = gpu_vm(c)
    assert vm is not None
    s = c.server
    return [
        (
            "idleGpus",
            f"server.gpusPerReplica={s.gpus_per_replica} with {c.max_replicas} replica(s) on {vm.name} "
            f"({vm.gpus} GPUs a node) leaves {idle} GPU(s) paid for and idle; set server.gpusPerReplica="
            f"{vm.gpus} to give one replica every GPU, or run replicas in multiples of "
            f"{replicas_per_node(c, vm)}.",
        )
    ]


def node_holds_its_replicas(c: StackConfig) -> list[str]:
    """Replicas that share a node (one per GPU, or per GPU pair) must fit it together; the
    single-pod check (core.rules.pod_fits_node) cannot see that."""
    vm = gpu_vm(c)
    if vm is None or c.server.gpus_per_replica > vm.gpus:
        return []
    sharing = min(replicas_per_node(c, vm), c.max_replicas)
    if sharing < 2:
        return []
    node, req = sizing.node_allocatable(vm), c.server.resources.requests
    each = {
        "cpu": (parse_quantity(req.cpu) * 1000, node.cpu_millis, "m"),
        "memory": (parse_quantity(req.memory), node.memory_bytes, " bytes"),
    }
    problems = []
    for key, (one, allocatable, unit) in each.items():
        if one * sharing > allocatable:
            problems.append(
                f"server.resources.requests.{key}={getattr(req, key)} for {sharing} replicas that share a {vm.name} "
                f"node (server.gpusPerReplica={c.server.gpus_per_replica} of its "
                f"{vm.gpus} GPUs each) is {one * sharing:.0f}{unit}, over the node's {allocatable}{unit}; lower it to "
                f"{allocatable // sharing}{unit} or less, or set server.gpusPerReplica={vm.gpus}."
            )
    return problems


RULES = (gpus_within_node, split_matches_gpus, tensor_split_mode_supported, each_gpu_fits, node_holds_its_replicas)

"""The sizing table of a stack (summary.md): VRAM breakdown and headroom, tokens per slot, the
worst-case request, GPU nodes and pods. Pure; the render writes it and CI posts it on pull requests."""

from __future__ import annotations

from core import rules, sizing
from core.catalog import GB, GIB
from core.config import StackConfig


def replicas_text(c: StackConfig) -> str:
    a = c.autoscaling
    if not a.enabled:
        return f"{c.server.replicas} pods"
    text = f"{a.min_replicas}-{a.max_replicas} pods, autoscaled on the queue (starts at {c.server.replicas})"
    if a.min_replicas == 0 and a.active_hours:
        h = a.active_hours
        text += f"; at least 1 from {h.start} to {h.end} {h.timezone}, days {h.days}"
    return text


def summary_markdown(c: StackConfig, stack: str) -> str:
    s, b, m = c.server, c.server.request_budget, c.model
    vm = rules.gpu_vm(c)
    assert vm is not None  # validated
    v = rules.vram(c)
    usable = sizing.usable_gpu_bytes(vm, s.vram_headroom)
    gpu_bytes = vm.gpu_memory_gb * GB
    per_slot, need = rules.slot_tokens(c), rules.request_tokens(c)
    cells = sizing.allocated_context(s.context_size, s.parallel, s.kv_unified)
    node = sizing.node_allocatable(vm)
    pool = c.cluster.gpu_pool
    rows = [
        (
            "Model weights",
            f"{v.weights_bytes / GB:.2f} GB",
            f"{m.file}, {min(s.gpu_layers, m.architecture.layers)}/{m.architecture.layers} layers on GPU",
        ),
        ("Vision projector", f"{v.mmproj_bytes / GB:.2f} GB", m.mmproj_file),
        ("KV cache", f"{v.kv_bytes / GB:.2f} GB", f"{cells} cells, K {s.cache_type_k} / V {s.cache_type_v}"),
        ("Compute reserve", f"{v.compute_bytes / GB:.2f} GB", f"CUDA context + ubatch {s.ubatch_size} graph"),
        ("**Total estimate**", f"**{v.total_bytes / GB:.2f} GB**", f"of {vm.gpu_memory_gb:g} GB on {vm.name}"),
        ("Usable (less headroom)", f"{usable / GB:.2f} GB", f"{s.vram_headroom:.0%} headroom kept free"),
        (
            "Spare after estimate",
            f"{(usable - v.total_bytes) / GB:.2f} GB",
            f"{v.total_bytes / gpu_bytes:.0%} of the GPU used",
        ),
    ]
    lines = [
        f"# Sizing of stack `{stack}`",
        "",
        "## GPU memory (per server)",
        "",
        "| item | size | detail |",
        "|---|---|---|",
        *(f"| {a} | {b_} | {d} |" for a, b_, d in rows),
        "",
        "## Tokens",
        "",
        "| item | tokens | detail |",
        "|---|---|---|",
        f"| Context (`-c`) | {s.context_size} | {'unified KV: one request may use it all' if s.kv_unified else f'split over {s.parallel} slots'} |",
        f"| Per slot | {per_slot} | {'= -c' if s.kv_unified else f'{s.context_size}/{s.parallel}, padded to 256'}, capped at {m.architecture.max_context} |",
        f"| Worst-case request | {need} | {b.images} image x {sizing.worst_case_image_tokens(b.image_max_tokens)} + prompt {b.prompt_tokens} + output {b.output_tokens} |",
        f"| Spare per slot | {per_slot - need} | a request over the slot gets HTTP 400 |",
        "",
        "## Nodes and pods",
        "",
        "| item | value |",
        "|---|---|",
        f"| GPU VM size | {vm.name} ({vm.vcpus} vCPU, {vm.memory_gib} GiB, {vm.gpus} GPU) |",
        f"| GPU pool | {pool.min_count}-{pool.max_count} nodes{' (spot)' if pool.spot else ''} |",
        f"| Replicas | {replicas_text(c)}, up to {sizing.gpu_nodes_for(c.max_replicas, vm)} GPU node(s) |",
        f"| Pod requests / limits | {s.resources.requests.cpu} CPU, {s.resources.requests.memory} / {s.resources.limits.cpu} CPU, {s.resources.limits.memory} |",
        f"| Node allocatable | {node.cpu_millis}m CPU, {node.memory_bytes // GIB}Gi |",
        f"| Update strategy | {'Recreate' if c.max_replicas == 1 else 'RollingUpdate, maxSurge 0'} |",
        f"| Model volume | {m.storage.size_gi}Gi {m.storage.access_mode} ({m.storage.storage_class}) |",
        "",
    ]
    return "\n".join(lines)

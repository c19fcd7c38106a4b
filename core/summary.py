"""The sizing table of a stack (summary.md): VRAM breakdown and headroom, tokens per slot, the
worst-case request, GPU nodes and pods, cost at list prices and what fits. Pure; the render
writes it (and its figures as summary.json, which `make diff` compares) and CI posts it on pull
requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core import capacity, cost, first_token, multigpu, rules, sizing
from core.catalog import GB, GIB, GPU_VM_SIZES, PRICES_CHECKED, GpuVmSize, list_price
from core.config import StackConfig

# Bump when a key of summary_data changes meaning; tools/diff.py compares only equal versions.
# 2: cost.minHourly of a scale-to-zero stack is its activeHours schedule averaged over the week.
# 3: cost figures count every billed item and the replicas that never scale away; cost.bound says
#    whether they are exact, a lower bound ("atLeast") or unknown.
SUMMARY_DATA_VERSION = 3


# Characters of user text that Markdown (GitHub's, in summary.md and the pull-request comment)
# would read as structure: a table cell's `|`, code spans, emphasis, links, and HTML (`<!--`
# would hide every row after it). Each shows as typed once escaped; `&` first, so that an
# entity the user typed shows as typed too.
_MARKDOWN_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        **{ch: f"\\{ch}" for ch in "\\|`*_[]#~!"},
        **dict.fromkeys("\r\n\t\v\f\x85\u2028\u2029", " "),
    }
)


def markdown_text(text: str) -> str:
    """User text (a reason, a name) as Markdown that shows exactly that text on one line, and
    cannot end a table cell, open an HTML comment or tag, or start a code span or link."""
    return text.translate(_MARKDOWN_ESCAPES)


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
    memory = (
        ["| item | size | detail |", "|---|---|---|", *(f"| {a} | {b_} | {d} |" for a, b_, d in rows)]
        if s.gpus_per_replica == 1
        else per_gpu_table(c, usable)
    )
    lines = [
        f"# Sizing of stack `{stack}`",
        "",
        "## GPU memory (per server)",
        "",
        *memory,
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
        f"| Replicas | {replicas_text(c)}, {s.gpus_per_replica} GPU each, up to {sizing.gpu_nodes_for(c.max_replicas, vm, s.gpus_per_replica)} GPU node(s) |",
        f"| Pod requests / limits | {s.resources.requests.cpu} CPU, {s.resources.requests.memory} / {s.resources.limits.cpu} CPU, {s.resources.limits.memory} |",
        f"| Node allocatable | {node.cpu_millis}m CPU, {node.memory_bytes // GIB}Gi |",
        f"| Update strategy | {'Recreate' if c.max_replicas == 1 else 'RollingUpdate, maxSurge 0'} |",
        f"| Model volume | {m.storage.size_gi}Gi {m.storage.access_mode} ({m.storage.storage_class}) |",
        "",
        *cost_section(c),
        *first_token_section(c),
        *fits_section(c),
        *accepted_section(c),
    ]
    return "\n".join(lines)


def per_gpu_table(c: StackConfig, usable: int) -> list[str]:
    """The memory of each GPU of one replica, a column each (core.multigpu)."""
    devices = multigpu.per_gpu(c)
    s = c.server

    def row(name: str, sizes: list[int], detail: str) -> str:
        return f"| {name} | {' | '.join(f'{b / GB:.2f} GB' for b in sizes)} | {detail} |"

    where = sizing.layer_devices(c.model.architecture.layers, s.gpu_layers, s.split)
    layers = [where[:-1].count(i) for i in range(len(devices))]
    return [
        f"| item | {' | '.join(f'GPU {i}' for i in range(len(devices)))} | detail |",
        f"|---|{'---|' * len(devices)}---|",
        f"| Layers | {' | '.join(str(n) for n in layers)} | -sm {s.split_mode} -ts {s.tensor_split_arg}; output layer on GPU {where[-1]} |"
        if s.split_mode == "layer"
        else f"| Share | {' | '.join(f'{x:g}' for x in s.split)} | -sm tensor: every matrix cut by these shares |",
        row("Model weights", [d.weights_bytes for d in devices], c.model.file),
        row("Vision projector", [d.mmproj_bytes for d in devices], c.model.mmproj_file),
        row("KV cache", [d.kv_bytes for d in devices], f"K {s.cache_type_k} / V {s.cache_type_v}"),
        row(
            "Compute reserve",
            [d.compute_bytes for d in devices],
            "CUDA context, activations; logits with the output layer",
        ),
        row("**Total estimate**", [d.total_bytes for d in devices], "each within one GPU"),
        row(
            "Spare after estimate",
            [usable - d.total_bytes for d in devices],
            f"of {usable / GB:.2f} GB usable ({s.vram_headroom:.0%} headroom)",
        ),
    ]


def accepted_section(c: StackConfig) -> list[str]:
    """The warnings the stack accepts on purpose: preview is quiet about them, so reviewers read them here."""
    quiet = rules.accepted(c)
    if not quiet:
        return []
    texts = {key: text for key, text in rules.all_warnings(c) if key in quiet}
    return [
        "## Accepted on purpose",
        "",
        "Warnings this stack accepts (its `accepted` config), with its reasons; preview does not print them.",
        "",
        "| `accepted` key | warning | reason |",
        "|---|---|---|",
        *(f"| `{key}` | {markdown_text(texts[key])} | {markdown_text(reason)} |" for key, reason in quiet.items()),
    ]


def usd(value: float | None, cents: bool = True) -> str:
    if value is None:
        return "not priced"
    return f"${value:,.2f}" if cents else f"${value:,.0f}"


def usd_range(low: float | None, high: float | None, cents: bool = True) -> str:
    if low is None or high is None or round(low, 2) == round(high, 2):
        return usd(high, cents)
    return f"{usd(low, cents)}-{usd(high, cents)}"


def total_text(est: cost.CostEstimate, per_month: bool) -> str:
    """The total as it may be read: a figure, a lower bound ("at least"), or unknown, never a $0
    that stands for items without a price."""
    scale = cost.monthly if per_month else (lambda hourly: hourly)
    if est.bound == "unknown":
        return "unknown"
    figure = usd_range(scale(est.min_hourly), scale(est.max_hourly), cents=not per_month)
    return figure if est.bound == "exact" else f"at least {figure}"


def total_note(est: cost.CostEstimate) -> str:
    """What the total leaves out and why."""
    parts = []
    if est.bound == "unknown":
        dominant = ", ".join(line.item for line in est.fixed if line.dominant and not line.priced)
        priced = usd_range(cost.monthly(est.min_hourly), cost.monthly(est.max_hourly), cents=False)
        parts.append(
            f"{dominant}, the bulk of the bill, is not priced; the priced items alone come to {priced} a month"
        )
    elif est.missing:
        parts.append(
            f"a lower bound: leaves out {', '.join(est.missing)} (not priced; each line says whether `make prices` fills it)"
        )
    else:
        parts.append("every item billed by the hour or month is priced")
    if est.usage_based:
        parts.append(f"billed by use on top: {', '.join(est.usage_based)}")
    return "; ".join(parts)


def cost_row(line: cost.CostLine) -> str:
    if line.usage:
        return f"| {line.item} | {line.what} | by use | by use | {line.note}; depends on {line.usage} |"
    return (
        f"| {line.item} | {line.what} | {usd_range(line.min_hourly, line.max_hourly)} | "
        f"{usd_range(*cost_monthly(line.min_hourly, line.max_hourly), cents=False)} | {line.note} |"
    )


def cost_section(c: StackConfig) -> list[str]:
    est = cost.estimate(c)
    return [
        f"## Cost at list prices ({est.region})",
        "",
        "USD, pay-as-you-go, Linux, before tax and discounts; every item Azure bills for the render, from the "
        "fewest nodes the stack can ever run (the replicas that never scale away; for active hours, the "
        "window as KEDA runs it, averaged over the week) to the most (autoscaling); a 30-day month of "
        f"{cost.monthly(1):g} hours. Items billed by use show their unit price and stay out of the total. "
        f"Price table checked {PRICES_CHECKED}.",
        "",
        "| item | billed | per hour | per month | price and source |",
        "|---|---|---|---|---|",
        *(cost_row(line) for line in est.lines),
        f"| **Total** | | **{total_text(est, per_month=False)}** | **{total_text(est, per_month=True)}** | "
        f"{total_note(est)} |",
        "",
    ]


# Where the bill line sends a reader for each item: docs/configuration.md, "Reading summary.md".
BILL_DETAILS = f"{Path('docs', 'configuration.md').as_posix()}#reading-summarymd"


def bill_line(stacks: list[tuple[str, StackConfig]]) -> str:
    """One line with each stack's monthly figure: the bill, up front on the front page."""
    figures = [f"{stack} {total_text(cost.estimate(c), per_month=True)}" for stack, c in stacks]
    regions = sorted({c.cluster.location for _, c in stacks})
    return (
        f"**The bill**, USD a 30-day month at list prices in {', '.join(regions)} (from `make render`): "
        f"{', '.join(figures)}, from the fewest nodes to the most, plus what is billed by use (logs, "
        f"metrics, traffic). Each item, its price and source: [Reading `summary.md`]({BILL_DETAILS})."
    )


def cost_monthly(low: float | None, high: float | None) -> tuple[float | None, float | None]:
    return (None if low is None else cost.monthly(low), None if high is None else cost.monthly(high))


def first_token_section(c: StackConfig) -> list[str]:
    """How long to the first token (core/first_token.py): first deploy, llama.cpp bump, scale from zero."""
    return [
        "## Time to the first token",
        "",
        "Estimated from sourced or measured steps (`make preflight` prints each step and its source); "
        "goals: first deploy and bump 20 minutes, scale from zero 8 minutes.",
        "",
        *first_token.summary_lines(c),
        "",
    ]


def replica_month(c: StackConfig, vm: GpuVmSize, gpus: int) -> str:
    """List price of one replica's share of its node: its GPUs over the node's, a 720-hour month."""
    price = list_price(c.cluster.location, vm.name)
    if price is None or price.hourly is None:
        return "not priced"
    return f"${cost.monthly(price.hourly * gpus / vm.gpus):,.0f}"


def fits_section(c: StackConfig) -> list[str]:
    b = c.server.request_budget
    need = rules.request_tokens(c)
    header = " | ".join(f"K/V {t}" for t in capacity.KV_CACHE_TYPES)

    def cell(fit: capacity.SlotFit) -> str:
        if fit.slots == 0:
            return "none"
        return f"{fit.slots} (`-c {fit.context_size}`, {fit.spare_bytes / GB:.2f} GB spare)"

    rows = []
    for row in capacity.slot_table(c):
        vm, gpus = GPU_VM_SIZES[row[0].vm_size], row[0].gpus
        name = f"{vm.name} ({vm.gpu_memory_gb:g} GB)"
        if vm.gpus > 1:
            name = (
                f"{vm.name} ({vm.gpus} x {vm.gpu_memory_gb:g} GB), one replica of {gpus} GPUs"
                if gpus > 1
                else f"{vm.name} ({vm.gpus} x {vm.gpu_memory_gb:g} GB), {vm.gpus} replicas of 1 GPU (slots each)"
            )
        if vm.name == c.cluster.gpu_pool.vm_size and gpus == c.server.gpus_per_replica:
            name = f"**{name}, configured**"
        rows.append(f"| {name} | {' | '.join(cell(f) for f in row)} | {replica_month(c, vm, gpus)} |")
    img = capacity.largest_image_max_tokens(c)
    image_row = (
        f"| Largest `imageMaxTokens` for the current {img.per_slot}-token slots | {img.image_max_tokens} "
        f"(now {b.image_max_tokens}) | {img.spare_tokens} tokens spare per slot |"
        if img.image_max_tokens is not None
        else f"| Largest `imageMaxTokens` for the current {img.per_slot}-token slots | none | {img.reason} |"
    )
    return [
        f"## What fits a request of {need} tokens",
        "",
        "Most slots that each hold the worst-case request, per KV cache type, with the `-c` they need "
        f"and the GPU memory spare after the estimate (within the {c.server.vram_headroom:.0%} headroom):",
        "",
        f"| GPU VM size | {header} | a replica a month |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "| item | value | headroom |",
        "|---|---|---|",
        image_row,
        "",
    ]


def summary_data(c: StackConfig, stack: str) -> dict[str, Any]:
    """The summary's figures as plain data (summary.json), for `make diff` to compare two renders."""
    s, pool = c.server, c.cluster.gpu_pool
    est = cost.estimate(c)
    # A total without the GPU pool's price says nothing: `make diff` must not show it as a drop.
    known = est.bound != "unknown"
    a = c.autoscaling
    return {
        "version": SUMMARY_DATA_VERSION,
        "stack": stack,
        "region": est.region,
        "gpuVmSize": pool.vm_size,
        "cost": {
            "bound": est.bound,
            "minHourly": round(est.min_hourly, 4) if known else None,
            "maxHourly": round(est.max_hourly, 4) if known else None,
            "minMonthly": round(cost.monthly(est.min_hourly), 2) if known else None,
            "maxMonthly": round(cost.monthly(est.max_hourly), 2) if known else None,
            "unpriced": list(est.missing),
            # What each unpriced item is: two renders that leave out the same items compare exactly.
            "unpricedItems": [f"{line.item}: {line.what}" for line in est.fixed if not line.priced],
            "usageBased": list(est.usage_based),
        },
        "vramGb": round(max(d.total_bytes for d in multigpu.per_gpu(c)) / GB, 2),
        "tokensPerSlot": rules.slot_tokens(c),
        "requestTokens": rules.request_tokens(c),
        "contextSize": s.context_size,
        "slots": s.parallel,
        "replicas": {
            "min": a.min_replicas if a.enabled else s.replicas,
            "max": c.max_replicas,
        },
        "gpuNodes": {"min": pool.min_count, "max": pool.max_count},
    }

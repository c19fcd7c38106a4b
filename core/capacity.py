"""What fits the configured request budget: the most slots per KV cache type on each A10 size,
and the largest image cap the current slots hold, each with its headroom.

Pure. Every figure comes from the same functions the preview rules use (rules.vram,
rules.request_tokens, sizing.min_context_for, sizing.worst_case_request_tokens), applied to the
stack's config with one setting changed, so the table and the rules cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import multigpu, rules, sizing
from core.catalog import GPU_VM_SIZES, GpuVmSize
from core.config import RequestBudget, StackConfig

KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")


@dataclass(frozen=True)
class SlotFit:
    vm_size: str
    cache_type: str  # K and V both
    gpus: int  # GPUs of one replica (server.gpusPerReplica)
    slots: int  # most slots that each hold the worst-case request; 0 when not one fits
    context_size: int  # the -c that gives each of them the request (0 when slots is 0)
    vram_bytes: int  # the estimate at that setting, of its fullest GPU (0 when slots is 0)
    usable_bytes: int  # the GPU's memory less server.vramHeadroom

    @property
    def spare_bytes(self) -> int:
        return self.usable_bytes - self.vram_bytes


@dataclass(frozen=True)
class ImageFit:
    image_max_tokens: int | None  # largest cap the current slots hold; None: no images, or none fits
    per_slot: int  # tokens per slot as configured
    request_tokens: int  # worst-case request at that cap (or as configured when None)
    reason: str  # why image_max_tokens is None, else ""

    @property
    def spare_tokens(self) -> int:
        return self.per_slot - self.request_tokens


def with_server(c: StackConfig, **changes: Any) -> StackConfig:
    """The same stack with some server settings changed (no re-validation: a what-if)."""
    return c.model_copy(update={"server": c.server.model_copy(update=changes)})


def largest_true(low: int, high: int, ok: Callable[[int], bool]) -> int:
    """Largest n in [low, high] with ok(n), for ok true up to a point and false after; low - 1 if none."""
    best = low - 1
    while low <= high:
        mid = (low + high) // 2
        if ok(mid):
            best, low = mid, mid + 1
        else:
            high = mid - 1
    return best


def most_slots(c: StackConfig, vm: GpuVmSize, cache_type: str, gpus: int = 1) -> SlotFit:
    """Most split slots (no unified KV) that each hold the worst-case request, with every GPU of a
    replica of `gpus` GPUs (equal shares, layer split) within its usable memory."""
    need = rules.request_tokens(c)
    usable = sizing.usable_gpu_bytes(vm, c.server.vram_headroom)

    def trial(slots: int) -> StackConfig:
        return with_server(
            c,
            context_size=sizing.min_context_for(slots, need),
            parallel=slots,
            kv_unified=False,
            cache_type_k=cache_type,
            cache_type_v=cache_type,
            gpus_per_replica=gpus,
            split_mode="layer",
            tensor_split=[],
        )

    def fullest(t: StackConfig) -> int:
        return max(d.total_bytes for d in multigpu.per_gpu(t))

    def fits(slots: int) -> bool:
        t = trial(slots)
        return rules.slot_tokens(t) >= need and fullest(t) <= usable

    slots = largest_true(1, sizing.MAX_PARALLEL, fits)
    if slots < 1:
        return SlotFit(vm.name, cache_type, gpus, 0, 0, 0, usable)
    best = trial(slots)
    return SlotFit(vm.name, cache_type, gpus, slots, best.server.context_size, fullest(best), usable)


def slot_table(c: StackConfig) -> list[list[SlotFit]]:
    """most_slots for every A10 size (rows, smallest GPU memory first) and KV cache type (columns);
    a size with several GPUs has a row for replicas of one GPU and one for a replica of all of them."""
    sizes = sorted(GPU_VM_SIZES.values(), key=lambda v: (v.gpu_memory_gb, v.vcpus))
    return [[most_slots(c, vm, t, gpus) for t in KV_CACHE_TYPES] for vm in sizes for gpus in sorted({1, vm.gpus})]


def field_bounds(field: str) -> tuple[int, int]:
    """The ge/le limits the schema puts on a request budget field."""
    meta = RequestBudget.model_fields[field].metadata
    low = next(m.ge for m in meta if hasattr(m, "ge"))
    high = next(m.le for m in meta if hasattr(m, "le"))
    return low, high


def largest_image_max_tokens(c: StackConfig) -> ImageFit:
    """Largest requestBudget.imageMaxTokens whose worst-case request still fits the configured slots."""
    b, per_slot = c.server.request_budget, rules.slot_tokens(c)
    if b.images == 0:
        return ImageFit(None, per_slot, rules.request_tokens(c), "the request budget has no images")
    low, high = field_bounds("image_max_tokens")

    def need(cap: int) -> int:
        return sizing.worst_case_request_tokens(b.images, cap, b.prompt_tokens, b.output_tokens)

    cap = largest_true(low, high, lambda n: need(n) <= per_slot)
    if cap < low:
        return ImageFit(None, per_slot, rules.request_tokens(c), f"not even {low} tokens per image fit a slot")
    return ImageFit(cap, per_slot, need(cap), "")

"""What a stack costs at list prices: the system pool, the GPU pool from the fewest nodes it keeps
to the most, cluster management and the model volume, per hour and per 30-day month.

A stack that scales to zero keeps its GPU nodes only in `autoscaling.activeHours`: its low end is
that schedule, averaged over the week. Pure; prices come from the dated table in core.catalog. A
price the table lacks is reported as missing with its reason and how to fetch it, never guessed,
and the totals say which items they leave out.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import rules, sizing
from core.catalog import (
    AZURE_FILES_PREMIUM_MIN_GIB,
    HOURS_PER_MONTH,
    PRICES_CHECKED,
    STORAGE_CLASS_BILLING,
    ListPrice,
    list_price,
    premium_ssd_tier,
)
from core.config import ActiveHours, StackConfig

HOURS_PER_WEEK = 7 * 24


@dataclass(frozen=True)
class CostLine:
    item: str  # what a reader looks for: "GPU pool", "Model volume"
    what: str  # what is billed: "0-1 x Standard_NV36ads_A10_v5"
    min_hourly: float | None  # USD per hour at the low end; None: no list price recorded
    max_hourly: float | None  # USD per hour at the high end
    note: str  # the price's source and date, or why there is none


@dataclass(frozen=True)
class CostEstimate:
    region: str
    lines: tuple[CostLine, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        """Items without a list price: the totals leave them out."""
        return tuple(line.item for line in self.lines if line.max_hourly is None)

    @property
    def min_hourly(self) -> float:
        return sum(line.min_hourly or 0.0 for line in self.lines)

    @property
    def max_hourly(self) -> float:
        return sum(line.max_hourly or 0.0 for line in self.lines)


def monthly(hourly: float) -> float:
    return hourly * HOURS_PER_MONTH


def _note(price: ListPrice | None, region: str, item: str) -> str:
    if price is None:
        return f"no list price for {item} in {region}; `make prices REGIONS={region}` fetches it"
    if price.usd is None:
        return f"no list price for {item}: {price.source} ({price.as_of}); `make prices` fetches it"
    source = f"[{price.source}]({price.url})" if price.url else price.source
    return f"${price.usd:.2f}/{price.per} ({source}, {price.as_of})"


def _line(item: str, what: str, region: str, key: str, low: float, high: float) -> CostLine:
    """A line billed as `low` to `high` units of the price of `key`."""
    price = list_price(region, key)
    hourly = price.hourly if price else None
    if hourly is None:
        return CostLine(item, what, None, None, _note(price, region, key))
    return CostLine(item, what, hourly * low, hourly * high, _note(price, region, key))


def cron_days(field: str) -> set[int]:
    """The days of a cron day-of-week field: "1-5" -> Monday to Friday (0 and 7 are both Sunday)."""
    days: set[int] = set()
    for part in field.split(","):
        low, _, high = part.partition("-")
        first = 0 if low == "*" else int(low)
        last = 6 if low == "*" and not high else int(high or low)
        days |= {day % 7 for day in range(first, last + 1)}
    return days


def window_hours_per_week(h: ActiveHours) -> float:
    """Hours a week inside the window: its daily length (past midnight if end <= start) times its days."""
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (h.start, h.end))
    return (end - start) % (24 * 60) / 60 * len(cron_days(h.days))


def gpu_line(c: StackConfig) -> CostLine:
    """The GPU pool from the fewest nodes it keeps to the most; a scale-to-zero stack keeps the
    nodes of one replica in its active hours and `gpuPool.minCount` outside them."""
    pool, a, region = c.cluster.gpu_pool, c.autoscaling, c.cluster.location
    vm = rules.gpu_vm(c)
    what = f"{pool.min_count}-{pool.max_count} x {pool.vm_size}"
    fewest = float(pool.min_count)
    if a.enabled and a.min_replicas == 0 and a.active_hours is not None and vm is not None:
        hours = window_hours_per_week(a.active_hours)
        in_window = max(pool.min_count, sizing.gpu_nodes_for(1, vm))
        fewest = pool.min_count + (in_window - pool.min_count) * hours / HOURS_PER_WEEK
        what += f"; {in_window} in autoscaling.activeHours, {hours:g} of {HOURS_PER_WEEK} hours a week"
    line = _line("GPU pool", what, region, pool.vm_size, fewest, pool.max_count)
    if not pool.spot:
        return line
    return CostLine(
        line.item,
        what + " (spot)",
        line.min_hourly,
        line.max_hourly,
        "spot: at most the on-demand price shown (spotMaxPrice -1), usually far less; " + line.note,
    )


def volume_line(c: StackConfig) -> CostLine:
    st, region = c.model.storage, c.cluster.location
    billing = STORAGE_CLASS_BILLING.get(st.storage_class)
    what = f"{st.size_gi}Gi {st.storage_class}"
    if billing == "premium-ssd":
        tier = premium_ssd_tier(st.size_gi)
        if tier is None:
            return CostLine("Model volume", what, None, None, f"{st.size_gi}Gi is above the Premium SSD tiers listed")
        return _line("Model volume", f"{what} (billed as {tier})", region, f"premium-ssd-{tier}", 1, 1)
    if billing == "azure-files-premium":
        gib = max(st.size_gi, AZURE_FILES_PREMIUM_MIN_GIB)
        return _line("Model volume", f"{what} (billed {gib} GiB)", region, "azure-files-premium-gib", gib, gib)
    return CostLine("Model volume", what, None, None, f"storage class {st.storage_class} has no billing rule here")


def estimate(c: StackConfig) -> CostEstimate:
    """List-price cost of the stack's nodes, cluster tier and model volume in cluster.location.

    OS disks are ephemeral where the size has the local disk for it (components/cluster.py: the
    system pool always, the GPU pool on every A10 size), so they are part of the VM price.
    """
    cl, region = c.cluster, c.cluster.location
    sys_pool, gpu_pool = cl.system_pool, cl.gpu_pool
    vm = rules.gpu_vm(c)
    gpu = gpu_line(c)
    lines: tuple[CostLine, ...] = (
        _line(
            "System pool",
            f"{sys_pool.count} x {sys_pool.vm_size}",
            region,
            sys_pool.vm_size,
            sys_pool.count,
            sys_pool.count,
        ),
        gpu,
        _line("Cluster management", f"AKS {cl.tier} tier", region, f"aks-tier-{cl.tier}", 1, 1),
        volume_line(c),
    )
    if c.ingress.enabled:
        lines += (
            CostLine(
                "Public endpoint",
                "Application Gateway for Containers (1 frontend, 1 association) with a WAF policy",
                None,
                None,
                "no list price for Application Gateway for Containers or its WAF: not found in a citable source "
                f"({PRICES_CHECKED})",
            ),
        )
    if vm is not None and not vm.ephemeral_os_disk:
        what = f"{gpu_pool.min_count}-{gpu_pool.max_count} x {gpu_pool.os_disk_size_gb} GB managed"
        lines += (CostLine("GPU OS disks", what, None, None, "managed OS disks are not priced here"),)
    return CostEstimate(region=region, lines=lines)

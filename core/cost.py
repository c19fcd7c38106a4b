"""What a stack costs at list prices: the system pool, the GPU pool at its minimum and maximum
node counts, cluster management and the model volume, per hour and per 30-day month.

Pure; prices come from the dated table in core.catalog. A price the table lacks is reported as
missing with its reason, never guessed, and the totals say which items they leave out.
"""

from __future__ import annotations

from dataclasses import dataclass

from core import rules
from core.catalog import (
    AZURE_FILES_PREMIUM_MIN_GIB,
    HOURS_PER_MONTH,
    LIST_PRICES,
    PRICES_CHECKED,
    STORAGE_CLASS_BILLING,
    ListPrice,
    list_price,
    premium_ssd_tier,
)
from core.config import StackConfig


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
    region_known: bool  # False: the price table has no row for this region
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
        return f"no list price for {item} in {region}"
    if price.usd is None:
        return f"no list price for {item}: {price.source} ({price.as_of})"
    source = f"[{price.source}]({price.url})" if price.url else price.source
    return f"${price.usd:.2f}/{price.per} ({source}, {price.as_of})"


def _line(item: str, what: str, region: str, key: str, low: float, high: float) -> CostLine:
    """A line billed as `low` to `high` units of the price of `key`."""
    price = list_price(region, key)
    hourly = price.hourly if price else None
    if hourly is None:
        return CostLine(item, what, None, None, _note(price, region, key))
    return CostLine(item, what, hourly * low, hourly * high, _note(price, region, key))


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
    gpu_what = f"{gpu_pool.min_count}-{gpu_pool.max_count} x {gpu_pool.vm_size}"
    gpu = _line("GPU pool", gpu_what, region, gpu_pool.vm_size, gpu_pool.min_count, gpu_pool.max_count)
    if gpu_pool.spot:
        gpu = CostLine(
            gpu.item,
            gpu_what + " (spot)",
            gpu.min_hourly,
            gpu.max_hourly,
            "spot: at most the on-demand price shown (spotMaxPrice -1), usually far less; " + gpu.note,
        )
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
    return CostEstimate(region=region, region_known=region in LIST_PRICES, lines=lines)

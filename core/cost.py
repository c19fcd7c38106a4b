"""What a stack costs at list prices: every item of the render that Azure bills, per hour and per
30-day month, from the fewest nodes the stack can ever run to the most.

The low end counts what is always on: the GPU nodes of every replica that can never scale away
(a fixed `server.replicas`, `autoscaling.minReplicas`, and the replica KEDA's active-hours trigger
holds inside its window, averaged over the week exactly as KEDA's cron scaler runs it). Pure;
prices come from the dated table in core.catalog. A price the table lacks is shown as not priced,
with its reason and how to fetch it, never guessed; the totals then say they are a lower bound, or
unknown when the item that dominates the bill (the GPU VMs) is the one without a price. Items
billed by use (GB of logs ingested, metric samples) carry their unit price and what it is per, and
stay out of the totals, which say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core import rules, sizing
from core.catalog import (
    AZURE_FILES_PREMIUM_MIN_GIB,
    HOURS_PER_MONTH,
    NOT_FETCHED,
    STORAGE_CLASS_BILLING,
    ListPrice,
    list_price,
    premium_ssd_tier,
)
from core.config import ActiveHours, StackConfig

HOURS_PER_WEEK = 7 * 24
MAKE_PRICES = "`make prices` fills it"

Bound = Literal["exact", "atLeast", "unknown"]


@dataclass(frozen=True)
class CostLine:
    item: str  # what a reader looks for: "GPU pool", "Model volume"
    what: str  # what is billed: "0-1 x Standard_NV36ads_A10_v5"
    min_hourly: float | None  # USD per hour at the low end; None: not priced, or billed by use
    max_hourly: float | None  # USD per hour at the high end
    note: str  # the price's source and date, or why there is none
    usage: str = ""  # billed by use: what the amount depends on ("the GB ingested a day"); outside the totals
    dominant: bool = False  # dominates the bill (the GPU VMs): without its price the total is unknown

    @property
    def priced(self) -> bool:
        return self.max_hourly is not None


@dataclass(frozen=True)
class CostEstimate:
    region: str
    lines: tuple[CostLine, ...]

    @property
    def fixed(self) -> tuple[CostLine, ...]:
        """The items billed by the hour or month whatever the traffic: what the totals add."""
        return tuple(line for line in self.lines if not line.usage)

    @property
    def missing(self) -> tuple[str, ...]:
        """Items billed by the hour or month that have no list price: the totals cannot hold them."""
        return tuple(line.item for line in self.fixed if not line.priced)

    @property
    def usage_based(self) -> tuple[str, ...]:
        """Items billed by use: never in the totals."""
        return tuple(line.item for line in self.lines if line.usage)

    @property
    def bound(self) -> Bound:
        """exact: every fixed item priced; atLeast: the totals leave some out; unknown: the items
        that dominate the bill have no price, so the totals say nothing about it."""
        if any(line.dominant and not line.priced for line in self.fixed):
            return "unknown"
        return "atLeast" if self.missing else "exact"

    @property
    def min_hourly(self) -> float:
        """The priced fixed items at the low end: the whole figure only when `bound` is exact."""
        return sum(line.min_hourly or 0.0 for line in self.fixed)

    @property
    def max_hourly(self) -> float:
        return sum(line.max_hourly or 0.0 for line in self.fixed)


def monthly(hourly: float) -> float:
    return hourly * HOURS_PER_MONTH


def unit_price(usd: float) -> str:
    """$3.20, $0.025, $0.167: cents, or every digit the source gives below them."""
    return f"${usd:.2f}" if round(usd, 2) == usd else f"${usd:g}"


def _note(price: ListPrice | None, region: str, key: str) -> str:
    if price is None:
        return f"not priced: no list price for {key} in {region} in the table; `make prices REGIONS={region}` fills it"
    if price.usd is None and key in NOT_FETCHED:
        return (
            f"not priced: no list price for {key}, {price.source} ({price.as_of}); no retail prices API meter "
            "is recorded for `make prices` to fetch it yet"
        )
    if price.usd is None:
        return f"not priced: no list price for {key}, {price.source} ({price.as_of}); {MAKE_PRICES}"
    source = f"[{price.source}]({price.url})" if price.url else price.source
    return f"{unit_price(price.usd)}/{price.per} ({source}, {price.as_of})"


def _priced(
    item: str, what: str, region: str, keys: tuple[str, ...], low: float, high: float, dominant: bool = False
) -> CostLine:
    """A line billed as `low` to `high` units of the sum of the prices of `keys` (one each)."""
    prices = [list_price(region, key) for key in keys]
    note = "; ".join(_note(p, region, k) for p, k in zip(prices, keys, strict=True))
    hourly = [p.hourly if p else None for p in prices]
    if any(h is None for h in hourly):
        return CostLine(item, what, None, None, note, dominant=dominant)
    total = sum(h for h in hourly if h is not None)
    return CostLine(item, what, total * low, total * high, note, dominant=dominant)


def _usage(item: str, what: str, region: str, key: str, per: str, depends_on: str) -> CostLine:
    """A line billed by use: its unit price, what the unit is and what the amount depends on; the
    render cannot know the amount, so the line is never in the totals."""
    price = list_price(region, key)
    if price is None or price.usd is None:
        note = _note(price, region, key)
    else:
        source = f"[{price.source}]({price.url})" if price.url else price.source
        note = f"{unit_price(price.usd)} per {per} ({source}, {price.as_of})"
    return CostLine(item, what, None, None, f"{note}; billed by use, not in the total", usage=depends_on)


# --- the GPU nodes that are always on ----------------------------------------------------------


def window_hours_per_week(h: ActiveHours) -> float:
    """Hours a week that KEDA holds the active-hours replica (ActiveHours.active_minutes)."""
    return h.weekly_hours()


def always_on_replicas(c: StackConfig) -> int:
    """Server pods that never scale away: all of them without the autoscaler, else its minimum."""
    a = c.autoscaling
    return a.min_replicas if a.enabled else c.server.replicas


def gpu_line(c: StackConfig) -> CostLine:
    """The GPU pool from the nodes it can never give back to the most it may hold: the pool's
    minCount or the nodes of the always-on replicas, whichever is more; with active hours, the
    replica KEDA holds in its window, averaged over the week."""
    pool, a, region = c.cluster.gpu_pool, c.autoscaling, c.cluster.location
    vm = rules.gpu_vm(c)
    what = f"{pool.min_count}-{pool.max_count} x {pool.vm_size}"

    def nodes(replicas: int) -> int:
        held = sizing.gpu_nodes_for(replicas, vm, c.server.gpus_per_replica) if vm is not None else 0
        return min(max(pool.min_count, held), pool.max_count)

    kept = always_on_replicas(c)
    fewest = float(nodes(kept))
    if fewest > pool.min_count:
        reason = "server.replicas without autoscaling" if not a.enabled else "autoscaling.minReplicas"
        what += f"; {nodes(kept)} always on for {kept} replica(s) ({reason})"
    if a.enabled and a.active_hours is not None and nodes(max(kept, 1)) > nodes(kept):
        hours = window_hours_per_week(a.active_hours)
        in_window = nodes(max(kept, 1))
        fewest += (in_window - fewest) * hours / HOURS_PER_WEEK
        what += f"; {in_window} in autoscaling.activeHours, {hours:g} of {HOURS_PER_WEEK} hours a week as KEDA runs it"
    line = _priced("GPU pool", what, region, (pool.vm_size,), fewest, pool.max_count, dominant=True)
    if not pool.spot:
        return line
    return CostLine(
        line.item,
        what + " (spot)",
        line.min_hourly,
        line.max_hourly,
        "spot: at most the on-demand price shown (spotMaxPrice -1), usually far less; " + line.note,
        dominant=True,
    )


def volume_line(c: StackConfig) -> CostLine:
    st, region = c.model.storage, c.cluster.location
    billing = STORAGE_CLASS_BILLING.get(st.storage_class)
    what = f"{st.size_gi}Gi {st.storage_class}"
    if billing == "premium-ssd":
        tier = premium_ssd_tier(st.size_gi)
        if tier is None:
            return CostLine(
                "Model volume",
                what,
                None,
                None,
                f"not priced: {st.size_gi}Gi is above the Premium SSD tiers listed; `make prices` cannot fill it",
            )
        return _priced("Model volume", f"{what} (billed as {tier})", region, (f"premium-ssd-{tier}",), 1, 1)
    if billing == "azure-files-premium":
        gib = max(st.size_gi, AZURE_FILES_PREMIUM_MIN_GIB)
        return _priced("Model volume", f"{what} (billed {gib} GiB)", region, ("azure-files-premium-gib",), gib, gib)
    return CostLine(
        "Model volume",
        what,
        None,
        None,
        f"not priced: storage class {st.storage_class} has no billing rule in core/catalog.py "
        "(STORAGE_CLASS_BILLING); `make prices` cannot fill it",
    )


# --- every billed item of the render -----------------------------------------------------------


def estimate(c: StackConfig) -> CostEstimate:
    """List-price cost of every item of the render that Azure bills, in cluster.location.

    OS disks are ephemeral where the size has the local disk for it (specs/cluster.py: the system
    pool always, the GPU pool on every A10 size), so they are part of the VM price. The cluster's
    egress goes through AKS's Standard load balancer and one managed public IP (outboundType
    loadBalancer); an internal Service adds AKS's internal Standard load balancer.
    """
    cl, region = c.cluster, c.cluster.location
    sys_pool, gpu_pool = cl.system_pool, cl.gpu_pool
    vm = rules.gpu_vm(c)
    count = sys_pool.count
    lines: list[CostLine] = [
        _priced("System pool", f"{count} x {sys_pool.vm_size}", region, (sys_pool.vm_size,), count, count),
        gpu_line(c),
        _priced("Cluster management", f"AKS {cl.tier} tier", region, (f"aks-tier-{cl.tier}",), 1, 1),
        volume_line(c),
    ]
    if vm is not None and not vm.ephemeral_os_disk:
        what = f"{gpu_pool.min_count}-{gpu_pool.max_count} x {gpu_pool.os_disk_size_gb} GB managed"
        lines.append(CostLine("GPU OS disks", what, None, None, "not priced: managed OS disks have no rule here"))
    sku = c.registry.sku
    lines.append(_priced("Container registry", f"{sku} SKU, billed by the day", region, (f"acr-{sku}",), 1, 1))
    if c.image.builder == "acr":
        lines.append(
            _usage(
                "Image builds",
                "ACR Tasks builds of image/ (each image change)",
                region,
                "acr-task-vcpu-second",
                "vCPU-second",
                "the vCPU-seconds of each build",
            )
        )
    lines += [
        _priced("Load balancer", "AKS Standard load balancer, egress (outbound rule)", region, ("lb-standard",), 1, 1),
        _priced(
            "Public IP", "1 Standard static IPv4, the cluster's egress address", region, ("public-ip-standard",), 1, 1
        ),
    ]
    if c.service.type == "InternalLoadBalancer":
        lines.append(
            _priced(
                "Internal load balancer",
                "AKS internal Standard load balancer, the Service",
                region,
                ("lb-standard",),
                1,
                1,
            )
        )
    lines.append(
        _usage(
            "Load balancer data",
            "traffic through the Standard load balancer(s)",
            region,
            "lb-standard-data-gb",
            "GB",
            "the GB processed a month",
        )
    )
    if cl.monitoring:
        lines += [
            _usage(
                "Log Analytics",
                "Container Insights logs and inventory (ingestion)",
                region,
                "log-analytics-gb",
                "GB",
                "the GB ingested a day",
            ),
            _usage(
                "Managed Prometheus",
                "Azure Monitor workspace: llama-server, DCGM and cluster metrics",
                region,
                "prometheus-10m-samples",
                "10 million samples",
                "the samples ingested a day",
            ),
        ]
        if c.autoscaling.grafana:
            lines += [
                _priced("Managed Grafana", "Standard instance", region, ("grafana-standard-hour",), 1, 1),
                _usage(
                    "Managed Grafana users",
                    "people who sign in to it",
                    region,
                    "grafana-standard-user",
                    "active user",
                    "the active users a month",
                ),
            ]
    if c.ingress.enabled:
        keys = ("agc-waf-gateway-hour", "agc-waf-frontend-hour", "agc-waf-association-hour")
        lines += [
            _priced(
                "Public endpoint",
                "Application Gateway for Containers with WAF: 1 gateway, 1 frontend, 1 association",
                region,
                keys,
                1,
                1,
            ),
            _usage(
                "Public endpoint capacity",
                "Application Gateway for Containers capacity units, at WAF rates",
                region,
                "agc-waf-capacity-unit-hour",
                "capacity unit hour",
                "the capacity units used an hour",
            ),
        ]
    return CostEstimate(region=region, lines=tuple(lines))

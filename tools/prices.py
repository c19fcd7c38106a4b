"""Refreshes the list prices of summary.md from the Azure Retail Prices API (no sign-in needed).

usage: python -m tools.prices [--regions eastus,westeurope] [--api URL] [--out core/prices.json]

For each region (default: the regions of the Pulumi.<stack>.yaml files and those already in the
file), asks the API for every item the cost estimate prices (each A10 size and system pool size,
the AKS Standard tier, the Premium SSD tiers, Azure Files premium per GiB) and writes what it
answers to core/prices.json, dated. core/catalog.py reads that file over its hand-kept table, so
each figure in summary.md then names the API's meter as its source. An item the API does not
answer for a region (a size not offered there) is named and left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from core.catalog import FETCHED_PRICES, GPU_VM_SIZES, LIST_PRICES, RETAIL_PRICES_API
from core.config import PROJECT

ROOT = Path(__file__).resolve().parent.parent
Item = dict[str, Any]  # one entry of the API's Items


@dataclass(frozen=True)
class Query:
    """How one priced item is asked for and which of the API's answers is its list price."""

    key: str  # the item's key in the price table: a VM size, "aks-tier-Standard", "premium-ssd-P6"
    filter: str  # the OData $filter, without the region
    per: str  # "hour", "day", "month", or the unit of what is billed by use ("GB")
    keep: Callable[[Item], bool]  # the pay-as-you-go Linux meter among the answers
    global_meter: bool = False  # the API lists it under armRegionName 'Global' where the region has none


def pay_as_you_go(item: Item) -> bool:
    """A retail pay-as-you-go price in USD: not a reservation, a dev/test rate or another currency.
    The filter asks for Consumption already; the answer is checked anyway."""
    return item.get("type") == "Consumption" and item.get("currencyCode") == "USD"


def linux_on_demand(item: Item) -> bool:
    """A VM size's Linux pay-as-you-go meter: not Windows, not spot or low priority, billed by the hour."""
    names = f"{item.get('skuName', '')} {item.get('meterName', '')}"
    return (
        "Windows" not in item.get("productName", "")
        and "Spot" not in names
        and "Low Priority" not in names
        and item.get("unitOfMeasure") == "1 Hour"
    )


def unit(expected: str) -> Callable[[Item], bool]:
    return lambda i: i.get("unitOfMeasure") == expected


def queries(vm_sizes: list[str], ssd_tiers: list[str]) -> list[Query]:
    consumption = "priceType eq 'Consumption'"
    # Meter names as the API lists them (third-party readings of it, 2026): "<SKU> Registry Unit"
    # (1/Day), "Standard Included LB Rules and Outbound Rules" (1 Hour, region Global), "Standard
    # Data Processed" (1 GB), "Standard IPv4 Static Public IP" (1 Hour), "Analytics Logs Data
    # Ingestion" (1 GB, tiered: its first GB of each month are free).
    registries = [
        Query(
            f"acr-{sku}",
            f"serviceName eq 'Container Registry' and skuName eq '{sku}' and meterName eq '{sku} Registry Unit' "
            f"and {consumption}",
            "day",
            unit("1/Day"),
        )
        for sku in ("Basic", "Standard", "Premium")
    ]
    network = [
        Query(
            "lb-standard",
            "serviceName eq 'Load Balancer' and skuName eq 'Standard' and "
            f"meterName eq 'Standard Included LB Rules and Outbound Rules' and {consumption}",
            "hour",
            unit("1 Hour"),
            global_meter=True,
        ),
        Query(
            "lb-standard-data-gb",
            f"serviceName eq 'Load Balancer' and skuName eq 'Standard' and meterName eq 'Standard Data Processed' "
            f"and {consumption}",
            "GB",
            unit("1 GB"),
            global_meter=True,
        ),
        Query(
            "public-ip-standard",
            "serviceName eq 'Virtual Network' and productName eq 'IP Addresses' and skuName eq 'Standard' and "
            f"meterName eq 'Standard IPv4 Static Public IP' and {consumption}",
            "hour",
            unit("1 Hour"),
        ),
        Query(
            "log-analytics-gb",
            f"serviceName eq 'Log Analytics' and meterName eq 'Analytics Logs Data Ingestion' and {consumption}",
            "GB",
            unit("1 GB"),
        ),
    ]
    vms = [
        Query(
            size,
            f"serviceName eq 'Virtual Machines' and armSkuName eq '{size}' and {consumption}",
            "hour",
            linux_on_demand,
        )
        for size in vm_sizes
    ]
    disks = [
        Query(
            f"premium-ssd-{tier}",
            f"serviceName eq 'Storage' and skuName eq '{tier} LRS' and meterName eq '{tier} LRS Disk' and {consumption}",
            "month",
            lambda i: "Month" in i.get("unitOfMeasure", ""),
        )
        for tier in ssd_tiers
    ]
    return [
        *vms,
        Query(
            "aks-tier-Standard",
            f"serviceName eq 'Azure Kubernetes Service' and meterName eq 'Standard Uptime SLA' and {consumption}",
            "hour",
            lambda i: i.get("unitOfMeasure") == "1 Hour",
        ),
        *disks,
        Query(
            "azure-files-premium-gib",
            "serviceName eq 'Storage' and productName eq 'Premium Files' and skuName eq 'Premium LRS' "
            f"and meterName eq 'Premium LRS Provisioned' and {consumption}",
            "month",
            lambda i: "GiB/Month" in i.get("unitOfMeasure", ""),
        ),
        *registries,
        *network,
    ]


def fetch_items(api: str, odata_filter: str, timeout_s: float = 30) -> list[Item]:
    """Every item the API answers for the filter, following its pages."""
    url: str | None = f"{api}?{urllib.parse.urlencode({'$filter': odata_filter})}"
    items: list[Item] = []
    while url:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            page = json.load(response)
        items += page.get("Items") or []
        url = page.get("NextPageLink")
        if url and not same_origin(url, api):
            raise ValueError(f"the API's NextPageLink {url[:200]!r} leaves {api}; refusing to follow it")
    return items


def same_origin(url: str, api: str) -> bool:
    """Whether a page link stays on the API's scheme, host and port (not a host that merely starts alike)."""
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(api)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def answered(q: Query, region: str, api: str) -> list[Item]:
    """The API's pay-as-you-go USD answers for the item in the region (or under Global, for a meter
    the API lists there); of a tiered meter, the paid tier (its first units are free)."""
    found: list[Item] = []
    for where in (region, "Global") if q.global_meter else (region,):
        found = [
            i for i in fetch_items(api, f"armRegionName eq '{where}' and {q.filter}") if pay_as_you_go(i) and q.keep(i)
        ]
        if found:
            break
    top = max((float(i.get("tierMinimumUnits") or 0) for i in found), default=0.0)
    return [i for i in found if float(i.get("tierMinimumUnits") or 0) == top]


def price_of(q: Query, region: str, api: str) -> dict[str, Any] | None:
    """The item's list price in the region from the API, or None when the API has no such meter there."""
    found = answered(q, region, api)
    prices = {float(i["retailPrice"]) for i in found}
    if not prices:
        return None
    if len(prices) > 1:
        raise ValueError(f"{q.key} in {region}: the API answers several prices {sorted(prices)}; narrow its filter")
    item = found[0]
    return {
        "usd": prices.pop(),
        "per": q.per,
        "meter": f"{item.get('productName', '')} / {item.get('meterName', '')}",
        "effectiveStartDate": item.get("effectiveStartDate", ""),
    }


def stack_regions() -> set[str]:
    """The regions the repository's stacks run in (cluster.location; eastus when unset)."""
    regions = set()
    for path in ROOT.glob("Pulumi.*.yaml"):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        regions.add((config.get(f"{PROJECT}:cluster") or {}).get("location", "eastus"))
    return regions


def system_pool_sizes() -> set[str]:
    sizes = {"Standard_D4ds_v5"}  # the schema's default
    for path in ROOT.glob("Pulumi.*.yaml"):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        size = ((config.get(f"{PROJECT}:cluster") or {}).get("systemPool") or {}).get("vmSize")
        if size:
            sizes.add(size)
    return sizes


def refresh(regions: list[str], api: str, out: Path, today: str) -> list[str]:
    """Writes the API's prices for `regions` into `out` (other regions kept); returns what it lacked."""
    known = json.loads(out.read_text()) if out.exists() else {}
    table: dict[str, dict[str, Any]] = dict(known.get("regions") or {})
    tiers = sorted({k.removeprefix("premium-ssd-") for r in LIST_PRICES.values() for k in r if "premium-ssd-" in k})
    asked = queries(sorted(set(GPU_VM_SIZES) | system_pool_sizes()), tiers)
    missing = []
    for region in regions:
        table[region] = {}
        for q in asked:
            price = price_of(q, region, api)
            if price is None:
                missing.append(f"{q.key} in {region}")
            else:
                table[region][q.key] = price
    out.write_text(json.dumps({"checked": today, "api": api, "regions": table}, indent=2, sort_keys=True) + "\n")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--regions", default="", help="comma-separated Azure regions (default: the stacks' and the file's)"
    )
    parser.add_argument("--api", default=RETAIL_PRICES_API)
    parser.add_argument("--out", type=Path, default=FETCHED_PRICES)
    args = parser.parse_args(argv)
    regions = [r.strip() for r in args.regions.split(",") if r.strip()]
    if not regions:
        known = json.loads(args.out.read_text()).get("regions", {}) if args.out.exists() else {}
        regions = sorted(stack_regions() | set(known))
    try:
        missing = refresh(regions, args.api, args.out, datetime.now(UTC).date().isoformat())
    except (OSError, ValueError) as err:
        print(f"make prices: {err}; {args.out} is unchanged", file=sys.stderr)
        return 1
    for item in missing:
        print(f"no list price from the API for {item} (not offered there, or another meter name)")
    print(f"wrote {args.out} for {', '.join(regions)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

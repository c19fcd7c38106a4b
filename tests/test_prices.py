"""`make prices` against a local fake of the Azure Retail Prices API (127.0.0.1), and the cost of a
stack priced from what it wrote."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core import catalog, cost
from core.catalog import GPU_VM_SIZES
from core.config import StackConfig
from tests.conftest import ROOT
from tools import prices

# Made-up figures in the API's shape: the test checks which meter is chosen, not Azure's prices.
VM_HOURLY = {"Standard_NV36ads_A10_v5": 3.5, "Standard_D4ds_v5": 0.25}
DISK_MONTHLY = {"P6": 10.0, "P10": 20.0}
ACR_DAILY = {"Basic": 0.2, "Standard": 0.7, "Premium": 1.7}


def item(**fields: Any) -> dict[str, Any]:
    return {"currencyCode": "USD", "type": "Consumption", "effectiveStartDate": "2026-01-01T00:00:00Z", **fields}


def variants(linux: float, **fields: Any) -> list[dict[str, Any]]:
    """Every meter type the API lists beside the pay-as-you-go one, as Azure does: a reservation, a
    dev/test rate, the same meter in another currency, and the pay-as-you-go one with its savings plans."""
    return [
        item(**fields, retailPrice=linux * 6000, type="Reservation", reservationTerm="1 Year"),
        item(**fields, retailPrice=linux / 2, type="DevTestConsumption"),
        item(**fields, retailPrice=linux * 0.9, currencyCode="EUR"),
        item(**fields, retailPrice=linux, savingsPlan=[{"term": "1 Year", "retailPrice": linux / 3}]),
    ]


def answer(odata_filter: str) -> list[dict[str, Any]]:
    """What the fake API answers: the Linux pay-as-you-go meter among Windows, spot, low priority,
    reservation, dev/test and other-currency ones, as Azure lists them; it ignores priceType, as a
    filter may be lost on the way."""
    quoted = dict(re.findall(r"(\w+) eq '([^']*)'", odata_filter))
    region, service = quoted.get("armRegionName"), quoted.get("serviceName")
    if service == "Load Balancer":  # the API lists this meter under Global, not the region
        if region != "Global":
            return []
        if quoted.get("meterName") == "Standard Data Processed":
            return variants(0.006, productName="Load Balancer", skuName="Standard",
                            meterName="Standard Data Processed", unitOfMeasure="1 GB")  # fmt: skip
        return variants(0.03, productName="Load Balancer", skuName="Standard",
                        meterName="Standard Included LB Rules and Outbound Rules", unitOfMeasure="1 Hour")  # fmt: skip
    if region != "westeurope":
        return []
    if service == "Virtual Machines":
        size = quoted["armSkuName"]
        if size not in VM_HOURLY:
            return []
        meter = size.removeprefix("Standard_").replace("_", " ")
        linux, product = VM_HOURLY[size], "Virtual Machines NVadsA10 v5 Series"
        return [
            item(retailPrice=linux * 2, productName=f"{product} Windows", skuName=meter, meterName=meter, unitOfMeasure="1 Hour"),
            item(retailPrice=linux / 5, productName=product, skuName=f"{meter} Spot", meterName=f"{meter} Spot", unitOfMeasure="1 Hour"),
            item(retailPrice=linux / 4, productName=product, skuName=f"{meter} Low Priority", meterName=f"{meter} Low Priority", unitOfMeasure="1 Hour"),
            *variants(linux, productName=product, skuName=meter, meterName=meter, unitOfMeasure="1 Hour"),
        ]  # fmt: skip
    if service == "Azure Kubernetes Service":
        return variants(
            0.1, productName="Azure Kubernetes Service", meterName="Standard Uptime SLA", unitOfMeasure="1 Hour"
        )
    if service == "Container Registry":
        sku = quoted["skuName"]
        return variants(ACR_DAILY[sku], productName="Container Registry", skuName=sku,
                        meterName=f"{sku} Registry Unit", unitOfMeasure="1/Day")  # fmt: skip
    if service == "Virtual Network":
        return variants(0.004, productName="IP Addresses", skuName="Standard",
                        meterName="Standard IPv4 Static Public IP", unitOfMeasure="1 Hour")  # fmt: skip
    if service == "Log Analytics":  # tiered: the first units of a month are free
        meter = {"productName": "Log Analytics", "skuName": "Analytics Logs",
                 "meterName": "Analytics Logs Data Ingestion", "unitOfMeasure": "1 GB"}  # fmt: skip
        return [item(**meter, retailPrice=0.0, tierMinimumUnits=0.0), *variants(2.5, **meter, tierMinimumUnits=5.0)]
    if quoted.get("productName") == "Premium Files":
        return variants(
            0.16, productName="Premium Files", meterName="Premium LRS Provisioned", unitOfMeasure="1 GiB/Month"
        )
    tier = quoted.get("skuName", "").removesuffix(" LRS")
    if tier in DISK_MONTHLY:
        return variants(DISK_MONTHLY[tier], productName="Premium SSD Managed Disks",
                        meterName=f"{tier} LRS Disk", unitOfMeasure="1/Month")  # fmt: skip
    return []


class FakeApi(http.server.BaseHTTPRequestHandler):
    """Answers in pages of two items, as the real API pages with NextPageLink."""

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        self.server.filters.append(query["$filter"][0])  # type: ignore[attr-defined]
        items = answer(query["$filter"][0])
        skip = int(query.get("$skip", ["0"])[0])
        page: dict[str, Any] = {"BillingCurrency": "USD", "Items": items[skip : skip + 2], "NextPageLink": None}
        if skip + 2 < len(items):
            # As the real API does: the whole query again, with its own parameters, in the link.
            rest = urllib.parse.urlencode(
                {"api-version": "2023-01-01-preview", "$filter": query["$filter"][0], "$skip": skip + 2}
            )
            page["NextPageLink"] = f"http://127.0.0.1:{self.server.server_port}/api/retail/prices?{rest}"
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, list[str]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    server.filters = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/retail/prices", server.filters  # type: ignore[attr-defined]
    server.shutdown()


def test_make_prices_writes_the_linux_pay_as_you_go_meters_of_each_item(api, tmp_path: Path):
    url, _ = api
    out = tmp_path / "prices.json"
    assert prices.main(["--api", url, "--regions", "westeurope", "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    region = written["regions"]["westeurope"]
    assert region["Standard_NV36ads_A10_v5"]["usd"] == 3.5  # not the Windows or the spot meter
    assert region["Standard_D4ds_v5"] == {
        "usd": 0.25,
        "per": "hour",
        "meter": "Virtual Machines NVadsA10 v5 Series / D4ds v5",
        "effectiveStartDate": "2026-01-01T00:00:00Z",
    }
    assert (region["aks-tier-Standard"]["usd"], region["premium-ssd-P6"]["per"]) == (0.1, "month")
    assert region["azure-files-premium-gib"]["usd"] == 0.16
    assert written["api"] == url and re.fullmatch(r"\d{4}-\d\d-\d\d", written["checked"])


def test_make_prices_keeps_only_the_retail_usd_pay_as_you_go_meter_of_every_item(api, tmp_path: Path):
    """Not the reservation, dev/test, EUR, Windows, spot or low-priority meters the API lists beside it."""
    url, _ = api
    out = tmp_path / "prices.json"
    assert prices.main(["--api", url, "--regions", "westeurope", "--out", str(out)]) == 0
    region = json.loads(out.read_text())["regions"]["westeurope"]
    got = {key: (p["usd"], p["per"]) for key, p in region.items()}
    assert got == {
        "Standard_NV36ads_A10_v5": (3.5, "hour"),
        "Standard_D4ds_v5": (0.25, "hour"),
        "aks-tier-Standard": (0.1, "hour"),
        "premium-ssd-P6": (10.0, "month"),
        "premium-ssd-P10": (20.0, "month"),
        "azure-files-premium-gib": (0.16, "month"),
        "acr-Basic": (0.2, "day"),
        "acr-Standard": (0.7, "day"),
        "acr-Premium": (1.7, "day"),
        "lb-standard": (0.03, "hour"),  # from Global: the region lists no such meter
        "lb-standard-data-gb": (0.006, "GB"),
        "public-ip-standard": (0.004, "hour"),
        "log-analytics-gb": (2.5, "GB"),  # the paid tier, not the free first units
    }


def test_a_meter_only_in_the_region_is_not_looked_up_under_global(api, tmp_path: Path):
    url, filters = api
    prices.main(["--api", url, "--regions", "westeurope", "--out", str(tmp_path / "p.json")])
    assert not any("armRegionName eq 'Global'" in f and "Virtual Machines" in f for f in filters)
    assert any("armRegionName eq 'Global'" in f and "Load Balancer" in f for f in filters)


@pytest.mark.parametrize(
    ("variant", "kept"),
    [
        ({"type": "Consumption", "currencyCode": "USD"}, True),
        ({"type": "consumption", "currencyCode": "USD"}, False),  # one step from the right type
        ({"type": "DevTestConsumption", "currencyCode": "USD"}, False),
        ({"type": "Reservation", "currencyCode": "USD"}, False),
        ({"type": "Consumption", "currencyCode": "usd"}, False),
        ({"type": "Consumption", "currencyCode": "EUR"}, False),
        ({"currencyCode": "USD"}, False),  # no type: not known to be pay-as-you-go
    ],
)
def test_only_a_usd_consumption_price_is_pay_as_you_go(variant: dict[str, str], kept: bool):
    assert prices.pay_as_you_go(variant) is kept


def test_make_prices_asks_each_item_in_the_region_and_names_those_the_api_lacks(api, tmp_path: Path, capsys):
    url, filters = api
    prices.main(["--api", url, "--regions", "westeurope", "--out", str(tmp_path / "p.json")])
    assert all(
        ("armRegionName eq 'westeurope'" in f or "armRegionName eq 'Global'" in f) and "priceType eq 'Consumption'" in f
        for f in filters
    )
    asked = {m for f in filters for m in re.findall(r"armSkuName eq '(\w+)'", f)}
    assert set(GPU_VM_SIZES) | {"Standard_D4ds_v5"} <= asked
    printed = capsys.readouterr().out
    assert "no list price from the API for Standard_NV6ads_A10_v5 in westeurope" in printed


def test_a_refresh_keeps_the_regions_it_was_not_asked_for(api, tmp_path: Path):
    url, _ = api
    out = tmp_path / "prices.json"
    other = {"Standard_D4ds_v5": {"usd": 0.2, "per": "hour", "meter": "m", "effectiveStartDate": ""}}
    out.write_text(json.dumps({"checked": "2026-01-01", "api": url, "regions": {"eastus": other}}))
    prices.main(["--api", url, "--regions", "westeurope", "--out", str(out)])
    assert json.loads(out.read_text())["regions"]["eastus"] == other


def test_an_unreachable_api_leaves_the_file_unchanged_and_says_so(tmp_path: Path, capsys):
    out = tmp_path / "prices.json"
    out.write_text("{}")
    assert prices.main(["--api", "http://127.0.0.1:9/none", "--regions", "eastus", "--out", str(out)]) == 1
    assert out.read_text() == "{}" and "is unchanged" in capsys.readouterr().err


def test_a_stack_outside_eastus_is_priced_in_full_from_what_make_prices_wrote(api, tmp_path, monkeypatch):
    url, _ = api
    out = tmp_path / "prices.json"
    prices.main(["--api", url, "--regions", "westeurope", "--out", str(out)])
    table = catalog.with_fetched(catalog.LIST_PRICES, json.loads(out.read_text()))
    monkeypatch.setattr(catalog, "LIST_PRICES", table)
    dev_like = StackConfig.model_validate(
        {
            "cluster": {"location": "westeurope", "gpuPool": {"minCount": 0, "maxCount": 1}},
            "autoscaling": {"enabled": True, "minReplicas": 0, "activeHours": {}},
        }
    )
    est = cost.estimate(dev_like)
    assert est.missing == ()
    gpu = next(line for line in est.lines if line.item == "GPU pool")
    assert gpu.note.startswith(
        "$3.50/hour ([Azure Retail Prices API, Virtual Machines NVadsA10 v5 Series / NV36ads A10 v5]"
    )


def test_make_prices_passes_the_regions_on():
    result = subprocess.run(
        ["make", "-n", "prices", "REGIONS=westeurope"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert '-m tools.prices --regions "westeurope"' in result.stdout


@pytest.mark.parametrize(
    ("link", "same"),
    [
        ("https://prices.azure.com/api/retail/prices?$filter=x&$skip=100", True),
        ("https://PRICES.azure.com/api/retail/prices?$skip=100", True),  # host names ignore case
        ("https://prices.azure.com.evil.example/api/retail/prices?$skip=100", False),  # merely starts alike
        ("http://prices.azure.com/api/retail/prices?$skip=100", False),  # TLS dropped
        ("https://prices.azure.com:8443/api/retail/prices", False),
        ("https://evil.example/?u=https://prices.azure.com", False),
    ],
)
def test_a_next_page_is_followed_only_on_the_apis_own_origin(link: str, same: bool):
    assert prices.same_origin(link, "https://prices.azure.com/api/retail/prices") is same


def test_make_prices_refuses_a_next_page_on_another_host(tmp_path: Path, capsys):
    class Leaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"Items": [], "NextPageLink": "http://127.0.0.2:9/api/retail/prices?$skip=100"}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Leaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "prices.json"
    out.write_text("{}")
    try:
        url = f"http://127.0.0.1:{server.server_port}/api/retail/prices"
        assert prices.main(["--api", url, "--regions", "westeurope", "--out", str(out)]) == 1
    finally:
        server.shutdown()
    assert out.read_text() == "{}" and "refusing to follow it" in capsys.readouterr().err

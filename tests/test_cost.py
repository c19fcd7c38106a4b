"""Cost at list prices and what fits, two sections of summary.md."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import capacity, catalog, cost, rules, sizing
from core.catalog import GPU_VM_SIZES, HOURS_PER_MONTH, LIST_PRICES, premium_ssd_tier
from core.config import StackConfig
from core.summary import summary_data, summary_markdown
from tests.conftest import ROOT

NV36 = GPU_VM_SIZES["Standard_NV36ads_A10_v5"]


def stack(**sections: dict[str, Any]) -> StackConfig:
    return StackConfig.model_validate(sections)


def line(est: cost.CostEstimate, item: str) -> cost.CostLine:
    return next(x for x in est.lines if x.item == item)


# --- the price table -------------------------------------------------------------------------


def test_every_recorded_price_has_a_source_and_a_date():
    for region, items in LIST_PRICES.items():
        for item, price in items.items():
            assert price.source, f"{region}/{item} has no source"
            assert len(price.as_of) == 10 and price.as_of[4] == "-", f"{region}/{item}: as_of {price.as_of!r}"


def test_a_price_read_from_a_page_links_it_in_the_summary():
    free = line(cost.estimate(stack(cluster={"tier": "Free"})), "Cluster management")
    assert "](https://learn.microsoft.com/azure/aks/free-standard-pricing-tiers)" in free.note


@pytest.mark.parametrize(("size_gi", "tier"), [(60, "P6"), (64, "P6"), (65, "P10"), (128, "P10"), (4096, "P50")])
def test_a_premium_disk_is_billed_as_the_smallest_tier_that_holds_it(size_gi: int, tier: str):
    assert premium_ssd_tier(size_gi) == tier


# --- cost ------------------------------------------------------------------------------------


def test_gpu_pool_costs_its_hourly_price_per_node_from_min_to_max_count():
    est = cost.estimate(stack(cluster={"gpuPool": {"minCount": 1, "maxCount": 3}}))
    gpu = line(est, "GPU pool")
    assert (gpu.min_hourly, gpu.max_hourly) == pytest.approx((3.20, 9.60))


def test_gpu_pool_whose_replicas_autoscale_to_zero_costs_nothing_at_its_minimum():
    c = stack(
        cluster={"gpuPool": {"minCount": 0, "maxCount": 1}},
        autoscaling={"enabled": True, "minReplicas": 0, "activeHours": {"days": "1-5"}},
    )
    assert (
        cost.gpu_line(
            c.model_copy(update={"autoscaling": c.autoscaling.model_copy(update={"active_hours": None})})
        ).min_hourly
        == 0
    )


# --- the low end counts what is always on ------------------------------------------------------


@pytest.mark.parametrize(("replicas", "nodes"), [(1, 1), (2, 2), (3, 3)])
def test_without_autoscaling_every_replica_keeps_its_gpu_node_at_the_low_end(replicas: int, nodes: int):
    """minCount 0 is the cluster autoscaler's floor; the Deployment's replicas never leave, so their nodes stay."""
    c = stack(
        cluster={"gpuPool": {"minCount": 0, "maxCount": 3}},
        server={"replicas": replicas},
        model={"storage": {"sizeGi": 100, "storageClass": "azurefile-csi-premium", "accessMode": "ReadWriteMany"}},
    )
    gpu = line(cost.estimate(c), "GPU pool")
    assert gpu.min_hourly == pytest.approx(3.20 * nodes)
    assert f"{nodes} always on for {replicas} replica(s) (server.replicas without autoscaling)" in gpu.what


def test_two_replicas_on_a_two_gpu_size_keep_one_node():
    c = stack(cluster={"gpuPool": {"vmSize": "Standard_NV72ads_A10_v5", "minCount": 0, "maxCount": 2}},
              server={"replicas": 2},
              model={"storage": {"sizeGi": 100, "storageClass": "azurefile-csi-premium", "accessMode": "ReadWriteMany"}})  # fmt: skip
    assert cost.gpu_line(c).what.endswith("; 1 always on for 2 replica(s) (server.replicas without autoscaling)")


@pytest.mark.parametrize(("min_replicas", "nodes"), [(0, 0), (1, 1), (2, 2)])
def test_autoscaling_keeps_the_nodes_of_its_minimum_replicas(min_replicas: int, nodes: int):
    c = stack(
        cluster={"gpuPool": {"minCount": 0, "maxCount": 2}},
        server={"replicas": max(min_replicas, 1)},
        autoscaling={"enabled": True, "minReplicas": min_replicas, "maxReplicas": 2,
                     **({"activeHours": {"days": "*", "start": "00:00", "end": "00:01"}} if min_replicas == 0 else {})},
        model={"storage": {"sizeGi": 100, "storageClass": "azurefile-csi-premium", "accessMode": "ReadWriteMany"}},
    )  # fmt: skip
    gpu = cost.gpu_line(c)
    window = 7 / 60 / 168 if min_replicas == 0 else 0  # one minute a day in the window
    assert gpu.min_hourly == pytest.approx(3.20 * (nodes + window))


def test_dev_with_autoscaling_off_costs_a_whole_node_not_a_saving():
    """dev as shipped, then autoscaling.enabled=false: one replica that never leaves its node."""
    base = dev_schedule()
    head = base.model_copy(update={"autoscaling": base.autoscaling.model_copy(update={"enabled": False})})
    low_base, low_head = (cost.monthly(line(cost.estimate(c), "GPU pool").min_hourly or 0) for c in (base, head))
    assert (round(low_base), round(low_head)) == (823, 2304)


def test_the_pool_min_count_still_wins_when_it_keeps_more_nodes_than_the_replicas():
    gpu = cost.gpu_line(stack(cluster={"gpuPool": {"minCount": 2, "maxCount": 3}}))
    assert gpu.min_hourly == pytest.approx(6.40)
    assert "always on" not in gpu.what


def test_a_month_is_30_days_of_the_hourly_price():
    assert cost.monthly(3.20) == pytest.approx(3.20 * 24 * 30)


def test_standard_tier_adds_its_cluster_hour_and_free_tier_nothing():
    standard = line(cost.estimate(stack(cluster={"tier": "Standard"})), "Cluster management")
    free = line(cost.estimate(stack(cluster={"tier": "Free"})), "Cluster management")
    assert (standard.max_hourly, free.max_hourly) == pytest.approx((0.10, 0.0))


def test_item_without_a_list_price_is_reported_missing_with_its_reason_not_guessed():
    est = cost.estimate(StackConfig())
    system = line(est, "System pool")
    assert system.max_hourly is None
    assert system.note.startswith("not priced: no list price for Standard_D4ds_v5")
    assert system.note.endswith("`make prices` fills it")
    assert "System pool" in est.missing


def test_totals_add_only_the_priced_items_and_say_they_are_a_lower_bound():
    est = cost.estimate(stack(cluster={"tier": "Standard", "gpuPool": {"minCount": 2, "maxCount": 3}}))
    fixed = 0.10 + 1.667 / 24 + 0.025 + 0.005  # tier, Premium registry, load balancer, public IP
    assert est.max_hourly == pytest.approx(3 * 3.20 + fixed)
    assert est.bound == "atLeast"


def test_a_region_without_prices_lists_every_item_with_the_command_that_prices_it():
    c = stack(cluster={"location": "swedencentral", "tier": "Free"})
    est = cost.estimate(c)
    system = line(est, "System pool")
    assert system.note == (
        "not priced: no list price for Standard_D4ds_v5 in swedencentral in the table; "
        "`make prices REGIONS=swedencentral` fills it"
    )
    assert line(est, "Cluster management").max_hourly == 0.0  # the Free tier is free in every region
    assert "| System pool | 2 x Standard_D4ds_v5 | not priced |" in summary_markdown(c, "dev")
    unpriced = set(summary_data(c, "dev")["cost"]["unpriced"])
    assert {"System pool", "GPU pool", "Model volume", "Container registry", "Load balancer", "Public IP"} <= unpriced
    assert summary_data(c, "dev")["cost"]["maxHourly"] is None  # no total without the GPU pool's price


def dev_schedule(**active_hours: str) -> StackConfig:
    return stack(
        cluster={"gpuPool": {"minCount": 0, "maxCount": 1}},
        autoscaling={"enabled": True, "minReplicas": 0, "activeHours": active_hours},
    )


def test_a_stack_that_scales_to_zero_is_priced_by_its_active_hours():
    """12 hours on 5 weekdays: 60 of 168 hours a week, about $823 of a $3.20/hour node in 720 hours."""
    gpu = line(cost.estimate(dev_schedule()), "GPU pool")
    assert gpu.min_hourly == pytest.approx(3.20 * 60 / 168)
    assert cost.monthly(gpu.min_hourly) == pytest.approx(822.86, abs=0.01)
    assert gpu.max_hourly == pytest.approx(3.20)
    assert gpu.what.endswith("; 1 in autoscaling.activeHours, 60 of 168 hours a week as KEDA runs it")


@pytest.mark.parametrize(
    ("hours", "weekly"),
    [
        ({"start": "08:00", "end": "20:00", "days": "1-5"}, 60),
        # Past midnight, as KEDA runs it: Monday-Thursday nights, and Friday 22:00 to Monday 06:00.
        ({"start": "22:00", "end": "06:00", "days": "1-5"}, 4 * 8 + 56),
        ({"start": "22:00", "end": "06:00", "days": "*"}, 56),  # every night: 8 hours each
        ({"start": "08:00", "end": "20:00", "days": "5"}, 12),  # one day: it does not wrap
        # Past midnight on one day: the end is Friday 08:00 too, so KEDA holds it until next Friday.
        ({"start": "20:00", "end": "08:00", "days": "5"}, 6 * 24 + 12),
        ({"start": "08:00", "end": "08:01", "days": "1-5"}, 5 / 60),  # one minute: the smallest window
        ({"start": "08:01", "end": "08:00", "days": "*"}, 7 * 24 - 7 / 60),  # all but a minute a day
        ({"start": "09:30", "end": "17:00", "days": "1,3,5"}, 22.5),
        ({"start": "00:00", "end": "12:00", "days": "*"}, 84),
        ({"start": "00:00", "end": "12:00", "days": "0"}, 12),  # Sunday; 7 is refused (KEDA's cron parser allows 0-6)
    ],
)
def test_the_window_counts_its_hours_on_its_days(hours: dict[str, str], weekly: float):
    assert cost.window_hours_per_week(dev_schedule(**hours).autoscaling.active_hours) == pytest.approx(weekly)  # type: ignore[arg-type]


def test_a_stack_that_keeps_its_replicas_is_priced_from_its_minimum_nodes():
    gpu = line(cost.estimate(stack(cluster={"gpuPool": {"minCount": 1, "maxCount": 2}})), "GPU pool")
    assert (gpu.min_hourly, gpu.max_hourly) == pytest.approx((3.20, 6.40))


def test_azure_files_volume_is_billed_at_least_its_minimum_share_size():
    c = stack(model={"storage": {"sizeGi": 60, "storageClass": "azurefile-csi-premium", "accessMode": "ReadWriteMany"}})
    assert "billed 100 GiB" in cost.volume_line(c).what


def test_premium_disk_volume_names_its_tier():
    assert "billed as P6" in cost.volume_line(StackConfig()).what


def test_spot_gpu_pool_says_the_price_is_an_upper_bound():
    gpu = line(cost.estimate(stack(cluster={"gpuPool": {"spot": True}})), "GPU pool")
    assert gpu.note.startswith("spot: at most the on-demand price")


@given(low=st.integers(0, 20), extra=st.integers(0, 20), system=st.integers(1, 10))
def test_cost_at_the_minimum_never_exceeds_the_maximum(low: int, extra: int, system: int):
    c = stack(cluster={"systemPool": {"count": system}, "gpuPool": {"minCount": low, "maxCount": max(low + extra, 1)}})
    est = cost.estimate(c)
    assert est.min_hourly <= est.max_hourly


# --- what fits -------------------------------------------------------------------------------


def test_reference_budget_fits_more_slots_with_a_smaller_kv_cache_type():
    c = StackConfig()
    f16, q8, q4 = (capacity.most_slots(c, NV36, t).slots for t in capacity.KV_CACHE_TYPES)
    assert 8 < f16 < q8 < q4


def test_a_size_whose_gpu_cannot_hold_the_model_fits_no_slot():
    fit = capacity.most_slots(StackConfig(), GPU_VM_SIZES["Standard_NV6ads_A10_v5"], "q4_0")
    assert (fit.slots, fit.context_size) == (0, 0)


def test_slot_table_has_every_a10_size_and_each_kv_cache_type():
    table = capacity.slot_table(StackConfig())
    assert {row[0].vm_size for row in table} == set(GPU_VM_SIZES)
    assert all([f.cache_type for f in row] == list(capacity.KV_CACHE_TYPES) for row in table)


@settings(max_examples=30, deadline=None)
@given(
    images=st.integers(0, 4),
    image_max_tokens=st.integers(64, 8192),
    prompt=st.integers(1, 4000),
    output=st.integers(1, 4000),
    cache_type=st.sampled_from(capacity.KV_CACHE_TYPES),
    vm_size=st.sampled_from(sorted(GPU_VM_SIZES)),
)
def test_most_slots_passes_the_preview_rules_and_one_more_slot_would_not(
    images: int, image_max_tokens: int, prompt: int, output: int, cache_type: str, vm_size: str
):
    budget = {"images": images, "imageMaxTokens": image_max_tokens, "promptTokens": prompt, "outputTokens": output}
    c = stack(server={"requestBudget": budget}, cluster={"gpuPool": {"vmSize": vm_size}})
    fit = capacity.most_slots(c, GPU_VM_SIZES[vm_size], cache_type)

    def problems(slots: int) -> list[str]:
        need = rules.request_tokens(c)
        trial = capacity.with_server(
            c,
            parallel=slots,
            context_size=sizing.min_context_for(slots, need),
            cache_type_k=cache_type,
            cache_type_v=cache_type,
        )
        return rules.slot_holds_request(trial) + rules.fits_gpu_memory(trial) + rules.context_within_model(trial)

    if fit.slots:
        assert problems(fit.slots) == []
    if fit.slots < sizing.MAX_PARALLEL:
        assert problems(fit.slots + 1) != []


def test_largest_image_cap_for_the_reference_slots_is_2070_with_no_spare():
    img = capacity.largest_image_max_tokens(StackConfig())
    assert (img.image_max_tokens, img.spare_tokens) == (2070, 0)


def test_budget_without_images_has_no_image_cap_to_report():
    img = capacity.largest_image_max_tokens(stack(server={"requestBudget": {"images": 0}}))
    assert img.image_max_tokens is None
    assert img.reason == "the request budget has no images"


@given(
    images=st.integers(1, 8),
    prompt=st.integers(1, 3000),
    output=st.integers(1, 3000),
    parallel=st.integers(1, 16),
)
def test_largest_image_cap_fits_the_slot_and_one_token_more_does_not(
    images: int, prompt: int, output: int, parallel: int
):
    c = stack(
        server={
            "parallel": parallel,
            "requestBudget": {"images": images, "promptTokens": prompt, "outputTokens": output},
        }
    )
    img = capacity.largest_image_max_tokens(c)
    per_slot = rules.slot_tokens(c)
    if img.image_max_tokens is None:
        assert sizing.worst_case_request_tokens(images, 64, prompt, output) > per_slot
        return
    assert img.request_tokens <= per_slot
    if img.image_max_tokens < capacity.field_bounds("image_max_tokens")[1]:
        assert sizing.worst_case_request_tokens(images, img.image_max_tokens + 1, prompt, output) > per_slot


# --- summary.md and summary.json -------------------------------------------------------------


def test_summary_shows_a_total_with_items_left_out_as_a_lower_bound():
    c = stack(cluster={"tier": "Standard", "gpuPool": {"minCount": 2, "maxCount": 3}})
    text = summary_markdown(c, "prod")
    assert (
        "| **Total** | | **at least $6.60-$9.80** | **at least $4,752-$7,056** | a lower bound: leaves out System pool, Model volume"
        in text
    )


def test_summary_marks_the_configured_size_in_the_what_fits_table():
    text = summary_markdown(StackConfig(), "dev")
    assert "| **Standard_NV36ads_A10_v5 (24 GB), configured** |" in text


def test_summary_data_carries_the_figures_the_diff_compares():
    data = summary_data(stack(cluster={"tier": "Standard"}), "dev")
    fixed = 0.10 + 1.667 / 24 + 0.025 + 0.005
    assert data["cost"]["maxMonthly"] == pytest.approx((3.20 + fixed) * HOURS_PER_MONTH, abs=0.01)
    assert data["cost"]["bound"] == "atLeast"
    assert (data["vramGb"], data["tokensPerSlot"], data["slots"]) == (8.52, 4096, 8)


def test_a_public_endpoint_is_a_cost_line_named_as_unpriced_not_left_out():
    assert "Public endpoint" not in [ln.item for ln in cost.estimate(stack()).lines]
    est = cost.estimate(stack(ingress={"enabled": True, "hostname": "llm.example.com", "acmeEmail": "o@example.com"}))
    public = line(est, "Public endpoint")
    assert public.max_hourly is None and "Application Gateway for Containers with WAF" in public.what
    assert public.note.startswith("not priced: no list price for agc-waf-gateway-hour")
    assert "Public endpoint" in est.missing
    assert line(est, "Public endpoint capacity").usage == "the capacity units used an hour"


# --- unknown is not zero ---------------------------------------------------------------------

NV72 = {"cluster": {"gpuPool": {"vmSize": "Standard_NV72ads_A10_v5"}}}


def test_a_gpu_size_without_a_price_makes_the_total_unknown_not_zero():
    c = stack(**NV72)
    est = cost.estimate(c)
    assert est.bound == "unknown"
    text = summary_markdown(c, "dev")
    total = next(row for row in text.splitlines() if row.startswith("| **Total** |"))
    assert "**unknown**" in total and "$0.00" not in total and "**$" not in total
    assert "GPU pool, the bulk of the bill, is not priced" in total
    assert summary_data(c, "dev")["cost"]["minMonthly"] is None


def test_a_small_item_without_a_price_makes_the_total_a_lower_bound():
    est = cost.estimate(stack(cluster={"tier": "Premium"}))  # no price for the Premium tier
    assert est.bound == "atLeast" and "Cluster management" in est.missing
    assert cost.estimate(stack(cluster={"tier": "Premium"})).min_hourly > 0


def test_a_fully_priced_stack_has_an_exact_total(monkeypatch):
    priced = {k: catalog.ListPrice(1.0, "hour", "test", "2026-01-01") for k in catalog.LIST_PRICES["eastus"]}
    monkeypatch.setattr(catalog, "LIST_PRICES", {"eastus": priced})
    c = stack(cluster={"tier": "Standard"}, autoscaling={"grafana": True}, ingress={
        "enabled": True, "hostname": "llm.example.com", "acmeEmail": "o@example.com"})  # fmt: skip
    est = cost.estimate(c)
    assert est.bound == "exact" and est.missing == ()
    total = next(r for r in summary_markdown(c, "dev").splitlines() if r.startswith("| **Total** |"))
    assert "at least" not in total and "every item billed by the hour or month is priced" in total


# --- every billed item of the render is a line --------------------------------------------------


@pytest.mark.parametrize(("sku", "daily"), [("Basic", 0.167), ("Standard", 0.667), ("Premium", 1.667)])
def test_the_registry_is_billed_by_its_sku(sku: str, daily: float):
    reg = line(cost.estimate(stack(registry={"sku": sku})), "Container registry")
    assert reg.what.startswith(f"{sku} SKU") and reg.max_hourly == pytest.approx(daily / 24)
    assert f"${daily}/day" in reg.note


def test_egress_load_balancer_and_its_public_ip_are_always_billed():
    est = cost.estimate(stack())
    assert line(est, "Load balancer").max_hourly == pytest.approx(0.025)
    assert line(est, "Public IP").max_hourly == pytest.approx(0.005)
    assert "Internal load balancer" not in [x.item for x in est.lines]


def test_an_internal_service_adds_the_internal_load_balancer():
    c = stack(service={"type": "InternalLoadBalancer", "allowedCidrs": ["10.100.0.0/16"]})
    assert line(cost.estimate(c), "Internal load balancer").max_hourly == pytest.approx(0.025)


@pytest.mark.parametrize(
    ("item", "depends_on"),
    [("Log Analytics", "the GB ingested a day"), ("Managed Prometheus", "the samples ingested a day")],
)
def test_monitoring_lines_are_billed_by_use_and_state_what_they_depend_on(item: str, depends_on: str):
    est = cost.estimate(stack())
    usage = line(est, item)
    assert usage.usage == depends_on and usage.max_hourly is None
    assert item in est.usage_based and item not in est.missing
    row = next(r for r in summary_markdown(stack(), "dev").splitlines() if r.startswith(f"| {item} |"))
    assert row.endswith(f"depends on {depends_on} |") and "| by use | by use |" in row
    assert item not in [x.item for x in cost.estimate(stack(cluster={"monitoring": False})).lines]


def test_grafana_is_a_line_only_when_enabled():
    assert "Managed Grafana" not in [x.item for x in cost.estimate(stack()).lines]
    est = cost.estimate(stack(autoscaling={"grafana": True}))
    assert line(est, "Managed Grafana").what == "Standard instance" and "Managed Grafana" in est.missing
    assert line(est, "Managed Grafana users").usage == "the active users a month"


def test_every_unpriced_fixed_line_says_why_and_that_make_prices_fills_it():
    c = stack(
        autoscaling={"grafana": True},
        ingress={"enabled": True, "hostname": "llm.example.com", "acmeEmail": "o@example.com"},
    )
    for ln in cost.estimate(c).fixed:
        if not ln.priced:
            assert ln.note.startswith("not priced: "), ln
            fills = "`make prices` fills it" in ln.note
            cannot = "no retail prices API meter is recorded for `make prices` to fetch it yet" in ln.note
            assert fills != cannot, ln


def test_every_table_price_has_a_url_or_says_there_is_none():
    for key, price in catalog.LIST_PRICES["eastus"].items():
        if price.usd is not None and price.source != _GPUFLOW_SOURCE:
            assert price.url.startswith(("https://", "http://")), key


_GPUFLOW_SOURCE = "GPUFlow GPU price comparison (third-party)"  # its address was not recorded


# --- the README gives the bill up front -----------------------------------------------------------


def test_readme_bill_line_is_what_the_render_of_dev_and_prod_gives():
    from core.loading import load_config, split_pulumi_config
    from core.summary import bill_line
    from tools.render import stack_config

    configs = []
    for name in ("dev", "prod"):
        _, flat = stack_config(ROOT / f"Pulumi.{name}.yaml")
        configs.append((name, load_config(split_pulumi_config(flat)[0], name)[0]))
    expected = bill_line(configs)
    readme = (ROOT / "README.md").read_text().splitlines()
    assert expected in readme
    assert "dev at least $" in expected and "prod at least $" in expected


def minute_of_week(day: int, hhmm: str) -> int:
    return day * 24 * 60 + int(hhmm[:2]) * 60 + int(hhmm[3:])


@pytest.mark.parametrize(
    ("day", "hhmm", "active"),
    [
        (1, "07:59", False),  # a minute before the start
        (1, "08:00", True),  # the start itself
        (1, "19:59", True),  # the last minute
        (1, "20:00", False),  # the end itself
        (5, "19:59", True),
        (6, "08:00", False),  # Saturday is not in 1-5
        (0, "12:00", False),
    ],
)
def test_keda_holds_the_window_from_its_start_up_to_its_end(day: int, hhmm: str, active: bool):
    minutes = dev_schedule().autoscaling.active_hours.active_minutes()  # type: ignore[arg-type]
    assert (minute_of_week(day, hhmm) in minutes) is active


@pytest.mark.parametrize(
    ("day", "hhmm", "active"),
    [
        (1, "21:59", False),
        (1, "22:00", True),
        (2, "05:59", True),
        (2, "06:00", False),
        (5, "22:00", True),  # Friday night's start has no end until Monday 06:00
        (6, "12:00", True),
        (0, "23:59", True),
        (1, "05:59", True),
        (1, "06:00", False),
    ],
)
def test_keda_runs_a_window_past_midnight_until_the_next_end(day: int, hhmm: str, active: bool):
    h = dev_schedule(start="22:00", end="06:00", days="1-5").autoscaling.active_hours
    assert (minute_of_week(day, hhmm) in h.active_minutes()) is active  # type: ignore[arg-type]


def test_active_hours_add_nothing_when_the_minimum_replicas_already_run():
    c = stack(
        cluster={"gpuPool": {"minCount": 0, "maxCount": 2}},
        autoscaling={"enabled": True, "minReplicas": 1, "maxReplicas": 2, "activeHours": {}},
        model={"storage": {"sizeGi": 100, "storageClass": "azurefile-csi-premium", "accessMode": "ReadWriteMany"}},
    )
    gpu = cost.gpu_line(c)
    assert gpu.min_hourly == pytest.approx(3.20) and "activeHours" not in gpu.what
    assert "1 always on for 1 replica(s) (autoscaling.minReplicas)" in gpu.what

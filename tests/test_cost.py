"""Cost at list prices and what fits, two sections of summary.md."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import capacity, cost, rules, sizing
from core.catalog import GPU_VM_SIZES, HOURS_PER_MONTH, LIST_PRICES, premium_ssd_tier
from core.config import StackConfig
from core.summary import summary_data, summary_markdown

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


def test_gpu_pool_that_scales_to_zero_costs_nothing_at_its_minimum():
    est = cost.estimate(stack(cluster={"gpuPool": {"minCount": 0, "maxCount": 1}}))
    assert line(est, "GPU pool").min_hourly == 0


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
    assert "no list price for Standard_D4ds_v5" in system.note
    assert "System pool" in est.missing


def test_totals_add_only_the_priced_items():
    est = cost.estimate(stack(cluster={"tier": "Standard", "gpuPool": {"minCount": 2, "maxCount": 3}}))
    assert est.max_hourly == pytest.approx(3 * 3.20 + 0.10)


def test_a_region_without_prices_lists_every_item_with_the_command_that_prices_it():
    c = stack(cluster={"location": "swedencentral", "tier": "Free"})
    est = cost.estimate(c)
    system = line(est, "System pool")
    assert system.note == (
        "no list price for Standard_D4ds_v5 in swedencentral; `make prices REGIONS=swedencentral` fetches it"
    )
    assert line(est, "Cluster management").max_hourly == 0.0  # the Free tier is free in every region
    assert "| System pool | 2 x Standard_D4ds_v5 | no list price |" in summary_markdown(c, "dev")
    assert set(summary_data(c, "dev")["cost"]["unpriced"]) == {"System pool", "GPU pool", "Model volume"}
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
    assert gpu.what.endswith("; 1 in autoscaling.activeHours, 60 of 168 hours a week")


@pytest.mark.parametrize(
    ("hours", "weekly"),
    [
        ({"start": "08:00", "end": "20:00", "days": "1-5"}, 60),
        ({"start": "22:00", "end": "06:00", "days": "1-5"}, 40),  # past midnight
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


def test_summary_shows_the_total_cost_and_what_the_total_leaves_out():
    c = stack(cluster={"tier": "Standard", "gpuPool": {"minCount": 2, "maxCount": 3}})
    text = summary_markdown(c, "prod")
    assert "| **Total** | | **$6.50-$9.70** | **$4,680-$6,984** | leaves out System pool, Model volume" in text


def test_summary_marks_the_configured_size_in_the_what_fits_table():
    text = summary_markdown(StackConfig(), "dev")
    assert "| **Standard_NV36ads_A10_v5 (24 GB), configured** |" in text


def test_summary_data_carries_the_figures_the_diff_compares():
    data = summary_data(stack(cluster={"tier": "Standard"}), "dev")
    assert data["cost"]["maxMonthly"] == pytest.approx((3.20 + 0.10) * HOURS_PER_MONTH)
    assert (data["vramGb"], data["tokensPerSlot"], data["slots"]) == (8.52, 4096, 8)


def test_a_public_endpoint_is_a_cost_line_named_as_unpriced_not_left_out():
    assert "Public endpoint" not in [ln.item for ln in cost.estimate(stack()).lines]
    est = cost.estimate(stack(ingress={"enabled": True, "hostname": "llm.example.com", "acmeEmail": "o@example.com"}))
    public = line(est, "Public endpoint")
    assert public.max_hourly is None and "Application Gateway for Containers" in public.note
    assert "Public endpoint" in est.missing

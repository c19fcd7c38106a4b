"""Several GPUs in one replica (core/multigpu.py, core.sizing.vram_per_device): where llama.cpp
puts each layer, each GPU's memory, and the rules a split must pass (pure, no server)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import multigpu, rules, sizing
from core.catalog import GB, GPU_VM_SIZES
from core.config import StackConfig
from core.server_args import ServerPaths
from specs.serving import server_container

QWEN2VL_7B = StackConfig().model.shape
NV72 = "Standard_NV72ads_A10_v5"
NV36 = "Standard_NV36ads_A10_v5"


def config(server: dict[str, Any] | None = None, vm: str = NV72, **rest: Any) -> StackConfig:
    raw = {"cluster": {"gpuPool": {"vmSize": vm}}, "server": server or {}, **rest}
    return StackConfig.model_validate(raw)


def problems(c: StackConfig) -> list[str]:
    return rules.check(c, "dev")[0]


def warning_keys(c: StackConfig) -> list[str | None]:
    return [key for key, _ in rules.all_warnings(c)]


# --- where the layers go --------------------------------------------------------------------


def test_two_equal_shares_put_15_layers_on_the_first_gpu_and_13_with_the_output_on_the_second():
    """29 layers (28 and the output) cut at 0.5: layer 14 sits at 14/29 < 0.5, layer 15 at 15/29."""
    devices = sizing.layer_devices(28, 99, (1, 1))
    assert devices[:-1].count(0) == 15 and devices[:-1].count(1) == 13 and devices[-1] == 1


def test_layers_below_the_offloaded_count_stay_on_the_cpu():
    devices = sizing.layer_devices(28, 10, (1, 1))
    assert devices[:19] == (None,) * 19 and None not in devices[19:]


@given(
    layers=st.integers(1, 96),
    gpu_layers=st.integers(0, 120),
    split=st.lists(st.integers(0, 9), min_size=1, max_size=4).filter(lambda s: sum(s) > 0),
)
def test_layers_go_to_the_devices_in_order_and_by_share(layers, gpu_layers, split):
    devices = sizing.layer_devices(layers, gpu_layers, tuple(split))
    assert len(devices) == layers + 1
    on_gpu = [d for d in devices if d is not None]
    assert len(on_gpu) == min(gpu_layers, layers + 1)
    assert on_gpu == sorted(on_gpu), "devices take consecutive runs of layers"
    for i, share in enumerate(split):
        held = on_gpu.count(i)
        assert abs(held - len(on_gpu) * share / sum(split)) <= 1 + 1e-9, (i, held)
        assert share or not held, "a device with no share holds no layer"


@given(
    split=st.lists(st.integers(1, 9), min_size=2, max_size=4),
    cells=st.integers(256, 131072),
    kv=st.sampled_from(["f16", "q8_0", "q4_0"]),
)
def test_each_gpu_holds_its_layers_kv_and_together_all_of_it(split, cells, kv):
    m = StackConfig().model
    devices = sizing.vram_per_device(
        QWEN2VL_7B, m.size_bytes, m.mmproj_size_bytes, 99, cells, kv, kv, 512, tuple(split)
    )
    where = sizing.layer_devices(QWEN2VL_7B.layers, 99, tuple(split))[:-1]
    per_layer = sizing.kv_cache_bytes(QWEN2VL_7B, cells, kv, kv) / QWEN2VL_7B.layers
    for i, device in enumerate(devices):
        assert device.kv_bytes == pytest.approx(where.count(i) * per_layer, abs=1)
    assert sum(d.kv_bytes for d in devices) == pytest.approx(sizing.kv_cache_bytes(QWEN2VL_7B, cells, kv, kv), abs=4)
    assert [d.mmproj_bytes for d in devices] == [m.mmproj_size_bytes] + [0] * (len(split) - 1)


def test_one_gpu_is_the_single_gpu_estimate():
    c = StackConfig()
    (only,) = multigpu.per_gpu(c)
    assert only == rules.vram(c)


def test_the_gpu_with_the_output_layer_holds_the_output_matrix_and_the_logits():
    c = config({"gpusPerReplica": 2})
    first, second = multigpu.per_gpu(c)
    logits = c.server.ubatch_size * QWEN2VL_7B.vocab * 4
    assert second.compute_bytes - first.compute_bytes == logits
    spread = c.model.size_bytes * 13 / QWEN2VL_7B.layers
    assert second.weights_bytes == pytest.approx(spread + QWEN2VL_7B.vocab * QWEN2VL_7B.hidden * 2, abs=1)


def test_tensor_mode_cuts_weights_and_kv_by_the_shares():
    c = config({"gpusPerReplica": 2, "splitMode": "tensor", "tensorSplit": [3, 1]})
    first, second = multigpu.per_gpu(c)
    assert first.kv_bytes == pytest.approx(3 * second.kv_bytes, rel=1e-6)
    assert first.weights_bytes == pytest.approx(3 * second.weights_bytes, rel=1e-6)


# --- the rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vm", "gpus", "refused"), [(NV72, 2, False), (NV72, 3, True), (NV36, 1, False), (NV36, 2, True)]
)
def test_a_replica_gets_at_most_the_gpus_of_one_node(vm, gpus, refused):
    found = [p for p in problems(config({"gpusPerReplica": gpus}, vm=vm)) if "server.gpusPerReplica" in p]
    assert bool(found) == refused, found
    if refused:
        assert NV72 in found[0] or "no A10 size" in found[0]


@pytest.mark.parametrize(
    ("shares", "refused"),
    [([], False), ([1, 1], False), ([2, 0.5], False), ([1], True), ([1, 1, 1], True), ([0, 0], True)],
)
def test_tensor_split_gives_one_positive_share_per_gpu(shares, refused):
    found = [p for p in problems(config({"gpusPerReplica": 2, "tensorSplit": shares})) if "server.tensorSplit" in p]
    assert bool(found) == refused, found


@pytest.mark.parametrize(
    ("server", "refused"),
    [
        ({"flashAttention": "on"}, False),
        ({"flashAttention": "auto"}, False),  # the server turns it on for tensor mode
        ({"flashAttention": "off"}, True),
        ({"cacheTypeK": "q8_0", "cacheTypeV": "q8_0"}, True),
        ({"cacheTypeK": "f16", "cacheTypeV": "q4_0"}, True),
        ({"cacheTypeK": "bf16", "cacheTypeV": "bf16"}, False),
    ],
)
def test_tensor_mode_needs_flash_attention_and_an_unquantized_cache(server, refused):
    c = config({"gpusPerReplica": 2, "splitMode": "tensor", **server})
    found = [p for p in problems(c) if "server.splitMode=tensor" in p]
    assert bool(found) == refused, found


def test_row_mode_is_not_offered():
    with pytest.raises(ValueError, match=r"split_mode|splitMode"):
        StackConfig.model_validate({"server": {"splitMode": "row"}})


def test_each_gpu_must_fit_and_the_refusal_names_the_gpu():
    # 288k cells of f16 KV (16.9 GB) and the model: fits two A10s, not one.
    fits = config(
        {"gpusPerReplica": 2, "contextSize": 294912, "parallel": 1, "kvUnified": True},
        model={"architecture": {"maxContext": 294912}},
    )
    assert not [p for p in problems(fits) if "GPU" in p and "needs" in p], problems(fits)
    too_big = fits.model_copy(update={"server": fits.server.model_copy(update={"tensor_split": [1, 0.05]})})
    found = [p for p in problems(too_big) if p.startswith("GPU 0 of 2 needs")]
    assert found and "GPU 1 a larger share" in found[0], problems(too_big)


def test_a_single_gpu_replica_alone_on_a_two_gpu_node_is_warned_about_its_idle_gpu():
    assert "idleGpus" in warning_keys(config())
    assert "idleGpus" not in warning_keys(config({"replicas": 2}))
    assert "idleGpus" not in warning_keys(config({"gpusPerReplica": 2}))
    assert "idleGpus" not in warning_keys(config(vm=NV36))


def test_three_one_gpu_replicas_on_two_gpu_nodes_leave_one_idle():
    c = config({"replicas": 3}, cluster={"gpuPool": {"vmSize": NV72, "maxCount": 2}})
    assert multigpu.idle_gpus(c) == 1


@pytest.mark.parametrize(
    ("replicas", "gpus", "nodes"), [(1, 1, 1), (2, 1, 1), (3, 1, 2), (1, 2, 1), (2, 2, 2), (3, 2, 3)]
)
def test_nodes_are_replicas_over_the_replicas_one_node_holds(replicas, gpus, nodes):
    assert sizing.gpu_nodes_for(replicas, GPU_VM_SIZES[NV72], gpus) == nodes


@pytest.mark.parametrize(("max_count", "refused"), [(2, False), (1, True)])
def test_the_pool_holds_every_replica_of_two_gpus(max_count, refused):
    c = config({"replicas": 2, "gpusPerReplica": 2}, cluster={"gpuPool": {"vmSize": NV72, "maxCount": max_count}})
    found = [p for p in problems(c) if "cluster.gpuPool.maxCount" in p]
    assert bool(found) == refused, found
    if refused:
        assert "needs 4 GPUs (2 a replica)" in found[0] and "maxCount >= 2" in found[0]


def test_the_container_asks_for_every_gpu_of_its_replica():
    c = config({"gpusPerReplica": 2})
    container = server_container(c.server, "img", ServerPaths("/m", "/p", "/k"))
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == "2" == resources["limits"]["nvidia.com/gpu"]
    assert container["args"][container["args"].index("-ts") + 1] == "1,1"


def test_the_summary_figures_per_gpu_add_up_below_the_card():
    c = config({"gpusPerReplica": 2})
    assert all(d.total_bytes < GPU_VM_SIZES[NV72].gpu_memory_gb * GB for d in multigpu.per_gpu(c))


def test_what_fits_lists_a_two_gpu_size_both_ways_and_one_replica_of_two_holds_more():
    from core import capacity

    rows = [r for r in capacity.slot_table(StackConfig()) if r[0].vm_size == NV72]
    assert [r[0].gpus for r in rows] == [1, 2]
    one, two = rows
    assert all(b.slots > a.slots for a, b in zip(one, two, strict=True))


def test_replicas_of_two_gpus_keep_a_two_gpu_node_each_always_on():
    from core import cost

    c = config(
        {"replicas": 2, "gpusPerReplica": 2}, cluster={"gpuPool": {"vmSize": NV72, "minCount": 0, "maxCount": 2}}
    )
    assert "2 always on for 2 replica(s)" in cost.gpu_line(c).what


def test_what_fits_prices_a_replica_by_its_share_of_the_node(monkeypatch):
    from core import catalog, summary

    def price(region: str, item: str):
        return (
            catalog.ListPrice(usd=4.0, per="hour", source="test", url="", as_of="2026-12-06") if item == NV72 else None
        )

    monkeypatch.setattr(summary, "list_price", price)
    rows = [line for line in summary.fits_section(StackConfig()) if line.startswith(f"| {NV72}")]
    assert [row.rsplit("|", 2)[1].strip() for row in rows] == ["$1,440", "$2,880"]
    assert summary.replica_month(StackConfig(), GPU_VM_SIZES[NV36], 1) == "not priced"


@pytest.mark.parametrize(("layers", "refused"), [(1024, False), (1025, True)])
def test_layer_count_is_bounded_so_the_split_is_cheap_to_walk(layers, refused):
    raw = {"model": {"architecture": {"layers": layers}}}
    if refused:
        with pytest.raises(ValueError, match="layers"):
            StackConfig.model_validate(raw)
    else:
        assert len(sizing.layer_devices(layers, 999, (1, 1))) == layers + 1


@pytest.mark.parametrize(("cpu", "refused"), [("32400m", False), ("32401m", True)])
def test_two_one_gpu_replicas_on_a_two_gpu_node_must_fit_it_together(cpu, refused):
    c = config({"replicas": 2, "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": "40"}}})
    found = [p for p in problems(c) if "share a" in p]
    assert bool(found) == refused, found
    if refused:
        assert "lower it to 32400m or less" in found[0] and "server.gpusPerReplica=2" in found[0]
    # One replica alone, or one replica of both GPUs, shares nothing.
    alone = config({"replicas": 1, "resources": {"requests": {"cpu": cpu}, "limits": {"cpu": "40"}}})
    assert not [p for p in problems(alone) if "share a" in p]

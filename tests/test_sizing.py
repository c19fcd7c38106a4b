"""The sizing arithmetic, against the reference deployment and the pinned llama.cpp's rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import rules, sizing
from core.catalog import GB, GIB, KV_CACHE_TYPE_BYTES
from core.config import StackConfig

QWEN2VL_7B = StackConfig().model.shape


def test_kv_cache_is_56_kib_per_token_and_1_75_gib_at_32k_for_qwen2vl_7b():
    assert sizing.kv_cache_bytes(QWEN2VL_7B, 1, "f16", "f16") == 56 * 1024
    assert sizing.kv_cache_bytes(QWEN2VL_7B, 32768, "f16", "f16") == 1.75 * GIB


def test_quantized_kv_cache_scales_with_type_bytes():
    f16 = sizing.kv_cache_bytes(QWEN2VL_7B, 4096, "f16", "f16")
    q8 = sizing.kv_cache_bytes(QWEN2VL_7B, 4096, "q8_0", "q8_0")
    assert q8 == pytest.approx(f16 * KV_CACHE_TYPE_BYTES["q8_0"] / 2)


@pytest.mark.parametrize(("type_k", "type_v"), [("f16", "q8_0"), ("q8_0", "f16"), ("q4_0", "f16"), ("f16", "q4_0")])
def test_k_and_v_caches_each_take_their_own_type(type_k, type_v):
    per_tensor = QWEN2VL_7B.layers * QWEN2VL_7B.kv_heads * QWEN2VL_7B.head_dim * 4096
    expected = per_tensor * (KV_CACHE_TYPE_BYTES[type_k] + KV_CACHE_TYPE_BYTES[type_v])
    assert sizing.kv_cache_bytes(QWEN2VL_7B, 4096, type_k, type_v) == expected


def test_the_vram_estimate_sizes_v_by_server_cache_type_v():
    """f16 K (2 bytes) and q4_0 V (0.5625 bytes) at 32768 cells: 28 x 4 x 128 x 2.5625 x 32768."""
    c = StackConfig.model_validate({"server": {"cacheTypeK": "f16", "cacheTypeV": "q4_0"}})
    assert rules.vram(c).kv_bytes == 28 * 4 * 128 * 32768 * 2.5625


def test_vram_estimate_of_reference_config_is_within_10_percent_of_measured_8_4_gb():
    estimate = rules.vram(StackConfig()).total_bytes / GB
    assert abs(estimate - 8.4) / 8.4 < 0.10, f"estimate {estimate:.2f} GB"


def test_vram_counts_only_offloaded_layers():
    c = StackConfig()
    full = sizing.vram_estimate(QWEN2VL_7B, c.model.size_bytes, c.model.mmproj_size_bytes, 99, 32768, "f16", "f16", 512)
    half = sizing.vram_estimate(QWEN2VL_7B, c.model.size_bytes, c.model.mmproj_size_bytes, 14, 32768, "f16", "f16", 512)
    assert half.weights_bytes == pytest.approx(full.weights_bytes / 2, rel=1e-6)
    assert half.kv_bytes == pytest.approx(full.kv_bytes / 2, rel=1e-6)


@pytest.mark.parametrize(
    ("context", "parallel", "unified", "expected"),
    [
        (32768, 8, False, 4096),  # the reference deployment
        (8000, 3, False, 2816),  # -c padded to 8192 first, then 2730 padded to 2816
        (32768, 3, False, 11008),  # 10922 padded up to a multiple of 256
        (65536, 1, False, 32768),  # capped at the training context
        (32768, 8, True, 32768),  # unified: one request may use it all
        (100000, 4, True, 32768),  # unified is capped too
        (3000, 2, True, 3072),  # unified -c is padded to 256 too
    ],
)
def test_tokens_per_slot_follows_llama_cpp(context, parallel, unified, expected):
    assert sizing.tokens_per_slot(context, parallel, unified, 32768) == expected


def test_allocated_context_is_slots_times_padded_slot():
    assert sizing.allocated_context(32768, 3, False) == 11008 * 3
    assert sizing.allocated_context(32768, 3, True) == 32768


@pytest.mark.parametrize(("side", "tokens"), [(56, 11), (224, 66), (448, 258)])
def test_tokens_per_image_match_the_pinned_release(side, tokens):
    # Measured on the pinned llama-server: prompt tokens more than the same text without image.
    assert sizing.tokens_per_image(side, side, max_tokens=4096) == tokens


def test_large_image_is_capped_at_image_max_tokens():
    assert sizing.tokens_per_image(4000, 3000, max_tokens=1024) <= 1024 + 2


@given(
    w=st.integers(1, 8000),
    h=st.integers(1, 8000),
    max_tokens=st.integers(64, 8192),
)
def test_image_tokens_stay_within_min_and_max(w, h, max_tokens):
    if max(w, h) / min(w, h) > 50:  # Qwen's processor rejects such aspect ratios anyway
        return
    tokens = sizing.tokens_per_image(w, h, max_tokens=max_tokens)
    assert tokens <= sizing.worst_case_image_tokens(max_tokens)
    assert tokens >= 3


@given(context=st.integers(256, 131072), need=st.integers(1, 40000))
def test_max_parallel_for_gives_slots_that_hold_the_request(context, need):
    best = sizing.max_parallel_for(context, need, 1_000_000)
    if best:
        assert sizing.tokens_per_slot(context, best, False, 1_000_000) >= need
    if best < sizing.MAX_PARALLEL:
        assert sizing.tokens_per_slot(context, best + 1, False, 1_000_000) < need


@given(parallel=st.integers(1, 64), need=st.integers(1, 40000))
def test_min_context_for_fits_every_slot(parallel, need):
    context = sizing.min_context_for(parallel, need)
    assert sizing.tokens_per_slot(context, parallel, False, 10**9) >= need


def test_worst_case_request_counts_markers_of_each_image():
    assert sizing.worst_case_request_tokens(2, 1024, 500, 300) == 2 * 1026 + 800

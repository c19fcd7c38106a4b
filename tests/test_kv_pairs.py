"""Mixed K/V cache types: the CUDA build compiles flash-attention kernels only for same-type pairs
by default, and any other pair silently converts to f16 on every call: preview warns."""

from __future__ import annotations

import itertools

import pytest

from core import rules
from core.config import StackConfig

TYPES = ("f16", "bf16", "q8_0", "q4_0")


def config(k: str, v: str, fa: str = "on") -> StackConfig:
    return StackConfig.model_validate({"server": {"cacheTypeK": k, "cacheTypeV": v, "flashAttention": fa}})


@pytest.mark.parametrize("kv", TYPES)
@pytest.mark.parametrize("fa", ["on", "auto"])
def test_same_type_pairs_have_a_kernel_and_no_warning(kv, fa):
    assert rules.mixed_kv_cache_pair_is_slow(config(kv, kv, fa)) == []


@pytest.mark.parametrize(("k", "v"), [p for p in itertools.permutations(TYPES, 2)])
def test_every_mixed_pair_warns_naming_both_keys_and_the_fix(k, v):
    (text,) = rules.mixed_kv_cache_pair_is_slow(config(k, v))
    assert f"server.cacheTypeK={k} with server.cacheTypeV={v}" in text
    assert f"set server.cacheTypeK={v}" in text


def test_q8_0_keys_with_q4_0_values_reach_the_preview_warnings():
    assert any(
        "server.cacheTypeK=q8_0 with server.cacheTypeV=q4_0" in w for w in rules.warnings(config("q8_0", "q4_0"), "dev")
    )


def test_auto_flash_attention_warns_too():
    assert rules.mixed_kv_cache_pair_is_slow(config("q8_0", "f16", "auto"))


def test_without_flash_attention_no_kernel_is_needed():
    assert rules.mixed_kv_cache_pair_is_slow(config("q8_0", "f16", "off")) == []


def test_the_kernel_table_is_the_upstream_default_and_nothing_more():
    assert {(t, t) for t in TYPES} == rules.FA_KERNEL_PAIRS

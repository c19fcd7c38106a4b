"""The rules that come from llama-server: what the pinned release refuses at start, or silently
changes, refused at preview with the key, the value, the limit and the fix (pure, no server)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import rules
from core.config import StackConfig
from tests.conftest import ROOT


def config(server: dict[str, Any] | None = None, head_dim: int = 128) -> StackConfig:
    return StackConfig.model_validate({"server": server or {}, "model": {"architecture": {"headDim": head_dim}}})


def problems(c: StackConfig) -> list[str]:
    return rules.check(c, "dev")[0]


@pytest.mark.parametrize("cache_type", ["q8_0", "q4_0"])
def test_refuses_a_quantized_v_cache_with_flash_attention_off(cache_type):
    assert problems(config({"cacheTypeV": cache_type, "flashAttention": "off"})) == [
        f"server.cacheTypeV={cache_type} with server.flashAttention=off: llama-server refuses a quantized V "
        f'cache without flash attention ("quantized V cache requires flash_attn to be enabled") and the pod '
        f"would crash-loop; set server.flashAttention to on or auto, or server.cacheTypeV to f16 or bf16."
    ]


@pytest.mark.parametrize(
    "server",
    [
        {"cacheTypeV": "q8_0", "flashAttention": "on"},
        # The server turns flash attention on for a quantized V (llama-context.cpp:3844-3846).
        {"cacheTypeV": "q4_0", "flashAttention": "auto"},
        {"cacheTypeK": "q8_0", "cacheTypeV": "f16", "flashAttention": "off"},
        {"cacheTypeK": "q4_0", "cacheTypeV": "bf16", "flashAttention": "off"},
    ],
)
def test_accepts_the_cache_and_flash_attention_mixes_the_server_starts(server):
    assert problems(config(server)) == []


@pytest.mark.parametrize(("cache", "flash_attention"), [("K", "on"), ("K", "auto"), ("V", "on"), ("V", "auto")])
def test_refuses_a_quantized_cache_whose_block_does_not_divide_the_head_size(cache, flash_attention):
    c = config({f"cacheType{cache}": "q8_0", "flashAttention": flash_attention}, head_dim=80)
    assert problems(c) == [
        f"server.cacheType{cache}=q8_0 stores blocks of 32 elements, which do not divide "
        f'model.architecture.headDim=80; llama-server refuses to start ("{cache} cache type q8_0 with block '
        f'size 32 does not divide n_embd_head_{cache.lower()}=80"). Set server.cacheType{cache} to f16 or bf16, '
        f"or use a model whose head size is a multiple of 32."
    ]


def test_refuses_a_quantized_k_without_flash_attention_whose_heads_split_blocks():
    assert problems(config({"cacheTypeK": "q4_0", "flashAttention": "off"}, head_dim=80)) == [
        "server.cacheTypeK=q4_0 with server.flashAttention=off stores blocks of 32 elements, which do not "
        "divide model.architecture.headDim=80: llama-server would abort at start or read each head's keys "
        "from the middle of a block (flash attention on is refused outright). Set server.cacheTypeK to f16 "
        "or bf16."
    ]


def test_a_quantized_v_without_flash_attention_is_refused_once_as_the_server_does():
    # The server stops at the flash-attention check before it looks at V's blocks.
    found = problems(config({"cacheTypeV": "q4_0", "flashAttention": "off"}, head_dim=80))
    assert len(found) == 1 and "requires flash_attn" in found[0], found


@given(
    head_dim=st.integers(min_value=1, max_value=512),
    cache_k=st.sampled_from(["f16", "bf16", "q8_0", "q4_0"]),
    cache_v=st.sampled_from(["f16", "bf16", "q8_0", "q4_0"]),
    flash_attention=st.sampled_from(["on", "off", "auto"]),
)
@settings(max_examples=80, deadline=None, database=None)
def test_accepts_a_quantized_cache_exactly_when_its_blocks_divide_the_head(head_dim, cache_k, cache_v, flash_attention):
    c = config({"cacheTypeK": cache_k, "cacheTypeV": cache_v, "flashAttention": flash_attention}, head_dim=head_dim)
    block_rules = (rules.cache_blocks_divide_head_size, rules.quantized_k_heads_start_on_block_boundaries)
    quantized = [t for t in (cache_k, cache_v) if t in ("q8_0", "q4_0")]
    if flash_attention == "off" and cache_v in quantized:
        quantized.remove(cache_v)  # refused for lack of flash attention, before any block check
    accepted = all(rule(c) == [] for rule in block_rules)
    assert accepted == (head_dim % 32 == 0 or not quantized)


@given(context=st.integers(min_value=256, max_value=65536), batch=st.integers(min_value=32, max_value=65536))
@settings(max_examples=60, deadline=None, database=None)
def test_refuses_exactly_the_batches_the_server_would_clamp_to_the_context(context, batch):
    found = rules.batch_within_context(config({"contextSize": context, "batchSize": batch}))
    if batch <= context:
        assert found == []
    else:
        assert found == [
            f"server.batchSize={batch} is above server.contextSize={context}; llama-server would silently use "
            f"a batch of {context} (a batch never exceeds the context). Set server.batchSize <= {context}."
        ]


@pytest.mark.parametrize("refusal", rules.SERVER_REFUSALS, ids=lambda r: r.rule.__name__)
def test_every_server_refusal_runs_at_preview(refusal):
    assert refusal.rule in rules.RULES


@pytest.mark.parametrize(
    ("rule", "c"),
    [
        (rules.quantized_v_cache_needs_flash_attention, config({"cacheTypeV": "q8_0", "flashAttention": "off"})),
        (rules.cache_blocks_divide_head_size, config({"cacheTypeK": "q4_0", "cacheTypeV": "q8_0"}, head_dim=48)),
    ],
    ids=lambda x: getattr(x, "__name__", ""),
)
def test_a_server_refusal_quotes_the_words_the_server_exits_with(rule, c):
    refusal = next(r for r in rules.SERVER_REFUSALS if r.rule is rule)
    assert refusal.says(c) in rule(c)[0]


def test_design_doc_lists_every_rule_that_comes_from_llama_server():
    readme = (ROOT / "docs" / "design.md").read_text()
    section = re.search(r"^## Rules that come from llama-server\n(.*?)(?=^## )", readme, re.MULTILINE | re.DOTALL)
    assert section, "docs/design.md lacks the section 'Rules that come from llama-server'"
    named = set(re.findall(r"^\| `(\w+)`", section.group(1), re.MULTILINE))
    silent = (rules.quantized_k_heads_start_on_block_boundaries, rules.batch_within_context)
    missing = {r.rule.__name__ for r in rules.SERVER_REFUSALS} | {rule.__name__ for rule in silent}
    assert missing <= named, f"not in the docs/design.md table: {sorted(missing - named)}"

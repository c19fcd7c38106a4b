"""The validator against the real llama-server of the pinned release: a config that preview refuses
as the server's own refusal makes the server exit with the words the rule cites; configs preview
accepts (generated) start, give each slot the context the sizing computes and serve an image."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from core import rules, sizing
from core.config import StackConfig
from core.server_args import ServerPaths, llama_server_args
from tests.conftest import free_port, load_gguf, local, start, tiny_stack_config
from tests.tiny_qwen2vl import TEXT, TEXT_HEAD32, TEXT_KEYS16, TinyModel, write_tiny_qwen2vl
from tools.server_client import png

pytestmark = pytest.mark.e2e

# Per refusing rule, configs that break it and nothing else: (rule, tiny model, server keys).
# "tiny16" has head size 16, below the 32-element blocks of q8_0 and q4_0; "tiny32" has 32.
BREAKS_ONLY: list[tuple[str, str, dict[str, Any]]] = [
    ("quantized_v_cache_needs_flash_attention", "tiny32", {"cacheTypeV": "q8_0", "flashAttention": "off"}),
    ("quantized_v_cache_needs_flash_attention", "tiny32", {"cacheTypeV": "q4_0", "flashAttention": "off"}),
    ("cache_blocks_divide_head_size", "tiny16", {"cacheTypeK": "q8_0", "flashAttention": "on"}),
    ("cache_blocks_divide_head_size", "tiny16", {"cacheTypeK": "q4_0", "flashAttention": "auto"}),
    ("cache_blocks_divide_head_size", "tiny16", {"cacheTypeV": "q8_0", "flashAttention": "on"}),
]


@pytest.fixture(scope="module")
def tiny16(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_qwen2vl(load_gguf(), tmp_path_factory.mktemp("tiny16"), shape=TEXT)


@pytest.fixture(scope="module")
def tiny32(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_qwen2vl(load_gguf(), tmp_path_factory.mktemp("tiny32"), shape=TEXT_HEAD32)


@pytest.fixture(scope="module")
def keys16(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_qwen2vl(load_gguf(), tmp_path_factory.mktemp("keys16"), shape=TEXT_KEYS16)


def stack(model: TinyModel, server: dict[str, Any]) -> StackConfig:
    """The tiny stack with these server keys, validated by the schema but not by the rules.

    One thread: on a busy 2-core machine two threads spin against each other, and an image chat
    takes seconds instead of a fraction of one.
    """
    raw = tiny_stack_config(model)
    raw["server"] = {**raw["server"], "threads": 1, **server}
    return StackConfig.model_validate(raw)


def server_args(config: StackConfig, model: TinyModel, key_file: Path) -> list[str]:
    """The args the stack renders, with the tiny model's local paths."""
    return llama_server_args(config.server, ServerPaths(str(model.text), str(model.mmproj), str(key_file)))


def run_until_exit_or_ready(binary: Path, args: list[str], seconds: float = 60) -> tuple[int | None, str]:
    """Runs the server until it exits (its status) or answers /health with 200 (None); and its log."""
    port = free_port()
    process = subprocess.Popen(
        [str(binary), *local(args, port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            time.sleep(0.05)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
            status = None
        else:
            status = process.returncode
    return status, process.stderr.read()


def test_every_server_refusal_has_a_config_that_breaks_only_it():
    assert {r.rule.__name__ for r in rules.SERVER_REFUSALS} <= {rule for rule, _, _ in BREAKS_ONLY}


@pytest.mark.parametrize(("rule", "model", "server"), BREAKS_ONLY, ids=lambda x: x if isinstance(x, str) else None)
def test_server_refuses_what_the_rule_refuses_with_the_words_it_cites(rule, model, server, binary, key_file, request):
    tiny = request.getfixturevalue(model)
    config = stack(tiny, server)
    refusal = next(r for r in rules.SERVER_REFUSALS if r.rule.__name__ == rule)
    assert rules.check(config, "dev")[0] == refusal.rule(config) != [], "the config must break this rule only"
    status, log = run_until_exit_or_ready(binary, server_args(config, tiny, key_file))
    assert status not in (None, 0) and refusal.says(config) in log, f"exit status {status}; log tail:\n{log[-2000:]}"


def test_server_clamps_a_batch_above_the_context_as_the_rule_says(binary, key_file, tiny32):
    config = stack(tiny32, {"contextSize": 1024, "parallel": 1, "batchSize": 2048})
    assert rules.check(config, "dev")[0] == rules.batch_within_context(config) != []
    # -lv 4 only makes the server log the context parameters it settled on (llama-context.cpp:313).
    for server in start(binary, [*server_args(config, tiny32, key_file), "-lv", "4"]):
        assert server.health[-1] == 200
    log = server.process.stderr.read()
    assert "n_batch               = 1024" in log, log[-3000:]


def test_server_aborts_on_a_quantized_k_without_flash_attention_whose_keys_are_not_whole_blocks(
    binary, key_file, keys16
):
    config = stack(keys16, {"cacheTypeK": "q8_0", "flashAttention": "off"})
    assert rules.check(config, "dev")[0] == rules.quantized_k_heads_start_on_block_boundaries(config) != []
    status, log = run_until_exit_or_ready(binary, server_args(config, keys16, key_file))
    assert status not in (None, 0) and "GGML_ASSERT" in log, f"exit status {status}; log tail:\n{log[-2000:]}"


KV_TYPES = st.sampled_from(["f16", "bf16", "q8_0", "q4_0"])


@st.composite
def accepted_server(draw: st.DrawFn) -> dict[str, Any]:
    """Server keys across cache types, flash attention, unified KV, slots and batch sizes."""
    parallel = draw(st.integers(min_value=1, max_value=3))
    unified = draw(st.booleans())
    per_slot = draw(st.sampled_from([1024, 1300, 2048, 4096]))
    context = per_slot if unified else per_slot * parallel
    batch = draw(st.sampled_from([b for b in (64, 256, 512, 2048) if b <= context]))
    return {
        "contextSize": context,
        "parallel": parallel,
        "kvUnified": unified,
        "batchSize": batch,
        "ubatchSize": draw(st.sampled_from([u for u in (32, 128, 512) if u <= batch])),
        "cacheTypeK": draw(KV_TYPES),
        "cacheTypeV": draw(KV_TYPES),
        "flashAttention": draw(st.sampled_from(["on", "off", "auto"])),
    }


@given(server=accepted_server())
# The corners: a quantized V on auto (the server turns flash attention on), a quantized K without it.
@example(server={"cacheTypeK": "q8_0", "cacheTypeV": "q4_0", "flashAttention": "auto", "kvUnified": True})
@example(
    server={"cacheTypeK": "q4_0", "cacheTypeV": "f16", "flashAttention": "off", "parallel": 3, "contextSize": 3900}
)
@settings(
    max_examples=8,
    deadline=None,
    database=None,
    derandomize=True,  # the same configs on every run: CI stays reproducible and bounded in time
)
def test_server_starts_and_serves_every_config_preview_accepts(server, binary, key_file, tiny32):
    config = stack(tiny32, server)
    assume(rules.check(config, "dev")[0] == [])  # what preview refuses, the refusal tests cover
    for s in start(binary, server_args(config, tiny32, key_file)):
        assert s.health[-1] == 200, s.health
        status, props = s.request("/props")
        assert status == 200 and props["default_generation_settings"]["n_ctx"] == rules.slot_tokens(config)
        # An image at the cap, served whole: a -ub below the image's tokens does not cap it.
        status, body = s.chat([png(448, 448)], max_tokens=8)
        image_tokens = sizing.tokens_per_image(448, 448, config.server.request_budget.image_max_tokens)
        assert status == 200 and body["usage"]["prompt_tokens"] > image_tokens, body

"""The Qwen2-VL 72B example stack (docs/examples/Pulumi.qwen72b.yaml) on two A10s: it loads through
the stack-file reader with no refusal, each GPU holds its share within the headroom, the larger
quantizations are refused on the same VM naming the GPU, and every figure docs/qwen72b.md shows is
what the code computes now."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from core import multigpu, rules, sizing
from core.catalog import GB, GPU_VM_SIZES
from core.config import StackConfig
from core.loading import ConfigError, load_config, read_stack, split_pulumi_config, stack_config
from core.summary import cost_section, fits_section, per_gpu_table
from tests.conftest import ROOT, STACK_FILES, one, only, run_stack
from tools import model_block

EXAMPLE = ROOT / "docs" / "examples" / "Pulumi.qwen72b.yaml"
DOC = ROOT / "docs" / "qwen72b.md"
NV72 = "Standard_NV72ads_A10_v5"
# The quantizations of bartowski/Qwen2-VL-72B-Instruct-GGUF as its file list shows them, in GB
# rounded to three digits (docs/qwen72b.md, "Where each figure comes from"). A file of "34.5 GB"
# holds fewer than 34.55e9 bytes: the upper end bounds what the GPU must hold.
HUB_GB = {"Q3_K_S": 34.5, "Q3_K_M": 37.7, "IQ4_XS": 39.7, "Q4_K_S": 43.9, "Q4_K_M": 47.4}
HALF_A_ROUNDING_STEP = 0.05e9
# ggml's block_q6_K: 256 weights in 210 bytes (llama.cpp/ggml/src/ggml-common.h).
Q6_K_BYTES_PER_ELEMENT = 210 / 256


def upper_end(gb: float) -> int:
    return round(gb * 1e9 + HALF_A_ROUNDING_STEP)


def lower_end(gb: float) -> int:
    return round(gb * 1e9 - HALF_A_ROUNDING_STEP)


def raw_example() -> dict[str, Any]:
    _, flat = stack_config(EXAMPLE)
    return split_pulumi_config(flat)[0]


def example() -> StackConfig:
    return read_stack(EXAMPLE)[1]


def with_changes(model: dict[str, Any] | None = None, server: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(raw_example())
    raw["model"].update(model or {})
    raw["server"].update(server or {})
    return raw


def quant(name: str, size_bytes: int) -> dict[str, Any]:
    """The example's model block with another quantization of the same repo (digest unknown here)."""
    return {"file": f"Qwen2-VL-72B-Instruct-{name}.gguf", "sha256": "", "sizeBytes": size_bytes}


def refusals(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(raw, "qwen72b")
    return err.value.problems


def usable() -> int:
    return sizing.usable_gpu_bytes(GPU_VM_SIZES[NV72], example().server.vram_headroom)


# --- what the doc shows, computed ------------------------------------------------------------


def quant_table() -> list[str]:
    """Each listed quantization at the example's settings: each GPU's estimate and the verdict."""
    s = example().server
    rows = [
        f"| file (hub size) | GPU 0 | GPU 1 | at `-c {s.context_size} -np {s.parallel}`, K/V {s.cache_type_k} |",
        "|---|---|---|---|",
    ]
    for name, gb in HUB_GB.items():
        config = schema_config(with_changes(model=quant(name, upper_end(gb))))
        devices = multigpu.per_gpu(config)
        over = [f"GPU {i}" for i, d in enumerate(devices) if d.total_bytes > usable()]
        verdict = f"refused: {' and '.join(over)} over {usable() / GB:.2f} GB" if over else "fits"
        cells = " | ".join(f"{d.total_bytes / GB:.2f} GB" for d in devices)
        rows.append(f"| `{name}` ({gb:g} GB) | {cells} | {verdict} |")
    return rows


def schema_config(raw: dict[str, Any]) -> StackConfig:
    """The config of a raw block by the schema alone, so that the table can size what the rules refuse."""
    return StackConfig.model_validate(raw)


def largest_context() -> int:
    """The largest -c, in steps of 256 from the example's, whose KV cache still fits both GPUs."""
    context = example().server.context_size
    while not multigpu.each_gpu_fits(schema_config(with_changes(server={"contextSize": context + 256}))):
        context += 256
    return context


def kv_per_token_kib() -> float:
    c = example()
    return sizing.kv_cache_bytes(c.model.shape, 1, c.server.cache_type_k, c.server.cache_type_v) / 1024


def summary_sample() -> str:
    """Cost and what fits, as summary.md shows them, headings one level down for the doc."""
    lines = cost_section(example()) + fits_section(example())
    return "\n".join(f"#{line}" if line.startswith("## ") else line for line in lines).strip()


def printed_model_block(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """What `make model` prints for the example's files, with the hub's answers standing in for the
    hub (it cannot be read here): the commit, sizes and digests of the example, and a GGUF header
    of the cited shape."""
    m = example().model
    pins = {m.file: (m.size_bytes, m.sha256), m.mmproj_file: (m.mmproj_size_bytes, m.mmproj_sha256)}
    a = m.architecture
    header = {
        "general.architecture": m.family,
        f"{m.family}.block_count": a.layers,
        f"{m.family}.attention.head_count": a.hidden // a.head_dim,
        f"{m.family}.attention.head_count_kv": a.kv_heads,
        f"{m.family}.embedding_length": a.hidden,
        f"{m.family}.context_length": a.max_context,
        "tokenizer.ggml.tokens": [""] * a.vocab,
    }
    monkeypatch.setattr(model_block, "file_pins", lambda repo, revision, files: (m.revision, pins))
    monkeypatch.setattr(model_block, "gguf_header", lambda repo, commit, file: header)
    assert model_block.main(["--repo", m.repo, "--file", m.file, "--mmproj", m.mmproj_file]) == 0
    return capsys.readouterr().out


def doc() -> str:
    return DOC.read_text()


# --- the stack loads -------------------------------------------------------------------------


def test_the_example_loads_through_the_stack_file_reader_with_no_refusal_and_no_warning():
    stack, flat = stack_config(EXAMPLE)
    config, warnings = load_config(split_pulumi_config(flat)[0], stack)
    assert stack == "qwen72b"
    assert warnings == [], "every warning the example raises is accepted with its reason"
    assert (config.cluster.gpu_pool.vm_size, config.server.gpus_per_replica) == (NV72, 2)
    assert config.model.file == "Qwen2-VL-72B-Instruct-Q3_K_S.gguf"


def test_the_program_declares_the_example_under_preview_mocks():
    """The whole program, as `pulumi preview` runs it, refuses nothing in the example."""
    deployment = one(run_stack(raw_example(), "qwen72b"), "kubernetes:apps/v1:Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["args"][container["args"].index("-ts") + 1] == "1,1"


def test_the_examples_slot_and_request_are_the_7b_references():
    c, reference = example(), StackConfig()
    assert rules.slot_tokens(c) == rules.slot_tokens(reference)
    assert rules.request_tokens(c) == rules.request_tokens(reference) <= rules.slot_tokens(c)


# --- each A10 holds its share ------------------------------------------------------------------


def test_each_a10_holds_its_share_within_the_headroom():
    devices = multigpu.per_gpu(example())
    assert len(devices) == 2
    for i, device in enumerate(devices):
        assert device.total_bytes <= usable(), f"GPU {i} needs {device.total_bytes / GB:.2f} GB"
    assert devices[0].mmproj_bytes > 0 and devices[1].mmproj_bytes == 0, "the projector sits on GPU 0"


def test_the_largest_context_fits_and_one_step_more_is_refused_naming_gpu_1():
    top = largest_context()
    assert top >= example().server.context_size
    load_config(with_changes(server={"contextSize": top}), "qwen72b")
    refused = only(refusals(with_changes(server={"contextSize": top + 256})))
    assert refused.startswith("GPU 1 of 2 needs") and NV72 in refused


def test_the_weights_alone_do_not_fit_one_a10():
    refused = only(refusals(with_changes(server={"gpusPerReplica": 1})))
    assert "VRAM estimate" in refused and NV72 in refused and "no A10 size holds it" in refused


# --- larger quantizations are refused on the same VM ---------------------------------------------


@pytest.mark.parametrize("size", [lower_end(HUB_GB["Q4_K_M"]), upper_end(HUB_GB["Q4_K_M"])], ids=["low", "high"])
def test_q4_k_m_of_the_cited_size_is_refused_naming_each_gpu(size):
    problems = refusals(with_changes(model=quant("Q4_K_M", size)))
    assert [p[:15] for p in problems] == ["GPU 0 of 2 need", "GPU 1 of 2 need"], problems
    assert all(NV72 in p and "pick a smaller model.file" in p for p in problems)


@pytest.mark.parametrize(
    "server",
    [
        {"tensorSplit": [3, 2]},
        {"tensorSplit": [2, 3]},
        {
            "cacheTypeK": "q4_0",
            "cacheTypeV": "q4_0",
            "contextSize": 4096,
            "parallel": 1,
            "requestBudget": {"images": 1, "imageMaxTokens": 1024, "promptTokens": 1000, "outputTokens": 1024},
        },
    ],
    ids=["more-on-gpu-0", "more-on-gpu-1", "least-kv"],
)
def test_no_split_or_smaller_cache_brings_q4_k_m_onto_two_a10s(server):
    problems = refusals(with_changes(model=quant("Q4_K_M", lower_end(HUB_GB["Q4_K_M"])), server=server))
    assert problems and all(p.startswith("GPU ") and NV72 in p for p in problems), problems


@pytest.mark.parametrize("name", ["Q3_K_M", "IQ4_XS", "Q4_K_S"])
def test_the_next_larger_quantizations_are_refused_at_the_examples_context(name):
    problems = refusals(with_changes(model=quant(name, lower_end(HUB_GB[name]))))
    assert problems and all(p.startswith("GPU ") and NV72 in p for p in problems), problems


def test_an_output_matrix_at_q6_k_would_not_let_q3_k_m_onto_gpu_0():
    """The doc's claim: only GPU 1 holds the output matrix, so a smaller one cannot help GPU 0."""
    architecture = {**raw_example()["model"]["architecture"], "outputWeightBytes": Q6_K_BYTES_PER_ELEMENT}
    raw = with_changes(model={**quant("Q3_K_M", lower_end(HUB_GB["Q3_K_M"])), "architecture": architecture})
    assert [p[:15] for p in refusals(raw)] == ["GPU 0 of 2 need"]


def test_q3_k_s_at_the_top_of_its_rounding_fits():
    config, _ = load_config(with_changes(model=quant("Q3_K_S", upper_end(HUB_GB["Q3_K_S"]))), "qwen72b")
    assert config.model.size_bytes == example().model.size_bytes, "the example carries the upper end"


def test_a_quantization_name_in_another_case_is_still_sized_by_its_bytes():
    """The sizing reads sizeBytes, never the file name: a lower-case Q4_K_M of the same bytes is refused too."""
    lower_case = {**quant("Q4_K_M", lower_end(HUB_GB["Q4_K_M"])), "file": "qwen2-vl-72b-instruct-q4_k_m.gguf"}
    problems = refusals(with_changes(model=lower_case))
    assert problems and all(p.startswith("GPU ") for p in problems)


# --- the doc's figures are the code's -------------------------------------------------------------


def test_the_docs_quantization_table_is_what_the_sizing_computes():
    assert "\n".join(quant_table()) in doc()


def test_the_docs_per_gpu_table_is_what_summary_md_shows():
    assert "\n".join(per_gpu_table(example(), usable())) in doc()


def test_the_docs_kv_and_context_figures_are_computed():
    text = doc()
    assert f"{kv_per_token_kib():.0f} KiB per token" in text
    top = largest_context()
    assert f"`contextSize` up to {top}" in text and f"{top + 256} is refused" in text
    shape = example().model.shape
    output = sizing.output_matrix_bytes(shape)
    assert f"f16, {output / GB:.2f} GB" in text
    assert f"{2 * usable() / GB:.2f} GB for the pair" in text
    saved = shape.vocab * shape.hidden * (shape.output_weight_bytes - Q6_K_BYTES_PER_ELEMENT)
    assert f"would free {saved / GB:.2f} GB on GPU 1 only" in text


def test_the_docs_cost_and_what_fits_are_what_the_summary_computes():
    assert summary_sample() in doc()


def test_the_docs_cost_of_the_gpu_pool_is_unknown_never_zero():
    total = next(line for line in summary_sample().splitlines() if line.startswith("| **Total**"))
    assert "**unknown**" in total and "$0 " not in total


def test_the_docs_model_block_is_what_make_model_prints(monkeypatch, capsys):
    printed = printed_model_block(monkeypatch, capsys)
    assert printed in doc()
    assert printed.count("\n") > 10


def test_the_doc_is_linked_from_the_configuration_and_design_docs():
    for name in ("configuration.md", "design.md"):
        assert "](qwen72b.md" in (ROOT / "docs" / name).read_text(), name


def test_the_example_file_stays_out_of_the_repos_own_stacks():
    """Only the repo root's stack files are rendered and priced; the example is a doc, not a stack."""
    assert EXAMPLE not in STACK_FILES and Path(EXAMPLE).is_file()

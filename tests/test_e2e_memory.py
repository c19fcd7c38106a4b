"""The memory model (core.sizing, through core.rules.vram) against the buffers the real llama-server
(CPU build of the pinned release) allocates at load for the tiny Qwen2-VL with head size 32, across
KV cache types, unified and not.

The sizes come from llama-server's own load log (at -lv 4), in MiB with two decimals:
- src/llama-kv-cache.cpp:301  `llama_kv_cache: size = ... MiB (N cells, L layers, s/S seqs), K (type): ... MiB, V (type): ... MiB`
  (N cells in each of S streams: one per slot, or one unified)
- src/llama-model.cpp:1932    `load_tensors: <buffer type> model buffer size = ... MiB`
- tools/mtmd/clip.cpp:2125    `load_hparams: model size: ... MiB` (the projector's weights)
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import ModuleType

import pytest

from core import rules, sizing
from core.catalog import MIB
from core.config import StackConfig
from core.loading import load_config
from core.server_args import ServerPaths, llama_server_args
from tests.conftest import API_KEY, load_gguf, start
from tests.tiny_model_variants import head32_shape, write_head32
from tests.tiny_qwen2vl import TinyModel

pytestmark = pytest.mark.e2e

KV_LINE = re.compile(
    r"llama_kv_cache: size = +([0-9.]+) MiB \( *([0-9]+) cells, +([0-9]+) layers, +([0-9]+)/([0-9]+) seqs\), "
    r"K \((\w+)\): +([0-9.]+) MiB, V \((\w+)\): +([0-9.]+) MiB"
)
MODEL_BUFFER = re.compile(r"load_tensors: +(\S+) model buffer size = +([0-9.]+) MiB")
PROJECTOR = re.compile(r"load_hparams: model size: +([0-9.]+) MiB")
LOGGED_MIB = 0.005 * MIB  # a value printed with %.2f MiB is within this of the true one
# A context of tens of thousands of cells that slots do not divide evenly, so padding shows:
# 3 slots of pad(30208 / 3, 256) = 10240 cells each (30720), or one unified cache of 30208.
CONTEXT, PARALLEL = 30000, 3


@pytest.fixture(scope="module")
def gguf() -> ModuleType:
    return load_gguf()


@pytest.fixture(scope="module")
def head32(gguf: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_head32(gguf, tmp_path_factory.mktemp("head32"))


def config_for(model: TinyModel, type_k: str, type_v: str, unified: bool) -> StackConfig:
    s = head32_shape()
    raw = {
        "model": {
            # Another file needs its own digest and size (the config refuses a stale pin).
            "file": model.text.name,
            "sha256": hashlib.sha256(model.text.read_bytes()).hexdigest(),
            "sizeBytes": model.text.stat().st_size,
            "mmprojFile": model.mmproj.name,
            "mmprojSha256": hashlib.sha256(model.mmproj.read_bytes()).hexdigest(),
            "mmprojSizeBytes": model.mmproj.stat().st_size,
            "architecture": {
                "layers": s.layers,
                "kvHeads": s.kv_heads,
                "headDim": s.head_dim,
                "maxContext": s.max_context,
                "vocab": s.vocab,
                "hidden": s.hidden,
            },
            "storage": {"sizeGi": 1},
        },
        "server": {
            "contextSize": CONTEXT,
            "parallel": PARALLEL,
            "threads": 2,
            "flashAttention": "on",  # a quantized V cache needs flash attention
            "cacheTypeK": type_k,
            "cacheTypeV": type_v,
            "kvUnified": unified,
        },
    }
    return load_config(raw, "e2e")[0]


def load_log(binary: Path, model: TinyModel, config: StackConfig, directory: Path) -> str:
    """What llama-server logs while loading with this config (verbosity 4 shows the buffer sizes)."""
    key_file = directory / "api-key"
    key_file.write_text(API_KEY)
    paths = ServerPaths(model=str(model.text), mmproj=str(model.mmproj), api_key_file=str(key_file))
    log = directory / "llama-server.log"
    for server in start(binary, [*llama_server_args(config.server, paths), "-lv", "4"], log=log):
        assert server.health[-1] == 200, server.health
    return log.read_text()


def tensor_data_bytes(gguf: ModuleType, path: Path) -> int:
    """The file's tensor data: its size less the GGUF header and metadata (what the weights take in memory)."""
    return path.stat().st_size - gguf.GGUFReader(str(path)).data_offset


CASES = [
    (k, v, unified)
    for k, v in (("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "q4_0"))
    for unified in (False, True)
]


@pytest.fixture(scope="module")
def logs(binary: Path, head32: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple, str]:
    """The load log of each case, one server start each."""
    out = {}
    for case in CASES:
        out[case] = load_log(binary, head32, config_for(head32, *case), tmp_path_factory.mktemp("mem"))
    return out


@pytest.mark.parametrize(("type_k", "type_v", "unified"), CASES)
def test_kv_cache_bytes_equal_what_the_server_allocates(logs, head32, type_k, type_v, unified, capsys):
    config = config_for(head32, type_k, type_v, unified)
    match = KV_LINE.search(logs[(type_k, type_v, unified)])
    assert match, "no llama_kv_cache size line in the load log"
    total_mib, cells_per_stream, _, _, streams, logged_k, k_mib, logged_v, v_mib = match.groups()
    cells = int(cells_per_stream) * int(streams)  # one stream per slot, or one unified
    ours = rules.vram(config).kv_bytes
    theirs = float(total_mib) * MIB
    with capsys.disabled():
        print(
            f"\n[memory] KV {type_k}/{type_v} {'unified' if unified else 'per slot'}: {cells} cells, "
            f"server {float(total_mib):.2f} MiB (K {k_mib}, V {v_mib}), sizing {ours / MIB:.2f} MiB, "
            f"{abs(ours - theirs) / theirs:.2%} apart"
        )
    assert (logged_k, logged_v) == (type_k, type_v)
    assert cells == sizing.allocated_context(CONTEXT, PARALLEL, unified)
    assert abs(ours - theirs) <= 0.01 * theirs


def test_weights_figure_is_the_file_the_server_maps(logs, head32, gguf, capsys):
    config = config_for(head32, "f16", "f16", False)
    buffers = [float(mib) * MIB for _, mib in MODEL_BUFFER.findall(logs[("f16", "f16", False)])]
    assert buffers, "no model buffer line in the load log"
    data = tensor_data_bytes(gguf, head32.text)
    ours = rules.vram(config).weights_bytes
    with capsys.disabled():
        print(
            f"\n[memory] weights: server {sum(buffers) / MIB:.2f} MiB, sizing (the file) {ours} B = {ours / MIB:.2f} MiB "
            f"of which tensor data {data} B"
        )
    # The server maps the tensor data; the sizing counts the whole file, so it may be above the
    # server's figure by the file's header and metadata, never below it.
    slack = LOGGED_MIB * len(buffers)
    assert -slack <= ours - sum(buffers) <= (ours - data) + slack


def test_projector_figure_is_the_file_the_server_loads(logs, head32, gguf, capsys):
    config = config_for(head32, "f16", "f16", False)
    match = PROJECTOR.search(logs[("f16", "f16", False)])
    assert match, "no projector model size line in the load log"
    theirs = float(match.group(1)) * MIB
    data = tensor_data_bytes(gguf, head32.mmproj)
    ours = rules.vram(config).mmproj_bytes
    with capsys.disabled():
        print(
            f"\n[memory] projector: server {theirs / MIB:.2f} MiB, sizing (the file) {ours} B = {ours / MIB:.2f} MiB of which tensor data {data} B"
        )
    assert -LOGGED_MIB <= ours - theirs <= (ours - data) + LOGGED_MIB

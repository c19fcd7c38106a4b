"""Several GPUs in one replica, proven on the real llama-server without GPUs: each ggml-rpc-server
(built beside the CPU llama-server, GGML_RPC=ON) is one device, so the rendered `-sm`/`-ts`
split the tiny Qwen2-VL (head size 32) over two devices exactly as over two GPUs.

Each device's buffers come from the server's own load log (at -lv 4):
- src/llama-model.cpp:1932   `load_tensors: <buffer> model buffer size = ... MiB`
- src/llama-kv-cache.cpp:291 `llama_kv_cache: <buffer> KV buffer size = ... MiB`
- tools/mtmd/clip.cpp        `clip_ctx: CLIP using <buffer> backend` (the projector's device)
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

from core import multigpu, sizing
from core.catalog import MIB
from core.config import StackConfig
from core.loading import load_config
from core.server_args import ServerPaths, llama_server_args
from tests import tiny_qwen2vl
from tests.conftest import API_KEY, free_port, load_gguf, start, tiny_stack_config
from tests.tiny_model_variants import HEAD32, HEAD32_MAX_CONTEXT
from tests.tiny_qwen2vl import TinyModel
from tools.server_client import png

pytestmark = pytest.mark.e2e

# A buffer is named after its backend and endpoint (`RPC0[127.0.0.1:port]` for either device), so
# the endpoint, in the order of --rpc, tells the device.
BUFFER = re.compile(r"(?:load_tensors|llama_kv_cache): +RPC\d+\[([0-9.:]+)\] (model|KV) buffer size = +([0-9.]+) MiB")
PROJECTOR_DEVICE = re.compile(r"clip_ctx: CLIP using RPC\d+\[([0-9.:]+)\] backend")
LOGGED_MIB = 0.005 * MIB  # a value printed with %.2f MiB is within this of the true one
# The head-32 model with 6 layers, so that shares move layers: llama.cpp cuts 7 (6 and the output)
# at the split points, giving (layers on each device) 4/2, 6/0 and 2/4, the output on device 1.
LAYERS = 6
SPLITS = [((1, 1), (4, 2)), ((3, 1), (6, 0)), ((1, 3), (2, 4))]


@pytest.fixture(scope="module")
def gguf() -> ModuleType:
    return load_gguf()


@pytest.fixture(scope="module")
def head32(gguf: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The head-32 tiny model with 6 layers."""
    with mock.patch.dict(tiny_qwen2vl.TEXT, {**HEAD32, "layers": LAYERS}):
        return tiny_qwen2vl.write_tiny_qwen2vl(gguf, tmp_path_factory.mktemp("head32"), max_context=HEAD32_MAX_CONTEXT)


@pytest.fixture(scope="module")
def devices(binary: Path) -> Iterator[list[str]]:
    """Two ggml-rpc-servers on loopback ports: two devices for llama-server's --rpc."""
    rpc = binary.with_name("ggml-rpc-server")
    assert rpc.exists(), f"{rpc} missing: the CPU build makes it with GGML_RPC=ON (tools/llama_build.py)"
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            [str(rpc), "-H", "127.0.0.1", "-p", str(p), "-t", "1"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    try:
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"rpc-server on {port} did not listen"
                    time.sleep(0.1)
        yield [f"127.0.0.1:{p}" for p in ports]
    finally:
        for p in processes:
            p.terminate()
            p.wait(timeout=30)


def split_config(model: TinyModel, shares: tuple[int, ...]) -> StackConfig:
    """The tiny model's stack over len(shares) GPUs: 3 slots of 10240 cells, f16 KV, flash attention."""
    raw = tiny_stack_config(model)
    # The tiny model is all f32, its output matrix too.
    raw["model"]["architecture"]["outputWeightBytes"] = 4.0
    raw["cluster"] = {"gpuPool": {"vmSize": "Standard_NV72ads_A10_v5"}}
    raw["server"].update(
        contextSize=30000, parallel=3, flashAttention="on", gpusPerReplica=len(shares), tensorSplit=list(shares)
    )
    return load_config(raw, "e2e")[0]


def run(binary: Path, model: TinyModel, config: StackConfig, devices: list[str], directory: Path, chat: bool) -> str:
    key_file = directory / "api-key"
    key_file.write_text(API_KEY)
    paths = ServerPaths(model=str(model.text), mmproj=str(model.mmproj), api_key_file=str(key_file))
    log = directory / "llama-server.log"
    args = [*llama_server_args(config.server, paths), "--rpc", ",".join(devices), "-lv", "4"]
    for server in start(binary, args, log=log):
        assert server.health[-1] == 200, server.health
        if chat:
            status, body = server.chat([png(224, 224)], max_tokens=4)
            assert status == 200, body
            assert body["usage"]["prompt_tokens"] > 66, body  # the image's tokens reached the model
    return log.read_text()


def per_device(log: str, kind: str, devices: list[str]) -> dict[int, float]:
    """Bytes of `kind` (model or KV) buffers on each device, by its place in --rpc."""
    out: dict[int, float] = {}
    for endpoint, what, mib in BUFFER.findall(log):
        if what == kind:
            i = devices.index(endpoint)
            out[i] = out.get(i, 0.0) + float(mib) * MIB
    return out


@pytest.fixture(scope="module")
def logs(binary, head32, devices, tmp_path_factory) -> dict[tuple[int, ...], str]:
    return {
        shares: run(binary, head32, split_config(head32, shares), devices, tmp_path_factory.mktemp("split"), i == 0)
        for i, (shares, _) in enumerate(SPLITS)
    }


@pytest.mark.parametrize(("shares", "layers"), SPLITS)
def test_layers_land_where_the_sizing_puts_them(head32, shares, layers):
    config = split_config(head32, shares)
    where = sizing.layer_devices(config.model.architecture.layers, config.server.gpu_layers, shares)
    assert tuple(where[:-1].count(i) for i in range(len(shares))) == layers


@pytest.mark.parametrize(("shares", "layers"), SPLITS)
def test_kv_cache_of_each_device_is_within_1_percent_of_the_sizing(logs, head32, devices, shares, layers, capsys):
    theirs = per_device(logs[shares], "KV", devices)
    ours = multigpu.per_gpu(split_config(head32, shares))
    with capsys.disabled():
        print(
            f"\n[multi-gpu] -ts {','.join(map(str, shares))} KV: server "
            f"{[f'{theirs.get(i, 0) / MIB:.2f}' for i in range(len(ours))]} MiB, sizing "
            f"{[f'{d.kv_bytes / MIB:.2f}' for d in ours]} MiB"
        )
    for i, device in enumerate(ours):
        logged = theirs.get(i, 0.0)
        assert (device.kv_bytes == 0) == (logged == 0), (i, device.kv_bytes, logged)
        assert abs(device.kv_bytes - logged) <= max(0.01 * logged, LOGGED_MIB), (i, device.kv_bytes, logged)


def layer_tensor_bytes(gguf: ModuleType, path: Path) -> int:
    """Bytes of the repeating layers' tensors (blk.*) in a GGUF file."""
    return sum(int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors if t.name.startswith("blk."))


@pytest.mark.parametrize(("shares", "layers"), SPLITS)
def test_weights_of_each_device_are_never_below_what_the_server_puts_there(logs, head32, gguf, devices, shares, layers):
    theirs = per_device(logs[shares], "model", devices)
    config = split_config(head32, shares)
    ours = multigpu.per_gpu(config)
    # Spread by layers, the file also carries the embeddings, the output and the header; the
    # output matrix is counted once more, whole, on its device. No device is over by more.
    outside_layers = head32.text.stat().st_size - layer_tensor_bytes(gguf, head32.text)
    allowance = outside_layers + sizing.output_matrix_bytes(config.model.shape)
    for i, device in enumerate(ours):
        logged = theirs.get(i, 0.0)
        assert -LOGGED_MIB <= device.weights_bytes - logged <= allowance + LOGGED_MIB, (i, device.weights_bytes, logged)


def test_the_projector_sits_on_the_first_device(logs, devices):
    for log in logs.values():
        assert PROJECTOR_DEVICE.findall(log) == [devices[0]]

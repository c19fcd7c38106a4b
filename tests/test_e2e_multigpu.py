"""Several GPUs in one replica, proven on the real llama-server without GPUs: each ggml-rpc-server
(built beside the CPU llama-server, GGML_RPC=ON) is one device, so the rendered `-sm`/`-ts`
split the tiny Qwen2-VL (head size 32) over two devices exactly as over two GPUs.

Each device's buffers come from the server's own load log (at -lv 4):
- src/llama-model.cpp:1932   `load_tensors: <buffer> model buffer size = ... MiB`
- src/llama-kv-cache.cpp:291 `llama_kv_cache: <buffer> KV buffer size = ... MiB`
The buffer names the device: `RPC0[127.0.0.1:port]`, `RPC1[...]`, in the order of `--rpc`.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from core import multigpu, sizing
from core.catalog import MIB
from core.config import StackConfig
from core.server_args import ServerPaths, llama_server_args
from tests.conftest import API_KEY, free_port, load_gguf, start
from tests.test_e2e_memory import config_for, tensor_data_bytes
from tests.tiny_model_variants import write_head32
from tests.tiny_qwen2vl import TinyModel
from tools.server_client import png

pytestmark = pytest.mark.e2e

BUFFER = re.compile(r"(load_tensors|llama_kv_cache): +RPC(\d+)\[[^\]]*\] (model|KV) buffer size = +([0-9.]+) MiB")
LOGGED_MIB = 0.005 * MIB  # a value printed with %.2f MiB is within this of the true one
# (shares, layers on each device) for the head-32 model's 2 layers and its output layer.
SPLITS = [((1, 1), (1, 1)), ((3, 1), (2, 0))]


@pytest.fixture(scope="module")
def gguf() -> ModuleType:
    return load_gguf()


@pytest.fixture(scope="module")
def head32(gguf: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_head32(gguf, tmp_path_factory.mktemp("head32"))


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
        import socket

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
    base = config_for(model, "f16", "f16", False)
    server = base.server.model_copy(update={"gpus_per_replica": len(shares), "tensor_split": list(shares)})
    return base.model_copy(update={"server": server})


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


def per_device(log: str, kind: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for _, device, what, mib in BUFFER.findall(log):
        if what == kind:
            out[int(device)] = out.get(int(device), 0.0) + float(mib) * MIB
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
def test_kv_cache_of_each_device_is_within_1_percent_of_the_sizing(logs, head32, shares, layers, capsys):
    theirs = per_device(logs[shares], "KV")
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


@pytest.mark.parametrize(("shares", "layers"), SPLITS)
def test_weights_of_each_device_are_never_below_what_the_server_puts_there(logs, head32, gguf, shares, layers):
    theirs = per_device(logs[shares], "model")
    ours = multigpu.per_gpu(split_config(head32, shares))
    for i, device in enumerate(ours):
        assert device.weights_bytes >= theirs.get(i, 0.0) - LOGGED_MIB, (i, device.weights_bytes, theirs)
    # Over by no more than the file's tensors outside the devices (the input embeddings stay on
    # the CPU), its header, and the output matrix counted at f16 on top of its share.
    slack = (
        head32.text.stat().st_size
        - sum(theirs.values())
        + sizing.output_matrix_bytes(ours and split_config(head32, shares).model.shape)
    )
    assert sum(d.weights_bytes for d in ours) - sum(theirs.values()) <= slack + LOGGED_MIB * len(ours)
    assert tensor_data_bytes(gguf, head32.text) > 0

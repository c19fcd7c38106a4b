"""End to end against the real llama-server of the pinned release (CPU build), serving a tiny
Qwen2-VL made here: the rendered command, the sizing rules and the model fetch path, proven."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import sizing
from core.loading import load_config
from tests.conftest import ROOT, Server, one, run_stack, start, tiny_stack_config
from tests.httpfiles import FileServer
from tests.tiny_qwen2vl import TinyModel
from tools.server_client import png

pytestmark = pytest.mark.e2e

HF = "https://huggingface.co"


@pytest.fixture(scope="module")
def rendered_pod(tiny: TinyModel) -> dict:
    """The pod spec the program renders for the test stack."""
    mocks = run_stack(tiny_stack_config(tiny), "dev")
    return one(mocks, "kubernetes:apps/v1:Deployment")["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def hub(tiny: TinyModel) -> Iterator[FileServer]:
    """A loopback stand-in for the Hugging Face file URLs the init containers fetch."""
    root = tiny.text.parent
    server = FileServer(root)
    yield server
    server.close()


def run_init_containers(pod: dict, hub: FileServer, volume: Path) -> None:
    """Runs the rendered init containers' fetch command, with only the host and volume swapped."""
    for init in pod["initContainers"]:
        url, dest, digest = init["args"]
        local_url = hub.url(url.rsplit("/", 1)[-1])
        assert url.startswith(HF + "/")
        result = subprocess.run(
            ["sh", str(ROOT / "image" / "fetch-model.sh"), local_url, str(volume / Path(dest).name), digest],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{init['name']}: {result.stderr}"


def local_args(pod: dict, volume: Path, key_file: Path) -> list[str]:
    """The rendered server args with only paths swapped for local ones."""
    container = next(c for c in pod["containers"] if c["name"] == "llama-server")
    args = list(container["args"])
    for flag_name in ("-m", "--mmproj"):
        args[args.index(flag_name) + 1] = str(volume / Path(args[args.index(flag_name) + 1]).name)
    args[args.index("--api-key-file") + 1] = str(key_file)
    return args


@pytest.fixture(scope="module")
def volume(tmp_path_factory, rendered_pod, hub) -> Path:
    v = tmp_path_factory.mktemp("volume")
    run_init_containers(rendered_pod, hub, v)
    return v


@pytest.fixture(scope="module")
def server(binary, rendered_pod, volume, key_file) -> Iterator[Server]:
    yield from start(binary, local_args(rendered_pod, volume, key_file))


@pytest.fixture(scope="module")
def config(tiny):
    return load_config(tiny_stack_config(tiny), "dev")[0]


def test_fetch_put_both_files_in_the_volume_verified(volume, tiny):
    for model_file in (tiny.text, tiny.mmproj):
        fetched = volume / model_file.name
        assert fetched.read_bytes() == model_file.read_bytes()
        assert (volume / f"{model_file.name}.sha256").read_text().strip() == hashlib.sha256(
            fetched.read_bytes()
        ).hexdigest()


def test_health_is_unavailable_while_loading_then_ok(server):
    assert server.health[-1] == 200, server.health
    assert all(h in (None, 503) for h in server.health[:-1]), server.health
    status, body = server.request("/health", key=None)
    assert (status, body) == (200, {"status": "ok"})


def test_chat_needs_the_api_key(server):
    status, _ = server.chat([png(56, 56)], key=None)
    assert status == 401
    status, _ = server.chat([png(56, 56)], key="wrong-key")
    assert status == 401


def test_image_chat_with_the_key_answers_with_usage(server):
    status, body = server.chat([png(224, 224)])
    assert status == 200, body
    assert body["usage"]["prompt_tokens"] > 66 and body["usage"]["completion_tokens"] >= 1
    assert body["model"] == "tiny-qwen2-vl"


def test_metrics_export_the_names_scraping_and_draining_use(server):
    status, text = server.request("/metrics")
    assert status == 200
    names = {line.split(" ")[0].split("{")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for metric in (
        "llamacpp:prompt_tokens_total",
        "llamacpp:tokens_predicted_total",
        "llamacpp:requests_processing",
        "llamacpp:requests_deferred",
    ):
        assert metric in names
    assert server.request("/metrics", key=None)[0] == 401


def test_every_llama_server_metric_the_stack_queries_is_exported(server):
    """The dashboard, the alert rules and the autoscaler's triggers name only real metrics."""
    from core import metrics

    _, text = server.request("/metrics")
    exported = {line.split(" ")[0].split("{")[0] for line in text.splitlines() if line and not line.startswith("#")}
    queries = metrics.DASHBOARD.read_text() + " ".join(
        (metrics.deferred_requests("ns"), metrics.processing_requests("ns"), metrics.deferred_alert("ns"))
    )
    queried = set(re.findall(r"llamacpp:[a-z_]+", queries))
    assert queried == set(metrics.LLAMACPP_METRICS)
    assert queried <= exported, f"not exported by the pinned llama-server: {queried - exported}"


@pytest.mark.parametrize(("width", "height"), [(56, 56), (224, 224), (448, 448), (1000, 700), (300, 120)])
def test_tokens_per_image_match_the_sizing_model(server, config, width, height):
    text_only = server.chat([])
    with_image = server.chat([png(width, height)])
    assert text_only[0] == with_image[0] == 200
    added = with_image[1]["usage"]["prompt_tokens"] - text_only[1]["usage"]["prompt_tokens"]
    assert added == sizing.tokens_per_image(width, height, max_tokens=config.server.request_budget.image_max_tokens)


def test_request_the_validator_admits_fits_its_slot(server, config):
    b = config.server.request_budget
    per_slot = sizing.tokens_per_slot(
        config.server.context_size, config.server.parallel, False, config.model.architecture.max_context
    )
    assert sizing.worst_case_request_tokens(b.images, b.image_max_tokens, b.prompt_tokens, b.output_tokens) <= per_slot
    text = "a" * 300  # one byte token per letter in the tiny vocabulary
    status, body = server.chat([], text=text)
    assert status == 200 and body["usage"]["prompt_tokens"] <= b.prompt_tokens, body
    status, body = server.chat([png(1200, 1200)], text=text, max_tokens=b.output_tokens)
    assert status == 200, body


def test_request_the_validator_rejects_gets_http_400(server, config):
    b = config.server.request_budget
    per_slot = sizing.tokens_per_slot(
        config.server.context_size, config.server.parallel, False, config.model.architecture.max_context
    )
    images = 4
    assert sizing.worst_case_request_tokens(images, b.image_max_tokens, 0, 0) > per_slot
    status, body = server.chat([png(448, 448)] * images, max_tokens=8)
    assert status == 400
    assert body["error"]["type"] == "exceed_context_size_error"


def run_drain(server: Server, key_file: Path, max_seconds: int, settle_seconds: int | None = None) -> tuple[int, float]:
    """Runs the preStop hook against this server; returns its exit status and how long it took."""
    env = dict(os.environ)
    if settle_seconds is not None:
        env["DRAIN_SETTLE_SECONDS"] = str(settle_seconds)
    started = time.monotonic()
    result = subprocess.run(
        ["sh", str(ROOT / "image" / "drain.sh"), server.base.rsplit(":", 1)[1], str(key_file), str(max_seconds)],
        env=env,
        capture_output=True,
        text=True,
        timeout=max_seconds + 30,
        check=False,
    )
    return result.returncode, time.monotonic() - started


def test_drain_hook_returns_once_the_server_is_idle(server, key_file):
    rc, took = run_drain(server, key_file, 30)
    assert rc == 0
    assert took < 10


def test_drain_hook_waits_for_an_in_flight_request(server, key_file):
    import threading

    answer: dict = {}
    # A long answer: generation runs until the slot is full or max_tokens is reached.
    worker = threading.Thread(target=lambda: answer.update(result=server.chat([], max_tokens=900, ignore_eos=True)))
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # wait until the server reports the request as processing
        _, text = server.request("/metrics")
        if any(line.startswith("llamacpp:requests_processing 1") for line in text.splitlines()):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the request never showed as processing")
    rc, waited = run_drain(server, key_file, 60, settle_seconds=0)  # no Service here to leave
    finished_before_drain_returned = not worker.is_alive()
    worker.join()
    assert rc == 0
    assert finished_before_drain_returned, "drain.sh returned while a request was still being answered"
    assert waited > 0.5, f"drain.sh returned after {waited:.2f} s: it did not wait for the request"
    assert answer["result"][0] == 200


@pytest.mark.parametrize(
    ("context", "parallel", "unified"),
    [(2048, 2, False), (8000, 3, False), (16384, 2, False), (3000, 2, True), (8192, 2, True)],
)
def test_per_slot_context_of_the_server_equals_ours(
    binary, rendered_pod, volume, key_file, tiny, context, parallel, unified
):
    args = local_args(rendered_pod, volume, key_file)
    args[args.index("-c") + 1] = str(context)
    args[args.index("-np") + 1] = str(parallel)
    args[args.index("--no-kv-unified")] = "--kv-unified" if unified else "--no-kv-unified"
    for s in start(binary, args):
        status, props = s.request("/props")
        assert status == 200
        assert props["default_generation_settings"]["n_ctx"] == sizing.tokens_per_slot(
            context, parallel, unified, tiny.max_context
        )


def test_second_start_downloads_nothing(rendered_pod, hub, volume):
    hub.requests.clear()
    run_init_containers(rendered_pod, hub, volume)
    assert hub.requests == []


def test_startup_and_image_latency_are_reported(server, capsys):
    started = time.monotonic()
    status, _ = server.chat([png(448, 448)], max_tokens=16)
    latency = time.monotonic() - started
    assert status == 200
    with capsys.disabled():
        print(
            f"\n[e2e] llama-server start-up {server.startup_seconds:.2f} s; 448x448 image chat {latency:.2f} s (CPU, {os.cpu_count()} cores)"
        )

"""image/drain.sh (the preStop hook) against a scripted /metrics on 127.0.0.1: only a gauge at 0 or
a refused connection ends the wait early; every other answer keeps in-flight requests safe."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.httpfiles import ScriptedServer, pids_with_in_argv

SCRIPT = ROOT / "image" / "drain.sh"
KEY = "sk-drain-test-key"
# The hook counts whole seconds of the clock, so it may stop up to 1 s early; 4 keeps that above
# the old hook's fixed 2 s poll timeout, so a slow answer cannot pass by luck.
MAX_SECONDS = 4
IDLE = "# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 0\n"
BUSY = "llamacpp:requests_processing 1\n"


@pytest.fixture
def metrics():
    s = ScriptedServer()
    yield s
    s.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    f = tmp_path / "api-key"
    f.write_text(KEY)
    return f


def start_drain(port: int, key_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["sh", str(SCRIPT), str(port), str(key_file), str(MAX_SECONDS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DRAIN_SETTLE_SECONDS": "0", "DRAIN_POLL_TIMEOUT_SECONDS": "1"},
    )


def drain(port: int, key_file: Path) -> float:
    """Seconds the hook took; it always exits 0, so Kubernetes goes on stopping the pod."""
    started = time.monotonic()
    hook = start_drain(port, key_file)
    _, err = hook.communicate(timeout=30)
    assert hook.returncode == 0, err
    return time.monotonic() - started


def test_an_idle_server_ends_the_wait_at_once(metrics, key_file):
    metrics.body = IDLE
    assert drain(metrics.port, key_file) < 1.5
    assert metrics.requests[0]["authorization"] == f"Bearer {KEY}"


def test_a_refused_connection_ends_the_wait_at_once(key_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    assert drain(port, key_file) < 1.5


@pytest.mark.parametrize(
    ("status", "body", "delay"),
    [
        (200, BUSY, 0.0),
        (401, "Unauthorized", 0.0),
        (500, "error", 0.0),
        (503, "Loading model", 0.0),
        (200, "# no llama-server gauge here\n", 0.0),
        (200, IDLE, 5.0),  # answers after the 1 s poll timeout: unknown, not idle
    ],
    ids=["busy", "unauthorized", "server-error", "unavailable", "no-gauge", "slow"],
)
def test_anything_but_an_idle_gauge_keeps_waiting_until_the_deadline(metrics, key_file, status, body, delay):
    metrics.status, metrics.body, metrics.delay = status, body, delay
    took = drain(metrics.port, key_file)
    assert took >= MAX_SECONDS - 1, f"drain.sh returned after {took:.2f} s on HTTP {status}"
    assert took < MAX_SECONDS + 3


def test_the_key_is_never_in_an_argument_list(metrics, key_file):
    metrics.body, metrics.delay = IDLE, 1.5  # keeps curl alive while the process list is read
    hook = start_drain(metrics.port, key_file)
    deadline = time.monotonic() + 10
    while not metrics.requests:
        assert time.monotonic() < deadline, "drain.sh never polled /metrics"
        time.sleep(0.05)
    with_key = pids_with_in_argv(KEY)
    hook.communicate(timeout=30)
    assert metrics.requests[0]["authorization"] == f"Bearer {KEY}"
    assert with_key == [], "the API key is in a process's argument list"

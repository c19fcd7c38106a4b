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
MAX_SECONDS = 2
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


def start_drain(
    port: int, key_file: Path, max_seconds: int = MAX_SECONDS, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["sh", str(SCRIPT), str(port), str(key_file), str(max_seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DRAIN_SETTLE_SECONDS": "0", "DRAIN_POLL_TIMEOUT_SECONDS": "1", **(env or {})},
    )


def drain(port: int, key_file: Path, max_seconds: int = MAX_SECONDS, env: dict[str, str] | None = None) -> float:
    """Seconds the hook took; it always exits 0, so Kubernetes goes on stopping the pod."""
    started = time.monotonic()
    hook = start_drain(port, key_file, max_seconds, env)
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
    ("status", "body"),
    [
        (200, BUSY),
        (401, "Unauthorized"),
        (500, "error"),
        (503, "Loading model"),
        (200, "# no llama-server gauge here\n"),
    ],
    ids=["busy", "unauthorized", "server-error", "unavailable", "no-gauge"],
)
def test_anything_but_an_idle_gauge_keeps_waiting_until_the_deadline(metrics, key_file, status, body):
    metrics.status, metrics.body = status, body
    took = drain(metrics.port, key_file)
    assert took >= MAX_SECONDS - 0.1, f"drain.sh returned after {took:.2f} s on HTTP {status}"
    assert took < MAX_SECONDS + 2


def test_a_metrics_answer_slower_than_the_poll_timeout_keeps_waiting(metrics, key_file):
    # Idle, but only after the 1 s poll timeout: unknown, not idle. A 3 s deadline is past the
    # 2 s curl timeout an earlier hook used, so stopping at the first timeout cannot pass.
    metrics.body, metrics.delay = IDLE, 5.0
    took = drain(metrics.port, key_file, max_seconds=3)
    assert took >= 2.9, f"drain.sh returned after {took:.2f} s on a slow /metrics"


def test_the_settle_wait_counts_toward_the_deadline(metrics, key_file):
    # The kubelet kills the pod at terminationGracePeriodSeconds, whatever the hook is doing.
    metrics.body = BUSY
    took = drain(metrics.port, key_file, env={"DRAIN_SETTLE_SECONDS": "1"})
    assert MAX_SECONDS - 0.1 <= took < MAX_SECONDS + 0.9, f"drain.sh took {took:.2f} s with MAX_SECONDS={MAX_SECONDS}"


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


def test_curl_reads_no_curlrc_that_would_send_it_elsewhere(metrics, key_file, tmp_path):
    """A ~/.curlrc with a dead proxy would make every poll a refused connection, which ends the
    wait at once on a busy server: -q first keeps curl to the hook's own arguments."""
    (tmp_path / ".curlrc").write_text('proxy = "http://127.0.0.1:9"\nnoproxy = ""\n')
    metrics.body = BUSY
    took = drain(metrics.port, key_file, env={"HOME": str(tmp_path)})
    assert took >= MAX_SECONDS - 0.1, f"drain.sh returned after {took:.2f} s: curl read the curlrc"
    assert metrics.requests, "curl never reached the server"

"""image/fetch-model.sh against a loopback HTTP server, as the init container runs it."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import trustme

from tests.conftest import ROOT
from tests.httpfiles import FileServer, ScriptedServer, pids_with_in_argv

SCRIPT = ROOT / "image" / "fetch-model.sh"
PAYLOAD = os.urandom(256 * 1024)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server(tmp_path: Path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.gguf").write_bytes(PAYLOAD)
    s = FileServer(served)
    yield s
    s.close()


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    v = tmp_path / "volume"
    v.mkdir()
    return v


def fetch(
    server: FileServer, volume: Path, sha256: str = DIGEST, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Retries would hide the cut this test makes on purpose; the script's own retry is curl's.
    return subprocess.run(
        ["sh", str(SCRIPT), server.url("model.gguf"), str(volume / "model.gguf"), sha256],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def fetch_url(url: str, volume: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The script fetching `url` into the volume's model.gguf, with these extra variables."""
    return subprocess.run(
        ["sh", str(SCRIPT), url, str(volume / "model.gguf"), DIGEST],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


def test_fresh_download_is_verified_and_put_in_place(server, volume):
    result = fetch(server, volume)
    assert result.returncode == 0, result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD
    assert (volume / "model.gguf.sha256").read_text().strip() == DIGEST
    assert not (volume / "model.gguf.part").exists()


def test_second_run_downloads_nothing(server, volume):
    assert fetch(server, volume).returncode == 0
    server.requests.clear()
    result = fetch(server, volume)
    assert result.returncode == 0
    assert server.requests == []
    assert "nothing to download" in result.stderr


def test_resumes_a_partial_download(server, volume):
    (volume / "model.gguf.part").write_bytes(PAYLOAD[:100_000])
    result = fetch(server, volume)
    assert result.returncode == 0, result.stderr
    assert server.requests[0]["range"] == "bytes=100000-"
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_resumes_after_a_cut_connection(server, volume):
    server.cut_after = 50_000
    first = fetch(server, volume)
    # curl retries a cut transfer itself, resuming where it stopped.
    if first.returncode != 0:
        assert not (volume / "model.gguf").exists()
        assert (volume / "model.gguf.part").stat().st_size > 0
        first = fetch(server, volume)
    assert first.returncode == 0, first.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD
    assert any(r.get("range", "").startswith("bytes=") for r in server.requests[1:])


def test_checksum_mismatch_fails_and_leaves_no_file(server, volume):
    result = fetch(server, volume, sha256="0" * 64)
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr
    # Only the writer's lock file stays; removing it would race with a waiting writer.
    assert [p.name for p in volume.iterdir()] == ["model.gguf.lock"]


def test_a_changed_file_on_disk_is_downloaded_again(server, volume):
    assert fetch(server, volume).returncode == 0
    (volume / "model.gguf").write_bytes(b"corrupted")
    (volume / "model.gguf.sha256").write_text("stale\n")
    result = fetch(server, volume)
    assert result.returncode == 0, result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_without_a_pinned_digest_the_first_download_is_recorded_and_checked_later(server, volume):
    assert fetch(server, volume, sha256="").returncode == 0
    assert (volume / "model.gguf.sha256").read_text().strip() == DIGEST
    server.requests.clear()
    assert fetch(server, volume, sha256="").returncode == 0
    assert server.requests == []
    (volume / "model.gguf").write_bytes(b"tampered")
    result = fetch(server, volume, sha256="")
    assert result.returncode == 0
    assert "downloading it again" in result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_token_header_only_when_a_token_is_set(server, volume, tmp_path):
    assert fetch(server, volume).returncode == 0
    assert "authorization" not in server.requests[0]
    token = tmp_path / "token"
    token.write_text("hf_secret_token")
    (volume / "model.gguf").unlink()
    (volume / "model.gguf.sha256").unlink()
    result = fetch(server, volume, env={"HF_TOKEN_FILE": str(token)})
    assert result.returncode == 0, result.stderr
    assert server.requests[-1]["authorization"] == "Bearer hf_secret_token"
    assert "hf_secret_token" not in result.stderr


def test_empty_token_file_sends_no_header(server, volume, tmp_path):
    token = tmp_path / "token"
    token.write_text("")
    assert fetch(server, volume, env={"HF_TOKEN_FILE": str(token)}).returncode == 0
    assert "authorization" not in server.requests[0]


def test_server_without_ranges_starts_over(server, volume):
    server.ranges = False
    (volume / "model.gguf.part").write_bytes(PAYLOAD[:1000])
    result = fetch(server, volume)
    assert result.returncode == 0, result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_missing_file_fails_clearly(server, volume):
    result = subprocess.run(
        ["sh", str(SCRIPT), server.url("nope.gguf"), str(volume / "nope.gguf"), DIGEST],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "error: 404" in result.stderr  # curl's own line names the status
    assert "download failed: the file is not there (HTTP 404): check model.repo" in result.stderr
    assert "nothing was kept" in result.stderr
    assert "partial file" not in result.stderr
    assert not (volume / "nope.gguf").exists()
    assert not (volume / "nope.gguf.part").exists()


# --- faults: each test is bounded in time -----------------------------------------------------

FAST_FAIL = {"FETCH_STALL_SECONDS": "2", "FETCH_STALL_BYTES": "1000", "FETCH_RETRIES": "1", "FETCH_RETRY_DELAY": "1"}


def start_fetch(server: FileServer, volume: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["sh", str(SCRIPT), server.url("model.gguf"), str(volume / "model.gguf"), DIGEST],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def wait_for_request(server: FileServer, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not server.requests:
        assert time.monotonic() < deadline, "the fetch never reached the server"
        time.sleep(0.05)


def test_a_stalling_server_fails_the_fetch_within_the_stall_bound(server, volume):
    # A few bytes, then silence: curl averages speed over its last ~5 s, so a large burst just
    # before a stall would add up to 5 s per try (see the script's header).
    server.stall_after = 100
    started = time.monotonic()
    result = fetch(server, volume, env=FAST_FAIL)
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "the transfer timed out or stalled" in result.stderr
    # Two tries of a 2 s stall and a 1 s pause (5.4 s measured); never the 60 s the server holds.
    assert took < 12, f"the fetch took {took:.1f} s against a stalled server"
    assert len(server.requests) == 2, "one try and one retry"
    assert not (volume / "model.gguf").exists()


def test_the_total_bound_ends_a_fetch_whatever_curl_waits_for(server, volume):
    server.stall_after = 10_000
    started = time.monotonic()
    result = fetch(server, volume, env={"FETCH_TOTAL_SECONDS": "2", "FETCH_STALL_SECONDS": "60"})
    took = time.monotonic() - started
    assert result.returncode == 1, result.stderr
    assert "FETCH_TOTAL_SECONDS=2s passed" in result.stderr
    assert took < 10, f"the fetch took {took:.1f} s with a 2 s total bound"


def test_retries_against_a_dead_server_are_bounded(volume):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    started = time.monotonic()
    result = subprocess.run(
        ["sh", str(SCRIPT), f"http://127.0.0.1:{port}/model.gguf", str(volume / "model.gguf"), DIGEST],
        capture_output=True,
        text=True,
        env={**os.environ, "FETCH_RETRIES": "2", "FETCH_RETRY_DELAY": "1"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "download failed: nothing accepted the connection" in result.stderr
    assert result.stderr.count("trying again in 1s") == 2, "two retries, each said"
    assert time.monotonic() - started < 15


def test_two_fetches_into_one_volume_download_once_and_both_succeed(server, volume):
    server.trickle_seconds = 1.5  # long enough for the second fetch to start while the first writes
    first = start_fetch(server, volume, {})
    wait_for_request(server)
    second = start_fetch(server, volume, {})
    out = [p.communicate(timeout=60) for p in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), out
    assert len(server.requests) == 1, f"{len(server.requests)} downloads of one file"
    assert "another fetch is writing this file" in out[1][1]
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_a_tampered_file_with_a_matching_record_is_downloaded_again(server, volume):
    assert fetch(server, volume).returncode == 0
    (volume / "model.gguf").write_bytes(b"tampered")  # the record beside it still says DIGEST
    server.requests.clear()
    result = fetch(server, volume)
    assert result.returncode == 0, result.stderr
    assert f"not {DIGEST}: downloading it again" in result.stderr
    assert len(server.requests) == 1
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_verify_on_start_off_trusts_the_record_and_reads_nothing(server, volume):
    assert fetch(server, volume).returncode == 0
    (volume / "model.gguf").write_bytes(b"tampered")
    server.requests.clear()
    result = fetch(server, volume, env={"VERIFY_ON_START": "0"})
    assert result.returncode == 0, result.stderr
    assert "not re-hashed (VERIFY_ON_START=0)" in result.stderr
    assert server.requests == []


def test_a_killed_fetch_leaves_no_token_anywhere_and_stops_at_once(server, volume, tmp_path):
    server.stall_after = 10_000
    token = tmp_path / "secret" / "token"
    token.parent.mkdir()
    token.write_text("hf_killed_token")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    fetching = start_fetch(server, volume, {"HF_TOKEN_FILE": str(token), "TMPDIR": str(scratch)})
    wait_for_request(server)
    assert server.requests[0]["authorization"] == "Bearer hf_killed_token"
    in_argv = pids_with_in_argv("hf_killed_token")
    assert in_argv == [], "the token is in a process's argument list"
    fetching.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = fetching.communicate(timeout=10)
    assert time.monotonic() - started < 5, "TERM waited for curl"
    assert fetching.returncode == 143, err
    leaked = [p for p in tmp_path.rglob("*") if p.is_file() and p != token and b"hf_killed_token" in p.read_bytes()]
    assert leaked == []


def test_verify_only_leaves_a_file_of_another_revision_in_place_and_downloads_nothing(server, volume):
    other = b"the file of another model revision"
    (volume / "model.gguf").write_bytes(other)
    result = fetch(server, volume, env={"VERIFY_ONLY": "1"})
    assert result.returncode == 1
    assert "not the pinned file" in result.stderr and "downloads nothing" in result.stderr
    assert (volume / "model.gguf").read_bytes() == other
    assert server.requests == []


def test_verify_only_fails_on_a_missing_file_naming_the_download_job(server, volume):
    result = fetch(server, volume, env={"VERIFY_ONLY": "1"})
    assert result.returncode == 1
    assert "the download Job of this model revision has not put it there" in result.stderr
    assert server.requests == [] and not (volume / "model.gguf").exists()


def test_verify_only_passes_the_pinned_file(server, volume):
    assert fetch(server, volume).returncode == 0
    server.requests.clear()
    result = fetch(server, volume, env={"VERIFY_ONLY": "1"})
    assert result.returncode == 0, result.stderr
    assert "present and verified" in result.stderr and server.requests == []


# --- faults found by injection against a loopback server; each failed on the curl-retry script ---


def test_a_complete_partial_file_is_verified_not_refetched(server, volume):
    """A pod stopped during the hash (or killed after the last byte) leaves a whole .part: the
    server answers its range with 416, which means done, not an HTTP error."""
    (volume / "model.gguf.part").write_bytes(PAYLOAD)
    result = fetch(server, volume)
    assert result.returncode == 0, result.stderr
    assert server.requests[0]["range"] == f"bytes={len(PAYLOAD)}-"
    assert "the partial file is complete; verifying it" in result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_a_complete_partial_file_of_another_content_is_deleted(server, volume):
    (volume / "model.gguf.part").write_bytes(os.urandom(len(PAYLOAD)))
    result = fetch(server, volume)
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr
    assert not (volume / "model.gguf.part").exists() and not (volume / "model.gguf").exists()


def test_each_retry_resumes_with_a_range_request(server, volume):
    server.cut_after = 50_000
    result = fetch(server, volume, env={"FETCH_RETRIES": "2", "FETCH_RETRY_DELAY": "1"})
    assert result.returncode == 0, result.stderr
    assert [r.get("range") for r in server.requests] == [None, "bytes=50000-"]
    assert "the server closed the connection before the end of the file" in result.stderr
    assert "resuming from 50000 bytes" in result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def processes_holding(path: Path) -> list[str]:
    """PIDs with an open descriptor on `path` (what keeps a flock held)."""
    holders = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) == str(path) for fd in fd_dir.iterdir()):
                holders.append(fd_dir.parent.name)
        except OSError:
            pass  # gone, or not ours to read
    return holders


def test_a_killed_fetch_leaves_no_process_behind_and_frees_the_lock(server, volume):
    server.stall_after = 10_000
    fetching = start_fetch(server, volume, {})
    wait_for_request(server)
    url = server.url("model.gguf")
    assert pids_with_in_argv(url), "curl should be running"
    fetching.send_signal(signal.SIGKILL)
    fetching.communicate(timeout=10)
    deadline = time.monotonic() + 5
    while (pids_with_in_argv(url) or processes_holding(volume / "model.gguf.lock")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_with_in_argv(url) == [], "a child of the killed fetch still runs"
    assert processes_holding(volume / "model.gguf.lock") == [], "a child of the killed fetch holds the lock"
    server.stall_after = None
    assert fetch(server, volume, env={"FETCH_LOCK_WAIT": "1"}).returncode == 0


def test_a_killed_hash_leaves_no_process_holding_the_lock(server, volume, tmp_path):
    """The hash of a 4.7 GB file takes ~30 s: a KILL then must not leave sha256sum with the lock."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    slow = bin_dir / "sha256sum"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")  # a hash that takes long
    slow.chmod(0o755)
    (volume / "model.gguf").write_bytes(PAYLOAD)
    fetching = subprocess.Popen(
        ["sh", str(SCRIPT), server.url("model.gguf"), str(volume / "model.gguf"), DIGEST],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
    )
    deadline = time.monotonic() + 10
    while not pids_with_in_argv(str(volume / "model.gguf")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    fetching.send_signal(signal.SIGKILL)
    fetching.wait(timeout=10)
    deadline = time.monotonic() + 5
    while processes_holding(volume / "model.gguf.lock") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_holding(volume / "model.gguf.lock") == [], "the hash of the killed fetch holds the lock"


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, dict[str, str]]:
    """A server context signed by a CA made for this test, and the env that makes curl trust it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return context, {"CURL_CA_BUNDLE": str(bundle)}


def test_a_redirect_from_https_to_http_is_refused(server, volume, tls, tmp_path):
    context, env = tls
    secure = FileServer(tmp_path / "served", tls=context, redirects={"/model.gguf": server.url("model.gguf")})
    try:
        result = fetch_url(secure.url("model.gguf"), volume, env)
    finally:
        secure.close()
    assert result.returncode == 1, result.stderr
    assert "a redirect led to an address that is not https" in result.stderr
    assert server.requests == [], "the plain-http address was contacted"
    assert not (volume / "model.gguf").exists()


def test_a_redirect_from_https_to_https_is_followed(volume, tls, tmp_path):
    context, env = tls
    target = FileServer(tmp_path / "served", tls=context)
    secure = FileServer(tmp_path / "served", tls=context, redirects={"/moved.gguf": target.url("model.gguf")})
    (tmp_path / "served").mkdir(exist_ok=True)
    (tmp_path / "served" / "model.gguf").write_bytes(PAYLOAD)
    try:
        result = fetch_url(secure.url("moved.gguf"), volume, env)
    finally:
        secure.close()
        target.close()
    assert result.returncode == 0, result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_a_server_announcing_more_than_the_configured_size_is_refused_before_any_byte(server, volume):
    server.announce_length = 10**15
    result = fetch(server, volume, env={"FETCH_SIZE_BYTES": str(len(PAYLOAD))})
    assert result.returncode == 1, result.stderr
    assert f"announced more than the {len(PAYLOAD)} bytes FETCH_SIZE_BYTES allows" in result.stderr
    assert not (volume / "model.gguf.part").exists() and not (volume / "model.gguf").exists()


def test_a_download_of_another_size_is_deleted_even_without_a_pinned_digest(server, volume):
    result = fetch(server, volume, sha256="", env={"FETCH_SIZE_BYTES": str(len(PAYLOAD) + 1)})
    assert result.returncode == 1, result.stderr
    assert f"size mismatch: got {len(PAYLOAD)} bytes, FETCH_SIZE_BYTES is {len(PAYLOAD) + 1}" in result.stderr
    assert not (volume / "model.gguf").exists() and not (volume / "model.gguf.part").exists()


def test_a_partial_file_larger_than_the_configured_size_starts_over(server, volume):
    (volume / "model.gguf.part").write_bytes(PAYLOAD + b"junk")
    result = fetch(server, volume, env={"FETCH_SIZE_BYTES": str(len(PAYLOAD))})
    assert result.returncode == 0, result.stderr
    assert "larger than FETCH_SIZE_BYTES" in result.stderr
    assert server.requests[0].get("range") is None


def test_the_configured_size_passes_the_right_file(server, volume):
    result = fetch(server, volume, env={"FETCH_SIZE_BYTES": str(len(PAYLOAD))})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("redirect loop", "the server redirected too many times; the URL loops"),
        ("redirect to http", "a redirect led to an address that is not https"),
        ("cut, no retries", "the server closed the connection before the end of the file"),
        ("refused", "nothing accepted the connection"),
        ("forbidden", "the server refused access (HTTP 403): the repository needs a Hugging Face token"),
        ("server error", "the server failed (HTTP 503) on every try"),
    ],
)
def test_every_curl_failure_is_said_in_words(server, volume, tls, case, words):
    context, env = tls
    env = {**env, "FETCH_RETRIES": "0"}
    url = server.url("model.gguf")
    if case == "redirect loop":
        looping = FileServer(volume, tls=context)
        url = looping.url("model.gguf")
        looping.redirects["/model.gguf"] = url
    elif case == "redirect to http":
        server.redirects["/model.gguf"] = "http://127.0.0.1:9/model.gguf"
    elif case == "cut, no retries":
        server.cut_after = 1000
    elif case == "refused":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/model.gguf"
    scripted = ScriptedServer(status=403 if case == "forbidden" else 503)
    if case in ("forbidden", "server error"):
        url = f"http://127.0.0.1:{scripted.port}/model.gguf"
    try:
        result = fetch_url(url, volume, env)
    finally:
        scripted.close()
        if case == "redirect loop":
            looping.close()
    assert result.returncode == 1
    assert f"download failed: {words}" in result.stderr
    assert not re.search(r"curl (exit|failed)", result.stderr), result.stderr

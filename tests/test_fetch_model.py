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
from pydantic import BaseModel

from core.config import SECRET_KEYS, StackConfig
from tests.conftest import ROOT
from tests.httpfiles import FileServer, RawServer, ScriptedServer, pids_with_in_argv

SCRIPT = ROOT / "image" / "fetch-model.sh"
PAYLOAD = os.urandom(256 * 1024)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()
SIZED = {"FETCH_SIZE_BYTES": str(len(PAYLOAD))}  # as the download Job runs it
TOO_LARGE = (
    f"the server's file is larger than the {len(PAYLOAD)} bytes FETCH_SIZE_BYTES allows (it announced or sent more)"
)


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
    server answers its range with 416, which means done, not an HTTP error (with the configured
    size, as the download Job always has it)."""
    (volume / "model.gguf.part").write_bytes(PAYLOAD)
    result = fetch(server, volume, env=SIZED)
    assert result.returncode == 0, result.stderr
    assert server.requests[0]["range"] == f"bytes={len(PAYLOAD)}-"
    assert "the partial file is complete; verifying it" in result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_a_complete_partial_file_of_another_content_is_deleted(server, volume):
    (volume / "model.gguf.part").write_bytes(os.urandom(len(PAYLOAD)))
    result = fetch(server, volume, env=SIZED)
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
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
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
    assert f"download failed: {TOO_LARGE}" in result.stderr
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


# --- a resume is trusted only as far as the server and the configured size show it -----------


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_server_that_ignores_the_range_makes_the_fetch_start_over(server, volume, framing):
    """A 200 with the whole file to a Range request: the fetch starts over at once, without
    spending a retry, instead of failing on every run (the length, over what is left, once made
    curl refuse it with 63 and the partial file stay)."""
    server.ranges = False
    server.framing = framing
    (volume / "model.gguf.part").write_bytes(PAYLOAD[:1000])
    result = fetch(server, volume, env={**SIZED, "FETCH_RETRIES": "0"})
    assert result.returncode == 0, result.stderr
    assert [r.get("range") for r in server.requests] == ["bytes=1000-", None]
    # curl says 33 (no resume) or 63 (over what is left), by version: the fetch starts over on both.
    assert "downloading from the start" in result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


def test_a_server_that_ignores_the_range_sending_more_than_the_size_is_refused(tmp_path, volume):
    """A resume combined with an over-size file and a server that ignores ranges: start over
    once, then refuse the file for its size; nothing stays on the volume for the next run."""
    served = tmp_path / "big"
    served.mkdir()
    (served / "model.gguf").write_bytes(PAYLOAD + b"\0" * 4096)
    big = FileServer(served, ranges=False)
    (volume / "model.gguf.part").write_bytes(PAYLOAD[:1000])
    try:
        result = fetch_url(big.url("model.gguf"), volume, {**SIZED, "FETCH_RETRIES": "0"})
    finally:
        big.close()
    assert result.returncode == 1, result.stderr
    assert [r.get("range") for r in big.requests] == ["bytes=1000-", None]
    assert "downloading from the start" in result.stderr
    assert f"download failed: {TOO_LARGE}" in result.stderr and "nothing was kept" in result.stderr
    assert sorted(p.name for p in volume.iterdir()) == ["model.gguf.lock"]


@pytest.mark.parametrize(("kept", "trusted"), [(len(PAYLOAD), True), (len(PAYLOAD) - 1, False)])
def test_a_416_proves_a_partial_file_whole_only_at_exactly_the_configured_size(tmp_path, volume, kept, trusted):
    """A server (or a cache in front of it) that answers a range with 416 says nothing about a
    partial file one byte short of the configured size: only one of exactly that size is whole."""
    served = tmp_path / "cdn"
    served.mkdir()
    (served / "model.gguf").write_bytes(PAYLOAD)
    cdn = FileServer(served, refuse_ranges=True)
    (volume / "model.gguf.part").write_bytes(PAYLOAD[:kept])
    try:
        result = fetch_url(cdn.url("model.gguf"), volume, {**SIZED, "FETCH_RETRIES": "0"})
    finally:
        cdn.close()
    assert result.returncode == 0, result.stderr
    ranges = [r.get("range") for r in cdn.requests]
    if trusted:
        assert ranges == [f"bytes={kept}-"]
        assert "the partial file is complete; verifying it" in result.stderr
    else:
        assert ranges == [f"bytes={kept}-", None]
        assert f"FETCH_SIZE_BYTES is {len(PAYLOAD)}: the partial file is not known to be whole" in result.stderr
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


@pytest.mark.parametrize("kept", [len(PAYLOAD), len(PAYLOAD) + 1])
def test_without_a_configured_size_a_416_never_puts_a_partial_file_in_place(server, volume, kept):
    """No size and no pinned digest: a 416 to a partial file of other bytes, as long as the file
    or longer, must not make those bytes the recorded model."""
    (volume / "model.gguf.part").write_bytes(os.urandom(kept))
    result = fetch(server, volume, sha256="")
    assert result.returncode == 0, result.stderr
    assert "FETCH_SIZE_BYTES is not set: the partial file is not known to be whole" in result.stderr
    assert [r.get("range") for r in server.requests] == [f"bytes={kept}-", None]
    assert (volume / "model.gguf").read_bytes() == PAYLOAD
    assert (volume / "model.gguf.sha256").read_text().strip() == DIGEST


# --- the size bound holds on disk, whatever curl's version -----------------------------------


def hangups_reach(server: FileServer, count: int, seconds: float = 5) -> bool:
    """Whether the server saw `count` clients hang up: its write fails a moment after curl ends."""
    deadline = time.monotonic() + seconds
    while server.hangups < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.hangups == count


@pytest.fixture
def oversized(tmp_path: Path) -> Path:
    """A served model.gguf 32 MiB longer than the configured size: far more than loopback's
    socket buffers, so a client that stops at the bound hangs up on the server."""
    served = tmp_path / "oversized"
    served.mkdir()
    (served / "model.gguf").write_bytes(PAYLOAD + b"\0" * (32 << 20))
    return served


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_a_body_of_unknown_length_is_stopped_at_the_configured_size(oversized, volume, framing):
    """curl before 8.4 ignores --max-filesize when the length is not announced; the script's own
    bound stops the transfer near the size and deletes what came."""
    s = FileServer(oversized, framing=framing)
    try:
        result = fetch_url(s.url("model.gguf"), volume, SIZED)
    finally:
        s.close()
    assert result.returncode == 1, result.stderr
    assert f"download failed: {TOO_LARGE}; model.sizeBytes (model.mmprojSizeBytes for the projector)" in result.stderr
    assert hangups_reach(s, 1), "the whole body was read: the bound did not stop the transfer"
    assert len(s.requests) == 1, "an over-size file is not retried"
    assert sorted(p.name for p in volume.iterdir()) == ["model.gguf.lock"]


def test_a_resume_into_an_oversized_body_of_unknown_length_starts_over_then_refuses(oversized, volume):
    """The partial file may be a good start of a bad file: one fresh try, then the refusal."""
    s = FileServer(oversized, framing="chunked")
    (volume / "model.gguf.part").write_bytes(PAYLOAD[:1000])
    try:
        result = fetch_url(s.url("model.gguf"), volume, SIZED)
    finally:
        s.close()
    assert result.returncode == 1, result.stderr
    assert [r.get("range") for r in s.requests] == ["bytes=1000-", None]
    assert f"resumed at 1000 bytes, the reply runs past the {len(PAYLOAD)} bytes" in result.stderr
    assert f"download failed: {TOO_LARGE}" in result.stderr
    assert hangups_reach(s, 2), "a whole body was read: the bound did not stop the transfer"
    assert sorted(p.name for p in volume.iterdir()) == ["model.gguf.lock"]


@pytest.mark.parametrize("framing", ["chunked", "close"])
@pytest.mark.parametrize(("configured", "passes"), [(len(PAYLOAD), True), (len(PAYLOAD) - 1, False)])
def test_the_size_bound_of_a_body_of_unknown_length_is_exact(server, volume, framing, configured, passes):
    server.framing = framing
    result = fetch(server, volume, sha256="", env={"FETCH_SIZE_BYTES": str(configured)})
    if passes:
        assert result.returncode == 0, result.stderr
        assert (volume / "model.gguf").read_bytes() == PAYLOAD
    else:
        assert result.returncode == 1, result.stderr
        assert f"the server's file is larger than the {configured} bytes FETCH_SIZE_BYTES allows" in result.stderr
        assert not (volume / "model.gguf").exists() and not (volume / "model.gguf.part").exists()


# --- never through a link ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("model.gguf", "file"),  # holds the pinned bytes: the old script verified it through the link
        ("model.gguf", "directory"),
        ("model.gguf.part", "file"),
        ("model.gguf.part", "missing"),
        ("model.gguf.part", "directory"),
        ("model.gguf.sha256", "directory"),
        ("model.gguf.sha256.tmp", "file"),
        ("model.gguf.lock", "file"),
    ],
)
def test_a_link_planted_on_the_volume_is_replaced_never_followed(server, volume, tmp_path, name, target):
    outside = tmp_path / "outside"
    outside.mkdir()
    aim = outside / "target"
    if target == "file":
        aim.write_bytes(PAYLOAD if name == "model.gguf" else b"not the fetch's to write")
    elif target == "directory":
        aim.mkdir()
    before = aim.read_bytes() if target == "file" else None
    (volume / name).symlink_to(aim)
    result = fetch(server, volume)
    assert result.returncode == 0, result.stderr
    assert f"{volume / name} is a symbolic link; removed, never followed" in result.stderr
    dest = volume / "model.gguf"
    assert not dest.is_symlink() and dest.read_bytes() == PAYLOAD
    assert not (volume / name).is_symlink()
    if target == "file":
        assert aim.read_bytes() == before
    elif target == "directory":
        assert list(aim.iterdir()) == []
    else:
        assert not aim.exists() and not aim.is_symlink()
    assert [p.name for p in outside.iterdir()] == ([] if target == "missing" else ["target"])


def test_verify_only_refuses_a_linked_file_and_changes_nothing(server, volume, tmp_path):
    aim = tmp_path / "elsewhere.gguf"
    aim.write_bytes(PAYLOAD)  # the pinned bytes, but not a file the download Job wrote
    (volume / "model.gguf").symlink_to(aim)
    result = fetch(server, volume, env={"VERIFY_ONLY": "1"})
    assert result.returncode == 1, result.stderr
    assert "is a symbolic link, not a file the download Job wrote: not trusted" in result.stderr
    assert (volume / "model.gguf").is_symlink() and aim.read_bytes() == PAYLOAD
    assert not (volume / "model.gguf.sha256").exists() and server.requests == []


def test_a_partial_file_that_is_a_directory_is_refused_with_a_sentence(server, volume):
    (volume / "model.gguf.part").mkdir()
    result = fetch(server, volume)
    assert result.returncode == 1, result.stderr
    assert "model.gguf.part is not a regular file (a directory, FIFO or device); remove it" in result.stderr
    assert server.requests == []


# --- curl reads no config file: TLS checking cannot be turned off from outside ---------------


@pytest.mark.parametrize(
    ("variable", "line"),
    [("HOME", "insecure"), ("HOME", "-k"), ("CURL_HOME", "--insecure"), ("XDG_CONFIG_HOME", "insecure")],
)
def test_a_curlrc_cannot_turn_tls_checking_off(server, volume, tls, tmp_path, variable, line):
    context, _ = tls  # the server's certificate is signed by a CA that curl is not told of
    home = tmp_path / "home"
    home.mkdir()
    (home / ".curlrc").write_text(f"{line}\n")
    untrusted = FileServer(tmp_path / "served", tls=context)
    quiet = ("CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_HOME", "XDG_CONFIG_HOME")
    env = {k: v for k, v in os.environ.items() if k not in quiet}
    try:
        result = subprocess.run(
            ["sh", str(SCRIPT), untrusted.url("model.gguf"), str(volume / "model.gguf"), DIGEST],
            capture_output=True,
            text=True,
            env={**env, variable: str(home), "FETCH_RETRIES": "0"},
            timeout=60,
            check=False,
        )
    finally:
        untrusted.close()
    assert result.returncode == 1, result.stderr
    assert "download failed: the TLS connection failed" in result.stderr
    assert untrusted.requests == [], "a request crossed an unchecked TLS connection"
    assert not (volume / "model.gguf").exists()


# --- a reply that is not HTTP is named as such ---------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        bytes(range(256)) * 4,  # garbage
        b"SSH-2.0-OpenSSH_9.6\r\n",  # another protocol on the port
        b"HTTP/1.1 abc\r\n\r\n",  # a status line curl cannot read (curl exit 1)
        b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nbody",  # a header curl cannot read (curl exit 8)
    ],
)
def test_a_reply_that_is_not_http_is_named_as_such(volume, reply):
    raw = RawServer(reply)
    try:
        result = fetch_url(raw.url("model.gguf"), volume, {"FETCH_RETRIES": "0"})
    finally:
        raw.close()
    assert result.returncode == 1, result.stderr
    assert "download failed: the server's reply is not HTTP" in result.stderr
    assert "redirect" not in result.stderr and "exit status" not in result.stderr
    assert raw.connections == 1
    assert not (volume / "model.gguf").exists() and not (volume / "model.gguf.part").exists()


# --- the Hugging Face way: a redirect to a signed address on another host -----------------------


def test_a_resume_follows_a_redirect_to_a_signed_url_and_keeps_the_token_at_home(volume, tls, tmp_path):
    """huggingface.co answers `resolve/` with a 302 to a CDN address that carries its own query
    (a signature): the Range goes along, the token does not, and the query reaches the CDN."""
    context, env = tls
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.gguf").write_bytes(PAYLOAD)
    cdn = FileServer(served, tls=context)
    signed = f"https://localhost:{cdn.httpd.server_address[1]}/model.gguf?X-Amz-Signature=ab%2Fc&Expires=1"
    hub = FileServer(served, tls=context, redirects={"/model.gguf": signed})
    token = tmp_path / "token"
    token.write_text("hf_home_token")
    (volume / "model.gguf.part").write_bytes(PAYLOAD[:1000])
    try:
        result = fetch_url(hub.url("model.gguf?download=true"), volume, {**env, **SIZED, "HF_TOKEN_FILE": str(token)})
    finally:
        hub.close()
        cdn.close()
    assert result.returncode == 0, result.stderr
    assert [(r["path"], r.get("range")) for r in hub.requests] == [("/model.gguf?download=true", "bytes=1000-")]
    assert hub.requests[0]["authorization"] == "Bearer hf_home_token"
    assert [(r["path"], r.get("range")) for r in cdn.requests] == [
        ("/model.gguf?X-Amz-Signature=ab%2Fc&Expires=1", "bytes=1000-")
    ]
    assert "authorization" not in cdn.requests[0], "the token went to another host"
    assert (volume / "model.gguf").read_bytes() == PAYLOAD


# --- every key a message names exists ---------------------------------------------------------


def config_key_exists(path: str) -> bool:
    """Whether `a.b.c` is a key (leaf or block) of the stack config, as the YAML spells it."""
    model: type[BaseModel] | None = StackConfig
    for part in path.split("."):
        if model is None:
            return False
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return False
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return True


def test_every_config_key_the_script_names_exists():
    text = SCRIPT.read_text()
    tops = "|".join(StackConfig.model_fields)
    named = set(re.findall(rf"(?<![\w./-])((?:{tops})(?:\.[a-z][A-Za-z]*)+)", text))
    assert {"model.sizeBytes", "model.mmprojSizeBytes", "model.storage.sizeGi", "model.repo"} <= named, named
    assert [k for k in sorted(named) if not config_key_exists(k)] == []
    assert set(re.findall(r"\((hf[A-Z]\w*)\)", text)) <= set(SECRET_KEYS)


@pytest.mark.parametrize(
    ("path", "exists"),
    [
        ("model.storage.sizeGi", True),
        ("model.storage", True),
        ("model.volumeSizeGi", False),
        ("model.storage.SizeGi", False),
        ("model.storage.sizeGi.x", False),
        ("model.size_bytes", False),  # the Python name, not the key
    ],
)
def test_config_key_exists_tells_keys_from_near_misses(path, exists):
    assert config_key_exists(path) is exists


@pytest.mark.parametrize("size", [1, 511, 512, 513, len(PAYLOAD), 4_683_072_672])
def test_curl_runs_without_its_config_and_under_a_file_size_limit_just_past_the_size(volume, tmp_path, size):
    """What any curl gets, whatever its version: -q first, and a file-size limit that admits the
    size and one byte more (so an over-size body is seen) but never a whole 512-byte block more."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    fake = bin_dir / "curl"
    fake.write_text(f'#!/bin/sh\n{{ ulimit -f; printf "%s\\n" "$1"; }} >>"{seen}"\nexit 7\n')
    fake.chmod(0o755)
    result = fetch_url(
        "http://127.0.0.1:9/model.gguf",
        volume,
        {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FETCH_SIZE_BYTES": str(size),
            "FETCH_RETRIES": "1",
            "FETCH_RETRY_DELAY": "0",
        },
    )
    assert result.returncode == 1, result.stderr
    lines = seen.read_text().split()
    assert len(lines) == 4, "two tries, each seen once"
    for blocks, first in zip(lines[::2], lines[1::2], strict=True):
        assert first == "-q", "curl read its config files before -q"
        assert size < int(blocks) * 512 <= size + 512

"""image/fetch-model.sh against a loopback HTTP server, as the init container runs it."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.httpfiles import FileServer, pids_with_in_argv

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
    assert "download failed: the server answered with an HTTP error" in result.stderr
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
    assert "download failed: curl exit 7" in result.stderr
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

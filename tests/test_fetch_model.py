"""image/fetch-model.sh against a loopback HTTP server, as the init container runs it."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.httpfiles import FileServer

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
    assert list(volume.iterdir()) == []


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
    assert "download failed" in result.stderr
    assert not (volume / "nope.gguf").exists()

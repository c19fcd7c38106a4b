"""`make model` fills in the model block from the source: sizes and digests from the Hugging Face
API, family and shape from the GGUF header. Tested against a fake hub on 127.0.0.1 (HF_ENDPOINT)
serving the tiny GGUFs the end-to-end tests use."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gguf
import pytest
import yaml

from core.loading import load_config
from tests.conftest import tiny_stack_config
from tests.tiny_model_variants import write_head32
from tests.tiny_qwen2vl import TinyModel, write_tiny_qwen2vl
from tools import model_block

REPO = "tiny-org/Tiny-Qwen2-VL-GGUF"
COMMIT = "c0ffee" + "0" * 34


@dataclass
class FakeHub:
    files: dict[str, Path]
    served: list[tuple[str, int]] = field(default_factory=list)  # (file, bytes sent)
    url: str = ""


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            info = re.fullmatch(rf"/api/models/{REPO}/revision/(main|{COMMIT})", path)
            if info:
                siblings = [
                    {
                        "rfilename": name,
                        "size": p.stat().st_size,
                        "lfs": {
                            "size": p.stat().st_size,
                            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                            "pointerSize": 134,
                        },
                    }
                    for name, p in hub.files.items()
                ]
                siblings.append({"rfilename": "README.md", "size": 10})
                self._send(200, json.dumps({"id": REPO, "sha": COMMIT, "siblings": siblings}).encode())
                return
            resolve = re.fullmatch(rf"/{REPO}/resolve/{COMMIT}/(.+)", path)
            if not resolve or resolve.group(1) not in hub.files:
                self._send(404, b'{"error": "not found"}')
                return
            data = hub.files[resolve.group(1)].read_bytes()
            wanted = re.fullmatch(r"bytes=0-([0-9]+)", self.headers.get("Range", ""))
            body = data[: int(wanted.group(1)) + 1] if wanted else data
            hub.served.append((resolve.group(1), len(body)))
            self._send(206 if wanted else 200, body, "application/octet-stream")

    return Handler


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TinyModel, TinyModel]:
    base = write_tiny_qwen2vl(gguf, tmp_path_factory.mktemp("tiny"))
    head32 = write_head32(gguf, tmp_path_factory.mktemp("head32"))
    return base, head32


@pytest.fixture
def hub(tiny: tuple[TinyModel, TinyModel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    base, head32 = tiny
    files = {"tiny-q4.gguf": base.text, "mmproj-tiny.gguf": base.mmproj, "tiny-head32.gguf": head32.text}
    fake = FakeHub(files)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    try:
        yield fake
    finally:
        server.shutdown()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = model_block.main(list(args))
    out, err = capsys.readouterr()
    block = yaml.safe_load(out)["llamacpp-aks:model"] if code == 0 else {}
    return code, block, err


def test_prints_the_model_block_with_sizes_digests_family_and_shape(hub, tiny, capsys):
    base, _ = tiny
    code, block, _ = run(capsys, "--repo", REPO, "--file", "tiny-q4.gguf", "--mmproj", "mmproj-tiny.gguf")
    assert code == 0
    assert block["revision"] == COMMIT, "main is resolved to the commit it names"
    assert (block["sizeBytes"], block["sha256"]) == (
        base.text.stat().st_size,
        hashlib.sha256(base.text.read_bytes()).hexdigest(),
    )
    assert block["mmprojSha256"] == hashlib.sha256(base.mmproj.read_bytes()).hexdigest()
    assert block["family"] == "qwen2vl"
    expected = tiny_stack_config(base)["model"]["architecture"]
    assert block["architecture"] == expected


def test_the_printed_block_passes_the_model_switch_rules(hub, tiny, capsys):
    base, _ = tiny
    _, block, _ = run(capsys, "--repo", REPO, "--file", "tiny-q4.gguf", "--mmproj", "mmproj-tiny.gguf")
    raw = tiny_stack_config(base)
    raw["model"] = {**block, "storage": {"sizeGi": 1}}
    config, _ = load_config(raw, "dev")
    assert config.model.file == "tiny-q4.gguf" and config.model.revision == COMMIT


def test_another_file_gets_its_own_pins_and_shape(hub, tiny, capsys):
    _, head32 = tiny
    code, block, _ = run(capsys, "--repo", REPO, "--file", "tiny-head32.gguf", "--mmproj", "mmproj-tiny.gguf")
    assert code == 0
    assert block["sha256"] == hashlib.sha256(head32.text.read_bytes()).hexdigest()
    assert block["architecture"] == tiny_stack_config(head32)["model"]["architecture"]
    assert block["architecture"]["headDim"] == 32


def test_reads_only_the_header_of_the_model_file(hub, tiny, capsys, monkeypatch):
    base, _ = tiny
    monkeypatch.setattr(model_block, "HEADER_START_BYTES", 4096)
    code, _, _ = run(capsys, "--repo", REPO, "--file", "tiny-q4.gguf", "--mmproj", "mmproj-tiny.gguf")
    assert code == 0
    sent = [n for name, n in hub.served if name == "tiny-q4.gguf"]
    assert max(sent) < base.text.stat().st_size, "the tensors were downloaded too"
    assert not [name for name, _ in hub.served if name == "mmproj-tiny.gguf"], "the projector's header is not needed"


def test_a_file_the_repo_does_not_hold_is_one_sentence_naming_its_gguf_files(hub, capsys):
    code, _, err = run(capsys, "--repo", REPO, "--file", "tiny-q8.gguf", "--mmproj", "mmproj-tiny.gguf")
    assert code == 1
    assert err.startswith(f"make model: {REPO}@main has no file 'tiny-q8.gguf'; its .gguf files: ")
    assert "tiny-q4.gguf" in err and "Traceback" not in err


def test_an_unknown_repo_or_an_unreachable_hub_is_one_sentence(hub, capsys, monkeypatch):
    code, _, err = run(capsys, "--repo", "nobody/none", "--file", "a.gguf", "--mmproj", "b.gguf")
    assert code == 1 and err.startswith("make model: nobody/none@main could not be read from")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    code, _, err = run(capsys, "--repo", REPO, "--file", "a.gguf", "--mmproj", "b.gguf")
    assert code == 1 and "could not be read" in err and "Traceback" not in err


def test_the_command_a_refusal_names_prints_a_block_that_passes(hub, tiny, capsys):
    """A hand-written block of another repo that keeps the shipped revision is refused as one unit;
    the `make model` line the message names, run as it says, gives the block that fixes it."""
    from core.loading import ConfigError

    base, _ = tiny
    raw = tiny_stack_config(base)
    raw["model"] = {**raw["model"], "repo": REPO, "file": "tiny-q4.gguf", "mmprojFile": "mmproj-tiny.gguf"}
    with pytest.raises(ConfigError) as err:
        load_config(raw, "dev")
    (problem,) = err.value.problems
    command = re.search(r"`make model REPO=(\S+) FILE=(\S+) MMPROJ=(\S+)`", problem)
    assert command, problem
    assert command.groups() == (REPO, "tiny-q4.gguf", "mmproj-tiny.gguf")
    code, block, _ = run(capsys, "--repo", command[1], "--file", command[2], "--mmproj", command[3])
    assert code == 0
    raw["model"] = {**block, "storage": {"sizeGi": 1}}
    config, _ = load_config(raw, "dev")
    assert config.model.revision == COMMIT

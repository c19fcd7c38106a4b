"""`make verify` (tools/verify.py) against the real llama-server of the pinned release (CPU build)
serving the tiny Qwen2-VL: a config that describes the server passes; one that does not fails,
naming the config key."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import pytest

from core.loading import load_config
from core.server_args import ServerPaths, llama_server_args
from tests.conftest import Server, free_port, start, tiny_stack_config, write_stack_file
from tools import verify

pytestmark = pytest.mark.e2e


def run_verify(server: Server, key_file: Path, raw: dict[str, Any], directory: Path) -> tuple[int, list[str]]:
    """Exit status and output lines of `make verify` for this config."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = verify.main(
            ["--url", server.base, "--api-key-file", str(key_file), "--config", str(write_stack_file(directory, raw))]
        )
    return rc, out.getvalue().splitlines()


def test_config_that_describes_the_server_passes(config_server, key_file, tiny, tmp_path):
    rc, lines = run_verify(config_server, key_file, tiny_stack_config(tiny), tmp_path)
    assert rc == 0, lines
    assert [line.split()[0] for line in lines] == ["ok"] * len(verify.CHECKS)


@pytest.mark.parametrize(
    ("key", "value"),
    [("parallel", 1), ("contextSize", 4096), ("alias", "qwen2-vl-72b")],
)
def test_config_that_differs_from_the_server_fails_naming_the_key(config_server, key_file, tiny, tmp_path, key, value):
    raw = tiny_stack_config(tiny)
    raw["server"] = {**raw["server"], key: value}
    rc, lines = run_verify(config_server, key_file, raw, tmp_path)
    *mismatches, summary = [line for line in lines if line.startswith("MISMATCH")]
    assert rc == 1
    assert mismatches, lines
    assert lines[-1] == summary and " checks failed" in summary, lines
    assert all(f"server.{key}={value} " in line for line in mismatches), mismatches


def test_an_unreachable_url_fails_saying_so(key_file, tiny, tmp_path):
    """Nothing listens on the port: verify says it cannot reach the URL."""
    server = Server(f"http://127.0.0.1:{free_port()}", None, [], 0.0)  # type: ignore[arg-type]
    rc, lines = run_verify(server, key_file, tiny_stack_config(tiny), tmp_path)
    assert rc == 1
    assert lines[:1] == [
        f"MISMATCH cannot reach {server.base} ([Errno 111] Connection refused); check the URL (port-forward running?)."
    ]
    assert lines[1:] == [
        f"MISMATCH {server.base} is not what {tmp_path / 'Pulumi.e2e.yaml'} describes: 1 of 5 checks failed, 4 not run."
    ]


def test_a_server_without_the_projector_fails_naming_mmproj_file(binary, tiny, key_file, tmp_path):
    config = load_config(tiny_stack_config(tiny), "e2e")[0]
    args = llama_server_args(config.server, ServerPaths(str(tiny.text), str(tiny.mmproj), str(key_file)))
    at = args.index("--mmproj")
    del args[at : at + 2]
    for server in start(binary, args):
        rc, lines = run_verify(server, key_file, tiny_stack_config(tiny), tmp_path)
    assert rc == 1
    assert any(line.startswith(f"MISMATCH model.mmprojFile={tiny.mmproj.name} is not loaded") for line in lines), lines

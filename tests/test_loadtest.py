"""`make loadtest` (tools/loadtest.py) when things are wrong: a server that is down or not HTTP, a
tokenizer that cannot be read, an AIPerf that fails: one PROBLEM sentence, no threaded
tracebacks. And how AIPerf is started: the key proxy's URL, which holds its token, reaches AIPerf
on stdin, never in an argument list. (tests/test_e2e_loadtest.py runs the real thing.)"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import StackConfig
from tests.conftest import ROOT, write_stack_file
from tests.rawhttp import NOT_LLAMA, Reply, fake_llama_server
from tools import loadtest

PLAN = loadtest.Plan(model="m", parallel=2, images=1, image_side=56, prompt_tokens=8, output_tokens=4)


@pytest.fixture
def tokenizer(tmp_path: Path) -> Path:
    folder = tmp_path / "tokenizer"
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}))
    return folder


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    f = tmp_path / "api-key"
    f.write_text("sk-loadtest\n")
    return f


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadtest_process(url: str, key_file: Path, tokenizer: str) -> subprocess.CompletedProcess[str]:
    """`make loadtest` as a process, so that what threads print shows too."""
    return subprocess.run(
        [
            sys.executable, "-m", "tools.loadtest", "--url", url, "--api-key-file", str(key_file),
            "--plan", loadtest.plan_json(PLAN), "--tokenizer", tokenizer, "--python", sys.executable,
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def assert_one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-2000:]
    assert result.stderr == ""
    (line,) = result.stdout.splitlines()
    assert line.startswith("PROBLEM ") and line.endswith("."), line
    return line


def test_a_server_that_is_down_is_one_sentence(key_file, tokenizer):
    port = closed_port()
    line = assert_one_sentence(loadtest_process(f"http://127.0.0.1:{port}", key_file, str(tokenizer)))
    assert line.startswith(f"PROBLEM cannot reach http://127.0.0.1:{port} ("), line


@pytest.mark.parametrize(
    ("metrics", "says"),
    [
        (Reply(raw=b"SSH-2.0-OpenSSH_9.6\r\n"), "is not HTTP"),
        (Reply(hang_up=True), "hung up"),
        (Reply.json(401, {"error": {"code": 401, "message": "Invalid API Key"}}), "GET /metrics answered 401"),
        (Reply(status=200, body=NOT_LLAMA.encode(), content_type="text/html"), "without llama-server's counters"),
    ],
    ids=["not HTTP", "hang-up", "wrong key", "HTML"],
)
def test_a_server_that_is_not_llama_server_is_one_sentence(key_file, tokenizer, metrics, says):
    server = fake_llama_server(StackConfig(), **{"/metrics": metrics})
    try:
        result = loadtest_process(server.base, key_file, str(tokenizer))
    finally:
        server.close()
    line = assert_one_sentence(result)
    assert says in line, line
    assert not [r for r in server.requests if r[1] == "/v1/chat/completions"], "the probe started"


# Folders whose tokenizer.json is wrong in one way, and names that are not Hugging Face's.
BAD_TOKENIZER_JSON = {
    "not JSON": b"{not json",
    "not UTF-8": b'{"model": "\xff\xfe"}',
    "a JSON list": b"[]",
    "no model": b'{"version": "1.0"}',
}
BAD_NAMES = {
    "a name with ..": "Qwen/../Qwen2-VL",
    "a name with three parts": "Qwen/Qwen2-VL/7B",
    "a name with --": "Qwen/Qwen2--VL",
    "a name starting with -": "-Qwen/Qwen2-VL",
    "a name of 97 characters": "Q" * 97,
    "a URL": "https://huggingface.co/Qwen/Qwen2-VL-7B-Instruct",
    "empty": "",
}


def bad_tokenizer(case: str, tmp_path: Path) -> str:
    """A --tokenizer value that AIPerf cannot read, one step from a good one."""
    if case in BAD_NAMES:
        return BAD_NAMES[case]
    folder = tmp_path / "tokenizer"
    if case == "missing folder":
        return str(folder)
    if case == "a file":
        folder.write_text("{}")
        return str(folder)
    folder.mkdir()
    if case in BAD_TOKENIZER_JSON:
        (folder / "tokenizer.json").write_bytes(BAD_TOKENIZER_JSON[case])
    return str(folder)


@pytest.mark.parametrize("case", ["missing folder", "a file", "no tokenizer.json", *BAD_TOKENIZER_JSON, *BAD_NAMES])
def test_a_tokenizer_that_cannot_be_read_is_one_sentence_naming_it(tmp_path, case):
    problem = loadtest.tokenizer_problem(bad_tokenizer(case, tmp_path))
    assert problem is not None and problem.startswith("--tokenizer="), (case, problem)
    assert "TOKENIZER=" in problem and problem.endswith(".")


@pytest.mark.parametrize(
    "value", ["Qwen/Qwen2-VL-7B-Instruct", "gpt2", "Q" * 96, "ggml-org/Qwen2.5-VL-7B-Instruct-GGUF"]
)
def test_a_hugging_face_name_may_load(value):
    assert loadtest.tokenizer_problem(value) is None


def test_a_folder_with_a_tokenizer_may_load(tokenizer, tmp_path):
    assert loadtest.tokenizer_problem(str(tokenizer)) is None
    only_config = tmp_path / "only-config"
    only_config.mkdir()
    (only_config / "tokenizer_config.json").write_text("{}")
    assert loadtest.tokenizer_problem(str(only_config)) is None


def test_a_bad_tokenizer_ends_the_run_before_the_server_is_asked(key_file, tmp_path):
    server = fake_llama_server(StackConfig())
    try:
        result = loadtest_process(server.base, key_file, str(tmp_path / "missing"))
    finally:
        server.close()
    line = assert_one_sentence(result)
    assert line.startswith(f"PROBLEM --tokenizer={tmp_path / 'missing'} is neither a folder here nor"), line
    assert server.requests == []


# --- AIPerf's start, with a stand-in `aiperf` package ------------------------------------------

FAKE_AIPERF = """
import json, sys
from pathlib import Path
args = sys.argv[1:]
artifacts = Path(args[args.index("--artifact-dir") + 1])
artifacts.mkdir(parents=True)
(artifacts / "seen.json").write_text(json.dumps({
    "argv": sys.argv,
    "cmdline": open("/proc/self/cmdline", "rb").read().decode(errors="replace"),
}))
if "--fail" in args:
    print("Traceback (most recent call last):\\n  ...\\nOSError: Can't load tokenizer for 'x'.", file=sys.stderr)
    sys.exit(3)
(artifacts / "profile_export_aiperf.json").write_text(json.dumps({"request_count": {"avg": 5}}))
"""


@pytest.fixture
def fake_aiperf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    package = tmp_path / "site" / "aiperf"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_AIPERF)
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    return tmp_path / "artifacts"


def test_aiperf_gets_the_proxys_url_on_stdin_not_in_its_argument_list(fake_aiperf):
    url = "http://127.0.0.1:1/token-0123456789abcdef"
    args = loadtest.aiperf_command(PLAN, url, 5, 2, "tok", fake_aiperf)
    export = loadtest.run_aiperf(Path(sys.executable), args, fake_aiperf)
    seen = json.loads((fake_aiperf / "seen.json").read_text())
    assert export == {"request_count": {"avg": 5}}
    assert seen["argv"][1:] == args  # argv[0]: runpy sets the module's file, as `python -m` does
    assert "token-0123456789abcdef" not in seen["cmdline"]
    assert url not in " ".join(loadtest.LAUNCH_AIPERF)


def test_a_failed_aiperf_is_one_sentence_and_its_output_is_kept_privately(fake_aiperf):
    args = [*loadtest.aiperf_command(PLAN, "http://127.0.0.1:1/t", 5, 2, "tok", fake_aiperf), "--fail"]
    with pytest.raises(SystemExit) as exit_:
        loadtest.run_aiperf(Path(sys.executable), args, fake_aiperf)
    message = str(exit_.value.code)
    assert message.startswith("PROBLEM AIPerf failed (exit 3, no export): OSError: Can't load tokenizer for 'x'.;")
    assert "\n" not in message and "Traceback" not in message
    log = Path(message.rsplit("its whole output is in ", 1)[1].rstrip("."))
    try:
        assert "Traceback" in log.read_text()
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
    finally:
        log.unlink()


def test_the_stack_file_path_still_works(tmp_path, key_file, tokenizer):
    """--config instead of --plan: the same one sentence when the server is down."""
    stack = write_stack_file(tmp_path, {})
    port = closed_port()
    result = subprocess.run(
        [sys.executable, "-m", "tools.loadtest", "--url", f"http://127.0.0.1:{port}", "--api-key-file", str(key_file),
         "--config", str(stack), "--tokenizer", str(tokenizer), "--python", sys.executable],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False, env={**os.environ},
    )  # fmt: skip
    assert assert_one_sentence(result).startswith("PROBLEM cannot reach")

"""Shared helpers: run the real program under Pulumi's mocks, render stacks once per session,
and start the real llama-server on a tiny Qwen2-VL (the end-to-end tests)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest
import yaml

from core.config import PROJECT
from core.loading import load_config
from core.server_args import ServerPaths, llama_server_args
from tests.tiny_qwen2vl import TinyModel, vocabulary, write_tiny_qwen2vl
from tools import render
from tools.llama_build import build, source_tree
from tools.mocks import Recorded, RenderMocks

ROOT = Path(__file__).resolve().parent.parent
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))
# The repo's stacks and a test stack with the public endpoint on: every render check runs on these.
RENDERED_STACK_FILES = [*STACK_FILES, ROOT / "tests" / "fixtures" / "Pulumi.public.yaml"]
WORKFLOWS = ROOT / ".github" / "workflows"
# The interpreter new venvs are made from (the Makefile's PYTHON), not .venv's own copy of it.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def flat_config(raw: dict[str, Any]) -> dict[str, str]:
    return {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def run_stack(
    raw: dict[str, Any] | None = None,
    stack: str = "dev",
    secrets: dict[str, str] | None = None,
    mocks: RenderMocks | None = None,
) -> RenderMocks:
    """Runs __main__.py under mocks with this config; returns every resource it declared."""
    flat = flat_config(raw or {})
    flat.update({f"{PROJECT}:{k}": v for k, v in (secrets or {}).items()})
    return render.run_program(stack, flat, mocks)


def preview_problems(raw: dict[str, Any], stack: str = "dev", secrets: dict[str, str] | None = None) -> list[str]:
    """Runs the program under mocks as `pulumi preview` would; returns its config problems,
    after checking that it declared no resource and printed no traceback."""
    mocks = RenderMocks()
    with pytest.raises(pulumi.RunError) as err:
        run_stack(raw, stack, secrets, mocks=mocks)
    assert not mocks.resources, "a bad config must not declare any resource"
    text = str(err.value)
    assert text.startswith("invalid stack config:")
    assert "Traceback" not in text and "validation error" not in text and "pydantic" not in text
    return [line[2:] for line in text.splitlines()[1:]]


def only(problems: list[str]) -> str:
    """The one problem of a list that must hold exactly one."""
    assert len(problems) == 1, problems
    return problems[0]


def of_type(mocks: RenderMocks, typ: str) -> list[Recorded]:
    return [r for r in mocks.resources if r.typ == typ]


def one(mocks: RenderMocks, typ: str) -> dict[str, Any]:
    found = of_type(mocks, typ)
    assert len(found) == 1, f"expected one {typ}, found {len(found)}"
    return found[0].inputs


def named(mocks: RenderMocks, typ: str, name: str) -> dict[str, Any]:
    """The inputs of the one resource of this type whose metadata.name is `name`."""
    found = [r.inputs for r in of_type(mocks, typ) if r.inputs["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {typ} named {name}, found {len(found)}"
    return found[0]


def unsecret(value: Any) -> Any:
    """The plain value inside a Pulumi secret, asserting that it is one."""
    assert isinstance(value, dict) and render.SECRET_SIG in value, f"{value!r} is not a secret"
    return value["value"]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every stack in the repo, and the public-endpoint test stack, rendered once: stack name -> render directory."""
    out = {}
    for path in RENDERED_STACK_FILES:
        stack = path.name.split(".")[1]
        target = tmp_path_factory.mktemp(f"render-{stack}")
        render.render(path, target)
        out[stack] = target
    return out


# --- the real llama-server on a tiny Qwen2-VL ------------------------------------------------

API_KEY = "e2e-test-key"
# The request budget of the tiny-model stacks: the reference layout, sized for a 2-core machine.
TINY_BUDGET = {"images": 1, "imageMaxTokens": 256, "promptTokens": 400, "outputTokens": 300}


def tiny_stack_config(model: TinyModel) -> dict[str, Any]:
    """The raw stack config of a tiny model: its files and shape, 2 slots of 1024 tokens, 2 threads."""
    shape = model.shape
    return {
        "model": {
            "file": model.text.name,
            "sha256": hashlib.sha256(model.text.read_bytes()).hexdigest(),
            "sizeBytes": model.text.stat().st_size,
            "mmprojFile": model.mmproj.name,
            "mmprojSha256": hashlib.sha256(model.mmproj.read_bytes()).hexdigest(),
            "mmprojSizeBytes": model.mmproj.stat().st_size,
            "architecture": {
                "layers": shape["layers"],
                "kvHeads": shape["kv_heads"],
                "headDim": model.head_dim,
                "maxContext": model.max_context,
                "vocab": len(vocabulary()[0]),
                "hidden": shape["embd"],
            },
            "storage": {"sizeGi": 1},
        },
        "server": {
            "contextSize": 2048,
            "parallel": 2,
            "threads": 2,
            "alias": "tiny-qwen2-vl",
            "requestBudget": TINY_BUDGET,
        },
    }


def load_gguf() -> ModuleType:
    """The gguf-py of the pinned release's own tree."""
    gguf_py = str(source_tree() / "gguf-py")
    sys.path.insert(0, gguf_py)
    try:
        import gguf
    finally:
        sys.path.remove(gguf_py)
    return gguf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    process: subprocess.Popen
    health: list[int | None]  # what /health answered while starting (None: refused)
    startup_seconds: float

    def request(self, path: str, body: dict | None = None, key: str | None = API_KEY) -> tuple[int, dict | str]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                text = r.read().decode()
                status = r.status
        except urllib.error.HTTPError as err:
            text, status = err.read().decode(), err.code
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def chat(
        self,
        images: list[bytes],
        text: str = "Describe the image.",
        max_tokens: int = 8,
        key: str | None = API_KEY,
        **extra: object,
    ):
        content = [{"type": "text", "text": text}]
        content += [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(i).decode()}}
            for i in images
        ]
        body = {
            "model": "tiny-qwen2-vl",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "cache_prompt": False,
            **extra,
        }
        return self.request("/v1/chat/completions", body, key)


def local(args: list[str], port: int) -> list[str]:
    """Rendered server args, listening on a loopback port instead of the pod's."""
    args = list(args)
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    return args


def start(binary: Path, args: list[str], log: Path | None = None) -> Iterator[Server]:
    """Runs llama-server on a free loopback port until the caller is done; its stderr goes to `log`
    when given (a file does not fill up as an unread pipe does at high verbosity)."""
    port = free_port()
    started = time.monotonic()
    stderr = log.open("w") if log else subprocess.PIPE
    process = subprocess.Popen([str(binary), *local(args, port)], stdout=subprocess.DEVNULL, stderr=stderr, text=True)
    base, health = f"http://127.0.0.1:{port}", []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text() if log else process.stderr.read() if process.stderr else ""
            pytest.fail(f"llama-server exited: {output[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                health.append(r.status)
                break
        except urllib.error.HTTPError as err:
            health.append(err.code)
        except (urllib.error.URLError, ConnectionError):
            health.append(None)
        time.sleep(0.05)
    server = Server(base, process, health, time.monotonic() - started)
    try:
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        if log:
            stderr.close()


@pytest.fixture(scope="session")
def binary() -> Path:
    """The pinned release's CPU llama-server, or LLAMA_SERVER_BINARY: another release's build, which
    `make llamacpp-upgrade` runs the differential tests against."""
    given = os.environ.get("LLAMA_SERVER_BINARY")
    return Path(given) if given else build(cuda=False)


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    f = tmp_path_factory.mktemp("secrets") / "api-key"
    f.write_text(API_KEY + "\n")
    return f


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return write_tiny_qwen2vl(load_gguf(), tmp_path_factory.mktemp("tiny"))


def write_stack_file(directory: Path, raw: dict[str, Any], stack: str = "e2e") -> Path:
    """A Pulumi.<stack>.yaml as a user keeps one: the project's keys under `config`."""
    path = directory / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": {f"{PROJECT}:{k}": v for k, v in raw.items()}}))
    return path


@pytest.fixture(scope="module")
def config_server(binary: Path, tiny: TinyModel, key_file: Path) -> Iterator[Server]:
    """llama-server started with the command line of the tiny model's stack config (tiny_stack_config)."""
    config = load_config(tiny_stack_config(tiny), "e2e")[0]
    paths = ServerPaths(model=str(tiny.text), mmproj=str(tiny.mmproj), api_key_file=str(key_file))
    yield from start(binary, llama_server_args(config.server, paths))


# --- the Makefile on a bare machine (tests/test_make.py, tests/test_runner_image.py) ---------------
MAKE = shutil.which("make") or "make"
# What a bare machine has: a shell and the basic utilities the recipes use, nothing else.
BASICS = ("bash", "env", "sed")


def bare_path(tmp_path: Path, extra: dict[str, str] | None = None) -> str:
    """A PATH with only the basic utilities, plus stub scripts named in `extra` (name -> body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in BASICS:
        found = shutil.which(name)
        assert found, f"this machine lacks {name}"
        (bin_dir / name).symlink_to(found)
    for name, body in (extra or {}).items():
        stub = bin_dir / name
        stub.write_text(f"#!/bin/bash\n{body}\n")
        stub.chmod(0o755)
    return str(bin_dir)


def run_make(tmp_path: Path, path: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [MAKE, "--no-print-directory", *args, f"VENV={tmp_path / 'venv'}", f"TOOLS_DIR={tmp_path / 'tools'}"],
        cwd=ROOT,
        env={"PATH": path, "HOME": str(tmp_path), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def pinned_pulumi() -> str:
    sdk = next(line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("pulumi=="))
    return sdk.removeprefix("pulumi==")

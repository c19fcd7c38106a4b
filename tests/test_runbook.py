"""The commands the README and the runbook (docs/operations.md) give run as written: each `make`
line names a target that exists and parses with `make -n`; the README's "Reach the server" steps
need nothing outside the documented install and run on macOS as on Linux."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make") or "make"


def section(path: Path, heading: str) -> str:
    text = path.read_text()
    (found,) = re.findall(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.MULTILINE | re.DOTALL)
    return found


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def strip_comment(command: str) -> str:
    """The command without its trailing `# comment` (a # inside quotes stays)."""
    for m in re.finditer(r"\s#", command):
        head = command[: m.start()]
        try:
            if shlex.split(head) and head.count("'") % 2 == 0:
                return head
        except ValueError:
            continue
    return command


def commands(block: str) -> list[str]:
    """Each command of a shell block: lines joined while a quote is open or a line ends in a backslash;
    comments and a trailing & dropped."""
    out: list[str] = []
    pending = ""
    for line in block.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        command = strip_comment(pending).strip().rstrip("&").strip()
        if command and not command.startswith("#"):
            out.append(command)
        pending = ""
    return out


def make_dry_run(command: str) -> subprocess.CompletedProcess[str]:
    """`make -n` of a documented `make ...` line (a pipe after it is not make's)."""
    words = shlex.split(command.split(" | ")[0])
    assert words[0] == "make", command
    return subprocess.run(
        [MAKE, "--no-print-directory", "-n", *words[1:], "VENV=.venv"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


README_REACH = section(ROOT / "README.md", "Reach the server")


@pytest.mark.parametrize(
    "command", [c for b in shell_blocks(README_REACH) for c in commands(b) if c.startswith("make ")]
)
def test_every_make_line_of_reach_the_server_parses(command: str):
    result = make_dry_run(command)
    assert result.returncode == 0, f"{command}: {result.stderr}"


def test_reach_the_server_calls_no_tool_that_only_make_puts_on_path():
    # kubectl, kubelogin and pulumi live in .tools/bin, which only the Makefile puts on PATH.
    first_words = [c.split()[0] for b in shell_blocks(README_REACH) for c in commands(b)]
    assert set(first_words) <= {"make", "curl"}, first_words


def test_reach_the_server_uses_no_gnu_only_flag():
    assert "base64 -w" not in README_REACH
    assert "base64 --wrap" not in README_REACH


def test_the_readme_chat_request_sends_the_image_and_the_key(tmp_path: Path):
    """The curl line, run by bash as written, with curl a stub that records its arguments."""
    (curl,) = [c for b in shell_blocks(README_REACH) for c in commands(b) if c.startswith("curl ")]
    stub = tmp_path / "bin" / "curl"
    stub.parent.mkdir()
    stub.write_text(
        f'#!/usr/bin/env python3\nimport json, sys\njson.dump(sys.argv[1:], open("{tmp_path}/args", "w"))\n'
    )
    stub.chmod(0o755)
    image = bytes(range(256)) * 300  # long enough that GNU base64 would wrap it at 76 columns
    (tmp_path / "image.png").write_bytes(image)
    (tmp_path / ".stacks" / "dev").mkdir(parents=True)
    (tmp_path / ".stacks" / "dev" / "api-key").write_text("k-123")
    subprocess.run(
        ["bash", "-c", curl], cwd=tmp_path, env={"PATH": f"{stub.parent}:/usr/bin:/bin"}, check=True, timeout=30
    )
    args = json.loads((tmp_path / "args").read_text())
    body = json.loads(args[args.index("-d") + 1])
    url = body["messages"][0]["content"][1]["image_url"]["url"]
    assert "Authorization: Bearer k-123" in args
    assert base64.b64decode(url.removeprefix("data:image/png;base64,"), validate=True) == image


RUNBOOK = ROOT / "docs" / "operations.md"
DOCTOR = (ROOT / "tools" / "doctor.py").read_text()
# A placeholder stands for what a reader types: a stack name, or any other value.
PLACEHOLDERS = {"<stack>": "dev", "<name>": "dev", "<stack name>": "dev"}


def runbook_make_commands() -> list[str]:
    text = RUNBOOK.read_text()
    found = [c for b in shell_blocks(text) for c in commands(b)]
    found += re.findall(r"`((?:[A-Z_]+=\S+ )*make [^`]+)`", text)
    out = []
    for command in found:
        words = command.split()
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
            words.pop(0)  # an environment variable for that one run
        if words and words[0] == "make":
            line = " ".join(words)
            for placeholder, value in PLACEHOLDERS.items():
                line = line.replace(placeholder, value)
            out.append(re.sub(r"<[^>]*>", "x", line))
    return sorted(set(out))


def test_the_runbook_has_every_section():
    headings = re.findall(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    for section_name in (
        "Reach the server",
        "Logs",
        "Troubleshooting",
        "Key rotation",
        "Upgrading llama.cpp",
        "Scaling by hand",
        "Destroy and what stays",
        "Adding a stack",
    ):
        assert section_name in headings, f"docs/operations.md has no section {section_name!r}"


def test_the_runbook_names_many_make_commands():
    targets = {c.split()[1] for c in runbook_make_commands()}
    assert {"doctor", "logs", "outputs", "port-forward", "rotate-key", "llamacpp-upgrade", "destroy"} <= targets


@pytest.mark.parametrize("command", runbook_make_commands())
def test_every_make_command_of_the_runbook_parses(command: str):
    result = make_dry_run(command)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    assert "No rule to make target" not in result.stderr


def test_a_command_naming_no_target_would_fail():
    assert make_dry_run("make doctorr STACK=dev").returncode != 0
    assert make_dry_run("make render STACK=prod CONFIG=Pulumi.dev.yaml").returncode != 0


def test_the_troubleshooting_entries_quote_what_make_doctor_says():
    text = section(RUNBOOK, "Troubleshooting")
    for words in (
        "every GPU node is taken and the pool is at cluster.gpuPool.maxCount",
        "Azure refused a new one for quota",
        "cannot pull its image",
        "ran out of GPU memory while loading",
        "so large requests get HTTP 400",
        "but not ready: /health is not 200",
        "KEDA holds 0 replicas outside",
    ):
        assert words in re.sub(r"\s+", " ", text), words
        assert words in re.sub(r'"\s+f?"', "", DOCTOR), f"tools/doctor.py no longer says {words!r}"

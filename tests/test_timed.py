"""make test's plumbing (tools/timed.py): the end-to-end part's slow preparations run in the
background from the start, at low priority, and are done before that part; an interrupt stops them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools import timed

E2E_MARKER = timed.PYTEST_PARTS[-1][1]


def fake_job(folder: Path, name: str, seconds: float, rc: int = 0) -> tuple[str, list[str]]:
    """A background command that writes its niceness and pid when it starts, a line of log, and `done` when it ends."""
    code = (
        "import os, pathlib, sys, time\n"
        f"d = pathlib.Path({str(folder)!r})\n"
        f"(d / '{name}.nice').write_text(str(os.nice(0)))\n"
        f"(d / '{name}.pid').write_text(str(os.getpid()))\n"
        f"print('{name} says: compiler output here', flush=True)\n"
        f"time.sleep({seconds})\n"
        f"(d / '{name}.done').touch()\n"
        f"sys.exit({rc})\n"
    )
    return name, [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


class Foreground:
    """Stands in for timed.run: records each command and which background jobs had finished by then."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.calls: list[tuple[list[str], set[str]]] = []

    def __call__(self, cmd: list[str]) -> int:
        done = {p.stem for p in self.folder.glob("*.done")}
        self.calls.append((cmd, done))
        return 0

    def done_at(self, marker: str) -> set[str]:
        (done,) = [done for cmd, done in self.calls if marker in cmd]
        return done


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LLAMA_SERVER_BINARY", raising=False)
    monkeypatch.setattr(timed, "BUILD", fake_job(tmp_path, "build", 1.5))
    monkeypatch.setattr(timed, "AIPERF_VENV", fake_job(tmp_path, "aiperf", 0.5))
    return tmp_path


def test_preparations_run_at_low_priority_beside_the_first_parts_and_end_before_the_end_to_end_part(
    jobs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    foreground = Foreground(jobs)
    monkeypatch.setattr(timed, "run", foreground)
    assert timed.main() == 0
    first_cmd, done_at_first = foreground.calls[0]
    assert "ruff" in first_cmd[0] and done_at_first == set(), foreground.calls[0]
    assert foreground.done_at(E2E_MARKER) == {"build", "aiperf"}
    for name in ("build", "aiperf"):
        assert int((jobs / f"{name}.nice").read_text()) == min(19, os.nice(0) + timed.NICENESS)
    out = capsys.readouterr().out
    assert "build says: compiler output here" in out and "aiperf says: compiler output here" in out
    assert "| build (background, from the start) | " in out and "| aiperf (background, from the start) | " in out


def test_the_unit_part_runs_on_every_core_and_the_other_parts_in_one_process(
    jobs: Path, monkeypatch: pytest.MonkeyPatch
):
    foreground = Foreground(jobs)
    monkeypatch.setattr(timed, "run", foreground)
    timed.main()
    pytest_calls = {cmd[4]: cmd for cmd, _ in foreground.calls if cmd[1:4] == ["-m", "pytest", "-m"]}
    assert list(pytest_calls) == [marker for _, marker, _ in timed.PYTEST_PARTS]
    unit = pytest_calls.pop(timed.UNIT)
    assert unit[unit.index("-n") + 1] == "auto", unit
    assert all("-n" not in cmd for cmd in pytest_calls.values()), pytest_calls


def test_a_failed_preparation_is_retried_by_the_end_to_end_part_not_counted_as_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setattr(timed, "BUILD", fake_job(tmp_path, "build", 0.1, rc=2))
    monkeypatch.setattr(timed, "AIPERF_VENV", fake_job(tmp_path, "aiperf", 0.1))
    monkeypatch.setattr(timed, "run", Foreground(tmp_path))
    assert timed.main() == 0
    out = capsys.readouterr().out
    assert "# build (background, exit 2):\nbuild says: compiler output here" in out
    assert "| failed: retried in the foreground |" in out
    assert "tests: 2 passed, 0 failed, 0 skipped" in out  # lint and mypy; the fake pytest parts report nothing


def test_another_release_s_binary_skips_the_pinned_build(jobs: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LLAMA_SERVER_BINARY", "/elsewhere/llama-server")
    foreground = Foreground(jobs)
    monkeypatch.setattr(timed, "run", foreground)
    timed.main()
    assert foreground.done_at(E2E_MARKER) == {"aiperf"}
    assert not (jobs / "build.nice").exists()


def test_an_interrupted_run_stops_its_background_preparations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(timed, "BUILD", fake_job(tmp_path, "build", 600))
    monkeypatch.setattr(timed, "AIPERF_VENV", fake_job(tmp_path, "aiperf", 600))
    pid_files = [tmp_path / f"{name}.pid" for name in ("build", "aiperf")]

    def interrupted(cmd: list[str]) -> int:
        deadline = time.monotonic() + 30
        while not all(f.exists() for f in pid_files) and time.monotonic() < deadline:
            time.sleep(0.05)
        raise KeyboardInterrupt

    monkeypatch.setattr(timed, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        timed.main()
    assert not any(alive(int(f.read_text())) for f in pid_files)


BUILD_CHILD = """
import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as make test's background jobs have it
from pathlib import Path
from tools import llama_build
tmp = Path(sys.argv[1])
llama_build.SCRIPT = tmp / "build.sh"
llama_build.CACHE = tmp / "cache"
llama_build.source_tree = lambda image=None: tmp
llama_build.build()
"""


def test_an_interrupted_build_stops_its_compilers(tmp_path: Path):
    """The compilers run in their own session (a time budget stops them all): an interrupt must too."""
    (tmp_path / "build.sh").write_text('sleep 600 &\necho $! > "$1/compiler.pid"\nwait\n')
    child = subprocess.Popen(
        [sys.executable, "-c", BUILD_CHILD, str(tmp_path)], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    pid_file = tmp_path / "compiler.pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    compiler = int(pid_file.read_text())
    assert alive(compiler)
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=30)
    assert "KeyboardInterrupt" in stderr
    deadline = time.monotonic() + 10
    while alive(compiler) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(compiler):
        os.kill(compiler, signal.SIGKILL)
        pytest.fail("the build's compiler outlived the interrupted build")


FAKE_PYTHON = """#!/bin/bash
# Stands in for python3: `-m venv DIR` makes DIR/bin/python (this script), `-m pip` logs its start
# and end around a second's work, anything else succeeds.
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1 $2" = "-m pip" ]; then
  echo "start $(date +%s.%N)" >> "$(dirname "$0")/../pip.log"
  sleep 1
  echo "end $(date +%s.%N)" >> "$(dirname "$0")/../pip.log"
fi
exit 0
"""


def test_make_test_installs_both_venvs_side_by_side(tmp_path: Path):
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    venvs = [tmp_path / "venv", tmp_path / "venv-checkov"]
    result = subprocess.run(
        ["make", "--no-print-directory", "test", f"PYTHON={python}", f"VENV={venvs[0]}", f"CHECKOV_VENV={venvs[1]}"],
        cwd=ROOT,
        env={**os.environ, "TOOLS_DIR": str(tmp_path / "tools")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (start_a, end_a), (start_b, end_b) = [
        sorted(float(line.split()[1]) for line in (venv / "pip.log").read_text().splitlines()) for venv in venvs
    ]
    assert start_a < end_b and start_b < end_a, "the second venv's pip install waited for the first's"


def test_a_preparations_row_is_its_own_time_not_when_the_run_asked_for_it(
    jobs: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The AIPerf venv (0.5 s here) ends long before the foreground parts (2 s here) ask for it."""
    slow = Foreground(jobs)

    def foreground(cmd: list[str]) -> int:
        if not slow.calls:
            time.sleep(2)
        return slow(cmd)

    monkeypatch.setattr(timed, "run", foreground)
    assert timed.main() == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| aiperf (background")]
    seconds = float(row.split("|")[2])
    assert 0.4 <= seconds < 1.5, row

"""`make test`: every check in one go, each part timed, with one closing line of counts.

Parts: lint (ruff), type check (mypy), unit and mocks tests, external checkers on the render, and the end-to-end
test against the real llama-server. A failing part does not stop the others, so one run shows
every failure; the exit status is non-zero if any part failed.

The end-to-end part's two slow preparations, the CPU llama-server build and AIPerf's venv (each made
once under $CACHE_DIR), start first, in the background and at low CPU priority: they take the CPU
time the other parts leave idle (mypy holds one core; the unit tests mostly wait on loopback servers,
subprocesses and time bounds), and the end-to-end part waits for them. Each writes
to its own log, printed when it is waited for; on a warm cache each ends within a second. One that
fails does not fail the run by itself: the end-to-end part's fixtures make the same thing again in
the foreground (the build resumes its kept build directory), and fail there, in their own words.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

UNIT = "not external and not e2e and not install"
PYTEST_PARTS = (
    # pytest-xdist, one worker per core: most of these tests wait (on loopback servers, subprocesses,
    # time bounds) rather than compute, so a second worker fills the time the first one waits.
    ("unit and mocks tests", UNIT, ("-n", "auto")),
    ("lock files install from nothing", "install", ()),
    ("external checks on the render", "external", ()),
    ("end-to-end with llama-server", "e2e", ()),
)
E2E = PYTEST_PARTS[-1][0]
# The end-to-end part's preparations, run in the background from the start (see the module docstring).
BUILD = ("CPU llama-server build", [sys.executable, "-m", "tools.llama_build"])
AIPERF_VENV = (
    "AIPerf venv",
    [sys.executable, "-c", "from tools.loadtest import aiperf_python; print(aiperf_python())"],
)
# Low enough that the foreground parts (and their time-bound tests) keep the CPU whenever they want it.
NICENESS = 10


@dataclass
class Background:
    name: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float
    ended: float = 0.0  # when the process exited, set by its watcher
    watcher: threading.Thread | None = None

    def watch(self) -> None:
        """Notes when the process exits, so its row shows its own time, not when the run asked."""
        self.process.wait()
        self.ended = time.monotonic()


def run(cmd: list[str]) -> int:
    print(f"\n$ {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


def interruptible() -> None:
    """Runs in each background job before it starts. A run started in the background (`make test &`,
    nohup) ignores SIGINT, and its children inherit that: stop_background's SIGINT must reach them."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_background(tmp: Path) -> list[Background]:
    # LLAMA_SERVER_BINARY (another release's build, tests/conftest.py) stands in for the pinned one's.
    commands = [AIPERF_VENV] if os.environ.get("LLAMA_SERVER_BINARY") else [BUILD, AIPERF_VENV]
    jobs = []
    for i, (name, cmd) in enumerate(commands):
        print(f"\n$ nice -n {NICENESS} {' '.join(cmd)}  # {name}, in the background", flush=True)
        log = (tmp / f"background{i}.log").open("wb")
        process = subprocess.Popen(
            ["nice", "-n", str(NICENESS), *cmd],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=interruptible,  # timed.py starts no thread, so a function before exec is safe
        )
        jobs.append(Background(name, process, log, time.monotonic()))
    # Watchers start once every preexec_fn has run: a thread and preexec_fn do not mix.
    for job in jobs:
        job.watcher = threading.Thread(target=job.watch, daemon=True)
        job.watcher.start()
    return jobs


def finish_background(job: Background) -> tuple[str, float, str]:
    """Waits for one background preparation; prints its log; its row of the timing table."""
    rc = job.process.wait()
    if job.watcher is not None:
        job.watcher.join()
    seconds = (job.ended or time.monotonic()) - job.started
    job.log.close()
    print(f"\n# {job.name} (background, exit {rc}):", flush=True)
    print(Path(job.log.name).read_text(errors="replace").rstrip()[-20000:], flush=True)
    return f"{job.name} (background, from the start)", seconds, "ok" if rc == 0 else "failed: retried in the foreground"


def stop_background(jobs: list[Background]) -> None:
    """An interrupted run stops its background preparations: SIGINT, which the build passes on to its compilers."""
    for job in jobs:
        if job.process.poll() is None:
            job.process.send_signal(signal.SIGINT)
    for job in jobs:
        try:
            job.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            job.process.kill()


def counts(junit: Path) -> tuple[int, int, int]:
    if not junit.exists():
        return 0, 0, 0
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    total, failed = int(suite.get("tests", 0)), int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def main() -> int:
    timings: list[tuple[str, float, str]] = []
    passed = failed = skipped = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        background = start_background(Path(tmp))
        try:
            t = time.monotonic()
            lint_rc = run([str(BIN / "ruff"), "format", "--check", "."]) | run([str(BIN / "ruff"), "check", "."])
            timings.append(("lint (ruff format, ruff check)", time.monotonic() - t, "ok" if lint_rc == 0 else "FAILED"))
            passed, failed = (passed + 1, failed) if lint_rc == 0 else (passed, failed + 1)
            t = time.monotonic()
            type_rc = run([str(BIN / "mypy")])
            timings.append(("type check (mypy)", time.monotonic() - t, "ok" if type_rc == 0 else "FAILED"))
            passed, failed = (passed + 1, failed) if type_rc == 0 else (passed, failed + 1)
            for i, (name, marker, options) in enumerate(PYTEST_PARTS):
                if name == E2E:
                    t = time.monotonic()
                    timings += [finish_background(job) for job in background]
                    timings.append((f"{E2E}: waiting for the background", time.monotonic() - t, "ok"))
                junit = Path(tmp) / f"part{i}.xml"
                t = time.monotonic()
                rc = run([sys.executable, "-m", "pytest", "-m", marker, *options, f"--junitxml={junit}", "-q"])
                p, f, s = counts(junit)
                passed, failed, skipped = passed + p, failed + f, skipped + s
                ok = rc in (0, 5) and f == 0  # 5: no test selected in this part
                timings.append((name, time.monotonic() - t, "ok" if ok else "FAILED"))
                if not ok:
                    failed += 0 if f else 1
        finally:
            stop_background(background)
    print("\n| part | seconds | result |\n|---|---|---|")
    for name, seconds, result in timings:
        print(f"| {name} | {seconds:.1f} | {result} |")
    print(f"| total | {time.monotonic() - start:.1f} | |\n")
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or any(r == "FAILED" for _, _, r in timings) else 0


if __name__ == "__main__":
    sys.exit(main())

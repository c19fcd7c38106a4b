"""`make test`: every check in one go, each part timed, with one closing line of counts.

Parts: lint (ruff), type check (mypy), unit and mocks tests, external checkers on the render, and the end-to-end
test against the real llama-server. A failing part does not stop the others, so one run shows
every failure; the exit status is non-zero if any part failed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

PYTEST_PARTS = (
    ("unit and mocks tests", "not external and not e2e and not install"),
    ("lock files install from nothing", "install"),
    ("external checks on the render", "external"),
    ("end-to-end with llama-server", "e2e"),
)


def run(cmd: list[str]) -> int:
    print(f"\n$ {' '.join(cmd)}", flush=True)
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode


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
    t = time.monotonic()
    lint_rc = run([str(BIN / "ruff"), "format", "--check", "."]) | run([str(BIN / "ruff"), "check", "."])
    timings.append(("lint (ruff format, ruff check)", time.monotonic() - t, "ok" if lint_rc == 0 else "FAILED"))
    passed, failed = (passed + 1, failed) if lint_rc == 0 else (passed, failed + 1)
    t = time.monotonic()
    type_rc = run([str(BIN / "mypy")])
    timings.append(("type check (mypy)", time.monotonic() - t, "ok" if type_rc == 0 else "FAILED"))
    passed, failed = (passed + 1, failed) if type_rc == 0 else (passed, failed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, marker) in enumerate(PYTEST_PARTS):
            junit = Path(tmp) / f"part{i}.xml"
            t = time.monotonic()
            rc = run([sys.executable, "-m", "pytest", "-m", marker, f"--junitxml={junit}", "-q"])
            p, f, s = counts(junit)
            passed, failed, skipped = passed + p, failed + f, skipped + s
            ok = rc in (0, 5) and f == 0  # 5: no test selected in this part
            timings.append((name, time.monotonic() - t, "ok" if ok else "FAILED"))
            if not ok:
                failed += 0 if f else 1
    print("\n| part | seconds | result |\n|---|---|---|")
    for name, seconds, result in timings:
        print(f"| {name} | {seconds:.1f} | {result} |")
    print(f"| total | {time.monotonic() - start:.1f} | |\n")
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or any(r == "FAILED" for _, _, r in timings) else 0


if __name__ == "__main__":
    sys.exit(main())

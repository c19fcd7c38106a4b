"""`make bench`: wall time of the offline render of each stack and of the unit and mocks tests."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 3


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for config in sorted(ROOT.glob("Pulumi.*.yaml")):
            cmd = [sys.executable, "-m", "tools.render", "--config", str(config), "--out", tmp]
            times = [timed(cmd) for _ in range(RUNS)]
            rows.append((f"render {config.name}", statistics.median(times)))
    rows.append(
        (
            "unit and mocks tests",
            timed([sys.executable, "-m", "pytest", "-q", "-m", "not external and not e2e and not install"]),
        )
    )
    print("| what | seconds |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

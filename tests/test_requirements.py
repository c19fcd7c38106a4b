"""The venvs install hashed lock files only, and each lock file matches the pins it was made from."""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import BASE_PYTHON, ROOT

SOURCES = ("requirements.txt", "requirements-dev.txt", "requirements-checkov.txt", "requirements-aiperf.txt")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==(\S+)")


def lock_of(source: str) -> Path:
    return ROOT / source.replace(".txt", ".lock.txt")


def pins(path: Path) -> dict[str, str]:
    """name -> version of each `name==version` line, following `-r` includes; names normalised."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("-r "):
            out |= pins(path.parent / line.split(maxsplit=1)[1])
        elif match := PIN.match(line):
            out[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return out


def requirement_blocks(lock: Path) -> list[str]:
    """Each requirement of a pip-compile lock file with its continuation lines, comments dropped."""
    text = "\n".join(line for line in lock.read_text().splitlines() if not line.lstrip().startswith("#"))
    return [block for block in re.split(r"\n(?=\S)", text.strip()) if block]


@pytest.mark.parametrize("source", SOURCES)
def test_lock_file_pins_every_requirement_at_its_version(source: str):
    wanted = pins(ROOT / source)
    locked = pins(lock_of(source))
    drift = {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version}
    assert not drift, f"{lock_of(source).name} is stale (wanted, locked): {drift}; run make lock"


@pytest.mark.parametrize("source", SOURCES)
def test_every_locked_requirement_has_a_sha256(source: str):
    blocks = requirement_blocks(lock_of(source))
    unhashed = [block.split()[0] for block in blocks if "--hash=sha256:" not in block]
    assert blocks, f"{lock_of(source).name} pins nothing"
    assert not unhashed, f"{lock_of(source).name}: no hash for {unhashed}"


@pytest.mark.parametrize("source", SOURCES)
def test_lock_file_names_no_index_or_host(source: str):
    text = lock_of(source).read_text()
    found = re.findall(r"://|--(?:extra-)?index-url|--find-links|--trusted-host", text)
    assert not found, f"{lock_of(source).name} carries {sorted(set(found))}"


def test_makefile_installs_only_lock_files_with_require_hashes():
    installs = [line.strip() for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line]
    assert len(installs) == 2, installs
    assert all("--require-hashes -r requirements" in i and i.endswith(".lock.txt") for i in installs), installs


def _dry_run_install(lock: Path, venv: Path) -> subprocess.CompletedProcess[str]:
    """pip's resolver over one lock file in --require-hashes mode, in a new, untouched venv.

    The venv comes from `python -m venv`, so its pip is the one a new venv has (the one `make venv`
    and the load test's venv install their lock files with), not the pip that .venv upgraded to.
    A dry run with --ignore-installed writes nothing into the venv and reads nothing installed in
    it, so one new venv serves every lock file, side by side.
    No pip cache: a file that only a cache holds could hide a lock that no bare machine installs.
    """
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    return subprocess.run(
        [*pip, "--no-cache-dir", "--disable-pip-version-check", "--require-hashes", "-r", str(lock)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.install
def test_every_lock_file_installs_with_require_hashes_into_an_empty_venv(tmp_path: Path):
    """A lock file that only a cached venv could install (an extra the lock dropped, a version
    without ==) fails here in pip's own words, for every lock file at once."""
    locks = [lock_of(source) for source in SOURCES]
    venv = tmp_path / "venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
    with ThreadPoolExecutor(max_workers=len(locks)) as pool:
        results = dict(zip(locks, pool.map(lambda lock: _dry_run_install(lock, venv), locks), strict=True))
    failures = {
        lock.name: [line for line in r.stderr.splitlines() if "WARNING" not in line][-6:]
        for lock, r in results.items()
        if r.returncode != 0
    }
    assert not failures, f"pip cannot install these lock files from nothing (run make lock): {failures}"

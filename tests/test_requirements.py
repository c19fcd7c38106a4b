"""The venvs install hashed lock files only, and each lock file matches the pins it was made from."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

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

"""Prints the entries of a hashed lock file for the named packages only, each with its hashes, for
`pip install --require-hashes --no-deps -r`: a job that needs a few packages installs exactly the
versions and files the lock file pins, and nothing else.

usage: python3 tools/lock_subset.py requirements.lock.txt pydantic pyyaml ...

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==\S+")


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): `PyYAML` and `pyyaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(lock_text: str) -> dict[str, list[str]]:
    """Package name -> its lines in the lock file: `name==version \\` and its `--hash=` lines."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lock_text.splitlines():
        match = ENTRY.match(line)
        if match:
            current = found.setdefault(normalized(match[1]), [])
            current.append(line)
        elif current is not None and line.strip().startswith("--hash="):
            current.append(line)
        elif not line.startswith((" ", "\t")):
            current = None  # a comment or blank line at the top level ends the entry
    return found


def subset(lock_text: str, names: list[str]) -> str:
    """The entries of `names`, in the lock file's order; a name the lock file lacks is an error."""
    found = entries(lock_text)
    missing = [name for name in names if normalized(name) not in found]
    if missing:
        raise SystemExit(
            f"the lock file pins no {', '.join(missing)}; add it to its requirements file and run make lock"
        )
    wanted = {normalized(name) for name in names}
    lines = [line for name, entry in found.items() if name in wanted for line in entry]
    # The last hash line of an entry ends with no continuation.
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    sys.stdout.write(subset(Path(args[0]).read_text(), args[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

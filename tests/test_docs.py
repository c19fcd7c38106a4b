"""The README and docs/ stay true: the paths they name exist, their links land on a heading, the
code's pointers into them name real headings, and no file cites a tracker number a reader lacks."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Paths in other projects' trees are written with the project's name first, so that
# `llama.cpp/tools/server/server.cpp` is never read as our `tools/`.
OTHER_PROJECTS = (
    "llama.cpp/",
    "pulumi/",
    "pulumi_azure_native/",
    "pulumi-azure-native/",
    "kubelogin/",
    "azure-sdk-for-go/",
    "azure-cli/",
    "ghcr.io/",
)
# Generated or machine-local places: named in the docs, never committed.
NOT_COMMITTED = ("render/", ".tools/", ".venv", "~", "$", "/", "<")
FILE = re.compile(r"\.(py|sh|ya?ml|json|md|txt|toml|cpp|c|h|cu|go|lock)(:[\d,-]+)?$")


@cache
def tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (ROOT / p).exists()]


def top_level() -> set[str]:
    return {p.split("/")[0] for p in tracked()}


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(path: Path) -> dict[str, str]:
    """Each heading's anchor, and its text without backticks."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    found = re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)
    return {slug(h): h.replace("`", "").strip() for h in found}


def path_like(doc: Path) -> list[str]:
    """Backticked tokens that name a file or folder by a path (a slash, and a file name or a trailing slash)."""
    tokens = re.findall(r"`([^`\s]+)`", doc.read_text())
    return [t for t in tokens if "/" in t and (FILE.search(t) or t.endswith("/")) and not re.search(r"[<*…@]", t)]


def test_every_repository_path_named_in_the_docs_exists():
    ours, missing, unclear = top_level(), [], []
    for doc in DOCS:
        for token in path_like(doc):
            path = re.sub(r":[\d,-]+$", "", token)
            if path.startswith(NOT_COMMITTED) or path.startswith(OTHER_PROJECTS) or "://" in path:
                continue
            if path.split("/")[0] in ours:
                if not (ROOT / path).exists():
                    missing.append(f"{doc.name}: {token}")
            else:
                unclear.append(f"{doc.name}: {token}")
    assert not missing, f"the docs name paths this repository lacks: {missing}"
    assert not unclear, f"write these with their project's name first (e.g. llama.cpp/src/...): {unclear}"


def test_every_link_between_the_docs_lands_on_a_file_and_heading():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            if not dest.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in headings(dest):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, f"links that go nowhere: {broken}"


POINTER = re.compile(r"""\b(README(?:\.md)?|docs/[\w-]+\.md)\b(,\s*["']([^"']+)["'])?""")


def code_files() -> list[str]:
    """Program, tools, scripts, stack files and workflows: everything a reader opens beside the docs.

    Not image/: every byte of it is hashed into the image's tag, so editing a comment there rebuilds
    the image (about an hour); its pointers are corrected with the next change of the image itself.
    """
    return [
        p for p in tracked() if not p.endswith(".md") and not p.startswith(("tests/", "image/")) and ".lock" not in p
    ]


def test_every_pointer_from_the_code_into_the_docs_names_a_real_heading():
    wrong = []
    for name in code_files():
        for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            for doc, named, heading in POINTER.findall(line):
                target = ROOT / ("README.md" if doc.startswith("README") else doc)
                if not named:
                    wrong.append(f'{name}:{number}: {doc} without a heading (write {doc}, "Heading")')
                elif not target.exists() or heading not in headings(target).values():
                    wrong.append(f"{name}:{number}: {doc} has no heading {heading!r}")
    assert not wrong, "\n".join(wrong)


TRACKER = re.compile(r"\bissues?\s+\d+|(?<![\w/&-])#\d+\b|\b[\w.-]+/[\w.-]+#\d+\b", re.IGNORECASE)


def test_no_project_file_cites_a_tracker_number():
    """A reader has the repository, not our tracker: cite what an issue says, or link another project's page."""
    found = []
    for name in tracked():
        if name.endswith((".lock.txt", ".json", ".png", ".gguf")):
            continue
        for number, line in enumerate((ROOT / name).read_text(errors="replace").splitlines(), 1):
            found += [f"{name}:{number}: {m.group(0)}" for m in TRACKER.finditer(line)]
    assert not found, "\n".join(found)

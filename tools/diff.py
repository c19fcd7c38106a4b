"""`make diff BASE=<git ref> [STACK=dev]`: what a change does to a stack's sizing and cost.

Renders the stack at BASE (its own code and config, from `git archive` into a temporary
directory, run with this venv) and at the working tree, reads both summary.json files and prints
a markdown table: item | base | head | change. CI posts it on pull requests.

usage: python -m tools.diff --base origin/main [--stack dev]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUMMARY_DATA = "summary.json"


@dataclass(frozen=True)
class Rendered:
    data: dict[str, Any] | None  # the figures, or None with `why`
    why: str = ""


def render_tree(tree: Path, stack: str, out: Path) -> Rendered:
    """Runs the tree's own render for one stack; its summary.json, or why there is none."""
    config = tree / f"Pulumi.{stack}.yaml"
    if not config.exists():
        return Rendered(None, f"it has no Pulumi.{stack}.yaml")
    if not (tree / "tools" / "render.py").exists():
        return Rendered(None, "it predates tools/render.py, so it cannot be rendered the same way")
    result = subprocess.run(
        [sys.executable, "-m", "tools.render", "--config", str(config), "--out", str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return Rendered(None, f"its render failed ({last.strip()})")
    data_file = out / SUMMARY_DATA
    if not data_file.exists():
        return Rendered(None, f"its render writes no {SUMMARY_DATA} (it predates the sizing diff)")
    return Rendered(json.loads(data_file.read_text()))


def export_ref(ref: str, into: Path) -> None:
    """The tree of a git ref, as committed, into a directory (no checkout, no worktree to clean up)."""
    archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {ref}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")


# --- the comparison (pure) ------------------------------------------------------------------


def money(value: float | None, cents: bool) -> str:
    if value is None:
        return "not priced"
    return f"${value:,.2f}" if cents else f"${value:,.0f}"


# (item, how to read it from summary.json, unit formatter kind)
ITEMS: tuple[tuple[str, str, str], ...] = (
    ("Cost per hour, fewest nodes", "cost.minHourly", "usd"),
    ("Cost per hour, most nodes", "cost.maxHourly", "usd"),
    ("Cost per 30-day month, fewest nodes", "cost.minMonthly", "usd0"),
    ("Cost per 30-day month, most nodes", "cost.maxMonthly", "usd0"),
    ("VRAM estimate per server (GB)", "vramGb", "gb"),
    ("Tokens per slot", "tokensPerSlot", "int"),
    ("Worst-case request (tokens)", "requestTokens", "int"),
    ("Slots per server", "slots", "int"),
    ("Context (`-c`)", "contextSize", "int"),
    ("Replicas, min", "replicas.min", "int"),
    ("Replicas, max", "replicas.max", "int"),
    ("GPU nodes, min", "gpuNodes.min", "int"),
    ("GPU nodes, max", "gpuNodes.max", "int"),
    ("GPU VM size", "gpuVmSize", "text"),
    ("Region", "region", "text"),
)


def lookup(data: dict[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def shown(value: Any, kind: str) -> str:
    if value is None:
        return "not priced" if kind.startswith("usd") else "-"
    if kind == "usd":
        return money(value, cents=True)
    if kind == "usd0":
        return money(value, cents=False)
    if kind == "gb":
        return f"{value:.2f}"
    return str(value)


def change(base: Any, head: Any, kind: str) -> str:
    if base == head:
        return "="
    if kind == "text" or base is None or head is None:
        return "changed"
    delta = head - base
    sign = "+" if delta > 0 else "-"
    if kind.startswith("usd"):
        text = f"{sign}{money(abs(delta), cents=kind == 'usd')}"
    elif kind == "gb":
        text = f"{sign}{abs(delta):.2f}"
    else:
        text = f"{sign}{abs(delta)}"
    return f"{text} ({delta / base:+.0%})" if base else text


def diff_rows(base: dict[str, Any], head: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for item, path, kind in ITEMS:
        b, h = lookup(base, path), lookup(head, path)
        rows.append((item, shown(b, kind), shown(h, kind), change(b, h, kind)))
    return rows


def diff_markdown(stack: str, ref: str, base: Rendered, head: dict[str, Any]) -> str:
    title = f"### Sizing and cost of stack `{stack}`: base `{ref}` → this change"
    if base.data is None:
        return f"{title}\n\nNo comparison: base `{ref}` has no sizing figures for `{stack}` because {base.why}.\n"
    if base.data.get("version") != head.get("version"):
        return (
            f"{title}\n\nNo comparison: base `{ref}` writes {SUMMARY_DATA} version {base.data.get('version')} "
            f"and this change version {head.get('version')}; compare the two summary.md files instead.\n"
        )
    rows = diff_rows(base.data, head)
    changed = [r for r in rows if r[3] != "="]
    lines = [title, ""]
    if not changed:
        lines.append("No change in cost, VRAM, tokens, slots or replicas.")
    else:
        lines += ["| item | base | head | change |", "|---|---|---|---|"]
        lines += [f"| {item} | {b} | {h} | {c} |" for item, b, h, c in changed]
        unchanged = len(rows) - len(changed)
        if unchanged:
            lines += ["", f"{unchanged} other figures unchanged."]
    unpriced = sorted(set(lookup(head, "cost.unpriced") or []))
    if unpriced:
        lines += ["", f"Costs leave out what has no list price: {', '.join(unpriced)}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git ref to compare against, e.g. origin/main")
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="llamacpp-aks-diff-") as tmp:
        work = Path(tmp)
        head = render_tree(ROOT, args.stack, work / "head-out")
        if head.data is None:
            print(f"The working tree cannot be rendered for `{args.stack}`: {head.why}.", file=sys.stderr)
            return 1
        export_ref(args.base, work / "base")
        base = render_tree(work / "base", args.stack, work / "base-out")
    print(diff_markdown(args.stack, args.base, base, head.data), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

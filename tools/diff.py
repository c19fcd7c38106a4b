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
    problems: tuple[str, ...] = ()  # every problem of a refused config, one sentence each


def refusal(stderr: str) -> tuple[str, tuple[str, ...]]:
    """Why a render failed, from its stderr: every problem of a refused config (tools/render.py
    prints one `- ` line each under "invalid stack config:"), else its last line."""
    lines = stderr.strip().splitlines()
    header = next((i for i, line in enumerate(lines) if line.rstrip().endswith("invalid stack config:")), None)
    if header is not None:
        problems = tuple(line[2:].strip() for line in lines[header + 1 :] if line.startswith("- "))
        if problems:
            return (
                f"its render refused the config ({len(problems)} problem{'s' if len(problems) > 1 else ''})",
                problems,
            )
    last = (lines or ["no message"])[-1]
    return f"its render failed ({last.strip()})", ()


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
        why, problems = refusal(result.stderr)
        return Rendered(None, why, problems)
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


def bound(data: dict[str, Any]) -> str:
    """How a render's cost figures may be read: exact, atLeast (a lower bound) or unknown."""
    value = lookup(data, "cost.bound")
    return value if value in ("exact", "atLeast", "unknown") else "unknown"


def shown(value: Any, kind: str, how: str = "exact") -> str:
    if kind.startswith("usd") and (value is None or how == "unknown"):
        return "unknown"
    if value is None:
        return "-"
    if kind == "usd":
        text = money(value, cents=True)
    elif kind == "usd0":
        text = money(value, cents=False)
    elif kind == "gb":
        return f"{value:.2f}"
    else:
        return str(value)
    return f"at least {text}" if how == "atLeast" else text


def signed(base: Any, head: Any, kind: str) -> str:
    delta = head - base
    sign = "+" if delta > 0 else "-"
    if kind.startswith("usd"):
        text = f"{sign}{money(abs(delta), cents=kind == 'usd')}"
    elif kind == "gb":
        text = f"{sign}{abs(delta):.2f}"
    else:
        text = f"{sign}{abs(delta)}"
    return f"{text} ({delta / base:+.0%})" if base else text


def change(base: Any, head: Any, kind: str) -> str:
    if base == head:
        return "="
    if kind == "text" or base is None or head is None:
        return "changed"
    return signed(base, head, kind)


def cost_change(base: dict[str, Any], head: dict[str, Any], path: str, kind: str) -> str:
    """The change of a cost figure, claimed only as far as both figures allow.

    Exact figures compare as numbers. Two lower bounds that leave out the very same items (same
    items, same quantities, same region) differ by exactly what their priced items differ by. Else
    only a proven direction is said (an exact base below a head that is at least more: "at least
    +$X"; a lower-bound base above an exact head: "-$X or more"), and anything else is unknown: a
    saving is never read from figures that leave out different things, nor from unknowns.
    """
    b, h = lookup(base, path), lookup(head, path)
    bb, hb = bound(base), bound(head)
    if b is None or h is None or "unknown" in (bb, hb):
        return "unknown"
    same_left_out = (
        bb == hb == "atLeast"
        and base.get("region") == head.get("region")
        and lookup(base, "cost.unpricedItems") is not None
        and lookup(base, "cost.unpricedItems") == lookup(head, "cost.unpricedItems")
    )
    if bb == hb == "exact" or same_left_out:
        return change(b, h, kind)
    if bb == "exact" and h > b:
        return f"at least {signed(b, h, kind)}"
    if hb == "exact" and h < b:
        return f"{signed(b, h, kind)} or more"
    return "unknown"


def diff_rows(base: dict[str, Any], head: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows = []
    for item, path, kind in ITEMS:
        b, h = lookup(base, path), lookup(head, path)
        if path.startswith("cost."):
            row = (shown(b, kind, bound(base)), shown(h, kind, bound(head)), cost_change(base, head, path, kind))
        else:
            row = (shown(b, kind), shown(h, kind), change(b, h, kind))
        rows.append((item, *row))
    return rows


def diff_markdown(stack: str, ref: str, base: Rendered, head: dict[str, Any]) -> str:
    title = f"### Sizing and cost of stack `{stack}`: base `{ref}` → this change"
    if base.data is None:
        text = f"{title}\n\nNo comparison: base `{ref}` has no sizing figures for `{stack}` because {base.why}"
        return text + (":\n" + "".join(f"- {p}\n" for p in base.problems) if base.problems else ".\n")
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
    if bound(head) == "unknown":
        lines += [
            "",
            f"Cost is unknown: the items that dominate it have no list price ({', '.join(unpriced)}); "
            "`make prices` fills those it has a meter for.",
        ]
    elif unpriced:
        lines += [
            "",
            f"Cost figures are lower bounds: they leave out {', '.join(unpriced)} (not priced; "
            "`make prices` fills those it has a meter for).",
        ]
    usage = sorted(set(lookup(head, "cost.usageBased") or []))
    if usage:
        lines += ["", f"Billed by use, in no figure: {', '.join(usage)}."]
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
            for problem in head.problems:
                print(f"- {problem}", file=sys.stderr)
            return 1
        export_ref(args.base, work / "base")
        base = render_tree(work / "base", args.stack, work / "base-out")
    print(diff_markdown(args.stack, args.base, base, head.data), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

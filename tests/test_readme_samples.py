"""The docs' sample cost, what-fits and `make diff` output is what the code computes now."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from core.loading import load_config, split_pulumi_config
from core.summary import cost_section, fits_section, summary_data
from tests.conftest import ROOT
from tools import diff
from tools.render import stack_config


def raw_stack(stack: str) -> dict[str, Any]:
    _, flat = stack_config(ROOT / f"Pulumi.{stack}.yaml")
    return split_pulumi_config(flat)[0]


def summary_sample() -> str:
    """The dev stack's cost and what-fits sections, their headings one level down for the docs."""
    config, _ = load_config(raw_stack("dev"), "dev")
    lines = cost_section(config) + fits_section(config)
    return "\n".join(f"#{line}" if line.startswith("## ") else line for line in lines).strip()


def diff_sample(stack: str, change: Callable[[dict[str, Any]], None]) -> str:
    """What `make diff` prints for the stack after `change` edits its config."""
    base_raw = raw_stack(stack)
    head_raw = copy.deepcopy(base_raw)
    change(head_raw)
    base, _ = load_config(base_raw, stack)
    head, _ = load_config(head_raw, stack)
    return diff.diff_markdown(
        stack, "origin/main", diff.Rendered(summary_data(base, stack)), summary_data(head, stack)
    ).strip()


def more_nodes(raw: dict[str, Any]) -> None:
    raw["autoscaling"]["maxReplicas"] = 4
    raw["cluster"]["gpuPool"]["maxCount"] = 4


def fewer_slots(raw: dict[str, Any]) -> None:
    raw["server"]["parallel"] = 4


def test_sample_summary_is_the_dev_stacks_current_cost_and_fit():
    assert summary_sample() in (ROOT / "docs" / "configuration.md").read_text()


def test_sample_diff_is_what_make_diff_prints_for_more_prod_nodes():
    assert diff_sample("prod", more_nodes) in (ROOT / "docs" / "configuration.md").read_text()


def test_readme_diff_is_what_make_diff_prints_for_fewer_dev_slots():
    """The README's one-screen loop: server.parallel 8 -> 4 on dev, and what `make diff` shows."""
    assert diff_sample("dev", fewer_slots) in (ROOT / "README.md").read_text()


def test_the_readmes_sample_refusal_is_what_preview_says():
    from tests.conftest import preview_problems

    said = preview_problems({"server": {"parallel": 10}})
    assert f"- {said[0]}\n" in (ROOT / "README.md").read_text()

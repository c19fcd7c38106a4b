"""The README's sample cost, what-fits and `make diff` output is what the code computes now."""

from __future__ import annotations

import copy
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
    """The dev stack's cost and what-fits sections, their headings one level down for the README."""
    config, _ = load_config(raw_stack("dev"), "dev")
    lines = cost_section(config) + fits_section(config)
    return "\n".join(f"#{line}" if line.startswith("## ") else line for line in lines).strip()


def diff_sample() -> str:
    """`make diff` on prod after raising autoscaling.maxReplicas and cluster.gpuPool.maxCount to 4."""
    base_raw = raw_stack("prod")
    head_raw = copy.deepcopy(base_raw)
    head_raw["autoscaling"]["maxReplicas"] = 4
    head_raw["cluster"]["gpuPool"]["maxCount"] = 4
    base, _ = load_config(base_raw, "prod")
    head, _ = load_config(head_raw, "prod")
    return diff.diff_markdown(
        "prod", "origin/main", diff.Rendered(summary_data(base, "prod")), summary_data(head, "prod")
    ).strip()


def test_readme_sample_summary_is_the_dev_stacks_current_cost_and_fit():
    assert summary_sample() in (ROOT / "README.md").read_text()


def test_readme_sample_diff_is_what_make_diff_prints_for_that_change():
    assert diff_sample() in (ROOT / "README.md").read_text()

"""`make diff`: the sizing and cost of a stack at a git ref against the working tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import StackConfig
from core.summary import summary_data
from tests.conftest import ROOT
from tools import diff

BASE = summary_data(StackConfig.model_validate({"cluster": {"tier": "Standard"}}), "dev")


def changed(**server: Any) -> dict[str, Any]:
    return summary_data(StackConfig.model_validate({"cluster": {"tier": "Standard"}, "server": server}), "dev")


def row(rows: list[tuple[str, str, str, str]], item: str) -> tuple[str, str, str, str]:
    return next(r for r in rows if r[0] == item)


# --- the comparison --------------------------------------------------------------------------


def test_fewer_slots_show_base_head_and_signed_change():
    rows = diff.diff_rows(BASE, changed(parallel=4))
    assert row(rows, "Slots per server") == ("Slots per server", "8", "4", "-4 (-50%)")
    assert row(rows, "Tokens per slot")[1:] == ("4096", "8192", "+4096 (+100%)")


def test_more_gpu_nodes_show_the_cost_change_in_dollars_and_percent():
    head = summary_data(
        StackConfig.model_validate({"cluster": {"tier": "Standard", "gpuPool": {"maxCount": 2}}}), "dev"
    )
    # Both leave out the same unpriced items, so the priced difference is the whole difference.
    assert row(diff.diff_rows(BASE, head), "Cost per hour, most nodes")[1:] == (
        "at least $3.40",
        "at least $6.60",
        "+$3.20 (+94%)",
    )


def test_only_changed_items_are_listed():
    text = diff.diff_markdown("dev", "main", diff.Rendered(BASE), changed(parallel=4))
    assert "| Slots per server | 8 | 4 |" in text
    assert "GPU VM size" not in text


def test_no_change_says_so_in_one_line():
    text = diff.diff_markdown("dev", "main", diff.Rendered(BASE), BASE)
    assert "No change in cost, VRAM, tokens, slots or replicas." in text


def test_base_without_figures_is_said_in_one_sentence():
    why = "its render writes no summary.json (it predates the sizing diff)"
    text = diff.diff_markdown("dev", "v1", diff.Rendered(None, why), BASE)
    assert f"No comparison: base `v1` has no sizing figures for `dev` because {why}." in text


def test_unpriced_region_shows_unknown_rather_than_zero():
    head = summary_data(StackConfig.model_validate({"cluster": {"location": "swedencentral"}}), "dev")
    assert row(diff.diff_rows(BASE, head), "Cost per hour, most nodes")[1:] == ("at least $3.40", "unknown", "unknown")


def data(**sections: Any) -> dict[str, Any]:
    return summary_data(StackConfig.model_validate({"cluster": {"tier": "Standard"}, **sections}), "dev")


def cost_row(base: dict[str, Any], head: dict[str, Any], item: str = "Cost per 30-day month, fewest nodes") -> str:
    return row(diff.diff_rows(base, head), item)[3]


def test_turning_autoscaling_off_on_dev_is_an_increase_not_a_saving():
    """dev as shipped against dev with autoscaling.enabled=false: its one replica never leaves its node."""
    dev = {"cluster": {"tier": "Free", "systemPool": {"count": 1}, "gpuPool": {"minCount": 0, "maxCount": 1}},
           "registry": {"sku": "Standard"}}  # fmt: skip
    auto = {"enabled": True, "minReplicas": 0, "activeHours": {}}
    base = summary_data(StackConfig.model_validate({**dev, "autoscaling": auto}), "dev")
    head = summary_data(StackConfig.model_validate({**dev, "autoscaling": {**auto, "enabled": False}}), "dev")
    change = cost_row(base, head)
    assert change.startswith("+$1,481"), change


def test_two_unknowns_never_compare_equal_or_lower():
    nv72 = {"gpuPool": {"vmSize": "Standard_NV72ads_A10_v5", "minCount": 1, "maxCount": 2}}
    base = data(cluster={"tier": "Standard", **nv72})
    head = data(cluster={"tier": "Standard", "gpuPool": {**nv72["gpuPool"], "maxCount": 1}})
    assert cost_row(base, head, "Cost per hour, most nodes") == "unknown"
    same = cost_row(base, base, "Cost per hour, most nodes")
    assert same == "unknown" and row(diff.diff_rows(base, base), "Cost per hour, most nodes")[1] == "unknown"


def test_two_lower_bounds_that_leave_out_different_things_claim_no_saving():
    """Fewer GPU nodes, but a larger (unpriced) system pool: the priced part drops, the bill may not."""
    base = data(cluster={"tier": "Standard", "systemPool": {"count": 1}, "gpuPool": {"maxCount": 2}})
    head = data(cluster={"tier": "Standard", "systemPool": {"count": 5}, "gpuPool": {"maxCount": 1}})
    assert cost_row(base, head, "Cost per hour, most nodes") == "unknown"


def test_a_lower_bound_against_an_exact_figure_says_only_the_proven_direction(monkeypatch):
    exact = {"bound": "exact", "minHourly": 10.0, "unpricedItems": []}
    at_least = {"bound": "atLeast", "unpricedItems": ["System pool: 1 x Standard_D4ds_v5"]}

    def pair(base_cost: dict[str, Any], head_cost: dict[str, Any]) -> str:
        return diff.cost_change({"cost": base_cost}, {"cost": head_cost}, "cost.minHourly", "usd")

    assert (
        pair(exact, {**at_least, "minHourly": 12.0}) == "at least +$2.00 (+20%)"
    )  # head is more, whatever it leaves out
    assert pair(exact, {**at_least, "minHourly": 9.0}) == "unknown"  # head may still be more
    assert pair({**at_least, "minHourly": 12.0}, exact) == "-$2.00 (-17%) or more"  # base was at least more
    assert pair({**at_least, "minHourly": 9.0}, exact) == "unknown"
    assert (
        pair({**at_least, "minHourly": 12.0}, {**at_least, "minHourly": 9.0}) == "-$3.00 (-25%)"
    )  # same items left out
    other = {"bound": "atLeast", "minHourly": 9.0, "unpricedItems": ["System pool: 2 x Standard_D4ds_v5"]}
    assert pair({**at_least, "minHourly": 12.0}, other) == "unknown"
    assert pair({**exact, "bound": "unknown"}, exact) == "unknown"
    assert pair({**exact, "bound": "Exact"}, exact) == "unknown"  # a bound it does not know is no bound


# --- a refused render shows every problem --------------------------------------------------------


REFUSAL = """Pulumi.dev.yaml: invalid stack config:
- server.parallel=10 with server.contextSize=32768 gives 3328 tokens per slot; set server.parallel <= 8.
- autoscaling.minReplicas=3 is above autoscaling.maxReplicas=1; set minReplicas <= 1 or maxReplicas >= 3.
"""


def test_every_problem_of_a_refused_render_is_kept():
    why, problems = diff.refusal(REFUSAL)
    assert why == "its render refused the config (2 problems)"
    assert problems == (
        "server.parallel=10 with server.contextSize=32768 gives 3328 tokens per slot; set server.parallel <= 8.",
        "autoscaling.minReplicas=3 is above autoscaling.maxReplicas=1; set minReplicas <= 1 or maxReplicas >= 3.",
    )
    text = diff.diff_markdown("dev", "main", diff.Rendered(None, why, problems), BASE)
    assert all(f"\n- {p}\n" in text for p in problems)


def test_one_problem_and_a_crash_read_as_such():
    assert diff.refusal(REFUSAL.splitlines()[0] + "\n- one thing.\n") == (
        "its render refused the config (1 problem)",
        ("one thing.",),
    )
    assert diff.refusal("Traceback (most recent call last):\n  ...\nKeyError: 'x'\n") == (
        "its render failed (KeyError: 'x')",
        (),
    )
    assert diff.refusal("") == ("its render failed (no message)", ())


def test_make_diff_of_a_refused_working_tree_prints_every_problem(tmp_path: Path, capsys, monkeypatch):
    for name in ("core", "tools", "components", "specs", "__main__.py", "Pulumi.yaml"):
        (tmp_path / name).symlink_to(ROOT / name)
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    config["config"]["llamacpp-aks:server"]["parallel"] = 10
    config["config"]["llamacpp-aks:autoscaling"]["minReplicas"] = 3
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(config))
    rendered = diff.render_tree(tmp_path, "dev", tmp_path / "out")
    assert rendered.data is None and len(rendered.problems) >= 2, rendered
    assert any(p.startswith("server.parallel=10") for p in rendered.problems)
    assert any(p.startswith("autoscaling.minReplicas=3") for p in rendered.problems)
    monkeypatch.setattr(diff, "render_tree", lambda *_: rendered)
    assert diff.main(["--base", "HEAD", "--stack", "dev"]) == 1
    err = capsys.readouterr().err
    assert all(f"- {p}" in err for p in rendered.problems)


# --- rendering a tree ------------------------------------------------------------------------


def test_tree_whose_render_writes_no_summary_json_is_reported(tmp_path: Path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("")
    (tmp_path / "tools" / "render.py").write_text(
        "import sys, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "out.mkdir(parents=True)\n(out / 'summary.md').write_text('# old')\n"
    )
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    rendered = diff.render_tree(tmp_path, "dev", tmp_path / "out")
    assert (rendered.data, rendered.why) == (None, "its render writes no summary.json (it predates the sizing diff)")


def test_tree_without_the_stack_is_reported(tmp_path: Path):
    assert diff.render_tree(tmp_path, "prod", tmp_path / "out").why == "it has no Pulumi.prod.yaml"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """This repo's files (tracked and new, not ignored) committed in a fresh git repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    repo = tmp_path / "repo"
    for name in listed:
        source = ROOT / name
        if source.is_symlink() or not source.is_file():
            continue  # the shared venv link, deleted files
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, repo / name)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    return repo


def test_make_diff_compares_a_committed_base_with_the_edited_working_tree(repo_copy: Path):
    config = repo_copy / "Pulumi.dev.yaml"
    config.write_text(config.read_text().replace("    parallel: 8\n", "    parallel: 4\n"))
    result = subprocess.run(
        [sys.executable, "-m", "tools.diff", "--base", "HEAD", "--stack", "dev"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "| Slots per server | 8 | 4 | -4 (-50%) |" in result.stdout


def test_pull_request_workflow_posts_the_diff_against_the_base_commit():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pull-request.yml").read_text())
    steps = workflow["jobs"]["preview"]["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    runs = "\n".join(s.get("run", "") for s in steps)
    sizing = next(s for s in steps if "make -s diff" in s.get("run", ""))
    assert checkout["with"]["fetch-depth"] == 0, "the base commit must be fetched for make diff"
    assert sizing["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    # The sizing change goes into the one preview comment, beside the Pulumi diff (tools/pr_comment.py).
    assert '--sizing "render/$STACK/comment.md"' in runs

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
    assert row(diff.diff_rows(BASE, head), "Cost per hour, most nodes")[1:] == ("$3.30", "$6.50", "+$3.20 (+97%)")


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


def test_unpriced_region_shows_not_priced_rather_than_zero():
    head = summary_data(StackConfig.model_validate({"cluster": {"location": "swedencentral"}}), "dev")
    assert row(diff.diff_rows(BASE, head), "Cost per hour, most nodes")[1:] == ("$3.30", "not priced", "changed")


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

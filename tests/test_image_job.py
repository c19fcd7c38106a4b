"""The deploy workflow's image job (tools/image_job.py) against a fake `az`: it builds the program's
content tag with the program's script before `pulumi up`, builds nothing it need not, explains
every stop in a sentence, and runs with only the packages the job installs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.image import content_tag
from core.loading import load_stack
from tests.conftest import BASE_PYTHON, ROOT
from tools import lock_subset
from tools.image_job import REQUIREMENTS

DIGEST = "sha256:" + "e" * 64
LOGIN_SERVER = "llamacppdevacrab12cd.azurecr.io"
# A fake Azure CLI: logs each call, answers from files the test writes, and "builds" by creating
# the tag, so a later `acr repository show` finds it.
FAKE_AZ = """#!/bin/sh
echo "$*" >> "$STATE/calls"
case "$1 $2" in
  "group exists") cat "$STATE/group" 2>/dev/null || exit 3;;
  "acr list") cat "$STATE/servers";;
  "acr repository") [ -e "$STATE/tag" ] || { echo "ERROR: manifest unknown" >&2; exit 1; }; echo "$DIGEST";;
  "acr build") echo "build log: $*"; [ -e "$STATE/fail" ] && exit 1; touch "$STATE/tag";;
esac
"""


def stack_file(tmp_path: Path, stack: str = "dev", image: str = "") -> Path:
    """The shipped stack file, with its image block replaced when `image` is given."""
    text = (ROOT / f"Pulumi.{stack}.yaml").read_text()
    if image:
        text = text.replace("  llamacpp-aks:image:\n    builder: acr", f"  llamacpp-aks:image:\n{image}")
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(text)
    return path


def run_job(tmp_path: Path, config: Path, state: dict[str, str], python: str = sys.executable):
    bin_dir, home = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    (bin_dir / "az").write_text(FAKE_AZ)
    (bin_dir / "az").chmod(0o755)
    for name, text in state.items():
        (home / name).write_text(text)
    summary = tmp_path / "summary.md"
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "STATE": str(home),
        "DIGEST": DIGEST,
        "GITHUB_STEP_SUMMARY": str(summary),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [python, "-m", "tools.image_job", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = (home / "calls").read_text().splitlines() if (home / "calls").exists() else []
    return result, calls, summary.read_text() if summary.exists() else ""


def test_a_missing_tag_is_built_with_the_programs_script_and_tag(tmp_path: Path):
    config = stack_file(tmp_path)
    result, calls, summary = run_job(tmp_path, config, {"group": "true\n", "servers": LOGIN_SERVER + "\n"})
    tag = f"llama-server:{content_tag(load_stack(config).image)}"
    assert result.returncode == 0, result.stderr
    assert [c.split()[:2] for c in calls] == [
        ["group", "exists"],
        ["acr", "list"],
        ["acr", "repository"],
        ["acr", "build"],
        ["acr", "repository"],
    ]
    # tsv whatever the runner's `core.output` default: a table would read as "no registry yet".
    assert calls[0] == "group exists --name llamacpp-dev-rg --output tsv"
    assert "--resource-group llamacpp-dev-rg" in calls[1] and calls[1].endswith("--output tsv")
    build = calls[3].split()
    assert build[build.index("--registry") + 1] == "llamacppdevacrab12cd"
    assert build[build.index("--image") + 1] == tag
    assert build[-1] == "image"  # the context the program's build step uses
    line = f"dev: {tag} is {LOGIN_SERVER}/llama-server@{DIGEST}; `pulumi up` deploys it without building."
    assert result.stdout == line + "\n"
    assert line in summary
    assert "build log" in result.stderr and "build log" not in result.stdout  # the log streams, the line is clean


def test_a_tag_already_in_the_registry_is_not_built_again(tmp_path: Path):
    result, calls, _ = run_job(tmp_path, stack_file(tmp_path), {"group": "true\n", "servers": LOGIN_SERVER, "tag": ""})
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith("acr build")]
    assert result.stdout.endswith(f"@{DIGEST}; `pulumi up` deploys it without building.\n")


@pytest.mark.parametrize(
    ("state", "why"), [({"group": "false\n"}, "no group"), ({"group": "true\n", "servers": ""}, "empty")]
)
def test_before_the_first_deploy_the_up_builds(tmp_path: Path, state: dict[str, str], why: str):
    result, calls, _ = run_job(tmp_path, stack_file(tmp_path), state)
    assert result.returncode == 0, (why, result.stderr)
    assert not [c for c in calls if c.startswith("acr build")]
    assert "no registry in llamacpp-dev-rg yet (the stack's first deploy); `pulumi up` creates it" in result.stdout


@pytest.mark.parametrize(
    ("image", "said"),
    [
        (
            "    prebuilt: myacr.azurecr.io/llama-server:b1@sha256:" + "a" * 64,
            "image.prebuilt is set",
        ),
        ("    builder: local", "image.builder is local"),
    ],
)
def test_nothing_to_build_asks_azure_nothing(tmp_path: Path, image: str, said: str):
    result, calls, _ = run_job(tmp_path, stack_file(tmp_path, image=image), {})
    assert (result.returncode, calls) == (0, []), result.stderr
    assert said in result.stdout


def test_a_failed_build_stops_the_job_with_a_sentence(tmp_path: Path):
    result, _, _ = run_job(tmp_path, stack_file(tmp_path), {"group": "true\n", "servers": LOGIN_SERVER, "fail": ""})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the ACR build of llama-server:" in result.stderr and "nothing was deployed" in result.stderr


def test_signed_out_or_two_registries_is_a_sentence(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    signed_out, _, _ = run_job(tmp_path / "a", stack_file(tmp_path), {})
    assert signed_out.returncode == 1 and "Traceback" not in signed_out.stderr
    assert "`az group exists --name llamacpp-dev-rg --output tsv` failed" in signed_out.stderr
    assert "signed in as the stack's deploy identity" in signed_out.stderr
    servers = {"group": "true\n", "servers": "a.azurecr.io\nb.azurecr.io"}
    two, _, _ = run_job(tmp_path / "b", stack_file(tmp_path), servers)
    assert two.returncode == 1 and "holds 2 registries (a.azurecr.io, b.azurecr.io)" in two.stderr


def test_bad_stack_config_is_a_sentence_before_azure_is_asked(tmp_path: Path):
    result, calls, _ = run_job(tmp_path, stack_file(tmp_path, image="    builder: docker"), {})
    assert (result.returncode, calls) == (1, [])
    assert "image.builder" in result.stderr and "Traceback" not in result.stderr


def test_the_job_imports_only_the_packages_it_installs():
    probe = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import tools.image_job\n"
        "allowed = {'core', 'tools', 'pydantic', 'pydantic_core', 'annotated_types', 'typing_extensions',"
        " 'typing_inspection', 'yaml', '_yaml', 'cython_runtime'}\n"
        "found = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names) - allowed\n"
        "print(sorted(m for m in found if not m.startswith(('_cython', '_sysconfigdata'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_jobs_requirements_are_the_lock_files_own_entries():
    lock = (ROOT / "requirements.lock.txt").read_text()
    picked = lock_subset.subset(lock, list(REQUIREMENTS))
    entries = lock_subset.entries(picked)
    assert set(entries) == set(REQUIREMENTS)
    for name, lines in entries.items():
        assert lines[0] in lock and len(lines) > 1 and all("--hash=sha256:" in line for line in lines[1:]), name
        assert not lines[-1].endswith("\\"), name
    with pytest.raises(SystemExit, match="pins no leftpad"):
        lock_subset.subset(lock, ["pydantic", "leftpad"])
    assert lock_subset.normalized("PyYAML") == lock_subset.normalized("pyyaml") == "pyyaml"


@pytest.mark.install
def test_the_job_runs_in_a_venv_holding_only_its_requirements(tmp_path: Path):
    """What the workflow's image job does: a new venv, the lock file's entries for REQUIREMENTS
    installed with their hashes and no other package, then the job itself."""
    venv = tmp_path / "venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
    requirements = tmp_path / "image-job.txt"
    requirements.write_text(lock_subset.subset((ROOT / "requirements.lock.txt").read_text(), list(REQUIREMENTS)))
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, "--no-cache-dir", "--require-hashes", "--no-deps", "--only-binary", ":all:", "-r", str(requirements)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    result, _, _ = run_job(tmp_path, stack_file(tmp_path), {"group": "false\n"}, python=str(venv / "bin" / "python"))
    assert result.returncode == 0, result.stderr
    assert "`pulumi up` creates it" in result.stdout

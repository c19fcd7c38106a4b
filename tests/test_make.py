"""The Makefile's entry points on a machine without the tools they need: each stops within seconds,
before any venv is built or pulumi runs, with the command that installs what is missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import MAKE, ROOT, bare_path, pinned_pulumi, run_make

# A missing tool must be reported in the first seconds, not after minutes of pip installs.
FAST_SECONDS = 5.0


def test_make_test_without_system_tools_names_the_install_command(tmp_path: Path):
    rc, output, seconds = run_make(tmp_path, bare_path(tmp_path), "test", env={"SYSTEM_TOOLS_AS": "user"})
    assert (rc != 0, seconds < FAST_SECONDS, (tmp_path / "venv").exists()) == (True, True, False), output
    assert (
        "install them with: sudo sh -c 'apt-get update && apt-get install -y make cmake g++ curl python3-venv'"
        in output
    ), output


def test_system_tools_are_installed_when_root(tmp_path: Path):
    log = tmp_path / "apt.log"
    path = bare_path(tmp_path, {"apt-get": f'echo "$*" >> {log}'})
    result = subprocess.run(
        ["bash", "tools/system-tools.sh"],
        cwd=ROOT,
        env={"PATH": path, "SYSTEM_TOOLS_AS": "root"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == ["update -qq", "install -y -qq make cmake g++ curl python3-venv"]


@pytest.mark.parametrize("target", ["preview", "up", "destroy"])
def test_pulumi_targets_without_the_clis_name_their_install_commands(tmp_path: Path, target: str):
    rc, output, seconds = run_make(tmp_path, bare_path(tmp_path), target, "STACK=dev")
    assert (rc != 0, seconds < FAST_SECONDS, "command not found" in output) == (True, True, False), output
    tools = tmp_path / "tools"
    assert f"--install-root {tools} --no-edit-path" in output, output
    assert f"az aks install-cli --install-location {tools}/bin/kubectl" in output, output
    # kubelogin at the version CI builds (the deploy workflow's pin), never whatever is newest.
    ci_pin = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())["jobs"]["up-dev"]["env"]
    assert f"--kubelogin-version {ci_pin['KUBELOGIN_VERSION']}\n" in output, output


def test_pulumi_targets_find_the_clis_in_the_project_tools_folder(tmp_path: Path):
    tools_bin = tmp_path / "tools" / "bin"
    tools_bin.mkdir(parents=True)
    for name, body in (("pulumi", "echo v3.272.0"), ("kubelogin", "")):
        (tools_bin / name).write_text(f"#!/bin/bash\n{body}\n")
        (tools_bin / name).chmod(0o755)
    result = subprocess.run(
        ["bash", "tools/cloud-tools.sh", "preview", "pulumi", "kubelogin"],
        cwd=ROOT,
        env={"PATH": f"{tools_bin}:{bare_path(tmp_path)}", "PULUMI_VERSION": "3.272.0"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_another_pulumi_version_is_named_with_the_pinned_install_command(tmp_path: Path):
    path = bare_path(tmp_path, {"pulumi": "echo v3.1.0", "kubelogin": ""})
    result = subprocess.run(
        ["bash", "tools/cloud-tools.sh", "preview", "pulumi", "kubelogin"],
        cwd=ROOT,
        env={"PATH": path, "PULUMI_VERSION": "3.272.0", "TOOLS_DIR": ".tools"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stderr) == (
        0,
        "warning: pulumi is v3.1.0, not the pinned v3.272.0; install that with: curl -fsSL https://get.pulumi.com"
        " | sh -s -- --version 3.272.0 --install-root .tools --no-edit-path\n",
    )


def stub_clis(tmp_path: Path) -> tuple[str, Path]:
    """A PATH whose pulumi logs each call (and answers `version` with the pinned one), and an installed venv."""
    log = tmp_path / "pulumi.log"
    pulumi = f'[ "$1" = version ] && {{ echo v{pinned_pulumi()}; exit 0; }}; echo "$*" >> {log}'
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / ".installed").touch()
    return bare_path(tmp_path, {"pulumi": pulumi, "kubelogin": "", "az": ""}), log


def test_make_preview_selects_or_creates_the_stack_before_previewing(tmp_path: Path):
    path, log = stub_clis(tmp_path)
    rc, output, _ = run_make(tmp_path, path, "preview", "STACK=dev", env={"PULUMI_CONFIG_PASSPHRASE": "p"})
    assert rc == 0, output
    assert log.read_text().splitlines() == ["login file://~", "stack select --create dev", "preview --stack dev --diff"]


def test_make_preview_without_a_passphrase_says_to_set_one_and_calls_no_pulumi(tmp_path: Path):
    path, log = stub_clis(tmp_path)
    rc, output, _ = run_make(tmp_path, path, "preview", "STACK=dev")
    assert (rc != 0, "set PULUMI_CONFIG_PASSPHRASE" in output, log.exists()) == (True, True, False), output


def test_the_pulumi_cli_version_is_the_pinned_sdk_version():
    result = subprocess.run(
        [MAKE, "--no-print-directory", "-pn", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert f"PULUMI_VERSION := {pinned_pulumi()}" in result.stdout.splitlines()


@pytest.mark.parametrize("target", ["up", "preview", "destroy"])
def test_the_first_run_names_every_missing_tool_and_the_passphrase_before_any_venv(tmp_path: Path, target: str):
    rc, output, seconds = run_make(tmp_path, bare_path(tmp_path), target, "STACK=dev")
    named = [line.split(" needs ")[1].split(",")[0] for line in output.splitlines() if " needs " in line]
    assert named == ["az", "pulumi", "kubelogin", "the stack's passphrase"], output
    assert (rc != 0, seconds < FAST_SECONDS, (tmp_path / "venv").exists()) == (True, True, False), output
    assert "export PULUMI_CONFIG_PASSPHRASE='choose one'" in output, output


def test_with_only_az_missing_the_run_names_az_alone(tmp_path: Path):
    path = bare_path(tmp_path, {"pulumi": f"echo v{pinned_pulumi()}", "kubelogin": ""})
    rc, output, _ = run_make(tmp_path, path, "up", "STACK=dev", env={"PULUMI_CONFIG_PASSPHRASE": "p"})
    assert (rc != 0, [line for line in output.splitlines() if " needs " in line]) == (
        True,
        [f"make up needs az, which is not on PATH; install it with: {az_install_command()}"],
    ), output


def az_install_command() -> str:
    return subprocess.run(
        ["bash", "tools/cloud-tools.sh", "--install-command", "az"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.mark.parametrize(
    "passphrase", [{"PULUMI_CONFIG_PASSPHRASE": "p"}, {"PULUMI_CONFIG_PASSPHRASE_FILE": "/dev/null"}]
)
def test_a_passphrase_or_its_file_is_enough(tmp_path: Path, passphrase: dict[str, str]):
    path, log = stub_clis(tmp_path)
    rc, output, _ = run_make(tmp_path, path, "preview", "STACK=dev", env=passphrase)
    assert (rc, "needs the stack's passphrase" in output, log.read_text().splitlines()[-1]) == (
        0,
        False,
        "preview --stack dev --diff",
    ), output


def test_an_empty_passphrase_counts_as_missing(tmp_path: Path):
    path, log = stub_clis(tmp_path)
    rc, output, _ = run_make(tmp_path, path, "preview", "STACK=dev", env={"PULUMI_CONFIG_PASSPHRASE": ""})
    assert (rc != 0, "needs the stack's passphrase" in output, log.exists()) == (True, True, False), output


def dry_run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`make -n`: what a target would run, with the variables as given; nothing runs."""
    return subprocess.run(
        [MAKE, "--no-print-directory", "-n", *args, "VENV=.venv"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **(env or {})},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "config", "out"),
    [
        (("STACK=prod",), "Pulumi.prod.yaml", "render/prod"),
        (("CONFIG=Pulumi.prod.yaml",), "Pulumi.prod.yaml", "render/prod"),
        (("STACK=prod", "CONFIG=Pulumi.prod.yaml"), "Pulumi.prod.yaml", "render/prod"),
        ((), "Pulumi.dev.yaml", "render/dev"),
        (("STACK=team-a",), "Pulumi.team-a.yaml", "render/team-a"),
        (("STACK=prod", "OUT=elsewhere"), "Pulumi.prod.yaml", "elsewhere"),
    ],
)
def test_make_render_renders_the_stack_named_by_stack_or_config(args: tuple[str, ...], config: str, out: str):
    result = dry_run("render", *args)
    assert result.returncode == 0, result.stderr
    assert f'-m tools.render --config "{config}" --out "{out}"' in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("STACK=prod",), {"CONFIG": "Pulumi.dev.yaml"}),
        (("CONFIG=Pulumi.prod.yaml",), {"STACK": "dev"}),
    ],
)
def test_the_command_line_wins_over_the_environment(args: tuple[str, ...], env: dict[str, str]):
    result = dry_run("render", *args, env=env)
    assert '--config "Pulumi.prod.yaml" --out "render/prod"' in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("STACK=prod", "CONFIG=Pulumi.dev.yaml"), "STACK=prod and CONFIG=Pulumi.dev.yaml name different stacks"),
        (("STACK=prod", "CONFIG=Pulumi.Prod.yaml"), "STACK=prod and CONFIG=Pulumi.Prod.yaml name different stacks"),
        (("CONFIG=prod.yaml",), "CONFIG=prod.yaml is not a stack file; name it Pulumi.<stack>.yaml"),
        (("CONFIG=Pulumi.prod.yml",), "CONFIG=Pulumi.prod.yml is not a stack file"),
    ],
)
def test_a_stack_and_config_that_disagree_are_refused(args: tuple[str, ...], says: str):
    result = dry_run("render", *args)
    assert (result.returncode != 0, says in result.stderr, "tools.render" in result.stdout) == (True, True, False), (
        result.stderr
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("preflight", '-m tools.preflight --stack "prod"'),
        ("verify", '--config "Pulumi.prod.yaml"'),
        ("loadtest", '--config "Pulumi.prod.yaml"'),
        ("diff", '--stack "prod"'),
    ],
)
def test_every_stack_target_follows_config_as_well_as_stack(target: str, expected: str):
    extra = ("URL=http://127.0.0.1:1", "API_KEY_FILE=k", "BASE=HEAD")
    for given in ("STACK=prod", "CONFIG=Pulumi.prod.yaml"):
        result = dry_run(target, given, *extra)
        assert expected in result.stdout, (given, result.stdout + result.stderr)


def test_doctor_uses_the_stacks_kubeconfig_unless_one_is_given_on_the_command_line():
    from_shell = dry_run("doctor", "STACK=prod", env={"KUBECONFIG": "/elsewhere/config"})
    given = dry_run("doctor", "STACK=prod", "KUBECONFIG=/given/config")
    assert from_shell.stdout.rstrip().endswith('--stack "prod"'), from_shell.stdout
    assert "/elsewhere" not in from_shell.stdout
    assert given.stdout.rstrip().endswith('--stack "prod" --kubeconfig "/given/config"'), given.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("STACK=prod",), '-m tools.logs --stack "prod"  --tail "100"'),
        (("STACK=prod", "TAIL=-1", "CONTAINER=fetch-model"), '--tail "-1" --container "fetch-model"'),
        (("FOLLOW=1",), '--tail "100"  --follow'),
        (("FOLLOW=0",), '--tail "100"  \n'),
    ],
)
def test_make_logs_passes_its_switches(args: tuple[str, ...], expected: str):
    result = dry_run("logs", *args)
    assert expected in result.stdout + "\n", result.stdout + result.stderr


def test_make_outputs_and_port_forward_take_the_stack():
    outputs = dry_run("outputs", "STACK=prod", "FROM=azure").stdout
    forward = dry_run("port-forward", "STACK=prod", "PORT=9000").stdout
    assert '-m tools.outputs --stack "prod" --from "azure"' in outputs, outputs
    assert '-m tools.outputs --stack "prod" --port-forward "9000"' in forward, forward


def test_make_destroy_lists_what_stays_after_pulumi_destroy():
    lines = dry_run("destroy", "STACK=prod").stdout.splitlines()
    destroyed = lines.index('pulumi destroy --stack "prod"')
    assert lines[destroyed + 1].endswith('-m tools.destroy --stack "prod"'), lines


def test_make_rotate_key_runs_the_tool_for_the_stack():
    plain = dry_run("rotate-key", "STACK=prod").stdout
    dry = dry_run("rotate-key", "STACK=prod", "DRY_RUN=1").stdout
    assert plain.rstrip().endswith('-m tools.rotate_key --stack "prod"'), plain
    assert dry.rstrip().endswith('-m tools.rotate_key --stack "prod" --dry-run'), dry


def test_make_llamacpp_upgrade_needs_a_release_and_passes_its_switches():
    missing = dry_run("llamacpp-upgrade", "STACK=prod")
    given = dry_run(
        "llamacpp-upgrade", "STACK=prod", "RELEASE=b11500", "INDEX_URL=http://127.0.0.1:1/simple", "NO_BUILD=1"
    )
    assert "make llamacpp-upgrade needs RELEASE=" in missing.stdout
    assert (
        '-m tools.llamacpp_upgrade --stack "prod" --release "b11500" --index-url "http://127.0.0.1:1/simple" --no-build'
        in given.stdout
    ), given.stdout

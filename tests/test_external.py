"""Third-party checkers on what the stacks render and on the repo's own files.

checkov (Kubernetes and ARM, offline), Azure's API models (azure-mgmt-*, tools/conformance.py),
kubernetes-validate (the stack's Kubernetes version), hadolint, shellcheck, actionlint and zizmor. A failure names the stack, the file and the check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from core.loading import load_config, split_pulumi_config
from tests.conftest import RENDERED_STACK_FILES, ROOT
from tools.conformance import check_template
from tools.render import stack_config

pytestmark = pytest.mark.external

BIN = Path(sys.executable).parent
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"
# Custom resources whose schema kubernetes-validate does not ship, and why that is acceptable.
NO_SCHEMA = {
    (
        "azmonitoring.coreos.com/v1",
        "PodMonitor",
    ): "Azure managed Prometheus CRD; kubernetes-validate ships core schemas only",
    (
        "keda.sh/v1alpha1",
        "ScaledObject",
    ): "KEDA CRD; its schema is on no package registry, so it cannot be checked offline",
    (
        "keda.sh/v1alpha1",
        "TriggerAuthentication",
    ): "KEDA CRD; its schema is on no package registry, so it cannot be checked offline",
    ("gateway.networking.k8s.io/v1", "Gateway"): "Gateway API CRD; kubernetes-validate ships core schemas only",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "Gateway API CRD; kubernetes-validate ships core schemas only",
    ("cert-manager.io/v1", "ClusterIssuer"): "cert-manager CRD; kubernetes-validate ships core schemas only",
    ("cert-manager.io/v1", "Certificate"): "cert-manager CRD; kubernetes-validate ships core schemas only",
    (
        "alb.networking.azure.io/v1",
        "HealthCheckPolicy",
    ): "Application Gateway for Containers CRD; its schema is on no package registry",
    (
        "alb.networking.azure.io/v1",
        "WebApplicationFirewallPolicy",
    ): "Application Gateway for Containers CRD; its schema is on no package registry",
}
SHELL_SCRIPTS = sorted(
    [
        *ROOT.glob("image/*.sh"),
        *ROOT.glob("image/runner/*.sh"),
        *ROOT.glob("tests/*.sh"),
        *ROOT.glob("tools/*.sh"),
        ROOT / ".ci" / "run",
        ROOT / "tools" / "ci" / "bin" / "az",
    ]
)


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is not installed in the test venv (make venv)"
    return str(path)


@pytest.mark.parametrize("framework", ["kubernetes", "arm"])
@pytest.mark.parametrize("stack_file", RENDERED_STACK_FILES, ids=lambda p: p.name)
def test_checkov_finds_no_failed_check(rendered, stack_file, framework):
    stack = stack_file.name.split(".")[1]
    target = rendered[stack] / ("kubernetes" if framework == "kubernetes" else "azure")
    assert CHECKOV.exists(), "checkov is not installed (make venv)"
    result = subprocess.run(
        [str(CHECKOV), "--skip-download", "--quiet", "--framework", framework, "-d", str(target), "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{stack}: {c['file_path']}: {c['check_id']} {c['check_name']} ({c['resource']})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 10, f"{stack}: checkov ran only {passed} checks on {target}"
    for r in reports:
        for c in r.get("results", {}).get("skipped_checks", []):
            comment = (c.get("check_result") or {}).get("suppress_comment", "")
            assert len(comment) > 20, f"{stack}: {c['check_id']} is skipped without a reason"


@pytest.mark.parametrize("stack_file", RENDERED_STACK_FILES, ids=lambda p: p.name)
def test_azure_template_conforms_to_azures_api_models(rendered, stack_file):
    stack = stack_file.name.split(".")[1]
    problems, _ = check_template(json.loads((rendered[stack] / "azure" / "template.json").read_text()))
    assert not problems, "\n".join(f"{stack}: {p}" for p in problems)


@pytest.mark.parametrize("stack_file", RENDERED_STACK_FILES, ids=lambda p: p.name)
def test_manifests_validate_against_the_stacks_kubernetes_version(rendered, stack_file):
    stack, flat = stack_config(stack_file)
    config, _ = load_config(split_pulumi_config(flat)[0], stack)
    version = config.cluster.kubernetes_version
    version = version if version.count(".") == 2 else f"{version}.0"
    errors = []
    for file in sorted((rendered[stack] / "kubernetes").glob("*.yaml")):
        obj = yaml.safe_load(file.read_text())
        if (obj["apiVersion"], obj["kind"]) in NO_SCHEMA:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{stack}: {file.name}: {err.message} at {'/'.join(map(str, err.path))}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("dockerfile", ["image/Dockerfile", "image/loadtest/Dockerfile", "image/runner/Dockerfile"])
def test_hadolint_finds_nothing_in_the_dockerfile(dockerfile):
    result = subprocess.run([tool("hadolint"), str(ROOT / dockerfile)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{dockerfile}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shellcheck_finds_nothing(script):
    result = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{script.relative_to(ROOT)}: {result.stdout}"


def test_actionlint_finds_nothing_in_the_workflows():
    result = subprocess.run([tool("actionlint")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing_in_the_workflows():
    result = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "plain", str(ROOT / ".github" / "workflows")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings" in result.stdout

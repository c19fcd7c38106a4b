"""The offline render: what `make render` writes for each stack, and how it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.loading import load_config, split_pulumi_config
from core.skips import AZURE_SKIPS, skips_for
from tests.conftest import RENDERED_STACK_FILES, ROOT, STACK_FILES
from tools.mocks import ARM_TYPES
from tools.render import stack_config

ACR = "azure-native:containerregistry:Registry"
AKS = "azure-native:containerservice:ManagedCluster"
ARM_FIELDS = {"type", "apiVersion", "name", "properties"}  # location only where the API has one


def test_every_stack_in_the_repo_renders(rendered):
    assert {p.name.split(".")[1] for p in STACK_FILES} >= {"dev", "prod"}
    assert set(rendered) == {p.name.split(".")[1] for p in RENDERED_STACK_FILES}


def test_helm_releases_render_as_chart_version_and_values(rendered):
    """The public endpoint's charts show in the render with their pinned versions; stacks
    without the endpoint install no chart."""
    releases = {f.stem: yaml.safe_load(f.read_text()) for f in sorted((rendered["public"] / "helm").glob("*.yaml"))}
    assert set(releases) == {"alb-controller", "cert-manager"}
    assert releases["alb-controller"]["chart"].startswith("oci://mcr.microsoft.com/")
    assert releases["cert-manager"]["values"]["config"]["gatewayAPI"] == {"enabled": True}
    assert all(r["version"] for r in releases.values())
    for stack in ("dev", "prod"):
        assert not list((rendered[stack] / "helm").glob("*.yaml")), stack


def test_manifests_are_applyable_objects(rendered):
    for stack, out in rendered.items():
        files = sorted((out / "kubernetes").glob("*.yaml"))
        kinds = set()
        for file in files:
            obj = yaml.safe_load(file.read_text())
            assert {"apiVersion", "kind", "metadata"} <= obj.keys(), file
            assert obj["metadata"]["name"], file
            kinds.add(obj["kind"])
        assert {
            "Namespace",
            "Secret",
            "PersistentVolumeClaim",
            "DaemonSet",
            "Deployment",
            "Service",
            "NetworkPolicy",
        } <= kinds, stack


def test_namespaces_come_before_the_objects_in_them(rendered):
    names = [f.name for f in sorted((rendered["dev"] / "kubernetes").glob("*.yaml"))]
    assert names[0].startswith("00-namespace-") and names[1].startswith("01-namespace-")


def test_azure_template_is_an_arm_deployment_template(rendered):
    for stack, out in rendered.items():
        template = json.loads((out / "azure" / "template.json").read_text())
        assert template["$schema"].endswith("deploymentTemplate.json#")
        types = {r["type"] for r in template["resources"]}
        assert {
            "Microsoft.Resources/resourceGroups",
            "Microsoft.ContainerService/managedClusters",
            "Microsoft.ContainerService/managedClusters/agentPools",
            "Microsoft.ContainerRegistry/registries",
            "Microsoft.Authorization/roleAssignments",
        } <= types, stack
        for resource in template["resources"]:
            assert resource.keys() >= ARM_FIELDS, resource["type"]
            assert resource["apiVersion"][:4].isdigit()


def test_cluster_api_version_is_the_pinned_sdk_default(rendered):
    template = json.loads((rendered["prod"] / "azure" / "template.json").read_text())
    cluster = next(r for r in template["resources"] if r["type"] == "Microsoft.ContainerService/managedClusters")
    assert cluster["apiVersion"] == "2025-09-01"
    assert cluster["properties"]["agentPoolProfiles"][0]["mode"] == "System"


def test_checkov_skips_travel_with_their_reason(rendered):
    template = json.loads((rendered["dev"] / "azure" / "template.json").read_text())
    registry = next(r for r in template["resources"] if r["type"] == "Microsoft.ContainerRegistry/registries")
    skips = registry["metadata"]["checkov"]
    assert any(s.startswith("checkov:skip=CKV_AZURE_166: quarantine") for s in skips)


def test_every_type_with_skips_reaches_the_arm_template():
    assert set(AZURE_SKIPS) <= set(ARM_TYPES)


@pytest.mark.parametrize(
    ("resource_type", "inputs", "checks"),
    [
        (ACR, {"zoneRedundancy": "Disabled", "publicNetworkAccess": "Enabled"}, {"166", "233", "139"}),
        (ACR, {"zoneRedundancy": "Enabled", "publicNetworkAccess": "Disabled"}, {"166"}),
        (AKS, {"apiServerAccessProfile": {"authorizedIPRanges": [], "enablePrivateCluster": False}}, {"172", "6"}),
        (AKS, {"apiServerAccessProfile": {"authorizedIPRanges": ["203.0.113.0/24"]}}, {"172"}),
        (AKS, {"apiServerAccessProfile": {"authorizedIPRanges": [], "enablePrivateCluster": True}}, {"172"}),
    ],
)
def test_a_conditional_skip_is_written_only_for_a_resource_that_fails_its_check(resource_type, inputs, checks):
    assert set(skips_for(resource_type, inputs)) == {f"CKV_AZURE_{c}" for c in checks}


def test_the_skips_table_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        AZURE_SKIPS[ACR] = ()  # type: ignore[index]


def test_secrets_are_redacted(rendered):
    for out in rendered.values():
        text = "".join(f.read_text() for f in (out / "kubernetes").glob("*secret*.yaml"))
        assert "render-placeholder-api-key" not in text
        assert "<redacted secret>" in text


def test_summary_has_the_sizing_tables(rendered):
    text = (rendered["dev"] / "summary.md").read_text()
    assert "| **Total estimate** | **8.52 GB** | of 24 GB on Standard_NV36ads_A10_v5 |" in text
    assert "| Per slot | 4096 |" in text
    assert "| Worst-case request | 4074 |" in text
    assert "| Update strategy | Recreate |" in text


def run_render(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.render", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_invalid_config_exits_1_with_the_messages_only(tmp_path: Path):
    bad = tmp_path / "Pulumi.broken.yaml"
    bad.write_text("config:\n  llamacpp-aks:server:\n    parallel: 12\n    ubatchSize: 4096\n")
    result = run_render("--config", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"{bad}: invalid stack config:"
    assert lines[1].startswith("- server.ubatchSize=4096 is larger than server.batchSize=2048")
    assert lines[2].startswith("- server.parallel=12 with server.contextSize=32768 gives 2816 tokens per slot")
    assert not (tmp_path / "out").exists()


def test_make_render_defaults_to_the_dev_stack(tmp_path: Path):
    result = subprocess.run(
        ["make", "-s", "render", f"OUT={tmp_path}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "rendered Pulumi.dev.yaml" in result.stdout
    assert (tmp_path / "summary.md").read_text().startswith("# Sizing of stack `dev`")


def test_render_prints_each_preview_warning_once(tmp_path: Path):
    public = ROOT / "tests" / "fixtures" / "Pulumi.public.yaml"
    result = run_render("--config", str(public), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    _, expected = load_config(split_pulumi_config(stack_config(public)[1])[0], "public")
    assert expected, "the public test stack is expected to have a preview warning"
    printed = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert printed == [f"warning: {w}" for w in expected]


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_shipped_stacks_render_without_warnings(path: Path):
    """A deliberate choice is stated in the stack's `accepted` config, so a warning always means something.
    The one exception: the shipped prod stack is an example to copy, and its example values (which
    preview and up refuse) show as warnings in the offline render."""
    name, flat = stack_config(path)
    _, warnings = load_config(split_pulumi_config(flat)[0], name)
    assert [w for w in warnings if "is an example value of the shipped" not in w] == []

"""The in-cluster load test (tools/loadtest_job.py): a ConfigMap and a Job that validate against the
stack's Kubernetes version, run the tool from the ConfigMap alone, and load what the config says."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from core import labels
from core.loading import load_config, split_pulumi_config
from specs import autoscaling, serving
from specs.k8s import dns_egress, restricted_container_security, restricted_pod_security
from tests.conftest import ROOT, STACK_FILES
from tools import loadtest, loadtest_job
from tools.render import stack_config

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"


# A reference of the form `make loadtest-image` prints.
IMAGE = "llamacpp.azurecr.io/llamacpp-loadtest@sha256:" + "ab" * 32


def manifests(stack_file: Path) -> list[dict]:
    return list(yaml.safe_load_all(loadtest_job.job_manifests(stack_file, IMAGE, 60, None)))


def job_of(docs: list[dict]) -> dict:
    (job,) = [d for d in docs if d["kind"] == "Job"]
    return job


@pytest.mark.external
@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_job_and_config_map_validate_against_the_stacks_kubernetes_version(stack_file):
    stack, flat = stack_config(stack_file)
    version = load_config(split_pulumi_config(flat)[0], stack)[0].cluster.kubernetes_version
    for doc in manifests(stack_file):
        kubernetes_validate.validate(doc, f"{version}.0", strict=True)


@pytest.mark.external
def test_checkov_finds_no_failed_check_in_the_job(tmp_path):
    (tmp_path / "loadtest.yaml").write_text(loadtest_job.job_manifests(STACK_FILES[0], IMAGE, 60, None))
    result = subprocess.run(
        [str(CHECKOV), "--skip-download", "--quiet", "--framework", "kubernetes", "-d", str(tmp_path), "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["check_name"]) for c in report["results"]["failed_checks"]]
    assert failed == []


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_job_loads_the_plan_of_the_stack_config(stack_file):
    env = {
        e["name"]: e["value"] for e in job_of(manifests(stack_file))["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert loadtest.Plan(**json.loads(env["PLAN"])) == loadtest.plan_from_config(stack_file)


def test_the_config_maps_files_are_all_the_tool_imports(tmp_path):
    """Laid out as the Job mounts them, with nothing else on the path, the tool starts."""
    (config_map,) = [d for d in manifests(STACK_FILES[0]) if d["kind"] == "ConfigMap"]
    job = job_of(manifests(STACK_FILES[0]))
    for item in job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["items"]:
        target = tmp_path / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(config_map["data"][item["key"]])
    result = subprocess.run(
        [sys.executable, "-I", "-c", "import sys; sys.path.insert(0, '.'); import tools.loadtest"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def camel(value: object) -> object:
    """Pulumi SDK dict keys (run_as_non_root) as manifest keys (runAsNonRoot)."""
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda g: g.group(1).upper(), k): camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def test_the_job_runs_under_the_security_contexts_the_serving_pods_use():
    pod = job_of(manifests(STACK_FILES[0]))["spec"]["template"]["spec"]
    assert pod["securityContext"] == camel(restricted_pod_security(loadtest_job.UID, fs_group=True))
    assert pod["containers"][0]["securityContext"] == camel(restricted_container_security())


def test_the_jobs_dns_egress_is_the_serving_pods():
    assert camel(dns_egress()) == loadtest_job.DNS_EGRESS


def test_the_job_mounts_the_key_with_the_servers_file_mode():
    assert loadtest_job.SECRET_FILE_MODE == serving.SECRET_FILE_MODE


def test_the_job_runs_its_image_by_digest_and_installs_nothing():
    (container,) = job_of(manifests(STACK_FILES[0]))["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGE
    script = " ".join(container["command"])
    assert "pip" not in script and "venv" not in script.replace("/opt/aiperf/venv", "")
    assert f"--tokenizer {loadtest_job.TOKENIZER_DIR}" in script


@pytest.mark.parametrize(
    "image", ["python:3.11-slim", "llamacpp.azurecr.io/llamacpp-loadtest:aiperf-1", "x@sha256:" + "0" * 64 + ";sh"]
)
def test_an_image_not_given_by_digest_is_refused(image):
    with pytest.raises(SystemExit, match="is not a reference by digest"):
        loadtest_job.job_manifests(STACK_FILES[0], image, 60, None)


@pytest.mark.parametrize("stack_file", STACK_FILES, ids=lambda p: p.name)
def test_the_jobs_only_egress_is_dns_the_servers_port_and_with_scale_to_zero_the_fronts(stack_file):
    (policy,) = [d for d in manifests(stack_file) if d["kind"] == "NetworkPolicy"]
    egress = policy["spec"]["egress"]
    assert egress[0] == loadtest_job.DNS_EGRESS
    assert egress[1]["to"] and all(p["port"] != 443 for p in egress[1]["ports"])
    assert all(rule.get("to") for rule in egress), "an egress rule without peers allows every address"
    stack, flat = stack_config(stack_file)
    config, _ = load_config(split_pulumi_config(flat)[0], stack)
    if not config.autoscaling.scales_from_zero:  # prod keeps replicas: its Service selects the server
        assert len(egress) == 2
        return
    # dev scales to zero: its Service selects the standby front, which the load goes through.
    (front,) = egress[2:]
    (envoy,) = autoscaling.front_deployment_spec("img", "cm", {}, {}, {})["template"]["spec"]["containers"]
    (api_port,) = [p for p in envoy["ports"] if p["container_port"] == autoscaling.FRONT_PORT]
    assert front["ports"] == [{"port": api_port["name"], "protocol": "TCP"}]
    assert front["to"] == [{"podSelector": {"matchLabels": labels.selector(stack, "front")}}]

"""`make preflight` against a stand-in `az` that replays JSON in the Azure CLI's output shape
(tests/fixtures/az: `ok/` passes; each test breaks one answer), and the time-to-first-token table."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.config import Ingress, StackConfig
from core.first_token import (
    Step,
    bump,
    critical_path,
    first_deploy,
    summary_lines,
    timeline_markdown,
    timelines,
    total_s,
    verdict,
)
from core.loading import load_config, split_pulumi_config
from core.summary import summary_markdown
from tests.conftest import ROOT
from tools import preflight
from tools.render import stack_config

FIXTURES = ROOT / "tests" / "fixtures" / "az"
TOOLS = ("az", "pulumi", "kubelogin", "docker")
INSIDE_PROD_RANGE = "203.0.113.9"  # Pulumi.prod.yaml allows 203.0.113.0/24


@pytest.fixture
def answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the passing answers for this test to break, with the stand-in az first on PATH."""
    target = tmp_path / "az"
    shutil.copytree(FIXTURES / "ok", target)
    monkeypatch.setenv("FAKE_AZ_DIR", str(target))
    # The stand-in az runs on this interpreter (its venv's bin has python3), and nothing else is found.
    monkeypatch.setenv("PATH", f"{FIXTURES / 'bin'}:{Path(sys.executable).parent}")
    return target


def edit(answers: Path, name: str, change: Callable[[Any], Any]) -> None:
    path = answers / f"{name}.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def config_of(stack: str, **cluster: Any) -> StackConfig:
    name, flat = stack_config(ROOT / f"Pulumi.{stack}.yaml")
    raw = split_pulumi_config(flat)[0]
    raw["cluster"] = raw.get("cluster", {}) | cluster
    return load_config(raw, name)[0]


def has(tools: tuple[str, ...] = TOOLS) -> Callable[[str], str | None]:
    return lambda name: f"/bin/{name}" if name in tools else None


def run(config: StackConfig, ip: str = INSIDE_PROD_RANGE, tools: tuple[str, ...] = TOOLS) -> list[str]:
    return preflight.preflight(config, preflight.run_az, lambda: ip, has(tools))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_ready_subscription_and_machine_pass(answers, stack):
    assert run(config_of(stack)) == []


def test_asks_az_about_the_stacks_region_and_gpu_size(answers):
    run(config_of("prod"))
    calls = (answers / "calls.log").read_text()
    assert "vm list-usage --location eastus" in calls
    assert "vm list-skus --location eastus --size Standard_NV36ads_A10_v5" in calls


def test_not_logged_in_is_one_problem_saying_az_login(answers):
    (answers / "account-show.json").unlink()
    (problem,) = run(config_of("dev"))
    assert "run: az login" in problem


def test_an_unregistered_provider_is_named_with_its_register_command(answers):
    edit(answers, "provider-list", lambda ps: [p for p in ps if p["namespace"] != "Microsoft.ContainerService"])
    (problem,) = run(config_of("dev"))
    assert "Microsoft.ContainerService is not registered" in problem
    assert "az provider register --namespace Microsoft.ContainerService" in problem


def test_grafana_stacks_need_the_dashboard_provider(answers):
    edit(answers, "provider-list", lambda ps: [p for p in ps if p["namespace"] != "Microsoft.Dashboard"])
    (problem,) = run(config_of("prod"))
    assert "Microsoft.Dashboard" in problem


def test_encryption_at_host_needs_its_feature_registered(answers):
    edit(answers, "feature-show", lambda f: f | {"properties": {"state": "NotRegistered"}})
    (problem,) = run(config_of("dev"))
    assert "Microsoft.Compute/EncryptionAtHost is NotRegistered" in problem
    assert "az feature register --namespace Microsoft.Compute --name EncryptionAtHost" in problem


def test_the_feature_is_not_asked_for_without_encryption_at_host(answers):
    (answers / "feature-show.json").unlink()
    assert run(config_of("dev", encryptionAtHost=False)) == []


def test_too_little_gpu_quota_names_what_the_pool_needs(answers):
    edit(
        answers, "vm-list-usage", lambda us: [u | {"limit": 72} if "NVADSA10" in u["name"]["value"] else u for u in us]
    )
    (problem,) = run(config_of("prod"))
    assert "standardNVADSA10v5Family quota in eastus has 72 vCPUs free" in problem
    assert "gpuPool.maxCount=3 x 36 vCPUs of Standard_NV36ads_A10_v5 needs 108" in problem


def test_spot_pools_are_checked_against_the_low_priority_quota(answers):
    config = config_of(
        "prod", gpuPool={"vmSize": "Standard_NV36ads_A10_v5", "minCount": 2, "maxCount": 3, "spot": True}
    )
    (problem,) = run(config)
    assert problem.startswith("lowPriorityCores quota in eastus has 36 vCPUs free")


def test_a_kubernetes_version_the_region_does_not_offer_is_named_with_the_offered_ones(answers):
    edit(answers, "aks-get-versions", lambda v: {"values": [x for x in v["values"] if x["version"] != "1.36"]})
    (problem,) = run(config_of("dev"))
    assert "cluster.kubernetesVersion=1.36 is not offered in eastus (offered: 1.35, 1.37)" in problem


def test_a_gpu_size_the_region_does_not_offer_is_a_problem(answers):
    edit(answers, "vm-list-skus", lambda skus: [])
    (problem,) = run(config_of("dev"))
    assert "Standard_NV36ads_A10_v5 is not offered in eastus" in problem


def test_a_gpu_size_restricted_in_a_configured_zone_is_a_problem(answers):
    restriction = {"reasonCode": "NotAvailableForSubscription", "restrictionInfo": {"zones": ["2"]}, "type": "Zone"}
    edit(answers, "vm-list-skus", lambda skus: [skus[0] | {"restrictions": [restriction]}])
    (problem,) = run(config_of("prod"))
    assert "restricted in zone(s) 2 of eastus" in problem


def test_a_configured_zone_without_the_gpu_size_is_a_problem(answers):
    edit(answers, "vm-list-skus", lambda skus: [skus[0] | {"locationInfo": [{"location": "eastus", "zones": ["1"]}]}])
    (problem,) = run(config_of("prod"))
    assert "not offered in zone(s) 2, 3 of eastus" in problem


def test_a_build_in_the_registry_needs_no_docker(answers):
    assert config_of("dev").image.builder == "acr"
    assert run(config_of("dev"), tools=tuple(t for t in TOOLS if t != "docker")) == []


@pytest.mark.parametrize("tool", TOOLS)
def test_a_missing_local_tool_is_named_with_how_to_install_it(answers, tool):
    config = config_of("dev")
    if tool == "docker":  # only a local build needs it; the stacks build in the registry
        config = config.model_copy(update={"image": config.image.model_copy(update={"builder": "local"})})
    (problem,) = run(config, tools=tuple(t for t in TOOLS if t != tool))
    assert problem.startswith(f"{tool} is not on PATH;")


def test_without_az_every_missing_tool_is_listed_at_once_with_its_install_command(answers):
    problems = run(config_of("dev"), tools=("docker",))
    assert [p.split(" ", 1)[0] for p in problems] == ["az", "pulumi", "kubelogin"], problems
    assert "https://aka.ms/InstallAzureCLIDeb" in problems[0] and "az login" not in " ".join(problems[1:])
    assert "https://get.pulumi.com | sh -s -- --version" in problems[1]
    assert "az aks install-cli --install-location" in problems[2]


def test_a_missing_login_is_listed_with_the_missing_tools(answers):
    (answers / "account-show.json").unlink()
    problems = run(config_of("dev"), tools=("az",))
    assert [p.split(" ", 1)[0] for p in problems] == ["pulumi", "kubelogin", "the"], problems
    assert "run: az login" in problems[2]


def test_the_install_commands_are_those_the_makefile_prints(tmp_path: Path):
    only_shell = tmp_path / "bin"  # bash and sed, and no pulumi
    only_shell.mkdir()
    for name in ("bash", "sed"):
        (only_shell / name).symlink_to(shutil.which(name) or f"/bin/{name}")
    result = subprocess.run(
        [str(only_shell / "bash"), "tools/cloud-tools.sh", "preview", "pulumi"],
        cwd=ROOT,
        env={"PATH": str(only_shell), "TOOLS_DIR": ".tools"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert preflight.install_command("pulumi") in result.stderr


def test_docker_is_not_needed_for_a_prebuilt_image(answers):
    name, flat = stack_config(ROOT / "Pulumi.dev.yaml")
    raw = split_pulumi_config(flat)[0] | {"image": {"prebuilt": f"example.azurecr.io/llama-server@sha256:{'0' * 64}"}}
    assert run(load_config(raw, name)[0], tools=("az", "pulumi", "kubelogin")) == []


def test_an_address_outside_the_authorized_ranges_is_a_problem_with_the_range_to_add(answers):
    (problem,) = run(config_of("prod"), ip="198.51.100.7")
    assert "198.51.100.7 is outside cluster.authorizedIpRanges (203.0.113.0/24)" in problem
    assert "add 198.51.100.7/32" in problem


def test_a_private_cluster_skips_the_address_check(answers):
    assert run(config_of("prod", privateCluster=True), ip="198.51.100.7") == []


@pytest.fixture
def echo_ip() -> Iterator[str]:
    class Echo(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"198.51.100.7\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_public_address_is_read_from_the_echo_service(echo_ip):
    assert preflight.public_ip(echo_ip) == "198.51.100.7"


def test_command_prints_one_line_per_problem_then_the_time_to_first_token_and_exits_1(
    answers, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    edit(answers, "feature-show", lambda f: f | {"properties": {"state": "NotRegistered"}})
    monkeypatch.setattr(
        preflight.shutil, "which", lambda name, *a, **k: str(FIXTURES / "bin" / "az") if name == "az" else None
    )
    assert preflight.main(["--stack", "prod", "--my-ip", INSIDE_PROD_RANGE]) == 1
    out = capsys.readouterr().out
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 3  # the feature, pulumi, kubelogin (prod builds in the registry: no docker)
    assert "Expected time from `make up` to the first token on prod:" in out
    assert "| scale from zero |" in out


def test_command_exits_0_when_nothing_is_wrong(answers, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(
        preflight.shutil,
        "which",
        lambda name, *a, **k: str(FIXTURES / "bin" / name) if name == "az" else f"/bin/{name}",
    )
    assert preflight.main(["--stack", "prod", "--my-ip", INSIDE_PROD_RANGE]) == 0


def test_critical_path_takes_the_longest_branch_and_counts_a_side_branch_only_past_it():
    steps = [
        Step("cluster", "cluster", 600, 600, "estimate", "x"),
        Step("image", "image", 900, 900, "estimate", "x"),
        Step("node", "node", 60, 60, "estimate", "x", ("cluster", "image")),
    ]
    assert total_s(steps) == (960, 960)
    assert critical_path(steps) == ["image", "node"]
    shorter = [steps[0], Step("image", "image", 300, 300, "estimate", "x"), steps[2]]
    assert total_s(shorter) == (660, 660) and critical_path(shorter) == ["cluster", "node"]


def test_every_first_token_figure_says_how_it_was_found_and_where_it_comes_from():
    for steps in timelines(config_of("dev")).values():
        table = timeline_markdown(config_of("dev"), steps)
        rows = [r for r in table.splitlines()[2:] if "…" not in r and "**" not in r]
        assert rows and all(re.search(r"\| (estimate|measured|bound): \S", r) for r in rows), table


def test_operations_doc_shows_the_dev_time_to_first_token_table():
    assert timeline_markdown(config_of("dev")) in (ROOT / "docs" / "operations.md").read_text()


def test_only_the_control_planes_subnet_role_is_a_fixed_wait_the_deployers_are_polled():
    dev = config_of("dev")
    steps = first_deploy(dev, "acr-release")
    fixed = [s for s in steps if s.how == "bound" and s.low_s == s.high_s]
    assert [s.key for s in fixed] == ["subnet-wait"] and fixed[0].low_s == 600
    polls = {s.key: (s.low_s, s.high_s) for s in steps if s.key.endswith("-poll")}
    # The cluster admin role also waits AKS's authorizer, 5 minutes after ARM says yes.
    assert polls == {"registry-poll": (0, 600), "admin-poll": (300, 900)}
    no_wait = dev.model_copy(update={"cluster": dev.cluster.model_copy(update={"role_propagation_seconds": 0})})
    assert total_s(steps)[0] >= total_s(first_deploy(no_wait, "acr-release"))[0] + 600


def test_a_prebuilt_image_polls_for_no_registry_role():
    assert "registry-poll" not in {s.key for s in first_deploy(config_of("dev"), "prebuilt")}


def test_the_source_build_is_the_step_that_misses_and_the_release_binaries_remove_it():
    dev = config_of("dev")
    source, release = first_deploy(dev, "acr-source"), first_deploy(dev, "acr-release")
    assert "image" in critical_path(source, high=False)
    assert "image" not in critical_path(release, high=False)
    # The compile (55-70 min) leaves the path; the release path is then bound by the cluster's
    # creation and its admin role's 5 minutes for AKS's authorizer.
    assert total_s(source)[0] - total_s(release)[0] > 25 * 60
    (build,) = [s for s in source if s.key == "image"]
    assert (build.low_s, build.high_s) == (55 * 60, 70 * 60)


def test_a_bump_with_release_binaries_meets_its_goal_and_one_with_the_compile_misses_it():
    dev = config_of("dev")
    assert verdict("llama.cpp bump", bump(dev, "acr-release")) == "meets the 20-minute goal"
    assert "CUDA compile from source" in verdict("llama.cpp bump", bump(dev, "acr-source"))
    # A bump keeps the model: no download on its path.
    assert "download" not in {s.key for s in bump(dev, "acr-release")}


def test_first_deploy_with_release_binaries_names_the_subnet_wait_as_what_misses():
    text = verdict("first deploy", first_deploy(config_of("dev"), "acr-release"))
    assert text.startswith("misses the 20-minute goal even at the low figures")
    assert "Network Contributor on the node subnet" in text


def test_verdict_meets_exactly_at_the_goal_and_misses_one_second_past_it():
    at = [Step("a", "only step", 8 * 60, 8 * 60, "estimate", "x")]
    past = [Step("a", "only step", 8 * 60, 8 * 60 + 1, "estimate", "x")]
    assert verdict("scale from zero", at) == "meets the 8-minute goal"
    assert verdict("scale from zero", past) == (
        "misses the 8-minute goal at the high figures: the longest step on its path is only step"
    )


def test_gpu_node_starts_after_the_download_job_when_the_pool_keeps_no_node():
    dev = config_of("dev")
    assert dev.cluster.gpu_pool.min_count == 0
    by_key = {s.key: s for s in first_deploy(dev, "prebuilt")}
    assert by_key["gpu-node"].after == ("kubernetes",)
    kept = dev.model_copy(
        update={
            "cluster": dev.cluster.model_copy(
                update={"gpu_pool": dev.cluster.gpu_pool.model_copy(update={"min_count": 1})}
            )
        }
    )
    by_key = {s.key: s for s in first_deploy(kept, "prebuilt")}
    assert by_key["gpu-node"].after == ("cluster",) and "gpu-node" in by_key["kubernetes"].after
    # The kept node boots beside the cluster admin poll instead of after it.
    assert total_s(first_deploy(kept, "prebuilt"))[1] < total_s(first_deploy(dev, "prebuilt"))[1]


def test_verify_on_start_adds_the_measured_rehash():
    dev = config_of("dev")
    off = dev.model_copy(update={"model": dev.model.model_copy(update={"verify_on_start": False})})
    (verify,) = [s for s in bump(dev, "prebuilt") if s.key == "verify"]
    assert verify.how == "measured" and (verify.low_s, verify.high_s) == (30, 33)
    assert "verify" not in {s.key for s in bump(off, "prebuilt")}


def test_summary_shows_the_three_timelines_beside_the_cost():
    text = summary_markdown(config_of("dev"), "dev")
    cost_at, timing_at = text.index("## Cost at list prices"), text.index("## Time to the first token")
    assert cost_at < timing_at
    section = text[timing_at:].split("\n## ", 1)[0]
    for name in ("| first deploy |", "| llama.cpp bump |", "| scale from zero |"):
        assert name in section
    assert "with image.llamaServerFrom=release" in section


def test_public_endpoint_stacks_need_the_gateways_providers(answers):
    """Application Gateway for Containers lives in Microsoft.ServiceNetworking, unregistered on a new subscription."""
    public = config_of("dev").model_copy(
        update={"ingress": Ingress(enabled=True, hostname="llm.example.com", acmeEmail="ops@example.com")}
    )
    service_networking, network_function = run(public)
    assert "Microsoft.ServiceNetworking is not registered" in service_networking
    assert "az provider register --namespace Microsoft.ServiceNetworking" in service_networking
    assert "az provider register --namespace Microsoft.NetworkFunction" in network_function
    assert run(config_of("dev")) == []


def test_operations_doc_shows_the_dev_goals_table():
    assert "\n".join(summary_lines(config_of("dev"))) in (ROOT / "docs" / "operations.md").read_text()

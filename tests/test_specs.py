"""The spec builders, called directly: no mocks, no engine, milliseconds each."""

from __future__ import annotations

import pytest

from core import labels
from core.catalog import GPU_VM_SIZES
from core.config import Autoscaling, Cluster, GpuPool, ModelFiles, Registry, Server, Service, StackConfig
from specs import autoscaling, cluster, gpu, observability, serving
from specs.k8s import DCGM_UID, SERVER_UID, gpu_tolerations, pod_monitor_spec, restricted_container_security

SELECT = labels.selector("dev", "server")
POD = serving.PodInputs(image="img@sha256:" + "0" * 64, server_name="srv", service_account="sa", api_key_secret="key")


def test_restricted_security_context_drops_everything_and_runs_as_the_given_user():
    sc = restricted_container_security(SERVER_UID)
    assert sc["run_as_non_root"] is True and (sc["run_as_user"], sc["run_as_group"]) == (SERVER_UID, SERVER_UID)
    assert sc["allow_privilege_escalation"] is False and sc["privileged"] is False
    assert sc["read_only_root_filesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccomp_profile"] == {"type": "RuntimeDefault"}
    assert "run_as_user" not in restricted_container_security()


def test_gpu_tolerations_cover_the_pool_spot_and_nvidia_taints():
    keys = [(t["key"], t.get("value")) for t in gpu_tolerations()]
    assert keys == [("sku", "gpu"), ("kubernetes.azure.com/scalesetpriority", "spot"), ("nvidia.com/gpu", None)]


def test_one_replica_recreates_and_several_roll_without_surge():
    assert serving.update_strategy(1) == {"type": "Recreate"}
    assert serving.update_strategy(3) == {
        "type": "RollingUpdate",
        "rolling_update": {"max_surge": 0, "max_unavailable": 1},
    }


@pytest.mark.parametrize("timeout", [30, 95, 900, 3600])
def test_startup_probe_budget_covers_the_configured_load_time(timeout):
    startup = serving.probes(timeout).startup
    assert startup["period_seconds"] * startup["failure_threshold"] >= timeout


def test_fetch_containers_download_model_then_projector_with_their_digests():
    model = ModelFiles()
    first, second = serving.fetch_containers(model, "img", hf_token=False)
    assert (first["name"], second["name"]) == ("fetch-model", "fetch-mmproj")
    assert first["args"] == [model.url(model.file), f"/models/{model.file}", model.sha256]
    assert second["args"] == [model.url(model.mmproj_file), f"/models/{model.mmproj_file}", model.mmproj_sha256]
    assert first["env"] == []


def test_fetch_container_reads_the_token_from_a_file_when_there_is_one():
    (first, _) = serving.fetch_containers(ModelFiles(), "img", hf_token=True)
    assert first["env"] == [{"name": "HF_TOKEN_FILE", "value": "/var/run/secrets/huggingface/token"}]
    assert {"name": "hf-token", "mount_path": "/var/run/secrets/huggingface", "read_only": True} in first[
        "volume_mounts"
    ]


def test_server_container_asks_for_one_gpu_and_drains_within_the_grace_period():
    c = serving.server_container(Server(terminationGraceSeconds=60), "img", serving.server_paths(ModelFiles()))
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "1" == c["resources"]["limits"]["nvidia.com/gpu"]
    command = c["lifecycle"]["pre_stop"]["exec_"]["command"]
    assert command[0] == "/usr/local/bin/drain.sh"
    assert int(command[-1]) + serving.DRAIN_SETTLE_SECONDS == 60


def test_pod_spreads_only_when_there_are_several_replicas():
    assert serving.pod_spec(Server(), ModelFiles(), POD, SELECT, 1)["topology_spread_constraints"] == []
    spread = serving.pod_spec(Server(), ModelFiles(), POD, SELECT, 2)["topology_spread_constraints"]
    assert [(s["topology_key"], s["when_unsatisfiable"]) for s in spread] == [
        ("kubernetes.io/hostname", "DoNotSchedule"),
        ("topology.kubernetes.io/zone", "ScheduleAnyway"),
    ]


def test_pod_mounts_the_token_secret_only_when_configured():
    assert [v["name"] for v in serving.volumes(POD)] == ["models", "api-key", "tmp"]
    with_token = serving.PodInputs(**{**POD.__dict__, "hf_token_secret": "tok"})
    assert [v["name"] for v in serving.volumes(with_token)][-1] == "hf-token"


def test_internal_load_balancer_service_is_annotated():
    internal = Service(type="InternalLoadBalancer")
    assert serving.service_spec(internal, SELECT)["type"] == "LoadBalancer"
    assert serving.service_annotations(internal) == serving.INTERNAL_LB_ANNOTATION
    assert serving.service_annotations(Service()) == {}


def test_network_policy_admits_allowed_namespaces_ranges_and_the_scraper():
    policy = serving.network_policy_spec(
        Server(), Service(allowedNamespaces=["apps"], allowedCidrs=["10.1.0.0/16"]), SELECT
    )
    peers = policy["ingress"][0]["from_"]
    names = [
        p["namespace_selector"]["match_labels"]["kubernetes.io/metadata.name"]
        for p in peers
        if "namespace_selector" in p
    ]
    assert names == ["apps", "kube-system"]
    assert {"ip_block": {"cidr": "10.1.0.0/16"}} in peers


def test_pod_monitor_sends_a_bearer_token_only_when_given_one():
    plain = pod_monitor_spec(SELECT, "metrics")["podMetricsEndpoints"][0]
    assert "authorization" not in plain
    guarded = pod_monitor_spec(SELECT, "http", ("secret", "key"))["podMetricsEndpoints"][0]
    assert guarded["authorization"]["credentials"] == {"name": "secret", "key": "key"}


def test_system_pool_is_tainted_for_critical_addons_only():
    pool = cluster.system_pool(Cluster())
    assert pool["mode"] == "System" and pool["node_taints"] == ["CriticalAddonsOnly=true:NoSchedule"]


def test_gpu_pool_is_tainted_labelled_and_spot_only_when_asked():
    vm = GPU_VM_SIZES["Standard_NV36ads_A10_v5"]
    regular = cluster.gpu_pool(Cluster(), vm)
    assert regular["node_taints"] == ["sku=gpu:NoSchedule"]
    assert regular["node_labels"] == {"llamacpp-aks/pool": "gpu"}
    assert "scale_set_priority" not in regular
    spot = cluster.gpu_pool(Cluster(gpuPool=GpuPool(spot=True, minCount=0)), vm)
    assert (spot["scale_set_priority"], spot["spot_max_price"]) == ("Spot", -1)


def test_registry_is_zone_redundant_only_on_premium_with_zones():
    assert cluster.registry_zone_redundant(Registry(sku="Premium"), Cluster(zones=["1", "2"]))
    assert not cluster.registry_zone_redundant(Registry(sku="Standard"), Cluster(zones=["1", "2"]))
    assert not cluster.registry_zone_redundant(Registry(sku="Premium"), Cluster())


def test_container_insights_is_on_exactly_when_there_is_a_workspace():
    assert cluster.addon_profiles(Cluster(), None)["omsagent"] == {"enabled": False, "config": {}}
    on = cluster.addon_profiles(Cluster(), "/workspaces/logs")["omsagent"]
    assert on == {"enabled": True, "config": {"logAnalyticsWorkspaceResourceID": "/workspaces/logs"}}


def test_dcgm_exporter_runs_as_its_own_non_root_user():
    pod = gpu.dcgm_exporter_pod("dcgm:1")
    assert pod["security_context"]["run_as_user"] == DCGM_UID != SERVER_UID


def test_device_plugin_mounts_the_kubelet_socket_directory():
    (container,) = gpu.device_plugin_pod("plugin:1")["containers"]
    assert container["volume_mounts"] == [{"name": "device-plugin", "mount_path": gpu.DEVICE_PLUGIN_DIR}]


def test_alert_rules_watch_the_queue_and_ready_replicas_of_the_named_deployment():
    rules = observability.alert_rules("ns", "dep")
    assert [r["alert"] for r in rules] == ["LlamaServerRequestsDeferred", "LlamaServerNoReadyReplica"]
    assert 'deployment="dep"' in rules[1]["expression"]


def test_triggers_scale_on_queue_and_busy_slots_and_wake_in_active_hours():
    a = Autoscaling(enabled=True, minReplicas=0, maxReplicas=2, activeHours={"start": "08:30", "end": "20:00"})
    deferred, busy, cron = autoscaling.triggers(a, 8, "ns", "https://q")
    assert deferred["metadata"]["threshold"] == "1"
    assert busy["metadata"]["threshold"] == "6"
    assert (cron["metadata"]["start"], cron["metadata"]["end"]) == ("30 8 * * 1-5", "0 20 * * 1-5")


def test_reference_deployment_has_one_replica_that_recreates():
    c = StackConfig()
    spec = serving.deployment_spec(c.server, c.model, POD, {}, SELECT, c.max_replicas)
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}

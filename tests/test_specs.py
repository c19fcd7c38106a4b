"""The spec builders, called directly: no mocks, no engine, milliseconds each."""

from __future__ import annotations

import json

import pytest

from core import labels, metrics
from core.catalog import GPU_VM_SIZES
from core.config import Autoscaling, Cluster, GpuPool, ModelFiles, Registry, Server, Service, StackConfig
from core.labels import API_KEY_FILE
from specs import autoscaling, cluster, gpu, observability, serving
from specs.k8s import (
    DCGM_UID,
    SERVER_UID,
    gpu_tolerations,
    namespace_peer,
    pod_monitor_spec,
    public_https_egress,
    restricted_container_security,
)

SELECT = labels.selector("dev", "server")
NAMES = labels.ServingNames("dev")
POD = serving.PodInputs(
    image="img@sha256:" + "0" * 64, names=NAMES, service_account="sa", api_key_secret="key", api_key_sha256="h"
)
DOWNLOAD = serving.DownloadInputs(image="img", names=NAMES)


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


def test_download_fetches_model_then_projector_with_their_digests():
    model = ModelFiles()
    first, second = serving.download_containers(model, "img", hf_token=False)
    assert (first["name"], second["name"]) == ("fetch-model", "fetch-mmproj")
    assert first["args"] == [model.url(model.file), f"/models/{model.file}", model.sha256]
    assert second["args"] == [model.url(model.mmproj_file), f"/models/{model.mmproj_file}", model.mmproj_sha256]
    assert first["env"] == [
        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
        {"name": "FETCH_SIZE_BYTES", "value": str(model.size_bytes)},
        {"name": "FETCH_TOTAL_SECONDS", "value": str(model.download_timeout_seconds)},
    ]
    assert {"name": "FETCH_SIZE_BYTES", "value": str(model.mmproj_size_bytes)} in second["env"]


def test_download_reads_the_token_from_a_file_when_there_is_one():
    (first, _) = serving.download_containers(ModelFiles(), "img", hf_token=True)
    assert first["env"][-1] == {"name": "HF_TOKEN_FILE", "value": "/var/run/secrets/huggingface/token"}
    assert {"name": "hf-token", "mount_path": "/var/run/secrets/huggingface", "read_only": True} in first[
        "volume_mounts"
    ]


def test_server_pod_only_verifies_and_holds_no_token():
    pod = serving.pod_spec(Server(), ModelFiles(), POD, SELECT, 1)
    assert [c["name"] for c in pod["init_containers"]] == ["verify-model", "verify-mmproj"]
    for c in pod["init_containers"]:
        # A check only: a pod of another model revision never deletes or downloads the Job's files.
        assert c["env"] == [
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
            {"name": "VERIFY_ONLY", "value": "1"},
            {"name": "VERIFY_ON_START", "value": "1"},
        ]
    assert "hf-token" not in [v["name"] for v in pod["volumes"]]
    skip = serving.verify_containers(ModelFiles(verifyOnStart=False), "img")
    assert skip[0]["env"][-1] == {"name": "VERIFY_ON_START", "value": "0"}


def test_download_job_name_changes_with_the_model_revision_only():
    base = NAMES.download_job(ModelFiles())
    assert base == NAMES.download_job(ModelFiles(storage={"sizeGi": 80}))
    assert base != NAMES.download_job(ModelFiles(revision="0" * 40))
    assert len(base) <= 63


def test_download_job_is_bounded_in_time_and_retries_and_mounts_the_token_only_if_set():
    job = serving.download_job_spec(ModelFiles(downloadTimeoutSeconds=900), DOWNLOAD, {}, SELECT)
    # The deadline counts from the Job's creation: a GPU node from zero and the image pull come first.
    assert job["active_deadline_seconds"] == 900 + serving.DOWNLOAD_WAIT_MARGIN_SECONDS
    assert job["backoff_limit"] == serving.DOWNLOAD_RETRIES
    pod = job["template"]["spec"]
    assert pod["restart_policy"] == "Never" and pod["automount_service_account_token"] is False
    assert [v["name"] for v in pod["volumes"]] == ["models", "tmp"]
    with_token = serving.download_job_spec(
        ModelFiles(), serving.DownloadInputs(image="img", names=NAMES, hf_token_secret="tok"), {}, SELECT
    )
    assert [v["name"] for v in with_token["template"]["spec"]["volumes"]][-1] == "hf-token"


def test_download_may_reach_dns_and_public_https_only():
    policy = serving.download_network_policy_spec(SELECT)
    assert "ingress" not in policy and policy["policy_types"] == ["Ingress", "Egress"]
    dns, https = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert https["ports"] == [{"port": 443, "protocol": "TCP"}]
    block = https["to"][0]["ip_block"]
    assert block["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"} <= set(block["except_"])


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


def test_api_key_is_one_file_that_a_rotation_does_not_change_under_a_running_pod():
    c = serving.server_container(Server(), "img", serving.server_paths(ModelFiles()))
    (mount,) = [m for m in c["volume_mounts"] if m["name"] == "api-key"]
    assert mount["sub_path"] == API_KEY_FILE
    assert mount["mount_path"] == serving.server_paths(ModelFiles()).api_key_file


def test_pod_template_carries_the_api_key_hash():
    spec = serving.deployment_spec(Server(), ModelFiles(), POD, {}, SELECT, 1)
    assert spec["template"]["metadata"]["annotations"] == {serving.API_KEY_HASH_ANNOTATION: "h"}


def test_internal_load_balancer_service_is_annotated_and_keeps_callers_addresses():
    internal = Service(type="InternalLoadBalancer", allowedCidrs=["10.1.0.0/16"])
    spec = serving.service_spec(internal, SELECT)
    assert spec["type"] == "LoadBalancer"
    # Local: callers' own addresses reach the NetworkPolicy, and the LB probes the node's health port.
    assert spec["external_traffic_policy"] == "Local"
    assert "external_traffic_policy" not in serving.service_spec(Service(), SELECT)
    assert serving.service_annotations(internal) == serving.INTERNAL_LB_ANNOTATION
    assert serving.service_annotations(Service()) == {}


def test_network_policy_admits_allowed_namespaces_ranges_and_only_the_scraper_pods_of_kube_system():
    policy = serving.network_policy_spec(
        Server(), Service(allowedNamespaces=["apps"], allowedCidrs=["10.1.0.0/16"]), SELECT
    )
    peers = policy["ingress"][0]["from_"]
    kube_system = [
        p
        for p in peers
        if p.get("namespace_selector", {}).get("match_labels") == {"kubernetes.io/metadata.name": "kube-system"}
    ]
    assert kube_system and all("pod_selector" in p for p in kube_system), "all of kube-system may call the API"
    assert [p["pod_selector"]["match_labels"] for p in kube_system] == [
        {"rsName": "ama-metrics"},
        {"dsName": "ama-metrics-node"},
    ]
    assert namespace_peer("apps") in peers
    assert {"ip_block": {"cidr": "10.1.0.0/16"}} in peers


def test_only_a_public_server_admits_the_gateway_subnet():
    gateway = {"ip_block": {"cidr": cluster.INGRESS_SUBNET_CIDR}}
    assert gateway not in serving.network_policy_spec(Server(), Service(), SELECT)["ingress"][0]["from_"]
    assert gateway in serving.network_policy_spec(Server(), Service(), SELECT, public=True)["ingress"][0]["from_"]


def test_server_pod_has_no_egress_unless_remote_images_are_on():
    assert serving.network_policy_spec(Server(), Service(), SELECT)["egress"] == []
    _dns, https = serving.network_policy_spec(Server(remoteImages=True), Service(), SELECT)["egress"]
    assert https == public_https_egress()
    assert "169.254.0.0/16" in https["to"][0]["ip_block"]["except_"]


def test_gpu_env_policy_denies_every_pod_that_names_the_gpus_itself():
    import celpy

    expression = gpu.gpu_env_policy_spec("nvidia-dcgm-exporter")["validations"][0]["expression"]
    env = celpy.Environment()
    program = env.program(env.compile(expression))

    def allowed(pod_spec: dict) -> bool:
        return bool(program.evaluate({"object": celpy.json_to_cel({"spec": pod_spec})}))

    gpus = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]
    assert allowed({"containers": [{"name": "app", "env": [{"name": "A", "value": "1"}]}]})
    # Taking GPUs away (a CUDA image sets `all` in its own environment) is always allowed.
    for none in ("void", "none"):
        assert allowed({"containers": [{"name": "app", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": none}]}]})
    assert not allowed({"containers": [{"name": "app", "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "0"}]}]})
    assert not allowed({"containers": [{"name": "app", "env": gpus}]})
    assert not allowed({"containers": [{"name": "app"}], "initContainers": [{"name": "init", "env": gpus}]})
    exempt = gpu.gpu_env_policy_spec("nvidia-dcgm-exporter")["match_constraints"]["namespace_selector"]
    assert exempt["match_expressions"][0]["values"] == ["nvidia-dcgm-exporter", "kube-system"]


def test_pod_monitor_sends_a_bearer_token_only_when_given_one():
    plain = pod_monitor_spec(SELECT, "metrics")["podMetricsEndpoints"][0]
    assert "authorization" not in plain
    guarded = pod_monitor_spec(SELECT, "http", ("secret", "key"))["podMetricsEndpoints"][0]
    assert guarded["authorization"]["credentials"] == {"name": "secret", "key": "key"}


def test_system_pool_is_tainted_for_critical_addons_only():
    pool = cluster.system_pool(Cluster(), "subnet-id")
    assert pool["mode"] == "System" and pool["node_taints"] == ["CriticalAddonsOnly=true:NoSchedule"]
    assert pool["vnet_subnet_id"] == "subnet-id"


def test_the_vnet_holds_both_subnets_and_clashes_with_no_overlay_range():
    import ipaddress

    vnet = ipaddress.ip_network(cluster.VNET_CIDR)
    nodes, ingress = ipaddress.ip_network(cluster.NODE_SUBNET_CIDR), ipaddress.ip_network(cluster.INGRESS_SUBNET_CIDR)
    assert nodes.subnet_of(vnet) and ingress.subnet_of(vnet) and not nodes.overlaps(ingress)
    # Azure CNI Overlay: the gateway's subnet must be exactly /24.
    assert ingress.prefixlen == 24
    for overlay in (cluster.POD_CIDR, cluster.SERVICE_CIDR):
        assert not vnet.overlaps(ipaddress.ip_network(overlay)), overlay
    assert cluster.vnet_address_space() == {"address_prefixes": [cluster.VNET_CIDR]}
    assert cluster.ingress_subnet_delegations()[0]["service_name"] == "Microsoft.ServiceNetworking/trafficControllers"


def test_gpu_pool_is_tainted_labelled_and_spot_only_when_asked():
    vm = GPU_VM_SIZES["Standard_NV36ads_A10_v5"]
    regular = cluster.gpu_pool(Cluster(), vm, "subnet-id")
    assert regular["vnet_subnet_id"] == "subnet-id"
    assert regular["node_taints"] == ["sku=gpu:NoSchedule"]
    assert regular["node_labels"] == {"llamacpp-aks/pool": "gpu"}
    assert "scale_set_priority" not in regular
    spot = cluster.gpu_pool(Cluster(gpuPool=GpuPool(spot=True, minCount=0)), vm, "subnet-id")
    assert (spot["scale_set_priority"], spot["spot_max_price"]) == ("Spot", -1)


def test_registry_is_zone_redundant_only_on_premium_with_zones():
    assert cluster.registry_zone_redundant(Registry(sku="Premium"), Cluster(zones=["1", "2"]))
    assert not cluster.registry_zone_redundant(Registry(sku="Standard"), Cluster(zones=["1", "2"]))
    assert not cluster.registry_zone_redundant(Registry(sku="Premium"), Cluster())


def test_container_insights_is_on_exactly_when_there_is_a_workspace():
    assert cluster.addon_profiles(Cluster(), None)["omsagent"] == {"enabled": False, "config": {}}
    on = cluster.addon_profiles(Cluster(), "/workspaces/logs")["omsagent"]
    assert on == {
        "enabled": True,
        "config": {"logAnalyticsWorkspaceResourceID": "/workspaces/logs", "useAADAuth": "true"},
    }


def test_dcgm_exporter_runs_as_its_own_non_root_user():
    pod = gpu.dcgm_exporter_pod("dcgm:1")
    assert pod["security_context"]["run_as_user"] == DCGM_UID != SERVER_UID


def test_device_plugin_mounts_the_kubelet_socket_directory():
    (container,) = gpu.device_plugin_pod("plugin:1")["containers"]
    assert container["volume_mounts"] == [{"name": "device-plugin", "mount_path": gpu.DEVICE_PLUGIN_DIR}]


def test_alert_rules_watch_the_queue_and_ready_replicas_of_the_named_deployment():
    rules = observability.alert_rules("ns", "dep")
    assert [r["alert"] for r in rules] == [
        "LlamaServerRequestsDeferred",
        "LlamaServerNoReadyReplica",
        "GpuMemoryNearlyFull",
    ]
    assert 'deployment="dep"' in rules[1]["expression"]


def test_the_gpu_memory_alert_and_panel_see_each_gpu_of_a_node():
    """Two GPUs of one replica share a node: by node alone, a full GPU would hide behind an empty one."""
    assert metrics.gpu_memory_alert().startswith("max by (Hostname, gpu) (")
    panels = json.loads(metrics.DASHBOARD.read_text())["panels"]
    (memory,) = [t["expr"] for p in panels for t in p.get("targets", []) if metrics.GPU_MEMORY_USED in t["expr"]]
    assert "by (Hostname, gpu)" in memory


def test_triggers_scale_on_queue_and_busy_slots_and_wake_in_active_hours():
    a = Autoscaling(enabled=True, minReplicas=0, maxReplicas=2, activeHours={"start": "08:30", "end": "20:00"})
    deferred, busy, cron, wake = autoscaling.triggers(a, 8, "ns", "https://q")
    assert wake == autoscaling.wake_trigger("ns", "https://q")  # at zero replicas, the front's count wakes it
    assert deferred["metadata"]["threshold"] == "1"
    assert busy["metadata"]["threshold"] == "6"
    assert (cron["metadata"]["start"], cron["metadata"]["end"]) == ("30 8 * * 1-5", "0 20 * * 1-5")


def test_reference_deployment_has_one_replica_that_recreates():
    c = StackConfig()
    spec = serving.deployment_spec(c.server, c.model, POD, {}, SELECT, c.max_replicas)
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}


def gpu_policy_allows(pod_spec: dict) -> bool:
    """Every validation of the GPU environment policy, evaluated with cel-python as the API server would."""
    import celpy

    env = celpy.Environment()
    activation = {"object": celpy.json_to_cel({"spec": pod_spec})}
    return all(
        bool(env.program(env.compile(v["expression"])).evaluate(activation))
        for v in gpu.gpu_env_policy_spec("nvidia-dcgm-exporter")["validations"]
    )


GPUS = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]


@pytest.mark.parametrize(
    "pod_spec",
    [
        {"containers": [{"name": "app"}], "ephemeralContainers": [{"name": "debug", "env": GPUS}]},
        {"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "gpus"}}]}]},
        {"containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "gpus"}, "prefix": ""}]}]},
        {"containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "gpus"}, "prefix": "NVIDIA_"}]}]},
        {"containers": [{"name": "app"}], "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "x"}}]}]},
        {
            "containers": [{"name": "app"}],
            "ephemeralContainers": [{"name": "d", "envFrom": [{"secretRef": {"name": "x"}}]}],
        },
    ],
    ids=[
        "ephemeral-env",
        "envfrom",
        "envfrom-empty-prefix",
        "envfrom-nvidia-prefix",
        "init-envfrom",
        "ephemeral-envfrom",
    ],
)
def test_gpu_env_policy_denies_envfrom_and_ephemeral_containers_that_could_name_the_gpus(pod_spec):
    assert not gpu_policy_allows(pod_spec)


def test_gpu_env_policy_allows_prefixed_envfrom_and_plain_debug_containers():
    assert gpu_policy_allows(
        {
            "containers": [{"name": "app", "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}]}],
            "ephemeralContainers": [{"name": "debug", "env": [{"name": "A", "value": "1"}]}],
        }
    )


def test_gpu_env_policy_matches_the_ephemeral_containers_subresource():
    (rule,) = gpu.gpu_env_policy_spec("nvidia-dcgm-exporter")["match_constraints"]["resource_rules"]
    assert rule["resources"] == ["pods", "pods/ephemeralcontainers"]

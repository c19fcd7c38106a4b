"""Queue-driven autoscaling, the metrics pipeline, alerts and dashboard, under Pulumi's mocks."""

from __future__ import annotations

import json
import re

import pytest

from core import metrics
from core.catalog import MONITORING_DATA_READER as MONITORING_DATA_READER_ROLE
from core.metrics import DASHBOARD
from tests.conftest import named, of_type, one, only, preview_problems, run_stack

SCALED = "kubernetes:keda.sh/v1alpha1:ScaledObject"
RWX = {"storage": {"accessMode": "ReadWriteMany", "storageClass": "azurefile-csi-premium", "sizeGi": 100}}
AUTOSCALED = {
    "autoscaling": {
        "enabled": True,
        "minReplicas": 1,
        "maxReplicas": 3,
        "deferredPerReplica": 2,
        "busySlotRatio": 0.5,
        "cooldownSeconds": 600,
    },
    "cluster": {"gpuPool": {"maxCount": 3}},
    "model": RWX,
}


@pytest.fixture(scope="module")
def scaled():
    return run_stack(AUTOSCALED, "dev")


def test_scaled_object_targets_the_server_with_bounds_and_cooldown(scaled):
    spec = one(scaled, SCALED)["spec"]
    assert spec["scaleTargetRef"] == {"name": "llamacpp-dev-server"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["cooldownPeriod"]) == (1, 3, 600)


def test_triggers_read_the_servers_queue_from_managed_prometheus(scaled):
    triggers = {t["name"]: t for t in one(scaled, SCALED)["spec"]["triggers"]}
    amw = one(scaled, "azure-native:monitor:AzureMonitorWorkspace")["azureMonitorWorkspaceName"]
    deferred, busy = triggers["deferred"], triggers["busy-slots"]
    for t in (deferred, busy):
        assert t["type"] == "prometheus"
        assert t["metadata"]["serverAddress"].startswith(f"https://{amw}.")
        assert t["authenticationRef"] == {"name": "managed-prometheus"}
    assert deferred["metadata"]["query"] == metrics.deferred_requests("llamacpp-dev-serving")
    assert deferred["metadata"]["threshold"] == "2"
    assert busy["metadata"]["query"] == metrics.processing_requests("llamacpp-dev-serving")
    assert busy["metadata"]["threshold"] == "4"  # 8 slots x 0.5
    assert "active-hours" not in triggers


def test_keda_queries_as_a_federated_workload_identity_that_may_read_metrics(scaled):
    auth = one(scaled, "kubernetes:keda.sh/v1alpha1:TriggerAuthentication")
    assert auth["spec"]["podIdentity"] == {
        "provider": "azure-workload",
        "identityId": "55555555-5555-5555-5555-555555555555",
    }
    fic = one(scaled, "azure-native:managedidentity:FederatedIdentityCredential")
    assert fic["subject"] == "system:serviceaccount:kube-system:keda-operator"
    assert fic["issuer"].startswith("https://") and fic["issuer"] != ""
    roles = [
        r.inputs
        for r in of_type(scaled, "azure-native:authorization:RoleAssignment")
        if r.inputs["roleDefinitionId"].endswith(MONITORING_DATA_READER_ROLE)
    ]
    assert any(
        r["principalId"] == "44444444-4444-4444-4444-444444444444" and r["scope"].endswith("/accounts/llamacpp-dev-amw")
        for r in roles
    )
    assert one(scaled, "azure-native:containerservice:ManagedCluster")["workloadAutoScalerProfile"] == {
        "keda": {"enabled": True}
    }


def test_several_possible_replicas_roll_without_surge(scaled):
    spec = one(scaled, "kubernetes:apps/v1:Deployment")["spec"]
    assert spec["strategy"]["type"] == "RollingUpdate" and spec["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert of_type(scaled, "kubernetes:policy/v1:PodDisruptionBudget")


def test_no_scaler_when_autoscaling_is_off():
    mocks = run_stack({}, "dev")
    assert not of_type(mocks, SCALED)
    assert one(mocks, "azure-native:containerservice:ManagedCluster")["workloadAutoScalerProfile"] == {
        "keda": {"enabled": False}
    }


def test_scale_to_zero_wakes_in_active_hours():
    raw = {
        "autoscaling": {
            "enabled": True,
            "minReplicas": 0,
            "maxReplicas": 1,
            "activeHours": {"start": "07:30", "end": "19:00", "days": "1-5"},
        }
    }
    triggers = {t["name"]: t for t in one(run_stack(raw, "dev"), SCALED)["spec"]["triggers"]}
    cron = triggers["active-hours"]
    assert cron["type"] == "cron"
    assert cron["metadata"] == {
        "timezone": "UTC",
        "start": "30 7 * * 1-5",
        "end": "0 19 * * 1-5",
        "desiredReplicas": "1",
    }


def test_metrics_pipeline_sends_the_clusters_prometheus_to_the_workspace(scaled):
    (rule,) = [
        r.inputs for r in of_type(scaled, "azure-native:monitor:DataCollectionRule") if r.name == "observability-dcr"
    ]
    amw_id = rule["destinations"]["monitoringAccounts"][0]["accountResourceId"]
    assert amw_id.endswith("/accounts/llamacpp-dev-amw")
    assert rule["dataFlows"] == [{"destinations": ["MonitoringAccount"], "streams": ["Microsoft-PrometheusMetrics"]}]
    (association,) = [
        r.inputs
        for r in of_type(scaled, "azure-native:monitor:DataCollectionRuleAssociation")
        if r.name == "observability-dcra"
    ]
    assert association["resourceUri"].endswith("/managedClusters/llamacpp-dev-aks")


def test_alerts_for_a_queue_that_lasts_5_minutes_and_for_no_ready_replica(scaled):
    group = one(scaled, "azure-native:alertsmanagement:PrometheusRuleGroup")
    rules = {r["alert"]: r for r in group["rules"]}
    deferred = rules["LlamaServerRequestsDeferred"]
    assert deferred["expression"] == metrics.deferred_alert("llamacpp-dev-serving")
    assert deferred["for"] == "PT5M"
    no_ready = rules["LlamaServerNoReadyReplica"]
    assert no_ready["expression"] == metrics.no_ready_replica_alert("llamacpp-dev-serving", "llamacpp-dev-server")
    assert no_ready["for"] == "PT5M"


def test_grafana_gets_the_dashboard_when_enabled():
    raw = {**AUTOSCALED, "autoscaling": {**AUTOSCALED["autoscaling"], "grafana": True}}
    mocks = run_stack(raw, "dev")
    grafana = one(mocks, "azure-native:dashboard:Grafana")
    integration = grafana["properties"]["grafanaIntegrations"]["azureMonitorWorkspaceIntegrations"][0]
    assert integration["azureMonitorWorkspaceResourceId"].endswith("/accounts/llamacpp-dev-amw")
    dashboard = one(mocks, "grafana:oss/dashboard:Dashboard")
    assert json.loads(dashboard["configJson"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_queries_use_only_metrics_this_project_names():
    text = DASHBOARD.read_text()
    used = set(re.findall(r"llamacpp:[a-z_]+", text))
    assert used == set(metrics.LLAMACPP_METRICS)


# --- validation ----------------------------------------------------------------------------


def test_rejects_max_replicas_beyond_the_gpu_pool():
    raw = {"autoscaling": {"enabled": True, "maxReplicas": 4}, "cluster": {"gpuPool": {"maxCount": 2}}, "model": RWX}
    msg = only(preview_problems(raw))
    assert msg.startswith("autoscaling.maxReplicas=4 needs 4 GPUs, but cluster.gpuPool.maxCount=2 nodes")


def test_rejects_several_replicas_on_a_disk_one_node_can_attach():
    msg = only(
        preview_problems({"autoscaling": {"enabled": True, "maxReplicas": 2}, "cluster": {"gpuPool": {"maxCount": 2}}})
    )
    assert msg.startswith("autoscaling.maxReplicas=2 with model.storage.accessMode=ReadWriteOnce")


def test_rejects_autoscaling_without_managed_prometheus():
    msg = only(preview_problems({"autoscaling": {"enabled": True}, "cluster": {"monitoring": False}}))
    assert msg.startswith("autoscaling.enabled=true needs cluster.monitoring=true")


def test_rejects_min_replicas_above_max():
    problems = preview_problems({"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 1}})
    assert any(p.startswith("autoscaling.minReplicas=2 is above autoscaling.maxReplicas=1") for p in problems)


def test_scale_to_zero_without_active_hours_wakes_on_the_fronts_turned_away_requests():
    # Once refused (nothing read demand at zero replicas); the standby front's count now does.
    triggers = {
        t["name"]
        for t in one(run_stack({"autoscaling": {"enabled": True, "minReplicas": 0}}), SCALED)["spec"]["triggers"]
    }
    assert triggers == {"deferred", "busy-slots", "turned-away"}


def test_rejects_scale_to_zero_on_a_zonal_disk_across_zones():
    raw = {"autoscaling": {"enabled": True, "minReplicas": 0, "activeHours": {}}, "cluster": {"zones": ["1", "2", "3"]}}
    msg = only(preview_problems(raw))
    assert "cannot attach the disk" in msg and "ZRS storage class" in msg


def test_scale_to_zero_states_the_cold_start():
    from core.loading import load_config

    _, warnings = load_config({"autoscaling": {"enabled": True, "minReplicas": 0, "activeHours": {}}}, "dev")
    assert any("waits for a GPU node" in w for w in warnings)
    assert any("cluster.gpuPool.minCount=1" in w for w in warnings)


def test_gpu_metrics_exporter_runs_restricted_on_gpu_nodes_and_is_scraped(scaled):
    ds = named(scaled, "kubernetes:apps/v1:DaemonSet", "dcgm-exporter")
    spec = ds["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"llamacpp-aks/pool": "gpu"}
    assert {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"} in spec["tolerations"]
    assert "volumes" in spec and all("hostPath" not in v for v in spec["volumes"])
    (container,) = spec["containers"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    ns = named(scaled, "kubernetes:core/v1:Namespace", "nvidia-dcgm-exporter")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    monitors = {
        r.inputs["metadata"]["name"]: r.inputs
        for r in of_type(scaled, "kubernetes:azmonitoring.coreos.com/v1:PodMonitor")
    }
    assert monitors["dcgm-exporter"]["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_no_metrics_stack_without_monitoring():
    mocks = run_stack({"cluster": {"monitoring": False}}, "dev")
    assert not of_type(mocks, "azure-native:monitor:AzureMonitorWorkspace")
    assert not [
        r for r in of_type(mocks, "kubernetes:apps/v1:DaemonSet") if r.inputs["metadata"]["name"] == "dcgm-exporter"
    ]

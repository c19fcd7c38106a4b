"""Specs of the metrics pipeline: what the data collection rule forwards, and the alert rules."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import alertsmanagement, dashboard, monitor

from core import metrics

STREAM = "Microsoft-PrometheusMetrics"
DESTINATION = "MonitoringAccount"
# Managed Grafana's SKU, and the longest workspace name its API takes.
GRAFANA_SKU = "Standard"
GRAFANA_NAME_MAX = 23


def prometheus_data_sources() -> monitor.DataCollectionRuleDataSourcesArgsDict:
    """What the managed Prometheus add-on scrapes (PodMonitors included)."""
    return {"prometheus_forwarder": [{"name": "PrometheusDataSource", "streams": [STREAM], "label_include_filter": {}}]}


def workspace_destination(workspace_id: pulumi.Input[str]) -> monitor.DataCollectionRuleDestinationsArgsDict:
    return {"monitoring_accounts": [{"account_resource_id": workspace_id, "name": DESTINATION}]}


def data_flows() -> list[monitor.DataFlowArgsDict]:
    return [{"destinations": [DESTINATION], "streams": [STREAM]}]


def alert_rules(namespace: str, deployment: str) -> list[alertsmanagement.PrometheusRuleArgsDict]:
    """Queue and availability: requests waiting for a slot, and no ready replica while one is wanted."""
    resolve: alertsmanagement.PrometheusRuleResolveConfigurationArgsDict = {
        "auto_resolved": True,
        "time_to_resolve": "PT10M",
    }
    return [
        {
            "alert": "LlamaServerRequestsDeferred",
            "expression": metrics.deferred_alert(namespace),
            "for_": "PT5M",
            "severity": 2,
            "annotations": {"summary": "Requests have waited for a free slot for 5 minutes: add replicas or slots."},
            "resolve_configuration": resolve,
        },
        {
            "alert": "LlamaServerNoReadyReplica",
            "expression": metrics.no_ready_replica_alert(namespace, deployment),
            "for_": "PT5M",
            "severity": 1,
            "annotations": {"summary": "The model server is wanted but no replica is ready."},
            "resolve_configuration": resolve,
        },
    ]


def grafana_properties(workspace_id: pulumi.Input[str]) -> dashboard.ManagedGrafanaPropertiesArgsDict:
    """Managed Grafana reading the Azure Monitor workspace, no API keys, no fixed outbound IP."""
    return {
        "grafana_integrations": {
            "azure_monitor_workspace_integrations": [{"azure_monitor_workspace_resource_id": workspace_id}]
        },
        "api_key": "Disabled",
        "deterministic_outbound_ip": "Disabled",
    }

"""Specs of the metrics pipeline: what the data collection rule forwards, the alert rules, and the
action group they notify."""

from __future__ import annotations

import pulumi
from pulumi_azure_native import alertsmanagement, dashboard, monitor

from core import metrics
from core.config import Alerts

STREAM = "Microsoft-PrometheusMetrics"
DESTINATION = "MonitoringAccount"
# Managed Grafana's SKU, and the longest workspace name its API takes.
GRAFANA_SKU = "Standard"
GRAFANA_NAME_MAX = 23
# An action group's short name appears in its emails and SMS; Azure allows 12 characters.
ACTION_GROUP_SHORT_NAME_MAX = 12
# Action groups are global resources (learn.microsoft.com/azure/azure-monitor/alerts/action-groups).
ACTION_GROUP_LOCATION = "global"


def prometheus_data_sources() -> monitor.DataCollectionRuleDataSourcesArgsDict:
    """What the managed Prometheus add-on scrapes (PodMonitors included)."""
    return {"prometheus_forwarder": [{"name": "PrometheusDataSource", "streams": [STREAM], "label_include_filter": {}}]}


def workspace_destination(workspace_id: pulumi.Input[str]) -> monitor.DataCollectionRuleDestinationsArgsDict:
    return {"monitoring_accounts": [{"account_resource_id": workspace_id, "name": DESTINATION}]}


def data_flows() -> list[monitor.DataFlowArgsDict]:
    return [{"destinations": [DESTINATION], "streams": [STREAM]}]


def action_group_short_name(stack: str) -> str:
    return f"llama-{stack}"[:ACTION_GROUP_SHORT_NAME_MAX]


def email_receivers(alerts: Alerts) -> list[monitor.MicrosoftCommonEmailReceiverArgsDict]:
    return [
        {"name": f"email-{i}", "email_address": address, "use_common_alert_schema": True}
        for i, address in enumerate(alerts.emails, 1)
    ]


def webhook_receivers(alerts: Alerts) -> list[monitor.WebhookReceiverArgsDict]:
    return [
        {"name": f"webhook-{i}", "service_uri": url, "use_common_alert_schema": True}
        for i, url in enumerate(alerts.webhooks, 1)
    ]


def alert_actions(
    action_group_id: pulumi.Input[str] | None,
) -> list[alertsmanagement.PrometheusRuleGroupActionArgsDict]:
    """What a firing rule triggers: the stack's action group, if it has receivers."""
    return [] if action_group_id is None else [{"action_group_id": action_group_id}]


def alert_rules(
    namespace: str, deployment: str, action_group_id: pulumi.Input[str] | None = None
) -> list[alertsmanagement.PrometheusRuleArgsDict]:
    """Queue, availability and GPU memory: requests waiting for a slot, no ready replica while one
    is wanted, and any one GPU nearly full."""
    resolve: alertsmanagement.PrometheusRuleResolveConfigurationArgsDict = {
        "auto_resolved": True,
        "time_to_resolve": "PT10M",
    }
    actions = alert_actions(action_group_id)
    return [
        {
            "alert": "LlamaServerRequestsDeferred",
            "expression": metrics.deferred_alert(namespace),
            "for_": "PT5M",
            "severity": 2,
            "annotations": {"summary": "Requests have waited for a free slot for 5 minutes: add replicas or slots."},
            "resolve_configuration": resolve,
            "actions": actions,
        },
        {
            "alert": "LlamaServerNoReadyReplica",
            "expression": metrics.no_ready_replica_alert(namespace, deployment),
            "for_": "PT5M",
            "severity": 1,
            "annotations": {"summary": "The model server is wanted but no replica is ready."},
            "resolve_configuration": resolve,
            "actions": actions,
        },
        {
            "alert": "GpuMemoryNearlyFull",
            "expression": metrics.gpu_memory_alert(),
            "for_": "PT5M",
            "severity": 2,
            "annotations": {
                "summary": "A GPU's memory has been over 95% used for 5 minutes: out of memory is near; "
                "lower server.contextSize or move layers with server.tensorSplit."
            },
            "resolve_configuration": resolve,
            "actions": actions,
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

"""ManagedPrometheus: the Azure Monitor workspace that managed Prometheus writes llama-server's
metrics to (with its collection endpoint, rule and cluster association), the alert rules, and,
when enabled, Azure Managed Grafana with the llama-server dashboard."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure

from components import roles
from core import labels, metrics

# Entra ID application of Azure Managed Grafana: the audience of tokens for its HTTP API
# (learn.microsoft.com/azure/managed-grafana/how-to-api-calls).
GRAFANA_API_AUDIENCE = "ce34e7e5-485f-4d76-964f-b3d2b16d1e4f"


@dataclass(frozen=True)
class ManagedPrometheusArgs:
    stack: str
    location: str
    resource_group: pulumi.Input[str]
    cluster_id: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    deployer_object_id: pulumi.Input[str]
    namespace: str
    deployment: str
    grafana: bool


class ManagedPrometheus(pulumi.ComponentResource):
    """Metrics pipeline, alerts and dashboard for the model server."""

    def __init__(self, name: str, args: ManagedPrometheusArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:observability:ManagedPrometheus", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack, rg, tags = args.stack, args.resource_group, labels.tags(args.stack, "observability")

        self.workspace = azure.monitor.AzureMonitorWorkspace(
            f"{name}-amw",
            azure_monitor_workspace_name=labels.name(stack, "amw"),
            resource_group_name=rg,
            location=args.location,
            tags=tags,
            opts=child,
        )
        endpoint = azure.monitor.DataCollectionEndpoint(
            f"{name}-dce",
            data_collection_endpoint_name=labels.name(stack, "dce"),
            resource_group_name=rg,
            location=args.location,
            kind="Linux",
            tags=tags,
            opts=child,
        )
        # What the managed Prometheus add-on scrapes (PodMonitors included) goes to the workspace.
        rule = azure.monitor.DataCollectionRule(
            f"{name}-dcr",
            data_collection_rule_name=labels.name(stack, "dcr"),
            resource_group_name=rg,
            location=args.location,
            kind="Linux",
            data_collection_endpoint_id=endpoint.id,
            data_sources={
                "prometheus_forwarder": [
                    {
                        "name": "PrometheusDataSource",
                        "streams": ["Microsoft-PrometheusMetrics"],
                        "label_include_filter": {},
                    }
                ]
            },
            destinations={
                "monitoring_accounts": [{"account_resource_id": self.workspace.id, "name": "MonitoringAccount"}]
            },
            data_flows=[{"destinations": ["MonitoringAccount"], "streams": ["Microsoft-PrometheusMetrics"]}],
            tags=tags,
            opts=child,
        )
        azure.monitor.DataCollectionRuleAssociation(
            f"{name}-dcra",
            association_name=labels.name(stack, "dcra"),
            resource_uri=args.cluster_id,
            data_collection_rule_id=rule.id,
            opts=child,
        )

        azure.alertsmanagement.PrometheusRuleGroup(
            f"{name}-alerts",
            rule_group_name=labels.name(stack, "alerts"),
            resource_group_name=rg,
            location=args.location,
            cluster_name=args.cluster_name,
            scopes=[self.workspace.id, args.cluster_id],
            interval="PT1M",
            enabled=True,
            description="llama-server: queue and availability",
            rules=[
                {
                    "alert": "LlamaServerRequestsDeferred",
                    "expression": metrics.deferred_alert(args.namespace),
                    "for_": "PT5M",
                    "severity": 2,
                    "annotations": {
                        "summary": "Requests have waited for a free slot for 5 minutes: add replicas or slots."
                    },
                    "resolve_configuration": {"auto_resolved": True, "time_to_resolve": "PT10M"},
                },
                {
                    "alert": "LlamaServerNoReadyReplica",
                    "expression": metrics.no_ready_replica_alert(args.namespace, args.deployment),
                    "for_": "PT5M",
                    "severity": 1,
                    "annotations": {"summary": "The model server is wanted but no replica is ready."},
                    "resolve_configuration": {"auto_resolved": True, "time_to_resolve": "PT10M"},
                },
            ],
            tags=tags,
            opts=child,
        )

        self.query_endpoint = self.workspace.metrics.apply(lambda m: m.prometheus_query_endpoint)
        self.grafana_endpoint: pulumi.Output[str] | None = None
        if args.grafana:
            self._grafana(name, args, tags)
        self.register_outputs({"queryEndpoint": self.query_endpoint})

    def _grafana(self, name: str, args: ManagedPrometheusArgs, tags: dict[str, str]) -> None:
        import pulumiverse_grafana as grafana  # only stacks with Grafana need this SDK

        child = pulumi.ResourceOptions(parent=self)
        instance = azure.dashboard.Grafana(
            f"{name}-grafana",
            workspace_name=labels.name(args.stack, "grafana")[:23],
            resource_group_name=args.resource_group,
            location=args.location,
            sku={"name": "Standard"},
            identity={"type": "SystemAssigned"},
            properties={
                "grafana_integrations": {
                    "azure_monitor_workspace_integrations": [{"azure_monitor_workspace_resource_id": self.workspace.id}]
                },
                "api_key": "Disabled",
                "deterministic_outbound_ip": "Disabled",
            },
            tags=tags,
            opts=child,
        )
        roles.grant(
            f"{name}-grafana-reads-metrics",
            role=roles.MONITORING_DATA_READER,
            principal_id=instance.identity.apply(lambda i: i.principal_id),
            scope=self.workspace.id,
            subscription_id=args.subscription_id,
            parent=self,
            service_principal=True,
        )
        admin = roles.grant(
            f"{name}-deployer-grafana-admin",
            role=roles.GRAFANA_ADMIN,
            principal_id=args.deployer_object_id,
            scope=instance.id,
            subscription_id=args.subscription_id,
            parent=self,
        )
        token = azure.authorization.get_client_token_output(
            endpoint=GRAFANA_API_AUDIENCE, opts=pulumi.InvokeOutputOptions(parent=self)
        ).token
        provider = grafana.Provider(
            f"{name}-grafana-api",
            url=instance.properties.apply(lambda p: p.endpoint),
            auth=pulumi.Output.secret(token),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[admin]),
        )
        grafana.oss.Dashboard(
            f"{name}-dashboard",
            config_json=metrics.DASHBOARD.read_text(),
            overwrite=True,
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        self.grafana_endpoint = instance.properties.apply(lambda p: p.endpoint)

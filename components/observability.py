"""ManagedPrometheus: the Azure Monitor workspace that managed Prometheus writes llama-server's
metrics to (with its collection endpoint, rule and cluster association), the alert rules and the
action group they notify, and, when enabled, Azure Managed Grafana with the llama-server dashboard."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_azure_native import alertsmanagement, authorization, dashboard, monitor

from components.cluster import AksCluster
from components.serving import ModelServer
from core import catalog, labels, metrics
from core.config import Alerts
from specs import observability as spec

# Entra ID application of Azure Managed Grafana: the audience of tokens for its HTTP API
# (learn.microsoft.com/azure/managed-grafana/how-to-api-calls).
GRAFANA_API_AUDIENCE = "ce34e7e5-485f-4d76-964f-b3d2b16d1e4f"


@dataclass(frozen=True, kw_only=True)
class ManagedPrometheusArgs:
    stack: str  # the stack name; every name and tag derives from it
    cluster: AksCluster  # whose managed Prometheus add-on scrapes into the workspace
    server: ModelServer  # what the alert rules watch (its namespace and Deployment)
    grafana: bool  # config `autoscaling.grafana`: Managed Grafana with the dashboard
    alerts: Alerts  # config `alerts`: who the alert rules notify


class ManagedPrometheus(pulumi.ComponentResource):
    """Metrics pipeline, alerts and dashboard for the model server."""

    def __init__(self, name: str, args: ManagedPrometheusArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:observability:ManagedPrometheus", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack, cluster = args.stack, args.cluster
        rg, location, tags = cluster.resource_group_name, cluster.location, labels.tags(stack, "observability")

        self.workspace = monitor.AzureMonitorWorkspace(
            f"{name}-amw",
            azure_monitor_workspace_name=labels.name(stack, "amw"),
            resource_group_name=rg,
            location=location,
            tags=tags,
            opts=child,
        )
        endpoint = monitor.DataCollectionEndpoint(
            f"{name}-dce",
            data_collection_endpoint_name=labels.name(stack, "dce"),
            kind="Linux",
            resource_group_name=rg,
            location=location,
            tags=tags,
            opts=child,
        )
        rule = monitor.DataCollectionRule(
            f"{name}-dcr",
            data_collection_rule_name=labels.name(stack, "dcr"),
            kind="Linux",
            data_collection_endpoint_id=endpoint.id,
            data_sources=spec.prometheus_data_sources(),
            destinations=spec.workspace_destination(self.workspace.id),
            data_flows=spec.data_flows(),
            resource_group_name=rg,
            location=location,
            tags=tags,
            opts=child,
        )
        monitor.DataCollectionRuleAssociation(
            f"{name}-dcra",
            association_name=labels.name(stack, "dcra"),
            resource_uri=cluster.cluster.id,
            data_collection_rule_id=rule.id,
            opts=child,
        )
        action_group = self._action_group(name, stack, rg, tags, args.alerts)
        alertsmanagement.PrometheusRuleGroup(
            f"{name}-alerts",
            rule_group_name=labels.name(stack, "alerts"),
            cluster_name=cluster.cluster.name,
            scopes=[self.workspace.id, cluster.cluster.id],
            interval="PT1M",
            enabled=True,
            description="llama-server: queue and availability",
            rules=spec.alert_rules(
                args.server.names.namespace, args.server.names.server, action_group.id if action_group else None
            ),
            resource_group_name=rg,
            location=location,
            tags=tags,
            opts=child,
        )
        self.query_endpoint = self.workspace.metrics.apply(lambda m: m.prometheus_query_endpoint)
        self.grafana_endpoint: pulumi.Output[str] | None = None
        if args.grafana:
            self.grafana_endpoint = self._grafana(name, args, tags)
        self.register_outputs({"queryEndpoint": self.query_endpoint})

    def _action_group(
        self, name: str, stack: str, rg: pulumi.Input[str], tags: dict[str, str], alerts: Alerts
    ) -> monitor.ActionGroup | None:
        """The receivers of `alerts`, in one action group; none without receivers."""
        if not alerts.emails and not alerts.webhooks:
            return None
        return monitor.ActionGroup(
            f"{name}-action-group",
            action_group_name=labels.name(stack, "alert-receivers"),
            group_short_name=spec.action_group_short_name(stack),
            enabled=True,
            email_receivers=spec.email_receivers(alerts),
            webhook_receivers=spec.webhook_receivers(alerts),
            resource_group_name=rg,
            location=spec.ACTION_GROUP_LOCATION,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _grafana(self, name: str, args: ManagedPrometheusArgs, tags: dict[str, str]) -> pulumi.Output[str]:
        """Managed Grafana on the workspace, and the dashboard posted through its API."""
        import pulumiverse_grafana as grafana  # only stacks with Grafana need this SDK

        child = pulumi.ResourceOptions(parent=self)
        cluster = args.cluster
        instance = dashboard.Grafana(
            f"{name}-grafana",
            workspace_name=labels.name(args.stack, "grafana")[: spec.GRAFANA_NAME_MAX],
            sku={"name": spec.GRAFANA_SKU},
            identity={"type": dashboard.ManagedServiceIdentityType.SYSTEM_ASSIGNED},
            properties=spec.grafana_properties(self.workspace.id),
            resource_group_name=cluster.resource_group_name,
            location=cluster.location,
            tags=tags,
            opts=child,
        )
        cluster.grant(
            f"{name}-grafana-reads-metrics",
            role=catalog.MONITORING_DATA_READER,
            principal_id=instance.identity.apply(lambda i: i.principal_id if i else ""),
            scope=self.workspace.id,
            parent=self,
        )
        admin = cluster.grant_deployer(
            f"{name}-deployer-grafana-admin", role=catalog.GRAFANA_ADMIN, scope=instance.id, parent=self
        )
        # The dashboard call is the Grafana Admin role's first use: wait for it to take effect.
        admin_ready = cluster.role_wait(f"{name}-deployer-grafana-admin", admin, parent=self)
        token = authorization.get_client_token_output(
            endpoint=GRAFANA_API_AUDIENCE, opts=pulumi.InvokeOutputOptions(parent=self)
        ).token
        endpoint = instance.properties.apply(lambda p: p.endpoint)
        provider = grafana.Provider(
            f"{name}-grafana-api",
            url=endpoint,
            auth=pulumi.Output.secret(token),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[admin_ready]),
        )
        grafana.oss.Dashboard(
            f"{name}-dashboard",
            config_json=metrics.DASHBOARD.read_text(),
            overwrite=True,
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        return endpoint

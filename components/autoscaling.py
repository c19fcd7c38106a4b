"""QueueAutoscaler: a KEDA ScaledObject that sizes the model server by llama-server's own queue,
read from managed Prometheus with a workload identity; the cluster autoscaler then brings or
removes GPU nodes for the pods it asks for."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure
import pulumi_kubernetes as k8s

from components import roles
from core import labels, metrics
from core.config import Autoscaling

# The AKS KEDA add-on runs its operator as this service account (learn.microsoft.com/azure/aks/keda-workload-identity).
KEDA_SUBJECT = "system:serviceaccount:kube-system:keda-operator"
TOKEN_AUDIENCE = "api://AzureADTokenExchange"


@dataclass(frozen=True)
class QueueAutoscalerArgs:
    stack: str
    autoscaling: Autoscaling
    parallel: int
    version: str
    location: str
    resource_group: pulumi.Input[str]
    subscription_id: pulumi.Input[str]
    oidc_issuer: pulumi.Input[str]
    workspace_id: pulumi.Input[str]
    query_endpoint: pulumi.Input[str]
    namespace: pulumi.Input[str]
    deployment: pulumi.Input[str]
    provider: k8s.Provider


def triggers(a: Autoscaling, parallel: int, namespace: str, query_endpoint: str) -> list[dict]:
    """Scale on queued requests first, and on busy slots before the queue forms."""
    common = {"serverAddress": query_endpoint}
    out = [
        {
            "type": "prometheus",
            "name": "deferred",
            "metadata": {
                **common,
                "query": metrics.deferred_requests(namespace),
                "threshold": f"{a.deferred_per_replica:g}",
            },
            "authenticationRef": {"name": "managed-prometheus"},
        },
        {
            "type": "prometheus",
            "name": "busy-slots",
            "metadata": {
                **common,
                "query": metrics.processing_requests(namespace),
                "threshold": f"{parallel * a.busy_slot_ratio:g}",
            },
            "authenticationRef": {"name": "managed-prometheus"},
        },
    ]
    if a.active_hours:
        h = a.active_hours
        out.append(
            {
                "type": "cron",
                "name": "active-hours",
                "metadata": {
                    "timezone": h.timezone,
                    "start": f"{int(h.start[3:])} {int(h.start[:2])} * * {h.days}",
                    "end": f"{int(h.end[3:])} {int(h.end[:2])} * * {h.days}",
                    "desiredReplicas": "1",
                },
            }
        )
    return out


class QueueAutoscaler(pulumi.ComponentResource):
    """KEDA ScaledObject on llama-server's queue, with the identity it queries Prometheus as."""

    def __init__(self, name: str, args: QueueAutoscalerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:autoscaling:QueueAutoscaler", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        k8s_child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        a, stack = args.autoscaling, args.stack
        meta_labels = labels.labels(stack, "autoscaler", args.version)

        identity = azure.managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_name_=labels.name(stack, "keda"),
            resource_group_name=args.resource_group,
            location=args.location,
            tags=labels.tags(stack, "autoscaler"),
            opts=child,
        )
        azure.managedidentity.FederatedIdentityCredential(
            f"{name}-federation",
            federated_identity_credential_resource_name="keda-operator",
            resource_name_=identity.name,
            resource_group_name=args.resource_group,
            issuer=args.oidc_issuer,
            subject=KEDA_SUBJECT,
            audiences=[TOKEN_AUDIENCE],
            opts=child,
        )
        reader = roles.grant(
            f"{name}-reads-metrics",
            role=roles.MONITORING_DATA_READER,
            principal_id=identity.principal_id,
            scope=args.workspace_id,
            subscription_id=args.subscription_id,
            parent=self,
            service_principal=True,
        )
        auth = k8s.apiextensions.CustomResource(
            f"{name}-trigger-auth",
            api_version="keda.sh/v1alpha1",
            kind="TriggerAuthentication",
            metadata={"name": "managed-prometheus", "namespace": args.namespace, "labels": meta_labels},
            spec={"podIdentity": {"provider": "azure-workload", "identityId": identity.client_id}},
            opts=k8s_child,
        )
        self.scaled_object = k8s.apiextensions.CustomResource(
            f"{name}-scaledobject",
            api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata={"name": args.deployment, "namespace": args.namespace, "labels": meta_labels},
            spec={
                "scaleTargetRef": {"name": args.deployment},
                "minReplicaCount": a.min_replicas,
                "maxReplicaCount": a.max_replicas,
                "cooldownPeriod": a.cooldown_seconds,
                "pollingInterval": a.polling_seconds,
                "triggers": pulumi.Output.all(args.namespace, args.query_endpoint).apply(
                    lambda v: triggers(a, args.parallel, v[0], v[1])
                ),
            },
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[auth, reader]),
        )
        self.register_outputs({"scaledObject": self.scaled_object.metadata["name"]})

"""QueueAutoscaler: a KEDA ScaledObject that sizes the model server by llama-server's own queue,
read from managed Prometheus with a workload identity; the cluster autoscaler then brings or
removes GPU nodes for the pods it asks for."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import AksCluster
from components.observability import ManagedPrometheus
from components.serving import ModelServer
from core import catalog, labels
from core.config import Autoscaling
from specs import autoscaling as spec

# The AKS KEDA add-on runs its operator as this service account (learn.microsoft.com/azure/aks/keda-workload-identity).
KEDA_SUBJECT = "system:serviceaccount:kube-system:keda-operator"


@dataclass(frozen=True, kw_only=True)
class QueueAutoscalerArgs:
    stack: str  # the stack name; every name and label derives from it
    autoscaling: Autoscaling  # config `autoscaling`: bounds, thresholds, active hours
    cluster: AksCluster  # its OIDC issuer, KEDA add-on and Kubernetes provider
    metrics: ManagedPrometheus  # the workspace KEDA queries
    server: ModelServer  # the Deployment it scales, and its slot count


class QueueAutoscaler(pulumi.ComponentResource):
    """KEDA ScaledObject on llama-server's queue, with the identity it queries Prometheus as."""

    def __init__(self, name: str, args: QueueAutoscalerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:autoscaling:QueueAutoscaler", name, None, opts)
        k8s_child = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)
        a, stack, cluster, server = args.autoscaling, args.stack, args.cluster, args.server
        meta = labels.labels(stack, "autoscaler", server.version)

        identity, _ = cluster.workload_identity(
            name,
            identity_name=labels.name(stack, "keda"),
            credential_name="keda-operator",
            subject=KEDA_SUBJECT,
            tags=labels.tags(stack, "autoscaler"),
            parent=self,
        )
        reader = cluster.grant(
            f"{name}-reads-metrics",
            role=catalog.MONITORING_DATA_READER,
            principal_id=identity.principal_id,
            scope=args.metrics.workspace.id,
            parent=self,
        )
        auth = k8s.apiextensions.CustomResource(
            f"{name}-trigger-auth",
            api_version="keda.sh/v1alpha1",
            kind="TriggerAuthentication",
            metadata={"name": spec.AUTH_NAME, "namespace": server.namespace, "labels": meta},
            spec={"podIdentity": {"provider": "azure-workload", "identityId": identity.client_id}},
            opts=k8s_child,
        )
        triggers = pulumi.Output.all(server.namespace, args.metrics.query_endpoint).apply(
            lambda v: spec.triggers(a, server.parallel, v[0], v[1])
        )
        self.scaled_object = k8s.apiextensions.CustomResource(
            f"{name}-scaledobject",
            api_version="keda.sh/v1alpha1",
            kind="ScaledObject",
            metadata={"name": server.deployment_name, "namespace": server.namespace, "labels": meta},
            spec=spec.scaled_object_spec(a, server.deployment_name, triggers),
            opts=k8s_child.merge(pulumi.ResourceOptions(depends_on=[auth, reader])),
        )
        # The ScaledObject is named after the Deployment it scales.
        self.register_outputs({"scaledObject": server.deployment_name})

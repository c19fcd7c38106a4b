"""StandbyFront: Envoy before a server that scales to zero. While no replica exists it answers at
once (503, Retry-After, "starting, about N minutes") and counts the request, the demand that KEDA's
wake trigger reads; otherwise it proxies. No queue: nothing is held."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import AksCluster
from components.serving import ModelServer
from core import labels
from core.config import Service
from core.first_token import StartingAnswer
from specs import autoscaling as spec
from specs.k8s import pod_monitor_spec


@dataclass(frozen=True, kw_only=True)
class StandbyFrontArgs:
    stack: str  # the stack name; every name and label derives from it
    image: str  # config `autoscaling.frontImage`, pinned by digest
    answer: StartingAnswer  # what a request gets while no replica exists (the scale-from-zero estimate)
    service: Service  # config `service`: who may call the API (the front admits the same callers)
    public: bool  # config `ingress.enabled`: the public gateway's proxies may reach the front
    cluster: AksCluster  # its Kubernetes provider
    server: ModelServer  # the namespace, and the headless Service of the pods the front sends to


class StandbyFront(pulumi.ComponentResource):
    """Envoy's bootstrap, Deployment, NetworkPolicy and PodMonitor; the server's Service selects its pods."""

    def __init__(self, name: str, args: StandbyFrontArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:autoscaling:StandbyFront", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)
        server, names = args.server, args.server.names
        meta = labels.labels(args.stack, "front", labels.image_version(args.image))
        metadata: k8s.meta.v1.ObjectMetaArgsDict = {"name": names.front, "namespace": server.namespace, "labels": meta}
        # The pods' DNS name in full: Envoy's resolver is not bound to the pod's search domains.
        self.upstream = f"{names.pods}.{names.namespace}.svc.cluster.local"
        config = spec.front_config(self.upstream, server.container_port, args.answer)

        config_map = k8s.core.v1.ConfigMap(f"{name}-config", metadata=metadata, data=config, opts=child)
        # The policy exists before the pods, so a front never runs without it.
        policy = k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=metadata,
            spec=spec.front_network_policy_spec(
                args.service, server.container_port, server.front_selector, server.selector, public=args.public
            ),
            opts=child,
        )
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=metadata,
            spec=spec.front_deployment_spec(
                args.image, config_map.metadata["name"], config, meta, server.front_selector
            ),
            opts=child.merge(pulumi.ResourceOptions(depends_on=[policy])),
        )
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="azmonitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata=metadata,
            spec=pod_monitor_spec(server.front_selector, spec.FRONT_ADMIN_PORT_NAME, path=spec.FRONT_STATS_PATH),
            opts=child,
        )
        self.register_outputs({})

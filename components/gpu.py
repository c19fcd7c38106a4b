"""NvidiaDevicePlugin: NVIDIA's device plugin as a DaemonSet on the GPU pool, so `nvidia.com/gpu`
is advertised. Declared in code rather than as the Helm chart so that it renders and is checked
offline like every other object."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import AksCluster
from core import labels
from specs import gpu as spec
from specs.k8s import namespace_metadata


@dataclass(frozen=True, kw_only=True)
class NvidiaDevicePluginArgs:
    stack: str  # the stack name, for labels
    image: str  # config `cluster.devicePluginImage`
    cluster: AksCluster  # whose GPU nodes it runs on (its Kubernetes provider)


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """The device plugin DaemonSet, in its own namespace, on GPU nodes only."""

    def __init__(self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:gpu:NvidiaDevicePlugin", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)
        meta = labels.labels(args.stack, "device-plugin", labels.image_version(args.image))
        # hostPath volumes are outside every Pod Security level but privileged.
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=namespace_metadata("nvidia-device-plugin", meta, "privileged"), opts=child
        )
        ns = namespace.metadata["name"]
        # The plugin talks only to the kubelet, over a host socket: no network in or out.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-deny-all",
            metadata={"name": "deny-all", "namespace": ns, "labels": meta},
            spec=spec.deny_all(),
            opts=child,
        )
        self.daemonset = k8s.apps.v1.DaemonSet(
            f"{name}-ds",
            metadata={
                "name": "nvidia-device-plugin",
                "namespace": ns,
                "labels": meta,
                "annotations": spec.DEVICE_PLUGIN_CHECKOV_SKIPS,
            },
            spec=spec.daemonset_spec(
                labels.selector(args.stack, "device-plugin"), meta, spec.device_plugin_pod(args.image)
            ),
            opts=child,
        )
        self.register_outputs({"daemonset": self.daemonset.metadata["name"]})

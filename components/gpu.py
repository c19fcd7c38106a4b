"""NvidiaDevicePlugin: NVIDIA's device plugin as a DaemonSet on the GPU pool, so `nvidia.com/gpu` is advertised.

Follows NVIDIA's static manifest (nvidia-device-plugin.yml in NVIDIA/k8s-device-plugin) and AKS's
GPU guide (learn.microsoft.com/azure/aks/gpu-cluster). Declared in code rather than as the Helm
chart so that it renders and is checked offline like every other object.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import GPU_POOL_LABEL, GPU_TAINT, SPOT_TAINT
from core import labels

# Where the kubelet listens for device plugins; the plugin must write its socket there.
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"

# The device plugin talks to the kubelet over a root-owned host socket; these checkov rules cannot hold for it.
CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_23=the plugin must run as root to write the kubelet's device-plugin socket",
    "checkov.io/skip2": "CKV_K8S_40=the plugin must run as root (uid 0) to write the kubelet's device-plugin socket",
    "checkov.io/skip3": "CKV_K8S_43=the image is pinned by tag in cluster.devicePluginImage; set a digest there to pin it further",
    "checkov.io/skip4": "CKV_K8S_8=the plugin has no HTTP endpoint to probe; the kubelet restarts it when its socket goes",
    "checkov.io/skip5": "CKV_K8S_9=the plugin has no HTTP endpoint to probe; the kubelet restarts it when its socket goes",
}


@dataclass(frozen=True)
class NvidiaDevicePluginArgs:
    stack: str
    image: str
    provider: k8s.Provider


def gpu_tolerations() -> list[dict[str, str]]:
    """Tolerations every GPU workload needs: our pool taint, the spot taint, NVIDIA's own."""
    return [
        {"key": GPU_TAINT[0], "operator": "Equal", "value": GPU_TAINT[1], "effect": GPU_TAINT[2]},
        {"key": SPOT_TAINT[0], "operator": "Equal", "value": SPOT_TAINT[1], "effect": SPOT_TAINT[2]},
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    ]


def gpu_node_selector() -> dict[str, str]:
    return {GPU_POOL_LABEL[0]: GPU_POOL_LABEL[1]}


class NvidiaDevicePlugin(pulumi.ComponentResource):
    """The device plugin DaemonSet, in its own namespace, on GPU nodes only."""

    def __init__(self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:gpu:NvidiaDevicePlugin", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        version = labels.image_version(args.image)
        meta_labels = labels.labels(args.stack, "device-plugin", version)
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={
                "name": "nvidia-device-plugin",
                # hostPath volumes are outside every Pod Security level but privileged.
                "labels": {**meta_labels, **labels.pod_security("privileged")},
            },
            opts=child,
        )
        # The plugin talks only to the kubelet, over a host socket: no network in or out.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-deny-all",
            metadata={"name": "deny-all", "namespace": namespace.metadata["name"], "labels": meta_labels},
            spec={"pod_selector": {}, "policy_types": ["Ingress", "Egress"]},
            opts=child,
        )
        self.daemonset = k8s.apps.v1.DaemonSet(
            f"{name}-ds",
            metadata={
                "name": "nvidia-device-plugin",
                "namespace": namespace.metadata["name"],
                "labels": meta_labels,
                "annotations": CHECKOV_SKIPS,
            },
            spec={
                "selector": {"match_labels": labels.selector(args.stack, "device-plugin")},
                "update_strategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": meta_labels},
                    "spec": {
                        "priority_class_name": "system-node-critical",
                        "node_selector": gpu_node_selector(),
                        "tolerations": gpu_tolerations(),
                        "automount_service_account_token": False,
                        "security_context": {"seccomp_profile": {"type": "RuntimeDefault"}},
                        "containers": [
                            {
                                "name": "nvidia-device-plugin",
                                "image": args.image,
                                "image_pull_policy": "Always",
                                "env": [{"name": "FAIL_ON_INIT_ERROR", "value": "false"}],
                                "security_context": {
                                    "allow_privilege_escalation": False,
                                    "read_only_root_filesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "resources": {
                                    "requests": {"cpu": "50m", "memory": "64Mi"},
                                    "limits": {"cpu": "200m", "memory": "256Mi"},
                                },
                                "volume_mounts": [{"name": "device-plugin", "mount_path": DEVICE_PLUGIN_DIR}],
                            }
                        ],
                        "volumes": [{"name": "device-plugin", "host_path": {"path": DEVICE_PLUGIN_DIR}}],
                    },
                },
            },
            opts=child,
        )
        self.register_outputs({"daemonset": self.daemonset.metadata["name"]})

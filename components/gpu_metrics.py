"""DcgmExporter: NVIDIA's DCGM exporter on the GPU pool, so GPU memory and utilisation reach
managed Prometheus (the dashboard's GPU memory panel reads DCGM_FI_DEV_FB_USED).

Follows NVIDIA's static manifest (dcgm-exporter.yaml in NVIDIA/dcgm-exporter) in its non-root
form: without SYS_ADMIN it exports the device metrics (memory, utilisation), not the profiling
ones (DCGM_FI_PROF_*), which this project does not use. Without the kubelet's pod-resources
socket (no per-pod GPU labels, which one pod per GPU makes redundant) it needs no host path, so
it runs under Pod Security `restricted`; the NVIDIA container runtime gives it the GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.gpu import gpu_node_selector, gpu_tolerations
from core import labels

PORT = 9400
CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_43=the image is pinned by tag in cluster.dcgmExporterImage; set a digest there to pin it further",
}


@dataclass(frozen=True)
class DcgmExporterArgs:
    stack: str
    image: str
    provider: k8s.Provider


class DcgmExporter(pulumi.ComponentResource):
    """GPU metrics from every GPU node, scraped by managed Prometheus."""

    def __init__(self, name: str, args: DcgmExporterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:gpu:DcgmExporter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        version = labels.image_version(args.image)
        meta_labels = labels.labels(args.stack, "gpu-metrics", version)
        select = labels.selector(args.stack, "gpu-metrics")
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={
                "name": "nvidia-dcgm-exporter",
                "labels": {**meta_labels, **labels.pod_security("restricted")},
            },
            opts=child,
        )
        ns = namespace.metadata["name"]
        k8s.apps.v1.DaemonSet(
            f"{name}-ds",
            metadata={"name": "dcgm-exporter", "namespace": ns, "labels": meta_labels, "annotations": CHECKOV_SKIPS},
            spec={
                "selector": {"match_labels": select},
                "update_strategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": meta_labels},
                    "spec": {
                        "node_selector": gpu_node_selector(),
                        "tolerations": gpu_tolerations(),
                        "automount_service_account_token": False,
                        "security_context": {
                            "run_as_non_root": True,
                            "run_as_user": 10002,
                            "run_as_group": 10002,
                            "seccomp_profile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": "dcgm-exporter",
                                "image": args.image,
                                "image_pull_policy": "Always",
                                "env": [
                                    {"name": "DCGM_EXPORTER_LISTEN", "value": f":{PORT}"},
                                    {"name": "DCGM_EXPORTER_KUBERNETES", "value": "false"},
                                    {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                                    {"name": "NODE_NAME", "value_from": {"field_ref": {"field_path": "spec.nodeName"}}},
                                ],
                                "ports": [{"name": "metrics", "container_port": PORT, "protocol": "TCP"}],
                                "security_context": {
                                    "allow_privilege_escalation": False,
                                    "read_only_root_filesystem": True,
                                    "run_as_non_root": True,
                                    "capabilities": {"drop": ["ALL"]},
                                    "seccomp_profile": {"type": "RuntimeDefault"},
                                },
                                "resources": {
                                    "requests": {"cpu": "100m", "memory": "128Mi"},
                                    "limits": {"cpu": "200m", "memory": "256Mi"},
                                },
                                "liveness_probe": {"http_get": {"path": "/health", "port": PORT}, "period_seconds": 30},
                                "readiness_probe": {
                                    "http_get": {"path": "/health", "port": PORT},
                                    "period_seconds": 10,
                                },
                                # NVIDIA's manifest: a read-only root needs a writable /tmp.
                                "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
                            }
                        ],
                        "volumes": [{"name": "tmp", "empty_dir": {"medium": "Memory", "size_limit": "64Mi"}}],
                    },
                },
            },
            opts=child,
        )
        # Only the managed Prometheus scrapers (kube-system) may reach it; it talks to nobody.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata={"name": "dcgm-exporter", "namespace": ns, "labels": meta_labels},
            spec={
                "pod_selector": {},
                "policy_types": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "kube-system"}}}
                        ],
                        "ports": [{"port": PORT, "protocol": "TCP"}],
                    }
                ],
            },
            opts=child,
        )
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="azmonitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": "dcgm-exporter", "namespace": ns, "labels": meta_labels},
            spec={
                "selector": {"matchLabels": select},
                "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}],
            },
            opts=child,
        )
        self.register_outputs({})

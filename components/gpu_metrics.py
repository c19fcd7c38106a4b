"""DcgmExporter: NVIDIA's DCGM exporter on the GPU pool, so GPU memory and utilisation reach
managed Prometheus (the dashboard's GPU memory panel reads DCGM_FI_DEV_FB_USED).

Non-root: without SYS_ADMIN it exports the device metrics (memory, utilisation), not the
profiling ones (DCGM_FI_PROF_*), which this project does not use. Without the kubelet's
pod-resources socket (per-pod GPU labels, which one pod per GPU makes redundant) it needs no host
path, so it runs under Pod Security `restricted`; the NVIDIA container runtime gives it the GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import AksCluster
from core import labels
from specs import gpu as spec
from specs.k8s import namespace_metadata, pod_monitor_spec


@dataclass(frozen=True, kw_only=True)
class DcgmExporterArgs:
    stack: str  # the stack name, for labels
    image: str  # config `cluster.dcgmExporterImage`
    cluster: AksCluster  # whose GPU nodes it runs on (its Kubernetes provider)


class DcgmExporter(pulumi.ComponentResource):
    """GPU metrics from every GPU node, scraped by managed Prometheus."""

    def __init__(self, name: str, args: DcgmExporterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:gpu:DcgmExporter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.cluster.provider)
        meta = labels.labels(args.stack, "gpu-metrics", labels.image_version(args.image))
        select = labels.selector(args.stack, "gpu-metrics")
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=namespace_metadata(spec.DCGM_NAMESPACE, meta, "restricted"), opts=child
        )
        ns = namespace.metadata["name"]

        metadata: k8s.meta.v1.ObjectMetaArgsDict = {"name": "dcgm-exporter", "namespace": ns, "labels": meta}

        k8s.apps.v1.DaemonSet(
            f"{name}-ds",
            metadata=metadata,
            spec=spec.daemonset_spec(select, meta, spec.dcgm_exporter_pod(args.image)),
            opts=child,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=metadata, spec=spec.dcgm_network_policy(), opts=child
        )
        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="azmonitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata=metadata,
            spec=pod_monitor_spec(select, "metrics"),
            opts=child,
        )
        # Its NVIDIA_VISIBLE_DEVICES=all would work for any pod: an admission policy keeps it to this one.
        policy_name = labels.name(args.stack, "gpu-env")
        policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-gpu-env",
            metadata={"name": policy_name, "labels": meta},
            spec=spec.gpu_env_policy_spec(spec.DCGM_NAMESPACE),
            opts=child,
        )
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-gpu-env-binding",
            metadata={"name": policy_name, "labels": meta},
            spec={"policy_name": policy.metadata["name"], "validation_actions": ["Deny"]},
            opts=child.merge(pulumi.ResourceOptions(depends_on=[policy])),
        )
        self.register_outputs({})

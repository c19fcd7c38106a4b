"""Kubernetes fragments more than one component uses: security contexts, GPU scheduling, peers,
namespace metadata and PodMonitors. Each has this one home."""

from __future__ import annotations

from typing import Any

import pulumi_kubernetes as k8s

from core import labels

# The uid the llama-server image runs as (image/Dockerfile: useradd --uid 10001).
SERVER_UID = 10001
# A uid of its own for the DCGM exporter, which NVIDIA's distroless image leaves to the pod.
DCGM_UID = 10002
# Azure managed Prometheus runs its scrapers in kube-system: the ama-metrics Deployment (it
# scrapes PodMonitor targets) and the ama-metrics-node DaemonSet. Their pod labels, from the
# add-on's chart (Azure/prometheus-collector, otelcollector/deploy/addon-chart/
# azure-monitor-metrics-addon/templates/ama-metrics-deployment.yaml and -daemonset.yaml).
SCRAPER_NAMESPACE = "kube-system"
SCRAPER_POD_LABELS = ({"rsName": "ama-metrics"}, {"dsName": "ama-metrics-node"})
# Where cluster DNS (CoreDNS) runs.
DNS_NAMESPACE = "kube-system"


def restricted_container_security(uid: int | None = None) -> k8s.core.v1.SecurityContextArgsDict:
    """A container under Pod Security `restricted`: non-root, read-only root, nothing to escalate."""
    context: k8s.core.v1.SecurityContextArgsDict = {"run_as_non_root": True}
    if uid is not None:
        context.update({"run_as_user": uid, "run_as_group": uid})
    context.update(
        {
            "allow_privilege_escalation": False,
            "read_only_root_filesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccomp_profile": {"type": "RuntimeDefault"},
        }
    )
    return context


def restricted_pod_security(uid: int, fs_group: bool = False) -> k8s.core.v1.PodSecurityContextArgsDict:
    """The pod-level half of `restricted`; `fs_group` makes mounted volumes writable by `uid`."""
    context: k8s.core.v1.PodSecurityContextArgsDict = {"run_as_non_root": True, "run_as_user": uid, "run_as_group": uid}
    if fs_group:
        context.update({"fs_group": uid, "fs_group_change_policy": "OnRootMismatch"})
    context["seccomp_profile"] = {"type": "RuntimeDefault"}
    return context


def gpu_tolerations() -> list[k8s.core.v1.TolerationArgsDict]:
    """Tolerations every GPU workload needs: our pool taint, the spot taint, NVIDIA's own."""
    ours: list[k8s.core.v1.TolerationArgsDict] = [
        {"key": key, "operator": "Equal", "value": value, "effect": effect}
        for key, value, effect in (labels.GPU_TAINT, labels.SPOT_TAINT)
    ]
    return [*ours, {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def gpu_node_selector() -> dict[str, str]:
    return {labels.GPU_POOL_LABEL[0]: labels.GPU_POOL_LABEL[1]}


def namespace_peer(namespace: str) -> k8s.networking.v1.NetworkPolicyPeerArgsDict:
    """Every pod of one namespace, as a NetworkPolicy peer."""
    return {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": namespace}}}


def scraper_peers() -> list[k8s.networking.v1.NetworkPolicyPeerArgsDict]:
    """The managed Prometheus scraper pods, and no other pod of kube-system."""
    return [
        {**namespace_peer(SCRAPER_NAMESPACE), "pod_selector": {"match_labels": pod_labels}}
        for pod_labels in SCRAPER_POD_LABELS
    ]


# Where a pod that fetches from the internet must never reach: private (RFC 1918), shared
# (RFC 6598, carrier NAT), loopback, link-local (169.254.0.0/16 holds the instance metadata
# service) and the overlay's pod and service ranges, which lie inside 10.0.0.0/8.
NON_PUBLIC_RANGES = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
)


def public_https_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgsDict:
    """HTTPS to public IPv4 addresses only."""
    return {
        "to": [{"ip_block": {"cidr": "0.0.0.0/0", "except_": list(NON_PUBLIC_RANGES)}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }


def dns_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgsDict:
    return {
        "to": [namespace_peer(DNS_NAMESPACE)],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    }


def namespace_metadata(name: str, meta: dict[str, str], pod_security: str) -> k8s.meta.v1.ObjectMetaArgsDict:
    """A namespace that enforces one Pod Security Standard level."""
    return {"name": name, "labels": {**meta, **labels.pod_security(pod_security)}}


def pod_monitor_spec(
    selector: dict[str, str], port: str, bearer_secret: tuple[str, str] | None = None, path: str = "/metrics"
) -> dict[str, Any]:
    """What managed Prometheus scrapes (azmonitoring.coreos.com/v1 PodMonitor; no typed SDK class).

    `bearer_secret` (Secret name, key) sends that value as a bearer token with every scrape.
    """
    endpoint: dict[str, Any] = {"port": port, "path": path, "interval": "30s"}
    if bearer_secret:
        endpoint["authorization"] = {
            "type": "Bearer",
            "credentials": {"name": bearer_secret[0], "key": bearer_secret[1]},
        }
    return {"selector": {"matchLabels": selector}, "podMetricsEndpoints": [endpoint]}

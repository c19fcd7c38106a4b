"""Specs of the GPU node agents: NVIDIA's device plugin and DCGM exporter DaemonSets.

Both follow NVIDIA's static manifests (nvidia-device-plugin.yml in NVIDIA/k8s-device-plugin,
dcgm-exporter.yaml in NVIDIA/dcgm-exporter) and AKS's GPU guide
(learn.microsoft.com/azure/aks/gpu-cluster).
"""

from __future__ import annotations

import pulumi_kubernetes as k8s

from specs.k8s import (
    DCGM_UID,
    gpu_node_selector,
    gpu_tolerations,
    restricted_container_security,
    restricted_pod_security,
    scraper_peers,
)

# Where the kubelet listens for device plugins; the plugin must write its socket there.
DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
DCGM_PORT = 9400
DCGM_NAMESPACE = "nvidia-dcgm-exporter"

# The device plugin talks to the kubelet over a root-owned host socket; these checkov rules cannot hold for it.
DEVICE_PLUGIN_CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_23=the plugin must run as root to write the kubelet's device-plugin socket",
    "checkov.io/skip2": "CKV_K8S_40=the plugin must run as root (uid 0) to write the kubelet's device-plugin socket",
    "checkov.io/skip3": "CKV_K8S_8=the plugin has no HTTP endpoint to probe; the kubelet restarts it when its socket goes",
    "checkov.io/skip4": "CKV_K8S_9=the plugin has no HTTP endpoint to probe; the kubelet restarts it when its socket goes",
}


def device_plugin_pod(image: str) -> k8s.core.v1.PodSpecArgsDict:
    return {
        "priority_class_name": "system-node-critical",
        "node_selector": gpu_node_selector(),
        "tolerations": gpu_tolerations(),
        "automount_service_account_token": False,
        "security_context": {"seccomp_profile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "nvidia-device-plugin",
                "image": image,
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
    }


def dcgm_exporter_pod(image: str) -> k8s.core.v1.PodSpecArgsDict:
    """Non-root: device metrics (memory, utilisation) without SYS_ADMIN or the kubelet's socket."""
    health: k8s.core.v1.HTTPGetActionArgsDict = {"path": "/health", "port": DCGM_PORT}
    return {
        "node_selector": gpu_node_selector(),
        "tolerations": gpu_tolerations(),
        "automount_service_account_token": False,
        "security_context": restricted_pod_security(DCGM_UID),
        "containers": [
            {
                "name": "dcgm-exporter",
                "image": image,
                "image_pull_policy": "Always",
                "env": [
                    {"name": "DCGM_EXPORTER_LISTEN", "value": f":{DCGM_PORT}"},
                    {"name": "DCGM_EXPORTER_KUBERNETES", "value": "false"},
                    {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
                    {"name": "NODE_NAME", "value_from": {"field_ref": {"field_path": "spec.nodeName"}}},
                ],
                "ports": [{"name": "metrics", "container_port": DCGM_PORT, "protocol": "TCP"}],
                "security_context": restricted_container_security(),
                "resources": {
                    "requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "200m", "memory": "256Mi"},
                },
                "liveness_probe": {"http_get": health, "period_seconds": 30},
                "readiness_probe": {"http_get": health, "period_seconds": 10},
                # NVIDIA's manifest: a read-only root needs a writable /tmp.
                "volume_mounts": [{"name": "tmp", "mount_path": "/tmp"}],
            }
        ],
        "volumes": [{"name": "tmp", "empty_dir": {"medium": "Memory", "size_limit": "64Mi"}}],
    }


def daemonset_spec(
    selector: dict[str, str], meta: dict[str, str], pod: k8s.core.v1.PodSpecArgsDict
) -> k8s.apps.v1.DaemonSetSpecArgsDict:
    return {
        "selector": {"match_labels": selector},
        "update_strategy": {"type": "RollingUpdate"},
        "template": {"metadata": {"labels": meta}, "spec": pod},
    }


def dcgm_network_policy() -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """Only the managed Prometheus scrapers may reach the exporter; it talks to nobody."""
    return {
        "pod_selector": {},
        "policy_types": ["Ingress", "Egress"],
        "ingress": [{"from_": scraper_peers(), "ports": [{"port": DCGM_PORT, "protocol": "TCP"}]}],
    }


# The NVIDIA container runtime hands every GPU of the node to a container whose environment
# names them (NVIDIA_VISIBLE_DEVICES=all), whether or not it asked the device plugin for one.
# The DCGM exporter needs that to read the GPUs; no other pod may use it.
GPU_ENV = "NVIDIA_VISIBLE_DEVICES"
# The values that hand over no GPU (NVIDIA container toolkit: `void` and `none`); always allowed.
NO_GPUS = "void"
NO_GPU_VALUES = ("void", "none")
# Namespaces AKS manages (its GPU driver and add-ons) are left to AKS.
GPU_ENV_EXEMPT = ("kube-system",)


def gpu_env_policy_spec(exempt_namespace: str) -> k8s.admissionregistration.v1.ValidatingAdmissionPolicySpecArgsDict:
    """Refuses any pod but the exporter's that names GPUs in NVIDIA_VISIBLE_DEVICES (`void`/`none` pass).

    Out of its reach: a value baked into a container image's environment (every nvidia/cuda image
    sets `all`), which admission never sees; our own CUDA-image containers that need no GPU set
    `void` (specs/serving.py)."""
    containers = " + ".join(
        ["object.spec.containers"]
        + [f"(has(object.spec.{kind}) ? object.spec.{kind} : [])" for kind in ("initContainers", "ephemeralContainers")]
    )
    return {
        "failure_policy": "Fail",
        "match_constraints": {
            "resource_rules": [
                {
                    "api_groups": [""],
                    "api_versions": ["v1"],
                    "operations": ["CREATE", "UPDATE"],
                    # `kubectl debug` adds ephemeral containers through this subresource, which a
                    # rule for `pods` alone does not match.
                    "resources": ["pods", "pods/ephemeralcontainers"],
                }
            ],
            "namespace_selector": {
                "match_expressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "NotIn",
                        "values": [exempt_namespace, *GPU_ENV_EXEMPT],
                    }
                ]
            },
        },
        "validations": [
            {
                "expression": (
                    f"({containers}).all(c, !has(c.env) || c.env.all(e, e.name != '{GPU_ENV}'"
                    f" || (has(e.value) && e.value in {list(NO_GPU_VALUES)})))"
                ),
                "message": f"only the DCGM exporter may set {GPU_ENV} to GPUs; request nvidia.com/gpu instead",
            },
            {
                # envFrom copies a ConfigMap's or Secret's keys, which admission cannot read: it
                # passes only with a prefix that no key can complete into the variable's name.
                "expression": (
                    f"({containers}).all(c, !has(c.envFrom) || c.envFrom.all(f, has(f.prefix) && f.prefix != ''"
                    f" && !'{GPU_ENV}'.startsWith(f.prefix)))"
                ),
                "message": (
                    f"envFrom could set {GPU_ENV} from a ConfigMap or Secret; give each envFrom a prefix "
                    f"that {GPU_ENV} does not start with, or list the variables in env"
                ),
            },
        ],
    }


def deny_all() -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    return {"pod_selector": {}, "policy_types": ["Ingress", "Egress"]}

"""Specs of the model server's objects: the pod (download init containers, llama-server, probes,
drain hook), its Deployment, Service, volume claim, disruption budget and network policy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import pulumi
import pulumi_kubernetes as k8s

from core.config import ModelFiles, Server, Service
from core.server_args import ServerPaths, llama_server_args
from specs.k8s import (
    SCRAPER_NAMESPACE,
    SERVER_UID,
    dns_egress,
    gpu_node_selector,
    gpu_tolerations,
    namespace_peer,
    restricted_container_security,
    restricted_pod_security,
)

MODEL_DIR = "/models"
API_KEY_DIR = "/var/run/secrets/llama-server"
API_KEY_FILE = "api-key"  # the key inside the API key Secret, and the file name it mounts as
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
HF_TOKEN_FILE = "token"
PORT_NAME = "http"
PROBE_PERIOD_SECONDS = 10
# image/drain.sh first waits this long (its DRAIN_SETTLE_SECONDS default) for the Service to
# stop sending requests, then polls; its polling budget is what is left of the grace period.
DRAIN_SETTLE_SECONDS = 5
SECRET_FILE_MODE = 0o440
TMP_SIZE = "1Gi"
FETCH_RESOURCES: k8s.core.v1.ResourceRequirementsArgsDict = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}


@dataclass(frozen=True, kw_only=True)
class PodInputs:
    """What the server pod is made of besides config: image, names of its objects, secrets present."""

    image: pulumi.Input[str]  # the llama-server image, by digest
    server_name: str  # name of the Deployment, its PVC and Secrets
    service_account: pulumi.Input[str]  # the pod's ServiceAccount (an output: the pod waits for it)
    api_key_secret: pulumi.Input[str]  # name of the Secret holding the API key
    hf_token_secret: pulumi.Input[str] | None = None  # name of the Hugging Face token Secret, if any


def api_key_secret_name(server_name: str) -> str:
    """The Secret holding the API key (the server mounts it; the scraper and the load test read it)."""
    return f"{server_name}-api-key"


def server_paths(model: ModelFiles) -> ServerPaths:
    return ServerPaths(
        model=f"{MODEL_DIR}/{model.file}",
        mmproj=f"{MODEL_DIR}/{model.mmproj_file}",
        api_key_file=f"{API_KEY_DIR}/{API_KEY_FILE}",
    )


def update_strategy(max_replicas: int) -> k8s.apps.v1.DeploymentStrategyArgsDict:
    """One GPU per pod: a surge pod would wait forever for a GPU the old pod holds."""
    if max_replicas == 1:
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rolling_update": {"max_surge": 0, "max_unavailable": 1}}


class Probes(NamedTuple):
    startup: k8s.core.v1.ProbeArgsDict
    readiness: k8s.core.v1.ProbeArgsDict
    liveness: k8s.core.v1.ProbeArgsDict


def probes(startup_timeout_seconds: int) -> Probes:
    """The startup probe owns the whole model load; liveness starts only after it passes."""
    http: k8s.core.v1.HTTPGetActionArgsDict = {"path": "/health", "port": PORT_NAME}
    return Probes(
        startup={
            "http_get": http,
            "period_seconds": PROBE_PERIOD_SECONDS,
            "timeout_seconds": 5,
            "failure_threshold": math.ceil(startup_timeout_seconds / PROBE_PERIOD_SECONDS),
        },
        readiness={"http_get": http, "period_seconds": 10, "timeout_seconds": 5, "failure_threshold": 3},
        # A busy server still answers /health from its HTTP thread; 3 minutes of silence is a hang.
        liveness={"http_get": http, "period_seconds": 30, "timeout_seconds": 10, "failure_threshold": 6},
    )


def fetch_container(
    name: str, image: pulumi.Input[str], url: str, file: str, sha256: str, hf_token: bool
) -> k8s.core.v1.ContainerArgsDict:
    """An init container that downloads one file into the model volume (image/fetch-model.sh)."""
    mounts: list[k8s.core.v1.VolumeMountArgsDict] = [
        {"name": "models", "mount_path": MODEL_DIR},
        {"name": "tmp", "mount_path": "/tmp"},
    ]
    env: list[k8s.core.v1.EnvVarArgsDict] = []
    if hf_token:
        mounts.append({"name": "hf-token", "mount_path": HF_TOKEN_DIR, "read_only": True})
        env.append({"name": "HF_TOKEN_FILE", "value": f"{HF_TOKEN_DIR}/{HF_TOKEN_FILE}"})
    return {
        "name": name,
        "image": image,
        "image_pull_policy": "Always",
        "command": ["/usr/local/bin/fetch-model.sh"],
        "args": [url, f"{MODEL_DIR}/{file}", sha256],
        "env": env,
        "security_context": restricted_container_security(SERVER_UID),
        "resources": FETCH_RESOURCES,
        "volume_mounts": mounts,
    }


def fetch_containers(
    model: ModelFiles, image: pulumi.Input[str], hf_token: bool
) -> list[k8s.core.v1.ContainerArgsDict]:
    """The model, then its vision projector: each downloaded once, verified, kept on the volume."""
    return [
        fetch_container(name, image, model.url(file), file, sha256, hf_token)
        for name, file, sha256 in (
            ("fetch-model", model.file, model.sha256),
            ("fetch-mmproj", model.mmproj_file, model.mmproj_sha256),
        )
    ]


def server_container(server: Server, image: pulumi.Input[str], paths: ServerPaths) -> k8s.core.v1.ContainerArgsDict:
    """llama-server itself: the command line from config, one GPU, probes and the drain hook."""
    r = server.resources
    probe = probes(server.startup_timeout_seconds)
    return {
        "name": "llama-server",
        "image": image,
        "image_pull_policy": "Always",
        "args": llama_server_args(server, paths),
        "ports": [{"name": PORT_NAME, "container_port": server.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": r.requests.cpu, "memory": r.requests.memory, "nvidia.com/gpu": "1"},
            "limits": {"cpu": r.limits.cpu, "memory": r.limits.memory, "nvidia.com/gpu": "1"},
        },
        "startup_probe": probe.startup,
        "readiness_probe": probe.readiness,
        "liveness_probe": probe.liveness,
        # Leave the Service's endpoints first, then let in-flight requests finish.
        "lifecycle": {
            "pre_stop": {
                "exec_": {
                    "command": [
                        "/usr/local/bin/drain.sh",
                        str(server.port),
                        paths.api_key_file,
                        str(server.termination_grace_seconds - DRAIN_SETTLE_SECONDS),
                    ]
                }
            }
        },
        "security_context": restricted_container_security(SERVER_UID),
        "volume_mounts": [
            {"name": "models", "mount_path": MODEL_DIR, "read_only": True},
            {"name": "api-key", "mount_path": API_KEY_DIR, "read_only": True},
            {"name": "tmp", "mount_path": "/tmp"},
        ],
    }


def volumes(inputs: PodInputs) -> list[k8s.core.v1.VolumeArgsDict]:
    out: list[k8s.core.v1.VolumeArgsDict] = [
        {"name": "models", "persistent_volume_claim": {"claim_name": claim_name(inputs.server_name)}},
        {"name": "api-key", "secret": {"secret_name": inputs.api_key_secret, "default_mode": SECRET_FILE_MODE}},
        {"name": "tmp", "empty_dir": {"size_limit": TMP_SIZE}},
    ]
    if inputs.hf_token_secret is not None:
        out.append(
            {"name": "hf-token", "secret": {"secret_name": inputs.hf_token_secret, "default_mode": SECRET_FILE_MODE}}
        )
    return out


def topology_spread(selector: dict[str, str], max_replicas: int) -> list[k8s.core.v1.TopologySpreadConstraintArgsDict]:
    """Several replicas: never two on one node (one GPU each), and across zones where possible."""
    if max_replicas == 1:
        return []
    return [
        {
            "max_skew": 1,
            "topology_key": key,
            "when_unsatisfiable": when,
            "label_selector": {"match_labels": selector},
        }
        for key, when in (
            ("kubernetes.io/hostname", "DoNotSchedule"),
            ("topology.kubernetes.io/zone", "ScheduleAnyway"),
        )
    ]


def pod_spec(
    server: Server, model: ModelFiles, inputs: PodInputs, selector: dict[str, str], max_replicas: int
) -> k8s.core.v1.PodSpecArgsDict:
    return {
        "service_account_name": inputs.service_account,
        "automount_service_account_token": False,
        "enable_service_links": False,
        "termination_grace_period_seconds": server.termination_grace_seconds,
        "node_selector": gpu_node_selector(),
        "tolerations": gpu_tolerations(),
        "topology_spread_constraints": topology_spread(selector, max_replicas),
        "security_context": restricted_pod_security(SERVER_UID, fs_group=True),
        "init_containers": fetch_containers(model, inputs.image, inputs.hf_token_secret is not None),
        "containers": [server_container(server, inputs.image, server_paths(model))],
        "volumes": volumes(inputs),
    }


def deployment_spec(
    server: Server,
    model: ModelFiles,
    inputs: PodInputs,
    meta: dict[str, str],
    selector: dict[str, str],
    max_replicas: int,
) -> k8s.apps.v1.DeploymentSpecArgsDict:
    return {
        "replicas": server.replicas,
        "selector": {"match_labels": selector},
        "strategy": update_strategy(max_replicas),
        "template": {
            "metadata": {"labels": meta},
            "spec": pod_spec(server, model, inputs, selector, max_replicas),
        },
    }


def claim_name(server_name: str) -> str:
    return f"{server_name}-models"


def volume_claim_spec(model: ModelFiles) -> k8s.core.v1.PersistentVolumeClaimSpecArgsDict:
    st = model.storage
    return {
        "access_modes": [st.access_mode],
        "storage_class_name": st.storage_class,
        "resources": {"requests": {"storage": f"{st.size_gi}Gi"}},
    }


INTERNAL_LB_ANNOTATION = {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}


def service_annotations(service: Service) -> dict[str, str]:
    return INTERNAL_LB_ANNOTATION if service.type == "InternalLoadBalancer" else {}


def service_spec(service: Service, selector: dict[str, str]) -> k8s.core.v1.ServiceSpecArgsDict:
    return {
        "type": "LoadBalancer" if service.type == "InternalLoadBalancer" else "ClusterIP",
        "selector": selector,
        "ports": [{"name": PORT_NAME, "port": service.port, "target_port": PORT_NAME, "protocol": "TCP"}],
    }


def disruption_budget_spec(selector: dict[str, str]) -> k8s.policy.v1.PodDisruptionBudgetSpecArgsDict:
    return {"max_unavailable": 1, "selector": {"match_labels": selector}}


def network_policy_spec(
    server: Server, service: Service, selector: dict[str, str]
) -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """Callers in: the serving namespace, the allowed namespaces and ranges, the metrics scraper."""
    peers: list[k8s.networking.v1.NetworkPolicyPeerArgsDict] = [{"pod_selector": {}}]  # the namespace itself
    peers += [namespace_peer(n) for n in (*service.allowed_namespaces, SCRAPER_NAMESPACE)]
    peers += [{"ip_block": {"cidr": cidr}} for cidr in service.allowed_cidrs]
    return {
        "pod_selector": {"match_labels": selector},
        "policy_types": ["Ingress", "Egress"],
        "ingress": [{"from_": peers, "ports": [{"port": server.port, "protocol": "TCP"}]}],
        "egress": [
            dns_egress(),
            # Model downloads and https image_url fetches; nothing else leaves the pod.
            {"ports": [{"port": 443, "protocol": "TCP"}]},
        ],
    }


def curl_example(endpoint: str, alias: str) -> str:
    return (
        f'curl -s {endpoint}/v1/chat/completions -H "Authorization: Bearer $API_KEY" '
        f'-H \'Content-Type: application/json\' -d \'{{"model": "{alias}", "messages": [{{"role": "user", '
        f'"content": [{{"type": "text", "text": "Describe this image."}}, {{"type": "image_url", '
        f'"image_url": {{"url": "data:image/png;base64,\'"$(base64 -w0 image.png)"\'"}}}}]}}]}}\''
    )

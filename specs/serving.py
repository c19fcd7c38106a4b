"""Specs of the model server's objects: the pod (download init containers, llama-server, probes,
drain hook), its Deployment, Service, volume claim, disruption budget and network policy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import pulumi
import pulumi_kubernetes as k8s

from core.catalog import DRAIN_SCRIPT, FETCH_MODEL_SCRIPT
from core.config import ModelFiles, Server, Service
from core.labels import API_KEY_FILE, ServingNames
from core.server_args import ServerPaths, llama_server_args
from specs.gpu import GPU_ENV, NO_GPUS
from specs.ingress import gateway_peer
from specs.k8s import (
    SERVER_UID,
    dns_egress,
    gpu_node_selector,
    gpu_tolerations,
    namespace_peer,
    public_https_egress,
    restricted_container_security,
    restricted_pod_security,
    scraper_peers,
)

MODEL_DIR = "/models"
API_KEY_DIR = "/var/run/secrets/llama-server"
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
HF_TOKEN_FILE = "token"
PORT_NAME = "http"
PROBE_PERIOD_SECONDS = 10
# image/drain.sh first waits this long (its DRAIN_SETTLE_SECONDS default) for the Service to
# stop sending requests, then polls; its polling budget is what is left of the grace period.
DRAIN_SETTLE_SECONDS = 5
SECRET_FILE_MODE = 0o440
# A salted sha256 of the API key, on the pod template: a new key rolls the pods.
API_KEY_HASH_ANNOTATION = "llamacpp-aks/api-key-sha256"
# Retries of the download Job's pod; fetch-model.sh resumes the partial file each time.
DOWNLOAD_RETRIES = 3
# How long, beyond the download's own deadline, Pulumi waits for the Job: a GPU node to start
# from zero (about 5-10 minutes with the driver) and the image to be pulled.
DOWNLOAD_WAIT_MARGIN_SECONDS = 1200
# How long, beyond the startup probe's budget, Pulumi waits for the Deployment: a GPU node, the
# image pull and the digest check of both files come before the load.
ROLLOUT_WAIT_MARGIN_SECONDS = 1200
TMP_SIZE = "1Gi"
FETCH_RESOURCES: k8s.core.v1.ResourceRequirementsArgsDict = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}


@dataclass(frozen=True, kw_only=True)
class PodInputs:
    """What the server pod is made of besides config: image, names of its objects, the key's hash."""

    image: pulumi.Input[str]  # the llama-server image, by digest
    names: ServingNames  # the names of the server's objects (its volume claim)
    service_account: pulumi.Input[str]  # the pod's ServiceAccount (an output: the pod waits for it)
    api_key_secret: pulumi.Input[str]  # name of the Secret holding the API key
    api_key_sha256: pulumi.Input[str]  # a new key changes the pod template, so the pods roll


@dataclass(frozen=True, kw_only=True)
class DownloadInputs:
    """What the model download Job needs besides config."""

    image: pulumi.Input[str]  # the llama-server image (it carries fetch-model.sh and curl)
    names: ServingNames  # whose volume it fills
    hf_token_secret: pulumi.Input[str] | None = None  # name of the Hugging Face token Secret, if any


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
    name: str, image: pulumi.Input[str], url: str, file: str, sha256: str, env: list[k8s.core.v1.EnvVarArgsDict]
) -> k8s.core.v1.ContainerArgsDict:
    """image/fetch-model.sh for one file of the model volume: downloads it if missing (resuming a
    partial file), and checks it against its digest; with the file present it needs no network."""
    mounts: list[k8s.core.v1.VolumeMountArgsDict] = [
        {"name": "models", "mount_path": MODEL_DIR},
        {"name": "tmp", "mount_path": "/tmp"},
    ]
    if any(e["name"] == "HF_TOKEN_FILE" for e in env):
        mounts.append({"name": "hf-token", "mount_path": HF_TOKEN_DIR, "read_only": True})
    return {
        "name": name,
        "image": image,
        "image_pull_policy": "Always",
        "command": [FETCH_MODEL_SCRIPT],
        "args": [url, f"{MODEL_DIR}/{file}", sha256],
        # The CUDA base image sets NVIDIA_VISIBLE_DEVICES=all, which the NVIDIA runtime honours for
        # any container on a GPU node; `void` keeps every GPU away from a container that needs none.
        "env": [{"name": GPU_ENV, "value": NO_GPUS}, *env],
        "security_context": restricted_container_security(SERVER_UID),
        "resources": FETCH_RESOURCES,
        "volume_mounts": mounts,
    }


def model_files(model: ModelFiles) -> tuple[tuple[str, str, str, int], ...]:
    """(role, file, digest, bytes) of the model and its vision projector, in download order."""
    return (
        ("model", model.file, model.sha256, model.size_bytes),
        ("mmproj", model.mmproj_file, model.mmproj_sha256, model.mmproj_size_bytes),
    )


def download_containers(
    model: ModelFiles, image: pulumi.Input[str], hf_token: bool
) -> list[k8s.core.v1.ContainerArgsDict]:
    """The Job's downloaders: the only writers of the model volume, and the only pods with egress.
    Each is bounded by its file's configured size: a server announcing more is refused at once."""
    # Each file may take the Job's whole deadline (fetch-model.sh's own bound is per file).
    env: list[k8s.core.v1.EnvVarArgsDict] = [
        {"name": "FETCH_TOTAL_SECONDS", "value": str(model.download_timeout_seconds)}
    ]
    if hf_token:
        env.append({"name": "HF_TOKEN_FILE", "value": f"{HF_TOKEN_DIR}/{HF_TOKEN_FILE}"})
    return [
        fetch_container(
            f"fetch-{role}", image, model.url(file), file, sha, [{"name": "FETCH_SIZE_BYTES", "value": str(size)}, *env]
        )
        for role, file, sha, size in model_files(model)
    ]


def verify_containers(model: ModelFiles, image: pulumi.Input[str]) -> list[k8s.core.v1.ContainerArgsDict]:
    """The server pod's checks of what the Job downloaded: no token, no network, nothing written
    but the digest record of a file that had none."""
    env: list[k8s.core.v1.EnvVarArgsDict] = [
        # Never delete or download: a pod of another model revision must not undo the Job's work.
        {"name": "VERIFY_ONLY", "value": "1"},
        {"name": "VERIFY_ON_START", "value": "1" if model.verify_on_start else "0"},
    ]
    return [
        fetch_container(f"verify-{role}", image, model.url(file), file, sha, env)
        for role, file, sha, _ in model_files(model)
    ]


def server_container(server: Server, image: pulumi.Input[str], paths: ServerPaths) -> k8s.core.v1.ContainerArgsDict:
    """llama-server itself: the command line from config, one GPU, probes and the drain hook."""
    r = server.resources
    probe = probes(server.startup_timeout_seconds)
    gpus = str(server.gpus_per_replica)  # whole GPUs of one node; llama-server splits over them
    return {
        "name": "llama-server",
        "image": image,
        "image_pull_policy": "Always",
        "args": llama_server_args(server, paths),
        "ports": [{"name": PORT_NAME, "container_port": server.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": r.requests.cpu, "memory": r.requests.memory, "nvidia.com/gpu": gpus},
            "limits": {"cpu": r.limits.cpu, "memory": r.limits.memory, "nvidia.com/gpu": gpus},
        },
        "startup_probe": probe.startup,
        "readiness_probe": probe.readiness,
        "liveness_probe": probe.liveness,
        # Leave the Service's endpoints first, then let in-flight requests finish.
        "lifecycle": {
            "pre_stop": {
                "exec_": {
                    "command": [
                        DRAIN_SCRIPT,
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
            # One file by subPath: the kubelet never updates it, so the server and its drain hook
            # keep the key the server started with while a rotated key rolls the pods.
            {"name": "api-key", "mount_path": paths.api_key_file, "sub_path": API_KEY_FILE, "read_only": True},
            {"name": "tmp", "mount_path": "/tmp"},
        ],
    }


def volumes(names: ServingNames, secrets: dict[str, pulumi.Input[str]]) -> list[k8s.core.v1.VolumeArgsDict]:
    """The model volume, a scratch /tmp, and each Secret (volume name -> Secret name) as files."""
    out: list[k8s.core.v1.VolumeArgsDict] = [
        {"name": "models", "persistent_volume_claim": {"claim_name": names.claim}},
        {"name": "tmp", "empty_dir": {"size_limit": TMP_SIZE}},
    ]
    out += [
        {"name": volume, "secret": {"secret_name": secret, "default_mode": SECRET_FILE_MODE}}
        for volume, secret in secrets.items()
    ]
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
        "init_containers": verify_containers(model, inputs.image),
        "containers": [server_container(server, inputs.image, server_paths(model))],
        "volumes": volumes(inputs.names, {"api-key": inputs.api_key_secret}),
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
            "metadata": {"labels": meta, "annotations": {API_KEY_HASH_ANNOTATION: inputs.api_key_sha256}},
            "spec": pod_spec(server, model, inputs, selector, max_replicas),
        },
    }


def download_job_spec(
    model: ModelFiles, inputs: DownloadInputs, meta: dict[str, str], server_selector: dict[str, str]
) -> k8s.batch.v1.JobSpecArgsDict:
    """The model volume's one writer: fetches both files, then ends; the server pods only verify.

    It runs on the GPU pool, where the volume is used (a zonal disk is created in the zone of its
    first pod), next to a running server if there is one (a ReadWriteOnce disk is attached to one node).
    """
    secrets = {"hf-token": inputs.hf_token_secret} if inputs.hf_token_secret is not None else {}
    model_container, mmproj_container = download_containers(model, inputs.image, bool(secrets))
    return {
        "backoff_limit": DOWNLOAD_RETRIES,
        # The deadline runs from the Job's creation: a GPU node from zero and the image pull come first.
        "active_deadline_seconds": model.download_timeout_seconds + DOWNLOAD_WAIT_MARGIN_SECONDS,
        "template": {
            "metadata": {"labels": meta},
            "spec": {
                "restart_policy": "Never",
                "automount_service_account_token": False,
                "enable_service_links": False,
                "node_selector": gpu_node_selector(),
                "tolerations": gpu_tolerations(),
                "affinity": {
                    "pod_affinity": {
                        "preferred_during_scheduling_ignored_during_execution": [
                            {
                                "weight": 100,
                                "pod_affinity_term": {
                                    "label_selector": {"match_labels": server_selector},
                                    "topology_key": "kubernetes.io/hostname",
                                },
                            }
                        ]
                    }
                },
                "security_context": restricted_pod_security(SERVER_UID, fs_group=True),
                # One file after the other: the model first, then its projector.
                "init_containers": [model_container],
                "containers": [mmproj_container],
                "volumes": volumes(inputs.names, secrets),
            },
        },
    }


def download_network_policy_spec(selector: dict[str, str]) -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """The download may reach DNS and public HTTPS (the model hub and its CDN), nothing else; no one calls it."""
    return {
        "pod_selector": {"match_labels": selector},
        "policy_types": ["Ingress", "Egress"],
        "egress": [dns_egress(), public_https_egress()],
    }


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
    spec: k8s.core.v1.ServiceSpecArgsDict = {
        "type": "LoadBalancer" if service.type == "InternalLoadBalancer" else "ClusterIP",
        "selector": selector,
        "ports": [{"name": PORT_NAME, "port": service.port, "target_port": PORT_NAME, "protocol": "TCP"}],
    }
    if service.type == "InternalLoadBalancer":
        # Local: callers keep their own address (so service.allowedCidrs matches them in the
        # NetworkPolicy), and Azure's probe asks the node's health port, which no pod policy blocks.
        # With Cluster the probe and forwarded callers come from node addresses, which Cilium's
        # ipBlock does not match by default (docs.cilium.io, network policy: ipBlock and nodes).
        spec["external_traffic_policy"] = "Local"
    return spec


def pods_service_spec(server: Server, selector: dict[str, str]) -> k8s.core.v1.ServiceSpecArgsDict:
    """A headless Service of the server's pods: its DNS name lists the ready pods, none at zero
    replicas, which the standby front reads as "no replica" (no virtual IP that accepts and hangs)."""
    return {
        "cluster_ip": "None",
        "selector": selector,
        "ports": [{"name": PORT_NAME, "port": server.port, "target_port": PORT_NAME, "protocol": "TCP"}],
    }


def disruption_budget_spec(selector: dict[str, str]) -> k8s.policy.v1.PodDisruptionBudgetSpecArgsDict:
    return {"max_unavailable": 1, "selector": {"match_labels": selector}}


def caller_peers(
    service: Service, *, public: bool = False, scraper: bool = False
) -> list[k8s.networking.v1.NetworkPolicyPeerArgsDict]:
    """Who may call the API: the serving namespace, the allowed namespaces and ranges, and with
    `public` the public gateway's proxies (ingress.enabled); with `scraper` the metrics scraper too
    (llama-server's /metrics is on its API port)."""
    peers: list[k8s.networking.v1.NetworkPolicyPeerArgsDict] = [{"pod_selector": {}}]  # the namespace itself
    peers += [namespace_peer(n) for n in service.allowed_namespaces]
    if scraper:
        peers += scraper_peers()
    peers += [{"ip_block": {"cidr": cidr}} for cidr in service.allowed_cidrs]
    if public:
        peers.append(gateway_peer())
    return peers


def network_policy_spec(
    server: Server, service: Service, selector: dict[str, str], *, public: bool = False
) -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """Callers in (`caller_peers`, the standby front among them: it is in the namespace) and the
    metrics scraper. Out: nothing (the model is on the volume), unless remote images are on: then
    DNS and public HTTPS."""
    peers = caller_peers(service, public=public, scraper=True)
    egress: list[k8s.networking.v1.NetworkPolicyEgressRuleArgsDict] = []
    if server.remote_images:
        egress = [dns_egress(), public_https_egress()]
    return {
        "pod_selector": {"match_labels": selector},
        "policy_types": ["Ingress", "Egress"],
        "ingress": [{"from_": peers, "ports": [{"port": server.port, "protocol": "TCP"}]}],
        "egress": egress,
    }


def curl_example(endpoint: str, alias: str) -> str:
    return (
        f'curl -s {endpoint}/v1/chat/completions -H "Authorization: Bearer $API_KEY" '
        f'-H \'Content-Type: application/json\' -d \'{{"model": "{alias}", "messages": [{{"role": "user", '
        f'"content": [{{"type": "text", "text": "Describe this image."}}, {{"type": "image_url", '
        f'"image_url": {{"url": "data:image/png;base64,\'"$(base64 -w0 image.png)"\'"}}}}]}}]}}\''
    )

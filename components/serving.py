"""ModelServer: serves one GGUF model with llama-server: namespace, secrets, model volume,
Deployment, Service, PodDisruptionBudget, NetworkPolicy and metrics scraping."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.gpu import gpu_node_selector, gpu_tolerations
from core import labels
from core.config import StackConfig
from core.server_args import ServerPaths, llama_server_args

MODEL_DIR = "/models"
API_KEY_DIR = "/var/run/secrets/llama-server"
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
UID = 10001  # the image's non-root user (image/Dockerfile)
PROBE_PERIOD_SECONDS = 10
# Azure managed Prometheus runs its scrapers (ama-metrics) in kube-system.
SCRAPER_NAMESPACE = "kube-system"


@dataclass(frozen=True)
class ModelServerArgs:
    stack: str
    config: StackConfig
    image: pulumi.Input[str]
    provider: k8s.Provider
    api_key: pulumi.Input[str] | None = None
    hf_token: pulumi.Input[str] | None = None
    depends_on: tuple[pulumi.Resource, ...] = ()


def update_strategy(replicas: int) -> dict:
    """One GPU per pod: a surge pod would wait forever for a GPU the old pod holds."""
    if replicas == 1:
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rolling_update": {"max_surge": 0, "max_unavailable": 1}}


def probes(port_name: str, startup_timeout_seconds: int) -> dict:
    """The startup probe owns the whole model load; liveness starts only after it passes."""
    http = {"path": "/health", "port": port_name}
    return {
        "startup_probe": {
            "http_get": http,
            "period_seconds": PROBE_PERIOD_SECONDS,
            "timeout_seconds": 5,
            "failure_threshold": math.ceil(startup_timeout_seconds / PROBE_PERIOD_SECONDS),
        },
        "readiness_probe": {"http_get": http, "period_seconds": 10, "timeout_seconds": 5, "failure_threshold": 3},
        # A busy server still answers /health from its HTTP thread; 3 minutes of silence is a hang.
        "liveness_probe": {"http_get": http, "period_seconds": 30, "timeout_seconds": 10, "failure_threshold": 6},
    }


def restricted_container_security() -> dict:
    return {
        "run_as_non_root": True,
        "run_as_user": UID,
        "run_as_group": UID,
        "allow_privilege_escalation": False,
        "read_only_root_filesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def fetch_container(name: str, image: pulumi.Input[str], url: str, file: str, sha256: str, hf_token: bool) -> dict:
    mounts = [{"name": "models", "mount_path": MODEL_DIR}, {"name": "tmp", "mount_path": "/tmp"}]
    env = []
    if hf_token:
        mounts.append({"name": "hf-token", "mount_path": HF_TOKEN_DIR, "read_only": True})
        env.append({"name": "HF_TOKEN_FILE", "value": f"{HF_TOKEN_DIR}/token"})
    return {
        "name": name,
        "image": image,
        "image_pull_policy": "Always",
        "command": ["/usr/local/bin/fetch-model.sh"],
        "args": [url, f"{MODEL_DIR}/{file}", sha256],
        "env": env,
        "security_context": restricted_container_security(),
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "2", "memory": "1Gi"},
        },
        "volume_mounts": mounts,
    }


class ModelServer(pulumi.ComponentResource):
    """Serves one GGUF model with llama-server behind an OpenAI-compatible API."""

    def __init__(self, name: str, args: ModelServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:serving:ModelServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        c, stack = args.config, args.stack
        s, m = c.server, c.model
        meta = labels.labels(stack, "server", c.image.llama_cpp_release)
        select = labels.selector(stack, "server")
        server_name = labels.name(stack, "server")
        # Plain names for what must name the server before it exists (alert rules, dashboards).
        self.namespace_name = labels.name(stack, "serving")
        self.server_name = server_name

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            metadata={
                "name": self.namespace_name,
                "labels": {
                    **meta,
                    **labels.pod_security("restricted"),
                },
            },
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=list(args.depends_on)),
        )
        ns = namespace.metadata["name"]

        if args.api_key is None:
            generated = random.RandomPassword(
                f"{name}-api-key", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
            )
            api_key: pulumi.Output[str] = generated.result
        else:
            api_key = pulumi.Output.secret(args.api_key)
        api_key_secret = k8s.core.v1.Secret(
            f"{name}-api-key",
            metadata={"name": f"{server_name}-api-key", "namespace": ns, "labels": meta},
            type="Opaque",
            string_data={"api-key": api_key},
            opts=child,
        )
        volumes = [
            {"name": "models", "persistent_volume_claim": {"claim_name": f"{server_name}-models"}},
            {"name": "api-key", "secret": {"secret_name": api_key_secret.metadata["name"], "default_mode": 0o440}},
            {"name": "tmp", "empty_dir": {"size_limit": "1Gi"}},
        ]
        if args.hf_token is not None:
            hf_secret = k8s.core.v1.Secret(
                f"{name}-hf-token",
                metadata={"name": f"{server_name}-hf-token", "namespace": ns, "labels": meta},
                type="Opaque",
                string_data={"token": pulumi.Output.secret(args.hf_token)},
                opts=child,
            )
            volumes.append(
                {"name": "hf-token", "secret": {"secret_name": hf_secret.metadata["name"], "default_mode": 0o440}}
            )

        volume = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-models",
            metadata={"name": f"{server_name}-models", "namespace": ns, "labels": meta},
            spec={
                "access_modes": [m.storage.access_mode],
                "storage_class_name": m.storage.storage_class,
                "resources": {"requests": {"storage": f"{m.storage.size_gi}Gi"}},
            },
            # Deleting the claim would throw away the downloaded model; keep it across replacements.
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, retain_on_delete=True),
        )

        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": server_name, "namespace": ns, "labels": meta},
            automount_service_account_token=False,
            opts=child,
        )

        paths = ServerPaths(
            model=f"{MODEL_DIR}/{m.file}", mmproj=f"{MODEL_DIR}/{m.mmproj_file}", api_key_file=f"{API_KEY_DIR}/api-key"
        )
        resources = s.resources
        has_token = args.hf_token is not None
        spread = []
        if c.max_replicas > 1:
            spread = [
                {
                    "max_skew": 1,
                    "topology_key": "kubernetes.io/hostname",
                    "when_unsatisfiable": "DoNotSchedule",
                    "label_selector": {"match_labels": select},
                },
                {
                    "max_skew": 1,
                    "topology_key": "topology.kubernetes.io/zone",
                    "when_unsatisfiable": "ScheduleAnyway",
                    "label_selector": {"match_labels": select},
                },
            ]
        self.deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": server_name, "namespace": ns, "labels": meta},
            spec={
                "replicas": s.replicas,
                "selector": {"match_labels": select},
                "strategy": update_strategy(c.max_replicas),
                "template": {
                    "metadata": {"labels": meta},
                    "spec": {
                        "service_account_name": account.metadata["name"],
                        "automount_service_account_token": False,
                        "enable_service_links": False,
                        "termination_grace_period_seconds": s.termination_grace_seconds,
                        "node_selector": gpu_node_selector(),
                        "tolerations": gpu_tolerations(),
                        "topology_spread_constraints": spread,
                        "security_context": {
                            "run_as_non_root": True,
                            "run_as_user": UID,
                            "run_as_group": UID,
                            "fs_group": UID,
                            "fs_group_change_policy": "OnRootMismatch",
                            "seccomp_profile": {"type": "RuntimeDefault"},
                        },
                        "init_containers": [
                            fetch_container("fetch-model", args.image, m.url(m.file), m.file, m.sha256, has_token),
                            fetch_container(
                                "fetch-mmproj",
                                args.image,
                                m.url(m.mmproj_file),
                                m.mmproj_file,
                                m.mmproj_sha256,
                                has_token,
                            ),
                        ],
                        "containers": [
                            {
                                "name": "llama-server",
                                "image": args.image,
                                "image_pull_policy": "Always",
                                "args": llama_server_args(c, paths),
                                "ports": [{"name": "http", "container_port": s.port, "protocol": "TCP"}],
                                "resources": {
                                    "requests": {
                                        "cpu": resources.requests.cpu,
                                        "memory": resources.requests.memory,
                                        "nvidia.com/gpu": "1",
                                    },
                                    "limits": {
                                        "cpu": resources.limits.cpu,
                                        "memory": resources.limits.memory,
                                        "nvidia.com/gpu": "1",
                                    },
                                },
                                **probes("http", s.startup_timeout_seconds),
                                # Leave the Service's endpoints first, then let in-flight requests finish.
                                "lifecycle": {
                                    "pre_stop": {
                                        "exec": {
                                            "command": [
                                                "/usr/local/bin/drain.sh",
                                                str(s.port),
                                                paths.api_key_file,
                                                str(s.termination_grace_seconds - 5),
                                            ]
                                        }
                                    }
                                },
                                "security_context": restricted_container_security(),
                                "volume_mounts": [
                                    {"name": "models", "mount_path": MODEL_DIR, "read_only": True},
                                    {"name": "api-key", "mount_path": API_KEY_DIR, "read_only": True},
                                    {"name": "tmp", "mount_path": "/tmp"},
                                ],
                            }
                        ],
                        "volumes": volumes,
                    },
                },
            },
            # With autoscaling on, KEDA owns the replica count; Pulumi sets only the starting size.
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=[volume],
                ignore_changes=["spec.replicas"] if c.autoscaling.enabled else None,
            ),
        )
        self.namespace = ns
        self.deployment_name = self.deployment.metadata["name"]

        svc = c.service
        internal_lb = svc.type == "InternalLoadBalancer"
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata={
                "name": server_name,
                "namespace": ns,
                "labels": meta,
                "annotations": {"service.beta.kubernetes.io/azure-load-balancer-internal": "true"}
                if internal_lb
                else {},
            },
            spec={
                "type": "LoadBalancer" if internal_lb else "ClusterIP",
                "selector": select,
                "ports": [{"name": "http", "port": svc.port, "target_port": "http", "protocol": "TCP"}],
            },
            opts=child,
        )

        if c.max_replicas > 1:
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-pdb",
                metadata={"name": server_name, "namespace": ns, "labels": meta},
                spec={"max_unavailable": 1, "selector": {"match_labels": select}},
                opts=child,
            )

        peers = [{"pod_selector": {}}]  # the serving namespace itself
        peers += [
            {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": n}}}
            for n in (*svc.allowed_namespaces, SCRAPER_NAMESPACE)
        ]
        peers += [{"ip_block": {"cidr": cidr}} for cidr in svc.allowed_cidrs]
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata={"name": server_name, "namespace": ns, "labels": meta},
            spec={
                "pod_selector": {"match_labels": select},
                "policy_types": ["Ingress", "Egress"],
                "ingress": [{"from": peers, "ports": [{"port": s.port, "protocol": "TCP"}]}],
                "egress": [
                    {
                        "to": [
                            {"namespace_selector": {"match_labels": {"kubernetes.io/metadata.name": "kube-system"}}}
                        ],
                        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
                    },
                    # Model downloads and https image_url fetches; nothing else leaves the pod.
                    {"ports": [{"port": 443, "protocol": "TCP"}]},
                ],
            },
            opts=child,
        )

        k8s.apiextensions.CustomResource(
            f"{name}-podmonitor",
            api_version="azmonitoring.coreos.com/v1",
            kind="PodMonitor",
            metadata={"name": server_name, "namespace": ns, "labels": meta},
            spec={
                "selector": {"matchLabels": select},
                "podMetricsEndpoints": [
                    {
                        "port": "http",
                        "path": "/metrics",
                        "interval": "30s",
                        # llama-server guards /metrics with the API key like every route but /health.
                        "authorization": {
                            "type": "Bearer",
                            "credentials": {"name": f"{server_name}-api-key", "key": "api-key"},
                        },
                    }
                ],
            },
            opts=child,
        )

        self.endpoint = pulumi.Output.concat(
            "http://", service.metadata["name"], ".", ns, ".svc.cluster.local:", str(svc.port)
        )
        self.alias = pulumi.Output.from_input(s.alias)
        self.api_key = pulumi.Output.secret(api_key)
        self.curl_example = self.endpoint.apply(lambda url: curl_example(url, s.alias))
        self.register_outputs(
            {"endpoint": self.endpoint, "alias": self.alias, "apiKey": self.api_key, "curlExample": self.curl_example}
        )


def curl_example(endpoint: str, alias: str) -> str:
    return (
        f'curl -s {endpoint}/v1/chat/completions -H "Authorization: Bearer $API_KEY" '
        f'-H \'Content-Type: application/json\' -d \'{{"model": "{alias}", "messages": [{{"role": "user", '
        f'"content": [{{"type": "text", "text": "Describe this image."}}, {{"type": "image_url", '
        f'"image_url": {{"url": "data:image/png;base64,\'"$(base64 -w0 image.png)"\'"}}}}]}}]}}\''
    )

"""Specs of the queue autoscaler: KEDA's triggers and ScaledObject (keda.sh/v1alpha1, no typed SDK
class), and the standby front (Envoy) that answers and counts demand while no replica exists."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from core import metrics
from core.config import ActiveHours, Autoscaling, Service
from core.first_token import StartingAnswer
from specs.ingress import system_pool_tolerations
from specs.k8s import dns_egress, restricted_container_security, restricted_pod_security, scraper_peers
from specs.serving import PORT_NAME, caller_peers

AUTH_NAME = "managed-prometheus"
# The standby front (Envoy) before the model server: its listener, its admin port (Prometheus
# stats at /stats/prometheus), and the Envoy cluster name the wake query selects.
FRONT_PORT = 8008
FRONT_ADMIN_PORT = 9901
FRONT_CLUSTER = "llama-server"
# The front's own readiness on its API port, for the public gateway's health probe: the gateway
# must keep sending to the front while no replica exists, so its probe may not pass through to
# llama-server's /health. Envoy's admin port (/ready) stays closed to callers.
FRONT_READY_PATH = "/front/ready"
# The replicas that turned-away requests ask for: one; more follow from its queue once it serves.
WAKE_REPLICAS = 1
# Envoy's response flags for "no replica to send to": UH no healthy upstream host (a headless
# Service with no pods resolves to none), UF upstream connection failure
# (envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage, %RESPONSE_FLAGS%).
NO_REPLICA_FLAGS = ("UH", "UF")


def prometheus_trigger(name: str, query: str, threshold: float, query_endpoint: str) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "name": name,
        "metadata": {"serverAddress": query_endpoint, "query": query, "threshold": f"{threshold:g}"},
        "authenticationRef": {"name": AUTH_NAME},
    }


def cron(hhmm: str, days: str) -> str:
    """A cron line for a daily time on the given days: "08:30", "1-5" -> "30 8 * * 1-5"."""
    hours, minutes = hhmm.split(":")
    return f"{int(minutes)} {int(hours)} * * {days}"


def active_hours_trigger(h: ActiveHours) -> dict[str, Any]:
    """One replica inside the window: the wake-up signal a scaled-to-zero server has no metrics for."""
    return {
        "type": "cron",
        "name": "active-hours",
        "metadata": {
            "timezone": h.timezone,
            "start": cron(h.start, h.days),
            "end": cron(h.end, h.days),
            "desiredReplicas": "1",
        },
    }


def triggers(a: Autoscaling, parallel: int, namespace: str, query_endpoint: str) -> list[dict[str, Any]]:
    """Scale on queued requests first, and on busy slots before the queue forms."""
    out = [
        prometheus_trigger("deferred", metrics.deferred_requests(namespace), a.deferred_per_replica, query_endpoint),
        prometheus_trigger(
            "busy-slots", metrics.processing_requests(namespace), parallel * a.busy_slot_ratio, query_endpoint
        ),
    ]
    if a.active_hours:
        out.append(active_hours_trigger(a.active_hours))
    if a.scales_from_zero:
        out.append(wake_trigger(namespace, query_endpoint))
    return out


def scaled_object_spec(
    a: Autoscaling, deployment: pulumi.Input[str], triggers: pulumi.Input[list[dict[str, Any]]]
) -> dict[str, Any]:
    return {
        "scaleTargetRef": {"name": deployment},
        "minReplicaCount": a.min_replicas,
        "maxReplicaCount": a.max_replicas,
        "cooldownPeriod": a.cooldown_seconds,
        "pollingInterval": a.polling_seconds,
        "triggers": triggers,
    }


def front_bootstrap(upstream_host: str, upstream_port: int, answer: StartingAnswer) -> dict[str, Any]:
    """Envoy's bootstrap for the standby front: it proxies to the model server's headless Service,
    and while no replica exists answers at once 503 with Retry-After and an OpenAI-style error
    saying "starting, about N minutes" (local_reply_config, envoyproxy.io/docs/envoy/latest/
    configuration/http/http_conn_man/local_reply), instead of a refused connection or a hang.
    Each such answer counts in `envoy_cluster_upstream_cx_none_healthy` (or `_connect_fail`), the
    demand the wake trigger reads. No queue: nothing is held."""
    body = json.dumps({"error": {"code": 503, "type": "unavailable_error", "message": answer.message}})
    mapper = {
        "filter": {"response_flag_filter": {"flags": list(NO_REPLICA_FLAGS)}},
        "status_code": 503,
        "headers_to_add": [
            {
                "header": {"key": "Retry-After", "value": str(answer.retry_after_s)},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
        "body": {"inline_string": body},
        # text_format_source, not the deprecated text_format (config.core.v3.SubstitutionFormatString).
        "body_format_override": {
            "text_format_source": {"inline_string": "%LOCAL_REPLY_BODY%"},
            "content_type": "application/json",
        },
    }
    ready = {"match": {"path": FRONT_READY_PATH}, "direct_response": {"status": 200}}
    # timeout 0s: no limit, so a long answer streams (SSE) as llama-server sends it; the router
    # does not buffer responses.
    route = {"match": {"prefix": "/"}, "route": {"cluster": FRONT_CLUSTER, "timeout": "0s"}}
    manager = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "front",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [ready, route]}]},
            "local_reply_config": {"mappers": [mapper]},
            "http_filters": [
                {
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
                }
            ],
        },
    }
    endpoint = {"endpoint": {"address": {"socket_address": {"address": upstream_host, "port_value": upstream_port}}}}
    return {
        "admin": {"address": {"socket_address": {"address": "0.0.0.0", "port_value": FRONT_ADMIN_PORT}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "api",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": FRONT_PORT}},
                    "filter_chains": [{"filters": [manager]}],
                }
            ],
            "clusters": [
                {
                    "name": FRONT_CLUSTER,
                    # A headless Service: DNS lists the ready pods, none while scaled to zero. Envoy
                    # resolves it every 5 s (its default; Cluster.dns_refresh_rate is deprecated).
                    "type": "STRICT_DNS",
                    "connect_timeout": "2s",
                    "load_assignment": {"cluster_name": FRONT_CLUSTER, "endpoints": [{"lb_endpoints": [endpoint]}]},
                }
            ],
        },
    }


def wake_query(namespace: str) -> str:
    """Requests the front turned away for want of a replica in the last two minutes, counted at
    most once: KEDA asks for ceil(value / threshold) replicas (a trigger's metricType defaults to
    AverageValue, keda.sh/docs/latest/reference/scaledobject-spec/), so a burst of turned-away
    requests would otherwise ask for as many GPU nodes. The queue triggers size the server once a
    replica answers. Each term falls back to 0 (`or vector(0)`): a sum over no series is empty, and
    an empty side would empty the whole sum, hiding the other side's turned-away requests."""
    selector = f'namespace="{namespace}", envoy_cluster_name="{FRONT_CLUSTER}"'
    terms = [
        f"(sum(increase(envoy_cluster_upstream_cx_{counter}{{{selector}}}[2m])) or vector(0))"
        for counter in ("none_healthy", "connect_fail")
    ]
    return f"clamp_max({' + '.join(terms)}, {WAKE_REPLICAS})"


def wake_trigger(namespace: str, query_endpoint: str) -> dict[str, Any]:
    """Demand at zero replicas: any turned-away request activates the server (KEDA's
    activationThreshold 0: more than none), and keeps one replica while requests keep coming."""
    trigger = prometheus_trigger("turned-away", wake_query(namespace), WAKE_REPLICAS, query_endpoint)
    trigger["metadata"]["activationThreshold"] = "0"
    return trigger


# --- the standby front's objects -------------------------------------------------------------

# A uid of its own: the pod sets it, Envoy writes nothing (its bootstrap is a read-only file).
FRONT_UID = 10003
FRONT_CONFIG_DIR = "/etc/envoy"
FRONT_CONFIG_FILE = "envoy.json"  # Envoy reads a bootstrap as JSON by its extension
FRONT_ADMIN_PORT_NAME = "admin"
# Prometheus text from Envoy's admin interface (envoyproxy.io/docs/envoy/latest/operations/admin).
FRONT_STATS_PATH = "/stats/prometheus"
# Two, so that a restarted or rescheduled front never leaves callers with nothing to connect to.
FRONT_REPLICAS = 2
FRONT_RESOURCES: k8s.core.v1.ResourceRequirementsArgsDict = {
    "requests": {"cpu": "100m", "memory": "64Mi"},
    "limits": {"cpu": "500m", "memory": "256Mi"},
}
# AKS labels the nodes of a System-mode pool so (learn.microsoft.com/azure/aks/use-system-pools):
# the front is light and always on, and never takes room on (or keeps awake) a GPU node.
SYSTEM_POOL_SELECTOR = {"kubernetes.azure.com/mode": "system"}
# sha256 of the bootstrap on the pod template: a new answer or upstream rolls the front's pods.
FRONT_CONFIG_HASH_ANNOTATION = "llamacpp-aks/front-config-sha256"


def front_config(upstream_host: str, upstream_port: int, answer: StartingAnswer) -> dict[str, str]:
    """The ConfigMap's data: the bootstrap as one JSON file."""
    return {FRONT_CONFIG_FILE: json.dumps(front_bootstrap(upstream_host, upstream_port, answer), indent=1)}


def front_container(image: str) -> k8s.core.v1.ContainerArgsDict:
    """Envoy with the bootstrap from the ConfigMap; probes on the admin port's /ready."""
    ready: k8s.core.v1.HTTPGetActionArgsDict = {"path": "/ready", "port": FRONT_ADMIN_PORT_NAME}
    return {
        "name": "envoy",
        "image": image,
        "image_pull_policy": "Always",
        "command": ["envoy"],
        "args": ["--config-path", f"{FRONT_CONFIG_DIR}/{FRONT_CONFIG_FILE}", "--log-level", "warn"],
        "ports": [
            {"name": PORT_NAME, "container_port": FRONT_PORT, "protocol": "TCP"},
            {"name": FRONT_ADMIN_PORT_NAME, "container_port": FRONT_ADMIN_PORT, "protocol": "TCP"},
        ],
        "resources": FRONT_RESOURCES,
        "readiness_probe": {"http_get": ready, "period_seconds": 5, "timeout_seconds": 2, "failure_threshold": 3},
        "liveness_probe": {"http_get": ready, "period_seconds": 10, "timeout_seconds": 5, "failure_threshold": 6},
        "security_context": restricted_container_security(FRONT_UID),
        "volume_mounts": [
            {"name": "config", "mount_path": FRONT_CONFIG_DIR, "read_only": True},
            {"name": "tmp", "mount_path": "/tmp"},
        ],
    }


def front_deployment_spec(
    image: str, config_map: pulumi.Input[str], config: dict[str, str], meta: dict[str, str], selector: dict[str, str]
) -> k8s.apps.v1.DeploymentSpecArgsDict:
    """The front's pods: on the system pool, restricted, no service account token."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    pod: k8s.core.v1.PodSpecArgsDict = {
        "automount_service_account_token": False,
        "enable_service_links": False,
        "node_selector": SYSTEM_POOL_SELECTOR,
        "tolerations": system_pool_tolerations(),
        "security_context": restricted_pod_security(FRONT_UID),
        "containers": [front_container(image)],
        "volumes": [
            {"name": "config", "config_map": {"name": config_map}},
            {"name": "tmp", "empty_dir": {"size_limit": "64Mi"}},
        ],
    }
    return {
        "replicas": FRONT_REPLICAS,
        "selector": {"match_labels": selector},
        "template": {"metadata": {"labels": meta, "annotations": {FRONT_CONFIG_HASH_ANNOTATION: digest}}, "spec": pod},
    }


def front_network_policy_spec(
    service: Service, server_port: int, selector: dict[str, str], server_selector: dict[str, str], *, public: bool
) -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """In: the API's callers on the API port, the metrics scraper on the admin port.
    Out: DNS (the headless Service's name) and the server pods' port, nothing else."""
    return {
        "pod_selector": {"match_labels": selector},
        "policy_types": ["Ingress", "Egress"],
        "ingress": [
            {"from_": caller_peers(service, public=public), "ports": [{"port": FRONT_PORT, "protocol": "TCP"}]},
            {"from_": scraper_peers(), "ports": [{"port": FRONT_ADMIN_PORT, "protocol": "TCP"}]},
        ],
        "egress": [
            dns_egress(),
            {
                "to": [{"pod_selector": {"match_labels": server_selector}}],
                "ports": [{"port": server_port, "protocol": "TCP"}],
            },
        ],
    }

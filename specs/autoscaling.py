"""Specs of the queue autoscaler: KEDA's triggers and ScaledObject (keda.sh/v1alpha1, no typed SDK class)."""

from __future__ import annotations

import json
from typing import Any

import pulumi

from core import metrics
from core.config import ActiveHours, Autoscaling
from core.first_token import StartingAnswer

AUTH_NAME = "managed-prometheus"
# The standby front (Envoy) before the model server: its listener, its admin port (Prometheus
# stats at /stats/prometheus), and the Envoy cluster name the wake query selects.
FRONT_PORT = 8008
FRONT_ADMIN_PORT = 9901
FRONT_CLUSTER = "llama-server"
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
        "body_format_override": {"text_format": "%LOCAL_REPLY_BODY%", "content_type": "application/json"},
    }
    route = {"match": {"prefix": "/"}, "route": {"cluster": FRONT_CLUSTER, "timeout": "0s"}}
    manager = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "front",
            "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
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
                    # A headless Service: DNS lists the ready pods, none while scaled to zero.
                    "type": "STRICT_DNS",
                    "dns_refresh_rate": "5s",
                    "connect_timeout": "2s",
                    "load_assignment": {"cluster_name": FRONT_CLUSTER, "endpoints": [{"lb_endpoints": [endpoint]}]},
                }
            ],
        },
    }


def wake_query(namespace: str) -> str:
    """Requests the front turned away for want of a replica in the last two minutes."""
    selector = f'namespace="{namespace}", envoy_cluster_name="{FRONT_CLUSTER}"'
    return (
        f"sum(increase(envoy_cluster_upstream_cx_none_healthy{{{selector}}}[2m]))"
        f" + sum(increase(envoy_cluster_upstream_cx_connect_fail{{{selector}}}[2m]))"
    )


def wake_trigger(namespace: str, query_endpoint: str) -> dict[str, Any]:
    """Demand at zero replicas: any turned-away request activates the server (KEDA's
    activationThreshold 0: more than none), and keeps one replica while requests keep coming."""
    trigger = prometheus_trigger("turned-away", wake_query(namespace), 1, query_endpoint)
    trigger["metadata"]["activationThreshold"] = "0"
    return trigger

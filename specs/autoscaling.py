"""Specs of the queue autoscaler: KEDA's triggers and ScaledObject (keda.sh/v1alpha1, no typed SDK class)."""

from __future__ import annotations

from typing import Any

import pulumi

from core import metrics
from core.config import ActiveHours, Autoscaling

AUTH_NAME = "managed-prometheus"


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

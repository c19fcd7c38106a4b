"""llama-server's Prometheus metrics and every query built on them, in one place.

The autoscaler's triggers, the alert rules and the dashboard all name metrics from here, and the
end-to-end test checks each name against the real server's /metrics (pinned release).
"""

from __future__ import annotations

from pathlib import Path

# The Grafana dashboard (Grafana JSON model); its panels query the metrics below.
DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "llamacpp.json"

# Exported by llama-server with --metrics (tools/server/server-context.cpp, metrics handler).
PROMPT_TOKENS_TOTAL = "llamacpp:prompt_tokens_total"
TOKENS_PREDICTED_TOTAL = "llamacpp:tokens_predicted_total"
REQUESTS_PROCESSING = "llamacpp:requests_processing"
REQUESTS_DEFERRED = "llamacpp:requests_deferred"
BUSY_SLOTS_PER_DECODE = "llamacpp:n_busy_slots_per_decode"
LLAMACPP_METRICS = (
    PROMPT_TOKENS_TOTAL,
    TOKENS_PREDICTED_TOTAL,
    REQUESTS_PROCESSING,
    REQUESTS_DEFERRED,
    BUSY_SLOTS_PER_DECODE,
)

# NVIDIA's DCGM exporter (its default counters, etc/default-counters.csv): framebuffer MiB of each
# GPU, labelled by node (`Hostname`) and GPU index (`gpu`).
GPU_MEMORY_USED = "DCGM_FI_DEV_FB_USED"
GPU_MEMORY_FREE = "DCGM_FI_DEV_FB_FREE"
# A GPU this full has no room for a longer prompt's compute buffers: out of memory is near.
GPU_MEMORY_ALERT_RATIO = 0.95

# kube-state-metrics, scraped by the managed Prometheus add-on's default targets.
DEPLOYMENT_SPEC_REPLICAS = "kube_deployment_spec_replicas"
DEPLOYMENT_AVAILABLE_REPLICAS = "kube_deployment_status_replicas_available"


def deferred_requests(namespace: str) -> str:
    return f'sum({REQUESTS_DEFERRED}{{namespace="{namespace}"}}) or vector(0)'


def processing_requests(namespace: str) -> str:
    return f'sum({REQUESTS_PROCESSING}{{namespace="{namespace}"}}) or vector(0)'


def deferred_alert(namespace: str) -> str:
    return f'sum({REQUESTS_DEFERRED}{{namespace="{namespace}"}}) > 0'


def no_ready_replica_alert(namespace: str, deployment: str) -> str:
    """Pods are wanted but none is available (a scaled-to-zero Deployment wants none: no alert)."""
    selector = f'{{namespace="{namespace}",deployment="{deployment}"}}'
    return f"({DEPLOYMENT_SPEC_REPLICAS}{selector} > 0) and ({DEPLOYMENT_AVAILABLE_REPLICAS}{selector} == 0)"


def gpu_memory_alert() -> str:
    """Any one GPU nearly full, each GPU of a several-GPU replica on its own (by node and index)."""
    used, free = GPU_MEMORY_USED, GPU_MEMORY_FREE
    return f"max by (Hostname, gpu) ({used} / ({used} + {free})) > {GPU_MEMORY_ALERT_RATIO}"

"""How long from `make up` to the first token, step by step, each figure marked measured or
estimated with its source. `make preflight` prints it; docs/operations.md, "Before make up", shows it for the dev stack.

The critical path: the cluster, with a role wait before it (its control-plane identity's rights
on the node subnet) and one after it (the deployer's cluster admin role, before any Kubernetes
object), runs beside the image build, which waits for the deployer's AcrPush role; the server's pod
then waits for a GPU node, downloads the model, and loads it. Each role wait is
`cluster.rolePropagationSeconds` (600 s by default): Azure RBAC changes take up to 10 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.config import StackConfig

# Throughput assumed for the model download from the Hugging Face CDN to an Azure VM: an
# estimate; no download on Azure has been measured.
DOWNLOAD_BYTES_PER_S = (50e6, 200e6)
# Read rate of the model volume when llama-server loads it: the default 60 GiB managed-csi-premium
# disk is a P6, 50 MB/s provisioned and up to 170 MB/s with credit bursting
# (learn.microsoft.com/azure/virtual-machines/disks-types, .../disk-bursting). An estimate: the
# files may still sit in the node's page cache after the download, which is faster.
LOAD_BYTES_PER_S = (50e6, 170e6)


@dataclass(frozen=True)
class Step:
    name: str
    low_s: int
    high_s: int
    how: Literal["measured", "estimate"]
    source: str
    parallel_with_previous: bool = False  # runs beside the step before it on the critical path
    beside_steps: int = 1  # with parallel_with_previous: how many steps before it it runs beside


def _builder(config: StackConfig) -> str:
    """`image.builder` where the schema has it (local | acr); a prebuilt image builds nothing."""
    if config.image.prebuilt:
        return "prebuilt"
    return str(getattr(config.image, "builder", "local"))


def image_step(builder: str, role_wait_s: int = 0) -> Step:
    """The image branch; a build first waits `role_wait_s` for the deployer's AcrPush role."""
    if builder == "prebuilt":
        return Step(
            "image: prebuilt, pulled by digest", 0, 0, "estimate", "image.prebuilt is set: nothing to build", True, 3
        )
    wait = f"after the {role_wait_s} s AcrPush role wait, " if role_wait_s else ""
    if builder == "acr":
        return Step(
            "image build: ACR Tasks (acr builder)",
            role_wait_s + 55 * 60,
            role_wait_s + 70 * 60,
            "estimate",
            f"{wait}an ACR Tasks agent has 2 vCPUs by default; the CUDA compile took 54 min on a 2-core machine (make cuda-check, measured)",
            True,
            3,
        )
    return Step(
        "image build: local Docker (local builder), then push",
        role_wait_s + 15 * 60,
        role_wait_s + 20 * 60,
        "estimate",
        f"{wait}8-core machine, from the CUDA compile on a 2-core machine (54 min, make cuda-check, measured); push of ~3.5 GB",
        True,
        3,
    )


def role_wait_step(what: str, seconds: int) -> Step:
    return Step(
        f"role wait: {what}",
        seconds,
        seconds,
        "estimate",
        "cluster.rolePropagationSeconds, a fixed wait: Azure RBAC changes take up to 10 minutes "
        "(learn.microsoft.com/azure/role-based-access-control/troubleshooting)",
    )


BUILDERS = ("local", "acr", "prebuilt")


def timeline(config: StackConfig, builder: str | None = None) -> list[Step]:
    model_bytes = config.model.size_bytes + config.model.mmproj_size_bytes
    gb = model_bytes / 1e9
    wait = config.cluster.role_propagation_seconds
    return [
        role_wait_step("the control plane's Network Contributor on the node subnet, before the cluster", wait),
        Step(
            "cluster: AKS control plane and system pool",
            6 * 60,
            10 * 60,
            "estimate",
            "typical AKS create with monitoring add-ons; not measured",
        ),
        role_wait_step("the deployer's cluster admin role, before the first Kubernetes object", wait),
        image_step(builder or _builder(config), wait),
        Step(
            "GPU node with the NVIDIA driver",
            5 * 60,
            10 * 60,
            "estimate",
            "node provisioning plus AKS's NVIDIA driver install (learn.microsoft.com/azure/aks/gpu-cluster); not measured",
        ),
        Step(
            f"model download ({gb:.2f} GB, verified by sha256)",
            round(model_bytes / DOWNLOAD_BYTES_PER_S[1]),
            round(model_bytes / DOWNLOAD_BYTES_PER_S[0]),
            "estimate",
            "model.sizeBytes + model.mmprojSizeBytes at 50-200 MB/s from the Hugging Face CDN",
        ),
        Step(
            "model load to the GPU (/health 200)",
            round(model_bytes / LOAD_BYTES_PER_S[1]),
            round(model_bytes / LOAD_BYTES_PER_S[0]) + 30,
            "estimate",
            "files read at 50-170 MB/s from a P6 premium disk plus up to 30 s CUDA start; a tiny model starts in 0.05-0.3 s (measured, CPU)",
        ),
    ]


def total_s(steps: list[Step]) -> tuple[int, int]:
    """Critical-path total: a step marked parallel runs beside the `beside_steps` sequential steps
    before it (and beside a parallel step before it), so only its excess over them counts."""
    low = high = 0
    sequential: list[tuple[int, int]] = []  # the sequential steps so far
    branch_low = branch_high = 0  # the longest parallel branch over the current window
    for step in steps:
        if step.parallel_with_previous:
            window = sequential[-step.beside_steps :]
            span_low = max(sum(s[0] for s in window), branch_low)
            span_high = max(sum(s[1] for s in window), branch_high)
            low += max(step.low_s - span_low, 0)
            high += max(step.high_s - span_high, 0)
            branch_low, branch_high = max(span_low, step.low_s), max(span_high, step.high_s)
        else:
            low, high = low + step.low_s, high + step.high_s
            sequential.append((step.low_s, step.high_s))
            branch_low, branch_high = step.low_s, step.high_s
    return low, high


def _minutes(seconds: int) -> str:
    return f"{seconds / 60:.0f}" if seconds >= 60 else f"{seconds / 60:.1f}"


def total_text(config: StackConfig) -> str:
    """The expected time to the first token, as `make preflight` prints it."""
    low, high = total_s(timeline(config))
    return f"{_minutes(low)}-{_minutes(high)} minutes"


def timeline_markdown(config: StackConfig) -> str:
    steps = timeline(config)
    lines = ["| step | minutes | measured or estimate: source |", "|---|---|---|"]
    for s in steps:
        beside = " (beside the cluster)" if s.parallel_with_previous else ""
        lines.append(f"| {s.name}{beside} | {_minutes(s.low_s)}–{_minutes(s.high_s)} | {s.how}: {s.source} |")
    low, high = total_s(steps)
    lines.append(f"| **`make up` to first token** | **{_minutes(low)}–{_minutes(high)}** | sum of the critical path |")
    for other in BUILDERS:
        if other != _builder(config):
            o_low, o_high = total_s(timeline(config, other))
            label = "a prebuilt image" if other == "prebuilt" else f"the {other} builder"
            lines.append(f"| … with {label} instead | {_minutes(o_low)}–{_minutes(o_high)} | same steps |")
    return "\n".join(lines) + "\n"

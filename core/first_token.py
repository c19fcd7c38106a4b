"""How long to the first token: a first deploy (`make up` on a new stack), a llama.cpp bump, and a
scale from zero. Each step is marked measured, estimate (with its source) or bound (a limit the
program waits at most, counted at its typical 0 s for the low figure and at the bound for the high
one). `make preflight` prints it; summary.md shows it beside the cost; the dev stack's is in
docs/operations.md, "Before make up".

Steps form a graph (`after`): a step starts when every step it follows has finished, so work that
runs side by side (the image build beside the cluster, the cluster admin poll beside the GPU node)
costs only its excess over the other branch. The total is the last finish, for the low and the
high figures separately.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core import permissions
from core.config import StackConfig

GB_PER_GIB = 2**30 / 1e9
# The goals, seconds: first deploy and bump 20 minutes, scale from zero 8 minutes.
GOALS_S = {"first deploy": 20 * 60, "llama.cpp bump": 20 * 60, "scale from zero": 8 * 60}

# Throughput assumed for the model download from the Hugging Face CDN to an Azure VM: an
# estimate; no download on Azure has been measured.
DOWNLOAD_BYTES_PER_S = (50e6, 200e6)
# Read rate of the model volume: the default 60 GiB managed-csi-premium disk is a P6, 50 MB/s
# provisioned and up to 170 MB/s with credit bursting (learn.microsoft.com/azure/virtual-machines/
# disks-types, .../disk-bursting). Azure Files premium (ReadWriteMany) gives 110 MiB/s at 100 GiB
# provisioned (learn.microsoft.com/azure/storage/files/understanding-billing, provisioned v1:
# 100 + ceil(0.04 x GiB) + ceil(0.06 x GiB) MiB/s), within this range.
LOAD_BYTES_PER_S = (50e6, 170e6)
# CUDA context and cuBLAS start before the weights move: up to 30 s (estimate).
CUDA_START_S = 30
# sha256 of a file on the volume: 5.3-5.9 s of CPU a GiB (sha256sum, measured):
# docs/measurements.md, "Build, test and render times".
SHA256_S_PER_GIB = (5.3, 5.9)
# A GPU node from nothing to Ready with the NVIDIA driver: KAITO measured 284 s on AKS
# (github.com/kaito-project/kaito/issues/2325, an A100 node); 600 s is our upper estimate
# (learn.microsoft.com/azure/aks/gpu-cluster: the driver installs at node start).
GPU_NODE_S = (284, 600)
# An image pull on a new node: KAITO measured 5.6 GB in 101 s from a registry in the region
# (github.com/kaito-project/kaito/issues/2325), about 55 MB/s; the CUDA 12.8 runtime image with llama-server is
# about 3.5 GB (an estimate: docs/design.md, "The image"): 64 s, up to 120 s.
IMAGE_PULL_S = (64, 120)
# The AKS control plane with its system pool: an estimate (not measured here).
CLUSTER_S = (6 * 60, 10 * 60)
# Resource group, VNet, subnet, identities and registry: ARM creates them in about a minute (estimate).
PREP_S = (60, 120)
# Kubernetes objects before the pods: namespace, secrets, volume claim, device plugin (estimate).
KUBERNETES_S = (20, 60)
# ACR Tasks building image/Dockerfile.release: pulls the runtime base, downloads the release
# tarball, pushes; nothing compiled (estimate: no ACR Tasks run measured).
RELEASE_BUILD_S = {"acr": (3 * 60, 6 * 60), "local": (5 * 60, 15 * 60)}
# The source build: the CUDA compile took 54 min on a 2-core machine (make cuda-check, measured);
# an ACR Tasks agent has 2 vCPUs by default; a local build on 8 cores is about a quarter of that.
SOURCE_BUILD_S = {"acr": (55 * 60, 70 * 60), "local": (15 * 60, 20 * 60)}
# KEDA reads the demand every autoscaling.pollingSeconds; managed Prometheus scrapes every 30 s
# (learn.microsoft.com/azure/azure-monitor/containers/prometheus-metrics-scrape-configuration).
SCRAPE_S = 30
# The cluster autoscaler looks for pending pods every 10 s (AKS default scan-interval,
# learn.microsoft.com/azure/aks/cluster-autoscaler).
AUTOSCALER_SCAN_S = 10
# A ReadWriteOnce disk detaches from no node and attaches to the new one (estimate).
DISK_ATTACH_S = (15, 60)

How = Literal["measured", "estimate", "bound"]


@dataclass(frozen=True)
class Step:
    key: str
    name: str
    low_s: int
    high_s: int
    how: How
    source: str
    after: tuple[str, ...] = ()  # the steps that must finish before this one starts


def finishes(steps: list[Step]) -> dict[str, tuple[int, int]]:
    """Each step's earliest finish (low, high): its duration after the latest step it follows."""
    done: dict[str, tuple[int, int]] = {}
    for s in steps:  # listed in an order where each step follows only steps above it
        start_low = max((done[a][0] for a in s.after), default=0)
        start_high = max((done[a][1] for a in s.after), default=0)
        done[s.key] = (start_low + s.low_s, start_high + s.high_s)
    return done


def total_s(steps: list[Step]) -> tuple[int, int]:
    ends = finishes(steps)
    return max(e[0] for e in ends.values()), max(e[1] for e in ends.values())


def critical_path(steps: list[Step], high: bool = True) -> list[str]:
    """The keys of the steps that decide the total (at the high figures by default)."""
    i = 1 if high else 0
    ends, by_key = finishes(steps), {s.key: s for s in steps}
    key = max(ends, key=lambda k: ends[k][i])
    path = [key]
    while by_key[key].after:
        key = max(by_key[key].after, key=lambda k: ends[k][i])
        path.append(key)
    return path[::-1]


def image_path(config: StackConfig) -> str:
    """`prebuilt`, or `<builder>-<release|source>`: where the image comes from."""
    i = config.image
    if i.prebuilt:
        return "prebuilt"
    return f"{i.builder}-{i.llama_server_from}"


def _model_bytes(config: StackConfig) -> int:
    return config.model.size_bytes + config.model.mmproj_size_bytes


def image_build_step(path: str, after: tuple[str, ...]) -> Step:
    if path == "prebuilt":
        return Step(
            "image", "image: prebuilt, pulled by digest", 0, 0, "estimate", "image.prebuilt: nothing to build", after
        )
    builder, source = path.split("-")
    where = "ACR Tasks" if builder == "acr" else "local Docker, then push"
    if source == "release":
        low, high = RELEASE_BUILD_S[builder]
        return Step(
            "image",
            f"image build ({where}): upstream's release binaries, no compile",
            low,
            high,
            "estimate",
            "pull of the CUDA runtime base, download of the release tarball, push; not measured",
            after,
        )
    low, high = SOURCE_BUILD_S[builder]
    return Step(
        "image",
        f"image build ({where}): CUDA compile from source",
        low,
        high,
        "estimate",
        "the CUDA compile took 54 min on a 2-core machine (make cuda-check, measured); an ACR Tasks "
        "agent has 2 vCPUs by default, a local build is taken at 8 cores",
        after,
    )


def role_poll_step(key: str, what: str, bound_s: int, after: tuple[str, ...], settle_s: int = 0) -> Step:
    settled = settle_s if bound_s > 0 else 0
    return Step(
        key,
        f"role poll: {what}",
        settled,
        bound_s + settled,
        "bound",
        "polled every 10 s until ARM grants it (tools/role_ready.py), at most cluster.rolePropagationSeconds: "
        "Azure RBAC changes take up to 10 minutes (learn.microsoft.com/azure/role-based-access-control/troubleshooting)"
        + (
            f"; then {settled} s for AKS's authorizer, which takes up to 5 minutes more "
            "(learn.microsoft.com/azure/aks/manage-azure-rbac)"
            if settled
            else ""
        ),
        after,
    )


def _serving_steps(config: StackConfig, after_node: tuple[str, ...], download: bool) -> list[Step]:
    """From a GPU node with Kubernetes objects to /health 200: pull, download, verify, load."""
    model_bytes = _model_bytes(config)
    gib = model_bytes / 2**30
    steps = [
        Step(
            "pull",
            "image pull on the GPU node",
            *IMAGE_PULL_S,
            "estimate",
            "KAITO measured a 5.6 GB pull in 101 s on AKS (github.com/kaito-project/kaito/issues/2325); the image is about 3.5 GB",
            after_node,
        )
    ]
    if download:
        steps.append(
            Step(
                "download",
                f"model download ({model_bytes / 1e9:.2f} GB) and its sha256",
                round(model_bytes / DOWNLOAD_BYTES_PER_S[1] + gib * SHA256_S_PER_GIB[0]),
                round(model_bytes / DOWNLOAD_BYTES_PER_S[0] + gib * SHA256_S_PER_GIB[1]),
                "estimate",
                "50-200 MB/s from the Hugging Face CDN (estimate) plus sha256 at 5.3-5.9 s/GiB (measured, as below)",
                ("pull",),
            )
        )
    before_verify = ("download",) if download else ("pull",)
    if config.model.verify_on_start:
        steps.append(
            Step(
                "verify",
                "server pod re-hashes the files (model.verifyOnStart)",
                round(gib * SHA256_S_PER_GIB[0]),
                round(gib * SHA256_S_PER_GIB[1]),
                "measured",
                'sha256 at 5.3-5.9 s of CPU a GiB (docs/measurements.md, "Build, test and render times")',
                before_verify,
            )
        )
    steps.append(
        Step(
            "load",
            "model load to the GPU (/health 200), --load-mode auto (mmap)",
            round(model_bytes / LOAD_BYTES_PER_S[1]),
            round(model_bytes / LOAD_BYTES_PER_S[0]) + CUDA_START_S,
            "estimate",
            "at most a read at 50-170 MB/s (P6 disk, provisioned to burst) plus up to 30 s CUDA start; the "
            "files are usually still in the page cache from the sha256 just before, which mmap reads at "
            "memory speed (DirectIO, --load-mode dio, would skip that cache)",
            ("verify",) if config.model.verify_on_start else before_verify,
        )
    )
    return steps


def first_deploy(config: StackConfig, path: str | None = None) -> list[Step]:
    path = path or image_path(config)
    wait = config.cluster.role_propagation_seconds
    subnet_wait = (
        Step(
            "subnet-wait",
            "role wait: none, bootstrap made the control plane's identity and its role beforehand",
            0,
            0,
            "bound",
            "cluster.adoptControlPlaneIdentity: the role was granted when bootstrap ran, long before this deploy",
            ("prep",),
        )
        if config.cluster.adopt_control_plane_identity
        else Step(
            "subnet-wait",
            "role wait: the control plane's Network Contributor on the node subnet",
            wait,
            wait,
            "bound",
            "a fixed wait of cluster.rolePropagationSeconds: the role is a managed identity's, which the "
            "deployer cannot probe (ARM's permissions API answers for the caller only)",
            ("prep",),
        )
    )
    steps = [
        Step(
            "prep",
            "resource group, VNet, subnet, identities, registry",
            *PREP_S,
            "estimate",
            "ARM creates; not measured",
        ),
        subnet_wait,
        Step(
            "cluster",
            "AKS control plane and system pool",
            *CLUSTER_S,
            "estimate",
            "typical AKS create; not measured",
            ("subnet-wait",),
        ),
    ]
    if path != "prebuilt":
        steps.append(role_poll_step("registry-poll", "the deployer's right to build in the registry", wait, ("prep",)))
    steps.append(image_build_step(path, ("registry-poll",) if path != "prebuilt" else ("prep",)))
    # With gpuPool.minCount 0 the pool is created empty, and its first node starts when the download
    # Job's pod is pending; with a node kept, the pool's creation boots it beside the admin poll.
    node_first = config.cluster.gpu_pool.min_count > 0
    node = Step(
        "gpu-node",
        "GPU node with the NVIDIA driver" + ("" if node_first else ", started for the download Job's pod"),
        *GPU_NODE_S,
        "estimate",
        "KAITO measured 284 s for a GPU node on AKS (github.com/kaito-project/kaito/issues/2325); 600 s is our upper estimate",
        ("cluster",) if node_first else ("kubernetes",),
    )
    kubernetes = Step(
        "kubernetes",
        "namespace, secrets, volume, download Job, device plugin",
        *KUBERNETES_S,
        "estimate",
        "Kubernetes objects and the device plugin's pod; not measured",
        ("gpu-node", "admin-poll") if node_first else ("cluster", "admin-poll"),
    )
    if config.cluster.deployer_holds_cluster_admin:
        steps.append(
            Step(
                "admin-poll",
                "role poll: none, bootstrap made the deployer cluster admin of the group beforehand",
                0,
                0,
                "bound",
                "cluster.deployerHoldsClusterAdmin: granted when bootstrap ran, long before this deploy",
                ("cluster",),
            )
        )
    else:
        steps.append(
            role_poll_step(
                "admin-poll", "the deployer's cluster admin role", wait, ("cluster",), permissions.AKS_ADMIN.settle_s
            )
        )
    steps += [node, kubernetes] if node_first else [kubernetes, node]
    return steps + _serving_steps(config, ("gpu-node", "kubernetes", "image"), download=True)


def bump(config: StackConfig, path: str | None = None) -> list[Step]:
    """A new llama.cpp release on a running stack: build, then the Recreate rollout (model kept)."""
    path = path or image_path(config)
    return [
        image_build_step(path, ()),
        Step(
            "stop",
            "old pod drains and stops (Recreate: the GPU is freed first)",
            5,
            config.server.termination_grace_seconds,
            "bound",
            "an idle server stops in seconds; at most server.terminationGraceSeconds",
            ("image",),
        ),
        *_serving_steps(config, ("stop",), download=False),
    ]


def scale_from_zero(config: StackConfig) -> list[Step]:
    """A request while no replica runs (and no GPU node): demand seen, node, pull, attach, load."""
    poll = config.autoscaling.polling_seconds
    steps = [
        Step(
            "demand",
            "demand seen by KEDA",
            0,
            SCRAPE_S + poll,
            "bound",
            f"a scrape every {SCRAPE_S} s (managed Prometheus default) and a KEDA poll every "
            f"autoscaling.pollingSeconds={poll}, of the standby front's turned-away requests "
            "(KEDA's turned-away trigger; the request itself gets 503 with Retry-After at once: "
            'docs/design.md, "Time to the first token")',
        ),
        Step(
            "scale-up",
            "cluster autoscaler asks for a GPU node",
            0,
            AUTOSCALER_SCAN_S,
            "bound",
            "scan-interval 10 s (AKS default)",
            ("demand",),
        ),
        Step(
            "gpu-node",
            "GPU node with the NVIDIA driver",
            *GPU_NODE_S,
            "estimate",
            "KAITO measured 284 s for a GPU node on AKS (github.com/kaito-project/kaito/issues/2325); 600 s is our upper estimate",
            ("scale-up",),
        ),
        Step(
            "attach",
            "model volume attaches to the new node",
            *DISK_ATTACH_S,
            "estimate",
            "a ReadWriteOnce disk moves to the new node; not measured",
            ("gpu-node",),
        ),
    ]
    return steps + _serving_steps(config, ("attach",), download=False)


def timelines(config: StackConfig) -> dict[str, list[Step]]:
    return {
        "first deploy": first_deploy(config),
        "llama.cpp bump": bump(config),
        "scale from zero": scale_from_zero(config),
    }


def minutes(seconds: int) -> str:
    return f"{seconds / 60:.0f}" if seconds >= 60 else f"{seconds / 60:.1f}"


def verdict(name: str, steps: list[Step]) -> str:
    """Whether the estimate meets its goal, and if not, which step misses and why."""
    low, high = total_s(steps)
    goal = GOALS_S[name]
    if high <= goal:
        return f"meets the {minutes(goal)}-minute goal"
    path = critical_path(steps, high=low > goal)
    by_key = {s.key: s for s in steps}
    longest = max((by_key[k] for k in path), key=lambda s: s.high_s if low <= goal else s.low_s)
    when = "at the high figures" if low <= goal else "even at the low figures"
    return f"misses the {minutes(goal)}-minute goal {when}: the longest step on its path is {longest.name}"


def total_text(config: StackConfig) -> str:
    """The expected time to the first token of a first deploy, as `make preflight` prints it."""
    low, high = total_s(first_deploy(config))
    return f"{minutes(low)}-{minutes(high)} minutes"


def summary_lines(config: StackConfig) -> list[str]:
    """One row per timeline: first deploy, bump, scale from zero, with the verdict on the goal."""
    rows = ["| to the first token | minutes | goal |", "|---|---|---|"]
    for name, steps in timelines(config).items():
        low, high = total_s(steps)
        rows.append(f"| {name} | {minutes(low)}–{minutes(high)} | {verdict(name, steps)} |")
    path = image_path(config)
    if path.endswith("-source"):  # what the release binaries would change
        release = path.replace("-source", "-release")
        for name, steps in (("first deploy", first_deploy(config, release)), ("llama.cpp bump", bump(config, release))):
            low, high = total_s(steps)
            rows.append(
                f"| … {name} with image.llamaServerFrom=release | {minutes(low)}–{minutes(high)} | {verdict(name, steps)} |"
            )
    return rows


def timeline_markdown(config: StackConfig, steps: list[Step] | None = None) -> str:
    """The steps of one timeline (the first deploy by default), with the path that decides it."""
    steps = steps if steps is not None else first_deploy(config)
    on_path = set(critical_path(steps))
    lines = ["| step | minutes | on the path | measured, estimate or bound: source |", "|---|---|---|---|"]
    for s in steps:
        lines.append(
            f"| {s.name} | {minutes(s.low_s)}–{minutes(s.high_s)} | {'yes' if s.key in on_path else 'beside it'} | {s.how}: {s.source} |"
        )
    low, high = total_s(steps)
    lines.append(f"| **to the first token** | **{minutes(low)}–{minutes(high)}** | | the path's sum |")
    if steps[0].key == "prep":  # the first deploy: the other image paths beside it
        current = image_path(config)
        for other in ("acr-release", "acr-source", "local-release", "local-source", "prebuilt"):
            if other != current:
                o_low, o_high = total_s(first_deploy(config, other))
                lines.append(f"| … with the image from {other} | {minutes(o_low)}–{minutes(o_high)} | | same steps |")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class StartingAnswer:
    """What a request gets while no replica exists: 503, Retry-After and a sentence with the minutes."""

    retry_after_s: int  # when the earliest start could answer (the low estimate)
    minutes: int  # the high estimate, rounded up: "starting, about N minutes"

    @property
    def message(self) -> str:
        return f"starting, about {self.minutes} minutes"


def starting_answer(config: StackConfig) -> StartingAnswer:
    low, high = total_s(scale_from_zero(config))
    return StartingAnswer(retry_after_s=low, minutes=-(-high // 60))

"""A read-only check of a stack's live deployment: one sentence per finding, each with its fix.

usage: python -m tools.doctor --stack dev [--kubeconfig FILE] [--now 2026-12-05T14:00:00+00:00]

It reads (GET only, with the stack's kubeconfig) the server's pods and their events, the last log
lines of llama-server (and of the run before a restart), the model download Job and its pods,
the GPU nodes and what they advertise, the Deployment and KEDA's ScaledObject, and the cluster
autoscaler's events in kube-system. `gather` collects those answers; `diagnose` is pure and turns
them into findings, the way core/rules.py turns a config into problems. Exit 0 when nothing is
wrong, 1 on any problem, 2 when the cluster cannot be read.

The texts it recognises are the ones the programs print:
- image/fetch-model.sh (the download Job and the server's verify-* init containers): `sha256
  mismatch: got A, expected B`, `size mismatch: got N bytes, FETCH_SIZE_BYTES is M`, `announced more
  than`, `(HTTP 404)`, `(HTTP 401)`/`(HTTP 403)`, `timed out or stalled`, `FETCH_TOTAL_SECONDS=`;
- llama.cpp: `llama_context: n_ctx_seq     = N` (src/llama-context.cpp), `cudaMalloc failed: out
  of memory` (ggml/src/ggml-cuda/ggml-cuda.cu, ggml_backend_cuda_buffer_type_alloc_buffer),
  `exceeds the available context size` (the HTTP 400 of tools/server);
- Kubernetes: FailedScheduling `Insufficient nvidia.com/gpu`; the cluster autoscaler's
  NotTriggerScaleUp (`max node group size reached`, `in backoff after failed scale-up`) and, in
  kube-system, FailedToScaleUpGroup with Azure's `exceeding approved <family> Cores quota` (older:
  `exceeding quota limits of Core`), as quoted in github.com/Azure/AKS/issues/1184,
  github.com/Azure/AKS/issues/2543 and github.com/cilium/cilium/issues/31859; a Job's Failed condition (BackoffLimitExceeded,
  DeadlineExceeded); waiting reasons ErrImagePull, ImagePullBackOff, CrashLoopBackOff.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import kubernetes

from core import labels, loading, rules
from core.config import StackConfig
from core.loading import ConfigError
from tools.kube import Cluster, ClusterError, kubeconfig_path, selector

ROOT = Path(__file__).resolve().parent.parent
SERVER_CONTAINER = "llama-server"
# Log lines read per container: enough for llama-server's start-up report (n_ctx_seq is near its top
# for a fresh pod; a long-running one has rotated it out, and then nothing is claimed about it).
TAIL_LINES = 400
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
# KEDA's documented switch that holds a ScaledObject at a fixed count
# (keda.sh/docs/latest/reference/scaledobject-spec/, and the paused-replicas annotation it takes).
KEDA_PAUSE = "autoscaling.keda.sh/paused-replicas"
GPU_RESOURCE = "nvidia.com/gpu"
N_CTX_SEQ = re.compile(r"n_ctx_seq\s*=\s*(\d+)")
CUDA_OOM = re.compile(
    r"(allocating [\d.]+ MiB on device \d+: cudaMalloc failed: out of memory|CUDA error: out of memory)"
)
CONTEXT_400 = "exceeds the available context size"


@dataclass(frozen=True)
class Finding:
    """One sentence: what is wrong (or fine) and what to do."""

    text: str
    problem: bool = True

    def line(self) -> str:
        return f"{'problem' if self.problem else 'ok'}: {self.text}"


@dataclass
class Snapshot:
    """What the API answered, as its JSON: the input of `diagnose`."""

    stack: str
    now: datetime
    pods: list[dict[str, Any]] = field(default_factory=list)  # the server's pods
    download_pods: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # the model download Jobs
    events: list[dict[str, Any]] = field(default_factory=list)  # the serving namespace's
    system_events: list[dict[str, Any]] = field(default_factory=list)  # kube-system's (the autoscaler)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    deployment: dict[str, Any] | None = None
    scaled_object: dict[str, Any] | None = None
    logs: dict[str, str] = field(default_factory=dict)  # "<pod>/<container>[/previous]" -> last lines


def gather(cluster: Cluster, stack: str, now: datetime, tail: int = TAIL_LINES) -> Snapshot:
    names = labels.ServingNames(stack)
    ns = names.namespace
    core = kubernetes.client.CoreV1Api(cluster.api)
    batch = kubernetes.client.BatchV1Api(cluster.api)
    apps = kubernetes.client.AppsV1Api(cluster.api)
    custom = kubernetes.client.CustomObjectsApi(cluster.api)
    snap = Snapshot(stack=stack, now=now)
    snap.pods = cluster.items(core.list_namespaced_pod, ns, label_selector=selector(labels.selector(stack, "server")))
    download = selector(labels.selector(stack, "model-download"))
    snap.download_pods = cluster.items(core.list_namespaced_pod, ns, label_selector=download)
    snap.jobs = cluster.items(batch.list_namespaced_job, ns, label_selector=download)
    snap.events = cluster.items(core.list_namespaced_event, ns)
    snap.system_events = cluster.items(core.list_namespaced_event, "kube-system")
    snap.nodes = cluster.items(core.list_node)
    snap.deployment = cluster.json(apps.read_namespaced_deployment, names.server, ns)
    snap.scaled_object = cluster.json(
        custom.get_namespaced_custom_object, "keda.sh", "v1alpha1", ns, "scaledobjects", names.server
    )
    for pod in snap.pods:
        name = pod["metadata"]["name"]
        for status in container_statuses(pod):
            if status["name"] == SERVER_CONTAINER or failed(status):
                _read(cluster, snap, name, ns, status, tail)
    for pod in snap.download_pods:
        for status in container_statuses(pod):
            if failed(status):
                _read(cluster, snap, pod["metadata"]["name"], ns, status, tail)
    return snap


def _read(cluster: Cluster, snap: Snapshot, pod: str, ns: str, status: dict[str, Any], tail: int) -> None:
    key = f"{pod}/{status['name']}"
    text = cluster.log(pod, ns, status["name"], tail=tail)
    if text is not None:
        snap.logs[key] = text
    if status.get("restartCount", 0) > 0:
        before = cluster.log(pod, ns, status["name"], tail=tail, previous=True)
        if before is not None:
            snap.logs[f"{key}/previous"] = before


# --- reading the API's JSON ---------------------------------------------------------------------


def container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status", {})
    return [*status.get("initContainerStatuses", []), *status.get("containerStatuses", [])]


def failed(status: dict[str, Any]) -> bool:
    """A container that ended with an error, now or in its last run."""
    for state in (status.get("state", {}), status.get("lastState", {})):
        ended = state.get("terminated")
        if ended and ended.get("exitCode", 0) != 0:
            return True
    return False


def waiting(status: dict[str, Any]) -> dict[str, Any]:
    return status.get("state", {}).get("waiting") or {}


def events_of(snap: Snapshot, name: str) -> list[dict[str, Any]]:
    return [e for e in snap.events if e.get("involvedObject", {}).get("name") == name]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c.get("type") == kind), {})


def last_match(text: str, pattern: re.Pattern[str]) -> str | None:
    """The last match of `pattern` in the log."""
    found = pattern.findall(text)
    return found[-1] if found else None


def fetch_lines(text: str) -> list[str]:
    """image/fetch-model.sh's own lines ("fetch-model: <file>: ...")."""
    return [line.strip() for line in text.splitlines() if line.startswith("fetch-model: ")]


# --- the findings ---------------------------------------------------------------------------------


def diagnose(snap: Snapshot, config: StackConfig) -> list[Finding]:
    findings: list[Finding] = []
    findings += gpu_nodes(snap)
    findings += download_job(snap, config)
    for pod in snap.pods:
        findings += pod_findings(snap, pod, config)
    findings += replicas(snap, config)
    if not any(f.problem for f in findings) and any(ready(p) for p in snap.pods):
        total = len(snap.pods)
        findings.append(Finding(f"{sum(ready(p) for p in snap.pods)} of {total} server pod(s) ready", problem=False))
    return findings


def ready(pod: dict[str, Any]) -> bool:
    return condition(pod, "Ready").get("status") == "True"


def gpu_nodes(snap: Snapshot) -> list[Finding]:
    key, value = labels.GPU_POOL_LABEL
    pool = [n for n in snap.nodes if n["metadata"].get("labels", {}).get(key) == value]
    if not pool:
        return []
    advertised = sum(int(n.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0")) for n in pool)
    if advertised == 0:
        return [
            Finding(
                f"{len(pool)} GPU node(s) advertise no {GPU_RESOURCE}: the NVIDIA device plugin is not running on "
                "them; check its DaemonSet in kube-system (make logs shows the server only) and run "
                f"make up STACK={snap.stack} to restore it"
            )
        ]
    return [Finding(f"{len(pool)} GPU node(s), {advertised} {GPU_RESOURCE} allocatable", problem=False)]


def download_job(snap: Snapshot, config: StackConfig) -> list[Finding]:
    findings = []
    for job in snap.jobs:
        failure = condition(job, "Failed")
        if failure.get("status") != "True":
            continue
        name = job["metadata"]["name"]
        pods = [p for p in snap.download_pods if job_of(p) == name]
        lines = [
            line
            for p in pods
            for s in container_statuses(p)
            for key in (f"{p['metadata']['name']}/{s['name']}", f"{p['metadata']['name']}/{s['name']}/previous")
            for line in fetch_lines(snap.logs.get(key, ""))
        ]
        findings.append(Finding(f"the model download Job {name} failed: " + download_reason(failure, lines, config)))
    return findings


def job_of(pod: dict[str, Any]) -> str | None:
    """The Job a pod belongs to (the Job controller's labels; the short one before Kubernetes 1.27)."""
    meta = pod["metadata"].get("labels", {})
    return meta.get("batch.kubernetes.io/job-name") or meta.get("job-name")


def download_reason(failure: dict[str, Any], lines: list[str], config: StackConfig) -> str:
    """Why fetch-model.sh stopped, from its last failing line, with the config key to change."""
    m = config.model
    failing = [line for line in lines if "mismatch" in line or "download failed" in line or "announced" in line]
    line = failing[-1] if failing else ""
    file = line.split(": ")[1] if line.count(": ") >= 2 else "a model file"
    keys = ("model.sha256", "model.sizeBytes") if file == m.file else ("model.mmprojSha256", "model.mmprojSizeBytes")
    if digest := re.search(r"sha256 mismatch: got ([0-9a-f]{64}), expected ([0-9a-f]{64})", line):
        return (
            f"{file} has sha256 {digest[1]}, not the pinned {digest[2]} ({keys[0]}); the file at model.revision is "
            f"another: pin its digest (make model prints it) or the revision that has this one, then make up"
        )
    if size := re.search(r"size mismatch: got (\d+) bytes, FETCH_SIZE_BYTES is (\d+)", line):
        return f"{file} is {size[1]} bytes, not {keys[1]}={size[2]}; set {keys[1]} (make model prints it), then make up"
    if "announced more than" in line:
        return f"{file} is larger than {keys[1]} allows; set {keys[1]} (make model prints it), then make up"
    if "(HTTP 404)" in line:
        return (
            f"{file} is not at its URL (HTTP 404); check model.repo={m.repo}, model.revision and the file name, "
            "then make up"
        )
    if "(HTTP 401)" in line or "(HTTP 403)" in line:
        return (
            f"Hugging Face refused {file} (401/403): the repository is gated; set a token that may read it with "
            "pulumi config set --secret hfToken <token>, then make up"
        )
    if "timed out or stalled" in line or "FETCH_TOTAL_SECONDS=" in line or failure.get("reason") == "DeadlineExceeded":
        return (
            f"the download ran past its time (model.downloadTimeoutSeconds={m.download_timeout_seconds}); "
            "raise it, or try again later if Hugging Face was slow, then make up"
        )
    said = f" ({line.removeprefix('fetch-model: ')})" if line else ""
    return (
        f"{failure.get('reason', 'Failed')}{said}; make logs STACK=<stack> shows the Job's logs; fix what they "
        "name, then make up"
    )


def pod_findings(snap: Snapshot, pod: dict[str, Any], config: StackConfig) -> list[Finding]:
    name = pod["metadata"]["name"]
    phase = pod.get("status", {}).get("phase")
    for status in container_statuses(pod):
        wait = waiting(status)
        if wait.get("reason") in IMAGE_PULL_REASONS:
            return [
                Finding(
                    f"pod {name} cannot pull its image {status.get('image', '')} ({wait['reason']}: "
                    f"{shortened(wait.get('message', ''))}); check that make up STACK={snap.stack} built and pushed it "
                    "to the stack's registry and that the cluster's kubelet identity holds AcrPull on it"
                )
            ]
    if phase == "Pending" and condition(pod, "PodScheduled").get("reason") == "Unschedulable":
        return [unschedulable(snap, pod, config)]
    found = []
    for status in pod.get("status", {}).get("initContainerStatuses", []):
        if failed(status):
            key = f"{name}/{status['name']}"
            lines = fetch_lines(snap.logs.get(key, "") or snap.logs.get(f"{key}/previous", ""))
            said = lines[-1].removeprefix("fetch-model: ") if lines else "no log"
            found.append(
                Finding(
                    f"pod {name}'s check {status['name']} failed ({said}); the server starts only on the files the "
                    f"download Job verified: see its finding above, or make logs STACK={snap.stack} CONTAINER={status['name']}"
                )
            )
    server = next(
        (s for s in pod.get("status", {}).get("containerStatuses", []) if s["name"] == SERVER_CONTAINER), None
    )
    log = snap.logs.get(f"{name}/{SERVER_CONTAINER}", "")
    before = snap.logs.get(f"{name}/{SERVER_CONTAINER}/previous", "")
    oom = last_match(before + "\n" + log, CUDA_OOM)
    if oom:
        found.append(
            Finding(
                f"llama-server in pod {name} ran out of GPU memory while loading ({oom}); make the model fit: "
                f"lower server.contextSize, set server.cacheTypeK and cacheTypeV to q8_0, or pick a GPU size with more "
                f"memory (cluster.gpuPool.vmSize); make render STACK={snap.stack} shows the estimate"
            )
        )
    found += context(snap, name, log or before, config)
    if server is not None and not oom:
        found += not_ready(snap, pod, server, config)
    return found


def shortened(text: str, head: int = 80, tail: int = 120) -> str:
    """A long kubelet message cut in the middle, at words: its start says what, its end says why."""
    if len(text) <= head + tail:
        return text
    return f"{text[:head].rsplit(' ', 1)[0]} … {text[-tail:].split(' ', 1)[-1]}"


def unschedulable(snap: Snapshot, pod: dict[str, Any], config: StackConfig) -> Finding:
    name = pod["metadata"]["name"]
    mine = events_of(snap, name)
    scheduler = next(
        (e.get("message", "") for e in reversed(mine) if e.get("reason") == "FailedScheduling"),
        condition(pod, "PodScheduled").get("message", ""),
    )
    scale = [e.get("message", "") for e in mine if e.get("reason") == "NotTriggerScaleUp"]
    quota = next(
        (e.get("message", "") for e in snap.system_events if "quota" in e.get("message", "").lower()),
        None,
    )
    pool = config.cluster.gpu_pool
    if quota is not None:
        limit = re.search(r"exceeding (?:approved (.+?) quota|quota limits? of ([^.]+))", quota)
        what = (limit[1] or limit[2]) if limit else "vCPUs"
        return Finding(
            f"pod {name} is Pending: no node has a free GPU and Azure refused a new one for quota ({what}); ask for "
            f"more {pool.vm_size} family vCPU quota in {config.cluster.location} (make preflight STACK={snap.stack} "
            "shows what is free), or lower cluster.gpuPool.maxCount"
        )
    if any("max node group size reached" in m for m in scale):
        return Finding(
            f"pod {name} is Pending: every GPU node is taken and the pool is at cluster.gpuPool.maxCount="
            f"{pool.max_count}; raise cluster.gpuPool.maxCount or lower the replicas, then make up"
        )
    if any("backoff after failed scale-up" in m for m in scale):
        return Finding(
            f"pod {name} is Pending: the autoscaler's last try to add a GPU node failed and it waits before the "
            f"next; see kube-system's events (FailedToScaleUpGroup) and make preflight STACK={snap.stack} for quota"
        )
    if GPU_RESOURCE in scheduler:
        return Finding(
            f"pod {name} is Pending: no node has a free GPU ({scheduler.strip()}); the autoscaler adds a "
            f"{pool.vm_size} node in about 5-10 minutes; if none comes, check quota with "
            f"make preflight STACK={snap.stack} and cluster.gpuPool.maxCount"
        )
    return Finding(
        f"pod {name} is Pending: the scheduler says: {scheduler.strip() or 'no reason given'}; "
        "compare the pod's requests with the GPU node size (make render shows both)"
    )


def context(snap: Snapshot, name: str, log: str, config: StackConfig) -> list[Finding]:
    """The seed deployment's HTTP 400: each slot smaller than one request may need."""
    seen = N_CTX_SEQ.findall(log)
    need = rules.request_tokens(config)
    b = config.server.request_budget
    budget = f"{b.images} image x {b.image_max_tokens} + prompt {b.prompt_tokens} + output {b.output_tokens}"
    if seen and int(seen[-1]) < need:
        refused = sum(CONTEXT_400 in line for line in log.splitlines())
        also = f"; {refused} request(s) in its log got HTTP 400 for it" if refused else ""
        return [
            Finding(
                f"llama-server in pod {name} gives each slot n_ctx_seq={seen[-1]} tokens, but a request may need "
                f"{need} ({budget}), so large requests get HTTP 400 exceed_context_size_error{also}; the pod runs "
                f"other settings than Pulumi.{snap.stack}.yaml (which preview checks): make up STACK={snap.stack} "
                "to deploy them"
            )
        ]
    return []


def not_ready(snap: Snapshot, pod: dict[str, Any], server: dict[str, Any], config: StackConfig) -> list[Finding]:
    name = pod["metadata"]["name"]
    wait = waiting(server)
    if wait.get("reason") == "CrashLoopBackOff":
        ended = server.get("lastState", {}).get("terminated", {})
        return [
            Finding(
                f"llama-server in pod {name} exits at start (CrashLoopBackOff, exit code {ended.get('exitCode', '?')}); "
                f"make logs STACK={snap.stack} shows its last lines and the refusal"
            )
        ]
    if "running" not in server.get("state", {}) or server.get("ready"):
        return []
    probes = [e.get("message", "") for e in events_of(snap, name) if e.get("reason") == "Unhealthy"]
    started = server["state"]["running"].get("startedAt")
    since = ""
    if started:
        seconds = int((snap.now - datetime.fromisoformat(started.replace("Z", "+00:00"))).total_seconds())
        since = f" for {seconds} s"
    limit = config.server.startup_timeout_seconds
    said = f" ({probes[-1]})" if probes else ""
    restarts = server.get("restartCount", 0)
    advice = (
        f"it restarted {restarts} time(s): the startup probe gave up before the model loaded; raise "
        "server.startupTimeoutSeconds"
        if restarts
        else f"it is loading the model; wait up to server.startupTimeoutSeconds={limit}"
    )
    return [Finding(f"llama-server in pod {name} is up{since} but not ready: /health is not 200 yet{said}; {advice}")]


def in_window(config: StackConfig, now: datetime) -> bool:
    """Whether `now` is inside autoscaling.activeHours (KEDA's cron trigger: start to end, on the days)."""
    hours = config.autoscaling.active_hours
    if hours is None:
        return True
    local = now.astimezone(ZoneInfo(hours.timezone))
    day = (local.isoweekday()) % 7  # cron: 0 (and 7) is Sunday
    days: set[int] = set()
    if hours.days == "*":
        days = set(range(7))
    else:
        for part in hours.days.split(","):
            low, _, high = part.partition("-")
            days |= {d % 7 for d in range(int(low), int(high or low) + 1)}
    clock = local.strftime("%H:%M")
    if hours.start <= hours.end:
        return day in days and hours.start <= clock < hours.end
    return day in days and (clock >= hours.start or clock < hours.end)


def replicas(snap: Snapshot, config: StackConfig) -> list[Finding]:
    deployment = snap.deployment
    names = labels.ServingNames(snap.stack)
    if deployment is None:
        return [
            Finding(
                f"there is no Deployment {names.server} in {names.namespace}; make up STACK={snap.stack} creates it"
            )
        ]
    wanted = deployment.get("spec", {}).get("replicas", 1)
    if wanted != 0:
        return []
    paused = (snap.scaled_object or {}).get("metadata", {}).get("annotations", {}).get(KEDA_PAUSE)
    pause = (
        f"kubectl -n {names.namespace} annotate scaledobject {names.server} {KEDA_PAUSE}=1 (remove it with "
        f"{KEDA_PAUSE}- to give the count back to KEDA)"
    )
    if paused is not None:
        return [Finding(f"KEDA is paused at {paused} replica(s) ({KEDA_PAUSE}); remove the annotation to resume")]
    a = config.autoscaling
    hours = a.active_hours
    # At rest: scaled to zero, and no active-hours window holds a replica now.
    if snap.scaled_object is not None and a.scales_from_zero and (hours is None or not in_window(config, snap.now)):
        if hours is not None:
            rest = (
                f"KEDA holds 0 replicas outside autoscaling.activeHours ({hours.start}-{hours.end} {hours.timezone}, "
                f"days {hours.days}); one starts in the next window or at the next request"
            )
        else:
            rest = "KEDA holds 0 replicas while no request comes; one starts at the next request"
        return [
            Finding(
                f"{rest} (the standby front answers it 503 and wakes one); to start one now: {pause}",
                problem=False,
            )
        ]
    return [
        Finding(
            f"the Deployment {names.server} wants 0 replicas while it should serve; check KEDA's ScaledObject "
            f"(kubectl -n {names.namespace} describe scaledobject {names.server}), or pin one replica: {pause}"
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="default: .stacks/<stack>/kubeconfig")
    parser.add_argument("--now", type=datetime.fromisoformat, default=None, help="the time to judge activeHours at")
    args = parser.parse_args(argv)
    try:
        path = loading.stack_file(ROOT, args.stack)
    except loading.StackFileMissing as err:
        print(err, file=sys.stderr)
        return 2
    try:
        _, config = loading.read_stack(path)
    except ConfigError as err:
        for problem in err.problems:
            print(f"problem: {problem}")
        return 2
    now = args.now or datetime.now(UTC)
    try:
        cluster = Cluster.connect(args.kubeconfig or kubeconfig_path(args.stack), args.stack)
        snap = gather(cluster, args.stack, now)
    except ClusterError as err:
        print(f"problem: {err}")
        return 2
    findings = diagnose(snap, config)
    for finding in findings:
        print(finding.line())
    problems = sum(f.problem for f in findings)
    print(f"doctor {args.stack}: {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

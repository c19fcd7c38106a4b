"""make doctor against recorded API answers served by a fake Kubernetes API on 127.0.0.1."""

from __future__ import annotations

import io
import socket
from contextlib import redirect_stdout
from datetime import datetime
from pathlib import Path

import kubernetes
import pytest

from core.loading import load_config, load_stack
from tests.kubeapi import FakeKubeApi, Scenario
from tools import doctor
from tools.kube import Cluster, ClusterError

ROOT = Path(__file__).resolve().parent.parent
DEV = load_stack(ROOT / "Pulumi.dev.yaml")
# dev's activeHours are 08:00-20:00 UTC on days 1-5; 2026-12-07 is a Monday, 2026-12-05 a Saturday.
MONDAY_NOON = "2026-12-07T12:00:00+00:00"
SATURDAY_NOON = "2026-12-05T12:00:00+00:00"
POD = "llamacpp-dev-server-6c9f8d7b54-q2xkz"
JOB_POD = "llamacpp-dev-server-download-847928a70c-x7r2p"


def run(tmp_path: Path, scenario: Scenario, now: str = MONDAY_NOON) -> tuple[int, str]:
    with FakeKubeApi(scenario) as api:
        out = io.StringIO()
        with redirect_stdout(out):
            rc = doctor.main(["--stack", "dev", "--kubeconfig", str(api.kubeconfig(tmp_path)), "--now", now])
    return rc, out.getvalue()


def problems(output: str) -> list[str]:
    return [line.removeprefix("problem: ") for line in output.splitlines() if line.startswith("problem: ")]


# --- the fake itself answers as the API server does ----------------------------------------------


def test_the_fake_filters_pods_by_label_selector_through_the_real_client(tmp_path: Path):
    with FakeKubeApi(Scenario.load("healthy")) as api:
        cluster = Cluster.connect(api.kubeconfig(tmp_path), "dev")
        core = kubernetes.client.CoreV1Api(cluster.api)
        ns = "llamacpp-dev-serving"
        servers = cluster.items(core.list_namespaced_pod, ns, label_selector="app.kubernetes.io/component=server")
        near = cluster.items(core.list_namespaced_pod, ns, label_selector="app.kubernetes.io/component=server-x")
        other_namespace = cluster.items(core.list_namespaced_pod, "llamacpp-prod-serving")
        listed = cluster.json(core.list_namespaced_pod, ns)
    assert ([p["metadata"]["name"] for p in servers], near, other_namespace) == ([POD], [], [])
    assert listed is not None
    assert (listed["kind"], "kind" in listed["items"][0]) == ("PodList", False)


def test_the_fake_answers_a_missing_object_with_a_not_found_status(tmp_path: Path):
    with FakeKubeApi(Scenario.load("healthy")) as api:
        apps = kubernetes.client.AppsV1Api(Cluster.connect(api.kubeconfig(tmp_path), "dev").api)
        with pytest.raises(kubernetes.client.ApiException) as err:
            apps.read_namespaced_deployment("llamacpp-dev-serverx", "llamacpp-dev-serving")
    assert (err.value.status, '"reason": "NotFound"' in err.value.body) == (404, True)


def test_the_fake_keeps_the_last_tail_lines_and_refuses_a_container_not_started(tmp_path: Path):
    with FakeKubeApi(Scenario.load("healthy")) as api:
        cluster = Cluster.connect(api.kubeconfig(tmp_path), "dev")
        last = cluster.log(POD, "llamacpp-dev-serving", "llama-server", tail=1)
        none = cluster.log(POD, "llamacpp-dev-serving", "llama-server", tail=1, previous=True)
    assert (last, none) == ("srv  update_slots: all slots are idle\n", None)


# --- findings: one sentence each, with the fix ----------------------------------------------------


def test_a_healthy_stack_has_no_problem(tmp_path: Path):
    rc, output = run(tmp_path, Scenario.load("healthy"))
    assert (rc, problems(output)) == (0, []), output
    assert "ok: 1 of 1 server pod(s) ready" in output
    assert "ok: 1 GPU node(s), 1 nvidia.com/gpu allocatable" in output


def test_a_pod_pending_at_the_pools_max_count_says_to_raise_it(tmp_path: Path):
    rc, output = run(tmp_path, Scenario.load("pending-gpu"))
    assert (rc, problems(output)) == (
        1,
        [
            "pod llamacpp-dev-server-6c9f8d7b54-7hx2d is Pending: every GPU node is taken and the pool is at "
            "cluster.gpuPool.maxCount=1; raise cluster.gpuPool.maxCount or lower the replicas, then make up"
        ],
    ), output


def test_a_pod_pending_with_no_autoscaler_verdict_waits_for_a_node(tmp_path: Path):
    scenario = Scenario.load("pending-gpu")
    scenario.objects = [o for o in scenario.objects if o.get("reason") != "NotTriggerScaleUp"]
    _, output = run(tmp_path, scenario)
    (found,) = problems(output)
    assert found.startswith("pod llamacpp-dev-server-6c9f8d7b54-7hx2d is Pending: no node has a free GPU (0/1 nodes")
    assert "adds a Standard_NV36ads_A10_v5 node in about 5-10 minutes" in found


@pytest.mark.parametrize(
    ("message", "family"),
    [
        (None, "StandardNVADSA10v5Family Cores"),
        (
            'Scale-up failed for group aks-gpu-vmss: Code="OperationNotAllowed" Message="Operation results in '
            'exceeding quota limits of Core. Maximum allowed: 10, Current in use: 7, Additional requested: 36."',
            "Core",
        ),
        ("Scale-up failed: QUOTA exhausted", "vCPUs"),
    ],
)
def test_a_pod_pending_for_quota_names_the_quota(tmp_path: Path, message: str | None, family: str):
    scenario = Scenario.load("pending-quota")
    if message is not None:
        next(o for o in scenario.objects if o.get("reason") == "FailedToScaleUpGroup")["message"] = message
    rc, output = run(tmp_path, scenario)
    (found,) = problems(output)
    assert rc == 1
    assert f"Azure refused a new one for quota ({family}); ask for more Standard_NV36ads_A10_v5 family" in found


def test_a_pod_pending_in_backoff_without_a_quota_event_points_at_kube_system(tmp_path: Path):
    scenario = Scenario.load("pending-quota")
    scenario.objects = [o for o in scenario.objects if o.get("reason") != "FailedToScaleUpGroup"]
    _, output = run(tmp_path, scenario)
    (found,) = problems(output)
    assert "the autoscaler's last try to add a GPU node failed" in found


def test_an_image_pull_failure_names_the_image_and_the_registry_role(tmp_path: Path):
    rc, output = run(tmp_path, Scenario.load("image-pull"))
    (found,) = problems(output)
    assert rc == 1
    assert found.startswith(
        "pod llamacpp-dev-server-6c9f8d7b54-m4v8n cannot pull its image "
        "llamacppdevacr.azurecr.io/llama-server:b11434-cuda12.8.1 (ImagePullBackOff: Back-off pulling image"
    )
    assert found.endswith("holds AcrPull on it")
    # Cut in the middle: the registry's answer at the end of the kubelet's message stays.
    assert "… failed to resolve reference: unexpected status from HEAD request: 401 Unauthorized); check" in found


DIGEST_GOT = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
MODEL = "Qwen2-VL-7B-Instruct-Q4_K_M.gguf"
MMPROJ = "mmproj-Qwen2-VL-7B-Instruct-f16.gguf"


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (
            f"fetch-model: {MODEL}: sha256 mismatch: got {DIGEST_GOT}, expected {DEV.model.sha256}; the download "
            "was deleted and nothing was put in place",
            f"{MODEL} has sha256 {DIGEST_GOT}, not the pinned {DEV.model.sha256} (model.sha256)",
        ),
        (
            f"fetch-model: {MMPROJ}: sha256 mismatch: got {DIGEST_GOT}, expected {DEV.model.mmproj_sha256}; the "
            "download was deleted and nothing was put in place",
            "(model.mmprojSha256)",
        ),
        (
            f"fetch-model: {MODEL}: size mismatch: got 4683072671 bytes, FETCH_SIZE_BYTES is 4683072672 "
            "(model.sizeBytes / model.mmprojSizeBytes); the download was deleted and nothing was put in place",
            f"{MODEL} is 4683072671 bytes, not model.sizeBytes=4683072672",
        ),
        (
            f"fetch-model: {MMPROJ}: download failed: the server announced more than the 1352635904 bytes "
            "FETCH_SIZE_BYTES allows; model.sizeBytes or the file name is wrong; nothing was kept",
            f"{MMPROJ} is larger than model.mmprojSizeBytes allows",
        ),
        (
            f"fetch-model: {MODEL}: download failed: the file is not there (HTTP 404): check model.repo, "
            "model.revision and the file name; nothing was kept",
            f"{MODEL} is not at its URL (HTTP 404); check model.repo=bartowski/Qwen2-VL-7B-Instruct-GGUF",
        ),
        (
            f"fetch-model: {MODEL}: download failed: the server refused access (HTTP 401): the repository needs a "
            "Hugging Face token (hfToken) that may read it; nothing was kept",
            "the repository is gated; set a token",
        ),
        (
            f"fetch-model: {MODEL}: download failed: the transfer timed out or stalled (FETCH_CONNECT_TIMEOUT=30s, "
            "under 1024 B/s for FETCH_STALL_SECONDS=60s); the partial file (1048576 bytes) stays for the next try",
            "the download ran past its time (model.downloadTimeoutSeconds=7200)",
        ),
        (
            f"fetch-model: {MODEL}: download failed: FETCH_TOTAL_SECONDS=7200s passed; the partial file (1048576 "
            "bytes) stays for the next try to resume",
            "the download ran past its time",
        ),
        (
            f"fetch-model: {MODEL}: download failed: the server answered HTTP 4040; nothing was kept",
            "BackoffLimitExceeded (Qwen2-VL-7B-Instruct-Q4_K_M.gguf: download failed: the server answered HTTP 4040",
        ),
    ],
)
def test_a_failed_download_job_says_why_from_fetch_model_lines(tmp_path: Path, line: str, says: str):
    scenario = Scenario.load("download-failed")
    scenario.logs[f"{JOB_POD}/fetch-model"] = f"fetch-model: {MODEL}: downloading https://huggingface.co/...\n{line}\n"
    rc, output = run(tmp_path, scenario)
    (found,) = problems(output)
    assert rc == 1
    assert found.startswith("the model download Job llamacpp-dev-server-download-847928a70c failed: "), found
    assert says in found, found


def test_a_download_job_past_its_deadline_says_timeout_without_a_log(tmp_path: Path):
    scenario = Scenario.load("download-failed")
    job = next(o for o in scenario.objects if o["kind"] == "Job")
    for c in job["status"]["conditions"]:
        c["reason"] = "DeadlineExceeded"
    scenario.logs.clear()
    _, output = run(tmp_path, scenario)
    (found,) = problems(output)
    assert "the download ran past its time (model.downloadTimeoutSeconds=7200)" in found


def test_a_download_job_still_running_is_no_problem(tmp_path: Path):
    scenario = Scenario.load("download-failed")
    job = next(o for o in scenario.objects if o["kind"] == "Job")
    job["status"] = {"active": 1}
    _, output = run(tmp_path, scenario)
    assert problems(output) == [], output


def test_cuda_out_of_memory_at_load_names_the_allocation_and_the_keys(tmp_path: Path):
    rc, output = run(tmp_path, Scenario.load("cuda-oom"))
    (found,) = problems(output)
    assert rc == 1
    assert found.startswith(
        f"llama-server in pod {POD} ran out of GPU memory while loading (allocating 14336.00 MiB on device 0: "
        "cudaMalloc failed: out of memory); make the model fit: lower server.contextSize"
    ), found


def test_a_crash_loop_that_is_not_memory_points_at_make_logs(tmp_path: Path):
    scenario = Scenario.load("cuda-oom")
    scenario.logs[f"{POD}/llama-server/previous"] = "error: invalid argument: --fit\n"
    _, output = run(tmp_path, scenario)
    (found,) = problems(output)
    assert found == (
        f"llama-server in pod {POD} exits at start (CrashLoopBackOff, exit code 1); make logs STACK=dev shows its "
        "last lines and the refusal"
    )


def test_a_slot_smaller_than_the_request_budget_is_the_seeds_400(tmp_path: Path):
    rc, output = run(tmp_path, Scenario.load("small-context"))
    (found,) = problems(output)
    assert rc == 1
    assert found == (
        f"llama-server in pod {POD} gives each slot n_ctx_seq=2048 tokens, but a request may need 4074 "
        "(1 image x 2048 + prompt 1000 + output 1024), so large requests get HTTP 400 exceed_context_size_error; "
        "2 request(s) in its log got HTTP 400 for it; the pod runs other settings than Pulumi.dev.yaml (which "
        "preview checks): make up STACK=dev to deploy them"
    )


@pytest.mark.parametrize(("n_ctx_seq", "flagged"), [(4074, False), (4073, True), (4096, False)])
def test_n_ctx_seq_is_judged_against_the_budget_at_its_bound(n_ctx_seq: int, flagged: bool):
    log = f"llama_context: n_ctx_seq     = {n_ctx_seq}\n"
    assert bool(doctor.context(doctor.Snapshot("dev", datetime.now()), POD, log, DEV)) is flagged


def test_up_but_loading_says_to_wait_for_the_startup_budget(tmp_path: Path):
    rc, output = run(tmp_path, Scenario.load("loading"), now="2026-12-05T09:16:02+00:00")
    (found,) = problems(output)
    assert rc == 1
    assert found == (
        f"llama-server in pod {POD} is up for 120 s but not ready: /health is not 200 yet (Startup probe failed: "
        "HTTP probe failed with statuscode: 503); it is loading the model; wait up to "
        "server.startupTimeoutSeconds=900"
    )


def test_up_but_restarted_by_the_startup_probe_says_to_raise_its_budget(tmp_path: Path):
    scenario = Scenario.load("loading")
    pod = next(o for o in scenario.objects if o["kind"] == "Pod")
    pod["status"]["containerStatuses"][0]["restartCount"] = 2
    _, output = run(tmp_path, scenario)
    (found,) = problems(output)
    assert found.endswith(
        "it restarted 2 time(s): the startup probe gave up before the model loaded; raise server.startupTimeoutSeconds"
    )


def test_keda_at_zero_outside_active_hours_is_expected_and_says_how_to_start_one(tmp_path: Path):
    rc, output = run(tmp_path, Scenario.load("keda-zero"), now=SATURDAY_NOON)
    assert (rc, problems(output)) == (0, []), output
    assert (
        "ok: KEDA holds 0 replicas outside autoscaling.activeHours (08:00-20:00 UTC, days 1-5); one starts in the "
        "next window or at the next request (the standby front answers it 503 and wakes one); to start one now: "
        "kubectl -n llamacpp-dev-serving annotate scaledobject llamacpp-dev-server autoscaling.keda.sh/paused-replicas=1"
    ) in output


@pytest.mark.parametrize(("min_replicas", "problem"), [(0, False), (1, True)])
def test_keda_at_zero_without_active_hours_is_at_rest_only_when_it_may_scale_to_zero(min_replicas, problem):
    config, _ = load_config({"autoscaling": {"enabled": True, "minReplicas": min_replicas}}, "dev")
    snap = doctor.Snapshot(
        stack="dev",
        now=datetime.fromisoformat(MONDAY_NOON),
        deployment={"spec": {"replicas": 0}},
        scaled_object={"metadata": {}},
    )
    (found,) = doctor.replicas(snap, config)
    assert found.problem is problem
    assert ("one starts at the next request" in found.text) is not problem


def test_keda_at_zero_inside_active_hours_is_a_problem(tmp_path: Path):
    rc, output = run(tmp_path, Scenario.load("keda-zero"), now=MONDAY_NOON)
    (found,) = problems(output)
    assert (rc, found.startswith("the Deployment llamacpp-dev-server wants 0 replicas while it should serve")) == (
        1,
        True,
    )


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        ("2026-12-07T08:00:00+00:00", True),  # Monday, the first minute
        ("2026-12-07T07:59:59+00:00", False),
        ("2026-12-07T19:59:00+00:00", True),
        ("2026-12-07T20:00:00+00:00", False),  # the end is outside
        ("2026-12-11T12:00:00+00:00", True),  # Friday
        ("2026-12-06T12:00:00+00:00", False),  # Sunday
        ("2026-12-07T09:00:00+01:00", True),  # 08:00 UTC, given in another zone
    ],
)
def test_active_hours_bounds(now: str, inside: bool):
    assert doctor.in_window(DEV, datetime.fromisoformat(now)) is inside


def test_a_paused_scaled_object_says_so(tmp_path: Path):
    scenario = Scenario.load("keda-zero")
    scaled = next(o for o in scenario.objects if o["kind"] == "ScaledObject")
    scaled["metadata"]["annotations"] = {"autoscaling.keda.sh/paused-replicas": "0"}
    _, output = run(tmp_path, scenario)
    (found,) = problems(output)
    assert found.startswith("KEDA is paused at 0 replica(s)")


def test_gpu_nodes_that_advertise_no_gpu_name_the_device_plugin(tmp_path: Path):
    scenario = Scenario.load("healthy")
    node = next(o for o in scenario.objects if o["kind"] == "Node")
    del node["status"]["allocatable"]["nvidia.com/gpu"]
    _, output = run(tmp_path, scenario)
    assert any("advertise no nvidia.com/gpu: the NVIDIA device plugin" in p for p in problems(output)), output


# --- the cluster cannot be read: one sentence, exit 2 -----------------------------------------------


def test_a_missing_kubeconfig_says_to_fetch_it(tmp_path: Path):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = doctor.main(["--stack", "dev", "--kubeconfig", str(tmp_path / "none")])
    assert (rc, out.getvalue()) == (
        2,
        f"problem: there is no kubeconfig at {tmp_path / 'none'}; fetch it with make outputs STACK=dev "
        "(or pass KUBECONFIG=<file>)\n",
    )


def test_a_wrong_token_is_a_401_sentence(tmp_path: Path):
    with FakeKubeApi(Scenario.load("healthy")) as api:
        out = io.StringIO()
        with redirect_stdout(out):
            rc = doctor.main(["--stack", "dev", "--kubeconfig", str(api.kubeconfig(tmp_path, token="stale"))])
    assert rc == 2
    assert "refused the credentials (401 Unauthorized); sign in again (az login)" in out.getvalue()
    assert "stale" not in out.getvalue()


def test_a_forbidden_read_names_the_role(tmp_path: Path):
    scenario = Scenario.load("healthy")
    scenario.forbidden = {"nodes"}
    rc, output = run(tmp_path, scenario)
    assert rc == 2
    assert "refused a read (403: nodes is forbidden" in output
    assert "'Azure Kubernetes Service RBAC Reader'" in output


def test_a_cluster_that_does_not_answer_is_one_sentence(tmp_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with FakeKubeApi(Scenario.load("healthy")) as api:
        path = api.kubeconfig(tmp_path)
    path.write_text(path.read_text().replace(api.url, f"http://127.0.0.1:{port}"))
    out = io.StringIO()
    with redirect_stdout(out):
        rc = doctor.main(["--stack", "dev", "--kubeconfig", str(path)])
    assert rc == 2
    assert out.getvalue().startswith(f"problem: the cluster at http://127.0.0.1:{port} does not answer")


def test_the_doctor_only_reads(tmp_path: Path):
    # The fake serves GET only: any other method gets 501, which the doctor reports with exit 2.
    with FakeKubeApi(Scenario.load("download-failed")) as api, redirect_stdout(io.StringIO()):
        rc = doctor.main(["--stack", "dev", "--kubeconfig", str(api.kubeconfig(tmp_path)), "--now", MONDAY_NOON])
    assert (rc, len(api.requests) >= 8) == (1, True), api.requests


def test_cluster_error_is_raised_for_a_kubeconfig_that_is_not_one(tmp_path: Path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: [a, kubeconfig")
    with pytest.raises(ClusterError, match="cannot be used"):
        Cluster.connect(bad, "dev")


@pytest.mark.parametrize(("length", "cut"), [(200, False), (201, True)])
def test_a_kubelet_message_is_cut_only_past_its_limit(length: int, cut: bool):
    text = ("word " * 50)[:length]
    assert ("…" in doctor.shortened(text)) is cut

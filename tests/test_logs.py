"""make logs against recorded API answers served by a fake Kubernetes API on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kubeapi import FakeKubeApi, Scenario
from tools import logs

POD = "llamacpp-dev-server-6c9f8d7b54-q2xkz"
JOB_POD = "llamacpp-dev-server-download-847928a70c-x7r2p"


def run(
    tmp_path: Path, scenario: str | Scenario, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    loaded = Scenario.load(scenario) if isinstance(scenario, str) else scenario
    with FakeKubeApi(loaded) as api:
        rc = logs.main(["--stack", "dev", "--kubeconfig", str(api.kubeconfig(tmp_path)), *args])
    out, err = capsys.readouterr()
    return rc, out, err


def headers(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("==> ")]


def test_the_server_log_alone_when_nothing_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc, out, _ = run(tmp_path, "healthy", capsys=capsys)
    assert (rc, headers(out)) == (0, [f"==> pod {POD}, container llama-server <=="])
    assert out.endswith("srv  update_slots: all slots are idle\n")
    assert "verify-model" not in out


@pytest.mark.parametrize(("tail", "lines"), [("1", 1), ("2", 2), ("0", 0), ("-1", 14)])
def test_tail_keeps_the_last_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str], tail: str, lines: int):
    rc, out, _ = run(tmp_path, "healthy", "--tail", tail, capsys=capsys)
    assert (rc, len(out.splitlines()) - 1) == (0, lines), out


def test_a_failed_download_job_shows_its_failing_container(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc, out, _ = run(tmp_path, "download-failed", capsys=capsys)
    assert (rc, headers(out)) == (0, [f"==> pod {JOB_POD}, container fetch-model (failed) <=="])
    assert "sha256 mismatch: got 0a1b2c3d" in out


def test_a_restarted_server_shows_the_run_before_the_restart(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc, out, _ = run(tmp_path, "cuda-oom", capsys=capsys)
    assert (rc, headers(out)) == (
        0,
        [
            f"==> pod {POD}, container llama-server <==",
            f"==> pod {POD}, container llama-server: the run before the restart, exit code 1 <==",
        ],
    )
    assert "cudaMalloc failed: out of memory" in out


def test_a_failed_init_container_of_the_server_is_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    scenario = Scenario.load("healthy")
    pod = next(o for o in scenario.objects if o["kind"] == "Pod")
    pod["status"]["initContainerStatuses"][0]["state"] = {"terminated": {"exitCode": 1, "reason": "Error"}}
    scenario.logs[f"{POD}/verify-model"] = "fetch-model: Qwen2-VL-7B-Instruct-Q4_K_M.gguf: not on the volume\n"
    rc, out, _ = run(tmp_path, scenario, capsys=capsys)
    assert (rc, headers(out)) == (
        0,
        [f"==> pod {POD}, container verify-model (failed) <==", f"==> pod {POD}, container llama-server <=="],
    )
    assert "not on the volume" in out


@pytest.mark.parametrize(("container", "pod"), [("fetch-model", JOB_POD), ("llama-server", None)])
def test_container_picks_one_container_wherever_it_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], container: str, pod: str | None
):
    rc, out, err = run(tmp_path, "download-failed", "--container", container, capsys=capsys)
    if pod is None:
        assert (rc, out, err.startswith("no container llama-server in llamacpp-dev-serving")) == (1, "", True)
    else:
        assert (rc, headers(out)) == (0, [f"==> pod {pod}, container {container} <=="])


def test_no_pod_at_all_says_where_to_look(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc, out, err = run(tmp_path, "keda-zero", capsys=capsys)
    assert (rc, out) == (1, "")
    assert err == (
        "no server pod in llamacpp-dev-serving: KEDA may hold zero replicas, or the stack is not up; "
        "make doctor STACK=dev says which\n"
    )


def test_follow_streams_the_running_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc, out, _ = run(tmp_path, "healthy", "--follow", "--tail", "1", capsys=capsys)
    assert (rc, out) == (
        0,
        f"==> pod {POD}, container llama-server (following; ^C to stop) <==\nsrv  update_slots: all slots are idle\n",
    )


def test_follow_with_nothing_running_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rc, _, err = run(tmp_path, "cuda-oom", "--follow", capsys=capsys)
    assert (rc, err.startswith("no running llama-server to follow in llamacpp-dev-serving")) == (1, True)

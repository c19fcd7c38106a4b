"""make outputs and make port-forward: the stack's kubeconfig and API key from its state, or from
Azure and the cluster for a stack only CI can read; az, pulumi and kubelogin are stubs, the cluster
is the fake Kubernetes API on 127.0.0.1."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from tests.kubeapi import TOKEN, FakeKubeApi, Scenario
from tools import kube, outputs

# The AKS server application and the Azure CLI's client id that `az aks get-credentials` writes
# (public, the same in every tenant: learn.microsoft.com/azure/aks/kubelogin-authentication).
AKS_SERVER_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
KEY = "sk-dev-fake-key-48chars-0123456789abcdef012345"  # what healthy.yaml's Secret holds
EXEC_CREDENTIAL = json.dumps(
    {
        "kind": "ExecCredential",
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "spec": {},
        "status": {"token": TOKEN, "expirationTimestamp": "2099-01-01T00:00:00Z"},
    }
)


def aks_kubeconfig(server: str, mode: str = "devicecode") -> str:
    """A kubeconfig as az aks get-credentials writes it for a cluster with Entra ID and no local accounts."""
    args = ["get-token", "--environment", "AzurePublicCloud", "--server-id", AKS_SERVER_ID]
    args += ["--client-id", "80faf920-1908-4b52-b5ef-a8e7bedfc67a", "--tenant-id", "tenant-1", "--login", mode]
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "llamacpp-dev-aks", "cluster": {"server": server}}],
            "contexts": [{"name": "llamacpp-dev-aks", "context": {"cluster": "llamacpp-dev-aks", "user": "u"}}],
            "current-context": "llamacpp-dev-aks",
            "users": [
                {
                    "name": "u",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "kubelogin",
                            "args": args,
                        }
                    },
                }
            ],
        }
    )


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}:/usr/bin:/bin")
    monkeypatch.setattr(kube, "STACKS_DIR", tmp_path / ".stacks")
    stub(folder, "kubelogin", f"cat <<'JSON'\n{EXEC_CREDENTIAL}\nJSON")
    return folder


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f'#!/bin/bash\necho "$*" >> {folder}/{name}.log\n{body}\n')
    path.chmod(0o755)


def calls(folder: Path, name: str) -> list[str]:
    log = folder / f"{name}.log"
    return log.read_text().splitlines() if log.exists() else []


def written(tmp_path: Path) -> tuple[str, str, int, int]:
    folder = tmp_path / ".stacks" / "dev"
    config, key = folder / "kubeconfig", folder / "api-key"
    return config.read_text(), key.read_text(), stat.S_IMODE(config.stat().st_mode), stat.S_IMODE(key.stat().st_mode)


def login_mode(kubeconfig: str) -> str:
    args = yaml.safe_load(kubeconfig)["users"][0]["user"]["exec"]["args"]
    return args[args.index("--login") + 1]


def test_from_the_state_the_kubeconfig_signs_in_as_the_person(
    tmp_path: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
):
    state = {
        "kubeconfig": aks_kubeconfig("https://llamacpp-dev-aks.hcp.eastus.azmk8s.io:443", mode="workloadidentity"),
        "apiKey": "state-key-0123456789",
        "endpoint": "http://llamacpp-dev-server.llamacpp-dev-serving.svc.cluster.local:8008",
    }
    stub(bin_dir, "pulumi", f"cat <<'JSON'\n{json.dumps(state)}\nJSON")
    rc = outputs.main(["--stack", "dev"])
    out, _ = capsys.readouterr()
    config, key, config_mode, key_mode = written(tmp_path)
    assert (rc, key, config_mode, key_mode, login_mode(config)) == (0, "state-key-0123456789", 0o600, 0o600, "azurecli")
    assert calls(bin_dir, "pulumi") == ["stack output --json --show-secrets --stack dev"]
    assert "state-key-0123456789" not in out
    assert "read from its state" in out
    assert "endpoint    http://llamacpp-dev-server.llamacpp-dev-serving.svc.cluster.local:8008" in out


def test_a_ci_stack_comes_from_azure_and_the_clusters_secret(
    tmp_path: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
):
    stub(bin_dir, "pulumi", "echo 'error: could not read the state: 403 AuthorizationFailed' >&2; exit 255")
    with FakeKubeApi(Scenario.load("healthy")) as api:
        stub(bin_dir, "az", f"cat > \"${{@: -1}}\" <<'YAML'\n{aks_kubeconfig(api.url)}\nYAML")
        rc = outputs.main(["--stack", "dev"])
    out, err = capsys.readouterr()
    config, key, _, key_mode = written(tmp_path)
    assert (rc, key, key_mode, login_mode(config)) == (0, KEY, 0o600, "azurecli"), err
    assert calls(bin_dir, "az")[0].startswith(
        "aks get-credentials --resource-group llamacpp-dev-rg --name llamacpp-dev-aks --file "
    )
    assert calls(bin_dir, "kubelogin")[0].startswith(f"get-token --login azurecli --server-id {AKS_SERVER_ID}")
    assert "/api/v1/namespaces/llamacpp-dev-serving/secrets/llamacpp-dev-server-api-key" in api.requests
    assert KEY not in out + err
    assert "read from Azure and the cluster" in out
    assert "endpoint    http://llamacpp-dev-server.llamacpp-dev-serving.svc.cluster.local:8008" in out


def test_without_the_secret_the_azure_route_says_to_deploy(
    tmp_path: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
):
    scenario = Scenario.load("healthy")
    scenario.objects = [o for o in scenario.objects if o["kind"] != "Secret"]
    with FakeKubeApi(scenario) as api:
        stub(bin_dir, "az", f"cat > \"${{@: -1}}\" <<'YAML'\n{aks_kubeconfig(api.url)}\nYAML")
        rc = outputs.main(["--stack", "dev", "--from", "azure"])
    _, err = capsys.readouterr()
    assert rc == 1
    assert "problem: from azure: the Secret llamacpp-dev-server-api-key in llamacpp-dev-serving is not there" in err
    assert not (tmp_path / ".stacks" / "dev" / "api-key").exists()


def test_a_person_who_may_not_read_secrets_is_told_the_role(
    tmp_path: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
):
    scenario = Scenario.load("healthy")
    scenario.forbidden = {"secrets"}
    with FakeKubeApi(scenario) as api:
        stub(bin_dir, "az", f"cat > \"${{@: -1}}\" <<'YAML'\n{aks_kubeconfig(api.url)}\nYAML")
        rc = outputs.main(["--stack", "dev", "--from", "azure"])
    _, err = capsys.readouterr()
    assert rc == 1
    assert "refused a read (403: secrets is forbidden" in err
    assert "'Azure Kubernetes Service RBAC Writer' there for the API key's Secret" in err


def test_when_neither_route_works_each_reason_and_the_access_are_named(
    tmp_path: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
):
    stub(bin_dir, "pulumi", "echo 'error: no stack named dev found' >&2; exit 255")
    stub(bin_dir, "az", "echo \"ERROR: (AuthorizationFailed) The client 'me' does not have authorization\" >&2; exit 1")
    rc = outputs.main(["--stack", "dev"])
    _, err = capsys.readouterr()
    assert rc == 1
    assert err.splitlines()[:2] == [
        "problem: from state: pulumi could not read the stack's state (error: no stack named dev found)",
        "problem: from azure: az aks get-credentials for llamacpp-dev-aks in llamacpp-dev-rg failed (ERROR: "
        "(AuthorizationFailed) The client 'me' does not have authorization); sign in with az login to the "
        "stack's subscription and ask for the 'Azure Kubernetes Service Cluster User Role' on it",
    ]
    assert err.splitlines()[2].startswith("access this needs: 'Azure Kubernetes Service Cluster User Role'")


def test_an_unknown_stack_is_one_sentence(bin_dir: Path, capsys: pytest.CaptureFixture[str]):
    rc = outputs.main(["--stack", "staging"])
    assert (rc, capsys.readouterr().err) == (
        1,
        "problem: Pulumi.staging.yaml does not exist; give STACK=<name> of a Pulumi.<name>.yaml\n",
    )


def test_port_forward_runs_kubectl_with_the_stacks_names(
    tmp_path: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
):
    assert outputs.port_forward_command("prod", 9000) == [
        "kubectl",
        "--kubeconfig",
        str(tmp_path / ".stacks" / "prod" / "kubeconfig"),
        "-n",
        "llamacpp-prod-serving",
        "port-forward",
        "svc/llamacpp-prod-server",
        "9000:http",
    ]
    assert outputs.port_forward("prod", 9000) == 1
    assert "run make outputs STACK=prod first" in capsys.readouterr().err

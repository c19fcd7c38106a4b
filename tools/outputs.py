"""A stack's endpoint, kubeconfig and API key on this machine, and the access they need (make outputs).

usage: python -m tools.outputs --stack dev [--from state|azure]

Two routes, tried in this order:
- **state**: `pulumi stack output --json --show-secrets` where this machine can read the stack's
  state (a stack brought up here with make up, or a shared backend the person may read);
- **azure**: where only CI can read the state (a stack deployed by CI), the same things from Azure
  and the cluster, with the person's own sign-in: `az aks get-credentials` for the cluster the
  stack's names give (llamacpp-<stack>-rg / llamacpp-<stack>-aks), then the API key from its
  Kubernetes Secret (llamacpp-<stack>-server-api-key in llamacpp-<stack>-serving).
Either way the kubeconfig signs in as whoever runs `az login` (kubelogin in azurecli mode, converted
in-process as core/kubeconfig.py does for the program) and is written with the key to
.stacks/<stack>/ (gitignored, mode 600). The key itself is never printed.

The access a person needs (AKS built-in roles, learn.microsoft.com/azure/aks/manage-azure-rbac):
*Azure Kubernetes Service Cluster User Role* on the cluster to fetch the kubeconfig; *Azure
Kubernetes Service RBAC Reader* on the serving namespace to read pods, logs and events (make doctor,
make logs); *RBAC Writer* there to read the API key's Secret (Reader excludes Secrets); and this
machine's public address inside cluster.authorizedIpRanges.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import kubernetes

from core import labels, loading
from core.kubeconfig import with_login_mode
from core.loading import ConfigError
from tools.kube import Cluster, ClusterError, kubeconfig_path, stack_dir

ACCESS = (
    "access this needs: 'Azure Kubernetes Service Cluster User Role' on the cluster (the kubeconfig), "
    "'Azure Kubernetes Service RBAC Reader' on the serving namespace (make doctor, make logs), 'Azure Kubernetes "
    "Service RBAC Writer' there for the API key's Secret, and this machine's address in cluster.authorizedIpRanges"
)


ROOT = Path(__file__).resolve().parent.parent


class OutputsError(Exception):
    """One sentence with the fix."""


@dataclass(frozen=True)
class Outputs:
    kubeconfig: str  # already in azurecli mode
    api_key: str
    endpoint: str  # the in-cluster URL
    route: str  # "state" or "azure"


def run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def from_state(stack: str) -> Outputs:
    if shutil.which("pulumi") is None:
        raise OutputsError("pulumi is not on PATH")
    done = run(["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack])
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise OutputsError(f"pulumi could not read the stack's state ({said})")
    values = json.loads(done.stdout)
    missing = [k for k in ("kubeconfig", "apiKey", "endpoint") if not values.get(k)]
    if missing:
        raise OutputsError(f"the stack's state has no {', '.join(missing)} output; run make up STACK={stack}")
    return Outputs(with_login_mode(values["kubeconfig"], "azurecli"), values["apiKey"], values["endpoint"], "state")


def from_azure(stack: str, port: int) -> Outputs:
    if shutil.which("az") is None:
        raise OutputsError(
            "az is not on PATH; install it with: "
            + run(["bash", "tools/cloud-tools.sh", "--install-command", "az"]).stdout.strip()
        )
    group, cluster_name = labels.name(stack, "rg"), labels.name(stack, "aks")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "kubeconfig"
        done = run(
            ["az", "aks", "get-credentials", "--resource-group", group, "--name", cluster_name, "--file", str(raw)]
        )
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise OutputsError(
                f"az aks get-credentials for {cluster_name} in {group} failed ({said}); sign in with az login to "
                f"the stack's subscription and ask for the 'Azure Kubernetes Service Cluster User Role' on it"
            )
        kubeconfig = with_login_mode(raw.read_text(), "azurecli")
        converted = Path(tmp) / "converted"
        converted.write_text(kubeconfig)
        names = labels.ServingNames(stack)
        try:
            cluster = Cluster.connect(converted, stack)
            core = kubernetes.client.CoreV1Api(cluster.api)
            secret = cluster.json(core.read_namespaced_secret, names.api_key_secret, names.namespace)
        except ClusterError as err:
            raise OutputsError(str(err)) from None
    if secret is None or labels.API_KEY_FILE not in secret.get("data", {}):
        raise OutputsError(
            f"the Secret {names.api_key_secret} in {names.namespace} is not there; run make up STACK={stack} "
            "(or the deploy workflow)"
        )
    key = base64.b64decode(secret["data"][labels.API_KEY_FILE]).decode()
    endpoint = f"http://{names.server}.{names.namespace}.svc.cluster.local:{port}"
    return Outputs(kubeconfig, key, endpoint, "azure")


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def port_forward_command(stack: str, port: int) -> list[str]:
    """kubectl port-forward from 127.0.0.1:port to the stack's Service (its port is named http)."""
    names = labels.ServingNames(stack)
    config = kubeconfig_path(stack)
    return [
        "kubectl",
        "--kubeconfig",
        str(config),
        "-n",
        names.namespace,
        "port-forward",
        f"svc/{names.server}",
        f"{port}:http",
    ]


def port_forward(stack: str, port: int) -> int:
    if not kubeconfig_path(stack).is_file():
        print(f"problem: no kubeconfig for {stack} yet; run make outputs STACK={stack} first", file=sys.stderr)
        return 1
    command = port_forward_command(stack, port)
    print(" ".join(command), flush=True)
    os.execvp(command[0], command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument(
        "--from", dest="route", choices=("state", "azure"), default=None, help="default: state, then azure"
    )
    parser.add_argument(
        "--port-forward", type=int, default=None, metavar="PORT", help="run kubectl port-forward instead"
    )
    args = parser.parse_args(argv)
    if args.port_forward is not None:
        return port_forward(args.stack, args.port_forward)
    try:
        path = loading.stack_file(ROOT, args.stack)
    except loading.StackFileMissing as err:
        print(f"problem: {err}", file=sys.stderr)
        return 1
    try:
        port = loading.read_stack(path)[1].service.port
    except ConfigError as err:
        for problem in err.problems:
            print(f"problem: {problem}", file=sys.stderr)
        return 1
    reasons = []
    outputs = None
    for route in (args.route,) if args.route else ("state", "azure"):
        try:
            outputs = from_state(args.stack) if route == "state" else from_azure(args.stack, port)
            break
        except OutputsError as err:
            reasons.append(f"from {route}: {err}")
    if outputs is None:
        for reason in reasons:
            print(f"problem: {reason}", file=sys.stderr)
        print(ACCESS, file=sys.stderr)
        return 1
    config, key = kubeconfig_path(args.stack), stack_dir(args.stack) / "api-key"
    write_private(config, outputs.kubeconfig)
    write_private(key, outputs.api_key)
    print(f"stack {args.stack} (read from {'its state' if outputs.route == 'state' else 'Azure and the cluster'}):")
    print(f"  endpoint    {outputs.endpoint}   (inside the cluster)")
    print(f"  kubeconfig  {config}   (signs in as your az login)")
    print(f"  API key     {key}   (mode 600; not shown)")
    print(f"  reach it      make port-forward STACK={args.stack}   (then http://127.0.0.1:{port})")
    print(f"  by hand       {' '.join(port_forward_command(args.stack, port))}")
    print(ACCESS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

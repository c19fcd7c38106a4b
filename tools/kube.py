"""A stack's live cluster, read with the Kubernetes Python client (make doctor, logs, outputs).

Reads only: every call is a GET. Answers come back as the API's own JSON (dicts in camelCase), so
the checks read the same fields `kubectl get -o json` shows and the tests serve recorded answers.
The kubeconfig is the stack's own (`make outputs` writes it), or any given with KUBECONFIG=.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
import yaml

ROOT = Path(__file__).resolve().parent.parent
# What `make outputs` fetches for a stack: its kubeconfig and API key (gitignored, mode 600).
STACKS_DIR = ROOT / ".stacks"


def stack_dir(stack: str) -> Path:
    return STACKS_DIR / stack


def kubeconfig_path(stack: str) -> Path:
    return stack_dir(stack) / "kubeconfig"


class ClusterError(Exception):
    """The cluster could not be read; the message is one sentence with the fix."""


@dataclass
class Cluster:
    """GETs against one kubeconfig's current context."""

    api: kubernetes.client.ApiClient
    stack: str

    @classmethod
    def connect(cls, kubeconfig: Path, stack: str) -> Cluster:
        if not kubeconfig.is_file():
            raise ClusterError(
                f"there is no kubeconfig at {kubeconfig}; fetch it with make outputs STACK={stack} "
                "(or pass KUBECONFIG=<file>)"
            )
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        except (kubernetes.config.ConfigException, OSError, ValueError, yaml.YAMLError) as err:
            raise ClusterError(
                f"the kubeconfig {kubeconfig} cannot be used ({err}); fetch it again with make outputs STACK={stack}"
            ) from None
        # One try: a cluster that does not answer is said at once, not after urllib3's retries.
        configuration.retries = 0
        return cls(kubernetes.client.ApiClient(configuration), stack)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, _preload_content=False, _request_timeout=30, **kwargs)
        except kubernetes.client.ApiException as err:
            if err.status == 404:
                return None
            raise ClusterError(self._refusal(err)) from None
        except urllib3.exceptions.HTTPError as err:
            raise ClusterError(
                f"the cluster at {self.server} does not answer ({type(err).__name__}); check that it is running "
                f"and that this machine's address is in cluster.authorizedIpRanges (make preflight STACK={self.stack})"
            ) from None

    def _refusal(self, err: kubernetes.client.ApiException) -> str:
        try:
            message = json.loads(err.body or "{}").get("message", "") or err.reason
        except ValueError:
            message = err.reason
        if err.status == 401:
            return (
                f"the cluster at {self.server} refused the credentials (401 {message}); sign in again "
                f"(az login) and fetch the kubeconfig with make outputs STACK={self.stack}"
            )
        if err.status == 403:
            return (
                f"the cluster refused a read (403: {message}); ask for the role 'Azure Kubernetes Service RBAC "
                f"Reader' (Cluster Admin for secrets) on the cluster of stack {self.stack}"
            )
        return f"the cluster answered {err.status} ({message})"

    def json(self, method: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """The API's JSON answer, or None for 404."""
        response = self._call(method, *args, **kwargs)
        return None if response is None else json.loads(response.data)

    def items(self, method: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        answer = self.json(method, *args, **kwargs)
        return [] if answer is None else list(answer.get("items", []))

    def log(self, pod: str, namespace: str, container: str, *, tail: int | None, previous: bool = False) -> str | None:
        """A container's log (its last `tail` lines), or None where the API has none (not started,
        no earlier run)."""
        core = kubernetes.client.CoreV1Api(self.api)
        kwargs: dict[str, Any] = {"container": container, "previous": previous}
        if tail is not None:
            kwargs["tail_lines"] = tail
        try:
            # With _preload_content=False the client hands back urllib3's response, typed as str.
            response: Any = core.read_namespaced_pod_log(
                pod, namespace, _preload_content=False, _request_timeout=30, **kwargs
            )
        except kubernetes.client.ApiException as err:
            if err.status in (400, 404):
                return None
            raise ClusterError(self._refusal(err)) from None
        except urllib3.exceptions.HTTPError as err:
            raise ClusterError(f"the cluster at {self.server} does not answer ({type(err).__name__})") from None
        return bytes(response.data).decode(errors="replace")

    def follow(self, pod: str, namespace: str, container: str, tail: int | None) -> Any:
        """The log as it is written: an iterator of byte chunks (until the container ends or ^C)."""
        core = kubernetes.client.CoreV1Api(self.api)
        kwargs: dict[str, Any] = {"container": container, "follow": True}
        if tail is not None:
            kwargs["tail_lines"] = tail
        try:
            response: Any = core.read_namespaced_pod_log(pod, namespace, _preload_content=False, **kwargs)
        except kubernetes.client.ApiException as err:
            raise ClusterError(self._refusal(err)) from None
        return response.stream(1024)


def selector(labels: dict[str, str]) -> str:
    """A label selector (`k=v,k=v`) matching every label given."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

"""A fake Kubernetes API server on 127.0.0.1 for the operator commands (doctor, logs, outputs).

It speaks the real API's paths and JSON, and answers from a recorded scenario
(tests/fixtures/kube/<name>.yaml): `objects` holds objects as `kubectl get -o json` shows them,
`logs` the text of `kubectl logs` keyed `<pod>/<container>` (`<pod>/<container>/previous` for
the last terminated run). The awkward parts of the real server are kept:
- lists come wrapped as `<Kind>List` with `metadata.resourceVersion`; items carry no kind;
- `labelSelector` (`k=v`, `k!=v`, `k`, comma-joined) and `fieldSelector` (`involvedObject.name=...`)
  filter; an unknown field in a fieldSelector is a 400, as the real server answers;
- a missing object is a 404 `Status` (reason NotFound) naming the resource, not an empty body;
- logs of a container that has not started are a 400 `Status` ("... is waiting to start: ...");
  `previous=true` without a terminated run is a 400 too; `tailLines` keeps the last lines;
- a wrong or missing bearer token is a 401 `Status`; a scenario may forbid a resource (403).
Sources: kubernetes.io/docs/reference/using-api/api-concepts/ (lists, selectors) and
kubernetes.io/docs/reference/kubernetes-api/ (Status, pod log parameters).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from tests.httpfiles import send_json

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kube"
TOKEN = "fake-token"

# (group/version, plural) -> kind, for what the tools read.
RESOURCES: dict[tuple[str, str], str] = {
    ("v1", "pods"): "Pod",
    ("v1", "events"): "Event",
    ("v1", "nodes"): "Node",
    ("v1", "secrets"): "Secret",
    ("v1", "services"): "Service",
    ("batch/v1", "jobs"): "Job",
    ("apps/v1", "deployments"): "Deployment",
    ("keda.sh/v1alpha1", "scaledobjects"): "ScaledObject",
}
CLUSTER_SCOPED = {"Node"}
PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[a-z0-9.-]+/[a-z0-9]+))"
    r"(?:/namespaces/(?P<ns>[a-z0-9-]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[a-z0-9.-]+))?(?:/(?P<sub>log))?$"
)


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def matches_labels(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.rstrip("=")) != value.lstrip("="):
                return False
        elif term not in labels:
            return False
    return True


FIELDS = {"involvedObject.name", "involvedObject.kind", "metadata.name", "metadata.namespace", "status.phase"}


def field_value(obj: dict[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, str) else ""


@dataclass
class Scenario:
    objects: list[dict[str, Any]]
    logs: dict[str, str]
    forbidden: set[str] = field(default_factory=set)  # plurals the caller may not read (403)

    @classmethod
    def load(cls, name: str) -> Scenario:
        data = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
        return cls(data.get("objects", []), data.get("logs", {}), set(data.get("forbidden", [])))


@dataclass
class FakeKubeApi:
    """`with FakeKubeApi(Scenario.load("healthy")) as api:` then `api.kubeconfig(tmp_path)`."""

    scenario: Scenario
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeKubeApi:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(self.path)
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._json(401, status(401, "Unauthorized", "Unauthorized"))
                code, body = fake.answer(self.path)
                if isinstance(body, str):
                    data = body.encode()
                    self.send_response(code)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._json(code, body)

            def _json(self, code: int, body: dict[str, Any]) -> None:
                send_json(self, code, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def kubeconfig(self, folder: Path, token: str = TOKEN) -> Path:
        """A kubeconfig whose current context points at this server."""
        path = folder / "kubeconfig"
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "fake", "user": {"token": token}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                    "current-context": "fake",
                }
            )
        )
        return path

    def answer(self, raw_path: str) -> tuple[int, dict[str, Any] | str]:
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        m = PATH.match(url.path)
        if not m:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        version = m["core"] or m["group"]
        kind = RESOURCES.get((version, m["plural"]))
        if kind is None:
            return 404, status(404, "NotFound", "the server could not find the requested resource")
        if m["plural"] in self.scenario.forbidden:
            return 403, status(
                403,
                "Forbidden",
                f'{m["plural"]} is forbidden: User "fake" cannot list resource "{m["plural"]}" in the namespace "{m["ns"]}"',
            )
        found = [
            o
            for o in self.scenario.objects
            if o["kind"] == kind and (kind in CLUSTER_SCOPED or o["metadata"].get("namespace") == m["ns"])
        ]
        if m["name"]:
            named = [o for o in found if o["metadata"]["name"] == m["name"]]
            if not named:
                group = version.split("/")[0] if "/" in version else ""
                resource = f"{m['plural']}.{group}" if group else m["plural"]
                return 404, status(404, "NotFound", f'{resource} "{m["name"]}" not found')
            if m["sub"] == "log":
                return self._log(named[0], query)
            return 200, named[0]
        selector = query.get("labelSelector", "")
        found = [o for o in found if matches_labels(o["metadata"].get("labels", {}), selector)]
        for term in filter(None, query.get("fieldSelector", "").split(",")):
            key, _, value = term.partition("=")
            if key not in FIELDS:
                return 400, status(
                    400,
                    "BadRequest",
                    f'"{key}" is not a known field selector: only "metadata.name", "metadata.namespace"',
                )
            found = [o for o in found if field_value(o, key) == value]
        items = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in found]
        return 200, {
            "kind": f"{kind}List",
            "apiVersion": version,
            "metadata": {"resourceVersion": "4242"},
            "items": items,
        }

    def _log(self, pod: dict[str, Any], query: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
        name = pod["metadata"]["name"]
        spec = pod.get("spec", {})
        containers = [c["name"] for c in (*spec.get("initContainers", []), *spec.get("containers", []))]
        container = query.get("container")
        if container is None:
            if len(spec.get("containers", [])) != 1:
                return 400, status(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: {containers}",
                )
            container = spec["containers"][0]["name"]
        if container not in containers:
            return 400, status(400, "BadRequest", f"container {container} is not valid for pod {name}")
        key = f"{name}/{container}" + ("/previous" if query.get("previous") == "true" else "")
        if key not in self.scenario.logs:
            if query.get("previous") == "true":
                return 400, status(
                    400,
                    "BadRequest",
                    f'previous terminated container "{container}" in pod "{name}" not found',
                )
            return 400, status(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting to start: PodInitializing',
            )
        text = self.scenario.logs[key]
        if "tailLines" in query:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(query["tailLines"]) :]) if int(query["tailLines"]) > 0 else ""
        return 200, text

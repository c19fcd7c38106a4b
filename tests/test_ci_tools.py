"""CI's helpers: the federated-token file stays fresh, the one preview comment is found by its marker
and nothing else is touched, and CI's stack settings leave the committed config as it is."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools import ci_stack, oidc_token, pr_comment

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvIn0.c2ln"


class Fake:
    """A loopback HTTP server answering from `handle(method, path, headers, body) -> (status, json)`."""

    def __init__(self, handle: Any):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((self.command, self.path, dict(self.headers), body))
                status, payload = handle(self.command, self.path, self.headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def github_oidc() -> Iterator[Fake]:
    tokens = iter([JWT, JWT.replace("c2ln", "bmV3")])
    fake = Fake(lambda method, path, headers, body: (200, {"value": next(tokens)}))
    yield fake
    fake.close()


# --- the federated-token file ----------------------------------------------------------------


def test_token_request_asks_for_the_entra_audience_and_sends_the_request_token(github_oidc: Fake, tmp_path: Path):
    file = tmp_path / "token"
    oidc_token.refresh(file, f"{github_oidc.url}/token?api-version=2.0", "request-token", every=0)
    (method, path, headers, _), *_ = github_oidc.requests
    assert method == "GET"
    assert path == "/token?api-version=2.0&audience=api%3A%2F%2FAzureADTokenExchange"
    assert headers["Authorization"] == "bearer request-token"
    assert file.read_text() == JWT


def test_token_file_is_rewritten_each_round_and_only_its_owner_reads_it(github_oidc: Fake, tmp_path: Path):
    file = tmp_path / "token"
    oidc_token.refresh(file, f"{github_oidc.url}/token?x=1", "t", every=0.01, rounds=2)
    assert file.read_text().endswith("bmV3") and len(github_oidc.requests) == 2
    assert file.stat().st_mode & 0o077 == 0


def test_refreshes_every_four_minutes_inside_githubs_five_minute_token_life():
    assert oidc_token.REFRESH_SECONDS < 300


def test_a_first_answer_without_a_jwt_fails_at_once(tmp_path: Path):
    fake = Fake(lambda *_: (200, {"value": "not-a-jwt"}))
    try:
        with pytest.raises(ValueError, match="without a JWT"):
            oidc_token.refresh(tmp_path / "token", f"{fake.url}/t?x=1", "t", every=0)
    finally:
        fake.close()


# --- the one preview comment -----------------------------------------------------------------


def comments_server(existing: list[dict[str, Any]]) -> Fake:
    def handle(method: str, path: str, headers: Any, body: Any) -> tuple[int, Any]:
        if method == "GET":
            page = int(path.rsplit("page=", 1)[1])
            return 200, existing[(page - 1) * 100 : page * 100]
        if method == "PATCH":
            return 200, {"id": int(path.rsplit("/", 1)[1])}
        return 201, {"id": 999}

    return Fake(handle)


def bot(comment_id: int, text: str) -> dict[str, Any]:
    return {"id": comment_id, "user": {"login": pr_comment.BOT}, "body": text}


def test_preview_comment_edits_only_its_own_marked_comment():
    # Pulumi's own comment and a later bot comment come after ours: --edit-last would have hit them.
    existing = [
        {"id": 1, "user": {"login": "alice"}, "body": pr_comment.marker("dev") + " quoted by a person"},
        bot(2, pr_comment.marker("dev") + "\nold preview"),
        bot(3, "#### :tropical_drink: `preview` on llamacpp-aks/dev"),
        bot(4, pr_comment.marker("prod") + "\nanother stack"),
    ]
    fake = comments_server(existing)
    try:
        github = pr_comment.GitHub(fake.url, "o/r", "token")
        assert pr_comment.upsert(github, 7, "dev", pr_comment.body("dev", "+ 3 to create", "sizing")) == 2
    finally:
        fake.close()
    writes = [(m, p) for m, p, _, _ in fake.requests if m != "GET"]
    assert writes == [("PATCH", "/repos/o/r/issues/comments/2")]


def test_preview_comment_is_posted_once_when_none_is_marked_and_reads_every_page():
    existing = [bot(i, f"comment {i}") for i in range(1, 151)]
    fake = comments_server(existing)
    try:
        assert pr_comment.upsert(pr_comment.GitHub(fake.url, "o/r", "token"), 7, "dev", "text") == 999
    finally:
        fake.close()
    assert [p for m, p, _, _ in fake.requests if m == "GET"][-1].endswith("page=3")
    assert [(m, p) for m, p, _, _ in fake.requests if m != "GET"] == [("POST", "/repos/o/r/issues/7/comments")]


def test_comment_holds_the_pulumi_diff_then_the_sizing_change_within_githubs_limit():
    text = pr_comment.body("dev", "x" * 200_000 + "\nResources: 3 to update", "### Sizing\ncost")
    assert text.startswith(pr_comment.marker("dev"))
    assert "Resources: 3 to update" in text and text.index("Resources") < text.index("### Sizing")
    assert "characters cut" in text and len(text) <= pr_comment.MAX_BODY


# --- CI's stack settings ---------------------------------------------------------------------


def test_ci_sets_kubelogins_workload_identity_and_the_deployer_and_keeps_the_rest():
    document = {"config": {"llamacpp-aks:cluster": {"location": "eastus"}, "llamacpp-aks:server": {"parallel": 8}}}
    out = ci_stack.apply(document, "11111111-1111-1111-1111-111111111111")
    assert out["config"]["llamacpp-aks:cluster"] == {
        "location": "eastus",
        "kubeloginMode": "workloadidentity",
        "deployerObjectId": "11111111-1111-1111-1111-111111111111",
        "deployerPrincipalType": "ServicePrincipal",
    }
    assert out["config"]["llamacpp-aks:server"] == {"parallel": 8}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_ci_settings_load_as_a_valid_stack_config(stack: str):
    from core.loading import load_config
    from tests.conftest import ROOT

    document = ci_stack.apply(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()), None)
    raw = {k.split(":", 1)[1]: v for k, v in document["config"].items()}
    config, _ = load_config(raw, stack)
    assert config.cluster.kubelogin_mode == "workloadidentity"

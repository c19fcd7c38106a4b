"""CI's helpers: the federated-token file stays fresh, the one preview comment is found by its marker
and nothing else is touched, and CI's stack settings leave the committed config as it is."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.httpfiles import send_json
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
                send_json(self, status, payload)

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


class Timeline:
    """A fake clock for the refresher: `down` is when GitHub's endpoint fails (start, end) and each
    token is its issue time; `ages` is the file token's age at each moment something is written or attempted."""

    def __init__(self, down: list[tuple[float, float]]):
        self.now = 0.0
        self.down = down
        self.attempts: list[float] = []
        self.writes: list[float] = []

    def fetch(self, url: str, bearer: str) -> str:
        self.attempts.append(self.now)
        if any(start <= self.now < end for start, end in self.down):
            raise OSError("HTTP Error 503: Service Unavailable")
        self.writes.append(self.now)
        return JWT

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def oldest(self, until: float) -> float:
        """The oldest the file's token gets before `until`: the longest gap between writes."""
        marks = [*self.writes, until]
        return max(b - a for a, b in itertools.pairwise(marks))


def run_timeline(tmp_path: Path, down: list[tuple[float, float]], rounds: int) -> Timeline:
    timeline = Timeline(down)
    oidc_token.refresh(
        tmp_path / "token", "http://127.0.0.1:9/t?x=1", "t", every=oidc_token.REFRESH_SECONDS, rounds=rounds,
        fetcher=timeline.fetch, sleep=timeline.sleep,
    )  # fmt: skip
    return timeline


def test_refreshes_well_within_githubs_five_minute_token_life(tmp_path: Path):
    timeline = run_timeline(tmp_path, down=[], rounds=6)
    assert timeline.writes == [i * oidc_token.REFRESH_SECONDS for i in range(6)]
    # Each reader gets a token with at least 3 of its 5 minutes left.
    assert timeline.oldest(until=timeline.now) <= oidc_token.TOKEN_LIFE_SECONDS - 180


def test_a_failed_refresh_is_retried_within_seconds_not_a_period(tmp_path: Path):
    # GitHub's endpoint fails for 25 s at the second refresh: three tries, the fourth succeeds.
    every, retry = oidc_token.REFRESH_SECONDS, oidc_token.RETRY_SECONDS
    timeline = run_timeline(tmp_path, down=[(every, every + 25)], rounds=6)
    assert timeline.attempts[:5] == [0, every, every + retry, every + 2 * retry, every + 3 * retry]
    assert timeline.writes[1] == every + 3 * retry
    # The file's token never got older than a reader can still use (a minute left at least).
    assert timeline.oldest(until=timeline.now) <= oidc_token.TOKEN_LIFE_SECONDS - 60


def test_an_outage_longer_than_a_token_life_is_caught_up_at_once_when_it_ends(tmp_path: Path):
    every, retry = oidc_token.REFRESH_SECONDS, oidc_token.RETRY_SECONDS
    end = every + oidc_token.TOKEN_LIFE_SECONDS + 1  # one second past a whole token life
    timeline = run_timeline(tmp_path, down=[(every, end)], rounds=40)
    first_after = next(w for w in timeline.writes if w >= end)
    assert first_after - end < retry  # the next try after the outage, not the next period
    assert all(b - a == retry for a, b in itertools.pairwise(timeline.attempts[1:]) if b <= end)


def test_a_retry_never_waits_longer_than_the_period(tmp_path: Path):
    timeline = Timeline(down=[(1, 10**6)])
    oidc_token.refresh(
        tmp_path / "token", "http://127.0.0.1:9/t?x=1", "t", every=3, rounds=4, retry=60,
        fetcher=timeline.fetch, sleep=timeline.sleep,
    )  # fmt: skip
    assert timeline.attempts == [0, 3, 6, 9]


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
    out = ci_stack.apply(document, "11111111-1111-1111-1111-111111111111", roles_prepared=True)
    assert out["config"]["llamacpp-aks:cluster"] == {
        "location": "eastus",
        "kubeloginMode": "workloadidentity",
        "adoptResourceGroup": True,
        "adoptControlPlaneIdentity": True,
        "deployerHoldsClusterAdmin": True,
        "deployerObjectId": "11111111-1111-1111-1111-111111111111",
        "deployerPrincipalType": "ServicePrincipal",
    }
    assert out["config"]["llamacpp-aks:server"] == {"parallel": 8}
    assert out["config"]["llamacpp-aks:ingress"] == {"nodeResourceGroupReader": False}


@pytest.mark.parametrize(
    ("variable", "granted"),
    [("true", True), ("", False), ("false", False), ("True", False), ("true ", True), ("yes", False)],
)
def test_the_node_group_reader_follows_bootstraps_variable_exactly(tmp_path, monkeypatch, variable, granted):
    """Only bootstrap's own "true" turns it on: an unset variable (a bootstrap from before it
    existed) keeps the first deploy clear of the node group it cannot reach yet."""
    (tmp_path / "Pulumi.dev.yaml").write_text(
        yaml.safe_dump({"config": {"llamacpp-aks:ingress": {"enabled": True, "hostname": "llm.example.com"}}})
    )
    monkeypatch.setattr(ci_stack, "ROOT", tmp_path)
    assert ci_stack.main(["--stack", "dev", "--node-resource-group-granted", variable]) == 0
    ingress = yaml.safe_load((tmp_path / "Pulumi.dev.yaml").read_text())["config"]["llamacpp-aks:ingress"]
    assert ingress == {"enabled": True, "hostname": "llm.example.com", "nodeResourceGroupReader": granted}


@pytest.mark.parametrize(("variable", "prepared"), [("true", True), ("", False), ("false", False), ("TRUE", False)])
def test_only_a_bootstrap_that_prepared_the_roles_lets_the_program_rely_on_them(
    tmp_path, monkeypatch, variable, prepared
):
    """A bootstrap from before the control-plane identity sets no variable: the program then keeps
    its own subnet role, cluster admin grant and waits, so an older setup never loses them."""
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": {}}))
    monkeypatch.setattr(ci_stack, "ROOT", tmp_path)
    assert ci_stack.main(["--stack", "dev", "--stack-roles-prepared", variable]) == 0
    cluster = yaml.safe_load((tmp_path / "Pulumi.dev.yaml").read_text())["config"]["llamacpp-aks:cluster"]
    assert (cluster["adoptControlPlaneIdentity"], cluster["deployerHoldsClusterAdmin"]) == (prepared, prepared)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_ci_settings_load_as_a_valid_stack_config(stack: str):
    from core.loading import load_config
    from tests.conftest import ROOT

    document = ci_stack.apply(yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()), None, roles_prepared=True)
    raw = {k.split(":", 1)[1]: v for k, v in document["config"].items()}
    config, _ = load_config(raw, stack)
    assert config.cluster.kubelogin_mode == "workloadidentity"
    assert config.cluster.adopt_resource_group
    assert config.ingress.node_resource_group_reader is False
    assert config.cluster.adopt_control_plane_identity and config.cluster.deployer_holds_cluster_admin

"""Role propagation polled until Azure grants the role, with a bound: core/permissions.py and
tools/role_ready.py against a fake of ARM's permissions API on 127.0.0.1."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.permissions import ACR_PUSH, ACR_TASKS_RUN, AKS_ADMIN, Needed, NotInEffect, allows, poll, ready_command
from tests.httpfiles import send_json
from tools import role_ready

# The built-in roles' permissions as ARM lists them (built-in-roles/containers).
ACR_PUSH_ROLE = {
    "actions": [
        "Microsoft.ContainerRegistry/registries/pull/read",
        "Microsoft.ContainerRegistry/registries/push/write",
    ],
    "notActions": [],
    "dataActions": [],
    "notDataActions": [],
}
AKS_RBAC_CLUSTER_ADMIN = {
    "actions": ["Microsoft.ContainerService/managedClusters/listClusterUserCredential/action"],
    "notActions": [],
    "dataActions": ["Microsoft.ContainerService/managedClusters/*"],
    "notDataActions": [],
}
CONTRIBUTOR = {
    "actions": ["*"],
    "notActions": ["Microsoft.Authorization/*/Delete", "Microsoft.Authorization/*/Write"],
    "dataActions": [],
    "notDataActions": [],
}
READER = {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}


# --- what a permission list allows -----------------------------------------------------------


@pytest.mark.parametrize(
    ("listed", "needed", "expected"),
    [
        ([ACR_PUSH_ROLE], ACR_PUSH, True),
        ([READER], ACR_PUSH, False),
        ([CONTRIBUTOR], ACR_PUSH, True),
        ([CONTRIBUTOR], ACR_TASKS_RUN, True),
        ([ACR_PUSH_ROLE], ACR_TASKS_RUN, False),
        ([AKS_RBAC_CLUSTER_ADMIN], AKS_ADMIN, True),
        # Contributor's "*" is a control-plane action: it grants no Kubernetes data action.
        ([CONTRIBUTOR], AKS_ADMIN, False),
        ([READER, AKS_RBAC_CLUSTER_ADMIN], AKS_ADMIN, True),
        ([], AKS_ADMIN, False),
    ],
    ids=[
        "acrpush",
        "reader",
        "contributor-push",
        "contributor-tasks",
        "acrpush-no-tasks",
        "aks-admin",
        "contributor-no-data",
        "second-role",
        "none",
    ],
)
def test_permission_list_allows_what_its_roles_grant(listed, needed, expected):
    assert allows(listed, needed) is expected


def test_operation_names_match_in_any_case():
    assert allows([{"actions": ["microsoft.containerregistry/REGISTRIES/push/write"]}], ACR_PUSH)


def test_a_not_action_excludes_what_a_wildcard_grants():
    listed = [{"actions": ["*"], "notActions": ["Microsoft.ContainerRegistry/registries/push/*"]}]
    assert not allows(listed, ACR_PUSH)


def test_a_not_data_action_excludes_the_data_action():
    listed = [{**AKS_RBAC_CLUSTER_ADMIN, "notDataActions": ["Microsoft.ContainerService/managedClusters/namespaces/*"]}]
    assert not allows(listed, AKS_ADMIN)


def test_an_action_of_a_resource_that_merely_starts_like_the_scope_is_no_grant():
    listed = [{"actions": ["Microsoft.ContainerRegistry/registries/push"]}]
    assert not allows(listed, ACR_PUSH)


def test_a_data_action_grants_nothing_as_a_control_plane_action():
    assert not allows([{"actions": ["Microsoft.ContainerService/managedClusters/*"]}], AKS_ADMIN)


def test_null_lists_as_arm_sometimes_sends_them_grant_nothing():
    assert not allows([{"actions": None, "dataActions": None}], AKS_ADMIN)


# --- the bounded poll --------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def test_poll_returns_at_once_when_the_role_is_already_in_effect():
    clock = Clock()
    assert poll(lambda: True, 600, now=clock.now, sleep=clock.sleep) == 0
    assert clock.sleeps == []


def test_poll_ends_on_the_first_probe_that_sees_the_role():
    clock, answers = Clock(), iter([False, False, True])
    took = poll(lambda: next(answers), 600, interval_s=10, now=clock.now, sleep=clock.sleep)
    assert took == 20 and clock.sleeps == [10, 10]


def test_poll_succeeds_on_a_probe_exactly_at_the_bound():
    clock = Clock()
    took = poll(lambda: clock.t >= 30, 30, interval_s=10, now=clock.now, sleep=clock.sleep)
    assert took == 30


def test_poll_fails_once_the_bound_passes_without_the_role():
    clock = Clock()
    with pytest.raises(NotInEffect, match=r"after 30 s \(bound 30 s\)"):
        poll(lambda: clock.t >= 31, 30, interval_s=10, now=clock.now, sleep=clock.sleep)
    assert sum(clock.sleeps) == 30


def test_poll_never_sleeps_past_the_bound():
    clock = Clock()
    with pytest.raises(NotInEffect):
        poll(lambda: False, 25, interval_s=10, now=clock.now, sleep=clock.sleep)
    assert clock.sleeps == [10, 10, 5]


def test_a_probe_that_raises_is_a_role_not_yet_in_effect():
    clock, answers = Clock(), iter([OSError("403"), True])

    def probe() -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert poll(probe, 60, interval_s=10, now=clock.now, sleep=clock.sleep) == 10


def test_ready_command_names_the_operation_kind_and_bound():
    assert ready_command(AKS_ADMIN, 600).endswith(
        "--operation Microsoft.ContainerService/managedClusters/namespaces/write --data --timeout 600 --settle 300"
    )
    assert "--data" not in ready_command(ACR_PUSH, 120) and "--settle" not in ready_command(ACR_PUSH, 120)
    # No wait asked for: no settle either.
    assert "--settle" not in ready_command(AKS_ADMIN, 0)
    assert ready_command(ACR_PUSH, 1, "/a b/python").startswith("'/a b/python' -m tools.role_ready")


def test_a_bound_of_zero_waits_for_nothing_and_probes_nothing():
    def probe() -> bool:
        raise AssertionError("no probe with rolePropagationSeconds 0")

    assert poll(probe, 0, now=lambda: 0.0, sleep=lambda s: None) == 0.0


# --- the tool against a fake ARM ---------------------------------------------------------------

SCOPE = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1"


class FakeArm:
    """ARM's permissions API: 403 for the first `denials` calls, then pages linked by nextLink
    (the second page holds the grant), as a role in propagation looks from outside."""

    def __init__(self, pages: list[list[dict[str, Any]]], denials: int = 0) -> None:
        self.pages, self.denials, self.calls = pages, denials, []  # type: ignore[var-annotated]
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                fake.calls.append((self.path, self.headers.get("Authorization")))
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if len(fake.calls) <= fake.denials:
                    return self.reply(403, {"error": {"code": "AuthorizationFailed"}})
                page = int(query.get("page", "0"))
                body: dict[str, Any] = {"value": fake.pages[page]}
                if page + 1 < len(fake.pages):
                    body["nextLink"] = f"{fake.base}{url.path}?api-version={query['api-version']}&page={page + 1}"
                self.reply(200, body)

            def reply(self, status: int, body: dict[str, Any]) -> None:
                send_json(self, status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def arm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    started: list[FakeArm] = []

    def start(pages: list[list[dict[str, Any]]], denials: int = 0) -> FakeArm:
        fake = FakeArm(pages, denials)
        threading.Thread(target=fake.server.serve_forever, daemon=True).start()
        started.append(fake)
        monkeypatch.setenv("ARM_ENDPOINT", fake.base)
        monkeypatch.setenv("ARM_ACCESS_TOKEN", "deployer-token")
        return fake

    monkeypatch.setattr(role_ready.time, "sleep", lambda s: None)
    yield start
    for fake in started:
        fake.server.shutdown()
        fake.server.server_close()


def test_tool_polls_through_403s_and_pages_until_the_role_shows(arm, capsys):
    fake = arm([[READER], [ACR_PUSH_ROLE]], denials=2)
    code = role_ready.main(
        ["--scope", SCOPE, "--operation", "Microsoft.ContainerRegistry/registries/push/write", "--timeout", "60"]
    )
    assert code == 0, capsys.readouterr().err
    path, auth = fake.calls[2]
    assert path == f"{SCOPE}/providers/Microsoft.Authorization/permissions?api-version=2022-04-01"
    assert auth == "Bearer deployer-token"
    assert fake.calls[3][0].endswith("&page=1")


def test_tool_fails_with_a_sentence_naming_the_key_when_the_bound_passes(arm, capsys, monkeypatch):
    arm([[READER]])
    ticks = iter(range(0, 1000, 10))
    monkeypatch.setattr(role_ready.time, "monotonic", lambda: float(next(ticks)))
    code = role_ready.main(["--scope", SCOPE, "--operation", AKS_ADMIN.operation, "--data", "--timeout", "30"])
    err = capsys.readouterr().err
    assert code == 1
    assert "cluster.rolePropagationSeconds" in err and "bound 30 s" in err and "Traceback" not in err


def test_tool_refuses_a_scope_that_is_not_a_resource_id(capsys):
    assert role_ready.main(["--scope", "subscriptions/0000", "--operation", "x/y", "--timeout", "1"]) == 2
    assert "is not an Azure resource id" in capsys.readouterr().err


def test_tool_treats_an_unreachable_arm_as_not_yet(monkeypatch, capsys):
    monkeypatch.setenv("ARM_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("ARM_ACCESS_TOKEN", "t")
    monkeypatch.setattr(role_ready.time, "sleep", lambda s: None)
    ticks = iter(range(0, 1000, 10))
    monkeypatch.setattr(role_ready.time, "monotonic", lambda: float(next(ticks)))
    assert role_ready.main(["--scope", SCOPE, "--operation", ACR_PUSH.operation, "--timeout", "20"]) == 1
    assert "probe:" in capsys.readouterr().err


def test_needed_defaults_to_a_control_plane_action():
    assert Needed("a/b").data is False


def test_tool_without_az_or_a_token_says_what_to_install(monkeypatch, capsys):
    monkeypatch.delenv("ARM_ACCESS_TOKEN", raising=False)
    monkeypatch.setattr(role_ready.shutil, "which", lambda name: None)
    assert role_ready.main(["--scope", SCOPE, "--operation", ACR_PUSH.operation, "--timeout", "600"]) == 2
    assert "install the Azure CLI" in capsys.readouterr().err


def test_tool_asks_az_for_a_fresh_arm_token_on_each_probe(arm, monkeypatch, capsys):
    fake = arm([[ACR_PUSH_ROLE]], denials=1)
    monkeypatch.delenv("ARM_ACCESS_TOKEN")
    calls: list[list[str]] = []

    def az(cmd: list[str], **kwargs: Any) -> Any:
        calls.append(cmd)
        return type("Done", (), {"stdout": f"token-{len(calls)}\n"})()

    monkeypatch.setattr(role_ready.shutil, "which", lambda name: "/usr/bin/az")
    monkeypatch.setattr(role_ready.subprocess, "run", az)
    assert role_ready.main(["--scope", SCOPE, "--operation", ACR_PUSH.operation, "--timeout", "60"]) == 0
    assert [auth for _, auth in fake.calls] == ["Bearer token-1", "Bearer token-2"]
    assert calls[0][:3] == ["az", "account", "get-access-token"]

"""What only a real first `pulumi up` would reveal, from a laptop and from CI: the
deployer's principal type, waiting for new roles to take effect, Container Insights with managed
identity, alerts that notify someone, a prod admin group, no silent drop of unreachable resources."""

from __future__ import annotations

import base64
import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pulumi.runtime.mocks
import pytest
from pulumi.runtime import MockCallArgs

from core import catalog
from core.identity import deployer_principal_type, principal_type_from_token
from core.loading import load_config
from specs import observability as observability_spec
from tests.conftest import ROOT, of_type, one, only, preview_problems, run_stack
from tools.mocks import RenderMocks

ROLE = "azure-native:authorization:RoleAssignment"
SLEEP = "time:index/sleep:Sleep"
COMMAND = "command:local:Command"
DEPLOYER_ROLES = (catalog.ACR_PUSH, catalog.AKS_RBAC_CLUSTER_ADMIN, catalog.GRAFANA_ADMIN)
GRAFANA = {"autoscaling": {"grafana": True}}


def jwt(claims: dict[str, Any]) -> str:
    """An unsigned token with these claims, shaped like the ARM tokens Entra ID issues."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}."


PERSON = jwt({"oid": "22222222-2222-2222-2222-222222222222", "scp": "user_impersonation"})
# What azure/login's OIDC federation, a client secret or a managed identity gets: app-only.
CI = jwt({"oid": "22222222-2222-2222-2222-222222222222", "idtyp": "app", "roles": []})


class SignedInAs(RenderMocks):
    """Mocks whose ARM token is `token`, as azure-native would get it for that principal."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def answer(self, args: MockCallArgs) -> dict[str, Any]:
        if args.token == "azure-native:authorization:getClientToken":
            return {"token": self.token}
        return super().answer(args)


def deployer_assignments(mocks: RenderMocks) -> dict[str, dict[str, Any]]:
    roles = {r.inputs["roleDefinitionId"].rsplit("/", 1)[-1]: r.inputs for r in of_type(mocks, ROLE)}
    return {role: roles[role] for role in DEPLOYER_ROLES}


@contextmanager
def recording_dependencies() -> Iterator[dict[str, set[str]]]:
    """Resource name -> names of the resources it waits for (inputs and depends_on), as the
    engine receives them; Pulumi's mocks do not pass them on to `new_resource`."""
    found: dict[str, set[str]] = {}
    register = pulumi.runtime.mocks.MockMonitor.RegisterResource

    def record(monitor: Any, request: Any) -> Any:
        found[request.name] = {urn.rsplit("::", 1)[-1] for urn in request.dependencies}
        return register(monitor, request)

    pulumi.runtime.mocks.MockMonitor.RegisterResource = record  # type: ignore[method-assign]
    try:
        yield found
    finally:
        pulumi.runtime.mocks.MockMonitor.RegisterResource = register  # type: ignore[method-assign]


# --- 1. the deployer's principal type -------------------------------------------------------


def test_token_with_delegated_scopes_is_a_person():
    assert principal_type_from_token(PERSON) == "User"


@pytest.mark.parametrize(
    "claims", [{"idtyp": "app", "roles": []}, {"roles": ["x"]}, {"oid": "x"}], ids=["idtyp", "roles", "bare"]
)
def test_app_only_token_is_a_service_principal(claims):
    assert principal_type_from_token(jwt(claims)) == "ServicePrincipal"


@pytest.mark.parametrize("token", ["", "opaque", "a.!!!.c", f"a.{base64.urlsafe_b64encode(b'[1]').decode()}.c"])
def test_token_that_is_not_a_jwt_tells_nothing(token):
    assert principal_type_from_token(token) is None


def test_configured_principal_type_wins_over_the_token():
    assert deployer_principal_type("ServicePrincipal", PERSON) == "ServicePrincipal"


def test_auto_with_an_unreadable_token_names_the_key_to_set():
    with pytest.raises(ValueError, match=r"set cluster\.deployerPrincipalType to User or ServicePrincipal"):
        deployer_principal_type("auto", "opaque")


@pytest.mark.parametrize(("token", "expected"), [(PERSON, "User"), (CI, "ServicePrincipal")], ids=["laptop", "ci"])
def test_deployer_roles_name_the_principal_type_of_whoever_runs_up(token, expected):
    mocks = run_stack(GRAFANA, "dev", mocks=SignedInAs(token))
    types = {role: a.get("principalType") for role, a in deployer_assignments(mocks).items()}
    assert types == dict.fromkeys(DEPLOYER_ROLES, expected)


def test_configured_deployer_principal_type_reaches_the_role_assignments():
    config = {**GRAFANA, "cluster": {"deployerPrincipalType": "ServicePrincipal"}}
    mocks = run_stack(config, "dev", mocks=SignedInAs(PERSON))
    types = {role: a.get("principalType") for role, a in deployer_assignments(mocks).items()}
    assert types == dict.fromkeys(DEPLOYER_ROLES, "ServicePrincipal")


# --- 2. waiting for new roles to take effect -------------------------------------------------


@pytest.fixture(scope="module")
def grafana_dependencies() -> Iterator[tuple[RenderMocks, dict[str, set[str]]]]:
    with recording_dependencies() as found:
        mocks = run_stack(GRAFANA, "dev")
    yield mocks, found


@pytest.mark.parametrize(
    ("user", "wait", "assignment"),
    [
        ("cluster-k8s", "cluster-deployer-admin-ready", "cluster-deployer-admin"),
        (
            "observability-grafana-api",
            "observability-deployer-grafana-admin-propagation",
            "observability-deployer-grafana-admin",
        ),
        ("image-image", "image-registry-role-ready", "cluster-acr-push"),
    ],
    ids=["kubernetes-provider", "grafana-provider", "image-push"],
)
def test_first_use_of_a_new_role_waits_for_it_to_propagate(grafana_dependencies, user, wait, assignment):
    _, found = grafana_dependencies
    assert wait in found[user], f"{user} does not wait for {wait}: {sorted(found[user])}"
    assert assignment in found[wait], f"{wait} does not follow {assignment}"


def role_polls(mocks: RenderMocks) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in of_type(mocks, COMMAND) if r.name.endswith("-ready")}


def test_deployer_roles_are_polled_until_azure_grants_them_never_slept_on(grafana_dependencies):
    mocks, _ = grafana_dependencies
    polls = role_polls(mocks)
    assert set(polls) == {"cluster-deployer-admin-ready", "image-registry-role-ready"}
    admin = polls["cluster-deployer-admin-ready"]
    # The program's own interpreter, from the project root; AKS's authorizer gets its 5 minutes.
    assert admin["create"] == (
        f'{shlex.quote(sys.executable)} -m tools.role_ready --scope "$SCOPE" --operation '
        "Microsoft.ContainerService/managedClusters/namespaces/write --data --timeout 600 --settle 300"
    )
    assert admin["dir"] == str(ROOT)
    assert admin["environment"]["SCOPE"].endswith("/managedClusters/llamacpp-dev-aks")
    assert admin["triggers"][0].endswith("/roleAssignments/cluster-deployer-admin")
    sleeps = {r.name for r in of_type(mocks, SLEEP)}
    assert "cluster-deployer-admin-propagation" not in sleeps and "cluster-acr-push-propagation" not in sleeps


@pytest.mark.parametrize(
    ("builder", "operation"),
    [
        ("local", "Microsoft.ContainerRegistry/registries/push/write"),
        ("acr", "Microsoft.ContainerRegistry/registries/scheduleRun/action"),
    ],
)
def test_image_build_polls_for_what_its_builder_needs_in_the_registry(builder, operation):
    polls = role_polls(run_stack({"image": {"builder": builder}}, "dev"))
    registry = polls["image-registry-role-ready"]
    assert f"--operation {operation} --timeout 600" in registry["create"]
    assert "/registries/" in registry["environment"]["SCOPE"]


def test_prebuilt_image_waits_for_no_registry_role():
    prebuilt = "myteam.azurecr.io/llama-server@sha256:" + "a" * 64
    polls = role_polls(run_stack({"image": {"prebuilt": prebuilt}}, "dev"))
    assert "image-registry-role-ready" not in polls


def test_managed_identity_roles_keep_the_bounded_wait(grafana_dependencies):
    mocks, _ = grafana_dependencies
    waits = {r.name: r.inputs for r in of_type(mocks, SLEEP)}
    assert {w["createDuration"] for w in waits.values()} == {"600s"}
    trigger = waits["cluster-subnet-network-propagation"]["triggers"]["roleAssignmentId"]
    assert trigger.endswith("/roleAssignments/cluster-subnet-network")


def test_role_propagation_bound_follows_config():
    mocks = run_stack({"cluster": {"rolePropagationSeconds": 120}}, "dev")
    assert {r.inputs["createDuration"] for r in of_type(mocks, SLEEP)} == {"120s"}
    assert {p["create"].split("--timeout ")[1].split()[0] for p in role_polls(mocks).values()} == {"120"}


# --- 7. an unreachable cluster fails the run -------------------------------------------------


def test_kubernetes_provider_never_drops_unreachable_resources_from_state(monkeypatch):
    monkeypatch.delenv("PULUMI_K8S_DELETE_UNREACHABLE", raising=False)
    provider = one(run_stack({}, "dev"), "pulumi:providers:kubernetes")
    assert provider.get("deleteUnreachable") in (None, "false", False)


# --- 3. Container Insights signs in with its managed identity ------------------------------

MC = "azure-native:containerservice:ManagedCluster"
DCR = "azure-native:monitor:DataCollectionRule"
DCRA = "azure-native:monitor:DataCollectionRuleAssociation"


@pytest.fixture(scope="module")
def dev() -> RenderMocks:
    return run_stack({}, "dev")


def insights_rule(mocks: RenderMocks) -> dict[str, Any]:
    (rule,) = [r.inputs for r in of_type(mocks, DCR) if r.name == "cluster-insights-dcr"]
    return rule


def test_container_insights_uses_managed_identity_auth(dev):
    config = one(dev, MC)["addonProfiles"]["omsagent"]["config"]
    assert config["useAADAuth"] == "true"


def test_container_insights_rule_sends_the_default_stream_group_to_the_log_workspace(dev):
    rule = insights_rule(dev)
    workspace = one(dev, "azure-native:operationalinsights:Workspace")
    (destination,) = rule["destinations"]["logAnalytics"]
    assert destination["workspaceResourceId"].endswith(f"/workspaces/{workspace['workspaceName']}")
    (extension,) = rule["dataSources"]["extensions"]
    assert (extension["extensionName"], extension["streams"]) == (
        "ContainerInsights",
        ["Microsoft-ContainerInsights-Group-Default"],
    )
    assert rule["dataFlows"] == [
        {"streams": ["Microsoft-ContainerInsights-Group-Default"], "destinations": [destination["name"]]}
    ]


def test_container_insights_rule_is_associated_with_the_cluster(dev):
    (association,) = [r.inputs for r in of_type(dev, DCRA) if r.name == "cluster-insights-dcra"]
    assert association["associationName"] == "ContainerInsightsExtension"
    assert association["resourceUri"].endswith(f"/managedClusters/{one(dev, MC)['resourceName']}")
    assert association["dataCollectionRuleId"].endswith(
        f"/dataCollectionRules/{insights_rule(dev)['dataCollectionRuleName']}"
    )


def test_without_monitoring_there_is_no_container_insights_rule():
    mocks = run_stack({"cluster": {"monitoring": False}}, "dev")
    assert not [r for r in of_type(mocks, DCR) if r.name == "cluster-insights-dcr"]


# --- 5. prod has a break-glass admin group --------------------------------------------------

PROD_REACHABLE = {
    "cluster": {"production": True, "authorizedIpRanges": ["198.18.0.0/24"]},
    "alerts": {"emails": ["oncall@llm-team.org"]},
}
GROUP = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"  # an Entra object id (not the shipped example)


def test_prod_without_an_admin_group_fails_preview_naming_the_key():
    assert only(preview_problems(PROD_REACHABLE, "prod")) == (
        "cluster.entraAdminGroupObjectIds is empty with cluster.production=true (stack prod): cluster "
        "admin would belong only to whoever ran `pulumi up` last; list the object id of a break-glass "
        "Entra ID group in cluster.entraAdminGroupObjectIds."
    )


def test_prod_admin_group_administers_the_cluster():
    config = {**PROD_REACHABLE, "cluster": {**PROD_REACHABLE["cluster"], "entraAdminGroupObjectIds": [GROUP]}}
    mocks = run_stack(config, "prod")
    assert one(mocks, MC)["aadProfile"]["adminGroupObjectIDs"] == [GROUP]


def test_a_stack_that_is_not_production_needs_no_admin_group():
    config, _ = load_config({"alerts": {"emails": ["oncall@llm-team.org"]}}, "prod")
    assert config.cluster.entra_admin_group_object_ids == []


# --- 6. alerts notify the configured receivers ----------------------------------------------

ACTION_GROUP = "azure-native:monitor:ActionGroup"
RULE_GROUP = "azure-native:alertsmanagement:PrometheusRuleGroup"
RECEIVERS = {"alerts": {"emails": ["oncall@llm-team.org"], "webhooks": ["https://hooks.llm-team.org/llm?k=1"]}}


@pytest.fixture(scope="module")
def notified() -> RenderMocks:
    return run_stack(RECEIVERS, "dev")


def test_action_group_is_global_with_the_configured_receivers(notified):
    group = one(notified, ACTION_GROUP)
    assert group["location"] == "global"
    assert len(group["groupShortName"]) <= 12
    assert [r["emailAddress"] for r in group["emailReceivers"]] == ["oncall@llm-team.org"]
    assert [r["serviceUri"] for r in group["webhookReceivers"]] == ["https://hooks.llm-team.org/llm?k=1"]


def test_every_alert_rule_notifies_the_given_action_group():
    rules = observability_spec.alert_rules("ns", "server", "/actionGroups/receivers")
    assert [r["actions"] for r in rules] == [[{"action_group_id": "/actionGroups/receivers"}]] * len(rules)


def test_alert_rules_of_a_stack_with_receivers_all_notify_its_one_action_group(notified):
    actions = [r["actions"] for r in one(notified, RULE_GROUP)["rules"]]
    assert len({json.dumps(a) for a in actions}) == 1 and len(actions[0]) == 1


def test_without_receivers_there_is_no_action_group(dev):
    assert not of_type(dev, ACTION_GROUP)


def test_a_stack_that_is_not_production_is_warned_that_alerts_notify_nobody():
    _, warnings = load_config({}, "dev")
    assert any(w.startswith("alerts.emails and alerts.webhooks are empty: the alert rules fire") for w in warnings)


def test_prod_alerts_without_receivers_fail_preview():
    config = {
        "cluster": {
            "production": True,
            "authorizedIpRanges": ["198.18.0.0/24"],
            "entraAdminGroupObjectIds": [GROUP],
        }
    }
    assert only(preview_problems(config, "prod")).startswith(
        "alerts.emails and alerts.webhooks are empty with cluster.production=true (stack prod): the alert "
        "rules would fire and notify nobody"
    )


@pytest.mark.parametrize(
    ("key", "value"), [("webhooks", "http://hooks.llm-team.org/x"), ("emails", "oncall")], ids=["http", "no-at"]
)
def test_alert_receivers_must_be_https_and_email_addresses(key, value):
    assert only(preview_problems({"alerts": {key: [value]}})).startswith(f"alerts.{key}[0]={value!r}")


# --- the resource group bootstrap made --------------------------------------------------------


def test_a_stack_adopting_its_group_imports_it_by_id_and_keeps_it_on_destroy():
    """azure-native refuses to create a group that exists: CI's stacks import the one bootstrap made."""
    from tools.mocks import SUBSCRIPTION

    adopted = [
        r
        for r in of_type(
            run_stack({"cluster": {"adoptResourceGroup": True}}, "dev"), "azure-native:resources:ResourceGroup"
        )
    ]
    assert [r.import_id for r in adopted] == [f"/subscriptions/{SUBSCRIPTION}/resourceGroups/llamacpp-dev-rg"]
    created = of_type(run_stack({}, "dev"), "azure-native:resources:ResourceGroup")
    assert [r.import_id for r in created] == [None]


def test_a_stack_adopting_its_control_plane_identity_imports_it_grants_nothing_and_waits_for_nothing():
    """Bootstrap made the identity and its Network Contributor long before the first deploy: the
    program takes it over by id, keeps no subnet role of its own, and has no fixed wait left."""
    from tools.mocks import SUBSCRIPTION

    mocks = run_stack({"cluster": {"adoptResourceGroup": True, "adoptControlPlaneIdentity": True}}, "dev")
    (identity,) = [
        r
        for r in of_type(mocks, "azure-native:managedidentity:UserAssignedIdentity")
        if r.name == "cluster-control-plane"
    ]
    assert identity.import_id == (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/llamacpp-dev-rg"
        "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/llamacpp-dev-aks-identity"
    )
    assert identity.inputs["resourceName"] == "llamacpp-dev-aks-identity"
    roles = [r.name for r in of_type(mocks, "azure-native:authorization:RoleAssignment")]
    assert "cluster-subnet-network" not in roles
    assert "cluster-subnet-network-propagation" not in {r.name for r in of_type(mocks, SLEEP)}
    (created,) = [
        r
        for r in of_type(run_stack({}, "dev"), "azure-native:managedidentity:UserAssignedIdentity")
        if r.name == "cluster-control-plane"
    ]
    assert created.import_id is None


def test_the_estimate_drops_the_subnet_wait_only_for_an_adopted_identity():
    from core import first_token
    from core.config import StackConfig

    def subnet_wait(adopted: bool) -> first_token.Step:
        config = StackConfig.model_validate({"cluster": {"adoptControlPlaneIdentity": adopted}})
        (step,) = [s for s in first_token.first_deploy(config) if s.key == "subnet-wait"]
        return step

    assert (subnet_wait(True).low_s, subnet_wait(True).high_s) == (0, 0)
    assert (subnet_wait(False).low_s, subnet_wait(False).high_s) == (600, 600)


def test_a_deployer_that_bootstrap_made_cluster_admin_gets_no_grant_and_no_wait():
    from core import first_token
    from core.config import StackConfig

    mocks = run_stack({"cluster": {"deployerHoldsClusterAdmin": True}}, "dev")
    roles = [r.name for r in of_type(mocks, "azure-native:authorization:RoleAssignment")]
    assert "cluster-deployer-admin" not in roles and "cluster-deployer-admin-ready" not in role_polls(mocks)
    assert "cluster-deployer-admin" in [
        r.name for r in of_type(run_stack({}, "dev"), "azure-native:authorization:RoleAssignment")
    ]
    config = StackConfig.model_validate({"cluster": {"deployerHoldsClusterAdmin": True}})
    (poll,) = [s for s in first_token.first_deploy(config) if s.key == "admin-poll"]
    assert (poll.low_s, poll.high_s) == (0, 0)


def test_design_states_cis_first_deploy_of_dev_as_the_estimate_gives_it():
    import yaml

    from core import first_token
    from core.loading import load_config
    from tests.conftest import ROOT
    from tools import ci_stack

    document = ci_stack.apply(yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text()), None, roles_prepared=True)
    config, _ = load_config({k.split(":", 1)[1]: v for k, v in document["config"].items()}, "dev")
    figures = {
        path: "-".join(first_token.minutes(s) for s in first_token.total_s(first_token.first_deploy(config, path)))
        for path in ("acr-release", "acr-source")
    }
    text = " ".join((ROOT / "docs" / "design.md").read_text().split())
    assert (
        f"first deploy is {figures['acr-release']} minutes with the release binaries and "
        f"{figures['acr-source']} minutes with the source build" in text
    )

"""bootstrap/: the identities, roles, state storage and GitHub settings CI needs."""

from __future__ import annotations

import importlib
import itertools
import json
import re
import runpy
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pulumi
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bootstrap import plan
from core import catalog, labels
from tests.conftest import ROOT, WORKFLOWS, unsecret

PROJECT = "llamacpp-aks-bootstrap"
CONFIG = {
    "owner": "example-org",
    "repository": "llamacpp-aks",
    "prodReviewers": {"users": [101], "teams": [7]},
    "prodRunnerLabel": "prod-deployer",
    "prodRunnerGroup": "llamacpp-prod",
    "operatorGroup": "00000000-0000-0000-0000-0000000000aa",
}
OPERATORS = CONFIG["operatorGroup"]


# --- pure ------------------------------------------------------------------------------------


def test_preview_identity_trusts_only_the_preview_environment():
    c = plan.BootstrapConfig.model_validate(CONFIG)
    assert list(plan.preview_subjects(c).values()) == ["repo:example-org/llamacpp-aks:environment:dev-preview"]


def test_each_stack_has_a_deploy_identity_that_trusts_its_environment_only():
    c = plan.BootstrapConfig.model_validate(CONFIG)
    assert plan.deploy_subjects(c) == {
        "dev": {"environment-dev": "repo:example-org/llamacpp-aks:environment:dev"},
        "prod": {"environment-prod": "repo:example-org/llamacpp-aks:environment:prod"},
    }


def test_deploy_scopes_are_the_stacks_own_group_and_never_the_subscription():
    c = plan.BootstrapConfig.model_validate(CONFIG)
    assert plan.deploy_scopes(c, "dev") == ["/resourceGroups/llamacpp-dev-rg"]
    assert plan.deploy_scopes(c, "prod") == ["/resourceGroups/llamacpp-prod-rg"]
    groups = {"prod": ["MC_llamacpp-prod-rg_llamacpp-prod-aks_eastus", "llamacpp-prod-rg"]}
    widened = plan.BootstrapConfig.model_validate({**CONFIG, "deployResourceGroups": groups})
    assert plan.deploy_scopes(widened, "prod") == [
        "/resourceGroups/llamacpp-prod-rg",
        "/resourceGroups/MC_llamacpp-prod-rg_llamacpp-prod-aks_eastus",
    ]
    assert plan.deploy_scopes(widened, "dev") == ["/resourceGroups/llamacpp-dev-rg"]
    for stack in ("dev", "prod"):
        assert "" not in plan.deploy_scopes(widened, stack)


def test_the_stacks_group_is_the_one_the_program_makes():
    from tests.conftest import of_type, run_stack

    assert plan.stack_resource_group("dev") == labels.name("dev", "rg") == "llamacpp-dev-rg"
    (group,) = of_type(run_stack({}, "dev"), "azure-native:resources:ResourceGroup")
    assert group.inputs["resourceGroupName"] == plan.stack_resource_group("dev")
    assert group.inputs["tags"] == labels.tags("dev", "cluster")


@pytest.mark.parametrize("group", ["llamacpp-prod-rg", "LLAMACPP-PROD-RG"])
def test_config_refuses_extra_groups_that_are_another_stacks(group: str):
    with pytest.raises(ValidationError, match=r"deployResourceGroups\.dev names .* stack 'prod'"):
        plan.BootstrapConfig.model_validate({**CONFIG, "deployResourceGroups": {"dev": [group]}})
    # One character off is a group of its own.
    plan.BootstrapConfig.model_validate({**CONFIG, "deployResourceGroups": {"dev": [group + "2"]}})


def test_config_refuses_extra_groups_of_an_unknown_stack():
    with pytest.raises(ValidationError, match=r"deployResourceGroups names stacks \['staging'\]"):
        plan.BootstrapConfig.model_validate({**CONFIG, "deployResourceGroups": {"staging": ["x"]}})


def test_prod_runner_group_admits_only_deploy_yml_on_main():
    c = plan.BootstrapConfig.model_validate(CONFIG)
    assert plan.runner_group_workflow(c) == "example-org/llamacpp-aks/.github/workflows/deploy.yml@refs/heads/main"
    assert (ROOT / plan.DEPLOY_WORKFLOW).exists()


def test_delegation_condition_limits_both_writes_and_deletes_to_the_given_roles():
    text = plan.delegation_condition(["b", "a"])
    assert text.count("GuidEquals {a, b}") == 2
    assert "roleAssignments/write" in text and "roleAssignments/delete" in text
    # New assignments go to service principals only: the write clause names the principal type.
    write, delete = text.split(" AND ((!(ActionMatches")
    assert "roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}" in write
    assert "PrincipalType" not in delete


def test_stacks_deploy_from_main_prod_after_review_and_previews_from_any_branch_with_devs_passphrase():
    c = plan.BootstrapConfig.model_validate(CONFIG)
    assert plan.environments(c) == {
        "dev": plan.Environment(stack="dev", reviewed=False, branch="main"),
        "prod": plan.Environment(stack="prod", reviewed=True, branch="main"),
        "dev-preview": plan.Environment(stack="dev", reviewed=False, branch=None),
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"protectedStacks": ["dev", "prod"]}, "protectedStacks must not include 'dev'"),
        ({"stacks": ["prod"]}, "stacks must include 'dev'"),
        ({"protectedStacks": ["staging"]}, r"protectedStacks \['staging'\] are not in stacks"),
    ],
)
def test_config_rejects_stacks_the_workflows_cannot_use(change: dict[str, Any], message: str):
    with pytest.raises(ValidationError, match=message):
        plan.BootstrapConfig.model_validate({**CONFIG, **change})


def test_config_refuses_a_protected_stack_without_reviewers():
    # GitHub passes a protection rule that names no reviewer at once: prod would deploy unreviewed.
    with pytest.raises(ValidationError, match=r"protectedStacks \['prod'\] need at least one reviewer"):
        plan.BootstrapConfig.model_validate({**CONFIG, "prodReviewers": {"users": [], "teams": []}})
    plan.BootstrapConfig.model_validate({**CONFIG, "protectedStacks": [], "prodReviewers": {}})


def test_config_requires_the_prod_runner_label():
    with pytest.raises(ValidationError, match="prodRunnerLabel"):
        plan.BootstrapConfig.model_validate({k: v for k, v in CONFIG.items() if k != "prodRunnerLabel"})


def test_the_example_config_is_valid():
    example = yaml.safe_load((ROOT / "bootstrap" / "Pulumi.example.yaml").read_text())["config"]
    plan.BootstrapConfig.model_validate({k.removeprefix(f"{PROJECT}:"): v for k, v in example.items()})


def test_config_rejects_an_unknown_key():
    with pytest.raises(ValidationError, match="prodReviewer"):
        plan.BootstrapConfig.model_validate({**CONFIG, "prodReviewer": {}})


@given(
    stack=st.text(min_size=1, max_size=40),
    suffix=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=6, max_size=6),
)
def test_state_account_name_is_a_valid_storage_account_name(stack: str, suffix: str):
    name = plan.state_account_name(stack, suffix)
    assert 3 <= len(name) <= 24
    assert name.isascii() and name.isalnum() and name == name.lower()
    assert name.endswith(suffix)


# --- under mocks -----------------------------------------------------------------------------


class GitHubNotFound(grpc.RpcError):
    """How a data source's failure reaches the program: a gRPC error from the engine."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return "GET https://api.github.com/orgs/example-org: 404 Not Found []"


@dataclass
class BootstrapMocks(pulumi.runtime.Mocks):
    resources: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    # GitHub's answers: the repository's visibility and the organization's plan.
    visibility: str = "private"
    plan: str | None = "enterprise"  # None: the owner is a user account (GitHub answers 404)
    calls: list[str] = field(default_factory=list)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append((args.typ, args.name, dict(args.inputs)))
        outputs = dict(args.inputs)
        if args.typ == "azuread:index/application:Application":
            outputs["clientId"] = f"client-{args.name}"
        if args.typ == "azuread:index/servicePrincipal:ServicePrincipal":
            outputs["objectId"] = f"object-{args.name}"
        if args.typ == "random:index/randomString:RandomString":
            outputs["result"] = "abc123"
        if args.typ == "azure-native:containerregistry:Registry":
            outputs["loginServer"] = f"{args.inputs['registryName']}.azurecr.io"
        if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            outputs["principalId"] = f"principal-{args.name}"
        if "userAssignedIdentities" in outputs.get("identity", {}):
            # Azure answers a map of identity id -> its ids where the request holds a list.
            ids = outputs["identity"]["userAssignedIdentities"]
            outputs["identity"] = {**outputs["identity"], "userAssignedIdentities": {i: {} for i in ids}}
        return f"id-{args.name}", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": "sub-1", "tenantId": "tenant-1", "objectId": "me", "clientId": "me"}
        self.calls.append(args.token)
        if args.token == "github:index/getRepository:getRepository":
            return {"repoId": 4242, "fullName": args.args["fullName"], "visibility": self.visibility}
        if args.token == "github:index/getOrganization:getOrganization":
            if self.plan is None:
                raise GitHubNotFound()
            return {"plan": self.plan, "name": args.args["name"]}
        return {}


def run_bootstrap(mocks: BootstrapMocks, settings: dict[str, Any] = CONFIG) -> BootstrapMocks:
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack="ci", preview=True)
    config = {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}
    stacks = settings.get("stacks", ["dev", "prod"])
    config[f"{PROJECT}:stackPassphrases"] = json.dumps({s: f"{s}-pass" for s in stacks})
    config[f"{PROJECT}:prodRunnerToken"] = "github-token-value"
    secret = [f"{PROJECT}:stackPassphrases", f"{PROJECT}:prodRunnerToken"]
    pulumi.runtime.set_all_config(config, secret_keys=secret)
    _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "bootstrap" / "__main__.py"))))
    return mocks


@pytest.fixture(scope="module")
def bootstrap() -> BootstrapMocks:
    return run_bootstrap(BootstrapMocks())


def of(mocks: BootstrapMocks, typ: str) -> dict[str, dict[str, Any]]:
    return {name: inputs for t, name, inputs in mocks.resources if t == typ}


def roles_of(mocks: BootstrapMocks, principal: str) -> set[str]:
    assignments = of(mocks, "azure-native:authorization:RoleAssignment").values()
    return {a["roleDefinitionId"].rsplit("/", 1)[1] for a in assignments if a["principalId"] == principal}


def scopes_of(mocks: BootstrapMocks, principal: str) -> set[str]:
    assignments = of(mocks, "azure-native:authorization:RoleAssignment").values()
    return {a["scope"] for a in assignments if a["principalId"] == principal}


def test_preview_identity_only_reads(bootstrap: BootstrapMocks):
    assert roles_of(bootstrap, "object-preview") == {
        plan.READER,
        plan.AKS_CLUSTER_USER,
        plan.AKS_RBAC_READER,
        plan.STORAGE_BLOB_DATA_READER,
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_deploy_identity_is_contributor_and_no_owner(bootstrap: BootstrapMocks, stack: str):
    assert roles_of(bootstrap, f"object-deploy-{stack}") == {
        plan.CONTRIBUTOR,
        plan.RBAC_ADMINISTRATOR,
        plan.STORAGE_BLOB_DATA_CONTRIBUTOR,
        # On its own group only: the role the program would grant it on the cluster and then wait for.
        catalog.AKS_RBAC_CLUSTER_ADMIN,
    }
    admin = of(bootstrap, "azure-native:authorization:RoleAssignment")[f"deploy-{stack}-aks-admin"]
    assert (admin["scope"], admin["principalId"]) == (f"id-stack-{stack}", f"object-deploy-{stack}")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_deploy_identity_may_assign_only_the_roles_the_stack_grants(bootstrap: BootstrapMocks, stack: str):
    assigner = of(bootstrap, "azure-native:authorization:RoleAssignment")[f"deploy-{stack}-role-assigner"]
    assert assigner["conditionVersion"] == "2.0"
    for role_id in (catalog.ACR_PULL, catalog.ACR_PUSH, catalog.AKS_RBAC_CLUSTER_ADMIN):
        assert role_id in assigner["condition"]
    assert plan.CONTRIBUTOR not in assigner["condition"]


def test_devs_deploy_identity_can_write_no_state_but_its_own(bootstrap: BootstrapMocks):
    containers = of(bootstrap, "azure-native:storage:BlobContainer")
    assert {c["containerName"] for c in containers.values()} == {"pulumi-state-dev", "pulumi-state-prod"}
    state = {
        a["principalId"]: a["scope"]
        for n, a in of(bootstrap, "azure-native:authorization:RoleAssignment").items()
        if n.endswith("-state")
    }
    assert state["object-deploy-dev"] == "id-state-dev" and state["object-deploy-prod"] == "id-state-prod"
    assert state["object-preview"] == "id-state-dev"


def test_federated_credentials_use_githubs_issuer_and_the_entra_audience(bootstrap: BootstrapMocks):
    credentials = of(
        bootstrap, "azuread:index/applicationFederatedIdentityCredential:ApplicationFederatedIdentityCredential"
    )
    assert sorted((c["applicationId"], c["subject"]) for c in credentials.values()) == [
        ("id-deploy-dev", "repo:example-org/llamacpp-aks:environment:dev"),
        ("id-deploy-prod", "repo:example-org/llamacpp-aks:environment:prod"),
        ("id-preview", "repo:example-org/llamacpp-aks:environment:dev-preview"),
    ]
    assert {c["issuer"] for c in credentials.values()} == {plan.GITHUB_OIDC_ISSUER}
    assert {tuple(c["audiences"]) for c in credentials.values()} == {(plan.ENTRA_TOKEN_AUDIENCE,)}


def test_state_account_accepts_entra_id_only_and_keeps_versions(bootstrap: BootstrapMocks):
    account = of(bootstrap, "azure-native:storage:StorageAccount")["state"]
    blobs = of(bootstrap, "azure-native:storage:BlobServiceProperties")["state"]
    assert (account["allowSharedKeyAccess"], account["allowBlobPublicAccess"]) == (False, False)
    assert blobs["isVersioningEnabled"] is True


def test_prod_environment_requires_the_configured_reviewers_and_the_others_none(bootstrap: BootstrapMocks):
    environments = of(bootstrap, "github:index/repositoryEnvironment:RepositoryEnvironment")
    assert {name: e.get("reviewers") for name, e in environments.items()} == {
        "dev": None,
        "prod": [{"users": [101], "teams": [7]}],
        "dev-preview": None,
    }


def test_only_main_deploys_to_the_stack_environments_and_any_branch_previews(bootstrap: BootstrapMocks):
    environments = of(bootstrap, "github:index/repositoryEnvironment:RepositoryEnvironment")
    policies = of(bootstrap, "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy")
    assert {p["environment"]: p["branchPattern"] for p in policies.values()} == {"dev": "main", "prod": "main"}
    for name in ("dev", "prod"):
        assert environments[name]["deploymentBranchPolicy"] == {
            "protectedBranches": False,
            "customBranchPolicies": True,
        }
    assert "deploymentBranchPolicy" not in environments["dev-preview"]


def test_each_environment_holds_its_stacks_passphrase_and_the_repository_none(bootstrap: BootstrapMocks):
    secrets = of(bootstrap, "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret")
    assert {s["environment"]: unsecret(s["plaintextValue"]) for s in secrets.values()} == {
        "dev": "dev-pass",
        "prod": "prod-pass",
        "dev-preview": "dev-pass",
    }
    assert not of(bootstrap, "github:index/actionsSecret:ActionsSecret")


def test_repository_variables_name_the_preview_identity_and_the_prod_runner(bootstrap: BootstrapMocks):
    variables = of(bootstrap, "github:index/actionsVariable:ActionsVariable")
    values = {v["variableName"]: v["value"] for v in variables.values()}
    assert values["AZURE_PREVIEW_CLIENT_ID"] == "client-preview"
    assert values["PROD_RUNNER_LABEL"] == "prod-deployer"
    assert not {"AZURE_CLIENT_ID", "DEPLOYER_OBJECT_ID", "PULUMI_STATE_CONTAINER"} & set(values)


def test_each_environment_names_its_own_stacks_identity_and_state(bootstrap: BootstrapMocks):
    variables = of(bootstrap, "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable")
    held = {(v["environment"], v["variableName"]): v["value"] for v in variables.values()}
    assert held == {
        ("dev", "AZURE_CLIENT_ID"): "client-deploy-dev",
        ("dev", "DEPLOYER_OBJECT_ID"): "object-deploy-dev",
        ("dev", "PULUMI_STATE_CONTAINER"): "pulumi-state-dev",
        ("prod", "AZURE_CLIENT_ID"): "client-deploy-prod",
        ("prod", "DEPLOYER_OBJECT_ID"): "object-deploy-prod",
        ("prod", "PULUMI_STATE_CONTAINER"): "pulumi-state-prod",
        # The preview plans dev with dev's deployer (cluster.deployerObjectId) and reads dev's state.
        ("dev-preview", "DEPLOYER_OBJECT_ID"): "object-deploy-dev",
        ("dev-preview", "PULUMI_STATE_CONTAINER"): "pulumi-state-dev",
        # No node group granted before the first deploy: CI keeps the gateway's Reader off it.
        ("dev", "NODE_RESOURCE_GROUP_GRANTED"): "false",
        ("prod", "NODE_RESOURCE_GROUP_GRANTED"): "false",
        ("dev-preview", "NODE_RESOURCE_GROUP_GRANTED"): "false",
        # This bootstrap made the control-plane identities and the deployers' cluster admin roles.
        ("dev", "STACK_ROLES_PREPARED"): "true",
        ("prod", "STACK_ROLES_PREPARED"): "true",
        ("dev-preview", "STACK_ROLES_PREPARED"): "true",
    }


def test_each_stacks_control_plane_identity_holds_its_subnet_role_before_the_first_deploy(bootstrap: BootstrapMocks):
    """Made with the stack's group, in its location, with the program's name and tags (the program
    imports it: any difference would fail the import), and kept when bootstrap is destroyed."""
    identities = {
        name: inputs
        for typ, name, inputs in bootstrap.resources
        if typ == "azure-native:managedidentity:UserAssignedIdentity"
    }
    for stack in ("dev", "prod"):
        made = identities[f"control-plane-{stack}"]
        assert made["resourceName"] == labels.name(stack, "aks-identity")
        assert made["resourceGroupName"] == labels.name(stack, "rg")
        assert made["location"] == "eastus" and made["tags"] == labels.tags(stack, "cluster")
        assert scopes_of(bootstrap, f"principal-control-plane-{stack}") == {f"id-stack-{stack}"}
        (role,) = [
            i["roleDefinitionId"]
            for t, n, i in bootstrap.resources
            if t == "azure-native:authorization:RoleAssignment"
            and i["principalId"] == f"principal-control-plane-{stack}"
        ]
        assert role.endswith(catalog.NETWORK_CONTRIBUTOR)


@pytest.mark.parametrize(
    ("listed", "granted"),
    [
        (labels.node_resource_group("dev", "eastus"), "true"),
        (labels.node_resource_group("dev", "eastus").upper(), "true"),  # Azure's names ignore case
        (labels.node_resource_group("dev", "westus"), "false"),  # another location's group
        ("MC_llamacpp-dev-rg_llamacpp-dev-aks", "false"),  # one that merely starts like it
    ],
)
def test_the_node_group_grant_reaches_dev_and_its_preview_only_when_listed_exactly(listed: str, granted: str):
    """The preview reads dev's value, so it plans the Reader grant exactly when dev's up makes it."""
    m = run_bootstrap(BootstrapMocks(), {**CONFIG, "deployResourceGroups": {"dev": [listed]}})
    held = {
        (v["environment"], v["variableName"]): v["value"]
        for v in of(m, "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable").values()
    }
    assert (
        held[("dev", "NODE_RESOURCE_GROUP_GRANTED")] == held[("dev-preview", "NODE_RESOURCE_GROUP_GRANTED")] == granted
    )
    assert held[("prod", "NODE_RESOURCE_GROUP_GRANTED")] == "false"


def test_prod_runner_group_is_restricted_to_deploy_yml_on_main_and_this_repository(bootstrap: BootstrapMocks):
    (group,) = of(bootstrap, "github:index/actionsRunnerGroup:ActionsRunnerGroup").values()
    assert group["restrictedToWorkflows"] is True
    assert group["selectedWorkflows"] == ["example-org/llamacpp-aks/.github/workflows/deploy.yml@refs/heads/main"]
    assert (group["visibility"], group["selectedRepositoryIds"]) == ("selected", [4242])
    assert group["allowsPublicRepositories"] is False


def test_github_resources_go_to_the_configured_owner(bootstrap: BootstrapMocks):
    providers = of(bootstrap, "pulumi:providers:github")
    assert [p["owner"] for p in providers.values()] == ["example-org"]


# --- what the workflows read -----------------------------------------------------------------


@dataclass(frozen=True)
class JobReads:
    job: str
    # The environments the job runs in (one per matrix entry where it names one by the matrix).
    environments: frozenset[str]
    variables: frozenset[str]
    secrets: frozenset[str]


def workflow_reads() -> list[JobReads]:
    """Every job's `vars.X` and `secrets.X`, with the environments it runs in; GITHUB_TOKEN is GitHub's own."""
    reads = []
    for workflow in sorted(WORKFLOWS.glob("*.yml")):
        document = yaml.safe_load(workflow.read_text())
        for name, job in document["jobs"].items():
            text = json.dumps([document.get("env"), job])
            environment = job.get("environment")
            if isinstance(environment, dict):
                environment = environment["name"]
            if environment and (by_matrix := re.fullmatch(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", environment)):
                matrix = job["strategy"]["matrix"]
                names = set(matrix.get(by_matrix[1], [])) | {i[by_matrix[1]] for i in matrix.get("include", [])}
            else:
                names = {environment} if environment else set()
            reads.append(
                JobReads(
                    job=f"{workflow.name}:{name}",
                    environments=frozenset(names),
                    variables=frozenset(re.findall(r"\bvars\.(\w+)", text)),
                    secrets=frozenset(re.findall(r"\bsecrets\.(\w+)", text)) - {"GITHUB_TOKEN"},
                )
            )
    return reads


def test_every_variable_the_workflows_read_is_one_bootstrap_sets_for_that_job_and_no_other(
    bootstrap: BootstrapMocks,
):
    repository = {v["variableName"] for v in of(bootstrap, "github:index/actionsVariable:ActionsVariable").values()}
    per_environment: dict[str, set[str]] = {}
    for v in of(bootstrap, "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable").values():
        per_environment.setdefault(v["environment"], set()).add(v["variableName"])
    read: set[str] = set()
    for reads in workflow_reads():
        read |= reads.variables
        for environment in reads.environments or {None}:
            available = repository | per_environment.get(environment or "", set())
            missing = sorted(reads.variables - available)
            assert not missing, f"{reads.job} in {environment} reads {missing}, which bootstrap does not set there"
    created = repository | set().union(*per_environment.values())
    assert created <= read, f"created, unread: {sorted(created - read)}"


def test_every_job_runs_in_an_environment_bootstrap_creates(bootstrap: BootstrapMocks):
    created = {
        e["environment"] for e in of(bootstrap, "github:index/repositoryEnvironment:RepositoryEnvironment").values()
    }
    for reads in workflow_reads():
        assert reads.environments <= created, f"{reads.job} runs in {sorted(reads.environments - created)}"


def test_every_secret_a_job_reads_is_in_each_of_its_environments_and_no_other(bootstrap: BootstrapMocks):
    held: dict[str, set[str]] = {}
    for s in of(bootstrap, "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret").values():
        held.setdefault(s["environment"], set()).add(s["secretName"])
    needed: dict[str, set[str]] = {}
    for reads in workflow_reads():
        assert reads.environments or not reads.secrets, (
            f"{reads.job} reads {sorted(reads.secrets)} outside an environment"
        )
        for environment in reads.environments:
            needed.setdefault(environment, set()).update(reads.secrets)
    assert held == needed


def test_ci_doc_names_every_variable_and_environment_bootstrap_creates(bootstrap: BootstrapMocks):
    readme = (ROOT / "docs" / "ci-cd.md").read_text()
    (section,) = re.findall(r"^## CI/CD.*?(?=^## |\Z)", readme, flags=re.MULTILINE | re.DOTALL)
    section += (ROOT / "docs" / "ci-cd-notes.md").read_text()
    variables = {v["variableName"] for v in of(bootstrap, "github:index/actionsVariable:ActionsVariable").values()}
    environments = {
        e["environment"] for e in of(bootstrap, "github:index/repositoryEnvironment:RepositoryEnvironment").values()
    }
    missing = sorted(name for name in variables | environments if f"`{name}`" not in section)
    assert not missing, f"docs/ci-cd.md's CI/CD section and docs/ci-cd-notes.md lack {missing}"


# --- isolation: no deploy identity on the subscription or the state account ------------------


def assignments(mocks: BootstrapMocks) -> dict[str, dict[str, Any]]:
    return of(mocks, "azure-native:authorization:RoleAssignment")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_deploy_identity_holds_a_role_on_the_subscription_or_the_state_group(bootstrap: BootstrapMocks, stack: str):
    scopes = scopes_of(bootstrap, f"object-deploy-{stack}")
    assert "/subscriptions/sub-1" not in scopes
    assert "id-ci" not in scopes  # the state account's group
    assert "id-state" not in scopes  # the account itself: only its own container's data
    other = "prod" if stack == "dev" else "dev"
    assert f"id-stack-{other}" not in scopes and f"id-state-{other}" not in scopes
    assert scopes == {f"id-stack-{stack}", f"id-state-{stack}"}


def test_bootstrap_makes_each_stacks_group_as_the_program_does_and_keeps_it(bootstrap: BootstrapMocks):
    from core import loading

    groups = of(bootstrap, "azure-native:resources:ResourceGroup")
    for stack in ("dev", "prod"):
        group = groups[f"stack-{stack}"]
        assert group["resourceGroupName"] == f"llamacpp-{stack}-rg"
        assert group["location"] == loading.load_stack(ROOT / f"Pulumi.{stack}.yaml").cluster.location
        assert group["tags"] == labels.tags(stack, "cluster")
    assert set(groups) == {"ci", "stack-dev", "stack-prod"}


def test_the_state_group_is_locked_and_denies_shared_keys(bootstrap: BootstrapMocks):
    (lock,) = of(bootstrap, "azure-native:authorization:ManagementLockAtResourceGroupLevel").values()
    assert lock["level"] == "CanNotDelete"
    (policy,) = of(bootstrap, "azure-native:authorization:PolicyAssignment").values()
    assert policy["scope"] == "id-ci"
    assert policy["policyDefinitionId"].endswith(f"/policyDefinitions/{plan.DENY_SHARED_KEY_POLICY}")
    assert policy["parameters"] == {"effect": {"value": "Deny"}}


def test_the_preview_reads_the_cluster_of_devs_group_only(bootstrap: BootstrapMocks):
    by_role = {
        a["roleDefinitionId"].rsplit("/", 1)[1]: a["scope"]
        for a in assignments(bootstrap).values()
        if a["principalId"] == "object-preview"
    }
    assert by_role[plan.AKS_CLUSTER_USER] == by_role[plan.AKS_RBAC_READER] == "id-stack-dev"


def test_operators_read_every_stacks_state_and_cluster_and_write_nothing(bootstrap: BootstrapMocks):
    held = {
        (a["roleDefinitionId"].rsplit("/", 1)[1], a["scope"])
        for a in assignments(bootstrap).values()
        if a["principalId"] == OPERATORS
    }
    assert {a["principalType"] for a in assignments(bootstrap).values() if a["principalId"] == OPERATORS} == {"Group"}
    for stack in ("dev", "prod"):
        assert (plan.STORAGE_BLOB_DATA_READER, f"id-state-{stack}") in held
        assert (plan.AKS_CLUSTER_USER, f"id-stack-{stack}") in held
        assert (plan.AKS_RBAC_READER, f"id-stack-{stack}") in held
    assert {role for role, _ in held} == {
        plan.READER,
        plan.STORAGE_BLOB_DATA_READER,
        plan.AKS_CLUSTER_USER,
        plan.AKS_RBAC_READER,
    }


def test_operator_group_must_be_an_object_id():
    with pytest.raises(ValidationError, match="operatorGroup"):
        plan.BootstrapConfig.model_validate({**CONFIG, "operatorGroup": "llamacpp-operators"})


# --- a fresh subscription: providers and features registered and waited for -------------------


class FakeAz:
    """`az` on a fresh subscription: everything NotRegistered until registered, then Registering
    for `polls` reads before Registered (Azure's own awkward middle state)."""

    def __init__(self, registered: set[str] = frozenset(), polls: int = 2):  # type: ignore[assignment]
        self.calls: list[tuple[str, ...]] = []
        self.left: dict[str, int] = {}
        self.registered = set(registered)
        self.polls = polls

    def state(self, key: str) -> str:
        if key in self.registered:
            return "Registered"
        if key not in self.left:
            return "NotRegistered"
        if self.left[key] == 0:
            self.registered.add(key)
            return "Registered"
        self.left[key] -= 1
        return "Registering"

    def __call__(self, *args: str) -> Any:
        self.calls.append(args)
        namespace = args[args.index("--namespace") + 1]
        key = f"{namespace}/{args[args.index('--name') + 1]}" if "--name" in args else namespace
        if args[1] == "register":
            self.left.setdefault(key, self.polls)
            return {}
        if args[0] == "feature":
            return {"properties": {"state": self.state(key)}}
        return {"registrationState": self.state(key)}


def test_bootstrap_registers_every_provider_and_feature_the_stacks_use_from_preflights_lists():
    from bootstrap import register
    from tools import preflight

    providers, features = register.needed(["dev", "prod"])
    assert len(providers) == len(set(providers)) and set(preflight.PROVIDERS) <= set(providers)
    assert features == [preflight.ENCRYPTION_AT_HOST]
    # What bootstrap registers is what the deploy job's preflight then finds registered.
    az = FakeAz(registered={*providers, *(f"{n}/{f}" for n, f in features)})
    for stack in ("dev", "prod"):
        config = preflight.load_stack(stack)
        listed = lambda *args: [{"namespace": p, "registrationState": "Registered"} for p in providers]  # noqa: E731
        assert preflight.check_providers(config, listed) == []
        assert preflight.check_features(config, az) == []
    # One stack less, one provider less: prod alone has Grafana.
    assert preflight.GRAFANA_PROVIDER not in register.needed(["dev"])[0]


def test_registration_waits_for_the_feature_then_reregisters_its_provider():
    from bootstrap import register

    az, slept = FakeAz(polls=2), []
    register.register(
        ["Microsoft.Network"], [("Microsoft.Compute", "EncryptionAtHost")], az, slept.append, say=lambda _: None
    )
    verbs = [(a[0], a[1]) for a in az.calls]
    feature_done = verbs.index(("provider", "show"))
    assert verbs[:feature_done] == [("feature", "register")] + [("feature", "show")] * 3
    registers = [a[a.index("--namespace") + 1] for a in az.calls if a[:2] == ("provider", "register")]
    assert registers == ["Microsoft.Network", "Microsoft.Compute"]  # Compute again after its feature
    assert az.registered == {"Microsoft.Compute/EncryptionAtHost", "Microsoft.Network", "Microsoft.Compute"}
    assert slept and set(slept) == {register.POLL_SECONDS}


def test_registration_skips_what_is_registered_already():
    from bootstrap import register

    az = FakeAz(registered={"Microsoft.Network"})
    register.register(["Microsoft.Network"], [], az, lambda _: None, say=lambda _: None)
    assert az.calls == [("provider", "show", "--namespace", "Microsoft.Network")]


@pytest.mark.parametrize(("polls", "fails"), [(4, False), (5, True)])
def test_registration_gives_up_with_a_sentence_after_the_timeout(polls: int, fails: bool):
    from bootstrap import register

    az = FakeAz(polls=polls)
    timeout = 4 * register.POLL_SECONDS  # exactly four waits

    def run() -> None:
        register.register(["Microsoft.Dashboard"], [], az, lambda _: None, timeout=timeout, say=lambda _: None)

    if fails:
        with pytest.raises(
            register.RegistrationError,
            match=r"resource provider Microsoft.Dashboard is still Registering after 60 s; run `make bootstrap` again",
        ):
            run()
    else:
        run()


def test_registration_names_a_stack_without_a_stack_file(tmp_path):
    from bootstrap import register

    with pytest.raises(
        register.RegistrationError,
        match=r"stack 'staging' is in bootstrap's stacks but Pulumi.staging.yaml does not exist",
    ):
        register.needed(["dev", "staging"])
    missing = tmp_path / "Pulumi.ci.yaml"
    with pytest.raises(register.RegistrationError, match=r"copy bootstrap/Pulumi\.example\.yaml"):
        register.bootstrap_stacks(missing)
    missing.write_text(f"config:\n  {PROJECT}:stacks: [dev, staging]\n")
    assert register.bootstrap_stacks(missing) == ["dev", "staging"]
    missing.write_text(f"config:\n  {PROJECT}:stacks: dev\n")
    with pytest.raises(register.RegistrationError, match="must be a list"):
        register.bootstrap_stacks(missing)


def test_make_bootstrap_registers_before_the_program_runs():
    makefile = (ROOT / "Makefile").read_text()
    (recipe,) = re.findall(r"^bootstrap:.*?\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert recipe.index("-m bootstrap.register") < recipe.index("pulumi up")


# --- the GitHub plan: refuse with a sentence, or a protection that works there ----------------

PUBLIC_OK = plan.GitHubFacts(visibility="public", organization_plan="free")


@pytest.mark.parametrize(
    ("facts", "settings", "message"),
    [
        # Private on Team: environments yes, required reviewers no.
        (
            plan.GitHubFacts(visibility="private", organization_plan="team"),
            {},
            r"required reviewers for protectedStacks \['prod'\] run in private repositories only on GitHub Enterprise Cloud",
        ),
        (
            plan.GitHubFacts(visibility="internal", organization_plan="team"),
            {},
            "example-org/llamacpp-aks is an internal repository of an organization on GitHub plan 'team'",
        ),
        (plan.GitHubFacts(visibility="private", organization_plan="enterprise-trial"), {}, "GitHub Enterprise Cloud"),
        (
            plan.GitHubFacts(visibility="private", organization_plan="free"),
            {"protectedStacks": [], "prodReviewers": {}},
            "environments in private repositories need GitHub Team",
        ),
        (
            plan.GitHubFacts(visibility="public", organization_plan=None),
            {},
            "prodRunnerGroup='llamacpp-prod' needs an organization",
        ),
        (plan.GitHubFacts(visibility="private", organization_plan=None), {}, "example-org is a user account"),
    ],
)
def test_bootstrap_refuses_a_repository_whose_plan_cannot_hold_the_protection(
    facts: Any, settings: dict[str, Any], message: str
):
    c = plan.BootstrapConfig.model_validate({**CONFIG, **settings})
    refusal = plan.github_refusal(c, facts)
    assert refusal is not None and re.search(message, refusal), refusal
    assert "\n" not in refusal and refusal.endswith(".")


@pytest.mark.parametrize(
    ("facts", "settings"),
    [
        (plan.GitHubFacts(visibility="private", organization_plan="enterprise"), {}),
        (plan.GitHubFacts(visibility="private", organization_plan="ENTERPRISE"), {}),
        (plan.GitHubFacts(visibility="private", organization_plan="business"), {}),
        # The protection that works on Team: no reviewers, the branch rule and the runner group.
        (
            plan.GitHubFacts(visibility="private", organization_plan="team"),
            {"protectedStacks": [], "prodReviewers": {}},
        ),
        (PUBLIC_OK, {}),
    ],
)
def test_bootstrap_accepts_what_the_plan_holds(facts: Any, settings: dict[str, Any]):
    assert plan.github_refusal(plan.BootstrapConfig.model_validate({**CONFIG, **settings}), facts) is None


def test_a_public_repositorys_runner_group_admits_it_and_stays_restricted_to_deploy_yml_on_main():
    mocks = run_bootstrap(BootstrapMocks(visibility="public", plan="free"))
    (group,) = of(mocks, "github:index/actionsRunnerGroup:ActionsRunnerGroup").values()
    assert group["allowsPublicRepositories"] is True
    assert group["restrictedToWorkflows"] is True and group["selectedRepositoryIds"] == [4242]


def test_bootstrap_reads_the_plan_before_it_makes_anything_on_github_and_stops_with_the_sentence():
    mocks = BootstrapMocks(visibility="private", plan="team")
    with pytest.raises(Exception, match="run in private repositories only on GitHub Enterprise Cloud"):
        run_bootstrap(mocks)
    assert "github:index/getOrganization:getOrganization" in mocks.calls
    assert not [t for t, _, _ in mocks.resources if t.startswith("github:index/") and "Provider" not in t]


def test_bootstrap_exports_the_runner_groups_id(bootstrap: BootstrapMocks):
    source = (ROOT / "bootstrap" / "__main__.py").read_text()
    assert 'pulumi.export("prodRunnerGroupId", runner_group.id)' in source


def test_a_user_account_is_refused_with_the_sentence_before_anything_is_made_on_github():
    mocks = BootstrapMocks(visibility="public", plan=None)
    with pytest.raises(Exception, match="example-org is a user account, which has no runner groups"):
        run_bootstrap(mocks)
    assert not [t for t, _, _ in mocks.resources if t.startswith("github:index/") and "Provider" not in t]


# --- prod's runner as code --------------------------------------------------------------------

RUNNER_IMAGE = "example.azurecr.io/gh-runner@sha256:" + "a" * 64


@pytest.fixture(scope="module")
def with_runner() -> BootstrapMocks:
    return run_bootstrap(BootstrapMocks(), {**CONFIG, "prodRunner": {"image": RUNNER_IMAGE}})


def test_prods_runner_is_one_ephemeral_container_app_job_per_queued_job_of_this_repository(with_runner: BootstrapMocks):
    (job,) = of(with_runner, "azure-native:app:Job").values()
    assert job["environmentId"] == "id-runner-env"
    configuration = unsecret(job["configuration"])
    assert configuration["triggerType"] == "Event"
    assert configuration["eventTriggerConfig"]["parallelism"] == 1  # one runner per execution
    (rule,) = configuration["eventTriggerConfig"]["scale"]["rules"]
    assert rule["type"] == "github-runner"
    assert rule["metadata"] == {
        "githubAPIURL": "https://api.github.com",
        "owner": "example-org",
        "runnerScope": "org",
        "repos": "llamacpp-aks",
        "labels": "prod-deployer",
        "noDefaultLabels": "true",
        "targetWorkflowQueueLength": "1",
    }
    assert rule["auth"] == [{"secretRef": "github-pat", "triggerParameter": "personalAccessToken"}]
    (container,) = job["template"]["containers"]
    assert container["image"] == RUNNER_IMAGE
    env = {e["name"]: e.get("value", e.get("secretRef")) for e in container["env"]}
    assert env["RUNNER_GROUP"] == "llamacpp-prod" and env["RUNNER_LABELS"] == "prod-deployer"
    assert env["GITHUB_PAT"] == "github-pat"  # by reference: the token is never a plain value
    assert (
        env["REGISTRATION_TOKEN_API_URL"]
        == "https://api.github.com/orgs/example-org/actions/runners/registration-token"
    )


def test_prods_runner_leaves_through_one_static_address_and_holds_only_acr_pull_on_its_registry(
    with_runner: BootstrapMocks,
):
    (ip,) = of(with_runner, "azure-native:network:PublicIPAddress").values()
    assert ip["publicIPAllocationMethod"] == "Static"
    (vnet,) = of(with_runner, "azure-native:network:VirtualNetwork").values()
    (subnet,) = vnet["subnets"]
    assert subnet["natGateway"] == {"id": "id-runner-nat"}
    assert subnet["delegations"][0]["serviceName"] == "Microsoft.App/environments"
    # Its one role: AcrPull on its own registry, to pull its image.
    assignments = of(with_runner, "azure-native:authorization:RoleAssignment").values()
    held = [(a["roleDefinitionId"].rsplit("/", 1)[1], a["scope"]) for a in assignments if "runner" in a["principalId"]]
    assert held == [(catalog.ACR_PULL, "id-runner-registry")]
    (environment,) = of(with_runner, "azure-native:app:ManagedEnvironment").values()
    assert environment["vnetConfiguration"]["internal"] is False


def test_the_runner_token_reaches_azure_as_a_secret_only(with_runner: BootstrapMocks):
    (job,) = of(with_runner, "azure-native:app:Job").values()
    assert "github-token-value" not in json.dumps(job["template"], default=str)
    assert job["configuration"] != unsecret(job["configuration"])  # the whole block is marked secret


def test_without_prod_runner_no_runner_infrastructure_is_made(bootstrap: BootstrapMocks):
    assert not of(bootstrap, "azure-native:app:Job") and not of(bootstrap, "azure-native:network:NatGateway")


@pytest.mark.parametrize(
    "image",
    ["example.azurecr.io/gh-runner:latest", "example.azurecr.io/gh-runner@sha256:" + "a" * 63, RUNNER_IMAGE.upper()],
)
def test_the_runner_image_must_be_pinned_by_digest(image: str):
    with pytest.raises(ValidationError, match=r"prodRunner\.image"):
        plan.BootstrapConfig.model_validate({**CONFIG, "prodRunner": {"image": image}})


# --- the CI page, followed step by step -------------------------------------------------------


def ci_page_steps() -> list[str]:
    page = (ROOT / "docs" / "ci-cd.md").read_text()
    (section,) = re.findall(r"^### From nothing to the first deploy\n(.*?)(?=^### )", page, flags=re.M | re.S)
    steps = re.split(r"^\d+\. ", section, flags=re.M)[1:]
    assert len(steps) == 9, "the CI page's steps changed: update this test with them"
    return steps


def test_the_ci_page_is_followed_in_order_bootstrap_then_the_first_deploy():
    steps = ci_page_steps()
    order = [
        next(i for i, s in enumerate(steps) if marker in s)
        for marker in (
            "**`az login`**",
            "**`make bootstrap`**",
            "**`make runner-image`**",
            "prodRunnerEgressIp",
            "push to main",
        )
    ]
    assert order == sorted(order)


def test_every_command_file_variable_and_key_the_ci_page_names_exists(bootstrap: BootstrapMocks):
    page = (ROOT / "docs" / "ci-cd.md").read_text()
    text = "".join(ci_page_steps())
    makefile = (ROOT / "Makefile").read_text()
    # `make X`: a target of the Makefile.
    for target in re.findall(r"`make ([a-z-]+)", page):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"make {target}"
    # `python -m X`: a module of the repository.
    for module in re.findall(r"python -m ([\w.]+)", page):
        assert (ROOT / (module.replace(".", "/") + ".py")).exists(), module
    # Files named with a directory: they exist (a <placeholder> is filled in by the reader).
    for path in re.findall(r"`((?:bootstrap|tools|core|docs|\.github)/[\w./-]+)`", page):
        assert (ROOT / path).exists(), path
    # Bootstrap's config keys the steps set: fields of its schema.
    aliases = {f.alias for f in plan.BootstrapConfig.model_fields.values()} | {"stackPassphrases", "prodRunnerToken"}
    for key in ("owner", "repository", "stacks", "prodReviewers", "prodRunnerLabel", "prodRunnerGroup"):
        assert f"`{key}`" in text and key in aliases, key
    for key in re.findall(r"pulumi config set --secret (?:--path ')?(\w+)", text):
        assert key in aliases and key in (ROOT / "bootstrap" / "__main__.py").read_text(), key
    assert "prodRunner.image" in text and "prodRunner" in aliases and "operatorGroup" in aliases
    # Outputs the steps read are ones bootstrap exports.
    source = (ROOT / "bootstrap" / "__main__.py").read_text()
    for output in re.findall(r"pulumi stack output (\w+)", page):
        assert f'pulumi.export("{output}"' in source, output
    # Variables: what the Makefile reads (GITHUB_TOKEN, PULUMI_CONFIG_PASSPHRASE, BOOTSTRAP_STACK,
    # PULUMI_BACKEND_URL) and what bootstrap sets for the workflows.
    created = {v["variableName"] for v in of(bootstrap, "github:index/actionsVariable:ActionsVariable").values()}
    created |= {
        v["variableName"]
        for v in of(bootstrap, "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable").values()
    }
    # The runner image's entrypoint reads the job's environment.
    created |= {*plan.runner_environment(plan.BootstrapConfig.model_validate(CONFIG)), "GITHUB_PAT"}
    # And what that entrypoint itself reads or hands to the runner (image/runner/entrypoint.sh).
    created |= set(re.findall(r"\b([A-Z][A-Z_]{3,})=", (ROOT / "image" / "runner" / "entrypoint.sh").read_text()))
    created |= set(re.findall(r"\$\{([A-Z][A-Z_]{3,})", (ROOT / "image" / "runner" / "entrypoint.sh").read_text()))
    for variable in set(re.findall(r"`([A-Z][A-Z_]{3,})`", page)) - {"STACK_GRANTED_ROLES"}:
        assert variable in created or variable in makefile, variable
    assert catalog.STACK_GRANTED_ROLES  # the one constant the page names, in core/catalog.py
    # The default bootstrap stack and the backend it keeps its own state in.
    assert "BOOTSTRAP_STACK ?= ci" in makefile and "PULUMI_BACKEND_URL ?= file://~" in makefile
    assert "~/.pulumi/stacks/llamacpp-aks-bootstrap/ci.json" in page
    assert yaml.safe_load((ROOT / "bootstrap" / "Pulumi.yaml").read_text())["name"] == PROJECT
    # The reviewer ids the page tells how to find are numbers, as the schema wants.
    assert "--jq .id" in text
    with pytest.raises(ValidationError, match="prodReviewers"):
        plan.BootstrapConfig.model_validate({**CONFIG, "prodReviewers": {"users": ["octocat"]}})


# --- adding a stack is one change -------------------------------------------------------------


@pytest.fixture(scope="module")
def with_staging() -> Iterator[BootstrapMocks]:
    # Staging's stack file would sit beside dev's; here its location is westus3.
    if str(ROOT / "bootstrap") not in sys.path:
        sys.path.insert(0, str(ROOT / "bootstrap"))
    module = importlib.import_module("plan")  # the bootstrap program imports its plan by that name
    original = module.stack_location
    module.stack_location = lambda stack, root: "westus3" if stack == "staging" else original(stack, root)
    try:
        yield run_bootstrap(BootstrapMocks(), {**CONFIG, "stacks": ["dev", "staging", "prod"]})
    finally:
        module.stack_location = original


def test_adding_a_stack_to_stacks_makes_every_piece_of_it(with_staging: BootstrapMocks):
    m = with_staging
    credentials = of(m, "azuread:index/applicationFederatedIdentityCredential:ApplicationFederatedIdentityCredential")
    assert credentials["deploy-staging-environment-staging"]["subject"] == (
        "repo:example-org/llamacpp-aks:environment:staging"
    )
    containers = {c["containerName"] for c in of(m, "azure-native:storage:BlobContainer").values()}
    assert "pulumi-state-staging" in containers
    groups = of(m, "azure-native:resources:ResourceGroup")
    assert groups["stack-staging"]["resourceGroupName"] == "llamacpp-staging-rg"
    assert groups["stack-staging"]["location"] == "westus3"  # its stack file's, not bootstrap's
    assert scopes_of(m, "object-deploy-staging") == {"id-stack-staging", "id-state-staging"}
    environments = of(m, "github:index/repositoryEnvironment:RepositoryEnvironment")
    assert environments["staging"].get("reviewers") is None  # not in protectedStacks
    variables = {
        (v["environment"], v["variableName"]): v["value"]
        for v in of(m, "github:index/actionsEnvironmentVariable:ActionsEnvironmentVariable").values()
    }
    assert variables[("staging", "AZURE_CLIENT_ID")] == "client-deploy-staging"
    assert variables[("staging", "PULUMI_STATE_CONTAINER")] == "pulumi-state-staging"
    secrets = of(m, "github:index/actionsEnvironmentSecret:ActionsEnvironmentSecret")
    assert unsecret(secrets["staging-passphrase"]["plaintextValue"]) == "staging-pass"
    policies = of(m, "github:index/repositoryEnvironmentDeploymentPolicy:RepositoryEnvironmentDeploymentPolicy")
    assert policies["staging-branch"]["branchPattern"] == "main"


def test_adding_a_stack_registers_what_its_config_needs(tmp_path):
    from bootstrap import register
    from tools import preflight

    for stack in ("dev", "prod"):
        (tmp_path / f"Pulumi.{stack}.yaml").write_text((ROOT / f"Pulumi.{stack}.yaml").read_text())
    with pytest.raises(register.RegistrationError, match=r"Pulumi\.staging\.yaml does not exist"):
        register.needed(["dev", "staging"], root=tmp_path)
    (tmp_path / "Pulumi.staging.yaml").write_text((ROOT / "Pulumi.prod.yaml").read_text())
    providers, _ = register.needed(["dev", "staging"], root=tmp_path)
    assert preflight.GRAFANA_PROVIDER in providers  # staging copied prod's Grafana


def test_adding_a_stack_needs_its_two_deploy_jobs():
    # The workflow side of a new stack: deploy.yml has an image and an up job for every stack of
    # the example bootstrap config, in the order of its stacks list.
    example = yaml.safe_load((ROOT / "bootstrap" / "Pulumi.example.yaml").read_text())["config"]
    stacks = example[f"{PROJECT}:stacks"]
    jobs = yaml.safe_load((WORKFLOWS / "deploy.yml").read_text())["jobs"]
    assert set(jobs) == {f"{kind}-{s}" for s in stacks for kind in ("image", "up")} | {"preflight"}
    for before, after in itertools.pairwise(stacks):
        assert f"up-{before}" in jobs[f"up-{after}"]["needs"]


def test_bootstrap_stops_with_a_sentence_for_a_stack_without_a_stack_file():
    with pytest.raises(Exception, match=r"stack 'qa' is in bootstrap's stacks but Pulumi\.qa\.yaml does not exist"):
        run_bootstrap(BootstrapMocks(), {**CONFIG, "stacks": ["dev", "qa", "prod"]})


# --- the runner's image: its own registry, pulled as an identity ------------------------------


def test_prods_runner_pulls_its_image_from_its_own_registry_as_an_identity_with_acr_pull(with_runner: BootstrapMocks):
    (registry,) = of(with_runner, "azure-native:containerregistry:Registry").values()
    assert registry["sku"] == {"name": "Basic"}
    assert registry["adminUserEnabled"] is False and registry["anonymousPullEnabled"] is False
    assert registry["registryName"] == "llamacppcirunnerabc123"
    identities = of(with_runner, "azure-native:managedidentity:UserAssignedIdentity")
    assert [n for n in identities if not n.startswith("control-plane-")] == ["runner-pull"]
    grants = [
        a
        for a in of(with_runner, "azure-native:authorization:RoleAssignment").values()
        if a["scope"] == "id-runner-registry"
    ]
    assert [(g["principalId"], g["roleDefinitionId"].rsplit("/", 1)[1]) for g in grants] == [
        ("principal-runner-pull", catalog.ACR_PULL)
    ]
    (job,) = of(with_runner, "azure-native:app:Job").values()
    assert job["identity"] == {"type": "UserAssigned", "userAssignedIdentities": ["id-runner-pull"]}
    registries = unsecret(job["configuration"])["registries"]
    assert registries == [{"server": "llamacppcirunnerabc123.azurecr.io", "identity": "id-runner-pull"}]


@pytest.fixture(scope="module")
def runner_without_image() -> BootstrapMocks:
    return run_bootstrap(BootstrapMocks(), {**CONFIG, "prodRunner": {}})


def test_without_an_image_bootstrap_makes_the_registry_and_network_but_no_job(runner_without_image: BootstrapMocks):
    m = runner_without_image
    assert len(of(m, "azure-native:containerregistry:Registry")) == 1
    assert len(of(m, "azure-native:network:PublicIPAddress")) == 1  # prodRunnerEgressIp exists already
    assert not of(m, "azure-native:app:Job")  # nothing unpinned ever runs


def test_the_first_bootstrap_says_the_runner_job_waits_for_its_image(monkeypatch: pytest.MonkeyPatch):
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warnings.append(message))
    run_bootstrap(BootstrapMocks(), {**CONFIG, "prodRunner": {}})
    assert [w for w in warnings if "prodRunner.image" in w] == [
        "prodRunner.image is not set, so prod's runner job is not made yet: run make runner-image, set "
        "prodRunner.image to the reference it prints, and run make bootstrap again."
    ]
    warnings.clear()
    run_bootstrap(BootstrapMocks(), {**CONFIG, "prodRunner": {"image": RUNNER_IMAGE}})
    assert not [w for w in warnings if "prodRunner.image" in w]


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=80))
def test_the_runner_registry_name_is_valid_and_keeps_its_suffix(stack: str):
    name = plan.runner_registry_name(stack, "abc123")
    assert re.fullmatch(r"[a-z0-9]{5,50}", name) and name.endswith("abc123")

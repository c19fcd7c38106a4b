"""What CI needs, as plain data: the bootstrap program's config schema, the identities' federated
subjects, the delegation condition and the GitHub environments. Pure (no Pulumi imports),
so it is tested without mocks; bootstrap/__main__.py declares the resources from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from core import labels, loading

# Azure built-in role ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
# Assigns roles, and supports a condition that limits which (unlike User Access Administrator's
# usual use); learn.microsoft.com/azure/role-based-access-control/delegate-role-assignments-portal.
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
# A preview reads the cluster's user kubeconfig (listClusterUserCredential) and its Kubernetes objects.
AKS_CLUSTER_USER = "4abbcc35-e782-43d8-92c5-2d3f1bd2253f"
AKS_RBAC_READER = "7f6c6a51-bcf8-42ba-9220-52d62157d7db"
STORAGE_BLOB_DATA_READER = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1"
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
# Built-in policy "Storage accounts should prevent shared key access" (effects Audit, Deny, Disabled):
# github.com/Azure/azure-policy built-in-policies/policyDefinitions/Storage/StorageAccountAllowSharedKeyAccess_Audit.json.
DENY_SHARED_KEY_POLICY = "8c6a50c6-9ffd-4ae7-986f-5fa6111f9a54"
# What the file backend's `pulumi login` writes into an empty container, and reads from one that
# has it: pulumi/pulumi pkg/backend/diy/meta.go (`pulumiMetaPath` is .pulumi/meta.yaml;
# `ensurePulumiMeta` writes `version: 1` when the bucket is empty, `readPulumiMeta` only reads).
# Bootstrap cannot write it (azure-native's Blob needs shared keys, which the account refuses:
# github.com/pulumi/pulumi-azure-native/issues/2015), so the preview, whose identity cannot write,
# logs in only where the blob exists; a container without it has no stack yet.
BACKEND_META_BLOB = ".pulumi/meta.yaml"
GITHUB_OIDC_ISSUER = "https://token.actions.githubusercontent.com"
ENTRA_TOKEN_AUDIENCE = "api://AzureADTokenExchange"
# What the workflows name: pull-request.yml previews this stack in this environment (with its
# passphrase, as the read-only identity); deploy.yml runs on pushes to this branch.
PREVIEW_STACK = "dev"
PREVIEW_ENVIRONMENT = f"{PREVIEW_STACK}-preview"
DEPLOY_BRANCH = "main"
# The only workflow a restricted runner group lets run (GitHub REST, runner groups:
# "owner/repo/.github/workflows/deploy.yaml@main"; a ref is required).
DEPLOY_WORKFLOW = ".github/workflows/deploy.yml"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class Reviewers(Model):
    # GitHub numeric ids (gh api users/<login> --jq .id; teams: orgs/<org>/teams/<slug>).
    users: list[int] = []
    teams: list[int] = []


class ProdRunner(Model):
    # The runner's image by digest: `make runner-image` builds image/runner/ into the registry
    # bootstrap makes here and prints it; or your own image that registers one ephemeral runner from
    # the variables of `runner_environment` (docs/ci-cd.md, "The prod runner"). Unset: bootstrap
    # makes the registry and the network, and no runner job, so nothing unpinned ever runs.
    image: Annotated[str, Field(pattern=r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$")] | None = None
    # The runner network's address space: a /27 or larger for the Container Apps environment.
    subnet_cidr: Annotated[str, Field(pattern=r"^\d{1,3}(\.\d{1,3}){3}/(1[6-9]|2[0-7])$")] = "10.250.0.0/27"
    cpu: float = 2.0
    memory: str = "4Gi"
    # How many prod jobs may run at once (image and up overlap).
    max_runners: Annotated[int, Field(ge=1, le=10)] = 2


class BootstrapConfig(Model):
    owner: Annotated[str, Field(pattern=r"^[A-Za-z0-9-]+$")]  # GitHub user or organization
    repository: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")]
    location: str = "eastus"
    stacks: list[Annotated[str, Field(pattern=r"^[a-z0-9-]+$")]] = ["dev", "prod"]
    # Stacks whose deploys wait for a reviewer (their GitHub environment's protection rule).
    protected_stacks: list[str] = ["prod"]
    prod_reviewers: Reviewers = Reviewers()
    state_container: Annotated[str, Field(pattern=r"^[a-z0-9](-?[a-z0-9]){2,62}$")] = "pulumi-state"
    # A label of the self-hosted runner prod deploys from (its address in prod's
    # cluster.authorizedIpRanges): the repository variable PROD_RUNNER_LABEL.
    prod_runner_label: Annotated[str, Field(min_length=1)]
    # An organization's runner group for prod's runner, restricted to deploy.yml on main and this
    # repository (GitHub offers runner groups to organizations only); prod's jobs ask for it by name
    # (`runs-on: {group, labels}`), so no runner in another group can take them.
    prod_runner_group: Annotated[str, Field(min_length=1)] = "llamacpp-prod"
    # Prod's runner as code: Azure Container Apps jobs, one ephemeral runner per queued prod job
    # (KEDA's github-runner scaler), egress through one static address; unset: bring your own.
    prod_runner: ProdRunner | None = None
    # Extra resource groups (beside the stack's own, which bootstrap makes) where a stack's deploy
    # identity holds Contributor and the role assigner: the cluster's node resource group once it
    # exists (docs/ci-cd.md, "What the first deploy needs"). Never the subscription.
    deploy_resource_groups: dict[str, list[Annotated[str, Field(pattern=r"^[-\w._()]{1,90}$")]]] = {}
    # An Entra ID group of people (object id) who read each CI-deployed stack's state and cluster.
    operator_group: Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{36}$")] | None = None

    @model_validator(mode="after")
    def _stacks_agree(self) -> Self:
        unknown = sorted(set(self.protected_stacks) - set(self.stacks))
        if unknown:
            raise ValueError(f"protectedStacks {unknown} are not in stacks {self.stacks}; add them to stacks.")
        if PREVIEW_STACK not in self.stacks:
            raise ValueError(
                f"stacks must include {PREVIEW_STACK!r}: pull requests preview it ({PREVIEW_ENVIRONMENT})."
            )
        if self.protected_stacks and not (self.prod_reviewers.users or self.prod_reviewers.teams):
            raise ValueError(
                f"protectedStacks {self.protected_stacks} need at least one reviewer in prodReviewers.users or "
                "prodReviewers.teams: GitHub runs a protection rule without reviewers at once, so those stacks "
                "would deploy unreviewed."
            )
        unknown_groups = sorted(set(self.deploy_resource_groups) - set(self.stacks))
        if unknown_groups:
            raise ValueError(
                f"deployResourceGroups names stacks {unknown_groups} that are not in stacks {self.stacks}; "
                "remove them or add them to stacks."
            )
        owners: dict[str, str] = {stack_resource_group(s).lower(): s for s in self.stacks}
        for stack, groups in sorted(self.deploy_resource_groups.items()):
            for g in groups:
                owner = owners.setdefault(g.lower(), stack)
                if owner != stack:
                    raise ValueError(
                        f"deployResourceGroups.{stack} names {g!r}, which is stack {owner!r}'s group: one stack's "
                        "deploy identity must never reach another's resources; remove it."
                    )
        if PREVIEW_STACK in self.protected_stacks:
            raise ValueError(
                f"protectedStacks must not include {PREVIEW_STACK!r}: every pull request's code runs with its "
                f"passphrase in {PREVIEW_ENVIRONMENT}, which no reviewer guards."
            )
        return self

    @property
    def repo(self) -> str:
        return f"{self.owner}/{self.repository}"


@dataclass(frozen=True, kw_only=True)
class Environment:
    """A GitHub environment a workflow job runs in."""

    # The stack whose PULUMI_CONFIG_PASSPHRASE it holds.
    stack: str
    # Whether a job waits for the configured reviewers.
    reviewed: bool
    # The only branch whose jobs may run in it; None: any branch (pull requests).
    branch: str | None


def environments(c: BootstrapConfig) -> dict[str, Environment]:
    """Environment name -> what it holds: one per stack for deploys, and the preview's, which holds
    the previewed stack's passphrase and lets any branch in (a pull request's head)."""
    deploys = {s: Environment(stack=s, reviewed=s in c.protected_stacks, branch=DEPLOY_BRANCH) for s in c.stacks}
    return {**deploys, PREVIEW_ENVIRONMENT: Environment(stack=PREVIEW_STACK, reviewed=False, branch=None)}


def preview_subjects(c: BootstrapConfig) -> dict[str, str]:
    """Credential name -> OIDC subject: jobs of this repository in the preview environment only."""
    return {f"environment-{PREVIEW_ENVIRONMENT}": f"repo:{c.repo}:environment:{PREVIEW_ENVIRONMENT}"}


def deploy_subjects(c: BootstrapConfig) -> dict[str, dict[str, str]]:
    """Stack -> its deploy identity's credentials (name -> OIDC subject): one identity per stack,
    trusting only that stack's GitHub environment, so dev's job can never get prod's token (and
    prod's is issued only after its reviewers)."""
    return {stack: {f"environment-{stack}": f"repo:{c.repo}:environment:{stack}"} for stack in c.stacks}


def state_container_name(c: BootstrapConfig, stack: str) -> str:
    """Each stack's state lives in a container of its own, which only its deploy identity writes."""
    return f"{c.state_container}-{stack}"[:63]


def stack_resource_group(stack: str) -> str:
    """The stack's resource group (components/cluster.py names it so); bootstrap makes it, so the
    deploy identity's roles have a scope before the first deploy."""
    return labels.name(stack, "rg")


def stack_location(stack: str, root: Path) -> str:
    """Where the stack's resource group lives: its stack file's cluster.location, so the group
    bootstrap makes is the one the program declares (a different location would replace it)."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.exists():
        raise ValueError(
            f"stack {stack!r} is in bootstrap's stacks but {path.name} does not exist; add the stack file or "
            "remove the stack from stacks."
        )
    try:
        return loading.load_stack(path).cluster.location
    except loading.ConfigError as err:
        raise ValueError(f"{path.name}: " + "; ".join(err.problems)) from err


def deploy_scopes(c: BootstrapConfig, stack: str) -> list[str]:
    """Where the stack's deploy identity may create resources and assign the stack's roles, as
    paths under `/subscriptions/<id>`: its own resource group and the extra groups configured for
    it. Never the subscription, never another stack's group, never the state account's."""
    groups = [stack_resource_group(stack), *c.deploy_resource_groups.get(stack, [])]
    return [f"/resourceGroups/{g}" for g in dict.fromkeys(groups)]


def node_group_granted(c: BootstrapConfig, stack: str, location: str) -> bool:
    """Whether deployResourceGroups gives the stack's deploy identity its cluster's node resource
    group. AKS makes that group with the cluster, so it can be listed only after the first deploy;
    until then CI keeps the gateway controller's Reader off it (tools/ci_stack.py)."""
    node_group = labels.node_resource_group(stack, location).lower()
    return node_group in {g.lower() for g in c.deploy_resource_groups.get(stack, [])}


Variable = Literal[
    "AZURE_CLIENT_ID",
    "DEPLOYER_OBJECT_ID",
    "PULUMI_STATE_CONTAINER",
    "NODE_RESOURCE_GROUP_GRANTED",
    "STACK_ROLES_PREPARED",
]


def environment_variables(c: BootstrapConfig) -> dict[str, dict[Variable, str]]:
    """Environment -> variable -> the stack whose value it holds. Per-stack values are environment
    variables (which win over repository variables of the same name), so each job reads its own
    stack's identity, state container and node group grant; the preview environment reads dev's,
    so it plans what dev's up does."""
    per_stack: tuple[Variable, ...] = (
        "AZURE_CLIENT_ID",
        "DEPLOYER_OBJECT_ID",
        "PULUMI_STATE_CONTAINER",
        "NODE_RESOURCE_GROUP_GRANTED",
        "STACK_ROLES_PREPARED",
    )
    out: dict[str, dict[Variable, str]] = {}
    for name, env in environments(c).items():
        names = per_stack if env.branch else tuple(v for v in per_stack if v != "AZURE_CLIENT_ID")
        out[name] = {v: env.stack for v in names}
    return out


# GitHub plans that run required reviewers in private and internal repositories (the API's
# organization `plan.name`): "For access to other deployment protection rules in private or internal
# repositories, you must use GitHub Enterprise" (docs.github.com/actions/reference/environments).
ENTERPRISE_PLANS = frozenset({"enterprise", "business"})


@dataclass(frozen=True, kw_only=True)
class GitHubFacts:
    """What bootstrap reads from GitHub before it makes anything there."""

    visibility: str  # the repository's: public, private or internal
    organization_plan: str | None  # the owner's plan when it is an organization; None: a user account


def github_refusal(c: BootstrapConfig, facts: GitHubFacts) -> str | None:
    """The one sentence why this repository cannot hold what bootstrap makes, or None.

    Public repositories get environments, required reviewers and runner groups on every plan.
    Private or internal ones get environments from GitHub Team (organizations; Pro for users), and
    required reviewers only on GitHub Enterprise Cloud. Runner groups are organizations' only."""
    plan = (facts.organization_plan or "").lower()
    private = facts.visibility.lower() != "public"
    article = "an" if facts.visibility[:1].lower() in "aeiou" else "a"
    where = f"{c.repo} is {article} {facts.visibility} repository of " + (
        f"an organization on GitHub plan {plan!r}" if facts.organization_plan is not None else "a user account"
    )
    if facts.organization_plan is None:
        return (
            f"prodRunnerGroup={c.prod_runner_group!r} needs an organization: {c.owner} is a user account, which has "
            "no runner groups, and prod's jobs run only in that group; move the repository to an organization "
            "(runner groups come with every plan, Free included)."
        )
    if private and facts.organization_plan is not None and plan == "free":
        return (
            f"{where}: environments in private repositories need GitHub Team or Enterprise Cloud; upgrade the "
            "organization or make the repository public."
        )
    if private and c.protected_stacks and plan not in ENTERPRISE_PLANS:
        return (
            f"{where}: required reviewers for protectedStacks {c.protected_stacks} run in private repositories "
            "only on GitHub Enterprise Cloud; make the repository public, move it to an organization on GitHub "
            "Enterprise Cloud, or set protectedStacks: [] (then every push to main deploys those stacks with no "
            'reviewer, guarded by the branch rule and prod\'s runner group only: docs/ci-cd.md, "GitHub plan").'
        )
    return None


def runner_group_admits_public(facts: GitHubFacts) -> bool:
    """A runner group that refuses public repositories gives a public one's jobs no runner: open it
    then; its restriction to deploy.yml on main of this repository still holds."""
    return facts.visibility.lower() == "public"


def runner_scale_rule(c: BootstrapConfig) -> dict[str, str]:
    """KEDA github-runner scaler metadata (keda.sh/docs/latest/scalers/github-runner): one runner
    per queued job of this repository that asks for prod's label, scoped to the organization."""
    return {
        "githubAPIURL": "https://api.github.com",
        "owner": c.owner,
        "runnerScope": "org",
        "repos": c.repository,
        "labels": c.prod_runner_label,
        "noDefaultLabels": "true",
        "targetWorkflowQueueLength": "1",
    }


def runner_environment(c: BootstrapConfig) -> dict[str, str]:
    """What the runner image's entrypoint reads to register one ephemeral runner in prod's group
    (GitHub REST "Create a registration token for an organization"; the runner's config.sh
    --ephemeral --runnergroup --labels). The token itself is the secret GITHUB_PAT."""
    return {
        "REGISTRATION_TOKEN_API_URL": f"https://api.github.com/orgs/{c.owner}/actions/runners/registration-token",
        "GH_URL": f"https://github.com/{c.owner}",
        "RUNNER_GROUP": c.prod_runner_group,
        "RUNNER_LABELS": c.prod_runner_label,
    }


def runner_registry_name(stack_name: str, suffix: str) -> str:
    """The runner registry's name: 5-50 lowercase letters and digits, globally unique by `suffix`
    (kept whole however long the stack's name is)."""
    return labels.compact_name(stack_name, "runner")[: 50 - len(suffix)] + suffix


def runner_group_workflow(c: BootstrapConfig) -> str:
    return f"{c.repo}/{DEPLOY_WORKFLOW}@refs/heads/{DEPLOY_BRANCH}"


def delegation_condition(role_ids: list[str]) -> str:
    """ABAC condition (version 2.0) that lets a principal add and remove assignments of these roles only,
    and add them only for service principals (managed identities and CI's own).

    The forms of learn.microsoft.com/azure/role-based-access-control/delegate-role-assignments-examples
    ("Constrain roles" and "Constrain roles and principal types"): any other role assignment write
    or delete is denied, so CI cannot hand Network Contributor or Reader to a person.
    """
    guids = ", ".join(sorted(role_ids))
    return (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
        f"(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{guids}}} "
        "AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] "
        "ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'})) "
        "AND "
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
        f"(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{guids}}}))"
    )


def state_account_name(stack_name: str, suffix: str) -> str:
    """A storage account name: 3-24 lowercase letters and digits, globally unique by `suffix`."""
    base = "".join(ch for ch in f"pulumistate{stack_name}".lower() if ch in "abcdefghijklmnopqrstuvwxyz0123456789")
    return (base[: 24 - len(suffix)] + suffix)[:24]

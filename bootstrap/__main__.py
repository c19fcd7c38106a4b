"""Bootstrap: what CI needs for llamacpp-aks, created once with `make bootstrap`.

A read-only preview identity (federated with the dev-preview environment) and one deploy identity
per stack (federated with that stack's environment only), each stack's resource group and the
deploy identity's roles on it (never on the subscription), the state storage account in a group no
deploy identity reaches (locked against deletion, shared keys denied by policy) with one container
per stack, the operators' read access, the GitHub environments with their branch rules, reviewers,
passphrases and per-stack variables, the repository variables the workflows read, and
optionally prod's runner group.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pulumi
import pulumi_azure_native as azure
import pulumi_azuread as azuread
import pulumi_github as github
import pulumi_random as random

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo: the roles the stack grants
sys.path.insert(0, str(Path(__file__).resolve().parent))

from plan import (
    AKS_CLUSTER_USER,
    AKS_RBAC_READER,
    CONTRIBUTOR,
    DENY_SHARED_KEY_POLICY,
    ENTRA_TOKEN_AUDIENCE,
    GITHUB_OIDC_ISSUER,
    PREVIEW_STACK,
    RBAC_ADMINISTRATOR,
    READER,
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    STORAGE_BLOB_DATA_READER,
    BootstrapConfig,
    GitHubFacts,
    delegation_condition,
    deploy_scopes,
    deploy_subjects,
    environment_variables,
    environments,
    github_refusal,
    node_group_granted,
    preview_subjects,
    runner_environment,
    runner_group_admits_public,
    runner_group_workflow,
    runner_registry_name,
    runner_scale_rule,
    stack_location,
    stack_resource_group,
    state_account_name,
    state_container_name,
)

from core import labels
from core.catalog import ACR_PULL, AKS_RBAC_CLUSTER_ADMIN, NETWORK_CONTRIBUTOR, STACK_GRANTED_ROLES


def read_config() -> BootstrapConfig:
    cfg = pulumi.Config()
    raw: dict[str, Any] = {}
    for name, field in BootstrapConfig.model_fields.items():
        value = cfg.get(field.alias or name)
        if value is not None:
            try:
                raw[field.alias or name] = json.loads(value)
            except json.JSONDecodeError:
                raw[field.alias or name] = value
    return BootstrapConfig.model_validate(raw)


c = read_config()
passphrases = pulumi.Config().require_secret_object("stackPassphrases")
client = azure.authorization.get_client_config_output()
subscription = pulumi.Output.concat("/subscriptions/", client.subscription_id)


def role(role_id: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(subscription, "/providers/Microsoft.Authorization/roleDefinitions/", role_id)


def grant(name: str, principal: pulumi.Input[str], role_id: str, scope: pulumi.Input[str], **extra: Any) -> None:
    azure.authorization.RoleAssignment(
        name,
        principal_id=principal,
        principal_type="ServicePrincipal",
        role_definition_id=role(role_id),
        scope=scope,
        **extra,
    )


# --- state storage ---------------------------------------------------------------------------
group = azure.resources.ResourceGroup("ci", location=c.location)
suffix = random.RandomString("state-suffix", length=6, special=False, upper=False)
account = azure.storage.StorageAccount(
    "state",
    account_name=suffix.result.apply(lambda s: state_account_name(pulumi.get_stack(), s)),
    resource_group_name=group.name,
    location=c.location,
    kind="StorageV2",
    sku={"name": "Standard_ZRS"},
    allow_blob_public_access=False,
    allow_shared_key_access=False,  # Entra ID only: the workflows log in with AZURE_STORAGE_AUTH_MODE=login
    minimum_tls_version="TLS1_2",
    enable_https_traffic_only=True,
)
azure.storage.BlobServiceProperties(
    "state",
    account_name=account.name,
    resource_group_name=group.name,
    blob_services_name="default",
    is_versioning_enabled=True,  # every state write keeps the previous version
    delete_retention_policy={"enabled": True, "days": 30},
)
# The state account's group holds no role of any deploy identity (they hold data roles on their own
# container only), so no CI job can change the account, list its keys or turn shared keys back on.
# A person with rights there still can; these two stop the accidents:
# - a CanNotDelete lock: the group and the account cannot be deleted until the lock is removed
#   (learn.microsoft.com/azure/azure-resource-manager/management/lock-resources);
# - the built-in policy "Storage accounts should prevent shared key access" with effect Deny:
#   Azure refuses any request that would turn shared keys back on
#   (learn.microsoft.com/azure/storage/common/shared-key-authorization-prevent, "Azure Policy").
azure.authorization.ManagementLockAtResourceGroupLevel(
    "state-lock",
    resource_group_name=group.name,
    level="CanNotDelete",
    notes="Pulumi state of every CI-deployed stack (bootstrap/).",
    opts=pulumi.ResourceOptions(depends_on=[account]),
)
azure.authorization.PolicyAssignment(
    "state-no-shared-key",
    scope=group.id,
    policy_definition_id=f"/providers/Microsoft.Authorization/policyDefinitions/{DENY_SHARED_KEY_POLICY}",
    parameters={"effect": {"value": "Deny"}},
    enforcement_mode="Default",
    display_name="Pulumi state: no shared key access",
)
# One container per stack: a stack's deploy identity writes its own state only.
containers = {
    stack: azure.storage.BlobContainer(
        f"state-{stack}",
        account_name=account.name,
        resource_group_name=group.name,
        container_name=state_container_name(c, stack),
    )
    for stack in c.stacks
}

# --- identities ------------------------------------------------------------------------------


def identity(name: str, subjects: dict[str, str]) -> azuread.ServicePrincipal:
    app = azuread.Application(name, display_name=f"{c.repo} CI {name}")
    for credential, subject in subjects.items():
        azuread.ApplicationFederatedIdentityCredential(
            f"{name}-{credential}",
            application_id=app.id,
            display_name=credential,
            audiences=[ENTRA_TOKEN_AUDIENCE],
            issuer=GITHUB_OIDC_ISSUER,
            subject=subject,
        )
    return azuread.ServicePrincipal(name, client_id=app.client_id)


preview = identity("preview", preview_subjects(c))
deployers = {stack: identity(f"deploy-{stack}", subjects) for stack, subjects in deploy_subjects(c).items()}

# Each stack's resource group, made here so the deploy identity's roles have a scope before the
# first deploy; the program adopts it (components/cluster.py makes a group of this name, location and
# tags). Kept when bootstrap is destroyed: the stack's resources live in it.
ROOT = Path(__file__).resolve().parent.parent
try:
    locations = {stack: stack_location(stack, ROOT) for stack in c.stacks}
except ValueError as err:
    raise pulumi.RunError(str(err)) from None
stack_groups = {
    stack: azure.resources.ResourceGroup(
        f"stack-{stack}",
        resource_group_name=stack_resource_group(stack),
        location=locations[stack],
        tags=labels.tags(stack, "cluster"),
        opts=pulumi.ResourceOptions(retain_on_delete=True),
    )
    for stack in c.stacks
}

# Each stack's control-plane identity, with Network Contributor on its group (which will hold the
# node subnet): granted here, long before the first deploy, so the deploy does not wait up to 10
# minutes for a managed identity's role it cannot probe. The program imports it
# (cluster.adoptControlPlaneIdentity, components/cluster.py: same name, location and tags).
for stack in c.stacks:
    control_plane = azure.managedidentity.UserAssignedIdentity(
        f"control-plane-{stack}",
        resource_name_=labels.name(stack, "aks-identity"),
        resource_group_name=stack_resource_group(stack),
        location=locations[stack],
        tags=labels.tags(stack, "cluster"),
        opts=pulumi.ResourceOptions(retain_on_delete=True, depends_on=[stack_groups[stack]]),
    )
    grant(f"control-plane-{stack}-network", control_plane.principal_id, NETWORK_CONTRIBUTOR, stack_groups[stack].id)


def scope_of(stack: str, path: str) -> pulumi.Output[str]:
    """The stack's own group by its resource (so the assignment waits for it), others by path."""
    if path == f"/resourceGroups/{stack_resource_group(stack)}":
        return stack_groups[stack].id
    return pulumi.Output.concat(subscription, path)


# Preview: read Azure (Reader on the subscription: the preview's invokes and reads, no writes),
# the cluster's user kubeconfig and its objects in dev's group only, and dev's state (the DIY
# backend takes no lock for a preview since github.com/pulumi/pulumi/issues/13948).
grant("preview-reader", preview.object_id, READER, subscription)
grant("preview-aks-user", preview.object_id, AKS_CLUSTER_USER, stack_groups[PREVIEW_STACK].id)
grant("preview-aks-rbac-reader", preview.object_id, AKS_RBAC_READER, stack_groups[PREVIEW_STACK].id)
grant("preview-state", preview.object_id, STORAGE_BLOB_DATA_READER, containers[PREVIEW_STACK].id)
# Deploy, per stack: create and change resources in its own group (and the extra groups
# deployResourceGroups names), assign only the roles the stack grants, write its own state.
# Nothing on the subscription or on the state account's group.
granted = sorted(STACK_GRANTED_ROLES)
for stack, deployer in deployers.items():
    for index, path in enumerate(deploy_scopes(c, stack)):
        scope = scope_of(stack, path)
        suffix = "" if index == 0 else f"-{index}"
        grant(f"deploy-{stack}-contributor{suffix}", deployer.object_id, CONTRIBUTOR, scope)
        grant(
            f"deploy-{stack}-role-assigner{suffix}",
            deployer.object_id,
            RBAC_ADMINISTRATOR,
            scope,
            condition=delegation_condition(granted),
            condition_version="2.0",
        )
    grant(f"deploy-{stack}-state", deployer.object_id, STORAGE_BLOB_DATA_CONTRIBUTOR, containers[stack].id)
    # Cluster admin (Azure RBAC) of the stack's own group, which the program would otherwise grant on
    # the cluster at its first deploy and then wait for (AKS's authorizer lags ARM by up to 5
    # minutes): granted now, it is in effect before the cluster exists (cluster.deployerHoldsClusterAdmin).
    grant(f"deploy-{stack}-aks-admin", deployer.object_id, AKS_RBAC_CLUSTER_ADMIN, stack_groups[stack].id)

# Operators (people): read each stack's state, and its cluster (user kubeconfig, Kubernetes
# objects read-only). Secrets in the state stay encrypted with the stack's passphrase.
if c.operator_group:
    for stack in c.stacks:
        for what, role_id, scope in (
            ("state", STORAGE_BLOB_DATA_READER, containers[stack].id),
            ("reader", READER, stack_groups[stack].id),
            ("aks-user", AKS_CLUSTER_USER, stack_groups[stack].id),
            ("aks-rbac-reader", AKS_RBAC_READER, stack_groups[stack].id),
        ):
            azure.authorization.RoleAssignment(
                f"operators-{stack}-{what}",
                principal_id=c.operator_group,
                principal_type="Group",
                role_definition_id=role(role_id),
                scope=scope,
            )

# --- GitHub ----------------------------------------------------------------------------------
# The token comes from GITHUB_TOKEN; the owner is explicit, so nothing lands in the token user's own repos.
gh = pulumi.ResourceOptions(provider=github.Provider("github", owner=c.owner))
gh_invoke = pulumi.InvokeOptions(provider=gh.provider)
# What the repository's visibility and the owner's plan allow, read before anything is made there
# (an organization's plan needs the token's read:org; a user account has no runner groups).
repository_facts = github.get_repository(full_name=c.repo, opts=gh_invoke)
try:
    organization_plan: str | None = github.get_organization(name=c.owner, summary_only=True, opts=gh_invoke).plan
except Exception:  # GitHub answers 404 for an owner that is a user account, not an organization
    organization_plan = None
facts = GitHubFacts(visibility=repository_facts.visibility, organization_plan=organization_plan)
if refusal := github_refusal(c, facts):
    raise pulumi.RunError(refusal)
repository_variables = {
    "AZURE_PREVIEW_CLIENT_ID": preview.client_id,
    "AZURE_TENANT_ID": client.tenant_id,
    "AZURE_SUBSCRIPTION_ID": client.subscription_id,
    "PULUMI_STATE_ACCOUNT": account.name,
    "PROD_RUNNER_LABEL": c.prod_runner_label,
    "PROD_RUNNER_GROUP": c.prod_runner_group,
}
for variable, value in repository_variables.items():
    github.ActionsVariable(variable.lower(), repository=c.repository, variable_name=variable, value=value, opts=gh)

# No repository-level passphrase: each environment holds its stack's, so prod's reaches prod's jobs only.
for name, env in environments(c).items():
    environment = github.RepositoryEnvironment(
        name,
        repository=c.repository,
        environment=name,
        prevent_self_review=env.reviewed,
        can_admins_bypass=not env.reviewed,
        reviewers=[{"users": c.prod_reviewers.users, "teams": c.prod_reviewers.teams}] if env.reviewed else None,
        deployment_branch_policy={"protected_branches": False, "custom_branch_policies": True} if env.branch else None,
        opts=gh,
    )
    in_env = pulumi.ResourceOptions.merge(gh, pulumi.ResourceOptions(parent=environment))
    if env.branch:
        github.RepositoryEnvironmentDeploymentPolicy(
            f"{name}-branch",
            repository=c.repository,
            environment=environment.environment,
            branch_pattern=env.branch,
            opts=in_env,
        )
    # Per stack: its deploy identity, its object id (tools/ci_stack.py makes it
    # cluster.deployerObjectId, so previews plan no change to the deployer's role assignments) and
    # its state container. An environment variable wins over a repository variable of that name.
    values: dict[str, pulumi.Input[str]] = {
        "AZURE_CLIENT_ID": deployers[env.stack].client_id,
        "DEPLOYER_OBJECT_ID": deployers[env.stack].object_id,
        "PULUMI_STATE_CONTAINER": state_container_name(c, env.stack),
        "NODE_RESOURCE_GROUP_GRANTED": str(node_group_granted(c, env.stack, locations[env.stack])).lower(),
        # This bootstrap made the control-plane identity and the deployer's cluster admin role, so
        # CI may import the one and rely on the other (tools/ci_stack.py); a bootstrap from before
        # them sets no such variable, and the program keeps granting and waiting itself.
        "STACK_ROLES_PREPARED": "true",
    }
    for variable in environment_variables(c)[name]:
        github.ActionsEnvironmentVariable(
            f"{name}-{variable.lower()}",
            repository=c.repository,
            environment=environment.environment,
            variable_name=variable,
            value=values[variable],
            opts=in_env,
        )
    github.ActionsEnvironmentSecret(
        f"{name}-passphrase",
        repository=c.repository,
        environment=environment.environment,
        secret_name="PULUMI_CONFIG_PASSPHRASE",
        plaintext_value=passphrases.apply(lambda p, s=env.stack: p[s]),
        opts=in_env,
    )

# Prod's runner group: only deploy.yml on main, from this repository, may use its runners.
runner_group = github.ActionsRunnerGroup(
    "prod-runners",
    name=c.prod_runner_group,
    visibility="selected",
    selected_repository_ids=[repository_facts.repo_id],
    restricted_to_workflows=True,
    selected_workflows=[runner_group_workflow(c)],
    allows_public_repositories=runner_group_admits_public(facts),
    opts=gh,
)
pulumi.export("prodRunnerGroupId", runner_group.id)

# --- prod's runner: Azure Container Apps jobs, one ephemeral runner per queued prod job ----------
# Why Container Apps jobs and not Actions Runner Controller: ARC needs a Kubernetes cluster to run
# in, and the only ones here are the stacks' own, which the runner deploys (prod's runner cannot
# live in the cluster its first `up` creates); a Container Apps job is a managed event-driven
# engine with KEDA's github-runner scaler built in, scales to zero between the two prod runs a
# deploy needs (image, then up), and starts a fresh container per job
# (learn.microsoft.com/azure/container-apps/tutorial-ci-cd-runners-jobs). Its egress goes through
# one NAT gateway address, which prod's cluster.authorizedIpRanges lists. It holds no Azure role
# but AcrPull on its own registry: prod's jobs sign in with their own OIDC token.
if c.prod_runner:
    r = c.prod_runner
    runner_group_rg = azure.resources.ResourceGroup("runner", location=c.location)
    egress_ip = azure.network.PublicIPAddress(
        "runner-egress",
        resource_group_name=runner_group_rg.name,
        location=c.location,
        sku={"name": "Standard"},
        public_ip_allocation_method="Static",
    )
    nat = azure.network.NatGateway(
        "runner-nat",
        resource_group_name=runner_group_rg.name,
        location=c.location,
        sku={"name": "Standard"},
        public_ip_addresses=[{"id": egress_ip.id}],
    )
    vnet = azure.network.VirtualNetwork(
        "runner-vnet",
        resource_group_name=runner_group_rg.name,
        location=c.location,
        address_space={"address_prefixes": [r.subnet_cidr]},
        subnets=[
            {
                "name": "runners",
                "address_prefix": r.subnet_cidr,
                "delegations": [{"name": "aca", "service_name": "Microsoft.App/environments"}],
                "nat_gateway": {"id": nat.id},
            }
        ],
    )
    runner_environment_ = azure.app.ManagedEnvironment(
        "runner-env",
        resource_group_name=runner_group_rg.name,
        location=c.location,
        workload_profiles=[{"name": "Consumption", "workload_profile_type": "Consumption"}],
        vnet_configuration={
            "infrastructure_subnet_id": vnet.subnets.apply(lambda subnets: (subnets or [{}])[0].get("id", "")),
            "internal": False,
        },
    )
    # The runner's image lives in a registry of its own, where `make runner-image` builds it; the job
    # pulls it as a user-assigned identity that holds AcrPull there and nothing else (a job without
    # registry credentials pulls public images only).
    registry_suffix = random.RandomString("runner-registry-suffix", length=6, special=False, upper=False)
    registry = azure.containerregistry.Registry(
        "runner-registry",
        registry_name=registry_suffix.result.apply(lambda s: runner_registry_name(pulumi.get_stack(), s)),
        resource_group_name=runner_group_rg.name,
        location=c.location,
        sku={"name": "Basic"},
        admin_user_enabled=False,
        anonymous_pull_enabled=False,
    )
    puller = azure.managedidentity.UserAssignedIdentity(
        "runner-pull", resource_group_name=runner_group_rg.name, location=c.location
    )
    pull_grant = azure.authorization.RoleAssignment(
        "runner-acr-pull",
        principal_id=puller.principal_id,
        principal_type="ServicePrincipal",
        role_definition_id=role(ACR_PULL),
        scope=registry.id,
    )
    pulumi.export("prodRunnerRegistry", registry.login_server)
    pulumi.export("prodRunnerEgressIp", egress_ip.ip_address)
    if r.image is None:
        pulumi.log.warn(
            "prodRunner.image is not set, so prod's runner job is not made yet: run make runner-image, set "
            "prodRunner.image to the reference it prints, and run make bootstrap again."
        )
    else:
        token = pulumi.Config().require_secret("prodRunnerToken")
        azure.app.Job(
            "prod-runner",
            resource_group_name=runner_group_rg.name,
            location=c.location,
            environment_id=runner_environment_.id,
            workload_profile_name="Consumption",
            identity={"type": "UserAssigned", "user_assigned_identities": [puller.id]},
            configuration={
                "registries": [{"server": registry.login_server, "identity": puller.id}],
                "trigger_type": "Event",
                "replica_timeout": 3 * 3600,  # prod's up and its role waits, with room
                "replica_retry_limit": 0,
                "secrets": [{"name": "github-pat", "value": token}],
                "event_trigger_config": {
                    "parallelism": 1,
                    "replica_completion_count": 1,
                    "scale": {
                        "min_executions": 0,
                        "max_executions": r.max_runners,
                        "polling_interval": 30,
                        "rules": [
                            {
                                "name": "github-runner",
                                "type": "github-runner",
                                "metadata": runner_scale_rule(c),
                                "auth": [{"secret_ref": "github-pat", "trigger_parameter": "personalAccessToken"}],
                            }
                        ],
                    },
                },
            },
            template={
                "containers": [
                    {
                        "name": "runner",
                        "image": r.image,
                        "resources": {"cpu": r.cpu, "memory": r.memory},
                        "env": [
                            {"name": "GITHUB_PAT", "secret_ref": "github-pat"},
                            *({"name": k, "value": v} for k, v in runner_environment(c).items()),
                        ],
                    }
                ]
            },
            # A role assignment takes effect after a while: the first execution must find AcrPull there.
            opts=pulumi.ResourceOptions(depends_on=[pull_grant]),
        )

pulumi.export("previewClientId", preview.client_id)
pulumi.export("deployClientIds", {stack: d.client_id for stack, d in deployers.items()})
pulumi.export("deployerObjectIds", {stack: d.object_id for stack, d in deployers.items()})
pulumi.export("stateAccount", account.name)
pulumi.export("stateContainers", {stack: state_container_name(c, stack) for stack in c.stacks})
pulumi.export("stateResourceGroup", group.name)
pulumi.export("stackResourceGroups", {stack: g.name for stack, g in stack_groups.items()})
# The group AKS makes for each stack's nodes at its first deploy: add it to deployResourceGroups
# then, and run bootstrap again (docs/ci-cd.md, "What the first deploy needs").
pulumi.export("nodeResourceGroups", {stack: labels.node_resource_group(stack, locations[stack]) for stack in c.stacks})

"""Bootstrap: what CI needs for llamacpp-aks, created once with `make bootstrap`.

A read-only preview identity (federated with the dev-preview environment) and a deploy identity
(federated with the stacks' environments), their roles, the state storage account and container,
the GitHub environments with their branch rules, reviewers and passphrases, and the repository
variables the workflows read.
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
    ENTRA_TOKEN_AUDIENCE,
    GITHUB_OIDC_ISSUER,
    RBAC_ADMINISTRATOR,
    READER,
    STORAGE_BLOB_DATA_CONTRIBUTOR,
    STORAGE_BLOB_DATA_READER,
    BootstrapConfig,
    delegation_condition,
    deploy_subjects,
    environments,
    preview_subjects,
    state_account_name,
)

from core.catalog import STACK_GRANTED_ROLES


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
container = azure.storage.BlobContainer(
    "state", account_name=account.name, resource_group_name=group.name, container_name=c.state_container
)

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
deploy = identity("deploy", deploy_subjects(c))

# Preview: read Azure, the cluster's user kubeconfig and its objects, and the state (the DIY
# backend takes no lock for a preview since pulumi/pulumi#13948). On the subscription: the dev
# resource group and cluster are made by dev's first deploy, after this, and an assignment needs
# its scope to exist (README, "CI/CD", says how to narrow them by hand afterwards).
grant("preview-reader", preview.object_id, READER, subscription)
grant("preview-aks-user", preview.object_id, AKS_CLUSTER_USER, subscription)
grant("preview-aks-rbac-reader", preview.object_id, AKS_RBAC_READER, subscription)
grant("preview-state", preview.object_id, STORAGE_BLOB_DATA_READER, container.id)
# Deploy: create and change resources, write the state, and assign only the roles the stack grants.
granted = sorted(STACK_GRANTED_ROLES)
grant("deploy-contributor", deploy.object_id, CONTRIBUTOR, subscription)
grant(
    "deploy-role-assigner",
    deploy.object_id,
    RBAC_ADMINISTRATOR,
    subscription,
    condition=delegation_condition(granted),
    condition_version="2.0",
)
grant("deploy-state", deploy.object_id, STORAGE_BLOB_DATA_CONTRIBUTOR, container.id)

# --- GitHub ----------------------------------------------------------------------------------
# The token comes from GITHUB_TOKEN; the owner is explicit, so nothing lands in the token user's own repos.
gh = pulumi.ResourceOptions(provider=github.Provider("github", owner=c.owner))
repository_variables = {
    "AZURE_CLIENT_ID": deploy.client_id,
    "AZURE_PREVIEW_CLIENT_ID": preview.client_id,
    "AZURE_TENANT_ID": client.tenant_id,
    "AZURE_SUBSCRIPTION_ID": client.subscription_id,
    "PULUMI_STATE_ACCOUNT": account.name,
    "PULUMI_STATE_CONTAINER": container.name,
    "PROD_RUNNER_LABEL": c.prod_runner_label,
    # Read by tools/ci_stack.py as cluster.deployerObjectId: previews plan no change to the deploy
    # identity's role assignments (which they would, keyed to the read-only identity, without it).
    "DEPLOYER_OBJECT_ID": deploy.object_id,
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
    github.ActionsEnvironmentSecret(
        f"{name}-passphrase",
        repository=c.repository,
        environment=environment.environment,
        secret_name="PULUMI_CONFIG_PASSPHRASE",
        plaintext_value=passphrases.apply(lambda p, s=env.stack: p[s]),
        opts=in_env,
    )

pulumi.export("previewClientId", preview.client_id)
pulumi.export("deployClientId", deploy.client_id)
pulumi.export("deployerObjectId", deploy.object_id)
pulumi.export("stateAccount", account.name)
pulumi.export("stateContainer", container.name)

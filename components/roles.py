"""Azure built-in roles the stack grants, and one way to grant them.

Role ids: learn.microsoft.com/azure/role-based-access-control/built-in-roles.
"""

from __future__ import annotations

import pulumi
import pulumi_azure_native as azure

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ACR_PUSH = "8311e382-0749-4cb8-b61a-304f252e45ec"
AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"
MONITORING_DATA_READER = "b0d8363b-8ddd-447d-831f-62ca05bff136"
GRAFANA_ADMIN = "22926164-76b3-42b3-bc55-97df8dab3e41"


def role_definition(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", role
    )


def grant(
    name: str,
    *,
    role: str,
    principal_id: pulumi.Input[str],
    scope: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
    parent: pulumi.Resource,
    service_principal: bool = False,
) -> azure.authorization.RoleAssignment:
    """Gives `principal_id` the built-in `role` on `scope`. A managed identity is a service
    principal; the deployer may be a user or a service principal, so its type is left open."""
    return azure.authorization.RoleAssignment(
        name,
        principal_id=principal_id,
        principal_type="ServicePrincipal" if service_principal else None,
        role_definition_id=role_definition(subscription_id, role),
        scope=scope,
        opts=pulumi.ResourceOptions(parent=parent),
    )

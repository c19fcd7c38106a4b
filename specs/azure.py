"""Azure inputs more than one component uses: role assignments, and the wait for them to take effect."""

from __future__ import annotations

from typing import Any

import pulumi

from core.identity import PrincipalType


def role_definition(subscription_id: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    return pulumi.Output.concat(
        "/subscriptions/", subscription_id, "/providers/Microsoft.Authorization/roleDefinitions/", role
    )


def role_assignment(
    *,
    role: str,
    principal_id: pulumi.Input[str],
    scope: pulumi.Input[str],
    subscription_id: pulumi.Input[str],
    principal_type: pulumi.Input[PrincipalType],
) -> dict[str, Any]:
    """Inputs of a RoleAssignment giving `principal_id` the built-in `role` on `scope`.

    The type is always stated: left out, azure-native sends `User`, which ARM refuses for a
    service principal. A managed identity is a `ServicePrincipal`.
    """
    return {
        "principal_id": principal_id,
        "principal_type": principal_type,
        "role_definition_id": role_definition(subscription_id, role),
        "scope": scope,
    }


def role_propagation_wait(seconds: int, assignment_id: pulumi.Input[str]) -> dict[str, Any]:
    """Inputs of a pulumiverse-time Sleep that holds back whatever uses a new role assignment.

    Azure RBAC changes take up to 10 minutes to take effect
    (learn.microsoft.com/azure/role-based-access-control/troubleshooting, "Role assignment changes
    are not being detected"), and neither the Kubernetes nor the Grafana provider retries a 403.
    The assignment's id is the trigger: a new assignment (another deployer) waits again.
    """
    return {"create_duration": f"{seconds}s", "triggers": {"roleAssignmentId": assignment_id}}

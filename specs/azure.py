"""Azure inputs more than one component uses: role assignments."""

from __future__ import annotations

from typing import Any, Literal

import pulumi

PrincipalType = Literal["ServicePrincipal", "User"]


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
    principal_type: pulumi.Input[PrincipalType] | None,
) -> dict[str, Any]:
    """Inputs of a RoleAssignment giving `principal_id` the built-in `role` on `scope`.

    A managed identity is a `ServicePrincipal`; `None` leaves the type to the SDK.
    """
    return {
        "principal_id": principal_id,
        "principal_type": principal_type,
        "role_definition_id": role_definition(subscription_id, role),
        "scope": scope,
    }

"""Who runs `pulumi up`: a person or a service principal, read from the ARM token it signs in with.

Role assignments must name the principal's type: ARM rejects a service principal assigned as
`User` (UnmatchedPrincipalType), and azure-native sends `User` when the type is left out
(`authorization/role_assignment.py` in pulumi-azure-native 3.29).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Literal

PrincipalType = Literal["User", "ServicePrincipal"]


def principal_type_from_token(token: str) -> PrincipalType | None:
    """`User` for a token issued to a person, `ServicePrincipal` for one issued to an application
    or a managed identity (client secret, certificate, OIDC federation, MSI); None if `token` is
    not a JWT.

    Entra ID puts `scp` (delegated scopes) only in tokens issued for a signed-in user, and marks
    app-only tokens with `idtyp: app` when it sets that claim at all
    (learn.microsoft.com/entra/identity-platform/access-token-claims-reference).
    """
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(claims, dict):
        return None
    if claims.get("idtyp") == "app":
        return "ServicePrincipal"
    return "User" if "scp" in claims else "ServicePrincipal"


def deployer_principal_type(configured: Literal["auto", "User", "ServicePrincipal"], token: str) -> PrincipalType:
    """The configured type, or with `auto` the one the deployer's token shows."""
    if configured == "User" or configured == "ServicePrincipal":
        return configured
    found = principal_type_from_token(token)
    if found is None:
        raise ValueError(
            "cluster.deployerPrincipalType=auto cannot tell from the Azure token whether the deployer "
            "is a person or a service principal (the token is not a JWT); set "
            "cluster.deployerPrincipalType to User or ServicePrincipal."
        )
    return found

"""Checkov skips for Azure resources, each with its reason, in one table by resource type.

Kubernetes objects carry their skips as `checkov.io/skipN` annotations; Azure resources have no
such place, so the render writes these into the ARM template's resource `metadata`, where checkov
reads them. A skip that holds for some settings only has a condition on the resource's inputs (as
the engine has them), so it is never written for a resource that passes the check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

Inputs = Mapping[str, Any]


def always(inputs: Inputs) -> bool:
    return True


@dataclass(frozen=True)
class Skip:
    check_id: str
    reason: str  # one line
    applies: Callable[[Inputs], bool] = always


def open_api_server(aks: Inputs) -> bool:
    """The cluster's API server takes calls from any address: no authorized ranges, not private."""
    access = aks.get("apiServerAccessProfile") or {}
    return not access.get("authorizedIPRanges") and not access.get("enablePrivateCluster")


# Pulumi resource type -> its skips, in the order the template lists them.
AZURE_SKIPS: Mapping[str, tuple[Skip, ...]] = MappingProxyType(
    {
        "azure-native:containerservice:ManagedCluster": (
            Skip(
                "CKV_AZURE_172",
                "the Key Vault secrets CSI driver is not installed: secrets come from Pulumi secret config",
            ),
            Skip(
                "CKV_AZURE_6",
                "no authorized ranges set (dev only: the prod stack must list them); Entra ID and Azure RBAC still guard the API",
                open_api_server,
            ),
        ),
        "azure-native:containerregistry:Registry": (
            Skip(
                "CKV_AZURE_166", "quarantine holds every pushed image until a scanner marks it verified; none runs here"
            ),
            Skip(
                "CKV_AZURE_233",
                "zone redundancy needs the Premium SKU and cluster.zones; this stack runs without them to save cost",
                lambda acr: acr.get("zoneRedundancy") != "Enabled",
            ),
            Skip(
                "CKV_AZURE_139",
                "pulumi up pushes from outside the VNet; set registry.publicNetworkAccess=false to close it",
                lambda acr: acr.get("publicNetworkAccess") == "Enabled",
            ),
        ),
        "azure-native:network:WebApplicationFirewallPolicy": (
            Skip(
                "CKV_AZURE_135",
                "checkov knows only OWASP 3.1/3.2; the gateway takes only DRS 2.1, whose rule 944240 (Log4j) stays on",
            ),
        ),
    }
)


def skips_for(resource_type: str, inputs: Inputs) -> dict[str, str]:
    """check id -> reason of each skip that applies to a declared resource of this type."""
    return {s.check_id: s.reason for s in AZURE_SKIPS.get(resource_type, ()) if s.applies(inputs)}

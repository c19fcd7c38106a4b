"""CI's own settings of a stack, written into the checked-out stack file before Pulumi runs and
never committed: how kubelogin signs in and whose object id the deployer's roles go to.

- `cluster.kubeloginMode: workloadidentity`: in a GitHub Actions job kubelogin then asks GitHub's
  ID-token endpoint for every new AKS token itself (Azure/kubelogin
  pkg/internal/token/provider.go, `WorkloadIdentityLogin` with ACTIONS_ID_TOKEN_REQUEST_*), instead
  of the Azure CLI's login, which has expired by the time the cluster exists (github.com/Azure/azure-cli/issues/28708).
- `cluster.adoptResourceGroup: true`: bootstrap made the stack's resource group (the deploy
  identity's roles are scoped to it), so the program imports it instead of creating it; azure-native
  refuses to create a resource that exists.
- `cluster.adoptControlPlaneIdentity` and `cluster.deployerHoldsClusterAdmin`: true where
  bootstrap says it prepared them (the STACK_ROLES_PREPARED variable, "true"); a bootstrap from
  before them sets none, and the program keeps granting and waiting itself.
- `cluster.adoptControlPlaneIdentity`: bootstrap made the cluster's control-plane identity
  and its Network Contributor on the stack's group too, so the program imports it and the first
  deploy skips the fixed wait for that role (a managed identity's role cannot be probed).
- `cluster.deployerHoldsClusterAdmin`: bootstrap made the deploy identity cluster admin
  (Azure RBAC) of its stack's group, so the program grants no admin role on the cluster and waits
  for none (AKS's authorizer reads a new assignment up to 5 minutes late).
- `cluster.deployerObjectId` and `deployerPrincipalType: ServicePrincipal`: the deploy identity
  (bootstrap's `deployerObjectId` output, the DEPLOYER_OBJECT_ID variable), so a preview by the
  read-only identity plans no change to the deployer's role assignments.
- `ingress.nodeResourceGroupReader`: true only where bootstrap granted the deploy identity the
  cluster's node resource group (the NODE_RESOURCE_GROUP_GRANTED variable, "true"). That group
  exists only after the first deploy, so until bootstrap's next run the gateway's controller gets
  Reader on the cluster's own group alone, and the first deploy does not stop on a 403. Preview
  and up read the same variable, so the preview plans what the up does.

pulumi/actions' `config-map` cannot do this: it sets keys without `--path`, so a nested key would
become a top-level key named `cluster.kubeloginMode`.

    python -m tools.ci_stack --stack dev [--deployer-object-id GUID]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from core.config import PROJECT

ROOT = Path(__file__).resolve().parent.parent


def ci_settings(deployer_object_id: str | None, roles_prepared: bool = False) -> dict[str, Any]:
    """The `cluster` keys CI sets (camelCase, as in the stack files)."""
    settings: dict[str, Any] = {
        "kubeloginMode": "workloadidentity",
        "adoptResourceGroup": True,
        "adoptControlPlaneIdentity": roles_prepared,
        "deployerHoldsClusterAdmin": roles_prepared,
    }
    if deployer_object_id:
        settings |= {"deployerObjectId": deployer_object_id, "deployerPrincipalType": "ServicePrincipal"}
    return settings


def apply(
    document: dict[str, Any],
    deployer_object_id: str | None,
    node_group_granted: bool = False,
    roles_prepared: bool = False,
) -> dict[str, Any]:
    """The stack file's document with CI's `cluster` and `ingress` keys merged in; everything else untouched."""
    config = dict(document.get("config") or {})
    blocks = {
        "cluster": ci_settings(deployer_object_id, roles_prepared),
        "ingress": {"nodeResourceGroupReader": node_group_granted},
    }
    for block, settings in blocks.items():
        key = f"{PROJECT}:{block}"
        config[key] = {**(config.get(key) or {}), **settings}
    return {**document, "config": config}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True)
    parser.add_argument("--deployer-object-id", default="")
    parser.add_argument(
        "--node-resource-group-granted",
        default="",
        help='"true" where bootstrap granted the deploy identity the node resource group; anything else: not yet',
    )
    parser.add_argument(
        "--stack-roles-prepared",
        default="",
        help='"true" where bootstrap made the control-plane identity and the deployer\'s cluster admin role',
    )
    args = parser.parse_args(argv)
    path = ROOT / f"Pulumi.{args.stack}.yaml"
    document = yaml.safe_load(path.read_text()) or {}
    granted = args.node_resource_group_granted.strip() == "true"
    prepared = args.stack_roles_prepared.strip() == "true"
    path.write_text(
        yaml.safe_dump(apply(document, args.deployer_object_id or None, granted, prepared), sort_keys=False)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

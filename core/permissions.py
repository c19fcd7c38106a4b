"""Whether the deployer's roles are in effect yet, by asking Azure rather than waiting a fixed time.

ARM answers `GET {scope}/providers/Microsoft.Authorization/permissions` with the caller's effective
permissions on that scope: a list of `{actions, notActions, dataActions, notDataActions}`, one per
role that reaches it (learn.microsoft.com/rest/api/authorization/permissions/list-for-resource,
api-version 2022-04-01). A new role assignment can take up to 10 minutes to take effect
(learn.microsoft.com/azure/role-based-access-control/troubleshooting, "Role assignment changes are
not being detected"), and is often in effect in seconds: polling until the permission shows ends
the wait as soon as Azure grants it, bounded by `cluster.rolePropagationSeconds`. Pure: the poller
takes its probe, clock and sleep as arguments; tools/role_ready.py runs it against ARM.
"""

from __future__ import annotations

import fnmatch
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PERMISSIONS_API_VERSION = "2022-04-01"
# Seconds between two probes: ARM's read limit is far above one call every 10 s
# (learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling).
POLL_INTERVAL_SECONDS = 10


@dataclass(frozen=True)
class Needed:
    """An operation the deployer's new role must allow, on the scope it was granted on."""

    operation: str  # e.g. Microsoft.ContainerRegistry/registries/push/write
    data: bool = False  # a data action (dataActions/notDataActions) rather than a control-plane action
    # Seconds the service behind the scope may still refuse after ARM grants the role, waited once
    # ARM's answer is yes (the service reads role assignments on its own schedule).
    settle_s: int = 0


# What each deployer role is waited for by (the built-in roles' definitions,
# learn.microsoft.com/azure/role-based-access-control/built-in-roles/containers).
ACR_PUSH = Needed("Microsoft.ContainerRegistry/registries/push/write")
# ACR Tasks' `az acr build` uploads the context and schedules a run: Contributor on the registry
# (or above it) holds these; the task itself pushes with the registry's own credentials
# (learn.microsoft.com/azure/container-registry/container-registry-tasks-overview).
ACR_TASKS_RUN = Needed("Microsoft.ContainerRegistry/registries/scheduleRun/action")
# Azure Kubernetes Service RBAC Cluster Admin: dataActions Microsoft.ContainerService/managedClusters/*.
# The cluster's own authorizer lags ARM: "New role assignments can take up to 5 minutes to propagate
# and be updated by the authorization server" (learn.microsoft.com/azure/aks/manage-azure-rbac), and
# the Kubernetes provider does not retry a 403 on its first object.
AKS_RBAC_SETTLE_SECONDS = 300
AKS_ADMIN = Needed(
    "Microsoft.ContainerService/managedClusters/namespaces/write", data=True, settle_s=AKS_RBAC_SETTLE_SECONDS
)


def _matches(patterns: Iterable[str], operation: str) -> bool:
    """Azure's operation patterns are case-insensitive and `*` is their only wildcard."""
    op = operation.lower()
    return any(fnmatch.fnmatchcase(op, str(p).lower().replace("[", "[[]")) for p in patterns)


def allows(permissions: Iterable[Mapping[str, Any]], needed: Needed) -> bool:
    """True when one of the listed permissions grants `needed` and does not exclude it."""
    grant, exclude = ("dataActions", "notDataActions") if needed.data else ("actions", "notActions")
    for p in permissions:
        if _matches(p.get(grant) or [], needed.operation) and not _matches(p.get(exclude) or [], needed.operation):
            return True
    return False


class NotInEffect(Exception):
    """The role did not take effect within the bound."""


def poll(
    probe: Callable[[], bool],
    bound_s: float,
    *,
    interval_s: float = POLL_INTERVAL_SECONDS,
    now: Callable[[], float],
    sleep: Callable[[float], None],
) -> float:
    """Calls `probe` until it returns True; returns the seconds that took. Raises NotInEffect once
    `bound_s` has passed with the probe still False (a probe that raises is a False: a 403 or a
    passing network fault is what a role not yet in effect looks like)."""
    start = now()
    if bound_s <= 0:  # cluster.rolePropagationSeconds: 0 asks for no wait at all
        return 0.0
    while True:
        try:
            if probe():
                return now() - start
        except (OSError, ValueError):
            pass
        elapsed = now() - start
        if elapsed >= bound_s:
            raise NotInEffect(f"not in effect after {elapsed:.0f} s (bound {bound_s:g} s)")
        sleep(min(interval_s, bound_s - elapsed))


def ready_command(needed: Needed, bound_s: int, python: str = "python3") -> str:
    """The shell command that waits for `needed` on $SCOPE (tools/role_ready.py), run from the
    project root with `python` (the program passes its own interpreter, the project's venv)."""
    data = " --data" if needed.data else ""
    settle = f" --settle {needed.settle_s}" if needed.settle_s and bound_s > 0 else ""
    return (
        f'{shlex.quote(python)} -m tools.role_ready --scope "$SCOPE" --operation {needed.operation}{data} '
        f"--timeout {bound_s}{settle}"
    )

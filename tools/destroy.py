"""What stays after `make destroy` of a stack, what it costs, and how to remove each (make destroy).

usage: python -m tools.destroy --stack dev

`pulumi destroy` removes what the stack declared. The list is derived from the programs, so a new
retained or soft-deleted resource shows up here without an edit:
- resources declared with `retain_on_delete=True` (read from components/ with Python's ast);
- resources Azure soft-deletes, by type (FACTS below), where the program declares one;
- the model volume's disk, by its storage class's reclaim policy;
- bootstrap/'s resources (its own program, destroyed separately), with the state account's blob
  soft-delete days read from its source;
- Network Watcher, which Azure adds when the program's virtual network is created;
- the stack's state and this machine's files.
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path

from core import labels, loading
from core.loading import ConfigError
from tools.kube import stack_dir

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Leftover:
    what: str  # what stays
    cost: str  # what it costs while it stays
    remove: str  # how to remove it

    def text(self) -> str:
        return f"- {self.what}\n  cost: {self.cost}\n  remove: {self.remove}"


# Azure resource types that a delete only soft-deletes, by the constructor the program calls.
SOFT_DELETED: dict[str, tuple[str, str, str]] = {
    # learn.microsoft.com/rest/api/loganalytics/workspaces/delete: "The name is kept for 14 days and
    # cannot be used for another workspace. To remove the workspace completely and release the name,
    # use the force flag."
    "operationalinsights.Workspace": (
        "Log Analytics workspace {name} (Container Insights' logs): deleted with the resource group but "
        "soft-deleted, its name kept for 14 days",
        "nothing is sent to it any more; the name cannot be reused for 14 days",
        "az monitor log-analytics workspace delete --resource-group {group} --workspace-name {name} --force "
        "--yes (recreate it with the same name to recover it first if needed)",
    ),
}
# AKS's built-in storage classes all reclaim with Delete: a deleted claim deletes its disk or share
# (learn.microsoft.com/azure/aks/concepts-storage, "Storage classes").
AKS_BUILTIN_CLASSES = ("default", "managed", "managed-csi", "managed-csi-premium", "azurefile", "azurefile-csi",
                       "azurefile-csi-premium", "azurefile-premium", "managed-premium")  # fmt: skip


def calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def retained(folder: Path) -> list[tuple[str, str]]:
    """(resource type, file:line) of each resource declared with retain_on_delete=True."""
    found = []
    for path in sorted(folder.glob("*.py")):
        for call in calls(path):
            inner = [n for n in ast.walk(call) if isinstance(n, ast.keyword) and n.arg == "retain_on_delete"]
            resource = dotted(call.func)
            if (
                any(isinstance(k.value, ast.Constant) and k.value.value is True for k in inner)
                and resource
                and resource.split(".")[-1][:1].isupper()
                and resource.split(".")[-1] != "ResourceOptions"
            ):
                found.append((resource.split(".")[-1], f"{path.relative_to(ROOT)}:{call.lineno}"))
    return found


def declared(folder: Path, suffix: str) -> bool:
    """Whether a program in `folder` constructs a resource whose dotted name ends with `suffix`."""
    return any(dotted(c.func).endswith(suffix) for p in folder.glob("*.py") for c in calls(p))


def blob_soft_delete_days(path: Path) -> int | None:
    """The bootstrap state account's blob soft-delete days (delete_retention_policy={..., "days": N})."""
    for call in calls(path):
        for keyword in call.keywords:
            if keyword.arg == "delete_retention_policy" and isinstance(keyword.value, ast.Dict):
                for key, value in zip(keyword.value.keys, keyword.value.values, strict=True):
                    if key is not None and ast.literal_eval(key) == "days" and isinstance(value, ast.Constant):
                        return int(str(value.value))
    return None


def project() -> str:
    for line in (ROOT / "Pulumi.yaml").read_text().splitlines():
        if line.startswith("name:"):
            return line.split(":", 1)[1].strip()
    return labels.PROJECT


def leftovers(stack: str, storage_class: str, adopted_identity: bool = False) -> list[Leftover]:
    group = labels.name(stack, "rg")
    names = labels.ServingNames(stack)
    items: list[Leftover] = []
    for kind, where in retained(ROOT / "components"):
        if kind == "UserAssignedIdentity":
            # Kept only when adopted (cluster.adoptControlPlaneIdentity): then bootstrap made it.
            if adopted_identity:
                identity = labels.name(stack, "aks-identity")
                items.append(
                    Leftover(
                        f"the control-plane identity {identity} ({where}, retain_on_delete): bootstrap made it, "
                        f"with its Network Contributor on {group}, so it stays with bootstrap's resources",
                        "nothing: a managed identity is free",
                        f"with bootstrap's resources (below), or az identity delete --resource-group {group} "
                        f"--name {identity}",
                    )
                )
        elif kind == "PersistentVolumeClaim":
            policy = "Delete" if storage_class in AKS_BUILTIN_CLASSES else "the class's reclaimPolicy"
            items.append(
                Leftover(
                    f"the model volume {names.claim} ({where}, retain_on_delete): Pulumi leaves the claim, but "
                    f"Kubernetes deletes it with its namespace {names.namespace}, and its storage class "
                    f"{storage_class} reclaims with {policy}, so the disk goes too; it stays only when the "
                    "cluster was unreachable (PULUMI_K8S_DELETE_UNREACHABLE=true) and then sits in the cluster's "
                    "node resource group, which AKS deletes with the cluster",
                    "a premium disk of model.storage.sizeGi while it exists",
                    f'az disk list --query "[?tags.\\"kubernetes.io-created-for-pvc-name\\"==\'{names.claim}\']" '
                    "then az disk delete --ids <id>",
                )
            )
        else:
            items.append(
                Leftover(
                    f"a {kind} ({where}, retain_on_delete): Pulumi drops it from the state and leaves it",
                    "whatever the object holds",
                    "delete it by hand (kubectl delete or az resource delete)",
                )
            )
    for suffix, (what, cost, remove) in SOFT_DELETED.items():
        if declared(ROOT / "components", suffix):
            name = labels.name(stack, "logs")
            items.append(Leftover(what.format(name=name), cost, remove.format(group=group, name=name)))
    if declared(ROOT / "components", "network.VirtualNetwork"):
        # learn.microsoft.com/azure/network-watcher/network-watcher-create: "Network Watcher is
        # automatically enabled when you create or update a virtual network in your subscription".
        items.append(
            Leftover(
                "Network Watcher NetworkWatcher_<region> in the resource group NetworkWatcherRG, which Azure "
                "created with the stack's virtual network (shared by every virtual network in the region)",
                "its tools bill per use (azure.microsoft.com/pricing/details/network-watcher)",
                "leave it while other virtual networks use the region; else az group delete --name NetworkWatcherRG",
            )
        )
    days = blob_soft_delete_days(ROOT / "bootstrap" / "__main__.py")
    items.append(
        Leftover(
            "bootstrap's resources (make bootstrap, a program of its own): the resource group with the state "
            "storage account (one container per stack), CI's Entra ID applications and federated credentials, "
            "their role assignments, and the GitHub environments, variables and secrets",
            "the storage account's capacity and transactions (a stack's state is a few files)"
            + (f"; deleted or overwritten state blobs are kept {days} days (blob soft delete)" if days else ""),
            "after every stack is destroyed: cd bootstrap && pulumi destroy --stack ci && pulumi stack rm ci",
        )
    )
    items.append(
        Leftover(
            f"the stack's state: an empty stack {stack} with its history (local backend: "
            f"~/.pulumi/stacks/{project()}/{stack}.json and its backups; CI's: the stack's blob container)",
            "nothing on a laptop; the blobs' storage in CI's account",
            f"pulumi stack rm {stack} (with the same PULUMI_BACKEND_URL); its encrypted config in "
            f"Pulumi.{stack}.yaml stays in the repository",
        )
    )
    items.append(
        Leftover(
            f"this machine's files: {stack_dir(stack).relative_to(ROOT)}/ (kubeconfig, API key; make outputs), "
            f"render/{stack}/, and the shared .tools/ and $CACHE_DIR (llama.cpp builds)",
            "disk space only",
            f"rm -rf {stack_dir(stack).relative_to(ROOT)} render/{stack}",
        )
    )
    return items


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    args = parser.parse_args(argv)
    try:
        path = loading.stack_file(ROOT, args.stack)
    except loading.StackFileMissing as err:
        print(err, file=sys.stderr)
        return 1
    try:
        config = loading.read_stack(path)[1]
    except ConfigError as err:
        for problem in err.problems:
            print(f"problem: {problem}", file=sys.stderr)
        return 1
    print(f"What stays after make destroy STACK={args.stack}, what it costs, and how to remove it:")
    storage_class = config.model.storage.storage_class
    for item in leftovers(args.stack, storage_class, config.cluster.adopt_control_plane_identity):
        print(item.text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

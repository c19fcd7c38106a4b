"""Offline render: runs the real program under Pulumi's mocks with a stack's config and writes what
`pulumi up` would create: Kubernetes manifests, an ARM template of the Azure resources, and the
sizing summary. No Pulumi CLI, cloud account or cluster is needed.

usage: python -m tools.render [--config Pulumi.dev.yaml] [--out render/dev]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import runpy
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.config import PROJECT
from core.loading import ConfigError, load_config, split_pulumi_config
from core.skips import clear as clear_skips
from core.skips import skips_for
from core.summary import summary_markdown

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
TENANT = "11111111-1111-1111-1111-111111111111"
DEPLOYER = "22222222-2222-2222-2222-222222222222"
REDACTED = "<redacted secret>"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # the engine's marker of a secret value

# ARM type of each azure-native resource the stack declares, and the inputs that name it
# (path parameters, not properties), parent first.
ARM_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "azure-native:resources:ResourceGroup": ("Microsoft.Resources/resourceGroups", ("resourceGroupName",)),
    "azure-native:operationalinsights:Workspace": ("Microsoft.OperationalInsights/workspaces", ("workspaceName",)),
    "azure-native:containerservice:ManagedCluster": ("Microsoft.ContainerService/managedClusters", ("resourceName",)),
    "azure-native:containerservice:AgentPool": (
        "Microsoft.ContainerService/managedClusters/agentPools",
        ("resourceName", "agentPoolName"),
    ),
    "azure-native:containerservice:MaintenanceConfiguration": (
        "Microsoft.ContainerService/managedClusters/maintenanceConfigurations",
        ("resourceName", "configName"),
    ),
    "azure-native:containerregistry:Registry": ("Microsoft.ContainerRegistry/registries", ("registryName",)),
    "azure-native:authorization:RoleAssignment": ("Microsoft.Authorization/roleAssignments", ("roleAssignmentName",)),
    "azure-native:monitor:AzureMonitorWorkspace": ("Microsoft.Monitor/accounts", ("azureMonitorWorkspaceName",)),
    "azure-native:monitor:DataCollectionEndpoint": (
        "Microsoft.Insights/dataCollectionEndpoints",
        ("dataCollectionEndpointName",),
    ),
    "azure-native:monitor:DataCollectionRule": ("Microsoft.Insights/dataCollectionRules", ("dataCollectionRuleName",)),
    "azure-native:monitor:DataCollectionRuleAssociation": (
        "Microsoft.Insights/dataCollectionRuleAssociations",
        ("associationName",),
    ),
    "azure-native:alertsmanagement:PrometheusRuleGroup": (
        "Microsoft.AlertsManagement/prometheusRuleGroups",
        ("ruleGroupName",),
    ),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "Microsoft.ManagedIdentity/userAssignedIdentities",
        ("resourceName",),
    ),
    "azure-native:managedidentity:FederatedIdentityCredential": (
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        ("resourceName", "federatedIdentityCredentialResourceName"),
    ),
    "azure-native:dashboard:Grafana": ("Microsoft.Dashboard/grafana", ("workspaceName",)),
}
# ARM keeps these at the resource's top level; every other input is a property.
ARM_TOP_LEVEL = ("location", "tags", "sku", "identity", "kind", "zones", "scope", "extendedLocation")
KIND_ORDER = (
    "Namespace",
    "ServiceAccount",
    "Secret",
    "PersistentVolumeClaim",
    "DaemonSet",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "PodMonitor",
    "TriggerAuthentication",
    "ScaledObject",
)


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str | None = None


@dataclass
class RenderMocks:
    """Answers the engine's calls the way Azure would, with fixed ids so renders are stable."""

    resources: list[Recorded] = field(default_factory=list)
    location: str = "eastus"

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.resources.append(Recorded(args.typ, args.name, inputs, args.provider))
        outputs = dict(inputs)
        arm = ARM_TYPES.get(args.typ)
        if arm:
            names = [str(inputs.get(k) or args.name) for k in arm[1]]
            outputs["name"] = names[-1]
            outputs["id"] = arm_id(arm[0], names, inputs.get("resourceGroupName"))
        if args.typ == "azure-native:containerservice:ManagedCluster":
            outputs["identityProfile"] = {"kubeletidentity": {"objectId": "33333333-3333-3333-3333-333333333333"}}
            outputs["fqdn"] = f"{inputs.get('dnsPrefix')}.hcp.{self.location}.azmk8s.io"
        if args.typ == "azure-native:containerservice:ManagedCluster":
            outputs["oidcIssuerProfile"] = {
                "enabled": True,
                "issuerURL": f"https://{self.location}.oic.prod-aks.azure.com/{TENANT}/render/",
            }
        if args.typ == "azure-native:monitor:AzureMonitorWorkspace":
            outputs["metrics"] = {
                "prometheusQueryEndpoint": f"https://{inputs['azureMonitorWorkspaceName']}.{self.location}.prometheus.monitor.azure.com",
                "internalId": "render",
            }
        if args.typ == "azure-native:managedidentity:UserAssignedIdentity":
            outputs.update(
                principalId="44444444-4444-4444-4444-444444444444",
                clientId="55555555-5555-5555-5555-555555555555",
                tenantId=TENANT,
            )
        if args.typ == "azure-native:dashboard:Grafana":
            outputs["identity"] = {"type": "SystemAssigned", "principalId": "66666666-6666-6666-6666-666666666666"}
            outputs["properties"] = {
                **inputs.get("properties", {}),
                "endpoint": f"https://{inputs['workspaceName']}.eus.grafana.azure.com",
            }
        if args.typ == "azure-native:containerregistry:Registry":
            outputs["loginServer"] = f"{inputs['registryName']}.azurecr.io"
        if args.typ == "random:index/randomString:RandomString":
            outputs["result"] = "r3nd3r"[: int(inputs.get("length", 6))]
        if args.typ == "random:index/randomPassword:RandomPassword":
            outputs["result"] = "render-placeholder-api-key"
        if args.typ == "docker:index/image:Image":
            name = inputs["imageName"]
            digest = hashlib.sha256(name.encode()).hexdigest()
            outputs["repoDigest"] = f"{name.rsplit(':', 1)[0]}@sha256:{digest}"
        if args.typ == "command:local:Command":
            # The ACR build prints the pushed digest (components/image.py, acr_build_script).
            image = inputs.get("environment", {}).get("IMAGE", args.name)
            outputs["stdout"] = f"sha256:{hashlib.sha256(image.encode()).hexdigest()}\n"
        return outputs.get("id", f"{args.name}-id"), outputs

    def call(self, args: Any) -> dict[str, Any]:
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": SUBSCRIPTION, "tenantId": TENANT, "objectId": DEPLOYER, "clientId": DEPLOYER}
        if args.token == "azure-native:authorization:getClientToken":
            return {"token": "render-placeholder-token"}
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            return {
                "kubeconfigs": [
                    {"name": "clusterUser", "value": base64.b64encode(sample_kubeconfig(args.args).encode()).decode()}
                ]
            }
        return {}


def arm_id(arm_type: str, names: list[str], resource_group: str | None) -> str:
    provider, *types = arm_type.split("/")
    if arm_type == "Microsoft.Resources/resourceGroups":
        return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{names[0]}"
    path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{resource_group}/providers/{provider}/{path}"


def sample_kubeconfig(args: dict[str, Any]) -> str:
    """The shape of the kubeconfig AKS returns for `format=exec` with Entra ID integration."""
    name = args.get("resourceName", "aks")
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": name, "cluster": {"server": f"https://{name}.hcp.azmk8s.io:443"}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": f"clusterUser_{name}"}}],
            "current-context": name,
            "users": [
                {
                    "name": f"clusterUser_{name}",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "kubelogin",
                            "args": [
                                "get-token",
                                "--login",
                                "devicecode",
                                "--server-id",
                                "6dae42f8-4368-4678-94ff-3960e28e3630",
                                "--client-id",
                                "80faf920-1908-4b52-b5ef-a8e7bedfc67a",
                                "--tenant-id",
                                TENANT,
                                "--environment",
                                "AzurePublicCloud",
                            ],
                        }
                    },
                }
            ],
        }
    )


def api_version(typ: str) -> str:
    """The REST API version the pinned azure-native SDK uses for a type (from its own docs)."""
    import importlib
    import inspect

    _, module, cls = typ.split(":")
    py_cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), cls)
    source = Path(inspect.getfile(py_cls)).read_text()
    match = re.search(r"Uses Azure REST API version (\S+?)\.", source)
    if not match:
        raise LookupError(f"no API version in the docs of {typ}")
    return match.group(1)


def redacted(value: Any) -> Any:
    """A secret's shape with its values hidden: the render is for review and is never secret."""
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return REDACTED


def normalized(value: Any) -> Any:
    """Engine values as a person writes them: secrets redacted, whole numbers as ints (the
    engine's wire format carries every number as a double) and mapping keys sorted."""
    if isinstance(value, dict) and SECRET_SIG in value:
        return redacted(value["value"])
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalized(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def arm_template(resources: list[Recorded], location: str) -> dict[str, Any]:
    out = []
    for r in resources:
        if r.typ not in ARM_TYPES:
            continue
        arm_type, name_keys = ARM_TYPES[r.typ]
        names = [str(r.inputs.get(k) or "") for k in name_keys]
        if r.typ == "azure-native:authorization:RoleAssignment" and not names[0]:
            names = [
                str(
                    uuid.uuid5(
                        uuid.NAMESPACE_URL,
                        f"{r.inputs.get('scope')}|{r.inputs.get('principalId')}|{r.inputs.get('roleDefinitionId')}",
                    )
                )
            ]
        inputs = normalized(r.inputs)
        props = {
            k: v
            for k, v in inputs.items()
            if k not in ARM_TOP_LEVEL and k not in name_keys and k != "resourceGroupName"
        }
        doc: dict[str, Any] = {
            "type": arm_type,
            "apiVersion": api_version(r.typ),
            "name": "/".join(names),
            # ARM ignores location on child and extension resources; it is kept for a uniform review.
            "location": inputs.get("location", location),
        }
        doc.update({k: inputs[k] for k in ARM_TOP_LEVEL if k in inputs and k != "location"})
        doc["properties"] = props
        skipped = skips_for(r.name)
        if skipped:
            doc["metadata"] = {"checkov": [f"checkov:skip={check}: {reason}" for check, reason in skipped.items()]}
        out.append(doc)
    # Mocks register resources in the order their inputs resolve, which varies between runs:
    # sort, so that a review diff of two renders shows only real changes.
    out.sort(key=lambda d: (d["type"], d["name"], d.get("scope", "")))
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": out,
    }


def manifests(resources: list[Recorded]) -> list[dict[str, Any]]:
    objs = []
    for r in resources:
        if not r.typ.startswith("kubernetes:") or r.typ.startswith("pulumi:providers"):
            continue
        body = normalized({k: v for k, v in r.inputs.items() if not k.startswith("__")})
        obj = {k: body.pop(k) for k in ("apiVersion", "kind", "metadata")} | body
        if obj.get("kind") == "Secret":
            for key in ("data", "stringData"):
                if key in obj:
                    obj[key] = redacted(obj[key])
        objs.append(obj)

    def order(o: dict[str, Any]) -> tuple[int, str]:
        kind = o.get("kind", "")
        return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), o["metadata"]["name"])

    return sorted(objs, key=order)


def stack_config(path: Path) -> tuple[str, dict[str, str]]:
    """Stack name and Pulumi's flat config map from a Pulumi.<stack>.yaml (secrets left out)."""
    match = re.fullmatch(r"Pulumi\.(.+)\.yaml", path.name)
    if not match:
        raise SystemExit(f"{path}: a stack config file is named Pulumi.<stack>.yaml")
    doc = yaml.safe_load(path.read_text()) or {}
    flat = {}
    for key, value in (doc.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue  # encrypted; the render cannot and need not decrypt it
        full = key if ":" in key else f"{PROJECT}:{key}"
        flat[full] = value if isinstance(value, str) else json.dumps(value)
    return match.group(1), flat


def run_program(stack: str, flat: dict[str, str]) -> RenderMocks:
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    location = json.loads(flat.get(f"{PROJECT}:cluster", "{}")).get("location", "eastus")
    mocks = RenderMocks(location=location)
    clear_skips()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=True)
    pulumi.runtime.set_all_config(flat)
    _sync_await(run_pulumi_func(lambda: runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")))
    return mocks


def render(config_path: Path, out: Path) -> list[str]:
    stack, flat = stack_config(config_path)
    raw, _ = split_pulumi_config(flat)
    config, warnings = load_config(raw, stack)  # fails before any resource, as the program does
    sys.path.insert(0, str(ROOT))
    mocks = run_program(stack, flat)
    (out / "kubernetes").mkdir(parents=True, exist_ok=True)
    (out / "azure").mkdir(parents=True, exist_ok=True)
    for old in (out / "kubernetes").glob("*.yaml"):
        old.unlink()
    for i, obj in enumerate(manifests(mocks.resources)):
        meta = obj["metadata"]
        file = out / "kubernetes" / f"{i:02d}-{obj['kind'].lower()}-{meta['name']}.yaml"
        file.write_text(yaml.safe_dump(obj, sort_keys=False))
    (out / "azure" / "template.json").write_text(
        json.dumps(arm_template(mocks.resources, config.cluster.location), indent=2) + "\n"
    )
    (out / "summary.md").write_text(summary_markdown(config, stack))
    return warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "Pulumi.dev.yaml")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "render" / args.config.name.split(".")[1]
    try:
        warnings = render(args.config, out)
    except ConfigError as err:
        print(f"{args.config}: invalid stack config:", file=sys.stderr)
        for problem in err.problems:
            print(f"- {problem}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"rendered {args.config} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import logging
import re
import runpy
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

from core.config import PROJECT, shown
from core.loading import (
    ConfigError,
    StackFileProblem,
    load_config,
    offline_render,
    parse_stack_file,
    plaintext_secrets,
    split_pulumi_config,
)
from core.skips import clear as clear_skips
from core.skips import skips_for
from core.summary import summary_data, summary_markdown

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
TENANT = "11111111-1111-1111-1111-111111111111"
DEPLOYER = "22222222-2222-2222-2222-222222222222"
REDACTED = "<redacted secret>"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # the engine's marker of a secret value


# ARM type of each azure-native resource the stack declares, the inputs that name it (path
# parameters, not properties, parent first) and the input that is its scope when it is an
# extension resource (learn.microsoft.com/azure/azure-resource-manager/templates/scope-extension-resources).
@dataclass(frozen=True)
class ArmType:
    arm_type: str
    name_keys: tuple[str, ...]
    scope_key: str | None = None


ARM_TYPES: dict[str, ArmType] = {
    "azure-native:resources:ResourceGroup": ArmType("Microsoft.Resources/resourceGroups", ("resourceGroupName",)),
    "azure-native:operationalinsights:Workspace": ArmType(
        "Microsoft.OperationalInsights/workspaces", ("workspaceName",)
    ),
    "azure-native:containerservice:ManagedCluster": ArmType(
        "Microsoft.ContainerService/managedClusters", ("resourceName",)
    ),
    "azure-native:containerservice:AgentPool": ArmType(
        "Microsoft.ContainerService/managedClusters/agentPools", ("resourceName", "agentPoolName")
    ),
    "azure-native:containerservice:MaintenanceConfiguration": ArmType(
        "Microsoft.ContainerService/managedClusters/maintenanceConfigurations", ("resourceName", "configName")
    ),
    "azure-native:containerregistry:Registry": ArmType("Microsoft.ContainerRegistry/registries", ("registryName",)),
    "azure-native:authorization:RoleAssignment": ArmType(
        "Microsoft.Authorization/roleAssignments", ("roleAssignmentName",), "scope"
    ),
    "azure-native:monitor:AzureMonitorWorkspace": ArmType("Microsoft.Monitor/accounts", ("azureMonitorWorkspaceName",)),
    "azure-native:monitor:DataCollectionEndpoint": ArmType(
        "Microsoft.Insights/dataCollectionEndpoints", ("dataCollectionEndpointName",)
    ),
    "azure-native:monitor:DataCollectionRule": ArmType(
        "Microsoft.Insights/dataCollectionRules", ("dataCollectionRuleName",)
    ),
    "azure-native:monitor:DataCollectionRuleAssociation": ArmType(
        "Microsoft.Insights/dataCollectionRuleAssociations", ("associationName",), "resourceUri"
    ),
    "azure-native:monitor:ActionGroup": ArmType("Microsoft.Insights/actionGroups", ("actionGroupName",)),
    "azure-native:alertsmanagement:PrometheusRuleGroup": ArmType(
        "Microsoft.AlertsManagement/prometheusRuleGroups", ("ruleGroupName",)
    ),
    "azure-native:managedidentity:UserAssignedIdentity": ArmType(
        "Microsoft.ManagedIdentity/userAssignedIdentities", ("resourceName",)
    ),
    "azure-native:managedidentity:FederatedIdentityCredential": ArmType(
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
        ("resourceName", "federatedIdentityCredentialResourceName"),
    ),
    "azure-native:dashboard:Grafana": ArmType("Microsoft.Dashboard/grafana", ("workspaceName",)),
    "azure-native:network:VirtualNetwork": ArmType("Microsoft.Network/virtualNetworks", ("virtualNetworkName",)),
    "azure-native:network:Subnet": ArmType(
        "Microsoft.Network/virtualNetworks/subnets", ("virtualNetworkName", "subnetName")
    ),
    "azure-native:network:WebApplicationFirewallPolicy": ArmType(
        "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies", ("policyName",)
    ),
    "azure-native:servicenetworking:TrafficControllerInterface": ArmType(
        "Microsoft.ServiceNetworking/trafficControllers", ("trafficControllerName",)
    ),
    "azure-native:servicenetworking:FrontendsInterface": ArmType(
        "Microsoft.ServiceNetworking/trafficControllers/frontends", ("trafficControllerName", "frontendName")
    ),
    "azure-native:servicenetworking:AssociationsInterface": ArmType(
        "Microsoft.ServiceNetworking/trafficControllers/associations", ("trafficControllerName", "associationName")
    ),
    "azure-native:servicenetworking:SecurityPoliciesInterface": ArmType(
        "Microsoft.ServiceNetworking/trafficControllers/securityPolicies",
        ("trafficControllerName", "securityPolicyName"),
    ),
}
# Where a type has an API model (tools/conformance.py: its version's, or the nearest published),
# the model says which keys sit at the resource's top level. For the types no package models
# (resource groups, Prometheus rule groups), ARM's template reference does
# (learn.microsoft.com/azure/templates/<provider>/<type>); both are tracked resources, so these:
ARM_TOP_LEVEL = ("location", "tags", "sku", "identity", "kind", "zones", "extendedLocation")
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
    "ClusterIssuer",
    "Certificate",
    "Gateway",
    "HTTPRoute",
    "HealthCheckPolicy",
    "WebApplicationFirewallPolicy",
)


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str | None = None


@dataclass
class RenderMocks(Mocks):
    """Answers the engine's calls the way Azure would, with fixed ids so renders are stable."""

    resources: list[Recorded] = field(default_factory=list)
    location: str = "eastus"

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.resources.append(Recorded(args.typ, args.name, inputs, args.provider))
        outputs = dict(inputs)
        arm = ARM_TYPES.get(args.typ)
        if arm:
            names = [str(inputs.get(k) or args.name) for k in arm.name_keys]
            outputs["name"] = names[-1]
            outputs["id"] = arm_id(arm.arm_type, names, inputs.get("resourceGroupName"))
        if "identity" in inputs:
            outputs["identity"] = arm_identity(inputs["identity"])
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
        if args.typ == "azure-native:servicenetworking:FrontendsInterface":
            outputs["fqdn"] = f"render{hashlib.sha256(args.name.encode()).hexdigest()[:12]}.fz00.alb.azure.com"
        if args.typ == "azure-native:containerservice:ManagedCluster":
            outputs["nodeResourceGroup"] = (
                f"MC_{inputs.get('resourceGroupName')}_{inputs.get('resourceName')}_{self.location}"
            )
        if args.typ == "azure-native:containerregistry:Registry":
            outputs["loginServer"] = f"{inputs['registryName']}.azurecr.io"
        if args.typ == "random:index/randomString:RandomString":
            outputs["result"] = "r3nd3r"[: int(inputs.get("length", 6))]
        if args.typ == "random:index/randomId:RandomId":
            outputs["hex"] = "5a17" * (int(inputs.get("byteLength", 8)) // 2)
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

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return self.answer(args), []

    def answer(self, args: MockCallArgs) -> dict[str, Any]:
        """What Azure would answer to a provider function call (data sources, tokens, credentials)."""
        if args.token == "azure-native:authorization:getClientConfig":
            return {"subscriptionId": SUBSCRIPTION, "tenantId": TENANT, "objectId": DEPLOYER, "clientId": DEPLOYER}
        if args.token == "azure-native:authorization:getClientToken":
            # An unsigned JWT shaped like a person's ARM token (`scp` set): the deployer renders as a User.
            return {
                "token": "eyJhbGciOiJub25lIn0.eyJzY3AiOiJ1c2VyX2ltcGVyc29uYXRpb24iLCJyZW5kZXIiOiJwbGFjZWhvbGRlciJ9."
            }
        if args.token == "azure-native:containerservice:listManagedClusterUserCredentials":
            return {
                "kubeconfigs": [
                    {"name": "clusterUser", "value": base64.b64encode(sample_kubeconfig(args.args).encode()).decode()}
                ]
            }
        return {}


def arm_identity(identity: Any) -> Any:
    """A managed identity block as ARM has it: azure-native takes user-assigned identities as a
    list of ids and sends (and gets back) a map of id -> {}."""
    if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
        return {**identity, "userAssignedIdentities": {i: {} for i in identity["userAssignedIdentities"]}}
    return identity


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


def top_level_keys(arm_type: str, version: str) -> frozenset[str]:
    """Keys ARM reads at a resource's top level: from the API model where one is published, else
    the template reference's (ARM_TOP_LEVEL)."""
    from tools.conformance import closest_model
    from tools.conformance import top_level_keys as model_top_level

    model = closest_model(arm_type, version)
    return frozenset(model_top_level(model.cls) if model is not None else ARM_TOP_LEVEL)


# Sub-resources whose inputs azure-native flattens (x-ms-client-flatten) and ARM reads nested
# under their own `properties`: type -> list key -> the keys that go under `properties`.
FLATTENED: dict[str, dict[str, tuple[str, ...]]] = {
    "Microsoft.Network/virtualNetworks/subnets": {"delegations": ("serviceName",)},
}


def _nest(item: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    inner = {k: item[k] for k in keys if k in item}
    return {**{k: v for k, v in item.items() if k not in keys}, "properties": inner}


def arm_resource(r: Recorded, location: str) -> dict[str, Any]:
    """One resource as ARM reads it: its name and scope from the path parameters, the keys its
    API keeps at the top level there, everything else under `properties`. A tracked resource
    without a location input gets the stack's, as azure-native defaults it."""
    arm = ARM_TYPES[r.typ]
    names = [str(r.inputs.get(k) or "") for k in arm.name_keys]
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
    version = api_version(r.typ)
    top = top_level_keys(arm.arm_type, version)
    path_params = {*arm.name_keys, "resourceGroupName", arm.scope_key}
    doc: dict[str, Any] = {"type": arm.arm_type, "apiVersion": version, "name": "/".join(names)}
    if arm.scope_key and arm.scope_key in inputs:
        doc["scope"] = inputs[arm.scope_key]
    if "location" in top:
        doc["location"] = inputs.get("location", location)
    doc.update({k: inputs[k] for k in sorted(top) if k in inputs and k != "location"})
    props: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in top or key in path_params:
            continue
        if key == "properties" and isinstance(value, dict):
            props.update(value)  # azure-native nests some bodies (Grafana) where ARM has them flat
        else:
            props[key] = value
    for key, flat in FLATTENED.get(arm.arm_type, {}).items():
        props[key] = [_nest(item, flat) for item in props.get(key, [])]
    if "identity" in doc:
        doc["identity"] = arm_identity(doc["identity"])
    doc["properties"] = dict(sorted(props.items()))
    skipped = skips_for(r.name)
    if skipped:
        doc["metadata"] = {"checkov": [f"checkov:skip={check}: {reason}" for check, reason in skipped.items()]}
    return doc


def arm_template(resources: list[Recorded], location: str) -> dict[str, Any]:
    out = [arm_resource(r, location) for r in resources if r.typ in ARM_TYPES]
    # Mocks register resources in the order their inputs resolve, which varies between runs:
    # sort, so that a review diff of two renders shows only real changes.
    out.sort(key=lambda d: (d["type"], d["name"], d.get("scope", "")))
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": out,
    }


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def helm_releases(resources: list[Recorded]) -> list[dict[str, Any]]:
    """Each Helm release as it is asked for: chart, version, namespace and values. The chart's own
    manifests come from its registry at `pulumi up`; the render has no network to expand them."""
    keys = ("name", "chart", "version", "namespace", "createNamespace", "atomic", "values")
    out = [{k: normalized(r.inputs[k]) for k in keys if k in r.inputs} for r in resources if r.typ == HELM_RELEASE]
    return sorted(out, key=lambda release: release["name"])


def manifests(resources: list[Recorded]) -> list[dict[str, Any]]:
    objs = []
    for r in resources:
        if not r.typ.startswith("kubernetes:") or r.typ.startswith("pulumi:providers") or r.typ == HELM_RELEASE:
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
    """Stack name and Pulumi's flat config map from a Pulumi.<stack>.yaml (secrets left out).

    Every way the file itself can be wrong is a ConfigError with one sentence, as the program's
    own config errors are: a user runs this by hand, and a traceback helps no one.
    """
    match = re.fullmatch(r"Pulumi\.(.+)\.yaml", path.name)
    if not match:
        raise ConfigError(
            [f"{path} is not named Pulumi.<stack>.yaml; pass --config with a stack file such as Pulumi.dev.yaml."]
        )
    try:
        doc = parse_stack_file(path.read_bytes())
    except StackFileProblem as err:
        raise ConfigError([f"{path}: {err}"]) from None
    except FileNotFoundError:
        raise ConfigError(
            [f"{path} does not exist; pass --config with a stack file such as Pulumi.dev.yaml."]
        ) from None
    except OSError as err:
        raise ConfigError([f"{path} cannot be read ({err.strerror}); check the path and its permissions."]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or "not valid YAML"
        raise ConfigError([f"{path} is not valid YAML{where} ({what}); fix the syntax there."]) from None
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(
            [
                f"{path}: config={shown(config)} is not a mapping; write one key per setting under "
                f"config:, such as llamacpp-aks:server."
            ]
        )
    flat: dict[str, str] = {}
    secure: set[str] = set()
    for key, value in config.items():
        full = str(key) if ":" in str(key) else f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.add(full)  # encrypted; the render cannot and need not decrypt it
            continue
        flat[full] = value if isinstance(value, str) else json.dumps(value, default=str)
    plaintext = plaintext_secrets(flat, secure)
    if plaintext:
        raise ConfigError(plaintext)
    return match.group(1), flat


def _program_log() -> logging.Logger:
    """Where the program's pulumi.log messages go under mocks: stderr, once, as `warning: ...`,
    the way the Pulumi CLI shows them."""
    log = logging.getLogger("llamacpp-aks.program")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LowerLevelFormatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    return log


class LowerLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(logging.makeLogRecord({**record.__dict__, "levelname": record.levelname.lower()}))


PROGRAM_LOG = _program_log()


def run_program(stack: str, flat: dict[str, str], mocks: RenderMocks | None = None) -> RenderMocks:
    """Runs __main__.py under mocks; `mocks` (one is made if not given) records what it declared,
    also when the program fails."""
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    if mocks is None:
        location = json.loads(flat.get(f"{PROJECT}:cluster", "{}")).get("location", "eastus")
        mocks = RenderMocks(location=location)
    clear_skips()
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=True, logger=PROGRAM_LOG)
    pulumi.runtime.set_all_config(flat)

    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    _sync_await(run_pulumi_func(program))
    return mocks


def render(config_path: Path, out: Path) -> list[str]:
    stack, flat = stack_config(config_path)
    raw, _ = split_pulumi_config(flat)
    config, warnings = load_config(raw, stack)  # fails before any resource, as the program does
    sys.path.insert(0, str(ROOT))
    with offline_render():
        mocks = run_program(stack, flat)
    (out / "kubernetes").mkdir(parents=True, exist_ok=True)
    (out / "azure").mkdir(parents=True, exist_ok=True)
    for old in (out / "kubernetes").glob("*.yaml"):
        old.unlink()
    for i, obj in enumerate(manifests(mocks.resources)):
        meta = obj["metadata"]
        file = out / "kubernetes" / f"{i:02d}-{obj['kind'].lower()}-{meta['name']}.yaml"
        file.write_text(yaml.safe_dump(obj, sort_keys=False))
    helm = out / "helm"
    for old in helm.glob("*.yaml"):
        old.unlink()
    for release in helm_releases(mocks.resources):
        helm.mkdir(parents=True, exist_ok=True)
        (helm / f"{release['name']}.yaml").write_text(yaml.safe_dump(release, sort_keys=False))
    (out / "azure" / "template.json").write_text(
        json.dumps(arm_template(mocks.resources, config.cluster.location), indent=2) + "\n"
    )
    (out / "summary.md").write_text(summary_markdown(config, stack))
    (out / "summary.json").write_text(json.dumps(summary_data(config, stack), indent=2) + "\n")
    return warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "Pulumi.dev.yaml")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "render" / args.config.name.split(".")[1]
    try:
        render(args.config, out)
    except ConfigError as err:
        print(f"{args.config}: invalid stack config:", file=sys.stderr)
        for problem in err.problems:
            print(f"- {problem}", file=sys.stderr)
        return 1
    print(f"rendered {args.config} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pulumi's mocks for the offline render and the tests: they record every resource the program
declares and answer the engine the way Azure would, with fixed ids and values, so renders are stable.

What each resource type adds to its inputs when created (OUTPUTS) and what each provider function
answers (ANSWERS) are tables, one entry per type or function the program reads back.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from pulumi.runtime import MockCallArgs, MockResourceArgs, Mocks

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
TENANT = "11111111-1111-1111-1111-111111111111"
DEPLOYER = "22222222-2222-2222-2222-222222222222"


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


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]
    provider: str | None = None
    import_id: str | None = None  # the id of an existing resource it takes over (ResourceOptions.import_)


# What a created resource has beside its inputs, by type: (its inputs, its Pulumi name, the
# stack's location) -> the outputs Azure (or the provider) adds, which the program reads back.
Created = Callable[[dict[str, Any], str, str], dict[str, Any]]


def _managed_cluster(inputs: dict[str, Any], name: str, location: str) -> dict[str, Any]:
    return {
        "identityProfile": {"kubeletidentity": {"objectId": "33333333-3333-3333-3333-333333333333"}},
        "fqdn": f"{inputs.get('dnsPrefix')}.hcp.{location}.azmk8s.io",
        "oidcIssuerProfile": {
            "enabled": True,
            "issuerURL": f"https://{location}.oic.prod-aks.azure.com/{TENANT}/render/",
        },
        "nodeResourceGroup": f"MC_{inputs.get('resourceGroupName')}_{inputs.get('resourceName')}_{location}",
    }


def _grafana(inputs: dict[str, Any], name: str, location: str) -> dict[str, Any]:
    return {
        "identity": {"type": "SystemAssigned", "principalId": "66666666-6666-6666-6666-666666666666"},
        "properties": {
            **inputs.get("properties", {}),
            "endpoint": f"https://{inputs['workspaceName']}.eus.grafana.azure.com",
        },
    }


def _docker_image(inputs: dict[str, Any], name: str, location: str) -> dict[str, Any]:
    image = inputs["imageName"]
    return {"repoDigest": f"{image.rsplit(':', 1)[0]}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"}


def _acr_build(inputs: dict[str, Any], name: str, location: str) -> dict[str, Any]:
    # The ACR build prints the pushed digest (core/image.py, acr_build_script).
    image = inputs.get("environment", {}).get("IMAGE", name)
    return {"stdout": f"sha256:{hashlib.sha256(image.encode()).hexdigest()}\n"}


OUTPUTS: dict[str, Created] = {
    "azure-native:containerservice:ManagedCluster": _managed_cluster,
    "azure-native:monitor:AzureMonitorWorkspace": lambda inputs, name, location: {
        "metrics": {
            "prometheusQueryEndpoint": f"https://{inputs['azureMonitorWorkspaceName']}.{location}.prometheus.monitor.azure.com",
            "internalId": "render",
        }
    },
    "azure-native:managedidentity:UserAssignedIdentity": lambda inputs, name, location: {
        "principalId": "44444444-4444-4444-4444-444444444444",
        "clientId": "55555555-5555-5555-5555-555555555555",
        "tenantId": TENANT,
    },
    "azure-native:dashboard:Grafana": _grafana,
    "azure-native:servicenetworking:FrontendsInterface": lambda inputs, name, location: {
        "fqdn": f"render{hashlib.sha256(name.encode()).hexdigest()[:12]}.fz00.alb.azure.com"
    },
    "azure-native:containerregistry:Registry": lambda inputs, name, location: {
        "loginServer": f"{inputs['registryName']}.azurecr.io"
    },
    "random:index/randomString:RandomString": lambda inputs, name, location: {
        "result": "r3nd3r"[: int(inputs.get("length", 6))]
    },
    "random:index/randomId:RandomId": lambda inputs, name, location: {
        "hex": "5a17" * (int(inputs.get("byteLength", 8)) // 2)
    },
    "random:index/randomPassword:RandomPassword": lambda inputs, name, location: {
        "result": "render-placeholder-api-key"
    },
    "docker:index/image:Image": _docker_image,
    "command:local:Command": _acr_build,
}

# What each provider function (data sources, tokens, credentials) answers, by its token.
ANSWERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "azure-native:authorization:getClientConfig": lambda args: {
        "subscriptionId": SUBSCRIPTION,
        "tenantId": TENANT,
        "objectId": DEPLOYER,
        "clientId": DEPLOYER,
    },
    # An unsigned JWT shaped like a person's ARM token (`scp` set): the deployer renders as a User.
    "azure-native:authorization:getClientToken": lambda args: {
        "token": "eyJhbGciOiJub25lIn0.eyJzY3AiOiJ1c2VyX2ltcGVyc29uYXRpb24iLCJyZW5kZXIiOiJwbGFjZWhvbGRlciJ9."
    },
    "azure-native:containerservice:listManagedClusterUserCredentials": lambda args: {
        "kubeconfigs": [{"name": "clusterUser", "value": base64.b64encode(sample_kubeconfig(args).encode()).decode()}]
    },
}


@dataclass
class RenderMocks(Mocks):
    """Answers the engine's calls the way Azure would, with fixed ids so renders are stable."""

    resources: list[Recorded] = field(default_factory=list)
    location: str = "eastus"

    def new_resource(self, args: MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.resources.append(Recorded(args.typ, args.name, inputs, args.provider, args.resource_id or None))
        outputs = dict(inputs)
        arm = ARM_TYPES.get(args.typ)
        if arm:
            names = [str(inputs.get(k) or args.name) for k in arm.name_keys]
            outputs["name"] = names[-1]
            outputs["id"] = arm_id(arm.arm_type, names, inputs.get("resourceGroupName"))
        if "identity" in inputs:
            outputs["identity"] = arm_identity(inputs["identity"])
        if args.typ in OUTPUTS:
            outputs.update(OUTPUTS[args.typ](inputs, args.name, self.location))
        return outputs.get("id", f"{args.name}-id"), outputs

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return self.answer(args), []

    def answer(self, args: MockCallArgs) -> dict[str, Any]:
        """What Azure would answer to a provider function call; {} for a function the program does not read."""
        return ANSWERS[args.token](args.args) if args.token in ANSWERS else {}


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

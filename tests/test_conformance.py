"""The ARM template is checked against Azure's published API models, and the render places every
key where the API has it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.conformance import check_template, main

POOL = "Microsoft.ContainerService/managedClusters/agentPools"
CLUSTER = "Microsoft.ContainerService/managedClusters"


def template(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resources": list(resources)}


def agent_pool(**properties: Any) -> dict[str, Any]:
    body = {"vmSize": "Standard_NV36ads_A10_v5", "count": 1, "osType": "Linux", "mode": "User"} | properties
    return {"type": POOL, "apiVersion": "2025-09-01", "name": "aks/gpu", "properties": body}


def problems_of(*resources: dict[str, Any]) -> list[str]:
    return check_template(template(*resources))[0]


def test_a_valid_agent_pool_has_no_problem():
    assert problems_of(agent_pool()) == []


def test_catches_a_misspelt_key_and_names_the_right_one():
    (problem,) = problems_of(agent_pool(enableAutoScalling=True))
    assert "properties.enableAutoScalling is not in the API model AgentPool; did you mean enableAutoScaling?" in problem


def test_catches_a_key_at_the_wrong_level_and_says_where_it_belongs():
    (problem,) = problems_of(agent_pool() | {"tags": {"stack": "dev"}})
    assert problem.endswith("tags is not in the API model AgentPool; it belongs at properties.tags")


def test_catches_location_on_a_child_resource():
    (problem,) = problems_of(agent_pool() | {"location": "eastus"})
    assert "location is not in the API model AgentPool" in problem


def test_catches_an_enum_value_the_api_does_not_have():
    (problem,) = problems_of(agent_pool(osType="Linx"))
    assert "properties.osType='Linx' is not one of the API's values: Linux, Windows" in problem


def test_enum_values_compare_without_case_as_arm_does():
    assert problems_of(agent_pool(osType="linux")) == []


def test_catches_a_value_of_the_wrong_type():
    (problem,) = problems_of(agent_pool(count="2"))
    assert "properties.count='2' is str, the API takes int" in problem


def test_catches_a_value_above_the_api_maximum():
    (problem,) = problems_of(agent_pool(osDiskSizeGB=4096))
    assert "properties.osDiskSizeGB=4096 is above the API's maximum 2048" in problem


def test_catches_a_value_in_a_nested_object_below_the_api_minimum():
    (problem,) = problems_of(agent_pool(upgradeSettings={"drainTimeoutInMinutes": 0}))
    assert "properties.upgradeSettings.drainTimeoutInMinutes=0 is below the API's minimum 1" in problem


def test_catches_a_read_only_key():
    (problem,) = problems_of(agent_pool(provisioningState="Succeeded"))
    assert "properties.provisioningState is read-only in the API" in problem


def test_catches_a_name_that_breaks_the_api_pattern():
    cluster = {
        "type": CLUSTER,
        "apiVersion": "2025-09-01",
        "name": "aks",
        "location": "eastus",
        "properties": {"agentPoolProfiles": [{"name": "System_Pool", "mode": "System"}]},
    }
    (problem,) = problems_of(cluster)
    assert "properties.agentPoolProfiles[0].name='System_Pool' does not match the API's pattern" in problem


def test_catches_a_missing_required_key():
    assignment = {
        "type": "Microsoft.Authorization/roleAssignments",
        "apiVersion": "2022-04-01",
        "name": "00000000-0000-0000-0000-000000000001",
        "scope": "/subscriptions/x",
        "properties": {"roleDefinitionId": "/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/y"},
    }
    (problem,) = problems_of(assignment)
    assert "properties.principalId is required by the API model RoleAssignmentCreateParameters" in problem


def test_a_type_and_version_without_a_model_is_a_problem_naming_the_fix():
    (problem,) = problems_of(agent_pool() | {"apiVersion": "2019-01-01"})
    assert "no API model for this type and version; add it to MODELS" in problem


def test_an_api_version_no_package_publishes_is_listed_as_unchecked_with_its_reason():
    group = {"type": "Microsoft.Resources/resourceGroups", "apiVersion": "2024-03-01", "name": "rg", "location": "x"}
    problems, unchecked = check_template(template(group))
    assert problems == [] and "azure-mgmt-resource ships" in unchecked[0]


def test_command_line_prints_one_line_per_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template(agent_pool(enableAutoScalling=True, osType="Linx"))))
    assert main([str(path)]) == 1
    assert len(capsys.readouterr().out.splitlines()) == 2


def resources_of(rendered: dict[str, Path], stack: str, arm_type: str) -> list[dict[str, Any]]:
    found = [
        r
        for r in json.loads((rendered[stack] / "azure" / "template.json").read_text())["resources"]
        if r["type"] == arm_type
    ]
    assert found, f"{stack} renders no {arm_type}"
    return found


@pytest.mark.parametrize(
    "arm_type",
    [
        "Microsoft.Authorization/roleAssignments",
        POOL,
        "Microsoft.ContainerService/managedClusters/maintenanceConfigurations",
        "Microsoft.Insights/dataCollectionRuleAssociations",
        "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials",
    ],
)
def test_child_and_extension_resources_render_without_a_location(rendered, arm_type):
    assert all("location" not in r for r in resources_of(rendered, "prod", arm_type))


def test_agent_pool_tags_render_in_its_properties(rendered):
    (pool,) = resources_of(rendered, "prod", POOL)
    assert "tags" not in pool and pool["properties"]["tags"]["stack"] == "prod"


def test_log_analytics_sku_renders_in_its_properties(rendered):
    (workspace,) = resources_of(rendered, "prod", "Microsoft.OperationalInsights/workspaces")
    assert "sku" not in workspace and workspace["properties"]["sku"] == {"name": "PerGB2018"}


def test_grafana_properties_are_not_nested_twice(rendered):
    (grafana,) = resources_of(rendered, "prod", "Microsoft.Dashboard/grafana")
    assert "properties" not in grafana["properties"] and grafana["properties"]["apiKey"] == "Disabled"


def test_data_collection_rule_association_is_scoped_to_the_cluster_not_given_it_as_a_property(rendered):
    # Managed Prometheus's and Container Insights'.
    associations = resources_of(rendered, "prod", "Microsoft.Insights/dataCollectionRuleAssociations")
    assert [a["scope"].endswith("/managedClusters/llamacpp-prod-aks") for a in associations] == [True, True]
    assert [a["properties"] for a in associations if "resourceUri" in a["properties"]] == []


def test_a_version_no_package_models_is_checked_against_the_nearest_published_one_and_says_so():
    workspace = {
        "type": "Microsoft.OperationalInsights/workspaces",
        "apiVersion": "2023-09-01",
        "name": "logs",
        "location": "eastus",
        "sku": {"name": "PerGB2018"},
        "properties": {"retentionInDays": 30},
    }
    (problem,) = problems_of(workspace)
    assert "(checked against 2022-10-01, the nearest published model)" in problem
    assert problem.endswith("sku is not in the API model Workspace; it belongs at properties.sku")


# Application Gateway for Containers: azure-mgmt-servicenetworking 2.0.0 models exactly 2025-01-01,
# as TypeSpec "hybrid" models (rest_field descriptors rather than msrest's _attribute_map).
SERVICE_NETWORKING = (
    "Microsoft.ServiceNetworking/trafficControllers",
    "Microsoft.ServiceNetworking/trafficControllers/frontends",
    "Microsoft.ServiceNetworking/trafficControllers/associations",
    "Microsoft.ServiceNetworking/trafficControllers/securityPolicies",
)
WAF_POLICY = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/waf"


def security_policy(**top: Any) -> dict[str, Any]:
    body = {"location": "eastus", "properties": {"wafPolicy": {"id": WAF_POLICY}}} | top
    return {"type": SERVICE_NETWORKING[3], "apiVersion": "2025-01-01", "name": "agc/waf"} | body


def association(**properties: Any) -> dict[str, Any]:
    body = {"associationType": "subnets", "subnet": {"id": "/subscriptions/x/subnets/ingress"}} | properties
    return {
        "type": SERVICE_NETWORKING[2],
        "apiVersion": "2025-01-01",
        "name": "agc/nodes",
        "location": "eastus",
        "properties": body,
    }


def test_the_public_stack_conforms_and_its_application_gateway_for_containers_is_checked(rendered):
    template_json = json.loads((rendered["public"] / "azure" / "template.json").read_text())
    problems, unchecked = check_template(template_json)
    assert problems == []
    assert {r["type"] for r in template_json["resources"]} >= set(SERVICE_NETWORKING)
    assert [line for line in unchecked if "ServiceNetworking" in line] == []


def test_a_valid_security_policy_and_association_have_no_problem():
    assert problems_of(security_policy(), association()) == []


def test_catches_a_misspelt_key_in_a_security_policy():
    (problem,) = problems_of(security_policy(properties={"wafPolicyId": WAF_POLICY}))
    assert "properties.wafPolicyId is not in the API model SecurityPolicyProperties; did you mean wafPolicy?" in problem


def test_catches_a_security_policy_key_outside_properties_and_says_where_it_belongs():
    (problem,) = problems_of(security_policy(properties={}, wafPolicy={"id": WAF_POLICY}))
    assert problem.endswith("wafPolicy is not in the API model SecurityPolicy; it belongs at properties.wafPolicy")


def test_catches_tags_inside_a_security_policys_properties():
    (problem,) = problems_of(security_policy(properties={"wafPolicy": {"id": WAF_POLICY}, "tags": {"stack": "dev"}}))
    assert problem.endswith("properties.tags is not in the API model SecurityPolicyProperties; it belongs at tags")


def test_catches_a_read_only_key_in_a_security_policy():
    (problem,) = problems_of(security_policy(properties={"wafPolicy": {"id": WAF_POLICY}, "policyType": "waf"}))
    assert "properties.policyType is read-only in the API" in problem


def test_catches_an_association_type_the_api_does_not_have():
    (problem,) = problems_of(association(associationType="subnet"))
    assert "properties.associationType='subnet' is not one of the API's values: subnets" in problem


def test_catches_a_value_of_the_wrong_type_in_a_typespec_model():
    (problem,) = problems_of(security_policy(properties={"wafPolicy": {"id": 5}}))
    assert "properties.wafPolicy.id=5 is int, the API takes str" in problem


def test_catches_a_missing_required_key_in_a_typespec_model():
    (problem,) = problems_of(association() | {"properties": {"subnet": {"id": "/subscriptions/x/subnets/ingress"}}})
    assert "properties.associationType is required by the API model AssociationProperties" in problem

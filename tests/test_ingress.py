"""The public HTTPS endpoint (config `ingress`): its config rules, its specs, and its resources
and their wiring under Pulumi's mocks."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from core import labels, sizing
from core.catalog import AGC_CONFIGURATION_MANAGER, NETWORK_CONTRIBUTOR, READER
from core.config import Ingress, RequestBudget, StackConfig
from core.loading import load_config
from specs import cluster as cluster_spec
from specs import ingress as spec
from tests.conftest import named, of_type, one, only, preview_problems, run_stack
from tools.server_client import png

PUBLIC = {"ingress": {"enabled": True, "hostname": "llm.example.com", "acmeEmail": "ops@example.com"}}
ROLE = "azure-native:authorization:RoleAssignment"
SUBNET = "azure-native:network:Subnet"


def custom(mocks, api_version: str, kind: str) -> dict:
    found = [
        r.inputs for r in mocks.resources if r.inputs.get("kind") == kind and r.inputs.get("apiVersion") == api_version
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def public():
    return run_stack(PUBLIC, "dev")


@pytest.fixture(scope="module")
def private():
    return run_stack({}, "dev")


# --- config --------------------------------------------------------------------------------


def test_off_by_default_and_declares_nothing_public(private):
    config, _ = load_config({}, "dev")
    assert config.ingress.enabled is False
    assert not of_type(private, "azure-native:servicenetworking:TrafficControllerInterface")
    assert not of_type(private, "kubernetes:helm.sh/v3:Release")
    assert [r.inputs["subnetName"] for r in of_type(private, SUBNET)] == ["nodes"]


def test_enabled_without_name_or_email_fails_preview_with_both_keys():
    problems = preview_problems({"ingress": {"enabled": True}})
    assert len(problems) == 2
    assert any(p.startswith("ingress.hostname is not set") and "llm.example.com" in p for p in problems)
    assert any(p.startswith("ingress.acmeEmail is not set") for p in problems)


def test_the_controller_needs_workload_identity():
    problem = only(preview_problems({**PUBLIC, "cluster": {"workloadIdentity": False}}))
    assert problem.startswith("cluster.workloadIdentity=false with ingress.enabled=true")


@pytest.mark.parametrize(
    "hostname",
    [
        "llm.example.com; curl evil",
        "../etc/passwd",
        "LLM.Example.com",
        "llm.exаmple.com",
        "-llm.example.com",
        "localhost",
        "llm.example.com\u202e",
    ],
)
def test_hostile_hostnames_are_a_sentence(hostname):
    problem = only(preview_problems({"ingress": {**PUBLIC["ingress"], "hostname": hostname}}))
    assert problem.startswith("ingress.hostname=") and "llm.example.com" in problem


def test_rate_limit_must_be_a_positive_whole_number():
    for value in (0, -5, 1.5, "many"):
        problem = only(preview_problems({"ingress": {**PUBLIC["ingress"], "requestsPerMinute": value}}))
        assert problem.startswith("ingress.requestsPerMinute="), problem


def test_answers_longer_than_the_idle_timeout_warn_to_stream():
    budget = {"parallel": 4, "requestBudget": {"outputTokens": 4096}}
    _, warnings = load_config({**PUBLIC, "server": budget}, "dev")
    (warning,) = [w for w in warnings if w.startswith("ingress.enabled=true")]
    assert "outputTokens=4096" in warning and '"stream": true' in warning
    _, quiet = load_config(PUBLIC, "dev")
    assert not [w for w in quiet if w.startswith("ingress.enabled=true")]


# --- sizing --------------------------------------------------------------------------------


def test_body_limit_admits_the_largest_image_of_the_budget_as_a_client_sends_it():
    """A real PNG at the token cap, base64 in a chat request, fits; the limit grows with images."""
    budget = RequestBudget()
    side = int((budget.image_max_tokens * 28 * 28) ** 0.5)
    image = png(side, side)
    body = json.dumps(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "word " * budget.prompt_tokens},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()},
                        },
                    ],
                }
            ],
        }
    ).encode()
    limit = spec.body_limit_bytes(budget)
    assert len(body) <= limit
    two = spec.body_limit_bytes(RequestBudget(images=2))
    assert two - limit >= sizing.image_max_bytes(budget.image_max_tokens) * 4 // 3


def test_request_timeout_covers_the_answer_at_the_slowest_decode_rate():
    assert sizing.request_timeout_seconds(1024) == 60 + 205
    assert sizing.request_timeout_seconds(1) == 61


# --- specs ---------------------------------------------------------------------------------


def test_waf_blocks_oversized_or_unsized_bodies_and_rate_limits_each_client():
    ingress, budget = Ingress(**PUBLIC["ingress"], requestsPerMinute=30), RequestBudget()
    body, length, chunked, rate = spec.waf_custom_rules(ingress, budget)
    assert body["match_conditions"][0]["match_values"] == [str(spec.body_limit_bytes(budget))]
    assert body["match_conditions"][0]["operator"] == "GreaterThan"
    assert [c["match_variables"][0]["variable_name"] for c in length["match_conditions"]] == [
        "RequestMethod",
        "RequestHeaders",
    ]
    assert length["match_conditions"][1]["negation_conditon"] is True
    assert rate["rule_type"] == "RateLimitRule" and rate["rate_limit_threshold"] == 30
    assert rate["group_by_user_session"] == [{"group_by_variables": [{"variable_name": "ClientAddr"}]}]
    assert len({r["priority"] for r in (body, length, chunked, rate)}) == 4
    # Prompts hold SQL and HTML: the managed rules must not read the body. And the WAF's own size
    # enforcement (128 KB by default, 2 MB at most) must be off, or no image gets through.
    assert spec.waf_policy_settings()["request_body_check"] is False
    assert spec.waf_policy_settings()["request_body_enforcement"] is False
    assert spec.body_limit_bytes(budget) > 2000 * 1024
    assert spec.waf_managed_rules()["managed_rule_sets"] == [
        {"rule_set_type": "Microsoft_DefaultRuleSet", "rule_set_version": "2.1"}
    ]


def waf_blocks(rules: list[Any], method: str, headers: dict[str, str]) -> bool:
    """A model of the WAF's custom match rules for these requests: conditions of a rule are ANDed;
    a comparison on a missing header does not match; `Any` matches every request (so negated,
    nothing); `Lowercase` is applied before `Contains`."""

    def matches(condition: dict[str, Any]) -> bool:
        (variable,) = condition["match_variables"]
        if variable["variable_name"] == "RequestMethod":
            value: str | None = method
        else:
            value = next((v for k, v in headers.items() if k.lower() == variable["selector"].lower()), None)
        operator, wanted = condition["operator"], condition.get("match_values", [])
        if operator == "Any":
            hit = True
        elif value is None:
            hit = False
        else:
            if "Lowercase" in condition.get("transforms", []):
                value = value.lower()
            if operator in ("GreaterThan", "GreaterThanOrEqual"):
                if not value.isdigit():
                    hit = False
                else:
                    hit = int(value) > int(wanted[0]) or (
                        operator == "GreaterThanOrEqual" and int(value) == int(wanted[0])
                    )
            elif operator == "Equal":
                hit = value in wanted
            elif operator == "Contains":
                hit = any(w in value for w in wanted)
            else:
                raise AssertionError(f"no model for operator {operator}")
        return hit != bool(condition.get("negation_conditon"))

    return any(
        r["action"] == "Block" and all(matches(c) for c in r["match_conditions"])
        for r in rules
        if r["rule_type"] == "MatchRule"
    )


@pytest.mark.parametrize(
    ("method", "headers", "blocked"),
    [
        ("POST", {"Content-Length": "1000"}, False),
        ("POST", {"Content-Length": "99999999"}, True),
        ("POST", {"Transfer-Encoding": "chunked"}, True),
        ("POST", {"Transfer-Encoding": "Chunked", "Content-Length": "10"}, True),
        ("POST", {}, True),
        ("GET", {}, False),
    ],
)
def test_waf_blocks_every_body_it_cannot_size_chunked_included(method: str, headers: dict[str, str], blocked: bool):
    rules = spec.waf_custom_rules(Ingress(**PUBLIC["ingress"]), RequestBudget())
    assert waf_blocks(rules, method, headers) is blocked


# What the newest stored copy of Microsoft's page lists as unsupported on a WAF policy associated
# with Application Gateway for Containers (learn.microsoft.com/azure/web-application-firewall/ag/
# waf-application-gateway-for-containers-overview, "Limitations", ms.date 2025-11-10): CRS managed
# rules, Bot Manager 0.1, JavaScript challenge and CAPTCHA actions, a custom block response, the
# X-Forwarded-For variable in custom rules, the HTTP DDoS rule set, and a policy in another region
# or subscription. Rate-limit custom rules are not on that list.
def test_waf_policy_uses_nothing_microsoft_lists_as_unsupported_on_the_gateway(public):
    (policy,) = of_type(public, "azure-native:network:WebApplicationFirewallPolicy")
    (gateway,) = of_type(public, "azure-native:servicenetworking:TrafficControllerInterface")
    sets = policy.inputs["managedRules"]["managedRuleSets"]
    assert {s["ruleSetType"] for s in sets} == {"Microsoft_DefaultRuleSet"}  # DRS only: no CRS, no DDoS set
    settings = policy.inputs["policySettings"]
    assert not {k for k in settings if k.startswith("customBlockResponse")}
    rules = policy.inputs["customRules"]
    assert {r["action"] for r in rules} == {"Block"}  # no JSChallenge, no CAPTCHA
    variables = [v["variableName"] for r in rules for c in r["matchConditions"] for v in c["matchVariables"]]
    variables += [
        v["variableName"] for r in rules for g in r.get("groupByUserSession", []) for v in g["groupByVariables"]
    ]
    assert variables and not [v for v in variables if "XFF" in v or "Forwarded" in v]
    headers = [v.get("selector", "") for r in rules for c in r["matchConditions"] for v in c["matchVariables"]]
    assert "x-forwarded-for" not in {h.lower() for h in headers}
    assert policy.inputs["location"] == gateway.inputs["location"]  # same region (and subscription)
    assert "RateLimitRule" in {r["ruleType"] for r in rules}


def test_route_sends_only_the_api_and_waits_for_the_longest_answer():
    ingress, budget = Ingress(**PUBLIC["ingress"]), RequestBudget(outputTokens=500)
    route = spec.api_route_spec(ingress, budget, "gw", "svc", 8008)
    (rule,) = route["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/v1"}}]
    assert rule["backendRefs"] == [{"name": "svc", "port": 8008}]
    assert rule["timeouts"] == {"request": f"{60 + 100}s"}
    assert route["parentRefs"] == [{"name": "gw", "sectionName": "https"}]


def test_gateway_serves_the_certificate_on_443_and_the_challenge_on_80():
    gateway = spec.gateway_spec(Ingress(**PUBLIC["ingress"]), "api", "srv")
    http, https = gateway["listeners"]
    assert (http["port"], http["protocol"], https["port"], https["protocol"]) == (80, "HTTP", 443, "HTTPS")
    assert https["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "srv-tls"}]
    assert gateway["addresses"] == [{"type": "alb.networking.azure.io/alb-frontend", "value": "api"}]
    issuer = spec.cluster_issuer_spec(Ingress(**PUBLIC["ingress"], acmeServer="staging"), "srv", "ns", "srv")
    assert issuer["acme"]["server"] == spec.ACME_SERVERS["staging"]
    solver = issuer["acme"]["solvers"][0]["http01"]["gatewayHTTPRoute"]
    assert solver["parentRefs"][0]["sectionName"] == "http"
    assert solver["podTemplate"]["spec"]["tolerations"] == spec.system_pool_tolerations()
    assert solver["serviceType"] == "ClusterIP"


def test_probe_asks_health_which_needs_no_key():
    probe = spec.health_check_spec("svc", "ns", 8008)
    assert probe["default"]["http"]["path"] == "/health" and probe["default"]["port"] == 8008


# --- program -------------------------------------------------------------------------------


def test_gateway_sits_in_a_delegated_subnet_of_the_nodes_vnet(public):
    subnets = {r.inputs["subnetName"]: r.inputs for r in of_type(public, SUBNET)}
    assert subnets["ingress"]["addressPrefix"] == cluster_spec.INGRESS_SUBNET_CIDR
    assert subnets["ingress"]["delegations"][0]["serviceName"] == "Microsoft.ServiceNetworking/trafficControllers"
    assert subnets["ingress"]["virtualNetworkName"] == subnets["nodes"]["virtualNetworkName"]
    association = one(public, "azure-native:servicenetworking:AssociationsInterface")
    assert association["subnet"]["id"].endswith("/subnets/ingress")
    assert association["associationType"] == "subnets"


def test_waf_policy_is_attached_in_azure_and_on_the_gateway(public):
    waf = one(public, "azure-native:network:WebApplicationFirewallPolicy")
    waf_id = f"/providers/Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies/{waf['policyName']}"
    assert one(public, "azure-native:servicenetworking:SecurityPoliciesInterface")["wafPolicy"]["id"].endswith(waf_id)
    attachment = custom(public, "alb.networking.azure.io/v1", "WebApplicationFirewallPolicy")
    assert attachment["spec"]["webApplicationFirewall"]["id"].endswith(waf_id)
    assert attachment["spec"]["targetRef"]["kind"] == "Gateway"


def test_gateway_object_names_the_azure_gateway_and_its_frontend(public):
    agc = one(public, "azure-native:servicenetworking:TrafficControllerInterface")
    frontend = one(public, "azure-native:servicenetworking:FrontendsInterface")
    gateway = custom(public, "gateway.networking.k8s.io/v1", "Gateway")
    assert gateway["metadata"]["annotations"]["alb.networking.azure.io/alb-id"].endswith(
        f"/trafficControllers/{agc['trafficControllerName']}"
    )
    assert gateway["spec"]["addresses"][0]["value"] == frontend["frontendName"]
    assert gateway["spec"]["gatewayClassName"] == "azure-alb-external"


def test_api_route_goes_to_the_server_service_and_its_port(public):
    service = one(public, "kubernetes:core/v1:Service")
    routes = [r.inputs for r in public.resources if r.inputs.get("kind") == "HTTPRoute"]
    (api,) = [r for r in routes if r["metadata"]["name"].endswith("-api")]
    (backend,) = api["spec"]["rules"][0]["backendRefs"]
    assert backend == {"name": service["metadata"]["name"], "port": service["spec"]["ports"][0]["port"]}
    assert api["metadata"]["namespace"] == service["metadata"]["namespace"]


def test_alb_controller_signs_in_as_its_own_identity_with_least_roles(public):
    federations = [
        r.inputs
        for r in of_type(public, "azure-native:managedidentity:FederatedIdentityCredential")
        if r.inputs["subject"].startswith("system:serviceaccount:azure-alb-system:")
    ]
    (federation,) = federations
    assert federation["subject"] == "system:serviceaccount:azure-alb-system:alb-controller-sa"
    assert federation["federatedIdentityCredentialResourceName"] == "azure-alb-identity"
    alb_roles = [r.inputs for r in of_type(public, ROLE) if r.name.startswith("ingress-alb-")]
    scopes = {r["roleDefinitionId"].rsplit("/", 1)[1]: [] for r in alb_roles}
    for r in alb_roles:
        scopes[r["roleDefinitionId"].rsplit("/", 1)[1]].append(r["scope"])
    assert [s.rsplit("/", 2)[-2:] for s in scopes[AGC_CONFIGURATION_MANAGER]] == [
        ["trafficControllers", "llamacpp-dev-agc"]
    ]
    assert sorted(s.rsplit("/", 1)[1] for s in scopes[NETWORK_CONTRIBUTOR]) == ["ingress", "llamacpp-dev-waf"]
    assert [s.split("/resourceGroups/")[1] for s in scopes[READER]] == [
        "llamacpp-dev-rg",
        labels.node_resource_group("dev", "eastus"),
    ]
    assert all(r["principalType"] == "ServicePrincipal" for r in alb_roles)
    release = next(
        r.inputs for r in of_type(public, "kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "alb-controller"
    )
    assert release["values"]["albController"]["podIdentity"]["clientID"] == "55555555-5555-5555-5555-555555555555"


def test_without_the_node_group_the_controller_still_reads_the_cluster_group():
    """A CI deploy identity reaches the node resource group only once bootstrap grants it there,
    after the first deploy: until then the controller's Reader stays on the cluster's own group."""
    mocks = run_stack({"ingress": {**PUBLIC["ingress"], "nodeResourceGroupReader": False}}, "dev")
    readers = [
        r.inputs["scope"]
        for r in of_type(mocks, ROLE)
        if r.name.startswith("ingress-alb-") and r.inputs["roleDefinitionId"].endswith(READER)
    ]
    assert [s.split("/resourceGroups/")[1] for s in readers] == ["llamacpp-dev-rg"]
    assert not any("/resourceGroups/MC_" in r.inputs.get("scope", "") for r in of_type(mocks, ROLE))


def test_server_admits_the_gateway_and_the_solver_admits_only_it(public, private):
    gateway = {"ipBlock": {"cidr": cluster_spec.INGRESS_SUBNET_CIDR}}
    netpol = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
    assert gateway in named(public, netpol, "llamacpp-dev-server")["spec"]["ingress"][0]["from"]
    assert gateway not in named(private, netpol, "llamacpp-dev-server")["spec"]["ingress"][0]["from"]
    solver = named(public, netpol, "llamacpp-dev-server-acme-solver")["spec"]
    assert solver["ingress"] == [{"from": [gateway], "ports": [{"port": 8089, "protocol": "TCP"}]}]
    assert solver["egress"] == []


def test_the_ready_curl_calls_the_public_https_api():
    from specs.serving import curl_example

    url = spec.public_url("llm.example.com")
    assert url == "https://llm.example.com"
    assert curl_example(url, "qwen2-vl-7b").startswith("curl -s https://llm.example.com/v1/chat/completions ")


def test_outputs_give_the_url_the_cname_target_and_a_ready_curl(monkeypatch):
    import pulumi
    from pulumi.runtime.sync_await import _sync_await

    exported: dict[str, object] = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exported.__setitem__(name, value))
    run_stack(PUBLIC, "dev")

    def value(name: str) -> object:
        return _sync_await(pulumi.Output.from_input(exported[name]).future())

    assert value("publicUrl") == "https://llm.example.com"
    assert str(value("ingressFrontendFqdn")).endswith(".alb.azure.com")
    curl = str(value("publicCurlExample"))
    assert curl.startswith("curl -s https://llm.example.com/v1/chat/completions ")
    assert f'"model": "{StackConfig().server.alias}"' in curl
    assert "$API_KEY" in curl, "the key comes from the caller's environment, never the output"


def test_the_https_listener_has_a_secret_before_lets_encrypt_answers(public):
    """A temporary self-signed certificate fills the Secret at once: the controller does not program a
    Gateway whose listener names a missing Secret, and then the port-80 challenge would fail too."""
    certificate = custom(public, "cert-manager.io/v1", "Certificate")
    assert certificate["metadata"]["annotations"] == {"cert-manager.io/issue-temporary-certificate": "true"}
    gateway = custom(public, "gateway.networking.k8s.io/v1", "Gateway")
    https = gateway["spec"]["listeners"][1]
    assert https["tls"]["certificateRefs"][0]["name"] == certificate["spec"]["secretName"]
    assert certificate["spec"]["dnsNames"] == ["llm.example.com"]


def test_the_controller_starts_after_its_roles_take_effect(public):
    (wait,) = [r.inputs for r in of_type(public, "time:index/sleep:Sleep") if r.name == "ingress-alb-roles-propagation"]
    alb_roles = [r for r in of_type(public, ROLE) if r.name.startswith("ingress-alb-")]
    assert len(wait["triggers"]["roleAssignmentId"].split(",")) == len(alb_roles) == 5


def test_every_chart_pod_tolerates_the_system_pool_since_every_node_is_tainted():
    alb = spec.alb_controller_values("client-id")
    assert alb["tolerations"] == alb["albController"]["controller"]["tolerations"] == spec.system_pool_tolerations()
    cert_manager = spec.cert_manager_values()
    for part in (cert_manager, *(cert_manager[k] for k in ("webhook", "cainjector", "startupapicheck"))):
        assert part["tolerations"] == spec.system_pool_tolerations()


def test_the_gateway_probes_the_pods_port_not_the_services():
    """A HealthCheckPolicy's port is the backend target's (learn.microsoft.com/azure/application-gateway/
    for-containers/custom-health-probe): the pod's, which differs from the Service's when service.port does."""
    mocks = run_stack({**PUBLIC, "service": {"port": 9000}}, "dev")
    (probe,) = [r.inputs for r in mocks.resources if r.inputs.get("kind") == "HealthCheckPolicy"]
    assert probe["spec"]["default"]["port"] == StackConfig().server.port == 8008

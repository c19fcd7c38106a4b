"""Specs of the public HTTPS endpoint: the WAF policy in front of Application Gateway for
Containers, the Helm values of its controller and of cert-manager, and the Gateway API objects
that the controller turns into the gateway's configuration.

Sources (MicrosoftDocs/azure-docs, articles/application-gateway/for-containers/):
quickstart-deploy-application-gateway-for-containers-alb-controller-helm.md (chart, identity),
how-to-cert-manager-lets-encrypt-gateway-api.md (BYO Gateway, ClusterIssuer, Certificate),
custom-health-probe.md (HealthCheckPolicy), web-application-firewall.md (WebApplicationFirewallPolicy),
alb-controller-release-notes.md (HTTPRoute timeouts since 1.11.1).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import network

from core import sizing
from core.config import Ingress, RequestBudget
from core.labels import SYSTEM_TAINT
from specs.cluster import INGRESS_SUBNET_CIDR

GATEWAY_CLASS = "azure-alb-external"
ALB_NAMESPACE = "azure-alb-system"
ALB_SERVICE_ACCOUNT = "alb-controller-sa"
# The quickstart installs the release record in `default` and the controller in ALB_NAMESPACE,
# which the chart creates.
ALB_RELEASE_NAMESPACE = "default"
CERT_MANAGER_NAMESPACE = "cert-manager"
HTTP_LISTENER, HTTPS_LISTENER = "http", "https"
# Only the OpenAI-compatible API goes public; /metrics, /props and /health stay in the cluster.
PUBLIC_PATH = "/v1"
HEALTH_PATH = "/health"
ACME_SERVERS = {
    "production": "https://acme-v02.api.letsencrypt.org/directory",
    "staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
# cert-manager's HTTP-01 solver pods carry this label and listen on this port.
ACME_SOLVER_LABEL = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT = 8089
# WAF custom rule priorities: lower runs first.
BODY_RULE_PRIORITY, LENGTH_RULE_PRIORITY, CHUNKED_RULE_PRIORITY, RATE_RULE_PRIORITY = 10, 11, 12, 20


def system_pool_tolerations() -> list[k8s.core.v1.TolerationArgsDict]:
    """The ingress controller, cert-manager and the standby front run on the system pool.
    (A toleration's keys are the same in the SDK's inputs and in Helm values.)"""
    key, value, effect = SYSTEM_TAINT
    return [{"key": key, "operator": "Equal", "value": value, "effect": effect}]


# --- Azure: the WAF policy -----------------------------------------------------------------


def waf_policy_settings() -> network.PolicySettingsArgsDict:
    """Prevention mode; the managed rules read headers, URL and query, not the body: prompts
    legitimately hold SQL, HTML and script text, which body inspection would block as attacks.

    Size enforcement is separate from inspection (DRS and CRS 3.2+, learn.microsoft.com/azure/
    web-application-firewall/ag/application-gateway-waf-request-size-limits) and on by default at
    128 KB (at most 2 MB), below one image: it is off, and the custom rules bound the body instead."""
    return {
        "state": "Enabled",
        "mode": "Prevention",
        "request_body_check": False,
        "request_body_enforcement": False,
    }


def waf_managed_rules() -> network.ManagedRulesDefinitionArgsDict:
    # Application Gateway for Containers takes only the Default Rule Set (DRS), not the CRS sets
    # (learn.microsoft.com/azure/web-application-firewall/ag/waf-application-gateway-for-containers-overview).
    return {"managed_rule_sets": [{"rule_set_type": "Microsoft_DefaultRuleSet", "rule_set_version": "2.1"}]}


def body_limit_bytes(budget: RequestBudget) -> int:
    return sizing.request_body_bytes(budget.images, budget.image_max_tokens, budget.prompt_tokens)


def waf_custom_rules(ingress: Ingress, budget: RequestBudget) -> list[network.WebApplicationFirewallCustomRuleArgsDict]:
    """A body no larger than the request budget allows, a declared length to check it by, and a
    per-client rate limit (Microsoft's rate-limit pattern: every address but 255.255.255.255)."""
    return [
        {
            "name": "BodyOverRequestBudget",
            "priority": BODY_RULE_PRIORITY,
            "rule_type": "MatchRule",
            "action": "Block",
            "match_conditions": [
                {
                    "match_variables": [{"variable_name": "RequestHeaders", "selector": "Content-Length"}],
                    "operator": "GreaterThan",
                    "match_values": [str(body_limit_bytes(budget))],
                }
            ],
        },
        {
            # A POST whose Content-Length is missing or not a number could not be sized (chunked
            # HTTP/1.1, or HTTP/2 without the header). No comparison matches a missing header, so the
            # negated ">= 0" matches exactly those. (The earlier form negated operator Any, which
            # may match every request, header or not, and then never blocks; the stored Microsoft
            # pages do not say which, so no rule here relies on Any.)
            "name": "BodyWithoutLength",
            "priority": LENGTH_RULE_PRIORITY,
            "rule_type": "MatchRule",
            "action": "Block",
            "match_conditions": [
                {
                    "match_variables": [{"variable_name": "RequestMethod"}],
                    "operator": "Equal",
                    "match_values": ["POST"],
                },
                {
                    "match_variables": [{"variable_name": "RequestHeaders", "selector": "Content-Length"}],
                    "operator": "GreaterThanOrEqual",
                    "negation_conditon": True,  # sic: the API's spelling
                    "match_values": ["0"],
                },
            ],
        },
        {
            # A chunked body, whatever else the request says: its size is known only once it is read.
            "name": "ChunkedBody",
            "priority": CHUNKED_RULE_PRIORITY,
            "rule_type": "MatchRule",
            "action": "Block",
            "match_conditions": [
                {
                    "match_variables": [{"variable_name": "RequestHeaders", "selector": "Transfer-Encoding"}],
                    "operator": "Contains",
                    "transforms": ["Lowercase"],
                    "match_values": ["chunked"],
                }
            ],
        },
        {
            "name": "PerClientRateLimit",
            "priority": RATE_RULE_PRIORITY,
            "rule_type": "RateLimitRule",
            "action": "Block",
            "rate_limit_duration": "OneMin",
            "rate_limit_threshold": ingress.requests_per_minute,
            "group_by_user_session": [{"group_by_variables": [{"variable_name": "ClientAddr"}]}],
            "match_conditions": [
                {
                    "match_variables": [{"variable_name": "RemoteAddr"}],
                    "operator": "IPMatch",
                    "negation_conditon": True,
                    "match_values": ["255.255.255.255/32"],
                }
            ],
        },
    ]


# --- Helm values ---------------------------------------------------------------------------


def alb_controller_values(client_id: pulumi.Input[str]) -> dict[str, Any]:
    """Every node is tainted, so every pod of the chart needs the system pool's toleration: the
    controller's own key, and the top-level `tolerations` that alb-controller-helm-chart.md sets
    "to each of the ALB Controller pods" (its bootstrap and CRD pods too)."""
    tolerations = system_pool_tolerations()
    return {
        "albController": {
            "namespace": ALB_NAMESPACE,
            "podIdentity": {"clientID": client_id},
            "controller": {"tolerations": tolerations},
        },
        "tolerations": tolerations,
    }


def cert_manager_values() -> dict[str, Any]:
    """CRDs from the chart, and the Gateway API support the HTTP-01 solver of the ClusterIssuer needs."""
    tolerations = system_pool_tolerations()
    return {
        "crds": {"enabled": True},
        # gatewayAPI.enabled replaces the deprecated enableGatewayAPI in v1.21 (cert-manager's
        # internal/apis/config/controller/v1alpha1/defaults.go migrates one to the other).
        "config": {
            "apiVersion": "controller.config.cert-manager.io/v1alpha1",
            "kind": "ControllerConfiguration",
            "gatewayAPI": {"enabled": True},
        },
        "tolerations": tolerations,
        "webhook": {"tolerations": tolerations},
        "cainjector": {"tolerations": tolerations},
        "startupapicheck": {"tolerations": tolerations},
    }


# --- Kubernetes: issuer, certificate, gateway, routes, policies -----------------------------


def tls_secret_name(server_name: str) -> str:
    return f"{server_name}-tls"


def cluster_issuer_spec(
    ingress: Ingress, gateway: str, namespace: pulumi.Input[str], server_name: str
) -> dict[str, Any]:
    """Let's Encrypt over HTTP-01, answered through the Gateway's port-80 listener."""
    return {
        "acme": {
            "server": ACME_SERVERS[ingress.acme_server],
            "email": ingress.acme_email,
            "privateKeySecretRef": {"name": f"{server_name}-acme-account"},
            "solvers": [
                {
                    "http01": {
                        "gatewayHTTPRoute": {
                            "parentRefs": [
                                {
                                    "name": gateway,
                                    "namespace": namespace,
                                    "kind": "Gateway",
                                    "sectionName": HTTP_LISTENER,
                                }
                            ],
                            # Every node is tainted (system or GPU): the solver runs on the system pool.
                            "podTemplate": {"spec": {"tolerations": system_pool_tolerations()}},
                            # Its Service defaults to NodePort; the gateway reaches pods directly.
                            "serviceType": "ClusterIP",
                        }
                    }
                }
            ],
        }
    }


# A self-signed certificate in the Secret until Let's Encrypt's arrives: the ALB controller does
# not program a Gateway whose HTTPS listener names a missing Secret, and then the port-80 challenge
# fails too (github.com/Azure/AKS/issues/5509; cert-manager's pkg/apis/certmanager/v1/types.go).
CERTIFICATE_ANNOTATIONS = {"cert-manager.io/issue-temporary-certificate": "true"}


def certificate_spec(ingress: Ingress, issuer: pulumi.Input[str], server_name: str) -> dict[str, Any]:
    return {
        "secretName": tls_secret_name(server_name),
        "dnsNames": [ingress.hostname],
        "issuerRef": {"name": issuer, "kind": "ClusterIssuer", "group": "cert-manager.io"},
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
    }


def gateway_annotations(agc_id: pulumi.Input[str]) -> dict[str, pulumi.Input[str]]:
    return {"alb.networking.azure.io/alb-id": agc_id}


def gateway_spec(ingress: Ingress, frontend: pulumi.Input[str], server_name: str) -> dict[str, Any]:
    """Port 80 for Let's Encrypt's challenge and a redirect; port 443 with the certificate."""
    same = {"namespaces": {"from": "Same"}}
    return {
        "gatewayClassName": GATEWAY_CLASS,
        "addresses": [{"type": "alb.networking.azure.io/alb-frontend", "value": frontend}],
        "listeners": [
            {
                "name": HTTP_LISTENER,
                "port": 80,
                "protocol": "HTTP",
                "hostname": ingress.hostname,
                "allowedRoutes": same,
            },
            {
                "name": HTTPS_LISTENER,
                "port": 443,
                "protocol": "HTTPS",
                "hostname": ingress.hostname,
                "allowedRoutes": same,
                "tls": {
                    "mode": "Terminate",
                    "certificateRefs": [{"kind": "Secret", "name": tls_secret_name(server_name)}],
                },
            },
        ],
    }


def api_route_spec(
    ingress: Ingress, budget: RequestBudget, gateway: str, service: pulumi.Input[str], port: int
) -> dict[str, Any]:
    """HTTPS /v1 to the server, waiting as long as the longest answer of the request budget takes
    (the gateway's own default is 60 s, too short for a long answer)."""
    return {
        "parentRefs": [{"name": gateway, "sectionName": HTTPS_LISTENER}],
        "hostnames": [ingress.hostname],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": PUBLIC_PATH}}],
                "backendRefs": [{"name": service, "port": port}],
                "timeouts": {"request": f"{sizing.request_timeout_seconds(budget.output_tokens)}s"},
            }
        ],
    }


def redirect_route_spec(ingress: Ingress, gateway: str) -> dict[str, Any]:
    """Plain HTTP gets a redirect to HTTPS (the ACME challenge's own route is more specific)."""
    return {
        "parentRefs": [{"name": gateway, "sectionName": HTTP_LISTENER}],
        "hostnames": [ingress.hostname],
        "rules": [
            {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}
        ],
    }


def health_check_spec(
    service: pulumi.Input[str], namespace: pulumi.Input[str], port: int, path: str = HEALTH_PATH
) -> dict[str, Any]:
    """The gateway probes /health (open without the key), or with the standby front the front's own
    readiness; its default probe asks `/`, which needs the key."""
    return {
        "targetRef": {"group": "", "kind": "Service", "name": service, "namespace": namespace},
        "default": {
            "interval": "5s",
            "timeout": "3s",
            "healthyThreshold": 1,
            "unhealthyThreshold": 3,
            "port": port,
            "http": {"path": path, "match": {"statusCodes": [{"start": 200, "end": 299}]}},
            "useTLS": False,
        },
    }


def waf_attachment_spec(gateway: str, namespace: pulumi.Input[str], waf_policy_id: pulumi.Input[str]) -> dict[str, Any]:
    return {
        "targetRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gateway, "namespace": namespace},
        "webApplicationFirewall": {"id": waf_policy_id},
    }


def gateway_peer() -> k8s.networking.v1.NetworkPolicyPeerArgsDict:
    """Where the gateway's proxies reach pods from: its own subnet, which the overlay routes to pods."""
    return {"ip_block": {"cidr": INGRESS_SUBNET_CIDR}}


def acme_solver_network_policy_spec() -> k8s.networking.v1.NetworkPolicySpecArgsDict:
    """cert-manager's HTTP-01 solver answers the gateway on its port, and sends nothing."""
    return {
        "pod_selector": {"match_labels": ACME_SOLVER_LABEL},
        "policy_types": ["Ingress", "Egress"],
        "ingress": [{"from_": [gateway_peer()], "ports": [{"port": ACME_SOLVER_PORT, "protocol": "TCP"}]}],
        "egress": [],
    }


def public_url(hostname: str) -> str:
    return f"https://{hostname}"

"""PublicEndpoint: the server on a public HTTPS name, through Application Gateway for Containers
(bring-your-own deployment) with Azure WAF, a Let's Encrypt certificate from cert-manager, and
the ALB controller that configures the gateway from Gateway API objects.

Why this and not the application routing add-on: its NGINX ingress has Azure support only
through November 2026 (learn.microsoft.com/azure/aks/app-routing-gateway-api), and its Gateway
API successor needs ManagedCluster API 2026-02-01, which the pinned azure-native cannot set.
Application Gateway for Containers is Azure's managed Gateway API implementation; its WAF gives
the rate limit and the body limit, and its proxies run outside the cluster's nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi_azure_native import network, servicenetworking

from components.cluster import AksCluster
from components.serving import ModelServer
from core import catalog, labels
from core.config import Ingress, RequestBudget
from specs import cluster as cluster_spec
from specs import ingress as spec
from specs import serving as serving_spec

ALB_SUBJECT = f"system:serviceaccount:{spec.ALB_NAMESPACE}:{spec.ALB_SERVICE_ACCOUNT}"
# The name Microsoft's quickstart gives the federated credential.
ALB_FEDERATION_NAME = "azure-alb-identity"
FRONTEND_NAME = "api"


@dataclass(frozen=True, kw_only=True)
class PublicEndpointArgs:
    stack: str  # the stack name; every name and label derives from it
    ingress: Ingress  # config `ingress`: host name, Let's Encrypt, rate limit
    budget: RequestBudget  # config `server.requestBudget`: sizes the body limit and the timeout
    cluster: AksCluster  # its VNet, OIDC issuer and Kubernetes provider
    server: ModelServer  # the Service the route sends to


class PublicEndpoint(pulumi.ComponentResource):
    """https://<ingress.hostname>/v1 to the model server: WAF, TLS, rate limit and body limit."""

    def __init__(self, name: str, args: PublicEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:ingress:PublicEndpoint", name, None, opts)
        cluster, stack, i = args.cluster, args.stack, args.ingress
        assert i.hostname is not None, "core.rules.ingress_is_complete requires a hostname"
        self._name, self._stack, self._cluster = name, stack, cluster
        self._tags = labels.tags(stack, "ingress")
        self._node_group_reader = i.node_resource_group_reader
        child = pulumi.ResourceOptions(parent=self)

        subnet = cluster.subnet(
            f"{name}-subnet",
            subnet_name="ingress",
            cidr=cluster_spec.INGRESS_SUBNET_CIDR,
            delegations=cluster_spec.ingress_subnet_delegations(),
            parent=self,
        )
        # Its checkov skip, with its reason, is in core/skips.py.
        waf = network.WebApplicationFirewallPolicy(
            f"{name}-waf",
            policy_name=labels.name(stack, "waf"),
            resource_group_name=cluster.resource_group_name,
            location=cluster.location,
            policy_settings=spec.waf_policy_settings(),
            managed_rules=spec.waf_managed_rules(),
            custom_rules=spec.waf_custom_rules(i, args.budget),
            tags=self._tags,
            opts=child,
        )
        placed: dict[str, Any] = {
            "resource_group_name": cluster.resource_group_name,
            "location": cluster.location,
            "tags": self._tags,
            "opts": child,
        }
        gateway = servicenetworking.TrafficControllerInterface(
            f"{name}-agc", traffic_controller_name=labels.name(stack, "agc"), **placed
        )
        # The gateway's children: its public frontend, its subnet, its WAF.
        in_gateway = {**placed, "traffic_controller_name": gateway.name}
        frontend = servicenetworking.FrontendsInterface(f"{name}-frontend", frontend_name=FRONTEND_NAME, **in_gateway)
        servicenetworking.AssociationsInterface(
            f"{name}-association",
            association_name="nodes-vnet",
            association_type=servicenetworking.AssociationType.SUBNETS,
            subnet={"id": subnet.id},
            **in_gateway,
        )
        servicenetworking.SecurityPoliciesInterface(
            f"{name}-security-policy", security_policy_name="waf", waf_policy={"id": waf.id}, **in_gateway
        )
        controller = self._controller(gateway, subnet, waf)
        self._gateway_objects(args, gateway.id, frontend.name, waf.id, controller)

        self.frontend_fqdn: pulumi.Output[str] = frontend.fqdn
        self.url = pulumi.Output.from_input(spec.public_url(i.hostname))
        self.curl_example = pulumi.Output.all(self.url, args.server.alias).apply(
            lambda v: serving_spec.curl_example(v[0], v[1])
        )
        self.register_outputs({"url": self.url, "frontendFqdn": self.frontend_fqdn, "curlExample": self.curl_example})

    def _controller(
        self,
        gateway: servicenetworking.TrafficControllerInterface,
        subnet: network.Subnet,
        waf: network.WebApplicationFirewallPolicy,
    ) -> list[pulumi.Resource]:
        """The ALB controller, signing in as its own workload identity with the roles the BYO
        quickstart names: configuration manager of the gateway, join rights on its subnet and
        the WAF policy, and Reader on the cluster's groups.

        Reader goes on the cluster's own group (the cluster, its VNet and the gateway live there;
        Esri/arcgis-gitops' ALB module grants it there: "in ALB Controller 1.2.3 the scope had to be
        the node resource group ... in 1.3.7 ... the resource group of the AKS cluster") and, with
        `ingress.nodeResourceGroupReader`, on the node resource group too, as Microsoft's Helm
        quickstart does (learn.microsoft.com/azure/application-gateway/for-containers/
        quickstart-deploy-application-gateway-for-containers-alb-controller-helm)."""
        name, stack, cluster = self._name, self._stack, self._cluster
        identity, federation = cluster.workload_identity(
            f"{name}-alb",
            identity_name=labels.name(stack, "alb"),
            credential_name=ALB_FEDERATION_NAME,
            subject=ALB_SUBJECT,
            tags=self._tags,
            parent=self,
        )
        grants: list[tuple[str, str, pulumi.Input[str]]] = [
            ("configures-agc", catalog.AGC_CONFIGURATION_MANAGER, gateway.id),
            ("joins-subnet", catalog.NETWORK_CONTRIBUTOR, subnet.id),
            ("joins-waf", catalog.NETWORK_CONTRIBUTOR, waf.id),
            ("reads-cluster", catalog.READER, cluster.resource_group.id),
        ]
        if self._node_group_reader:
            node_group = pulumi.Output.concat(
                "/subscriptions/",
                cluster.subscription_id,
                "/resourceGroups/",
                cluster.cluster.node_resource_group.apply(lambda g: g or ""),
            )
            grants.append(("reads-nodes", catalog.READER, node_group))
        roles = [
            cluster.grant(f"{name}-alb-{what}", role=role, principal_id=identity.principal_id, scope=scope, parent=self)
            for what, role, scope in grants
        ]
        # The controller signs in at start: its roles must have taken effect, or the atomic install
        # rolls back on a controller that cannot configure the gateway.
        roles_ready = cluster.role_wait(f"{name}-alb-roles", *roles, parent=self)
        alb = self._release(
            "alb-controller",
            catalog.ALB_CONTROLLER_CHART,
            spec.ALB_RELEASE_NAMESPACE,
            spec.alb_controller_values(identity.client_id),
            depends_on=[federation, roles_ready],
        )
        # cert-manager stops at start when the Gateway API CRDs (from the ALB chart) are missing.
        cert_manager = self._release(
            "cert-manager",
            catalog.CERT_MANAGER_CHART,
            spec.CERT_MANAGER_NAMESPACE,
            spec.cert_manager_values(),
            depends_on=[alb],
            create_namespace=True,
        )
        return [alb, cert_manager]

    def _release(
        self,
        release: str,
        chart: tuple[str, str],
        namespace: str,
        values: dict[str, Any],
        *,
        depends_on: list[pulumi.Resource],
        create_namespace: bool = False,
    ) -> k8s.helm.v3.Release:
        """A pinned chart, installed atomically: a failed install rolls back and fails `pulumi up`."""
        url, version = chart
        return k8s.helm.v3.Release(
            f"{self._name}-{release}",
            name=release,
            chart=url,
            version=version,
            namespace=namespace,
            create_namespace=create_namespace,
            values=values,
            atomic=True,
            opts=pulumi.ResourceOptions(parent=self, provider=self._cluster.provider, depends_on=depends_on),
        )

    def _gateway_objects(
        self,
        args: PublicEndpointArgs,
        agc_id: pulumi.Output[str],
        frontend: pulumi.Output[str],
        waf_id: pulumi.Output[str],
        controller: list[pulumi.Resource],
    ) -> None:
        """Issuer, certificate, Gateway, routes, health probe and WAF attachment, in the serving
        namespace beside the Service they front."""
        name, server, i = self._name, args.server, args.ingress
        ns, gateway_name = server.namespace, server.names.server
        meta = labels.labels(args.stack, "ingress", server.version)
        opts = pulumi.ResourceOptions(parent=self, provider=self._cluster.provider, depends_on=controller)

        def custom(suffix: str, api_version: str, kind: str, object_name: str, body: object, **extra: object) -> None:
            metadata = {"name": object_name, "namespace": ns, "labels": meta, **extra}
            k8s.apiextensions.CustomResource(
                f"{name}-{suffix}", api_version=api_version, kind=kind, metadata=metadata, spec=body, opts=opts
            )

        issuer_name = labels.name(args.stack, "letsencrypt")
        k8s.apiextensions.CustomResource(
            f"{name}-issuer",
            api_version="cert-manager.io/v1",
            kind="ClusterIssuer",
            metadata={"name": issuer_name, "labels": meta},
            spec=spec.cluster_issuer_spec(i, gateway_name, ns, server.names.server),
            opts=opts,
        )
        custom(
            "certificate",
            "cert-manager.io/v1",
            "Certificate",
            gateway_name,
            spec.certificate_spec(i, issuer_name, server.names.server),
            annotations=spec.CERTIFICATE_ANNOTATIONS,
        )
        custom(
            "gateway",
            "gateway.networking.k8s.io/v1",
            "Gateway",
            gateway_name,
            spec.gateway_spec(i, frontend, server.names.server),
            annotations=spec.gateway_annotations(agc_id),
        )
        custom(
            "api-route",
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            f"{gateway_name}-api",
            spec.api_route_spec(i, args.budget, gateway_name, server.service_name, server.port),
        )
        custom(
            "redirect-route",
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            f"{gateway_name}-redirect",
            spec.redirect_route_spec(i, gateway_name),
        )
        custom(
            "health-check",
            "alb.networking.azure.io/v1",
            "HealthCheckPolicy",
            gateway_name,
            spec.health_check_spec(server.service_name, ns, server.probe_port, server.probe_path),
        )
        custom(
            "waf-attachment",
            "alb.networking.azure.io/v1",
            "WebApplicationFirewallPolicy",
            gateway_name,
            spec.waf_attachment_spec(gateway_name, ns, waf_id),
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-acme-solver-netpol",
            metadata={"name": f"{gateway_name}-acme-solver", "namespace": ns, "labels": meta},
            spec=spec.acme_solver_network_policy_spec(),
            opts=pulumi.ResourceOptions(parent=self, provider=self._cluster.provider),
        )

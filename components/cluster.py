"""AksCluster: resource group, AKS cluster with its system pool, the A10 GPU pool, the container
registry with AcrPull for the kubelet, and a Kubernetes provider built from the cluster's credentials."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumiverse_time as time
from pulumi_azure_native import (
    authorization,
    containerregistry,
    containerservice,
    managedidentity,
    monitor,
    network,
    operationalinsights,
    resources,
)

from core import catalog, labels, permissions
from core.catalog import GPU_VM_SIZES
from core.config import Cluster, Registry
from core.identity import PrincipalType, deployer_principal_type
from core.kubeconfig import decode, with_login_mode
from specs import cluster as spec
from specs.azure import role_assignment, role_propagation_wait

# Where `python -m tools.role_ready` finds the project's modules.
PROJECT_ROOT = Path(__file__).resolve().parent.parent

LOG_RETENTION_DAYS = 30
# The audience of the tokens a workload identity exchanges (learn.microsoft.com/azure/aks/workload-identity-overview).
TOKEN_AUDIENCE = "api://AzureADTokenExchange"
REGISTRY_SUFFIX_LENGTH = 6


@dataclass(frozen=True, kw_only=True)
class AksClusterArgs:
    stack: str  # the stack name; every name and tag derives from it
    cluster: Cluster  # config `cluster`: region, version, pools, access, add-ons, login mode
    registry: Registry  # config `registry`
    keda_addon: bool  # turn on AKS's KEDA add-on (the queue autoscaler needs it)


class AksCluster(pulumi.ComponentResource):
    """An AKS cluster ready for GPU serving, and the registry its nodes pull from."""

    def __init__(self, name: str, args: AksClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:cluster:AksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        c, stack = args.cluster, args.stack
        tags = labels.tags(stack, "cluster")
        client = authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.location = c.location
        self.tenant_id = client.tenant_id
        self.subscription_id = client.subscription_id
        self.deployer_object_id: pulumi.Output[str] = (
            pulumi.Output.from_input(c.deployer_object_id) if c.deployer_object_id else client.object_id
        )
        self.deployer_principal_type = self._deployer_principal_type(c)
        self.role_propagation_seconds = c.role_propagation_seconds

        group_name = labels.name(stack, "rg")
        self.resource_group = resources.ResourceGroup(
            f"{name}-rg",
            resource_group_name=group_name,
            location=c.location,
            tags=tags,
            opts=child.merge(self._adopt(group_name)) if c.adopt_resource_group else child,
        )
        self.resource_group_name = self.resource_group.name
        workspace = self._log_workspace(name, stack, c) if c.monitoring else None
        self._last_subnet: network.Subnet | None = None
        self.vnet = self._vnet(name, stack, c, tags)
        self.node_subnet = self.subnet(f"{name}-nodes", subnet_name="nodes", cidr=spec.NODE_SUBNET_CIDR)
        identity, identity_ready = self._control_plane_identity(name, stack, c, tags)
        # Its checkov skips, with their reasons, are in core/skips.py.
        self.cluster = containerservice.ManagedCluster(
            f"{name}-aks",
            resource_name_=labels.name(stack, "aks"),
            resource_group_name=self.resource_group_name,
            location=c.location,
            dns_prefix=labels.name(stack, "aks"),
            kubernetes_version=c.kubernetes_version,
            sku={"name": "Base", "tier": c.tier},
            # User-assigned, so that it holds Network Contributor on the node subnet before the
            # cluster exists: AKS joins the subnet and places internal load balancers there.
            identity={
                "type": containerservice.ResourceIdentityType.USER_ASSIGNED,
                "user_assigned_identities": [identity.id],
            },
            enable_rbac=True,
            disable_local_accounts=c.local_accounts_disabled,
            aad_profile=spec.aad_profile(c, client.tenant_id),
            oidc_issuer_profile={"enabled": c.workload_identity},
            security_profile=spec.security_profile(c),
            api_server_access_profile=spec.api_server_access(c),
            network_profile=spec.network_profile(),
            auto_upgrade_profile=spec.auto_upgrade(c),
            addon_profiles=spec.addon_profiles(c, workspace.id if workspace else None),
            azure_monitor_profile={"metrics": {"enabled": c.monitoring}},
            workload_auto_scaler_profile={"keda": {"enabled": args.keda_addon}},
            agent_pool_profiles=[spec.system_pool(c, self.node_subnet.id)],
            tags=tags,
            # The GPU pool is its own AgentPool resource; inline pools are fragile to edit later.
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=["agentPoolProfiles[0].count"],
                depends_on=[identity_ready] if identity_ready else [],
            ),
        )
        if workspace is not None:
            self._container_insights(name, stack, c, workspace)
        self.gpu_pool = self._gpu_pool(name, c, tags)
        self.registry = self._registry(name, stack, c, args.registry)
        self.login_server = self.registry.login_server
        self.acr_pull, self.acr_push = self._roles(name)
        # What uses the deployer's new roles waits until Azure grants them (the image build polls
        # for its own registry permission: components/image.py). A deployer that bootstrap made
        # cluster admin of the whole group long ago needs neither the grant nor the wait.
        self.deployer_admin_ready: list[pulumi.Resource] = []
        if not c.deployer_holds_cluster_admin:
            # ...and administers the cluster through Azure RBAC (local accounts are off).
            deployer_admin = self.grant_deployer(
                f"{name}-deployer-admin", role=catalog.AKS_RBAC_CLUSTER_ADMIN, scope=self.cluster.id
            )
            self.deployer_admin_ready.append(
                self.deployer_role_ready(
                    f"{name}-deployer-admin", deployer_admin, scope=self.cluster.id, needed=permissions.AKS_ADMIN
                )
            )
        self.kubeconfig, self.provider = self._kubernetes(name, c.kubelogin_mode)
        self.oidc_issuer = self.cluster.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else "")
        self.register_outputs(
            {
                "clusterName": self.cluster.name,
                "resourceGroup": self.resource_group_name,
                "loginServer": self.login_server,
                "kubeconfig": self.kubeconfig,
            }
        )

    def _gpu_pool(self, name: str, c: Cluster, tags: dict[str, str]) -> containerservice.AgentPool:
        """The A10 pool, its own resource beside the cluster, and the maintenance windows of both."""
        child = pulumi.ResourceOptions(parent=self)
        pool = containerservice.AgentPool(
            f"{name}-gpu",
            resource_name_=self.cluster.name,
            resource_group_name=self.resource_group_name,
            tags=tags,
            **spec.gpu_pool(c, GPU_VM_SIZES[c.gpu_pool.vm_size], self.node_subnet.id),
            # The cluster autoscaler owns the node count once the pool exists.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["count"]),
        )
        for config_name, schedule in spec.MAINTENANCE_SCHEDULES:
            containerservice.MaintenanceConfiguration(
                f"{name}-maintenance-{schedule}",
                config_name=config_name,
                resource_name_=self.cluster.name,
                resource_group_name=self.resource_group_name,
                maintenance_window=spec.maintenance_window(c.maintenance_window),
                opts=child,
            )
        return pool

    def _vnet(self, name: str, stack: str, c: Cluster, tags: dict[str, str]) -> network.VirtualNetwork:
        """The cluster's VNet. Its subnets (`subnet`) are their own resources, never inline, so that
        adding one is no VNet diff; azure-native keeps such subnets when it updates the VNet
        (github.com/pulumi/pulumi-azure-native/issues/611)."""
        return network.VirtualNetwork(
            f"{name}-vnet",
            virtual_network_name=labels.name(stack, "vnet"),
            resource_group_name=self.resource_group_name,
            location=c.location,
            address_space=spec.vnet_address_space(),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["subnets"]),
        )

    def subnet(
        self,
        name: str,
        *,
        subnet_name: str,
        cidr: str,
        delegations: list[network.DelegationArgsDict] | None = None,
        parent: pulumi.Resource | None = None,
    ) -> network.Subnet:
        """A subnet of the cluster's VNet, made after the one before it: Azure refuses concurrent
        changes to one VNet's subnets. Other components pass themselves as `parent`."""
        after = [self._last_subnet] if self._last_subnet is not None else None
        self._last_subnet = network.Subnet(
            name,
            subnet_name=subnet_name,
            virtual_network_name=self.vnet.name,
            resource_group_name=self.resource_group_name,
            address_prefix=cidr,
            delegations=delegations,
            opts=pulumi.ResourceOptions(parent=parent or self, depends_on=after),
        )
        return self._last_subnet

    def _control_plane_identity(
        self, name: str, stack: str, c: Cluster, tags: dict[str, str]
    ) -> tuple[managedidentity.UserAssignedIdentity, pulumi.Resource | None]:
        """The cluster's own identity, with Network Contributor on the node subnet
        (learn.microsoft.com/azure/aks/configure-azure-cni: the cluster identity needs it on a
        custom subnet), and the wait for that role to take effect before the cluster is created.

        With `cluster.adoptControlPlaneIdentity` bootstrap made the identity and its role (on the
        stack's group, which holds the subnet) before the first deploy: the program imports the
        identity, keeps it on destroy (bootstrap's role names it), and has nothing to wait for."""
        identity_name = labels.name(stack, "aks-identity")
        if c.adopt_control_plane_identity:
            subscription = authorization.get_client_config(opts=pulumi.InvokeOptions(parent=self)).subscription_id
            adopted = managedidentity.UserAssignedIdentity(
                f"{name}-control-plane",
                resource_name_=identity_name,
                resource_group_name=self.resource_group_name,
                location=self.location,
                tags=tags,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    import_=(
                        f"/subscriptions/{subscription}/resourceGroups/{labels.name(stack, 'rg')}"
                        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{identity_name}"
                    ),
                    retain_on_delete=True,
                ),
            )
            return adopted, None
        identity = self.identity(f"{name}-control-plane", identity_name=identity_name, tags=tags)
        subnet_role = self.grant(
            f"{name}-subnet-network",
            role=catalog.NETWORK_CONTRIBUTOR,
            principal_id=identity.principal_id,
            scope=self.node_subnet.id,
        )
        return identity, self.role_wait(f"{name}-subnet-network", subnet_role)

    def _log_workspace(self, name: str, stack: str, c: Cluster) -> operationalinsights.Workspace:
        """Where Container Insights sends the cluster's logs."""
        return operationalinsights.Workspace(
            f"{name}-logs",
            workspace_name=labels.name(stack, "logs"),
            resource_group_name=self.resource_group_name,
            location=c.location,
            sku={"name": "PerGB2018"},
            retention_in_days=LOG_RETENTION_DAYS,
            tags=labels.tags(stack, "cluster"),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _container_insights(self, name: str, stack: str, c: Cluster, workspace: operationalinsights.Workspace) -> None:
        """The data collection rule that Container Insights' managed identity sends by, and its
        association with the cluster."""
        child = pulumi.ResourceOptions(parent=self)
        rule = monitor.DataCollectionRule(
            f"{name}-insights-dcr",
            data_collection_rule_name=labels.name(stack, "insights-dcr"),
            kind="Linux",
            data_sources=spec.container_insights_data_sources(),
            destinations=spec.container_insights_destination(workspace.id),
            data_flows=spec.container_insights_data_flows(),
            resource_group_name=self.resource_group_name,
            location=c.location,
            tags=labels.tags(stack, "cluster"),
            opts=child,
        )
        monitor.DataCollectionRuleAssociation(
            f"{name}-insights-dcra",
            association_name=spec.CONTAINER_INSIGHTS_ASSOCIATION,
            resource_uri=self.cluster.id,
            data_collection_rule_id=rule.id,
            opts=child,
        )

    def _roles(self, name: str) -> tuple[authorization.RoleAssignment, ...]:
        """AcrPull for the kubelet; AcrPush for whoever runs `pulumi up`."""
        kubelet_object_id = self.cluster.identity_profile.apply(lambda p: (p or {})["kubeletidentity"].object_id or "")
        acr_pull = self.grant(
            f"{name}-acr-pull", role=catalog.ACR_PULL, principal_id=kubelet_object_id, scope=self.registry.id
        )
        # Whoever runs `pulumi up` pushes the image with an Entra token: no admin user, no password.
        acr_push = self.grant_deployer(f"{name}-acr-push", role=catalog.ACR_PUSH, scope=self.registry.id)
        return acr_pull, acr_push

    def _adopt(self, group_name: str) -> pulumi.ResourceOptions:
        """Import the group bootstrap made (same name, location and tags, so the import shows no
        difference) and keep it on destroy: bootstrap's role assignments are scoped to it. An import
        id equal to the state's is no change on later updates."""
        subscription = authorization.get_client_config(opts=pulumi.InvokeOptions(parent=self)).subscription_id
        return pulumi.ResourceOptions(
            import_=f"/subscriptions/{subscription}/resourceGroups/{group_name}", retain_on_delete=True
        )

    def _deployer_principal_type(self, c: Cluster) -> pulumi.Output[PrincipalType]:
        """User or ServicePrincipal: configured, or read from the ARM token azure-native signs in with."""
        if c.deployer_principal_type != "auto":
            return pulumi.Output.from_input(c.deployer_principal_type)
        token = authorization.get_client_token_output(opts=pulumi.InvokeOutputOptions(parent=self)).token

        def decide(value: str) -> PrincipalType:
            try:
                return deployer_principal_type(c.deployer_principal_type, value)
            except ValueError as err:
                raise pulumi.RunError(str(err)) from None

        return token.apply(decide)

    def grant(
        self,
        name: str,
        *,
        role: str,
        principal_id: pulumi.Input[str],
        scope: pulumi.Input[str],
        principal_type: pulumi.Input[PrincipalType] = "ServicePrincipal",
        parent: pulumi.Resource | None = None,
    ) -> authorization.RoleAssignment:
        """The built-in `role` on `scope` for a principal of this subscription (a managed identity
        unless `principal_type` says otherwise). Other components pass themselves as `parent`."""
        return authorization.RoleAssignment(
            name,
            **role_assignment(
                role=role,
                principal_id=principal_id,
                principal_type=principal_type,
                scope=scope,
                subscription_id=self.subscription_id,
            ),
            opts=pulumi.ResourceOptions(parent=parent or self),
        )

    def grant_deployer(
        self, name: str, *, role: str, scope: pulumi.Input[str], parent: pulumi.Resource | None = None
    ) -> authorization.RoleAssignment:
        """The built-in `role` on `scope` for whoever deploys (or `cluster.deployerObjectId`)."""
        return self.grant(
            name,
            role=role,
            principal_id=self.deployer_object_id,
            principal_type=self.deployer_principal_type,
            scope=scope,
            parent=parent,
        )

    def identity(
        self, name: str, *, identity_name: str, tags: dict[str, str], parent: pulumi.Resource | None = None
    ) -> managedidentity.UserAssignedIdentity:
        """A user-assigned managed identity beside the cluster."""
        return managedidentity.UserAssignedIdentity(
            name,
            resource_name_=identity_name,
            resource_group_name=self.resource_group_name,
            location=self.location,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=parent or self),
        )

    def workload_identity(
        self,
        name: str,
        *,
        identity_name: str,
        credential_name: str,
        subject: str,
        tags: dict[str, str],
        parent: pulumi.Resource,
    ) -> tuple[managedidentity.UserAssignedIdentity, managedidentity.FederatedIdentityCredential]:
        """A user-assigned identity that the service account `subject` signs in as, through the
        cluster's OIDC issuer (learn.microsoft.com/azure/aks/workload-identity-overview)."""
        identity = self.identity(f"{name}-identity", identity_name=identity_name, tags=tags, parent=parent)
        federation = managedidentity.FederatedIdentityCredential(
            f"{name}-federation",
            federated_identity_credential_resource_name=credential_name,
            resource_name_=identity.name,
            resource_group_name=self.resource_group_name,
            issuer=self.oidc_issuer,
            subject=subject,
            audiences=[TOKEN_AUDIENCE],
            opts=pulumi.ResourceOptions(parent=parent),
        )
        return identity, federation

    def role_wait(
        self, name: str, *assignments: authorization.RoleAssignment, parent: pulumi.Resource | None = None
    ) -> time.Sleep:
        """A bounded, visible wait (`cluster.rolePropagationSeconds`) after new role assignments;
        whatever needs the roles depends on it. Other components pass themselves as `parent`."""
        ids = pulumi.Output.all(*[a.id for a in assignments]).apply(lambda v: ",".join(v))
        return time.Sleep(
            f"{name}-propagation",
            **role_propagation_wait(self.role_propagation_seconds, ids),
            opts=pulumi.ResourceOptions(parent=parent or self),
        )

    def deployer_role_ready(
        self,
        name: str,
        assignment: authorization.RoleAssignment,
        *,
        scope: pulumi.Input[str],
        needed: permissions.Needed,
        parent: pulumi.Resource | None = None,
    ) -> pulumi.Resource:
        """Polls ARM until the deployer holds `needed` on `scope` (tools/role_ready.py), at most
        `cluster.rolePropagationSeconds`: no fixed wait, and no wait at all when the deployer
        already held it (Contributor above the scope, say). Other components pass themselves as `parent`."""
        import pulumi_command as command  # a local command, run where `pulumi up` runs

        return command.local.Command(
            f"{name}-ready",
            # The program's own interpreter (the project's venv) from the project root.
            create=permissions.ready_command(needed, self.role_propagation_seconds, sys.executable),
            dir=str(PROJECT_ROOT),
            environment={"SCOPE": scope},
            # A new assignment (another deployer) polls again; an unchanged one is no diff.
            triggers=[assignment.id],
            opts=pulumi.ResourceOptions(parent=parent or self, depends_on=[assignment]),
        )

    def _kubernetes(self, name: str, login_mode: str) -> tuple[pulumi.Output[str], k8s.Provider]:
        """The user kubeconfig, rewritten to log in without a person, and a provider built on it."""
        credentials = containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=self.resource_group_name,
            resource_name=self.cluster.name,
            format="exec",
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        kubeconfig: pulumi.Output[str] = pulumi.Output.secret(
            credentials.kubeconfigs.apply(lambda kcs: with_login_mode(decode(kcs[0].value), login_mode))
        )
        # No delete_unreachable: an unreachable cluster must fail a run, never drop resources from
        # state. A one-off `destroy` of a deleted cluster opts in with PULUMI_K8S_DELETE_UNREACHABLE=true.
        provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=kubeconfig,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gpu_pool, *self.deployer_admin_ready]),
        )
        return kubeconfig, provider

    def _registry(self, name: str, stack: str, c: Cluster, r: Registry) -> containerregistry.Registry:
        """The registry the image is pushed to; its name is globally unique, hence the suffix."""
        child = pulumi.ResourceOptions(parent=self)
        suffix = random.RandomString(
            f"{name}-registry-suffix", length=REGISTRY_SUFFIX_LENGTH, special=False, upper=False, opts=child
        )
        zone_redundant = spec.registry_zone_redundant(r, c)
        # Its checkov skips, with their reasons, are in core/skips.py.
        return containerregistry.Registry(
            f"{name}-acr",
            registry_name=suffix.result.apply(lambda s: labels.compact_name(stack, "acr", s)),
            resource_group_name=self.resource_group_name,
            location=c.location,
            sku={"name": r.sku},
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            public_network_access="Enabled" if r.public_network_access else "Disabled",
            zone_redundancy="Enabled" if zone_redundant else "Disabled",
            policies=spec.registry_policies(r),
            tags=labels.tags(stack, "registry"),
            opts=child,
        )

"""AksCluster: resource group, AKS cluster with its system pool, the A10 GPU pool, the container
registry with AcrPull for the kubelet, and a Kubernetes provider built from the cluster's credentials."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_azure_native as azure
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import roles
from core import labels
from core.catalog import GPU_VM_SIZES
from core.config import Cluster, Registry
from core.kubeconfig import decode, with_login_mode
from core.skips import skip

GPU_POOL_LABEL = ("llamacpp-aks/pool", "gpu")
GPU_TAINT = ("sku", "gpu", "NoSchedule")
SPOT_TAINT = ("kubernetes.azure.com/scalesetpriority", "spot", "NoSchedule")
SYSTEM_TAINT = "CriticalAddonsOnly=true:NoSchedule"
# Overlay networking: pods get addresses outside the VNet; these ranges must not clash with it.
POD_CIDR, SERVICE_CIDR, DNS_SERVICE_IP = "10.244.0.0/16", "10.0.0.0/16", "10.0.0.10"
# AKS's max pods per node default for Azure CNI overlay; checkov CKV_AZURE_168 wants at least 50.
MAX_PODS = 110


@dataclass(frozen=True)
class AksClusterArgs:
    stack: str
    cluster: Cluster
    registry: Registry
    kubelogin_mode: str = "azurecli"
    keda: bool = False


class AksCluster(pulumi.ComponentResource):
    """An AKS cluster ready for GPU serving, and the registry its nodes pull from."""

    def __init__(self, name: str, args: AksClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llamacpp-aks:cluster:AksCluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        c, stack = args.cluster, args.stack
        tags = labels.tags(stack, "cluster")
        client = azure.authorization.get_client_config_output(opts=pulumi.InvokeOutputOptions(parent=self))

        self.resource_group = azure.resources.ResourceGroup(
            f"{name}-rg",
            resource_group_name=labels.name(stack, "rg"),
            location=c.location,
            tags=tags,
            opts=child,
        )
        rg_name = self.resource_group.name

        workspace = None
        if c.monitoring:
            workspace = azure.operationalinsights.Workspace(
                f"{name}-logs",
                workspace_name=labels.name(stack, "logs"),
                resource_group_name=rg_name,
                location=c.location,
                sku={"name": "PerGB2018"},
                retention_in_days=30,
                tags=tags,
                opts=child,
            )

        skip(
            f"{name}-aks",
            "CKV_AZURE_172",
            "the Key Vault secrets CSI driver is not installed: secrets come from Pulumi secret config",
        )
        if not c.authorized_ip_ranges and not c.private_cluster:
            skip(
                f"{name}-aks",
                "CKV_AZURE_6",
                "no authorized ranges set (dev only: the prod stack must list them); Entra ID and Azure RBAC still guard the API",
            )
        self.cluster = azure.containerservice.ManagedCluster(
            f"{name}-aks",
            resource_name_=labels.name(stack, "aks"),
            resource_group_name=rg_name,
            location=c.location,
            dns_prefix=labels.name(stack, "aks"),
            kubernetes_version=c.kubernetes_version,
            sku={"name": "Base", "tier": c.tier},
            identity={"type": "SystemAssigned"},
            enable_rbac=True,
            disable_local_accounts=c.local_accounts_disabled,
            aad_profile={
                "managed": True,
                "enable_azure_rbac": True,
                "admin_group_object_ids": c.entra_admin_group_object_ids,
                "tenant_id": client.tenant_id,
            },
            oidc_issuer_profile={"enabled": c.workload_identity},
            security_profile={
                "workload_identity": {"enabled": c.workload_identity},
                "image_cleaner": {"enabled": True, "interval_hours": 24},
            },
            api_server_access_profile={
                "authorized_ip_ranges": c.authorized_ip_ranges,
                "enable_private_cluster": c.private_cluster,
            },
            network_profile={
                "network_plugin": "azure",
                "network_plugin_mode": "overlay",
                "network_policy": "cilium",
                "network_dataplane": "cilium",
                "pod_cidr": POD_CIDR,
                "service_cidr": SERVICE_CIDR,
                "dns_service_ip": DNS_SERVICE_IP,
                "load_balancer_sku": "standard",
                "outbound_type": "loadBalancer",
            },
            auto_upgrade_profile={
                "upgrade_channel": c.upgrade_channel,
                "node_os_upgrade_channel": c.node_os_upgrade_channel,
            },
            addon_profiles={
                "azurepolicy": {"enabled": c.azure_policy},
                # Gone since Kubernetes 1.19; stated so that no template can turn it back on.
                "kubeDashboard": {"enabled": False},
                "omsagent": {
                    "enabled": workspace is not None,
                    "config": {"logAnalyticsWorkspaceResourceID": workspace.id} if workspace else {},
                },
            },
            azure_monitor_profile={"metrics": {"enabled": c.monitoring}},
            workload_auto_scaler_profile={"keda": {"enabled": args.keda}},
            agent_pool_profiles=[
                {
                    "name": "system",
                    "mode": "System",
                    "vm_size": c.system_pool.vm_size,
                    "count": c.system_pool.count,
                    "os_type": "Linux",
                    "os_sku": "AzureLinux",
                    "os_disk_type": "Ephemeral",
                    "os_disk_size_gb": 64,
                    "type": "VirtualMachineScaleSets",
                    "availability_zones": c.zones,
                    "node_taints": [SYSTEM_TAINT],
                    "enable_encryption_at_host": c.encryption_at_host,
                    "max_pods": MAX_PODS,
                    "orchestrator_version": c.kubernetes_version,
                    "upgrade_settings": {"max_surge": "33%"},
                }
            ],
            tags=tags,
            # The GPU pool is its own AgentPool resource; inline pools are fragile to edit later.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["agentPoolProfiles[0].count"]),
        )

        gpu_vm = GPU_VM_SIZES[c.gpu_pool.vm_size]
        pool = c.gpu_pool
        taints = ["=".join(GPU_TAINT[:2]) + ":" + GPU_TAINT[2]]
        spot = {}
        if pool.spot:
            spot = {
                "scale_set_priority": "Spot",
                "scale_set_eviction_policy": "Delete",
                "spot_max_price": pool.spot_max_price,
            }
        self.gpu_pool = azure.containerservice.AgentPool(
            f"{name}-gpu",
            agent_pool_name="gpu",
            resource_name_=self.cluster.name,
            resource_group_name=rg_name,
            mode="User",
            vm_size=gpu_vm.name,
            os_type="Linux",
            os_sku="Ubuntu",
            os_disk_type="Ephemeral" if gpu_vm.ephemeral_os_disk else "Managed",
            os_disk_size_gb=pool.os_disk_size_gb,
            type="VirtualMachineScaleSets",
            availability_zones=c.zones,
            enable_auto_scaling=True,
            min_count=pool.min_count,
            max_count=pool.max_count,
            count=pool.min_count,
            node_taints=taints,
            node_labels={GPU_POOL_LABEL[0]: GPU_POOL_LABEL[1]},
            gpu_profile={"driver": pool.driver},
            enable_encryption_at_host=c.encryption_at_host,
            max_pods=MAX_PODS,
            orchestrator_version=c.kubernetes_version,
            # No surge node: GPU quota is usually exactly the pool's size.
            upgrade_settings={"max_surge": "0", "max_unavailable": "1"},
            tags=tags,
            **spot,
            # The cluster autoscaler owns the node count once the pool exists.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["count"]),
        )

        for kind, schedule in (
            ("aksManagedAutoUpgradeSchedule", "upgrade"),
            ("aksManagedNodeOSUpgradeSchedule", "node-os"),
        ):
            w = c.maintenance_window
            azure.containerservice.MaintenanceConfiguration(
                f"{name}-maintenance-{schedule}",
                config_name=kind,
                resource_name_=self.cluster.name,
                resource_group_name=rg_name,
                maintenance_window={
                    "schedule": {"weekly": {"day_of_week": w.day, "interval_weeks": 1}},
                    "duration_hours": w.duration_hours,
                    "start_time": f"{w.start_hour:02d}:00",
                    "utc_offset": "+00:00",
                },
                opts=child,
            )

        suffix = random.RandomString(f"{name}-registry-suffix", length=6, special=False, upper=False, opts=child)
        r = args.registry
        premium = r.sku == "Premium"
        skip(
            f"{name}-acr",
            "CKV_AZURE_166",
            "quarantine holds every pushed image until a scanner marks it verified; none runs here",
        )
        if not (premium and c.zones):
            skip(
                f"{name}-acr",
                "CKV_AZURE_233",
                "zone redundancy needs the Premium SKU and cluster.zones; this stack runs without them to save cost",
            )
        if r.public_network_access:
            skip(
                f"{name}-acr",
                "CKV_AZURE_139",
                "pulumi up pushes from outside the VNet; set registry.publicNetworkAccess=false to close it",
            )
        self.registry = azure.containerregistry.Registry(
            f"{name}-acr",
            registry_name=suffix.result.apply(lambda s: labels.compact_name(stack, "acr", s)),
            resource_group_name=rg_name,
            location=c.location,
            sku={"name": r.sku},
            admin_user_enabled=False,
            anonymous_pull_enabled=False,
            public_network_access="Enabled" if r.public_network_access else "Disabled",
            zone_redundancy="Enabled" if premium and c.zones else "Disabled",
            policies={
                "retention_policy": {"days": r.retention_days, "status": "enabled" if premium else "disabled"},
                "trust_policy": {"type": "Notary", "status": "disabled"},
                "quarantine_policy": {"status": "disabled"},
            },
            tags=labels.tags(stack, "registry"),
            opts=child,
        )

        kubelet_object_id = self.cluster.identity_profile.apply(lambda p: p["kubeletidentity"].object_id)
        sub = client.subscription_id
        self.acr_pull = roles.grant(
            f"{name}-acr-pull",
            role=roles.ACR_PULL,
            principal_id=kubelet_object_id,
            scope=self.registry.id,
            subscription_id=sub,
            parent=self,
            service_principal=True,
        )
        # Whoever runs `pulumi up` pushes the image with an Entra token: no admin user, no password.
        self.acr_push = roles.grant(
            f"{name}-acr-push",
            role=roles.ACR_PUSH,
            principal_id=client.object_id,
            scope=self.registry.id,
            subscription_id=sub,
            parent=self,
        )
        # ...and administers the cluster through Azure RBAC (local accounts are off).
        self.deployer_admin = roles.grant(
            f"{name}-deployer-admin",
            role=roles.AKS_RBAC_CLUSTER_ADMIN,
            principal_id=client.object_id,
            scope=self.cluster.id,
            subscription_id=sub,
            parent=self,
        )

        credentials = azure.containerservice.list_managed_cluster_user_credentials_output(
            resource_group_name=rg_name,
            resource_name=self.cluster.name,
            format="exec",
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        self.kubeconfig = pulumi.Output.secret(
            credentials.kubeconfigs.apply(lambda kcs: with_login_mode(decode(kcs[0].value), args.kubelogin_mode))
        )
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            delete_unreachable=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.gpu_pool, self.deployer_admin]),
        )
        self.oidc_issuer = self.cluster.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else "")
        self.deployer_object_id = client.object_id
        self.tenant_id = client.tenant_id
        self.subscription_id = client.subscription_id
        self.login_server = self.registry.login_server
        self.register_outputs(
            {
                "clusterName": self.cluster.name,
                "resourceGroup": rg_name,
                "loginServer": self.login_server,
                "kubeconfig": self.kubeconfig,
            }
        )

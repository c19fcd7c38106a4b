"""Specs of the AKS cluster, its pools and the registry: the nested inputs of ManagedCluster,
AgentPool, MaintenanceConfiguration and Registry, typed with azure-native's TypedDicts."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi_azure_native import containerregistry, containerservice, monitor, network

from core import labels
from core.catalog import GpuVmSize
from core.config import Cluster, GpuPool, MaintenanceWindow, Registry

# The address plan lives in core/network.py, where the config rules read it too.
from core.network import DNS_SERVICE_IP as DNS_SERVICE_IP
from core.network import INGRESS_SUBNET_CIDR as INGRESS_SUBNET_CIDR
from core.network import NODE_SUBNET_CIDR as NODE_SUBNET_CIDR
from core.network import POD_CIDR as POD_CIDR
from core.network import SERVICE_CIDR as SERVICE_CIDR
from core.network import VNET_CIDR as VNET_CIDR

INGRESS_SUBNET_DELEGATION = "Microsoft.ServiceNetworking/trafficControllers"
# AKS's max pods per node default for Azure CNI overlay; checkov CKV_AZURE_168 wants at least 50.
MAX_PODS = 110
SYSTEM_OS_DISK_GB = 64
# AKS's two planned-maintenance schedules (learn.microsoft.com/azure/aks/planned-maintenance).
MAINTENANCE_SCHEDULES = (
    ("aksManagedAutoUpgradeSchedule", "upgrade"),
    ("aksManagedNodeOSUpgradeSchedule", "node-os"),
)


def system_pool(c: Cluster, subnet_id: pulumi.Input[str]) -> containerservice.ManagedClusterAgentPoolProfileArgsDict:
    """The system pool, inline in the cluster and tainted so that only critical add-ons run there."""
    return {
        "vnet_subnet_id": subnet_id,
        "name": "system",
        "mode": "System",
        "vm_size": c.system_pool.vm_size,
        "count": c.system_pool.count,
        "os_type": "Linux",
        "os_sku": "AzureLinux",
        "os_disk_type": "Ephemeral",
        "os_disk_size_gb": SYSTEM_OS_DISK_GB,
        "type": "VirtualMachineScaleSets",
        "availability_zones": c.zones,
        "node_taints": [labels.taint(labels.SYSTEM_TAINT)],
        "enable_encryption_at_host": c.encryption_at_host,
        "max_pods": MAX_PODS,
        "orchestrator_version": c.kubernetes_version,
        "upgrade_settings": {"max_surge": "33%"},
    }


def network_profile() -> containerservice.ContainerServiceNetworkProfileArgsDict:
    return {
        "network_plugin": "azure",
        "network_plugin_mode": "overlay",
        "network_policy": "cilium",
        "network_dataplane": "cilium",
        "pod_cidr": POD_CIDR,
        "service_cidr": SERVICE_CIDR,
        "dns_service_ip": DNS_SERVICE_IP,
        "load_balancer_sku": "standard",
        "outbound_type": "loadBalancer",
    }


def aad_profile(c: Cluster, tenant_id: pulumi.Input[str]) -> containerservice.ManagedClusterAADProfileArgsDict:
    """Entra ID sign-in with Azure RBAC for Kubernetes authorization."""
    return {
        "managed": True,
        "enable_azure_rbac": True,
        "admin_group_object_ids": c.entra_admin_group_object_ids,
        "tenant_id": tenant_id,
    }


def security_profile(c: Cluster) -> containerservice.ManagedClusterSecurityProfileArgsDict:
    return {
        "workload_identity": {"enabled": c.workload_identity},
        "image_cleaner": {"enabled": True, "interval_hours": 24},
    }


def api_server_access(c: Cluster) -> containerservice.ManagedClusterAPIServerAccessProfileArgsDict:
    return {"authorized_ip_ranges": c.authorized_ip_ranges, "enable_private_cluster": c.private_cluster}


def addon_profiles(
    c: Cluster, workspace_id: pulumi.Input[str] | None
) -> dict[str, containerservice.ManagedClusterAddonProfileArgsDict]:
    """Azure Policy and Container Insights (`omsagent`, into the Log Analytics workspace if any).

    Container Insights signs in with the add-on's managed identity (`useAADAuth`), the only way
    AKS supports now that workspace keys are retired; it sends what its data collection rule says
    (`container_insights_*` below). Microsoft's ARM onboarding template sets the same:
    github.com/microsoft/Docker-Provider, scripts/onboarding/aks/onboarding-using-msi-auth/existingClusterOnboarding.json;
    learn.microsoft.com/azure/azure-monitor/containers/kubernetes-monitoring-enable.
    """
    oms: containerservice.ManagedClusterAddonProfileArgsDict = {"enabled": False, "config": {}}
    if workspace_id is not None:
        oms = {"enabled": True, "config": {"logAnalyticsWorkspaceResourceID": workspace_id, "useAADAuth": "true"}}
    return {
        "azurepolicy": {"enabled": c.azure_policy},
        # Gone since Kubernetes 1.19; stated so that no template can turn it back on.
        "kubeDashboard": {"enabled": False},
        "omsagent": oms,
    }


# Container Insights' data collection rule, as Microsoft's onboarding template writes it: the
# ContainerInsights extension's default stream group into the Log Analytics workspace, and the
# association's fixed name, which the portal and `az aks` look for.
CONTAINER_INSIGHTS_STREAM = "Microsoft-ContainerInsights-Group-Default"
CONTAINER_INSIGHTS_DESTINATION = "ciworkspace"
CONTAINER_INSIGHTS_ASSOCIATION = "ContainerInsightsExtension"


def container_insights_data_sources() -> monitor.DataCollectionRuleDataSourcesArgsDict:
    """Inventory, metrics, events and container logs (ContainerLogV2) of every namespace, each minute."""
    return {
        "extensions": [
            {
                "name": "ContainerInsightsExtension",
                "extension_name": "ContainerInsights",
                "streams": [CONTAINER_INSIGHTS_STREAM],
                "extension_settings": {
                    "dataCollectionSettings": {
                        "interval": "1m",
                        "namespaceFilteringMode": "Off",
                        "enableContainerLogV2": True,
                    }
                },
            }
        ]
    }


def container_insights_destination(
    workspace_id: pulumi.Input[str],
) -> monitor.DataCollectionRuleDestinationsArgsDict:
    return {"log_analytics": [{"name": CONTAINER_INSIGHTS_DESTINATION, "workspace_resource_id": workspace_id}]}


def container_insights_data_flows() -> list[monitor.DataFlowArgsDict]:
    return [{"streams": [CONTAINER_INSIGHTS_STREAM], "destinations": [CONTAINER_INSIGHTS_DESTINATION]}]


def auto_upgrade(c: Cluster) -> containerservice.ManagedClusterAutoUpgradeProfileArgsDict:
    return {"upgrade_channel": c.upgrade_channel, "node_os_upgrade_channel": c.node_os_upgrade_channel}


def gpu_pool_spot(pool: GpuPool) -> dict[str, Any]:
    """The AgentPool inputs that make a spot pool; none for a regular one."""
    if not pool.spot:
        return {}
    return {"scale_set_priority": "Spot", "scale_set_eviction_policy": "Delete", "spot_max_price": pool.spot_max_price}


def gpu_pool(c: Cluster, vm: GpuVmSize, subnet_id: pulumi.Input[str]) -> dict[str, Any]:
    """Inputs of the GPU AgentPool: tainted, labelled, autoscaled, with the NVIDIA driver."""
    pool = c.gpu_pool
    return {
        "vnet_subnet_id": subnet_id,
        "agent_pool_name": "gpu",
        "mode": "User",
        "vm_size": vm.name,
        "os_type": "Linux",
        "os_sku": "Ubuntu",
        "os_disk_type": "Ephemeral" if vm.ephemeral_os_disk else "Managed",
        "os_disk_size_gb": pool.os_disk_size_gb,
        "type": "VirtualMachineScaleSets",
        "availability_zones": c.zones,
        "enable_auto_scaling": True,
        "min_count": pool.min_count,
        "max_count": pool.max_count,
        "count": pool.min_count,
        "node_taints": [labels.taint(labels.GPU_TAINT)],
        "node_labels": {labels.GPU_POOL_LABEL[0]: labels.GPU_POOL_LABEL[1]},
        "gpu_profile": {"driver": pool.driver},
        "enable_encryption_at_host": c.encryption_at_host,
        "max_pods": MAX_PODS,
        "orchestrator_version": c.kubernetes_version,
        # No surge node: GPU quota is usually exactly the pool's size.
        "upgrade_settings": {"max_surge": "0", "max_unavailable": "1"},
        **gpu_pool_spot(pool),
    }


def maintenance_window(w: MaintenanceWindow) -> containerservice.MaintenanceWindowArgsDict:
    return {
        "schedule": {"weekly": {"day_of_week": w.day, "interval_weeks": 1}},
        "duration_hours": w.duration_hours,
        "start_time": f"{w.start_hour:02d}:00",
        "utc_offset": "+00:00",
    }


def registry_policies(r: Registry) -> containerregistry.PoliciesArgsDict:
    premium = r.sku == "Premium"
    return {
        "retention_policy": {"days": r.retention_days, "status": "enabled" if premium else "disabled"},
        "trust_policy": {"type": "Notary", "status": "disabled"},
        "quarantine_policy": {"status": "disabled"},
    }


def registry_zone_redundant(r: Registry, c: Cluster) -> bool:
    """Zone redundancy needs the Premium SKU and zones to spread over."""
    return r.sku == "Premium" and bool(c.zones)


def vnet_address_space() -> network.AddressSpaceArgsDict:
    return {"address_prefixes": [VNET_CIDR]}


def ingress_subnet_delegations() -> list[network.DelegationArgsDict]:
    """The gateway's subnet belongs to Application Gateway for Containers and nothing else."""
    return [{"name": "agc", "service_name": INGRESS_SUBNET_DELEGATION}]

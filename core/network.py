"""The cluster's address plan: the pod, Service and VNet ranges every stack uses.

Pure, so that the config rules (service.allowedCidrs) and the specs (specs/cluster.py) read the
same ranges.
"""

from __future__ import annotations

# Overlay networking: pods get addresses outside the VNet; these ranges must not clash with it.
POD_CIDR, SERVICE_CIDR, DNS_SERVICE_IP = "10.244.0.0/16", "10.0.0.0/16", "10.0.0.10"
# The cluster's own VNet: nodes in one subnet, Application Gateway for Containers (ingress) in
# another. With Azure CNI Overlay the gateway's subnet must be in the nodes' VNet (peering is not
# supported) and exactly /24 (learn.microsoft.com/azure/application-gateway/for-containers/container-networking).
VNET_CIDR, NODE_SUBNET_CIDR, INGRESS_SUBNET_CIDR = "10.224.0.0/12", "10.224.0.0/16", "10.225.0.0/24"
# The cluster's own ranges by what holds addresses there: callers in them are the cluster itself.
CLUSTER_RANGES = (("pod", POD_CIDR), ("Service", SERVICE_CIDR), ("node", NODE_SUBNET_CIDR))

"""Checks, before anything is created, what would otherwise fail late in `pulumi up`.

usage: python -m tools.preflight --stack dev [--my-ip 198.51.100.7]

Lists every problem at once, each with its fix: the command-line tools `make up` runs (az, pulumi,
kubelogin, and docker for a local image build), each missing one with the command that installs
it; with the Azure CLI, the login, then resource providers and features registered, GPU vCPU quota
in the region, the Kubernetes version offered there, the GPU size offered in the configured zones;
and this machine's public address against `cluster.authorizedIpRanges`. Exits 1 on any problem;
then prints the expected time from `make up` to the first token (core/first_token.py).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from core import loading
from core.catalog import GPU_VM_SIZES
from core.config import StackConfig
from core.first_token import summary_lines, timeline_markdown, total_text
from core.loading import ConfigError

ROOT = Path(__file__).resolve().parent.parent
# The one home of the commands that install az, pulumi and kubelogin (the Makefile's targets use it too).
CLOUD_TOOLS = ROOT / "tools" / "cloud-tools.sh"
# What `make up` runs, in the order to install them (kubelogin's installer is az's).
CLI_TOOLS = ("az", "pulumi", "kubelogin")
# Resource providers the stack's resources need (Microsoft.Insights: data collection rules and
# action groups; Microsoft.Storage: the Azure Files volume AKS's CSI driver creates).
# learn.microsoft.com/azure/azure-resource-manager/management/resource-providers-and-types
PROVIDERS = (
    "Microsoft.ContainerService",
    "Microsoft.ContainerRegistry",
    "Microsoft.Compute",
    "Microsoft.Network",
    "Microsoft.Storage",
    "Microsoft.OperationalInsights",
    "Microsoft.Insights",
    "Microsoft.Monitor",
    "Microsoft.AlertsManagement",
    "Microsoft.ManagedIdentity",
)
GRAFANA_PROVIDER = "Microsoft.Dashboard"
# Application Gateway for Containers (ingress.enabled): the ALB quickstart registers both.
INGRESS_PROVIDERS = ("Microsoft.ServiceNetworking", "Microsoft.NetworkFunction")
# learn.microsoft.com/azure/virtual-machines/disks-enable-host-based-encryption-cli
ENCRYPTION_AT_HOST = ("Microsoft.Compute", "EncryptionAtHost")
# A service that answers with the caller's public address as plain text.
IP_ECHO_URL = "https://api.ipify.org"

Az = Callable[..., Any]


class AzError(Exception):
    """`az` failed; the message is its own error text."""


def run_az(*args: str) -> Any:
    """`az ARGS -o json`, parsed."""
    az = shutil.which("az")
    if az is None:
        raise AzError("the Azure CLI (az) is not on PATH")
    result = subprocess.run([az, *args, "-o", "json"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AzError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"az {args[0]} failed")
    return json.loads(result.stdout or "null")


def public_ip(url: str = IP_ECHO_URL, timeout_s: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return str(ipaddress.ip_address(response.read().decode().strip()))


def required_providers(config: StackConfig) -> list[str]:
    """The resource providers this stack's resources need (bootstrap/register.py registers them)."""
    return [
        *PROVIDERS,
        *([GRAFANA_PROVIDER] if config.autoscaling.grafana else []),
        *(INGRESS_PROVIDERS if config.ingress.enabled else ()),
    ]


def required_features(config: StackConfig) -> list[tuple[str, str]]:
    """The preview features (namespace, name) this stack needs registered."""
    return [ENCRYPTION_AT_HOST] if config.cluster.encryption_at_host else []


def check_providers(config: StackConfig, az: Az) -> list[str]:
    wanted = required_providers(config)
    states = {p["namespace"].lower(): p.get("registrationState") for p in az("provider", "list")}
    return [
        f"resource provider {ns} is {states.get(ns.lower()) or 'not registered'} on this subscription; "
        f"run: az provider register --namespace {ns} --wait"
        for ns in wanted
        if states.get(ns.lower()) != "Registered"
    ]


def check_features(config: StackConfig, az: Az) -> list[str]:
    if not config.cluster.encryption_at_host:
        return []
    namespace, name = ENCRYPTION_AT_HOST
    state = (az("feature", "show", "--namespace", namespace, "--name", name).get("properties") or {}).get("state")
    if state == "Registered":
        return []
    return [
        f"feature {namespace}/{name} is {state or 'not registered'} and cluster.encryptionAtHost is on; run: "
        f"az feature register --namespace {namespace} --name {name}, wait until it is Registered, then "
        f"az provider register --namespace {namespace} (or set cluster.encryptionAtHost: false)"
    ]


def gpu_sku(config: StackConfig, az: Az) -> dict[str, Any] | None:
    pool = config.cluster.gpu_pool
    skus = az(
        "vm", "list-skus", "--location", config.cluster.location, "--size", pool.vm_size, "--resource-type",
        "virtualMachines", "--all",
    )  # fmt: skip
    return next((s for s in skus if s.get("name") == pool.vm_size), None)


def check_gpu_size(config: StackConfig, sku: dict[str, Any] | None) -> list[str]:
    pool, location = config.cluster.gpu_pool, config.cluster.location
    if sku is None:
        return [f"{pool.vm_size} is not offered in {location}; choose another cluster.location or gpuPool.vmSize"]
    problems = []
    for restriction in sku.get("restrictions") or []:
        info = restriction.get("restrictionInfo") or {}
        if restriction.get("type") == "Location":
            problems.append(
                f"{pool.vm_size} is restricted for this subscription in {location} ({restriction.get('reasonCode')}); "
                "request access with a quota/support request or choose another cluster.location"
            )
        elif restriction.get("type") == "Zone":
            blocked = sorted(set(info.get("zones") or []) & set(config.cluster.zones))
            if blocked:
                problems.append(
                    f"{pool.vm_size} is restricted in zone(s) {', '.join(blocked)} of {location}; "
                    "remove them from cluster.zones or request access with a support request"
                )
    offered = {z for info in sku.get("locationInfo") or [] for z in info.get("zones") or []}
    missing = sorted(set(config.cluster.zones) - offered)
    if missing:
        problems.append(
            f"{pool.vm_size} is not offered in zone(s) {', '.join(missing)} of {location} "
            f"(offered: {', '.join(sorted(offered)) or 'none'}); set cluster.zones to offered zones"
        )
    return problems


def check_quota(config: StackConfig, sku: dict[str, Any] | None, az: Az) -> list[str]:
    pool, location = config.cluster.gpu_pool, config.cluster.location
    size = GPU_VM_SIZES.get(pool.vm_size)
    if size is None or sku is None:
        return []
    # Spot nodes count against the regional low-priority quota, not the family's.
    family = "lowPriorityCores" if pool.spot else str(sku.get("family"))
    need = pool.max_count * size.vcpus
    usage = next((u for u in az("vm", "list-usage", "--location", location) if u["name"]["value"] == family), None)
    if usage is None:
        return [f"no {family} quota in {location}; request {need} vCPUs for it (Azure portal, Quotas)"]
    free = int(usage["limit"]) - int(usage["currentValue"])
    if free >= need:
        return []
    return [
        f"{family} quota in {location} has {free} vCPUs free (limit {usage['limit']}, used {usage['currentValue']}); "
        f"gpuPool.maxCount={pool.max_count} x {size.vcpus} vCPUs of {pool.vm_size} needs {need}: request a quota "
        f"increase to {int(usage['currentValue']) + need} or lower gpuPool.maxCount"
    ]


def check_kubernetes_version(config: StackConfig, az: Az) -> list[str]:
    wanted, location = config.cluster.kubernetes_version, config.cluster.location
    values = (az("aks", "get-versions", "--location", location) or {}).get("values") or []
    offered = {v["version"] for v in values if not v.get("isPreview")}
    offered |= {p for v in values if not v.get("isPreview") for p in v.get("patchVersions") or {}}
    if wanted in offered:
        return []
    minors = sorted({v["version"] for v in values if not v.get("isPreview")})
    return [
        f"cluster.kubernetesVersion={wanted} is not offered in {location} (offered: {', '.join(minors) or 'none'}); "
        "set cluster.kubernetesVersion to one of them"
    ]


def needs_docker(config: StackConfig) -> bool:
    """A local image build needs Docker; a prebuilt image or the acr builder does not."""
    return not config.image.prebuilt and getattr(config.image, "builder", "local") != "acr"


def install_command(tool: str) -> str:
    """The command that installs `tool`, as tools/cloud-tools.sh prints it (bash and sed from the system's PATH too)."""
    path = os.pathsep.join(filter(None, (os.environ.get("PATH"), os.defpath)))
    result = subprocess.run(
        [shutil.which("bash", path=path) or "bash", str(CLOUD_TOOLS), "--install-command", tool],
        cwd=ROOT,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def check_tools(
    config: StackConfig,
    which: Callable[[str], str | None] = shutil.which,
    install: Callable[[str], str] = install_command,
) -> list[str]:
    """Every tool `make up` runs that is not on PATH, each with the command that installs it."""
    problems = [f"{tool} is not on PATH; install it with: {install(tool)}" for tool in CLI_TOOLS if which(tool) is None]
    if needs_docker(config) and which("docker") is None:
        problems.append(
            "docker is not on PATH; install Docker with buildx, or set image.builder: acr (or image.prebuilt)"
        )
    return problems


def check_api_access(config: StackConfig, get_ip: Callable[[], str]) -> list[str]:
    ranges = config.cluster.authorized_ip_ranges
    if config.cluster.private_cluster or not ranges:
        return []
    try:
        ip = ipaddress.ip_address(get_ip())
    except (OSError, ValueError) as err:
        return [
            f"could not learn this machine's public address ({err}); pass --my-ip to check cluster.authorizedIpRanges"
        ]
    if any(ip in ipaddress.ip_network(str(r), strict=False) for r in ranges):
        return []
    return [
        f"this machine's public address {ip} is outside cluster.authorizedIpRanges ({', '.join(map(str, ranges))}), "
        f"so the Kubernetes provider cannot reach the API server; add {ip}/32 to cluster.authorizedIpRanges "
        "or run from an allowed network"
    ]


def preflight(config: StackConfig, az: Az, get_ip: Callable[[], str], which: Callable[[str], str | None]) -> list[str]:
    """Every problem at once: the missing tools, the subscription (when az is there), this machine's address."""
    problems = check_tools(config, which)
    if which("az") is not None:
        problems += check_subscription(config, az)
    return problems + check_api_access(config, get_ip)


def check_subscription(config: StackConfig, az: Az) -> list[str]:
    """What the subscription must offer; nothing more is asked of az when it is not logged in."""
    problems: list[str] = []
    try:
        az("account", "show")
    except AzError as err:
        return [
            f"the Azure CLI is not logged in to a subscription ({err}); "
            "run: az login, then az account set --subscription <id>"
        ]
    for check in (check_providers, check_features, check_kubernetes_version):
        try:
            problems += check(config, az)
        except AzError as err:
            problems.append(
                f"{check.__name__.removeprefix('check_').replace('_', ' ')}: az failed ({err}); fix az and rerun"
            )
    try:
        sku = gpu_sku(config, az)
        problems += check_gpu_size(config, sku) + check_quota(config, sku, az)
    except AzError as err:
        problems.append(f"GPU size and quota: az failed ({err}); fix az and rerun")
    return problems


def load_stack(stack: str) -> StackConfig:
    return loading.load_stack(ROOT / f"Pulumi.{stack}.yaml")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument(
        "--my-ip", default=None, help="this machine's public address (default: asked of an echo service)"
    )
    parser.add_argument(
        "--subscription-only",
        action="store_true",
        help="only what the subscription offers (CI's read-only job: no tools, no address)",
    )
    args = parser.parse_args(argv)
    path = ROOT / f"Pulumi.{args.stack}.yaml"
    if not path.exists():
        print(f"{path.name} does not exist; pass --stack with one of the Pulumi.<stack>.yaml files", file=sys.stderr)
        return 1
    try:
        config = load_stack(args.stack)
    except ConfigError as err:
        for problem in err.problems:
            print(f"problem: {problem}")
        return 1
    if args.subscription_only:
        problems = check_subscription(config, run_az)
    else:
        problems = preflight(config, run_az, (lambda: args.my_ip) if args.my_ip else public_ip, shutil.which)
    for problem in problems:
        print(f"problem: {problem}")
    print(f"\nExpected time from `make up` to the first token on {args.stack}: {total_text(config)}")
    print(timeline_markdown(config), end="")
    print(f"\nTo the first token on {args.stack}, against the goals:")
    print("\n".join(summary_lines(config)))
    print(f"\npreflight {args.stack}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

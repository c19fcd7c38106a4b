"""Names, Kubernetes labels and Azure tags, all derived from the stack name and one config value.

One helper so that no resource can carry a name or a version that disagrees with another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.config import DOWNLOAD_KEY_LENGTH, PROJECT, ModelFiles

# The GPU pool's node label and taint: only pods that select and tolerate them land there.
GPU_POOL_LABEL = ("llamacpp-aks/pool", "gpu")
GPU_TAINT = ("sku", "gpu", "NoSchedule")
# AKS puts this taint on spot nodes.
SPOT_TAINT = ("kubernetes.azure.com/scalesetpriority", "spot", "NoSchedule")
# Keeps everything but critical add-ons off the system pool.
SYSTEM_TAINT = ("CriticalAddonsOnly", "true", "NoSchedule")


def taint(key_value_effect: tuple[str, str, str]) -> str:
    """A taint as AKS node pools take it: `key=value:Effect`."""
    key, value, effect = key_value_effect
    return f"{key}={value}:{effect}"


def name(stack: str, what: str) -> str:
    """A resource name: `llamacpp-<stack>-<what>` (lower case, valid as a DNS label)."""
    return f"llamacpp-{stack}-{what}".lower()


def node_resource_group(stack: str, location: str) -> str:
    """The group AKS makes for the cluster's nodes, by its default name `MC_<group>_<cluster>_<location>`
    (learn.microsoft.com/azure/aks/faq, "Why are two resource groups created with AKS?"): bootstrap
    names it before it exists, so a stack's deploy identity can be granted it by name."""
    return f"MC_{name(stack, 'rg')}_{name(stack, 'aks')}_{location}"


# The key inside the API key Secret, and the file name it mounts as (server, scraper, load test).
API_KEY_FILE = "api-key"


@dataclass(frozen=True)
class ServingNames:
    """The serving namespace and the names of the objects in it: the components that make them,
    the specs that refer to them and the tools that find them (the load-test Job) all read them here."""

    stack: str

    @property
    def namespace(self) -> str:
        return name(self.stack, "serving")

    @property
    def server(self) -> str:
        """The Deployment, its Service, ServiceAccount, disruption budget, policy and PodMonitor."""
        return name(self.stack, "server")

    @property
    def pods(self) -> str:
        """The headless Service of the server's pods: with the standby front, the front's upstream
        (DNS lists the ready pods, none at zero replicas), while the Service callers use goes to the front."""
        return f"{self.server}-pods"

    @property
    def front(self) -> str:
        """The standby front's Deployment, bootstrap ConfigMap, policy and PodMonitor."""
        return name(self.stack, "front")

    @property
    def api_key_secret(self) -> str:
        """The Secret the server mounts its key from; the metrics scraper and the load test read it too."""
        return f"{self.server}-api-key"

    @property
    def hf_token_secret(self) -> str:
        return f"{self.server}-hf-token"

    @property
    def claim(self) -> str:
        """The model volume's PersistentVolumeClaim."""
        return f"{self.server}-models"

    @property
    def download_policy(self) -> str:
        """The NetworkPolicy of the model download Job: its only egress."""
        return f"{self.server}-download"

    def download_job(self, model: ModelFiles) -> str:
        """One Job per model revision: a new revision, file or digest is a new Job, an unchanged one none."""
        return f"{self.server}-download-{model.download_key()}"

    @property
    def loadtest(self) -> str:
        """The in-cluster load test: its Job, ConfigMap and NetworkPolicy."""
        return name(self.stack, "loadtest")


# Kubernetes names that are DNS labels (namespaces, Services, and Jobs, whose name becomes a pod
# label value) hold at most 63 characters: lowercase letters, digits and '-'.
DNS_LABEL_MAX = 63
STACK_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
# The longest name derived from the stack's: the model download Job, `<server>-download-<key>`
# (specs/serving.py download_job_name), whose key is DOWNLOAD_KEY_LENGTH hex digits.
LONGEST_DERIVED = ("server", "-download-", DOWNLOAD_KEY_LENGTH)


def stack_name_max() -> int:
    """The longest stack name whose every derived Kubernetes and Azure name is still valid."""
    what, middle, key = LONGEST_DERIVED
    return DNS_LABEL_MAX - len(name("", what)) - len(middle) - key


def compact_name(stack: str, what: str, suffix: str = "") -> str:
    """A name for Azure resources that allow only letters and digits (the container registry)."""
    return "".join(ch for ch in f"llamacpp{stack}{what}{suffix}".lower() if ch.isalnum())[:50]


def labels(stack: str, component: str, version: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": PROJECT,
        "app.kubernetes.io/instance": f"{PROJECT}-{stack}",
        "app.kubernetes.io/version": version,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(stack: str, component: str) -> dict[str, str]:
    """The stable subset of `labels` that a selector may match (a version change must not orphan pods)."""
    full = labels(stack, component, "")
    return {k: full[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component")}


def tags(stack: str, component: str) -> dict[str, str]:
    return {"project": PROJECT, "stack": stack, "component": component, "managed-by": "pulumi"}


def pod_security(level: str) -> dict[str, str]:
    """Namespace labels that enforce (and audit and warn at) one Pod Security Standard level."""
    return {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "audit", "warn")}


def image_version(image: str) -> str:
    """The tag of an image reference (`repo:tag` or `repo:tag@sha256:...`), for the version label."""
    return image.split("@", 1)[0].rsplit(":", 1)[-1]

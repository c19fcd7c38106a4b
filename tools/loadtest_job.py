"""The in-cluster `make loadtest`: a ConfigMap holding tools/loadtest.py (and the few pure modules it
imports) and a Job that runs it against the stack's Service with the stack's API key Secret,
printing the same table to its log.

usage: python -m tools.loadtest_job --config Pulumi.<stack>.yaml --image <ref@sha256:...> [--duration 60] [--concurrency N] | kubectl apply -f -
       kubectl -n <namespace> logs -f job/<stack>-loadtest

The image (`make loadtest-image`, image/loadtest/Dockerfile) holds AIPerf and Qwen2-VL's tokenizer
and is deployed by digest, so the Job installs nothing and its NetworkPolicy lets it reach DNS and
the server's port only. It runs in the serving namespace (whose NetworkPolicy admits callers from
the namespace itself) under Pod Security `restricted`. The cluster has no user CPU pool, so it
tolerates the system pool's CriticalAddonsOnly taint: a load client is light next to the server it
measures.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from core import labels
from core.loading import read_stack
from tools import loadtest

# Where image/loadtest/Dockerfile puts AIPerf's Python and the tokenizer.
AIPERF_PYTHON = "/opt/aiperf/venv/bin/python"
TOKENIZER_DIR = "/opt/tokenizer"
# Only a reference by digest: a re-pushed tag can never change what runs.
IMAGE_REF = re.compile(r"^[a-z0-9.-]+(?::[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$")
UID = 10003  # a uid of its own, not the server's
APP_DIR = "/app"  # the ConfigMap's files
WORK_DIR = "/work"  # an emptyDir: AIPerf's artifacts and temporary files
SECRET_DIR = "/secrets"
# What the ConfigMap carries: the tool and the pure modules it imports, by repository path.
FILES = (
    "tools/__init__.py",
    "tools/key_proxy.py",
    "tools/loadtest.py",
    "tools/server_client.py",
    "core/__init__.py",
    "core/catalog.py",
    "core/metrics.py",
)
# What the serving pods use (specs/k8s.py, specs/serving.py), written out because tools do not
# import specs (tests/test_layout.py); tests/test_loadtest_job.py fails if they drift apart.
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": UID,
    "runAsGroup": UID,
    "fsGroup": UID,  # the key file readable by UID
    "fsGroupChangePolicy": "OnRootMismatch",
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
SECRET_FILE_MODE = 0o440
DNS_EGRESS = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
}


# Room for pulling the image and the probe before the load starts, and for the last answers after it.
SETUP_SECONDS = 1800


def config_map_key(path: str) -> str:
    """A repository path as a ConfigMap key (no slashes allowed): tools/loadtest.py -> tools-loadtest.py."""
    return path.replace("/", "-")


class ManifestDumper(yaml.SafeDumper):
    """Plain YAML for people: no anchors for repeated label maps, files as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


ManifestDumper.add_representer(str, _text)


def job_manifests(config_path: Path, image: str, duration: int, concurrency: int | None) -> str:
    if not IMAGE_REF.fullmatch(image):
        raise SystemExit(
            f"--image {image[:200]!r} is not a reference by digest (<registry>/<repository>@sha256:<64 hex>); "
            "make loadtest-image prints one"
        )
    stack, c = read_stack(config_path)
    plan = loadtest.plan_from_config(config_path)
    names = labels.ServingNames(stack)
    namespace, server, name = names.namespace, names.server, names.loadtest
    meta_labels = labels.labels(stack, "loadtest", c.image.llama_cpp_release)
    url = f"http://{server}.{namespace}.svc.cluster.local:{c.service.port}"
    script = (
        f'mkdir -p {WORK_DIR}/tmp && cd {APP_DIR} && {AIPERF_PYTHON} -m tools.loadtest --url "$URL"'
        f' --api-key-file {SECRET_DIR}/{labels.API_KEY_FILE} --plan "$PLAN" --duration {duration}'
        f" --concurrency {concurrency or plan.parallel} --tokenizer {TOKENIZER_DIR} --python {AIPERF_PYTHON}"
    )
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
        "data": {config_map_key(f): (loadtest.ROOT / f).read_text() for f in FILES},
    }
    container = {
        "name": "loadtest",
        "image": image,
        "imagePullPolicy": "IfNotPresent",  # by digest: what is on the node is what was asked for
        "command": ["sh", "-c", script],
        "env": [
            {"name": "URL", "value": url},
            {"name": "PLAN", "value": loadtest.plan_json(plan)},
            {"name": "HOME", "value": WORK_DIR},
            {"name": "TMPDIR", "value": f"{WORK_DIR}/tmp"},  # the root filesystem is read-only
            {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        ],
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        "securityContext": CONTAINER_SECURITY,
        "volumeMounts": [
            {"name": "app", "mountPath": APP_DIR, "readOnly": True},
            {"name": "work", "mountPath": WORK_DIR},
            {"name": "api-key", "mountPath": SECRET_DIR, "readOnly": True},
        ],
    }
    key, value, effect = labels.SYSTEM_TAINT
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
        "spec": {
            "backoffLimit": 0,  # a load run is not retried: a second one would measure another thing
            "activeDeadlineSeconds": duration + SETUP_SECONDS,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": meta_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "tolerations": [{"key": key, "operator": "Equal", "value": value, "effect": effect}],
                    "containers": [container],
                    "volumes": [
                        {
                            "name": "app",
                            "configMap": {
                                "name": name,
                                "items": [{"key": config_map_key(f), "path": f} for f in FILES],
                            },
                        },
                        {"name": "work", "emptyDir": {"sizeLimit": "8Gi"}},
                        {
                            "name": "api-key",
                            "secret": {"secretName": names.api_key_secret, "defaultMode": SECRET_FILE_MODE},
                        },
                    ],
                },
            },
        },
    }
    egress: list[dict[str, Any]] = [
        DNS_EGRESS,
        # The server, in this namespace.
        {
            "to": [{"podSelector": {"matchLabels": labels.selector(stack, "server")}}],
            "ports": [{"port": c.server.port, "protocol": "TCP"}],
        },
    ]
    if c.autoscaling.scales_from_zero:
        # The Service then selects the standby front (components/front.py): the load goes through it,
        # to its API port, named `http` like the server's (Cilium resolves named ports in policies,
        # github.com/cilium/cilium/pull/11092).
        egress.append(
            {
                "to": [{"podSelector": {"matchLabels": labels.selector(stack, "front")}}],
                "ports": [{"port": "http", "protocol": "TCP"}],
            }
        )
    network_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
        "spec": {
            "podSelector": {"matchLabels": labels.selector(stack, "loadtest")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],  # nothing calls the load client
            "egress": egress,
        },
    }
    return yaml.dump_all([config_map, network_policy, job], Dumper=ManifestDumper, sort_keys=False, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the stack's Pulumi.<stack>.yaml")
    parser.add_argument("--image", required=True, help="the load-test image by digest (make loadtest-image)")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, help="requests in flight (default server.parallel)")
    args = parser.parse_args(argv)
    print(job_manifests(args.config, args.image, args.duration, args.concurrency), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

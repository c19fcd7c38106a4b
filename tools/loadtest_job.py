"""The in-cluster `make loadtest`: a ConfigMap holding tools/loadtest.py (and the few pure modules it
imports) and a Job that installs AIPerf and runs it against the stack's Service with the stack's API
key Secret, printing the same table to its log.

usage: python -m tools.loadtest_job --config Pulumi.<stack>.yaml [--duration 60] [--concurrency N] | kubectl apply -f -
       kubectl -n <namespace> logs -f job/<stack>-loadtest

The Job runs in the serving namespace (its NetworkPolicy admits callers from the namespace itself)
under Pod Security `restricted`. The cluster has no user CPU pool, so it tolerates the system pool's
CriticalAddonsOnly taint: a load client is light next to the server it measures. It needs egress to
the Python package index (AIPerf) and to Hugging Face (the Qwen2-VL tokenizer AIPerf sizes prompts
with).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from core import labels
from tools import loadtest
from tools.verify import load_stack

# The image the Job runs: Python of the version this project uses, slim (pip installs AIPerf).
IMAGE = "python:3.11-slim"
UID = 10003  # a uid of its own, not the server's
APP_DIR = "/app"  # the ConfigMap's files
WORK_DIR = "/work"  # an emptyDir: the venv, Hugging Face cache, AIPerf's artifacts
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
    "requirements-aiperf.lock.txt",
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
SKIPS = {
    "checkov.io/skip1": f"CKV_K8S_43=a stock Python image by tag ({IMAGE}): the Job installs AIPerf into it at start",
}


# Room for installing AIPerf and the probe before the load starts, and for the last answers after it.
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


def job_manifests(config_path: Path, duration: int, concurrency: int | None) -> str:
    from tools.render import stack_config

    stack, _ = stack_config(config_path)
    c = load_stack(config_path)
    plan = loadtest.plan_from_config(config_path)
    names = labels.ServingNames(stack)
    namespace, server, name = names.namespace, names.server, names.loadtest
    meta_labels = labels.labels(stack, "loadtest", c.image.llama_cpp_release)
    url = f"http://{server}.{namespace}.svc.cluster.local:{c.service.port}"
    venv = f"{WORK_DIR}/venv"
    script = (
        f"mkdir -p {WORK_DIR}/tmp && python -m venv {venv} && {venv}/bin/pip install --quiet --no-cache-dir --require-hashes -r {APP_DIR}/requirements-aiperf.lock.txt"
        f' && cd {APP_DIR} && {venv}/bin/python -m tools.loadtest --url "$URL" --api-key-file {SECRET_DIR}/{labels.API_KEY_FILE}'
        f' --plan "$PLAN" --duration {duration} --concurrency {concurrency or plan.parallel} --python {venv}/bin/python'
    )
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
        "data": {config_map_key(f): (loadtest.ROOT / f).read_text() for f in FILES},
    }
    container = {
        "name": "loadtest",
        "image": IMAGE,
        "imagePullPolicy": "Always",
        "command": ["sh", "-c", script],
        "env": [
            {"name": "URL", "value": url},
            {"name": "PLAN", "value": loadtest.plan_json(plan)},
            {"name": "HOME", "value": WORK_DIR},
            {"name": "HF_HOME", "value": f"{WORK_DIR}/hf"},
            {"name": "CACHE_DIR", "value": f"{WORK_DIR}/cache"},
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
        "metadata": {"name": name, "namespace": namespace, "labels": meta_labels, "annotations": SKIPS},
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
    network_policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": meta_labels},
        "spec": {
            "podSelector": {"matchLabels": labels.selector(stack, "loadtest")},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],  # nothing calls the load client
            "egress": [
                DNS_EGRESS,
                # The server, in this namespace.
                {
                    "to": [{"podSelector": {"matchLabels": labels.selector(stack, "server")}}],
                    "ports": [{"port": c.server.port, "protocol": "TCP"}],
                },
                # The package index (AIPerf) and Hugging Face (the tokenizer).
                {"ports": [{"port": 443, "protocol": "TCP"}]},
            ],
        },
    }
    return yaml.dump_all([config_map, network_policy, job], Dumper=ManifestDumper, sort_keys=False, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path, help="the stack's Pulumi.<stack>.yaml")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, help="requests in flight (default server.parallel)")
    args = parser.parse_args(argv)
    print(job_manifests(args.config, args.duration, args.concurrency), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

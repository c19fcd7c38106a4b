"""The server's logs, with the logs of whatever failed before it (make logs).

usage: python -m tools.logs --stack dev [--container llama-server] [--tail 100] [--follow] [--kubeconfig FILE]

For each server pod: llama-server's last lines, and the run before its last restart; the logs of
its init containers (verify-model, verify-mmproj) that failed; and those of the model download
Job's containers (fetch-model, fetch-mmproj) that failed. Each block starts with a `==> ` header
naming the pod and container. `--container` shows that container wherever it runs (a server pod or
the download Job's); `--follow` streams it from the first server pod until it ends or ^C.
Reads only, with the stack's kubeconfig (make outputs fetches it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import kubernetes

from core import labels
from tools.doctor import SERVER_CONTAINER, container_statuses, failed
from tools.kube import Cluster, ClusterError, kubeconfig_path, selector

DEFAULT_TAIL = 100


def pods(cluster: Cluster, stack: str, component: str) -> list[dict[str, Any]]:
    core = kubernetes.client.CoreV1Api(cluster.api)
    ns = labels.ServingNames(stack).namespace
    return cluster.items(core.list_namespaced_pod, ns, label_selector=selector(labels.selector(stack, component)))


def blocks(cluster: Cluster, stack: str, container: str | None, tail: int | None) -> list[tuple[str, str]]:
    """(header, text) of each log to show, server first."""
    ns = labels.ServingNames(stack).namespace
    shown: list[tuple[str, str]] = []

    def add(pod: dict[str, Any], status: dict[str, Any], why: str) -> None:
        name = pod["metadata"]["name"]
        text = cluster.log(name, ns, status["name"], tail=tail)
        shown.append((f"==> pod {name}, container {status['name']}{why} <==", text if text is not None else ""))
        ended = (status.get("lastState") or {}).get("terminated")
        if status.get("restartCount", 0) > 0:
            before = cluster.log(name, ns, status["name"], tail=tail, previous=True)
            if before is not None:
                code = f", exit code {ended.get('exitCode')}" if ended else ""
                shown.append(
                    (f"==> pod {name}, container {status['name']}: the run before the restart{code} <==", before)
                )

    server_pods = pods(cluster, stack, "server")
    download_pods = pods(cluster, stack, "model-download")
    for pod in server_pods + download_pods:
        for status in container_statuses(pod):
            if container is not None:
                if status["name"] == container:
                    add(pod, status, "")
            elif status["name"] == SERVER_CONTAINER:
                add(pod, status, "")
            elif failed(status):
                add(pod, status, " (failed)")
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="dev")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="default: .stacks/<stack>/kubeconfig")
    parser.add_argument("--container", default=None, help="one container (default: llama-server and what failed)")
    parser.add_argument("--tail", type=int, default=DEFAULT_TAIL, help="last lines of each log; -1 for all")
    parser.add_argument("--follow", action="store_true", help="stream the log as it is written")
    args = parser.parse_args(argv)
    tail = None if args.tail < 0 else args.tail
    names = labels.ServingNames(args.stack)
    try:
        cluster = Cluster.connect(args.kubeconfig or kubeconfig_path(args.stack), args.stack)
        if args.follow:
            return follow(cluster, args.stack, args.container or SERVER_CONTAINER, tail)
        shown = blocks(cluster, args.stack, args.container, tail)
    except ClusterError as err:
        print(f"problem: {err}", file=sys.stderr)
        return 2
    if not shown:
        what = f"container {args.container}" if args.container else "server pod"
        print(
            f"no {what} in {names.namespace}: KEDA may hold zero replicas, or the stack is not up; "
            f"make doctor STACK={args.stack} says which",
            file=sys.stderr,
        )
        return 1
    for header, text in shown:
        print(header)
        print(text, end="" if text.endswith("\n") or not text else "\n")
    return 0


def follow(cluster: Cluster, stack: str, container: str, tail: int | None) -> int:
    ns = labels.ServingNames(stack).namespace
    running = [
        p
        for p in pods(cluster, stack, "server") + pods(cluster, stack, "model-download")
        if any(s["name"] == container and "running" in s.get("state", {}) for s in container_statuses(p))
    ]
    if not running:
        print(
            f"no running {container} to follow in {ns}; make logs STACK={stack} shows the last lines of what ran",
            file=sys.stderr,
        )
        return 1
    name = running[0]["metadata"]["name"]
    print(f"==> pod {name}, container {container} (following; ^C to stop) <==", flush=True)
    try:
        for chunk in cluster.follow(name, ns, container, tail):
            sys.stdout.write(bytes(chunk).decode(errors="replace"))
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Offline render: runs the real program under Pulumi's mocks with a stack's config and writes what
`pulumi up` would create: Kubernetes manifests, an ARM template of the Azure resources, and the
sizing summary. No Pulumi CLI, cloud account or cluster is needed.

usage: python -m tools.render [--config Pulumi.dev.yaml] [--out render/dev]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import runpy
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from core.config import PROJECT
from core.loading import ConfigError, load_config, offline_render, split_pulumi_config, stack_config
from core.skips import skips_for
from core.summary import summary_data, summary_markdown
from tools.mocks import ARM_TYPES, Recorded, RenderMocks, arm_identity

ROOT = Path(__file__).resolve().parent.parent
REDACTED = "<redacted secret>"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # the engine's marker of a secret value


# Where a type has an API model (tools/conformance.py: its version's, or the nearest published),
# the model says which keys sit at the resource's top level. For the types no package models
# (resource groups, Prometheus rule groups), ARM's template reference does
# (learn.microsoft.com/azure/templates/<provider>/<type>); both are tracked resources, so these:
ARM_TOP_LEVEL = ("location", "tags", "sku", "identity", "kind", "zones", "extendedLocation")
KIND_ORDER = (
    "Namespace",
    "ServiceAccount",
    "Secret",
    "PersistentVolumeClaim",
    "DaemonSet",
    "Deployment",
    "Service",
    "PodDisruptionBudget",
    "NetworkPolicy",
    "PodMonitor",
    "TriggerAuthentication",
    "ScaledObject",
    "ClusterIssuer",
    "Certificate",
    "Gateway",
    "HTTPRoute",
    "HealthCheckPolicy",
    "WebApplicationFirewallPolicy",
)


def api_version(typ: str) -> str:
    """The REST API version the pinned azure-native SDK uses for a type (from its own docs)."""
    import importlib
    import inspect

    _, module, cls = typ.split(":")
    py_cls = getattr(importlib.import_module(f"pulumi_azure_native.{module}"), cls)
    source = Path(inspect.getfile(py_cls)).read_text()
    match = re.search(r"Uses Azure REST API version (\S+?)\.", source)
    if not match:
        raise LookupError(f"no API version in the docs of {typ}")
    return match.group(1)


def redacted(value: Any) -> Any:
    """A secret's shape with its values hidden: the render is for review and is never secret."""
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return REDACTED


def normalized(value: Any) -> Any:
    """Engine values as a person writes them: secrets redacted, whole numbers as ints (the
    engine's wire format carries every number as a double) and mapping keys sorted."""
    if isinstance(value, dict) and SECRET_SIG in value:
        return redacted(value["value"])
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalized(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def top_level_keys(arm_type: str, version: str) -> frozenset[str]:
    """Keys ARM reads at a resource's top level: from the API model where one is published, else
    the template reference's (ARM_TOP_LEVEL)."""
    from tools.conformance import closest_model
    from tools.conformance import top_level_keys as model_top_level

    model = closest_model(arm_type, version)
    return frozenset(model_top_level(model.cls) if model is not None else ARM_TOP_LEVEL)


# Sub-resources whose inputs azure-native flattens (x-ms-client-flatten) and ARM reads nested
# under their own `properties`: type -> list key -> the keys that go under `properties`.
FLATTENED: dict[str, dict[str, tuple[str, ...]]] = {
    "Microsoft.Network/virtualNetworks/subnets": {"delegations": ("serviceName",)},
}


def _nest(item: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    inner = {k: item[k] for k in keys if k in item}
    return {**{k: v for k, v in item.items() if k not in keys}, "properties": inner}


def arm_resource(r: Recorded, location: str) -> dict[str, Any]:
    """One resource as ARM reads it: its name and scope from the path parameters, the keys its
    API keeps at the top level there, everything else under `properties`. A tracked resource
    without a location input gets the stack's, as azure-native defaults it."""
    arm = ARM_TYPES[r.typ]
    names = [str(r.inputs.get(k) or "") for k in arm.name_keys]
    if r.typ == "azure-native:authorization:RoleAssignment" and not names[0]:
        names = [
            str(
                uuid.uuid5(
                    uuid.NAMESPACE_URL,
                    f"{r.inputs.get('scope')}|{r.inputs.get('principalId')}|{r.inputs.get('roleDefinitionId')}",
                )
            )
        ]
    inputs = normalized(r.inputs)
    version = api_version(r.typ)
    top = top_level_keys(arm.arm_type, version)
    path_params = {*arm.name_keys, "resourceGroupName", arm.scope_key}
    doc: dict[str, Any] = {"type": arm.arm_type, "apiVersion": version, "name": "/".join(names)}
    if arm.scope_key and arm.scope_key in inputs:
        doc["scope"] = inputs[arm.scope_key]
    if "location" in top:
        doc["location"] = inputs.get("location", location)
    doc.update({k: inputs[k] for k in sorted(top) if k in inputs and k != "location"})
    props: dict[str, Any] = {}
    for key, value in inputs.items():
        if key in top or key in path_params:
            continue
        if key == "properties" and isinstance(value, dict):
            props.update(value)  # azure-native nests some bodies (Grafana) where ARM has them flat
        else:
            props[key] = value
    for key, flat in FLATTENED.get(arm.arm_type, {}).items():
        props[key] = [_nest(item, flat) for item in props.get(key, [])]
    if "identity" in doc:
        doc["identity"] = arm_identity(doc["identity"])
    doc["properties"] = dict(sorted(props.items()))
    skipped = skips_for(r.typ, r.inputs)
    if skipped:
        doc["metadata"] = {"checkov": [f"checkov:skip={check}: {reason}" for check, reason in skipped.items()]}
    return doc


def arm_template(resources: list[Recorded], location: str) -> dict[str, Any]:
    out = [arm_resource(r, location) for r in resources if r.typ in ARM_TYPES]
    # Mocks register resources in the order their inputs resolve, which varies between runs:
    # sort, so that a review diff of two renders shows only real changes.
    out.sort(key=lambda d: (d["type"], d["name"], d.get("scope", "")))
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": out,
    }


HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def helm_releases(resources: list[Recorded]) -> list[dict[str, Any]]:
    """Each Helm release as it is asked for: chart, version, namespace and values. The chart's own
    manifests come from its registry at `pulumi up`; the render has no network to expand them."""
    keys = ("name", "chart", "version", "namespace", "createNamespace", "atomic", "values")
    out = [{k: normalized(r.inputs[k]) for k in keys if k in r.inputs} for r in resources if r.typ == HELM_RELEASE]
    return sorted(out, key=lambda release: release["name"])


def manifests(resources: list[Recorded]) -> list[dict[str, Any]]:
    objs = []
    for r in resources:
        if not r.typ.startswith("kubernetes:") or r.typ.startswith("pulumi:providers") or r.typ == HELM_RELEASE:
            continue
        body = normalized({k: v for k, v in r.inputs.items() if not k.startswith("__")})
        obj = {k: body.pop(k) for k in ("apiVersion", "kind", "metadata")} | body
        if obj.get("kind") == "Secret":
            for key in ("data", "stringData"):
                if key in obj:
                    obj[key] = redacted(obj[key])
        objs.append(obj)

    def order(o: dict[str, Any]) -> tuple[int, str]:
        kind = o.get("kind", "")
        return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), o["metadata"]["name"])

    return sorted(objs, key=order)


def _program_log() -> logging.Logger:
    """Where the program's pulumi.log messages go under mocks: stderr, once, as `warning: ...`,
    the way the Pulumi CLI shows them."""
    log = logging.getLogger("llamacpp-aks.program")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LowerLevelFormatter("%(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    return log


class LowerLevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(logging.makeLogRecord({**record.__dict__, "levelname": record.levelname.lower()}))


PROGRAM_LOG = _program_log()


def run_program(stack: str, flat: dict[str, str], mocks: RenderMocks | None = None) -> RenderMocks:
    """Runs __main__.py under mocks; `mocks` (one is made if not given) records what it declared,
    also when the program fails."""
    import pulumi
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    if mocks is None:
        location = json.loads(flat.get(f"{PROJECT}:cluster", "{}")).get("location", "eastus")
        mocks = RenderMocks(location=location)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=True, logger=PROGRAM_LOG)
    pulumi.runtime.set_all_config(flat)

    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    _sync_await(run_pulumi_func(program))
    return mocks


def render(config_path: Path, out: Path) -> None:
    stack, flat = stack_config(config_path)
    raw, _ = split_pulumi_config(flat)
    config, _ = load_config(raw, stack)  # fails before any resource, as the program does
    sys.path.insert(0, str(ROOT))
    with offline_render():
        mocks = run_program(stack, flat)
    (out / "kubernetes").mkdir(parents=True, exist_ok=True)
    (out / "azure").mkdir(parents=True, exist_ok=True)
    for old in (out / "kubernetes").glob("*.yaml"):
        old.unlink()
    for i, obj in enumerate(manifests(mocks.resources)):
        meta = obj["metadata"]
        file = out / "kubernetes" / f"{i:02d}-{obj['kind'].lower()}-{meta['name']}.yaml"
        file.write_text(yaml.safe_dump(obj, sort_keys=False))
    helm = out / "helm"
    for old in helm.glob("*.yaml"):
        old.unlink()
    for release in helm_releases(mocks.resources):
        helm.mkdir(parents=True, exist_ok=True)
        (helm / f"{release['name']}.yaml").write_text(yaml.safe_dump(release, sort_keys=False))
    (out / "azure" / "template.json").write_text(
        json.dumps(arm_template(mocks.resources, config.cluster.location), indent=2) + "\n"
    )
    (out / "summary.md").write_text(summary_markdown(config, stack))
    (out / "summary.json").write_text(json.dumps(summary_data(config, stack), indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "Pulumi.dev.yaml")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "render" / args.config.name.split(".")[1]
    try:
        render(args.config, out)
    except ConfigError as err:
        print(f"{args.config}: invalid stack config:", file=sys.stderr)
        for problem in err.problems:
            print(f"- {problem}", file=sys.stderr)
        return 1
    print(f"rendered {args.config} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

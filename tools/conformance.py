"""Checks a rendered ARM template against Azure's published API models.

For every resource in azure/template.json it loads the azure-mgmt-* SDK model of exactly the API
version the resource states, and checks the body the way ARM reads it: unknown or misplaced keys,
read-only keys, enum values, types, required keys, min/max, lengths and patterns. Most models are
msrest-style (`_attribute_map` names each attribute's JSON path and type, `_validation` its limits;
`azure/mgmt/*/_utils/serialization.py` in each package). Packages generated from TypeSpec (azure-mgmt-
servicenetworking 2.x) have "hybrid" models instead (`_model_base.py` or `_utils/model_base.py`): each
attribute is a `rest_field` descriptor with its JSON name and visibility, and its type is the class
annotation. They are read into the same shape (`_typespec_fields`), so the same checks run on them, less
min/max, lengths and patterns, which hybrid models do not carry. Pins: requirements-dev.txt.

usage: python -m tools.conformance render/dev/azure/template.json [...]
Prints one line per problem and exits 1 on any; resources whose API version no published package
models are named on stderr as unchecked, with the reason.
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import enum
import functools
import importlib
import inspect
import json
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# The SDK model of the request body of each ARM type: (package, class).
# A third item names the operations group whose API version counts, for packages whose
# operation groups each pin their own version (azure-mgmt-loganalytics 13.0.0b7).
MODELS: dict[str, tuple[str, ...]] = {
    "Microsoft.ContainerService/managedClusters": ("azure.mgmt.containerservice", "ManagedCluster"),
    "Microsoft.ContainerService/managedClusters/agentPools": ("azure.mgmt.containerservice", "AgentPool"),
    "Microsoft.ContainerService/managedClusters/maintenanceConfigurations": (
        "azure.mgmt.containerservice",
        "MaintenanceConfiguration",
    ),
    "Microsoft.ContainerRegistry/registries": ("azure.mgmt.containerregistry", "Registry"),
    "Microsoft.Authorization/roleAssignments": ("azure.mgmt.authorization", "RoleAssignmentCreateParameters"),
    "Microsoft.Insights/dataCollectionEndpoints": ("azure.mgmt.monitor", "DataCollectionEndpointResource"),
    "Microsoft.Insights/dataCollectionRules": ("azure.mgmt.monitor", "DataCollectionRuleResource"),
    "Microsoft.Insights/dataCollectionRuleAssociations": (
        "azure.mgmt.monitor",
        "DataCollectionRuleAssociationProxyOnlyResource",
    ),
    "Microsoft.Insights/actionGroups": ("azure.mgmt.monitor", "ActionGroupResource"),
    "Microsoft.ManagedIdentity/userAssignedIdentities": ("azure.mgmt.msi", "Identity"),
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials": (
        "azure.mgmt.msi",
        "FederatedIdentityCredential",
    ),
    "Microsoft.OperationalInsights/workspaces": ("azure.mgmt.loganalytics", "Workspace", "workspaces"),
    "Microsoft.Dashboard/grafana": ("azure.mgmt.dashboard", "ManagedGrafana"),
    "Microsoft.Monitor/accounts": ("azure.mgmt.monitor", "AzureMonitorWorkspaceResource"),
    "Microsoft.Network/virtualNetworks": ("azure.mgmt.network", "VirtualNetwork", "virtual_networks"),
    "Microsoft.Network/virtualNetworks/subnets": ("azure.mgmt.network", "Subnet", "subnets"),
    "Microsoft.Network/ApplicationGatewayWebApplicationFirewallPolicies": (
        "azure.mgmt.network",
        "WebApplicationFirewallPolicy",
        "web_application_firewall_policies",
    ),
    "Microsoft.ServiceNetworking/trafficControllers": ("azure.mgmt.servicenetworking", "TrafficController"),
    "Microsoft.ServiceNetworking/trafficControllers/frontends": ("azure.mgmt.servicenetworking", "Frontend"),
    "Microsoft.ServiceNetworking/trafficControllers/associations": ("azure.mgmt.servicenetworking", "Association"),
    "Microsoft.ServiceNetworking/trafficControllers/securityPolicies": (
        "azure.mgmt.servicenetworking",
        "SecurityPolicy",
    ),
}
# Where no package models the exact version, the nearest published one still catches keys in the
# wrong place (a Log Analytics sku outside `properties`, Grafana's `properties` nested twice):
# the body is checked against it, and the report says so.
NEAREST: dict[tuple[str, str], str] = {
    ("Microsoft.OperationalInsights/workspaces", "2023-09-01"): "2022-10-01",  # azure-mgmt-loganalytics 13.0.0b7
    ("Microsoft.Dashboard/grafana", "2024-10-01"): "2023-09-01",  # azure-mgmt-dashboard 1.1.0
    ("Microsoft.Monitor/accounts", "2023-04-03"): "2021-06-03-preview",  # azure-mgmt-monitor 6.0.2
    ("Microsoft.Insights/actionGroups", "2024-10-01-preview"): "2023-01-01",  # azure-mgmt-monitor 6.0.2
}
# API versions that no azure-mgmt-* release on PyPI models (checked 2026-11 with
# `pip index versions --pre` and each candidate wheel's api versions). Anything not listed here
# and not modelled is a problem, so an azure-native upgrade that moves a version is noticed.
UNPUBLISHED: dict[tuple[str, str], str] = {
    ("Microsoft.Resources/resourceGroups", "2024-03-01"): (
        "azure-mgmt-resource ships resources 2022-09-01 and 2024-07-01, not 2024-03-01"
    ),
    ("Microsoft.OperationalInsights/workspaces", "2023-09-01"): (
        "azure-mgmt-loganalytics 13.0.0b7 is 2022-10-01 and 13.1.0 is 2025-07-01"
    ),
    ("Microsoft.Dashboard/grafana", "2024-10-01"): (
        "azure-mgmt-dashboard 1.1.0 is 2023-09-01, 2.0.0b1 is 2024-11-01-preview, 2.0.0 is 2025-08-01"
    ),
    ("Microsoft.AlertsManagement/prometheusRuleGroups", "2023-03-01"): (
        "no azure-mgmt package models prometheusRuleGroups at 2023-03-01"
    ),
    ("Microsoft.Monitor/accounts", "2023-04-03"): (
        "only azure-mgmt-monitor 7.x models 2023-04-03, and it drops the 2022-06-01 data collection models"
        " that 6.0.2 (pinned) has"
    ),
    ("Microsoft.Insights/actionGroups", "2024-10-01-preview"): (
        "azure-mgmt-monitor 6.0.2 and 7.0.0 model action groups at 2023-01-01; 8.0.0b3 has none"
    ),
}
# The ARM template's own keys around a resource body (learn.microsoft.com/azure/azure-resource-manager/
# templates/syntax#resources), not part of the API's request body.
ENVELOPE = ("type", "apiVersion", "name", "scope", "dependsOn", "metadata", "comments", "condition", "copy")
SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "bool": (bool,),
    "iso-8601": (str,),
    "duration": (str,),
    "date": (str,),
    "rfc-1123": (str,),
    "unix-time": (int,),
    "bytearray": (str,),
    "base64": (str,),
}


# A hybrid model's _hint_tree and the path of the object being checked in it (check_body).
Hints = tuple[dict[str, Any], list[str]]
# A hybrid model's datetime formats (rest_field(format=...)) as msrest type names.
DATETIME_FORMATS = {"rfc7231": "rfc-1123", "unix-timestamp": "unix-time"}


@dataclass(frozen=True)
class Model:
    """One API version's models module and the body class of a resource type."""

    module: ModuleType
    cls: type


def models_module(package: str, api_version: str, operations: str | None = None) -> ModuleType | None:
    """The models of exactly this API version: a `v2022_06_01` subpackage of a multi-API package,
    a single-API package whose client defaults to this version, or one whose operations group for
    the type calls this version."""
    sub = "v" + api_version.replace("-", "_")
    try:
        return importlib.import_module(f"{package}.{sub}.models")
    except ModuleNotFoundError:
        pass
    try:
        config = importlib.import_module(f"{package}._configuration")
    except ModuleNotFoundError:
        return None
    defaults = set(re.findall(r'pop\("api_version", "([^"]+)"\)', inspect.getsource(config)))
    if not defaults and operations:
        try:
            ops = importlib.import_module(f"{package}.operations._{operations}_operations")
            defaults = set(re.findall(r'"api-version", "([^"]+)"', inspect.getsource(ops)))
        except ModuleNotFoundError:
            # Packages that keep every group in one `_operations` module (azure-mgmt-network 28):
            # the version the group's create request sends.
            ops = importlib.import_module(f"{package}.operations._operations")
            build = getattr(ops, f"build_{operations}_create_or_update_request")
            defaults = set(re.findall(r'"api-version", "([^"]+)"', inspect.getsource(build)))
    return importlib.import_module(f"{package}.models") if defaults == {api_version} else None


def model_for(arm_type: str, api_version: str) -> Model | None:
    if arm_type not in MODELS:
        return None
    package, name, *operations = MODELS[arm_type]
    try:
        module = models_module(package, api_version, *operations)
    except ModuleNotFoundError:
        return None
    if module is None or not hasattr(module, name):
        return None
    return Model(module, getattr(module, name))


def closest_model(arm_type: str, api_version: str) -> Model | None:
    """The exact version's model, else the nearest published one (NEAREST), else None."""
    nearest = NEAREST.get((arm_type, api_version))
    return model_for(arm_type, api_version) or (model_for(arm_type, nearest) if nearest else None)


@dataclass(frozen=True)
class _Field:
    """One attribute of a TypeSpec hybrid model, as msrest's _attribute_map and _validation say it."""

    key: str  # the JSON name, dots escaped as in an _attribute_map key
    typ: str  # msrest's type notation: "str", "[ResourceId]", "{str}", a model class's name, "object"
    choices: type[enum.Enum] | None
    readonly: bool
    required: bool


def _is_typespec(cls: type) -> bool:
    """A TypeSpec "hybrid" model (a Mapping with rest_field descriptors), not an msrest one."""
    return getattr(cls, "_is_model", False) is True and not hasattr(cls, "_attribute_map")


def _typespec_type(hint: Any, fmt: str | None, models: ModuleType) -> tuple[str, type[enum.Enum] | None]:
    """A hybrid model's attribute annotation in msrest's type notation, and the enum it takes.
    An open enum is `Union[str, X]`; anything not understood is "object", which is not checked."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        choices = [a for a in kinds if isinstance(a, type) and issubclass(a, enum.Enum)]
        rest = [a for a in kinds if a not in choices]
        if len(choices) <= 1 and len(rest) <= 1 and kinds:
            typ = _typespec_type(rest[0], fmt, models)[0] if rest else "str"
            return typ, choices[0] if choices else None
        return "object", None
    if origin is list and len(args) == 1:  # List[X], list[X]
        return f"[{_typespec_type(args[0], fmt, models)[0]}]", None
    if origin is dict and len(args) == 2:  # Dict[str, X]
        return f"{{{_typespec_type(args[1], fmt, models)[0]}}}", None
    if not isinstance(hint, type):
        return "object", None
    if issubclass(hint, enum.Enum):
        return "str", hint
    if issubclass(hint, datetime.datetime):
        return DATETIME_FORMATS.get(fmt or "", "iso-8601"), None
    scalars: dict[type, str] = {
        bool: "bool",
        str: "str",
        int: "int",
        float: "float",
        datetime.date: "date",
        datetime.timedelta: "duration",
        bytes: "base64",
    }
    for py, scalar in scalars.items():
        if issubclass(hint, py):
            return scalar, None
    name: str = hint.__name__
    if getattr(models, name, None) is hint:
        return name, None
    return "object", None


@functools.cache
def _typespec_fields(cls: type) -> dict[str, _Field]:
    """A hybrid model's attributes: the SDK's own `_attr_to_rest_field` (JSON name, visibility, format)
    with each class annotation's type. Read-only: visible neither on create nor on update (the SDK's
    `visibility=["read"]`). Required: not Optional, not read-only, and without a default."""
    typing.cast(Any, cls).__new__(cls)  # the SDK fills _attr_to_rest_field on a class's first construction
    fields: dict[str, Any] = cls._attr_to_rest_field  # type: ignore[attr-defined]
    # Annotations name other models as "_models.X", imported only for type checkers.
    models = importlib.import_module(cls.__module__.rsplit(".", 1)[0])
    hints = typing.get_type_hints(cls, localns={"_models": models})
    out: dict[str, _Field] = {}
    for attr, rf in fields.items():
        hint = hints.get(attr, Any)
        typ, choices = _typespec_type(hint, rf._format, models)
        visibility = rf._visibility
        readonly = visibility is not None and not {"create", "update"} & set(visibility)
        optional = type(None) in typing.get_args(hint) or hint is Any
        unset = getattr(sys.modules[type(rf).__module__], "_UNSET", None)
        required = not optional and not readonly and rf._default is unset
        out[attr] = _Field(rf._rest_name.replace(".", "\\."), typ, choices, readonly, required)
    return out


def _attribute_map(cls: type) -> dict[str, dict[str, Any]]:
    """attribute -> {"key": JSON path, "type": msrest type}, of either kind of model."""
    if _is_typespec(cls):
        return {attr: {"key": f.key, "type": f.typ} for attr, f in _typespec_fields(cls).items()}
    return cls._attribute_map  # type: ignore[attr-defined]


def _validation(cls: type) -> dict[str, dict[str, Any]]:
    """attribute -> msrest's validation rules (readonly, required, limits), of either kind of model."""
    if _is_typespec(cls):
        return {
            attr: {"readonly": f.readonly, "required": f.required}
            for attr, f in _typespec_fields(cls).items()
            if f.readonly or f.required
        }
    return getattr(cls, "_validation", {})


def _split_key(key: str) -> list[str]:
    """An _attribute_map key's JSON path; `\\.` escapes a dot inside one name."""
    return [part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", key)]


def body_tree(cls: type) -> dict[str, Any]:
    """The JSON shape of a model: name -> (attribute, type) or a nested dict for flattened paths."""
    tree: dict[str, Any] = {}
    for attr, spec in _attribute_map(cls).items():
        node = tree
        *parents, leaf = _split_key(spec["key"])
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = (attr, spec["type"])
    return tree


def top_level_keys(cls: type) -> set[str]:
    """Keys ARM reads at the top of a resource of this model (location, tags, sku, ...)."""
    return {k for k, v in body_tree(cls).items() if isinstance(v, tuple)} - {"id", "name", "type", "properties"}


def _enum_of(cls: type, attr: str, module: ModuleType) -> type[enum.Enum] | None:
    """The enum an attribute takes, from the model's constructor annotation (`Union[str, _models.X]`)."""
    if _is_typespec(cls):
        field = _typespec_fields(cls).get(attr)
        return field.choices if field else None
    try:
        annotation = inspect.signature(cls).parameters[attr].annotation
    except (KeyError, ValueError):
        return None
    match = re.search(r"_models\.(\w+)", str(annotation))
    found = getattr(module, match.group(1), None) if match else None
    return found if isinstance(found, type) and issubclass(found, enum.Enum) else None


def _concrete(cls: type, value: dict[str, Any], module: ModuleType) -> type:
    """The subclass a polymorphic model's discriminator picks."""
    for field, subtypes in getattr(cls, "_subtype_map", {}).items():
        key = cls._attribute_map[field]["key"]  # type: ignore[attr-defined]
        chosen = subtypes.get(value.get(key))
        if chosen and hasattr(module, chosen):
            return _concrete(getattr(module, chosen), value, module)
    return cls


def _limits(path: str, value: Any, rules: dict[str, Any]) -> list[str]:
    out = []
    if "minimum" in rules and isinstance(value, (int, float)) and value < rules["minimum"]:
        out.append(f"{path}={value} is below the API's minimum {rules['minimum']}")
    if "maximum" in rules and isinstance(value, (int, float)) and value > rules["maximum"]:
        out.append(f"{path}={value} is above the API's maximum {rules['maximum']}")
    sized = value if isinstance(value, (str, list)) else None
    if sized is not None:
        low = rules.get("min_length", rules.get("min_items"))
        high = rules.get("max_length", rules.get("max_items"))
        if low is not None and len(sized) < low:
            out.append(f"{path} has {len(sized)} characters or items, fewer than the API's minimum {low}")
        if high is not None and len(sized) > high:
            out.append(f"{path} has {len(sized)} characters or items, more than the API's maximum {high}")
    if "pattern" in rules and isinstance(value, str) and not re.search(rules["pattern"], value):
        out.append(f"{path}={value!r} does not match the API's pattern {rules['pattern']}")
    return out


def _check_value(path: str, value: Any, typ: str, module: ModuleType, hints: Hints | None = None) -> list[str]:
    if typ == "object":
        return []
    if typ.startswith("[") and typ.endswith("]"):
        if not isinstance(value, list):
            return [f"{path} is {type(value).__name__}, the API takes a list ({typ})"]
        return [p for i, v in enumerate(value) for p in _check_value(f"{path}[{i}]", v, typ[1:-1], module)]
    if typ.startswith("{") and typ.endswith("}"):
        if not isinstance(value, dict):
            return [f"{path} is {type(value).__name__}, the API takes a map ({typ})"]
        return [p for k, v in value.items() for p in _check_value(f"{path}.{k}", v, typ[1:-1], module)]
    if typ in SCALARS:
        ok = isinstance(value, SCALARS[typ]) and not (typ != "bool" and isinstance(value, bool))
        return [] if ok else [f"{path}={value!r} is {type(value).__name__}, the API takes {typ}"]
    cls = getattr(module, typ, None)
    if cls is None:
        return []  # a type the serializer knows natively (e.g. "IO"); nothing to check
    if not isinstance(value, dict):
        return [f"{path} is {type(value).__name__}, the API takes an object ({typ})"]
    return check_body(path, value, _concrete(cls, value, module), module, hints)


def _misplaced_hint(key: str, tree: dict[str, Any], here: list[str]) -> str:
    """Where a key the API has elsewhere belongs, or the closest name at this level."""
    for node_path, node in _walk(tree, []):
        if key in node and node_path != here:
            return f"; it belongs at {'.'.join([*node_path, key])}"
    close = difflib.get_close_matches(key, [k for _, n in _walk(tree, []) if _ == here for k in n], n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _hint_tree(cls: type, module: ModuleType, outer: tuple[type, ...] = ()) -> dict[str, Any]:
    """A hybrid model's body_tree with each nested object model (not lists or maps) in place, as an
    msrest model's flattened `properties.x` keys are: where a misplaced key belongs, across levels."""
    tree: dict[str, Any] = {}
    for key, spec in body_tree(cls).items():
        nested = getattr(module, spec[1], None) if isinstance(spec, tuple) else None
        if isinstance(nested, type) and _is_typespec(nested) and nested not in (*outer, cls):
            tree[key] = _hint_tree(nested, module, (*outer, cls))
        else:
            tree[key] = spec
    return tree


def _subtree(tree: dict[str, Any], path: list[str]) -> dict[str, Any] | None:
    for part in path:
        tree = tree.get(part)  # type: ignore[assignment]
        if not isinstance(tree, dict):
            return None
    return tree


def _walk(tree: dict[str, Any], path: list[str]) -> list[tuple[list[str], dict[str, Any]]]:
    out = [(path, tree)]
    for k, v in tree.items():
        if isinstance(v, dict):
            out.extend(_walk(v, [*path, k]))
    return out


def check_body(path: str, body: dict[str, Any], cls: type, module: ModuleType, hints: Hints | None = None) -> list[str]:
    """Problems of one JSON object against one model class (flattened paths included).
    A hybrid model nests `properties` as a model of its own rather than flattening it, so its hints
    come from the outermost hybrid model's _hint_tree (`hints`: that tree, and where this object is in it)."""
    tree = body_tree(cls)
    hybrid = _is_typespec(cls)
    if hints is None or not hybrid or _subtree(*hints) is None:
        hints = (_hint_tree(cls, module) if hybrid else tree, [])
    hint_tree, hint_here = hints
    validation = _validation(cls)
    problems: list[str] = []
    seen: set[str] = set()

    def walk(node_path: list[str], value: dict[str, Any], node: dict[str, Any]) -> None:
        for key, item in value.items():
            where = ".".join(filter(None, [path, *node_path, key]))
            spec = node.get(key)
            if spec is None:
                hint = _misplaced_hint(key, hint_tree, [*hint_here, *node_path])
                problems.append(f"{where} is not in the API model {cls.__name__}{hint}")
            elif isinstance(spec, dict):
                if isinstance(item, dict):
                    walk([*node_path, key], item, spec)
                else:
                    problems.append(f"{where} is {type(item).__name__}, the API takes an object")
            else:
                attr, typ = spec
                seen.add(attr)
                rules = validation.get(attr, {})
                if rules.get("readonly"):
                    problems.append(f"{where} is read-only in the API; Azure ignores it, remove it")
                    continue
                inner = (hint_tree, [*hint_here, *node_path, key]) if hybrid else None
                problems.extend(_check_value(where, item, typ, module, inner))
                problems.extend(_limits(where, item, rules))
                choices = _enum_of(cls, attr, module)
                if choices and isinstance(item, str) and item.lower() not in {str(c.value).lower() for c in choices}:
                    allowed = ", ".join(str(c.value) for c in choices)
                    problems.append(f"{where}={item!r} is not one of the API's values: {allowed}")

    walk([], body, tree)
    for attr, rules in validation.items():
        if rules.get("required") and not rules.get("readonly") and attr not in seen and rules.get("constant") is None:
            key = ".".join(_split_key(_attribute_map(cls)[attr]["key"]))
            problems.append(f"{'.'.join(filter(None, [path, key]))} is required by the API model {cls.__name__}")
    return problems


def check_template(template: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, unchecked) for every resource of an ARM template."""
    problems: list[str] = []
    unchecked: list[str] = []
    for res in template.get("resources", []):
        arm_type, version = res.get("type", ""), res.get("apiVersion", "")
        label = f"{arm_type}@{version} {res.get('name', '?')}"
        model = model_for(arm_type, version)
        nearest = NEAREST.get((arm_type, version))
        if model is None and nearest:
            model = model_for(arm_type, nearest)
            if model is not None:
                label = f"{label} (checked against {nearest}, the nearest published model)"
                unchecked.append(f"{label}: {UNPUBLISHED[(arm_type, version)]}")
        if model is None:
            reason = UNPUBLISHED.get((arm_type, version))
            if reason:
                unchecked.append(f"{label}: {reason}")
            else:
                problems.append(
                    f"{label}: no API model for this type and version; add it to MODELS in tools/conformance.py "
                    "with the azure-mgmt-* package that ships it (pinned in requirements-dev.txt)"
                )
            continue
        body = {k: v for k, v in res.items() if k not in ENVELOPE}
        problems.extend(f"{label}: {p}" for p in check_body("", body, model.cls, model.module))
    return problems, unchecked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("templates", nargs="+", type=Path)
    args = parser.parse_args(argv)
    total = 0
    for path in args.templates:
        problems, unchecked = check_template(json.loads(path.read_text()))
        for line in unchecked:
            print(f"{path}: unchecked: {line}", file=sys.stderr)
        for line in problems:
            print(f"{path}: {line}")
        total += len(problems)
    print(f"{total} problem(s)", file=sys.stderr)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())

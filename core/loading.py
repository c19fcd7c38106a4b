"""Loading a stack's config: Pulumi's flat key map to a validated `StackConfig`, or a `ConfigError`
with every problem at once, each naming the key path, the value, the limit and the fix."""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from core.config import PROJECT, SECRET_KEYS, StackConfig, ValueProblem, shown
from core.rules import check

# Longest string any setting needs (a webhook URL is at most 2048); longer is a mistake or an attack.
MAX_VALUE_CHARS = 4096
# Unicode categories no setting may hold: controls (NUL, escape), format characters (U+202E
# right-to-left override, zero-width space), separators other than space, private and unassigned.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


class ConfigError(Exception):
    """A stack config that must not reach Azure; `problems` are sentences for the user."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


# Set only inside offline_render(); a context variable, so no module state is rebound.
_OFFLINE_RENDER: ContextVar[bool] = ContextVar("offline_render", default=False)


@contextmanager
def offline_render() -> Iterator[None]:
    """While the offline render runs the program: what preview and up refuse only because it is
    the shipped example (a documentation range, example.com) shows as a warning instead."""
    token = _OFFLINE_RENDER.set(True)
    try:
        yield
    finally:
        _OFFLINE_RENDER.reset(token)


def in_offline_render() -> bool:
    return _OFFLINE_RENDER.get()


def load_config(raw: dict[str, Any], stack: str, refuse_examples: bool = False) -> tuple[StackConfig, list[str]]:
    """Validated config and its warnings; raises ConfigError listing every problem. The program
    (preview, up) passes refuse_examples=True outside the offline render."""
    # Checked beside the schema, so a value the schema names already is named once, by the schema.
    values = _value_problems(raw, "")
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as err:
        named = {_path(tuple(e["loc"])) for e in err.errors()}
        extra = [problem for path, problem in values if path not in named]
        raise ConfigError([_explain(e, raw) for e in err.errors()] + extra) from None
    if values:
        raise ConfigError([problem for _, problem in values])
    errors, warnings = check(config, stack, refuse_examples)
    if errors:
        raise ConfigError(errors)
    return config, warnings


def _value_problems(value: Any, path: str) -> list[tuple[str, str]]:
    """(key path, problem) of each string that no setting may hold, wherever it is: too long, or
    with a control or invisible character (a NUL cuts a value short in C code; U+202E shows a URL
    reversed)."""
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            inner = f"{path}.{_key(key)}" if path else _key(key)
            out += [(inner, p) for _, p in _value_problems(str(key), f"the key under {path or 'the top level'}")]
            out += _value_problems(item, inner)
        return out
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _value_problems(item, f"{path}[{i}]")]
    if not isinstance(value, str):
        return []
    if len(value) > MAX_VALUE_CHARS:
        return [
            (
                path,
                f"{path}={shown(value)} is longer than {MAX_VALUE_CHARS} characters, more than any setting "
                f"needs; shorten it.",
            )
        ]
    for at, ch in enumerate(value):
        if unicodedata.category(ch) in INVISIBLE_CATEGORIES:
            return [
                (
                    path,
                    f"{path}={shown(value)} holds the control or invisible character U+{ord(ch):04X} "
                    f"({unicodedata.name(ch, 'unnamed')}) at position {at}; retype the value without it.",
                )
            ]
    return []


def _key(part: object) -> str:
    """A key as a message shows it: escaped where it holds anything but printable ASCII, so that
    an invisible character is never echoed."""
    text = str(part)
    return text if text.isprintable() and text.isascii() else text.encode("unicode_escape").decode("ascii")


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{_key(part)}" if out else _key(part))
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] = StackConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return model
    return model


def _explain(error: ErrorDetails, raw: dict[str, Any]) -> str:
    """A pydantic error as a sentence in the YAML's own key names."""
    loc = tuple(error["loc"])
    path = _path(loc)
    value = shown(error.get("input"))
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        known = sorted(f.alias or n for n, f in parent.model_fields.items()) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" did you mean {_path((*loc[:-1], close[0]))}?" if close else ""
        where = _path(loc[:-1]) or "the top level"
        return (
            f"{path} is not a known key: remove it or fix its spelling;{hint} "
            f"known keys under {where}: {', '.join(known)}."
        )
    if kind in ("greater_than_equal", "greater_than"):
        return f"{path}={value} is below the minimum {ctx.get('ge', ctx.get('gt'))}; set {path} to at least {ctx.get('ge', ctx.get('gt'))}."
    if kind in ("less_than_equal", "less_than"):
        return f"{path}={value} is above the maximum {ctx.get('le', ctx.get('lt'))}; set {path} below that."
    if kind == "bool_type":
        return (
            f"{path}={value} is not true or false; a switch takes only YAML's true or false, unquoted "
            f"(never 'off', 'no' or 0, which could turn a guard off unseen): set {path} to true or false."
        )
    if kind == "literal_error":
        return f"{path}={value} is not allowed; use one of {ctx.get('expected')}."
    if kind == "missing":
        return f"{path} is required; set it in the stack config."
    if kind == "value_error" and isinstance(ctx.get("error"), ValueProblem):
        return f"{path}={value} {ctx['error']}."
    if kind == "finite_number":
        return f"{path}={value} is not a finite number (YAML's .inf and .nan are refused); set {path} to a number."
    if kind == "string_too_long":
        return f"{path}={value} is longer than {ctx.get('max_length')} characters; shorten it."
    if kind == "string_pattern_mismatch":
        return f"{path}={value} has the wrong form; it must match {ctx.get('pattern')}."
    return f"{path}={value} is invalid: {error['msg']}; fix the value of {path}."


def _skeleton(namespace: str) -> str:
    """A namespace with case, compatibility forms and punctuation taken away: what a reader sees."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", namespace).casefold() if ch.isascii() and ch.isalnum())


def lookalike_keys(all_config: Collection[str]) -> list[str]:
    """A problem for each key whose namespace looks like this project's but is not it.

    Pulumi hands every namespace to the program and this one reads only its own, so settings
    under `LlamaCpp-AKS:`, `llamacpp_aks:` or `llamacpp\u2010aks:` (a Unicode hyphen) would be
    silently ignored: production switches, or a plain-text secret. A namespace outside ASCII is
    refused too; no provider's is. The value is never repeated.
    """
    out = []
    for key in all_config:
        namespace, sep, name = key.partition(":")
        if not sep or namespace == PROJECT:
            continue
        if _skeleton(namespace) == _skeleton(PROJECT) or not namespace.isascii() or not namespace.isprintable():
            out.append(
                f"the config key {shown(key)} is under the namespace {shown(namespace)}, which is not "
                f"{PROJECT} (value not shown); this program would ignore it: write it as {PROJECT}:{shown(name)[1:-1]}."
            )
    return out


def split_pulumi_config(all_config: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """This project's keys from Pulumi's flat config map: (plain keys as objects, secret keys).

    Pulumi hands object values over as JSON text; keys of other namespaces (azure-native:location)
    are not ours and are left alone.
    """
    lookalikes = lookalike_keys(all_config)
    if lookalikes:
        raise ConfigError(lookalikes)
    raw: dict[str, Any] = {}
    secrets: dict[str, str] = {}
    prefix = f"{PROJECT}:"
    for key, value in all_config.items():
        if not key.startswith(prefix):
            continue
        short = key[len(prefix) :]
        if short in SECRET_KEYS:
            secrets[short] = value
            continue
        try:
            raw[short] = json.loads(value)
        except (TypeError, ValueError):
            raw[short] = value
    return raw, secrets


def plaintext_secrets(all_config: dict[str, Any], secret_keys: Collection[str]) -> list[str]:
    """A problem for each of this project's secret keys whose value is not encrypted.

    `secret_keys` are the full keys (`llamacpp-aks:apiKey`) that Pulumi decrypted from a
    `secure:` value; a secret key outside it was written in plain text into Pulumi.<stack>.yaml,
    where anyone who reads the repository sees it. The value itself is never repeated.
    """
    return [
        f"{PROJECT}:{key} is in plain text in the stack file (value not shown); a secret must be "
        f"encrypted: run `pulumi config rm {key}` then `pulumi config set --secret {key} <value>`, "
        f"and rotate the exposed value."
        for key in SECRET_KEYS
        if f"{PROJECT}:{key}" in all_config and f"{PROJECT}:{key}" not in secret_keys
    ]


# --- the stack file -------------------------------------------------------------------------
# A Pulumi.<stack>.yaml read as strictly as the Pulumi CLI reads it, and more strictly. The CLI's
# YAML reader (Go's yaml.v3) refuses a mapping that holds a key twice; PyYAML keeps the last one,
# so a second `llamacpp-aks:cluster:` would silently win over the first. The offline render reads
# the file itself, so it refuses what the CLI refuses, and also what no stack file needs: keys
# outside Pulumi's stack-file schema, aliases beyond a few, deep nesting, huge files and bytes
# that are not UTF-8. Each problem is one sentence naming the line or key, found in bounded time.

# Keys Pulumi's stack file schema knows (pulumi/pkg/workspace ProjectStack).
STACK_FILE_KEYS = ("config", "environment", "secretsprovider", "encryptedkey", "encryptionsalt")
# A stack file is a few kilobytes; these bounds are far above any real one and far below what
# makes the reader slow or the output huge.
MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 32
MAX_NODES = 20_000  # with every alias expanded: what the program would receive


class StackFileProblem(ValueError):
    """One sentence saying what is wrong with the stack file and where."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with duplicate keys refused and nesting and aliases bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise StackFileProblem(
                    f"line {mark.line + 1} holds alias number {self._aliases}; a stack file may use at most "
                    f"{MAX_ALIASES} YAML aliases (*name): write the values out."
                )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise StackFileProblem(
                f"line {mark.line + 1} nests values deeper than {MAX_DEPTH} levels; no setting of this "
                f"stack is that deep: remove the extra nesting."
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen[key] = line
            except TypeError:
                raise StackFileProblem(
                    f"line {line} uses a {type(key).__name__} as a mapping key; keys are names such as "
                    f"llamacpp-aks:server."
                ) from None
            if first is not None:
                raise StackFileProblem(
                    f"line {line} repeats the key {shown(key)} (first at line {first}); the Pulumi CLI "
                    f"refuses a key given twice: keep one and merge the settings into it."
                )
        return super().construct_mapping(node, deep=deep)


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of the document with every alias expanded, counted without expanding them."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a cycle counts once; safe_load builds it as a self-reference
    if isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_nodes(k, memo) + _expanded_nodes(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        total = 1 + sum(_expanded_nodes(v, memo) for v in node.value)
    else:
        total = 1
    memo[id(node)] = total
    return total


def _decoded(data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise StackFileProblem(
            f"the file is {len(data)} bytes, over the {MAX_FILE_BYTES} a stack file may have; "
            f"a stack's config is a few kilobytes: remove what is not config."
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise StackFileProblem(
            f"line {line} holds the byte 0x{data[err.start]:02x}, which is not UTF-8; save the file as UTF-8."
        ) from None


def parse_stack_file(data: bytes) -> dict[str, Any]:
    """The stack file's top-level mapping; raises StackFileProblem (one sentence) or yaml.YAMLError."""
    text = _decoded(data)
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        if _expanded_nodes(node, {}) > MAX_NODES:
            raise StackFileProblem(
                f"the file expands to more than {MAX_NODES} values once its YAML aliases are resolved; "
                f"write the values out without aliases."
            )
        doc = loader.construct_document(node)
    finally:
        loader.dispose()
    if not isinstance(doc, dict):
        raise StackFileProblem(
            f"the file holds a {type(doc).__name__} at the top level; a stack file is a mapping with a config: key."
        )
    unknown = [k for k in doc if k not in STACK_FILE_KEYS]
    if unknown:
        close = [k for k in STACK_FILE_KEYS if str(unknown[0]).lower() == k]
        hint = f" (keys are case-sensitive: did you mean {close[0]}?)" if close else ""
        raise StackFileProblem(
            f"the top-level key {shown(unknown[0])} is not part of a Pulumi stack file{hint}; the CLI would "
            f"ignore it and everything under it: use {', '.join(STACK_FILE_KEYS)}."
        )
    return doc


def stack_config(path: Path) -> tuple[str, dict[str, str]]:
    """Stack name and Pulumi's flat config map from a Pulumi.<stack>.yaml (secrets left out).

    Every way the file itself can be wrong is a ConfigError with one sentence, as the program's
    own config errors are: a user runs this by hand, and a traceback helps no one.
    """
    match = re.fullmatch(r"Pulumi\.(.+)\.yaml", path.name)
    if not match:
        raise ConfigError(
            [f"{path} is not named Pulumi.<stack>.yaml; pass --config with a stack file such as Pulumi.dev.yaml."]
        )
    try:
        doc = parse_stack_file(path.read_bytes())
    except StackFileProblem as err:
        raise ConfigError([f"{path}: {err}"]) from None
    except FileNotFoundError:
        raise ConfigError(
            [f"{path} does not exist; pass --config with a stack file such as Pulumi.dev.yaml."]
        ) from None
    except OSError as err:
        raise ConfigError([f"{path} cannot be read ({err.strerror}); check the path and its permissions."]) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(err, "problem", None) or "not valid YAML"
        raise ConfigError([f"{path} is not valid YAML{where} ({what}); fix the syntax there."]) from None
    config = doc.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(
            [
                f"{path}: config={shown(config)} is not a mapping; write one key per setting under "
                f"config:, such as llamacpp-aks:server."
            ]
        )
    flat: dict[str, str] = {}
    secure: set[str] = set()
    for key, value in config.items():
        full = str(key) if ":" in str(key) else f"{PROJECT}:{key}"
        if isinstance(value, dict) and set(value) == {"secure"}:
            secure.add(full)  # encrypted; the render cannot and need not decrypt it
            continue
        flat[full] = value if isinstance(value, str) else json.dumps(value, default=str)
    plaintext = plaintext_secrets(flat, secure)
    if plaintext:
        raise ConfigError(plaintext)
    return match.group(1), flat


def read_stack(path: Path) -> tuple[str, StackConfig]:
    """The stack's name and validated config from a Pulumi.<stack>.yaml, or a ConfigError with
    every problem."""
    stack, flat = stack_config(path)
    raw, _ = split_pulumi_config(flat)
    return stack, load_config(raw, stack)[0]


def load_stack(path: Path) -> StackConfig:
    """The validated config of a Pulumi.<stack>.yaml, or a ConfigError with every problem."""
    return read_stack(path)[1]

"""Loading a stack's config: Pulumi's flat key map to a validated `StackConfig`, or a `ConfigError`
with every problem at once, each naming the key path, the value, the limit and the fix."""

from __future__ import annotations

import difflib
import json
import unicodedata
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from core.config import PROJECT, SECRET_KEYS, StackConfig, ValueProblem
from core.rules import check
from core.stack_file import shown

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


def load_config(raw: dict[str, Any], stack: str) -> tuple[StackConfig, list[str]]:
    """Validated config and its warnings; raises ConfigError listing every problem."""
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
    errors, warnings = check(config, stack)
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

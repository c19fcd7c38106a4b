"""Loading a stack's config: Pulumi's flat key map to a validated `StackConfig`, or a `ConfigError`
with every problem at once, each naming the key path, the value, the limit and the fix."""

from __future__ import annotations

import base64
import difflib
import json
import math
import re
import types
import typing
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
from core.stack_yaml import StackFileProblem, parse_stack_file

# Longest string any setting needs (a webhook URL is at most 2048); longer is a mistake or an attack.
MAX_VALUE_CHARS = 4096
# The largest number any setting may hold: 2**53, the largest integer a float (and so JSON as
# most readers read it) holds exactly; a model file of 9 PB is far beyond any setting, and the
# sizing and cost arithmetic stays finite with every input within it.
MAX_NUMBER = 2**53
MAX_NUMBER_SAID = f"is larger than {MAX_NUMBER} (2^53)"
# Namespaces of the providers this program uses (the Pulumi packages in requirements.txt): their
# default providers read config such as azure-native:location. Any other namespace is config of
# another project, which this program never reads and the render cannot judge.
PROVIDER_NAMESPACES = ("azure-native", "kubernetes", "docker", "command", "random", "grafana", "time")
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
    numbers = _text_number_problems(raw, ())
    values = [(path, p) for path, p in _value_problems(raw, "") if path not in dict(numbers)] + numbers
    if any(MAX_NUMBER_SAID in problem for _, problem in values):
        # Before the schema: its validators do the sizing arithmetic, which such a number overflows.
        raise ConfigError([problem for _, problem in values])
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
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return _number_problems(value, path)
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


# A number written as text (quoted, or one yaml.v3 leaves as text); pydantic reads it as a number.
_NUMBER_TEXT = re.compile(r"\s*[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?\s*")


def _members(annotation: Any) -> list[Any]:
    """The types a field's annotation admits: through Optional, unions, lists and Annotated."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated or origin is list:
        return _members(args[0])
    if origin is typing.Union or origin is types.UnionType:
        return [member for arg in args for member in _members(arg)]
    return [annotation]


def _is_number_field(loc: tuple[int | str, ...]) -> bool:
    """Whether the setting at `loc` is a number, which pydantic also reads from text ("1e300")."""
    model: type[BaseModel] | None = StackConfig
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return False
        field = next((f for name, f in model.model_fields.items() if part in (name, f.alias)), None)
        if field is None:
            return False
        annotation = field.annotation
        model = next((m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)), None)
    return any(member in (int, float) for member in _members(annotation))


def _text_number_problems(value: Any, loc: tuple[int | str, ...]) -> list[tuple[str, str]]:
    """_number_problems of each number written as text where the setting is a number."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _text_number_problems(item, (*loc, str(key)))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _text_number_problems(item, (*loc, i))]
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value) and _is_number_field(loc):
        return _number_problems(value, _path(loc))
    return []


def _number_problems(value: int | float | str, path: str) -> list[tuple[str, str]]:
    """A problem where a number (or a number written as text) is beyond MAX_NUMBER. Compared
    without converting a long text to int, which Python refuses past 4300 digits."""
    if isinstance(value, str):
        text = value.strip().replace("_", "")
        # Whole numbers exactly (float() would round 2^53 + 1 down); a longer text is far past the bound.
        short_whole = len(text) <= 40 and text.lstrip("+-").isdigit()
        magnitude = abs(int(text)) if short_whole else abs(float(text))
    elif not math.isfinite(value):
        return []  # the schema names .inf and .nan
    else:
        magnitude = abs(value)
    if magnitude <= MAX_NUMBER:
        return []
    said = f"a number of {len(value)} characters" if isinstance(value, str) and len(value) > 24 else shown(value)
    return [
        (
            path,
            f"{path}={said} {MAX_NUMBER_SAID}, more than any setting takes and beyond what "
            f"the sizing and cost arithmetic can hold; set {path} to the value you mean.",
        )
    ]


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


# What YAML 1.1 readers (PyYAML, older tools) take for a boolean, and a quoted true or false:
# text to the CLI, which a switch refuses; the message names the word to write instead.
_YAML11_BOOLS = {
    **dict.fromkeys(("on", "yes", "y", "true"), True),
    **dict.fromkeys(("off", "no", "n", "false"), False),
}


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
    if kind == "bool_type" and isinstance(error.get("input"), str) and error["input"].lower() in _YAML11_BOOLS:
        word = error["input"]
        meant = "true" if _YAML11_BOOLS[word.lower()] else "false"
        fix = f"write {meant} without quotes" if word.lower() == meant else f"use {meant}, not {word}"
        return (
            f"{path}={value} is not true or false but text: the Pulumi CLI reads YAML 1.2, where only true and "
            f"false are booleans, and a switch takes only those, unquoted: {fix}."
        )
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


def foreign_keys(all_config: Collection[str]) -> list[str]:
    """A problem for each key under a namespace that is neither this project's nor one of its
    providers' (another project's settings, pasted in): the program would ignore it, and the
    render cannot say what it does. The value is never repeated."""
    out = []
    for key in all_config:
        namespace, sep, name = key.partition(":")
        if sep and namespace != PROJECT and namespace not in PROVIDER_NAMESPACES:
            out.append(
                f"the config key {shown(key)} is under the namespace {shown(namespace)} (value not shown), which "
                f"neither this program nor a provider it uses ({', '.join(PROVIDER_NAMESPACES)}) reads; the render "
                f"cannot show what it does: remove it, or write it as {PROJECT}:{shown(name)[1:-1]} if it is a "
                f"setting of this stack."
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
    foreign = foreign_keys(all_config)
    if foreign:
        raise ConfigError(foreign)
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
    """A problem for each of this project's secret keys whose value is not encrypted, and for each
    of its other keys that holds a secret.

    `secret_keys` are the full keys (`llamacpp-aks:apiKey`) that Pulumi decrypted from a
    `secure:` value; a secret key outside it was written in plain text into Pulumi.<stack>.yaml,
    where anyone who reads the repository sees it. A `secure:` value under any other key of this
    project (`llamacpp-aks:server` with `alias: {secure: ...}`) is a secret the program does not
    read as one, and the offline render cannot see. The value itself is never repeated.
    """
    plain = [
        f"{PROJECT}:{key} is in plain text in the stack file (value not shown); a secret must be "
        f"encrypted: run `pulumi config rm {key}` then `pulumi config set --secret {key} <value>`, "
        f"and rotate the exposed value."
        for key in SECRET_KEYS
        if f"{PROJECT}:{key}" in all_config and f"{PROJECT}:{key}" not in secret_keys
    ]
    ours = {f"{PROJECT}:{key}" for key in SECRET_KEYS}
    misplaced = [
        misplaced_secret(key)
        for key in sorted(secret_keys)
        if key.startswith(f"{PROJECT}:") and key not in ours and key in all_config
    ]
    return plain + misplaced


def misplaced_secret(at: str) -> str:
    """The problem of a `secure:` value at `at`, a key (or a path inside one) where none belongs."""
    places = ", ".join(f"{PROJECT}:{k}" for k in SECRET_KEYS)
    return (
        f"{at} holds a secure: value (not shown), but a secret belongs only in {places} (or a provider's "
        f"own key); the render cannot see it and the program would not read it: move the secret there, "
        f"or write the setting in plain text."
    )


# Pulumi's passphrase secrets provider writes `v1:<base64 nonce>:<base64 ciphertext>`: AES-256-GCM
# with a 12-byte nonce, the ciphertext the value and a 16-byte tag (pulumi/pulumi,
# sdk/go/common/resource/config/crypt.go, symmetricCrypter.EncryptValue). Cloud KMS providers
# encrypt values the same way, with the data key wrapped in encryptedkey.
_CIPHERTEXT = re.compile(
    r"v1:(?P<nonce>[A-Za-z0-9+/]{16}):(?P<sealed>(?:[A-Za-z0-9+/]{4})+(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)"
)
GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16


def is_ciphertext(value: object) -> bool:
    """Whether `value` has the form of a value Pulumi's passphrase provider encrypted."""
    match = _CIPHERTEXT.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return False
    return (
        len(base64.b64decode(match["nonce"])) == GCM_NONCE_BYTES
        and len(base64.b64decode(match["sealed"])) >= GCM_TAG_BYTES
    )


def cli_key(key: str) -> str | None:
    """A stack file's config key as the Pulumi CLI names it, or None where the CLI refuses it.

    pulumi/pulumi sdk/go/common/resource/config/key.go, ParseKey: `<namespace>:<name>`, or the old
    `<namespace>:config:<name>`; a key without a namespace (`cluster`) or with other colons is an
    error there, never this project's key.
    """
    parts = key.split(":")
    if len(parts) == 2:
        return key
    if len(parts) == 3 and parts[1] == "config":
        return f"{parts[0]}:{parts[2]}"
    return None


def _go_json(value: Any) -> Any:
    """A value as the CLI hands it to the program: Go's encoding/json writes a whole float below
    1e21 without a fraction (`2.0` arrives as `2`)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _go_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_go_json(v) for v in value]
    return value


def _secure_problems(key: str, value: Any, where: str = "") -> list[str]:
    """A problem for each `secure:` value under `key` that is not where a secret belongs or not
    ciphertext. The value is never repeated."""
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _secure_problems(key, item, f"{where}[{i}]")]
    if not isinstance(value, dict):
        return []
    if "secure" not in value:
        return [p for name, item in value.items() for p in _secure_problems(key, item, f"{where}.{_key(name)}")]
    namespace, _, name = key.partition(":")
    secret_place = not where and (namespace in PROVIDER_NAMESPACES or (namespace == PROJECT and name in SECRET_KEYS))
    at = f"{key}{where}"
    if not secret_place:
        return [misplaced_secret(at)]
    ciphertext = value["secure"]
    if set(value) != {"secure"} or not isinstance(ciphertext, str):
        return [
            f"{at} holds secure: with {'other keys beside it' if set(value) != {'secure'} else _kind_of(ciphertext)} "
            f"(value not shown), which the Pulumi CLI does not read as a secret; run `pulumi config set --secret "
            f"{name} <value>` so that it writes the ciphertext."
        ]
    if not is_ciphertext(ciphertext):
        return [
            f"{at} holds secure: with a value that is not Pulumi ciphertext (v1:<nonce>:<ciphertext>; value not "
            f"shown); a secret written there in plain text is exposed: run `pulumi config set --secret {name} "
            f"<value>`, and rotate the value if it was real."
        ]
    return []


def _kind_of(value: object) -> str:
    """What a YAML value is, in words, without the value."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {list: "a list", dict: "a mapping", type(None): "nothing"}.get(type(value), "text")


def _project_file_problems(directory: Path) -> list[str]:
    """A problem where the project's Pulumi.yaml has config the CLI would merge into the stack's."""
    problems = []
    for project_file in (directory / "Pulumi.yaml", directory / "Pulumi.yml"):
        try:
            doc = parse_stack_file(project_file.read_bytes(), keys=None)
        except FileNotFoundError:
            continue
        except (StackFileProblem, OSError, yaml.YAMLError):
            problems.append(f"{project_file} cannot be read as YAML; the render needs it to know the project's config.")
            continue
        if doc.get("config"):
            problems.append(
                f"{project_file} has project-level config:, which the Pulumi CLI merges into every stack's "
                f"config (docs: pulumi.com/docs/iac/concepts/projects/project-file/#config-options); the render "
                f"reads only the stack file and would show defaults instead: move those settings into each "
                f"Pulumi.<stack>.yaml."
            )
    return problems


def stack_config(path: Path) -> tuple[str, dict[str, str]]:
    """Stack name and Pulumi's flat config map from a Pulumi.<stack>.yaml (secrets left out), as
    the Pulumi CLI would hand it to the program; what the CLI would take from elsewhere (ESC
    environments, project-level config) is refused, as the render cannot see it.

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
    problems = _project_file_problems(path.parent)
    if doc.get("environment"):
        problems.append(
            f"{path}: environment: imports Pulumi ESC environments, whose pulumiConfig the Pulumi CLI merges "
            f"into this stack's config; the render cannot see them (they live in Pulumi Cloud): write those "
            f"settings in the stack file and remove environment:."
        )
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
    written: dict[str, str] = {}
    for key, value in config.items():
        full = cli_key(key)
        if full is None:
            fix = f"{PROJECT}:{key}" if ":" not in key else f"{PROJECT}:{key.rsplit(':', 1)[-1]}"
            problems.append(
                f"{path}: the config key {shown(key)} is not of the form <namespace>:<name>, and the Pulumi CLI "
                f"refuses the file (value not shown): write it as {shown(fix)[1:-1]}."
            )
            continue
        if full in written:
            problems.append(
                f"{path}: the config keys {shown(written[full])} and {shown(key)} both name {full}, and the Pulumi "
                f"CLI keeps only the last: keep one of them."
            )
            continue
        written[full] = key
        problems += _secure_problems(full, value)
        if isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str):
            secure.add(full)  # encrypted; the render cannot and need not decrypt it
            continue
        flat[full] = value if isinstance(value, str) else json.dumps(_go_json(value))
    if problems:
        raise ConfigError(problems)
    plaintext = plaintext_secrets(flat, secure)
    if plaintext:
        raise ConfigError(plaintext)
    return match.group(1), flat


class StackFileMissing(Exception):
    """No Pulumi.<stack>.yaml for the stack a command was given; the message is the sentence."""


def stack_file(root: Path, stack: str) -> Path:
    """The stack file of `stack` under `root`, which the operator commands take by STACK=<name>."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise StackFileMissing(f"Pulumi.{stack}.yaml does not exist; give STACK=<name> of a Pulumi.<name>.yaml")
    return path


def read_stack(path: Path) -> tuple[str, StackConfig]:
    """The stack's name and validated config from a Pulumi.<stack>.yaml, or a ConfigError with
    every problem."""
    stack, flat = stack_config(path)
    raw, _ = split_pulumi_config(flat)
    return stack, load_config(raw, stack)[0]


def load_stack(path: Path) -> StackConfig:
    """The validated config of a Pulumi.<stack>.yaml, or a ConfigError with every problem."""
    return read_stack(path)[1]

"""Reading a Pulumi.<stack>.yaml as the Pulumi CLI reads it: YAML 1.2 scalars as Go's yaml.v3
resolves them, duplicate keys refused, and size, nesting and aliases bounded. Pure."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Collection
from typing import Any

import yaml

from core.config import shown

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


# --- scalars as the Pulumi CLI reads them ------------------------------------------------------
# The CLI reads stack files with gopkg.in/yaml.v3, whose resolver (resolve.go, github.com/go-yaml/yaml
# branch v3) follows YAML 1.2's core schema with a few choices of its own; PyYAML follows YAML 1.1,
# where `on`, `no` and `y` are booleans and `20:00` is the number 1200. An unquoted scalar here
# resolves as yaml.v3 resolves it:
# - null: empty, `~`, `null`, `Null`, `NULL`; booleans: `true`, `True`, `TRUE`, `false`, `False`,
#   `FALSE` only (so `on`, `off`, `yes`, `no`, `y`, `n` in any case are text);
# - integers: Go's strconv.ParseInt(s, 0, 64) after removing every `_`, then ParseUint: so `0x1F`,
#   `0o17`, `0b101`, the YAML 1.1 octal `017` (15) and `1_000` are numbers; one beyond 64 bits is a
#   float if it fits one, and text otherwise (a thousand-digit number reaches the program as text);
# - floats: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$` (so `1e3` and `08` are floats),
#   and `.inf`, `-.inf`, `.nan` in three spellings each; sexagesimal (`20:00`) is text;
# - timestamps (`2026-01-02`), which the CLI passes on as Go's time.String() ("2026-01-02 00:00:00
#   +0000 UTC"): refused here, as no setting takes one.
# No library does this: ruamel.yaml's YAML 1.2 mode reads `017` as 17 and `1e3` as text.
_NULLS = ("", "~", "null", "Null", "NULL")
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_YAML_STYLE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
# Go's ParseFloat on a scalar starting with '.': digits, '_' only between digits, an exponent.
_DOT_FLOAT = re.compile(r"\.[0-9]+(?:_[0-9]+)*(?:[eE][-+]?[0-9]+(?:_[0-9]+)*)?")
# yaml.v3's parseTimestamp: Go's time.Parse with "2006-1-2T15:4:5.999999999Z07:00" (or a lowercase
# t), "2006-1-2 15:4:5.999999999" and "2006-1-2"; a date that does not exist stays text.
_TIMESTAMP = re.compile(
    r"(?P<y>[0-9]{4})-(?P<m>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
    r"(?:[Tt][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?(?:Z|[-+][0-9]{2}:[0-9]{2})"
    r"| [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?)?"
)
_GO_DIGITS = {2: "01", 8: "01234567", 10: "0123456789", 16: "0123456789abcdefABCDEF"}
# The most significant digits of a 64-bit number in any base Go's ParseUint reads (64 binary ones).
_MAX_GO_DIGITS = 64
_INT64 = 2**63
_UINT64 = 2**64


def _go_parse_uint(text: str) -> int | None:
    """Go's strconv.ParseUint(text, 0, 64), or None where it fails; never converts more than a
    64-bit number's digits, so no thousand-digit string reaches int()."""
    if not text:
        return None
    base, digits = 10, text
    if text[0] == "0" and len(text) > 1:
        if len(text) >= 3 and text[1] in "bB":
            base, digits = 2, text[2:]
        elif len(text) >= 3 and text[1] in "oO":
            base, digits = 8, text[2:]
        elif len(text) >= 3 and text[1] in "xX":
            base, digits = 16, text[2:]
        else:
            base, digits = 8, text[1:]
    significant = digits.lstrip("0") or "0"
    if not digits or len(significant) > _MAX_GO_DIGITS or any(ch not in _GO_DIGITS[base] for ch in digits):
        return None
    value = int(significant, base)
    return value if value < _UINT64 else None


def _go_parse_int(text: str) -> int | None:
    """Go's strconv.ParseInt(text, 0, 64): an optional sign, then ParseUint, within 64 bits."""
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    magnitude = _go_parse_uint(body)
    if magnitude is None or not -_INT64 <= sign * magnitude < _INT64:
        return None
    return sign * magnitude


def _finite_float(text: str) -> float | None:
    value = float(text)
    return value if math.isfinite(value) else None  # Go's ParseFloat fails with ErrRange instead


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        datetime.date(year, month, day)
    except ValueError:
        return False
    return True


def go_yaml_scalar(text: str) -> tuple[str, Any]:
    """(kind, value) of an unquoted scalar as yaml.v3 resolves it: kind is one of null, bool,
    int, float, timestamp and str (resolve.go's resolve(), without explicit tags)."""
    first = text[:1]
    if text in _NULLS:
        return "null", None
    if text in _BOOLS:
        return "bool", _BOOLS[text]
    if text in _SPECIAL_FLOATS:
        return "float", _SPECIAL_FLOATS[text]
    if first == "." and _DOT_FLOAT.fullmatch(text):
        value = _finite_float(text.replace("_", ""))
        if value is not None:
            return "float", value
    elif first and first in "+-0123456789":
        stamp = _TIMESTAMP.fullmatch(text)
        if stamp and _is_date(int(stamp["y"]), int(stamp["m"]), int(stamp["d"])):
            return "timestamp", text
        plain = text.replace("_", "")
        for parse in (_go_parse_int, _go_parse_uint):
            number = parse(plain)
            if number is not None:
                return "int", number
        if _YAML_STYLE_FLOAT.fullmatch(plain):
            value = _finite_float(plain)
            if value is not None:
                return "float", value
        for prefix, base in (("0b", 2), ("-0b", 2), ("0o", 8), ("-0o", 8)):
            # yaml.v3 retries these with Go's ParseInt(rest, base): `0b-1` is -1 there.
            if plain.startswith(prefix):
                rest = ("-" if prefix[0] == "-" else "") + plain[len(prefix) :]
                sign, body = (-1, rest[1:]) if rest[:1] == "-" else (1, rest[1:] if rest[:1] == "+" else rest)
                if body and len(body.lstrip("0")) <= _MAX_GO_DIGITS and all(ch in _GO_DIGITS[base] for ch in body):
                    number = sign * int(body, base)
                    if -_INT64 <= number < _UINT64:
                        return "int", number
                break
    return "str", text


_TAGS = {kind: f"tag:yaml.org,2002:{kind}" for kind in ("null", "bool", "int", "float", "timestamp", "str")}


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading scalars as yaml.v3 does (above), with duplicate keys, explicit
    tags and merge keys refused, and nesting and aliases bounded."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            if value == "<<":
                return "tag:yaml.org,2002:merge"
            return _TAGS[go_yaml_scalar(value)[0]]
        return super().resolve(kind, value, implicit)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise StackFileProblem(
                    f"line {mark.line + 1} holds alias number {self._aliases}; a stack file may use at most "
                    f"{MAX_ALIASES} YAML aliases (*name): write the values out."
                )
        else:
            event = self.peek_event()
            tag = getattr(event, "tag", None)
            if tag is not None:
                raise StackFileProblem(
                    f"line {event.start_mark.line + 1} gives a value the YAML tag "
                    f"{shown(tag.replace('tag:yaml.org,2002:', '!!'))}; the Pulumi CLI "
                    f"reads tags its own way and no setting needs one: remove the tag (quote the value for text)."
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

    def construct_go_scalar(self, node: yaml.ScalarNode) -> Any:
        kind, value = go_yaml_scalar(node.value)
        line = node.start_mark.line + 1
        if kind == "timestamp":
            raise StackFileProblem(
                f"line {line} holds {shown(node.value)}, which the Pulumi CLI reads as a date and passes on "
                f"rewritten (as Go prints a time); no setting takes a date: quote it if you mean the text."
            )
        if kind == "float" and not math.isfinite(value):
            raise StackFileProblem(
                f"line {line} holds {node.value}, which the Pulumi CLI cannot pass to the program (JSON has no "
                f"infinity or NaN, so the CLI stops); write a number."
            )
        return value

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise StackFileProblem(
                    f"line {line} uses the YAML merge key <<; write the settings out in the mapping instead."
                )
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise StackFileProblem(
                    f"line {line} uses {shown(key)} ({'a list or mapping' if isinstance(key, list | dict) else 'not text'}) "
                    f"as a mapping key; keys are names such as llamacpp-aks:server (quote a key that looks like "
                    f"a number or null)."
                )
            first = seen.get(key)
            seen[key] = line
            if first is not None:
                raise StackFileProblem(
                    f"line {line} repeats the key {shown(key)} (first at line {first}); the Pulumi CLI "
                    f"refuses a key given twice: keep one and merge the settings into it."
                )
        return super().construct_mapping(node, deep=deep)


for _kind in ("null", "bool", "int", "float", "timestamp"):
    _StrictLoader.add_constructor(_TAGS[_kind], _StrictLoader.construct_go_scalar)


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


def parse_stack_file(data: bytes, keys: Collection[str] | None = STACK_FILE_KEYS) -> dict[str, Any]:
    """The stack file's top-level mapping; raises StackFileProblem (one sentence) or yaml.YAMLError.
    `keys`: the top-level keys it may have (None: any, as in the project file)."""
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
    unknown = [k for k in doc if keys is not None and k not in keys]
    if unknown:
        close = [k for k in STACK_FILE_KEYS if str(unknown[0]).lower() == k]
        hint = f" (keys are case-sensitive: did you mean {close[0]}?)" if close else ""
        raise StackFileProblem(
            f"the top-level key {shown(unknown[0])} is not part of a Pulumi stack file{hint}; the CLI would "
            f"ignore it and everything under it: use {', '.join(STACK_FILE_KEYS)}."
        )
    return doc

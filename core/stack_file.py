"""A Pulumi.<stack>.yaml read as strictly as the Pulumi CLI reads it, and more strictly.

The CLI's YAML reader (Go's yaml.v3) refuses a mapping that holds a key twice; PyYAML keeps the
last one, so a second `llamacpp-aks:cluster:` would silently win over the first. The offline
render reads the file itself, so it refuses what the CLI refuses, and also what no stack file
needs: keys outside Pulumi's stack-file schema, aliases beyond a few, deep nesting, huge values
and bytes that are not UTF-8. Each problem is one sentence naming the line or key, found in
bounded time, with a bounded message.
"""

from __future__ import annotations

from typing import Any

import yaml

# Keys Pulumi's stack file schema knows (pulumi/pkg/workspace ProjectStack).
STACK_FILE_KEYS = ("config", "environment", "secretsprovider", "encryptedkey", "encryptionsalt")
# A stack file is a few kilobytes; these bounds are far above any real one and far below what
# makes the reader slow or the output huge.
MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_ALIASES = 32
MAX_NODES = 20_000  # with every alias expanded: what the program would receive
SHOWN_CHARS = 160  # of a value or key quoted in a message


class StackFileProblem(ValueError):
    """One sentence saying what is wrong with the stack file and where."""


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """A value as a message quotes it: repr, cut to `limit` characters with the full length named."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


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


def parse(data: bytes) -> dict[str, Any]:
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

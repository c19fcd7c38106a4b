"""The llama-server command line (core/server_args.py): every `Server` field reaches its flag, or
is declared not to be one and changes nothing on the command line (pure, no server)."""

from __future__ import annotations

from collections.abc import Iterator
from operator import attrgetter
from typing import Any

import pytest
from pydantic import BaseModel

from core.config import Server
from core.server_args import COMMAND_LINE, NOT_FLAGS, ServerPaths, llama_server_args

PATHS = ServerPaths("/models/m.gguf", "/models/mmproj.gguf", "/secrets/api-key")
FLAG_FIELDS = {f.field: f for f in COMMAND_LINE if f.field is not None}
# Fields a flag's value is computed from (-ts from the GPU count and the shares).
DERIVED_FIELDS = {field: f for f in COMMAND_LINE for field in f.reads}


def leaves(model: type[BaseModel], declared: set[str], prefix: str = "") -> Iterator[str]:
    """Each field of `model` as a dotted path; into a nested model only where the table names its fields."""
    for name, info in model.model_fields.items():
        path = prefix + name
        nested = info.annotation
        if path not in declared and any(d.startswith(f"{path}.") for d in declared):
            assert isinstance(nested, type) and issubclass(nested, BaseModel), path
            yield from leaves(nested, declared, f"{path}.")
        else:
            yield path


def other(value: Any) -> Any:
    """A value unlike `value` (not validated: the command line is built from whatever it holds)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return f"{value}0"
    if isinstance(value, list):
        return [*value, 2.0]
    if isinstance(value, BaseModel):
        first = next(iter(type(value).model_fields))
        return value.model_copy(update={first: other(getattr(value, first))})
    raise TypeError(f"no other value for {value!r}")


def changed(s: BaseModel, path: str) -> Any:
    """`s` with the field at the dotted `path` set to another value."""
    head, _, rest = path.partition(".")
    value = getattr(s, head)
    return s.model_copy(update={head: changed(value, rest) if rest else other(value)})


def test_every_server_field_is_a_flag_or_declared_not_to_be_one():
    declared = set(FLAG_FIELDS) | set(NOT_FLAGS) | set(DERIVED_FIELDS)
    assert not set(FLAG_FIELDS) & set(NOT_FLAGS), "a field is both a flag and not one"
    assert not set(DERIVED_FIELDS) & (set(NOT_FLAGS) | set(FLAG_FIELDS)), "a field is read twice"
    undeclared = [p for p in leaves(Server, declared) if p not in declared]
    assert not undeclared, f"Server fields neither in COMMAND_LINE nor in NOT_FLAGS: {undeclared}"
    fields = set(leaves(Server, declared))
    assert declared <= fields, f"the table names fields Server does not have: {sorted(declared - fields)}"


@pytest.mark.parametrize("field", sorted(FLAG_FIELDS))
def test_each_flag_field_reaches_its_flag_and_nothing_else(field):
    flag = FLAG_FIELDS[field]
    s = Server()
    before, after = llama_server_args(s, PATHS), llama_server_args(changed(s, field), PATHS)
    assert len(before) == len(after)
    differ = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(differ) == 1, f"{field} changed {[before[i] for i in differ]}"
    if flag.off is None:
        (at,) = differ
        assert after[at - 1] == flag.flag
        assert after[at] == str(attrgetter(field)(changed(s, field)))
    else:
        assert {before[differ[0]], after[differ[0]]} == {flag.flag, flag.off}


@pytest.mark.parametrize("field", sorted(DERIVED_FIELDS))
def test_each_field_a_flag_is_computed_from_changes_that_flag_only(field):
    flag = DERIVED_FIELDS[field]
    s = Server()
    before, after = llama_server_args(s, PATHS), llama_server_args(changed(s, field), PATHS)
    differ = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert [after[i - 1] for i in differ] == [flag.flag], f"{field} changed {[before[i] for i in differ]}"


@pytest.mark.parametrize("field", sorted(NOT_FLAGS))
def test_fields_declared_not_to_be_flags_leave_the_command_line_alone(field):
    s = Server()
    assert llama_server_args(changed(s, field), PATHS) == llama_server_args(s, PATHS)


def test_each_flag_takes_its_value_from_one_place():
    for f in COMMAND_LINE:
        sources = [x for x in (f.field, f.path, f.value, f.derived) if x is not None]
        assert len(sources) <= 1, f"{f.flag} has {sources}"
        assert f.off is None or f.field is not None, f"{f.flag}: only a bool field has an off switch"
        assert bool(f.reads) == (f.derived is not None), f"{f.flag}: a computed value names what it reads"


def test_the_paths_reach_their_flags():
    args = llama_server_args(Server(), PATHS)
    pairs = {args[i]: args[i + 1] for i in range(len(args) - 1)}
    assert (pairs["-m"], pairs["--mmproj"], pairs["--api-key-file"]) == (PATHS.model, PATHS.mmproj, PATHS.api_key_file)


@pytest.mark.parametrize(
    ("gpus", "shares", "expected"),
    [
        (1, [], ["-sm", "layer", "-ts", "1"]),
        (2, [], ["-sm", "layer", "-ts", "1,1"]),
        (2, [3, 1.5], ["-sm", "layer", "-ts", "3,1.5"]),
    ],
)
def test_split_flags_carry_the_gpu_count_and_shares(gpus, shares, expected):
    args = llama_server_args(Server(gpus_per_replica=gpus, tensor_split=shares), PATHS)
    at = args.index("-sm")
    assert args[at : at + 4] == expected

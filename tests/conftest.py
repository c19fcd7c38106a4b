"""Shared helpers: run the real program under Pulumi's mocks, render stacks once per session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from core.config import PROJECT
from tools import render

ROOT = Path(__file__).resolve().parent.parent
STACK_FILES = sorted(ROOT.glob("Pulumi.*.yaml"))


def flat_config(raw: dict[str, Any]) -> dict[str, str]:
    return {f"{PROJECT}:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def run_stack(
    raw: dict[str, Any] | None = None,
    stack: str = "dev",
    secrets: dict[str, str] | None = None,
    mocks: render.RenderMocks | None = None,
) -> render.RenderMocks:
    """Runs __main__.py under mocks with this config; returns every resource it declared."""
    flat = flat_config(raw or {})
    flat.update({f"{PROJECT}:{k}": v for k, v in (secrets or {}).items()})
    return render.run_program(stack, flat, mocks)


def preview_problems(raw: dict[str, Any], stack: str = "dev", secrets: dict[str, str] | None = None) -> list[str]:
    """Runs the program under mocks as `pulumi preview` would; returns its config problems,
    after checking that it declared no resource and printed no traceback."""
    mocks = render.RenderMocks()
    with pytest.raises(pulumi.RunError) as err:
        run_stack(raw, stack, secrets, mocks=mocks)
    assert not mocks.resources, "a bad config must not declare any resource"
    text = str(err.value)
    assert text.startswith("invalid stack config:")
    assert "Traceback" not in text and "validation error" not in text and "pydantic" not in text
    return [line[2:] for line in text.splitlines()[1:]]


def only(problems: list[str]) -> str:
    """The one problem of a list that must hold exactly one."""
    assert len(problems) == 1, problems
    return problems[0]


def of_type(mocks: render.RenderMocks, typ: str) -> list[render.Recorded]:
    return [r for r in mocks.resources if r.typ == typ]


def one(mocks: render.RenderMocks, typ: str) -> dict[str, Any]:
    found = of_type(mocks, typ)
    assert len(found) == 1, f"expected one {typ}, found {len(found)}"
    return found[0].inputs


def named(mocks: render.RenderMocks, typ: str, name: str) -> dict[str, Any]:
    """The inputs of the one resource of this type whose metadata.name is `name`."""
    found = [r.inputs for r in of_type(mocks, typ) if r.inputs["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {typ} named {name}, found {len(found)}"
    return found[0]


def unsecret(value: Any) -> Any:
    """The plain value inside a Pulumi secret, asserting that it is one."""
    assert isinstance(value, dict) and render.SECRET_SIG in value, f"{value!r} is not a secret"
    return value["value"]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every stack in the repo rendered once: stack name -> render directory."""
    out = {}
    for path in STACK_FILES:
        stack = path.name.split(".")[1]
        target = tmp_path_factory.mktemp(f"render-{stack}")
        render.render(path, target)
        out[stack] = target
    return out

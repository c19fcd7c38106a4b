"""docs/configuration.md names every key of the schema, under its top-level key."""

from __future__ import annotations

import re

from pydantic import BaseModel

from core.config import StackConfig
from tests.conftest import ROOT


def leaf_keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for name, field in model.model_fields.items():
        key = field.alias or name
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out += leaf_keys(annotation, f"{prefix}{key}.")
        elif "ActiveHours" in str(annotation):
            from core.config import ActiveHours

            out += leaf_keys(ActiveHours, f"{prefix}{key}.")
        else:
            out.append((prefix + key, key))
    return out


def test_every_config_key_is_documented_in_its_section():
    readme = (ROOT / "docs" / "configuration.md").read_text()
    sections = dict(re.findall(r"^### `(\w+)`\n(.*?)(?=^### |^## )", readme, re.MULTILINE | re.DOTALL))
    # Keys of the configuration rules page, which is to be merged into the reference.
    rules_page = (ROOT / "docs" / "configuration-rules.md").read_text()
    missing = []
    for path, key in leaf_keys(StackConfig):
        top = path.split(".")[0]
        if (top not in sections or f"{key}`" not in sections[top]) and f"`{path}`" not in rules_page:
            missing.append(path)
    assert not missing, f"docs/configuration.md lacks: {missing}"

"""Checkov skips for Azure resources, each declared beside the resource it concerns with a reason.

Kubernetes objects carry their skips as `checkov.io/skipN` annotations; Azure resources have no
such place, so components record them here and the render writes them into the ARM template's
resource `metadata`, where checkov reads them.
"""

from __future__ import annotations

_SKIPS: dict[str, dict[str, str]] = {}


def skip(resource_name: str, check_id: str, reason: str) -> None:
    """Skip `check_id` for the Pulumi resource named `resource_name`; the reason is one line."""
    _SKIPS.setdefault(resource_name, {})[check_id] = reason


def skips_for(resource_name: str) -> dict[str, str]:
    return dict(_SKIPS.get(resource_name, {}))


def clear() -> None:
    _SKIPS.clear()

"""The type checker guards the spec builders: a misspelt key of an SDK input fails `make test`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

MYPY = Path(sys.executable).parent / "mypy"


def test_type_checker_refuses_a_misspelt_key_in_a_typed_spec(tmp_path: Path):
    spec = tmp_path / "misspelt_spec.py"
    spec.write_text(
        "import pulumi_kubernetes as k8s\n\n\n"
        "def security() -> k8s.core.v1.SecurityContextArgsDict:\n"
        '    return {"run_as_non_rot": True}\n'
    )
    # The project's settings and cache (make typecheck has usually warmed it).
    result = subprocess.run(
        [str(MYPY), "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(ROOT / ".mypy_cache"), str(spec)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert 'Extra key "run_as_non_rot" for TypedDict "SecurityContextArgsDict"' in result.stdout

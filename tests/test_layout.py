"""The layout shows the architecture: pure modules import no Pulumi, components declare one
ComponentResource per file, tools stand apart, no import cycle, every make target is listed."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("core", "specs", "components", "tools")
# Who may import whom: a package imports only those to its right in the architecture.
ALLOWED = {
    "core": set(),
    "specs": {"core"},
    "components": {"core", "specs", "components"},
    "tools": {"core", "tools"},
}


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def is_module(name: str) -> bool:
    return (ROOT / Path(*name.split("."))).with_suffix(".py").exists()


def imported(path: Path) -> set[str]:
    """Top-level module names a file imports, at any depth of the file (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from core import rules` imports the module core.rules, not just the package.
            submodules = {f"{node.module}.{a.name}" for a in node.names}
            names.update({m for m in submodules if is_module(m)} or {node.module})
    return names


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: p.name)
def test_pure_modules_import_nothing_from_pulumi(path):
    pulumi = sorted(n for n in imported(path) if n.split(".")[0].startswith("pulumi"))
    assert not pulumi, f"{path.relative_to(ROOT)} imports {pulumi}"


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_layers_beneath_them(package):
    for path in modules(package):
        ours = {n.split(".")[0] for n in imported(path)} & set(PACKAGES)
        assert ours <= ALLOWED[package] | {package}, f"{path.relative_to(ROOT)} imports {ours - ALLOWED[package]}"


MUTATORS = {"append", "extend", "insert", "add", "update", "setdefault", "pop", "popitem", "clear", "remove", "discard"}


@pytest.mark.parametrize("path", modules("core"), ids=lambda p: p.name)
def test_pure_modules_keep_no_state_between_calls(path):
    """No registry filled by one caller and read by another: module-level names are constants."""
    tree = ast.parse(path.read_text())
    module_names = {
        t.id
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(t, ast.Name)
    }
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(function):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
            assert not isinstance(node, ast.Global), f"{where} rebinds a module-level name"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
                assert not (
                    isinstance(target, ast.Name) and target.id in module_names and node.func.attr in MUTATORS
                ), f"{where} changes the module-level {target.id}"
            if isinstance(node, ast.Assign | ast.AugAssign | ast.Delete):
                targets = node.targets if isinstance(node, ast.Assign | ast.Delete) else [node.target]
                for t in targets:
                    assert not (
                        isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id in module_names
                    ), f"{where} changes the module-level {t.value.id}"


def test_specs_declare_no_resource():
    """Builders return inputs; only components call resource constructors (Capitalised SDK calls)."""
    for path in modules("specs"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                root = node.func
                while isinstance(root, ast.Attribute):
                    root = root.value  # type: ignore[assignment]
                assert not (
                    isinstance(root, ast.Name) and root.id in ("k8s", "azure") and node.func.attr[0].isupper()
                ), f"{path.relative_to(ROOT)}:{node.lineno} declares {ast.unparse(node.func)}"


@pytest.mark.parametrize("path", [p for p in modules("components") if p.name != "__init__.py"], ids=lambda p: p.name)
def test_each_component_file_holds_one_component_resource(path):
    classes = [
        node.name
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b) == "pulumi.ComponentResource" for b in node.bases)
    ]
    assert len(classes) == 1, f"{path.name} defines {classes}"


def test_no_import_cycle_between_project_modules():
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in modules(package):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            graph[name] = {n for n in imported(path) if n.split(".")[0] in PACKAGES} - {name}
    done: set[str] = set()

    def visit(node: str, trail: tuple[str, ...]) -> None:
        assert node not in trail, f"import cycle: {' -> '.join((*trail[trail.index(node) :], node))}"
        if node in done:
            return
        for target in graph.get(node, ()):
            visit(target, (*trail, node))
        done.add(node)

    for node in graph:
        visit(node, ())


def test_make_help_lists_every_target():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", makefile, re.MULTILINE))
    listed = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    missing = sorted(t for t in targets if f"make {t} " not in listed)
    assert not missing, f"make help does not list {missing}"
    phony = next(line for line in makefile.splitlines() if line.startswith(".PHONY:")).split()[1:]
    assert set(phony) <= targets, f".PHONY names targets without a rule: {sorted(set(phony) - targets)}"


def test_design_doc_layout_names_every_module_and_only_modules_that_exist():
    design = (ROOT / "docs" / "design.md").read_text()
    (section,) = re.findall(r"^## Layout\n.*?(?=^## )", design, flags=re.MULTILINE | re.DOTALL)
    layout = section.split("```")[1]  # the map of the tree
    for package in PACKAGES:
        for path in modules(package):
            if path.name != "__init__.py":
                assert path.name in layout, f"docs/design.md's layout misses {path.relative_to(ROOT)}"
    for name in re.findall(r"\b([a-z_]+\.py)\b", layout):
        assert (
            any(p.name == name for pkg in (*PACKAGES, "bootstrap") for p in modules(pkg)) or (ROOT / name).exists()
        ), f"docs/design.md's layout names {name}, which does not exist"


def test_test_modules_share_helpers_through_conftest_not_through_each_other():
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        others = sorted(n for n in imported(path) if n.startswith("tests.test_"))
        assert not others, f"{path.name} imports {others}; move the shared helper to tests/conftest.py"

"""The package's layout: imports point one way, no cycles, the data model stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "skopos"

# Lower layers never import higher ones (same layer: fine, as long as there is no cycle).
_LAYERS = {
    "skopos._exceptions": 0,
    "skopos._version": 0,
    "skopos._lru": 0,
    "skopos._queue": 0,
    "skopos._stats": 0,
    "skopos._signals": 0,
    "skopos._pocketbase": 1,
    "skopos._tracking": 2,
    "skopos._config": 2,
    "skopos._delivery": 3,
    "skopos._runtime": 4,
    "skopos._sdk": 5,
    "skopos": 5,
    "skopos.__main__": 6,
    "skopos._admin": 6,
    "skopos.integrations": 6,
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every skopos module ``path`` imports, TYPE_CHECKING and function-level ones included."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {module for module in found if module in _MODULES}


_MODULES = {_module_name(path) for path in PACKAGE.rglob("*.py")}
_GRAPH = {_module_name(path): _imports(path) for path in PACKAGE.rglob("*.py")}


def _layer(module: str) -> int:
    while module not in _LAYERS:
        module = module.rpartition(".")[0]
    return _LAYERS[module]


def test_imports_point_down() -> None:
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in _GRAPH.items()
        for target in targets
        if _layer(target) > _layer(module) and target != "skopos"
    )
    assert upward == []


def test_no_module_imports_the_package_root() -> None:
    # ``skopos/__init__`` is the public surface; inside the package it would be a cycle.
    assert sorted(m for m, targets in _GRAPH.items() if "skopos" in targets and m != "skopos") == []


def test_no_import_cycles() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(_GRAPH.get(module, ())):
            if target == module or target not in _GRAPH:
                continue
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(_GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("skopos._tracking.activity", "httpx"),
        ("skopos._tracking.pipeline", "skopos._delivery"),
        ("skopos._sdk", "skopos._admin"),
        ("skopos", "httpx"),
    ],
)
def test_importing_a_module_leaves_others_unloaded(module: str, absent: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m == {absent!r}))"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

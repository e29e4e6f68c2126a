"""Imports go downward only: api (data) ← core (logic) ← shell / client / local ← sdk ←
templates ← cli; the worker stands alone (it ships in its own image without the operator's
dependencies). Read from the source, so a new
upward import fails here before it tangles the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "kubedag"

# What each layer may import from kubedag (besides itself and the top-level modules).
ALLOWED: dict[str, set[str]] = {
    "api": set(),
    "core": {"api"},
    "shell": {"api", "core"},
    "client": {"api", "core"},
    "local": {"api", "core"},
    "sdk": {"api", "core", "client", "local"},
    "templates": {"api", "core", "sdk"},
    "cli": {"api", "core", "client", "local", "sdk", "templates"},
    "worker": set(),
}
TOP_LEVEL = {"contract", "generated", "__init__"}  # leaf modules any layer may use


def _kubedag_imports(path: Path) -> set[str]:
    """The kubedag subpackages a module imports (`kubedag.core.dag` → `core`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "kubedag" and len(parts) > 1 and parts[1] not in TOP_LEVEL:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    wrong = {}
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        upward = _kubedag_imports(path) - ALLOWED[layer] - {layer}
        if upward:
            wrong[str(path.relative_to(PACKAGE))] = sorted(upward)
    assert not wrong, f"{layer} imports from layers it must not: {wrong}"

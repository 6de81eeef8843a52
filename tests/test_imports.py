"""The layers read top-down (issue 18): no module of ``avatar_agent`` imports one that
imports it back, counting imports inside functions too (``live`` and ``reply`` did)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "avatar_agent"


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                root = ".".join(base + ([node.module] if node.module else []))
            else:
                root = node.module or ""
            targets = [f"{root}.{a.name}" if f"{root}.{a.name}" in mods else root for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in mods and t != name)
    return found


def test_no_module_imports_one_that_imports_it_back():
    mods = _modules()
    edges = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert "avatar_agent.live" in edges and edges["avatar_agent.live"]  # the walk sees imports
    loops = sorted((a, b) for a in edges for b in edges[a] if a < b and a in edges[b])
    assert loops == []

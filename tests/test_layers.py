"""The library's layer picture: no import cycles, render and evaluation side by side over models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "stliif"


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        name = ".".join(p.relative_to(PKG.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def _graph() -> dict[str, set[str]]:
    """``{module: stliif modules it imports}``, function-level (lazy) imports included."""
    mods = _modules()

    def owner(name: str) -> str:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {owner(a.name) for a in node.names if a.name.startswith("stliif.")}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("stliif."):
                deps |= {owner(f"{node.module}.{a.name}") for a in node.names}
        graph[name] = deps - {name, "stliif"}
    return graph


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for d in graph.get(todo.pop(), set()) - seen:
            seen.add(d)
            todo.append(d)
    return seen


def test_no_import_cycles() -> None:
    graph = _graph()
    assert len(graph) > 30
    cycles = [m for m in graph if m in _reaches(graph, m)]
    assert not cycles, f"modules on an import cycle: {sorted(cycles)}"


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("stliif.models", ("stliif.evaluation", "stliif.render", "stliif.train", "stliif.stages")),
        ("stliif.evaluation", ("stliif.render", "stliif.train", "stliif.stages")),
        ("stliif.render", ("stliif.evaluation", "stliif.train", "stliif.stages")),
        ("stliif.metrics", ("stliif.models", "stliif.evaluation")),
    ],
)
def test_layers(package: str, forbidden: tuple[str, ...]) -> None:
    graph = _graph()
    members = [m for m in graph if m == package or m.startswith(package + ".")]
    assert members, package
    for m in members:
        bad = sorted(d for d in _reaches(graph, m) if d.startswith(forbidden))
        assert not bad, f"{m} depends on {bad}"


def test_modules_stay_small() -> None:
    """One concept per module: none of the library's modules grows past 700 lines."""
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    big = {n: s for n, s in sizes.items() if s > 700}
    assert not big, f"split these modules: {big}"

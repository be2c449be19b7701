"""The house rules of ``pipeline/survey/`` (issue 11, items 2 and 3), read from the source with ``ast``.

``pipeline.survey`` imports nothing from the config, the stages, the exporters or the runner; its
modules form no import circle (every import counts: module level, inside functions, and under
``TYPE_CHECKING``); no module imports another's private (``_name``) names; no module is longer
than about 700 lines, and each says in its docstring what it owns.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SURVEY = Path(__file__).resolve().parents[2] / "pipeline" / "survey"
FORBIDDEN = ("pipeline.config", "pipeline.stages", "pipeline.exporters", "pipeline.runner", "pipeline.cli", "pipeline.io", "pipeline.preflight")
MAX_LINES = 700


def module_name(path: Path) -> str:
    return "pipeline.survey" if path.stem == "__init__" else f"pipeline.survey.{path.stem}"


def imports_of(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """``(module, names, line)`` of every import in ``path`` (absolute; relative ones resolved)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, (), node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level:
                mod = ".".join(["pipeline", "survey"][: 3 - node.level] + ([mod] if mod else []))
            out.append((mod, tuple(a.name for a in node.names), node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    """Import edges between the modules of ``pipeline.survey`` (``from pipeline.survey import x`` counts as ``x``)."""
    modules = {module_name(p): p for p in SURVEY.glob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for m, path in modules.items():
        for mod, names, _ in imports_of(path):
            targets = [mod] if mod in modules else []
            if mod == "pipeline.survey":
                targets = [f"pipeline.survey.{n}" for n in names if f"pipeline.survey.{n}" in modules] or [mod]
            edges[m].update(t for t in targets if t != m)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_inside_survey():
    assert cycles(graph()) == []


@pytest.mark.parametrize("path", sorted(SURVEY.glob("*.py")), ids=lambda p: p.name)
def test_survey_imports_nothing_from_config_stages_exporters_or_runner(path):
    bad = [(mod, line) for mod, _, line in imports_of(path) if mod.startswith(FORBIDDEN)]
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", sorted(SURVEY.glob("*.py")), ids=lambda p: p.name)
def test_no_private_names_across_modules(path):
    bad = [
        (mod, name, line)
        for mod, names, line in imports_of(path)
        if mod.startswith("pipeline.")
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert bad == [], f"{path.name} imports private names {bad}"


@pytest.mark.parametrize("path", sorted(SURVEY.glob("*.py")), ids=lambda p: p.name)
def test_each_module_is_short_and_says_what_it_owns(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{path.name}: {len(text.splitlines())} lines"
    doc = ast.get_docstring(ast.parse(text))
    assert doc and len(doc.split()) >= 8, f"{path.name}: no module docstring saying what it owns"

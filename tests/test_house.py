"""The house rules of issue 11 ("One clear house"), read from the code's own imports.

- no import circle inside ``pipeline/`` (module-level, function-level and type-checking imports
  alike: an import for the type checker is a dependency too);
- ``pipeline/survey/`` imports nothing from the config, the stages, the exporters or the runner;
- ``pipeline/exporters/`` imports nothing from the stages or the runner (exporters only present);
- a stage imports no other stage (its own private modules ``stages/_<stage>*.py``, the shared
  ``stages/_common.py`` and ``pipeline.stages`` itself are its own), nor the runner, the CLI, the
  pre-flight check or the manifest; nothing but the CLI imports the runner;
- inside ``pipeline/survey/`` no module takes another's private (``_name``) names;
- no file in ``pipeline/`` is over about 700 lines, and every module says what it owns.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"
#: "about 700 lines": a little slack for a docstring, never a second module's worth
MAX_LINES = 720


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node


def imports_of(name: str) -> set[str]:
    """The modules of ``pipeline`` that module ``name`` imports (a package's ``__init__`` when the
    name imported from it is not a submodule)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
            for t in targets:
                while t and t not in MODULES:
                    t = t.rpartition(".")[0]
                if t:
                    found.add(t)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        if not base.startswith("pipeline"):
            continue
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in MODULES:
                found.add(sub)
            else:
                t = base
                while t and t not in MODULES:
                    t = t.rpartition(".")[0]
                if t:
                    found.add(t)
    found.discard(name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_read():
    """The reader finds the arrows it should (a reader that finds none would pass every rule)."""
    assert "pipeline.errors" in GRAPH["pipeline.config"]
    assert any(m.startswith("pipeline.survey") for m in GRAPH["pipeline.stages.weight"])
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_circle():
    found = circles(GRAPH)
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def _offenders(prefix: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{m} imports {t}" for m, targets in GRAPH.items() if m == prefix or m.startswith(prefix + ".")
        for t in targets if any(t == f or t.startswith(f + ".") for f in forbidden)
    )


def test_survey_imports_nothing_from_config_stages_exporters_or_runner():
    assert _offenders("pipeline.survey", ("pipeline.config", "pipeline.stages", "pipeline.exporters", "pipeline.runner",
                                           "pipeline.preflight", "pipeline.cli", "pipeline.validate")) == []


def test_exporters_only_present():
    assert _offenders("pipeline.exporters", ("pipeline.stages", "pipeline.runner", "pipeline.preflight", "pipeline.cli")) == []


def test_no_stage_imports_another_stage():
    bad = []
    for m, targets in GRAPH.items():
        if not m.startswith("pipeline.stages."):
            continue
        own = m.rpartition(".")[2].lstrip("_").split("_")[0]
        for t in targets:
            if not t.startswith("pipeline.stages.") or t == "pipeline.stages":
                continue
            other = t.rpartition(".")[2]
            if other.startswith("_") and other.lstrip("_").split("_")[0] in (own, "common"):
                continue  # the stage's own private module, or the stages' shared helpers
            bad.append(f"{m} imports {t}")
    assert bad == []


def test_nothing_imports_the_runner_or_the_cli_but_the_cli():
    assert sorted(m for m, ts in GRAPH.items() if "pipeline.runner" in ts and m != "pipeline.cli") == []
    assert sorted(m for m, ts in GRAPH.items() if "pipeline.cli" in ts and m != "pipeline.__main__") == []
    stages = [m for m in GRAPH if m.startswith("pipeline.stages.")]
    above = ("pipeline.runner", "pipeline.cli", "pipeline.preflight", "pipeline.manifest")
    assert sorted(f"{m} imports {t}" for m in stages for t in GRAPH[m] if t in above) == []


def test_survey_modules_take_no_private_names_from_each_other():
    bad = []
    for name, path in MODULES.items():
        if not name.startswith("pipeline.survey"):
            continue
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
                bad += [f"{name} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_is_short_and_says_what_it_owns(name):
    path = MODULES[name]
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (about 700 at most): split it by concern"
    assert ast.get_docstring(ast.parse(text)), f"{path.relative_to(ROOT)} has no module docstring"


def test_compare_outputs_reports_every_difference(tmp_path):
    """tests/tools/compare_outputs.py, which checks that a redesign leaves the demo's outputs as
    they were: identical folders pass, a changed, missing or extra file is named."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_outputs", ROOT / "tests" / "tools" / "compare_outputs.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        (root / "w").mkdir(parents=True)
        (root / "w" / "estimates.csv").write_text("a,b\n1,2\n")
        (root / "manifest.json").write_text(str(root))  # differs, and is exempt
    assert tool.compare(old, new) == []
    (new / "w" / "estimates.csv").write_text("a,b\n1,3\n")
    (new / "extra.txt").write_text("x")
    (old / "w" / "gone.csv").write_text("y")
    assert tool.compare(old, new) == [f"only in {old}: w/gone.csv", f"only in {new}: extra.txt", "differs: w/estimates.csv"]

"""Issue 11, item 3 (the stages' side): who may import whom inside ``pipeline/``.

Read from the source (every ``import``, at module level or inside a function): stages import
``pipeline.survey``, ``pipeline.exporters`` and the shared ``pipeline.stages`` package, never each
other nor the runner; nothing imports back up into the runner or the CLI; and no import circle
runs through the runner, the manifest, preflight or a stage.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "pipeline"
STAGE_MODULES = {"ingest", "harmonize", "clean", "weight", "estimate", "export", "trends"}

#: stage -> stage imports that issue 11's other items remove (statistics into survey/, the
#: banner comparisons written by the estimate stage); each is in a stage's body, not its run()
PENDING_ELSEWHERE = {
    ("pipeline.stages.estimate", "pipeline.stages.weight"): "variance_adjustment moves to pipeline/survey/ (item 2)",
    ("pipeline.stages.export", "pipeline.stages.estimate"): "the export stage reads estimate/comparisons.csv instead of rebuilding a design (item 2)",
}


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def graph() -> dict[str, set[str]]:
    """Module -> the pipeline modules it imports (``from pipeline.x import y``: ``pipeline.x``,
    or ``pipeline.x.y`` when that is a module)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    out: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("pipeline")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if sub in modules else node.module)
        out[name] = {t for t in targets if t in modules and t != name}
    return out


def test_stages_import_neither_each_other_nor_the_runner():
    g = graph()
    bad = []
    for name, targets in g.items():
        if not (name.startswith("pipeline.stages.") and name.rsplit(".", 1)[1] in STAGE_MODULES):
            continue
        for t in targets:
            other_stage = t.startswith("pipeline.stages.") and t.rsplit(".", 1)[1] in STAGE_MODULES
            if (other_stage and (name, t) not in PENDING_ELSEWHERE) or t in ("pipeline.runner", "pipeline.cli", "pipeline.preflight", "pipeline.manifest"):
                bad.append(f"{name} imports {t}")
    assert bad == []


def test_nothing_imports_the_runner_or_the_cli_but_the_cli():
    g = graph()
    assert sorted(n for n, ts in g.items() if "pipeline.runner" in ts and n != "pipeline.cli") == []
    assert sorted(n for n, ts in g.items() if "pipeline.cli" in ts and n != "pipeline.__main__") == []


def _cycles(g: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_runs_through_the_runner_the_manifest_preflight_or_a_stage():
    g = graph()
    mine = {"pipeline.runner", "pipeline.manifest", "pipeline._outputs", "pipeline._text", "pipeline.preflight", "pipeline.cli", "pipeline.stages",
            *(f"pipeline.stages.{s}" for s in STAGE_MODULES)}
    assert [sorted(c) for c in _cycles(g) if c & mine] == []


def test_the_circle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]

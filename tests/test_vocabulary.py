"""One vocabulary (issue 11, items 3 and 4): the config's words are the registries' keys, and the
presentation layer imports no stage and has no import circle."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from pipeline import config as cfg
from pipeline.exporters.charts import CHART_SCALES
from pipeline.exporters.formats import FORMATS, render_tables
from pipeline.exporters.values import VALUE_FORMATS
from pipeline.flags import STATISTIC_RULES
from pipeline.stages.estimate import STATISTICS

PIPELINE = Path(__file__).resolve().parents[1] / "pipeline"


def test_export_formats_are_the_format_registry():
    assert set(get_args(cfg.ExportFormat)) == set(FORMATS)
    for name, fmt in FORMATS.items():
        assert fmt.name == name and callable(fmt.render) and fmt.suffix


def test_every_statistic_has_one_entry_per_layer():
    """A statistic (``proportion``; ``mean`` next) is a config key, a way to compute it, a value
    format, a chart scale and a reliability rule, each a registry entry."""
    assert cfg.STATISTICS == tuple(STATISTICS) == tuple(VALUE_FORMATS) == tuple(CHART_SCALES) == tuple(STATISTIC_RULES)
    for name in cfg.STATISTICS:
        assert name in cfg.EstimateSpec.model_fields, f"estimates[].{name} is not a config key"
        assert STATISTICS[name].name == VALUE_FORMATS[name].statistic == CHART_SCALES[name].statistic == name
    spec = cfg.EstimateSpec(id="x", proportion="Q10A")
    assert (spec.statistic, spec.variable) == ("proportion", "Q10A")


def test_an_unknown_statistic_is_refused_by_the_presentation():
    from pipeline.exporters.charts import chart_scale
    from pipeline.exporters.values import value_format

    with pytest.raises(ValueError, match="no value format for statistic 'median'"):
        value_format({"statistic": "median"})
    with pytest.raises(ValueError, match="no chart scale for statistic 'median'"):
        chart_scale({"statistic": "median"})


def test_table_formats_render_for_the_wave_and_the_trends_alike():
    import polars as pl

    from pipeline.config import TablesConfig, ToplineSpec
    from pipeline.exporters.estimates import prepare_estimates
    from pipeline.exporters.tables import topline_table

    est = prepare_estimates(pl.DataFrame({
        "wave": ["1"], "estimate_id": ["q"], "statistic": ["proportion"], "variable": ["Q"], "level": ["Yes"], "by": [""],
        "domain": ["All"], "n": [100], "estimate": [0.4], "se": [0.05], "ci_low": [0.3], "ci_high": [0.5], "ci_method": ["logit"],
        "conf_level": [0.95], "df": [99.0], "deff": [1.2], "flag": [""], "title": ["Q?"],
    }))
    table = topline_table(est, ToplineSpec(id="top"), TablesConfig(), wave="1")
    table_kinds = [f.name for f in FORMATS.values() if f.kind in ("table", "workbook")]
    files = render_tables([table], table_kinds, "trends", est, title="T", wave="1")
    expected = [p for f in FORMATS.values() if f.kind in ("table", "workbook") for p in f.files(["top"], "trends")]
    assert sorted(files) == sorted(expected)
    assert "| 40 | 30–50 | ±10.0 |" in files["trends/top.md"] and files["trends/tables.xlsx"][:2] == b"PK"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (``from . import`` resolved)."""
    module = ".".join(path.relative_to(PIPELINE.parent).with_suffix("").parts).removesuffix(".__init__")
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level if not path.name == "__init__.py" else node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("pipeline")}


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PIPELINE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_exporters_import_no_stage_and_the_statistics_nothing_above_them():
    for path in sorted((PIPELINE / "exporters").glob("*.py")) + [PIPELINE / "flags.py"]:
        bad = sorted(m for m in _imports(path) if m.startswith(("pipeline.stages", "pipeline.runner")))
        assert not bad, f"{path.relative_to(PIPELINE.parent)} imports {bad}: exporters only present tidy artifacts"
    above = ("pipeline.config", "pipeline.stages", "pipeline.exporters", "pipeline.runner", "pipeline.flags")
    bad = sorted(m for m in _imports(PIPELINE / "survey" / "comparisons.py") if m.startswith(above))
    assert not bad, f"pipeline/survey/comparisons.py imports {bad}"


def test_no_import_circle_in_the_presentation_layer():
    files = sorted((PIPELINE / "exporters").glob("*.py")) + [PIPELINE / "flags.py", PIPELINE / "survey" / "comparisons.py"]
    names = {_module(p) for p in files}
    graph = {_module(p): {m for m in _imports(p) if m in names and m != _module(p)} for p in files}
    graph["pipeline.exporters"] = set()  # a package's modules may use its __init__ helpers (file_timestamp)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])

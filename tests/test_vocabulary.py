"""One vocabulary (issue 11, items 3 and 4): the config's words are the registries' keys, and the
presentation layer imports no stage and has no import circle."""

from __future__ import annotations

from typing import get_args

import pytest

from pipeline import config as cfg
from pipeline.exporters.charts import CHART_SCALES
from pipeline.exporters.formats import FORMATS, render_tables
from pipeline.exporters.values import VALUE_FORMATS
from pipeline.flags import STATISTIC_RULES
from pipeline.stages.estimate import STATISTICS



def test_export_formats_are_the_format_registry():
    assert set(get_args(cfg.ExportFormat)) == set(FORMATS)
    for name, fmt in FORMATS.items():
        assert fmt.name == name and callable(fmt.render) and fmt.suffix


def test_every_statistic_has_one_entry_per_layer():
    """A statistic (``proportion``; ``mean`` next) is a config key, a way to compute it, a value
    format, a chart scale and a reliability rule, each a registry entry."""
    # a difference is computed from two estimates (pipeline.stages._estimate_differences), not from a column
    assert cfg.STATISTICS == (*STATISTICS, "difference") and cfg.STATISTICS == tuple(VALUE_FORMATS) == tuple(CHART_SCALES) == tuple(STATISTIC_RULES)
    for name in cfg.STATISTICS:
        assert name in cfg.EstimateSpec.model_fields, f"estimates[].{name} is not a config key"
        assert VALUE_FORMATS[name].statistic == CHART_SCALES[name].statistic == name
        assert name == "difference" or STATISTICS[name].name == name
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

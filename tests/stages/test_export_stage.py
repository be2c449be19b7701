"""The export stage's config and wiring: table specs checked at load time, what reruns the
estimate stage, and a tiny study through every format with the independent test method."""

from __future__ import annotations

import textwrap
from pathlib import Path

import polars as pl
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import ConfigError

BASE = """\
study: demo
waves: [{id: a, raw: x.sav}]
estimates:
  - {id: q1_yes, proportion: Q1, levels: [1], by: [[], [REGION]]}
  - {id: q2_yes, proportion: Q2, levels: [1]}
"""


def write(tmp_path: Path, extra: str) -> Path:
    p = tmp_path / "study.yaml"
    p.write_text(BASE + textwrap.dedent(extra))
    return p


def test_tables_name_configured_estimates_and_estimated_domains(tmp_path):
    p = write(tmp_path, """\
        tables:
          toplines: [{id: top, estimates: [q1_yse]}]
          banners: [{id: ban, estimates: [q2_yes], columns: [[], [REGION]]}]
        export: {charts: [nope]}
        """)
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.problems == [
        "tables.toplines[0].estimates[0]: no estimate with id 'q1_yse'; did you mean 'q1_yes'?",
        "export.charts[0]: no estimate with id 'nope'; estimates: q1_yes, q2_yes",
        "tables.banners[0].columns[1]: no estimate of the banner is estimated by ['REGION']; add it to the estimates' by lists",
    ]


def test_table_ids_are_unique_and_thresholds_ordered(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "tables: {toplines: [{id: t}], banners: [{id: t}]}\n"))
    assert info.value.problems == ["tables: table ids must be unique across toplines, banners, trends and crosstabs (repeated: t) (found: {banners: [{id: t}], toplines: [{id: t}]})"]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "tables: {reliability: {ci_width_ok: 0.4}}\n"))
    assert info.value.problems == ["tables.reliability: ci_width_ok must be smaller than max_ci_width (got 0.4 and 0.3) (found: {ci_width_ok: 0.4})"]


def test_only_the_flag_rules_rerun_the_estimate_stage(tmp_path):
    from pipeline.manifest import config_slice

    a = load_config(write(tmp_path, "tables: {banners: [{id: b, columns: [[], [REGION]]}]}\n"))
    b = load_config(write(tmp_path, "tables: {banners: [{id: b, title: Other, columns: [[], [REGION]]}]}\n"))
    c = load_config(write(tmp_path, "tables: {reliability: {min_df: 12}}\n"))
    assert config_slice(a, "estimate", "a") == config_slice(b, "estimate", "a")
    assert config_slice(a, "export", "a") != config_slice(b, "export", "a")
    assert config_slice(a, "estimate", "a") != config_slice(c, "estimate", "a")


def test_tiny_study_every_format_independent_tests(tiny_project, capsys):
    cfg = tiny_project
    text = cfg.read_text().replace("tables:\n  min_n: 5\n", textwrap.dedent("""\
        tables:
          min_n: 5
          disclosure: {min_cell_n: 3}
          significance: {method: independent, adjust: holm}
          banners: [{id: by_region, columns: [[], [REGION]]}]
        export:
          formats: [csv, markdown, xlsx, html, latex, sav, dta, png, svg, methods, report]
        """))
    cfg.write_text(text)
    assert main(["run", str(cfg), "--quiet"]) == 0
    wave = cfg.parent.parent / "outputs" / "tiny" / "w1"
    for name in ("tables/topline.md", "tables/by_region.html", "tables/by_region.tex", "tables/tables.xlsx", "tables/comparisons.csv",
                 "analysis/tiny_w1.sav", "analysis/tiny_w1.dta", "charts/q1_yes.svg", "charts/weighting.png", "methods.md", "report.html"):
        assert (wave / name).is_file(), name
    cmp = pl.read_csv(wave / "tables" / "comparisons.csv")
    assert set(cmp.get_column("method").to_list()) == {"independent"}
    assert "Holm-adjusted" in (wave / "tables" / "by_region.md").read_text()
    methods = (wave / "methods.md").read_text()
    assert "**Sponsor.** not stated (add it to the config's methods section)" in methods
    import pyreadstat

    frame, _ = pyreadstat.read_sav(str(wave / "analysis" / "tiny_w1.sav"), output_format="polars")
    assert "PHONE" not in frame.columns and "w_final" in frame.columns


def test_second_wave_gets_a_trend_table(tiny_project):
    """Trend tables are the study-level trends stage's: no wave's export depends on another wave."""
    cfg = tiny_project
    text = cfg.read_text()
    wave1 = '  - id: "w1"\n    raw: ../raw/tiny.sav\n    targets: ../raw/targets.csv\n'
    assert wave1 in text
    text = text.replace(wave1, wave1 + wave1.replace('"w1"', '"w2"'))
    text = text.replace("tables:\n  min_n: 5\n", "tables:\n  min_n: 5\n  trends: [{id: trend, by: [[], [REGION]]}]\n")
    cfg.write_text(text)
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = cfg.parent.parent / "outputs" / "tiny"
    assert not (out / "w1" / "tables" / "trend.md").exists() and not (out / "w2" / "tables" / "trend.md").exists()
    table = (out / "trends" / "trend.md").read_text()
    assert "| All | " in table and "Change w1–w2 (points)" in table
    assert "## Do you agree? (q1_all)" in table  # two estimates share a title: the second is named
    cells = pl.read_csv(out / "trends" / "trend.csv", schema_overrides={"text": pl.String})
    change = cells.filter(pl.col("column") == "change")
    assert change.height > 0 and set(change.get_column("text").to_list()) <= {"0", "*"}  # the same data twice
    # every shown number traces back to its row of trends/estimates.csv
    est = pl.read_csv(out / "trends" / "estimates.csv", schema_overrides={"by": pl.String, "flag": pl.String})
    shown = cells.filter(pl.col("field") == "estimate")
    for r in shown.iter_rows(named=True):
        assert r["value"] == est.row(r["source_row"], named=True)["estimate"]

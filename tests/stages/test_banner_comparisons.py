"""The banners' comparisons are made by the estimate stage in its design pass and written as
``estimate/comparisons.csv``; the export stage reads them and builds no design (issue 11, item 2)."""

from __future__ import annotations

import textwrap

import polars as pl
import pytest

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import DataError
from pipeline.exporters.estimates import read_estimates
from pipeline.exporters.significance import COMPARISON_COLUMNS, read_comparisons

BANNERS = textwrap.dedent("""\
    tables:
      min_n: 5
      significance: {method: design, adjust: holm}
      banners: [{id: by_region, columns: [[], [REGION]]}]
    """)


def _wave(cfg):
    return cfg.parent.parent / "outputs" / "tiny" / "w1"


def test_estimate_stage_writes_the_tests_the_export_shows(tiny_project):
    cfg = tiny_project
    cfg.write_text(cfg.read_text().replace("tables:\n  min_n: 5\n", BANNERS))
    assert main(["run", str(cfg), "--quiet"]) == 0
    wave = _wave(cfg)
    made = pl.read_csv(wave / "estimate" / "comparisons.csv")
    shown = pl.read_csv(wave / "tables" / "comparisons.csv")
    assert made.height > 0 and set(made.get_column("method").to_list()) == {"design"}
    assert made.columns == [*COMPARISON_COLUMNS, "table"]
    assert (wave / "estimate" / "comparisons.csv").read_bytes() == (wave / "tables" / "comparisons.csv").read_bytes()
    assert shown.get_column("table").unique().to_list() == ["by_region"]
    est = read_estimates(wave / "estimates.csv")
    for r in made.iter_rows(named=True):  # each test names the estimates.csv rows it compares
        a, b = est.row(r["row_a"], named=True), est.row(r["row_b"], named=True)
        assert (a["domain"], b["domain"], a["estimate"], b["estimate"]) == (r["domain_a"], r["domain_b"], r["estimate_a"], r["estimate_b"])
        assert r["difference"] == pytest.approx(a["estimate"] - b["estimate"], abs=1e-15)


def test_export_stage_builds_no_design(tiny_project, monkeypatch):
    cfg = tiny_project
    cfg.write_text(cfg.read_text().replace("tables:\n  min_n: 5\n", BANNERS))
    assert main(["run", str(cfg), "--quiet"]) == 0
    before = (_wave(cfg) / "tables" / "by_region.md").read_text()

    def no_design(*args, **kwargs):
        raise AssertionError("the export stage built a design")

    monkeypatch.setattr("pipeline.survey.design.Design.from_frame", no_design)
    monkeypatch.setattr("pipeline.survey.design.Design.from_replicate_weights", no_design)
    assert main(["run", str(cfg), "--quiet", "--from", "export"]) == 0
    assert (_wave(cfg) / "tables" / "by_region.md").read_text() == before


def test_comparisons_of_another_run_are_refused(tiny_project):
    cfg = tiny_project
    cfg.write_text(cfg.read_text().replace("tables:\n  min_n: 5\n", BANNERS))
    assert main(["run", str(cfg), "--quiet"]) == 0
    wave = _wave(cfg)
    path = wave / "estimate" / "comparisons.csv"
    made = pl.read_csv(path)
    made.with_columns((pl.col("estimate_a") + 0.01).alias("estimate_a")).write_csv(path)
    with pytest.raises(DataError, match="from different runs") as info:
        read_comparisons(path, read_estimates(wave / "estimates.csv"))
    assert "comparisons.csv" in info.value.message


def test_banner_columns_and_significance_rerun_the_estimate_stage(tmp_path):
    """What the comparisons depend on is in the estimate stage's fingerprint; titles are not."""
    from tinystudy import TINY_CONFIG

    def slice_of(tables: str) -> dict:
        p = tmp_path / "configs" / "tiny.yaml"
        p.parent.mkdir(exist_ok=True)
        p.write_text(textwrap.dedent(TINY_CONFIG).replace("tables:\n  min_n: 5\n", tables))
        from pipeline.manifest import config_slice

        return config_slice(load_config(p), "estimate", "w1")

    base = slice_of("tables: {banners: [{id: b, columns: [[], [REGION]]}]}\n")
    assert slice_of("tables: {banners: [{id: b, title: Other, notes: [x], columns: [[], [REGION]]}]}\n") == base
    assert slice_of("tables: {banners: [{id: b, columns: [[]]}]}\n") != base
    assert slice_of("tables: {banners: [{id: b, estimates: [q1_yes], columns: [[], [REGION]]}]}\n") != base
    assert slice_of("tables: {significance: {adjust: holm}, banners: [{id: b, columns: [[], [REGION]]}]}\n") != base
    assert slice_of("tables: {significance: {method: independent}, banners: [{id: b, columns: [[], [REGION]]}]}\n") != base

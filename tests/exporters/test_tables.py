"""Tables as data: toplines, banners and trend tables from estimates (pipeline.exporters.tables)."""

from __future__ import annotations

import polars as pl
import pytest

from exporters.exporter_data import small_estimates
from pipeline.config import BannerSpec, TablesConfig, ToplineSpec, TrendSpec
from pipeline.exporters.tables import (
    SUPPRESSED,
    banner_table,
    column_letters,
    percent_text,
    points_text,
    topline_table,
    trend_table,
)
from pipeline.exporters.tidy import table_frame
from pipeline.stages.estimate import compare_columns
from pipeline.config import TrendsConfig
from pipeline.stages.trends import trends as trend_estimates_of

TABLES = TablesConfig(labels={"REGION": "Region"})


def cell(table, row_label, column_key):
    col = [c.key for c in table.columns].index(column_key)
    for r in table.rows:
        if any(c.text == row_label for c in r.cells[:2]):
            return r.cells[col]
    raise KeyError(row_label)


def test_formatting_rounds_once_and_signs_changes():
    assert percent_text(0.4449, 0) == "44" and percent_text(0.4451, 1) == "44.5"
    assert points_text(0.061, 0) == "+6" and points_text(-0.004, 0) == "0" and points_text(-0.05, 1) == "-5.0"
    assert column_letters(28)[:3] == ["A", "B", "C"] and column_letters(28)[26:] == ["AA", "AB"]


def test_topline_rows_cells_and_sources(estimates):
    t = topline_table(estimates, ToplineSpec(id="topline"), TABLES, title="Study", wave="1", notice="SYNTHETIC")
    assert [c.label for c in t.columns] == ["group", "domain", "n", "%", "95% CI", "±"]
    assert t.title == "Study: Topline" and t.subtitle == "Wave 1"
    assert len(t.rows) == 7 and [g for g, _ in t.row_groups()] == ["Agrees with the statement", "Often"]
    all_row = t.rows[0]
    assert [c.text for c in all_row.cells] == ["All", "All", "900", "44", "41–48", "±3.9"]
    assert all_row.cells[3].source == 0 and all_row.cells[3].field == "estimate" and all_row.cells[3].value == pytest.approx(0.4449)
    south = t.rows[2]
    assert south.cells[0].text == "Region" and south.cells[3].text == "55†"  # df<8: shown and flagged
    east = t.rows[3]
    assert [c.text for c in east.cells[2:]] == ["50", SUPPRESSED, SUPPRESSED, SUPPRESSED]  # n shown, the rest withheld
    assert t.footnotes == (
        "* Suppressed: effective sample size below 30 (NCHS standard).",
        "† Fewer than 8 degrees of freedom: flagged for statistical review (NCHS standard).",
    )
    assert t.notes[-1] == "SYNTHETIC"


def test_topline_by_and_estimates_choose_rows(estimates):
    t = topline_table(estimates, ToplineSpec(id="t", estimates=("q_often",), by=((),)), TABLES)
    assert [[c.text for c in r.cells[:2]] for r in t.rows] == [["All", "All"]]


def test_banner_columns_letters_and_bases(estimates):
    spec = BannerSpec(id="b", columns=((), ("REGION",)))
    cmp = compare_columns(estimates, ["q_agree", "q_often"], spec.columns, method="independent")
    t = banner_table(estimates, spec, TABLES, comparisons=cmp, wave="1", letters_note="letters")
    assert [(c.label, c.group, c.letter) for c in t.columns] == [
        ("", None, None), ("Total", None, None), ("North", "Region", "A"), ("South", "Region", "B"), ("East", "Region", "C")
    ]
    first = t.rows[0]
    assert [c.text for c in first.cells] == ["Agree", "44", "31", "55† A", SUPPRESSED]  # South > North; East not compared
    assert t.rows[1].kind == "base" and [c.text for c in t.rows[1].cells] == ["Unweighted n", "900", "400", "450", "50"]
    assert [c.text for c in t.rows[2].cells] == ["Very or somewhat often", "61", "60", "62", "–"]  # East not estimated
    assert "letters" in t.notes and any("not estimated" in n for n in t.notes)


def test_table_frame_traces_every_numeric_cell(estimates):
    t = topline_table(estimates, ToplineSpec(id="topline"), TABLES)
    f = table_frame(t, estimates)
    assert f.height == 7 * 4
    shown = f.filter((pl.col("field") == "estimate") & (pl.col("text") != SUPPRESSED))
    for r in shown.iter_rows(named=True):
        src = estimates.filter(pl.col("_row") == r["source_row"]).row(0, named=True)
        assert r["value"] == src["estimate"] and r["domain"] == src["domain"]


def test_trend_table_from_two_waves():
    waves = {"2012": small_estimates("2012"), "2014": small_estimates("2014", shift=0.06)}
    trends = trend_estimates_of({w: e.drop("_row", strict=False) for w, e in waves.items()}, TrendsConfig(), order=["2012", "2014"])
    changes = trends.filter(pl.col("statistic") == "difference")
    assert changes.height == 7 and set(changes.get_column("wave_from").to_list()) == {"2012"} and changes.get_column("wave_to").unique().to_list() == ["2014"]
    row = changes.filter((pl.col("estimate_id") == "q_agree") & (pl.col("domain") == "All")).row(0, named=True)
    assert row["estimate"] == pytest.approx(0.06) and row["se"] == pytest.approx((0.02**2 + 0.02**2) ** 0.5)
    assert row["wave"] == "2014 vs 2012" and row["df"] == 899 + 899  # two independent designs
    east = changes.filter(pl.col("domain") == "East").row(0, named=True)
    t = trend_table(trends, TrendSpec(id="trend", by=((), ("REGION",))), TABLES)
    assert [c.label for c in t.columns] == ["", "2012", "2014", "Change 2012–2014 (points)"]
    first = t.rows[0]
    assert [c.text for c in first.cells] == ["All", "44", "50 A", "+6"]  # significant rise: 2014 gets 2012's letter
    east_row = next(r for r in t.rows if r.cells[0].text == "East")
    assert east_row.cells[-1].text == SUPPRESSED and east["flag"] == "component=suppressed"  # a change of a suppressed estimate is withheld

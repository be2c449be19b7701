"""Issue 12: ``estimates[].difference`` through the CLI, between two domains of one estimate and
between two estimates on the same respondents, checked against R.

Reference values: ``tests/reference/differences_expected.csv``, written by
``tests/reference/differences.R`` with R ``survey`` 4.1-1 (``svycontrast`` on ``svyby(...,
covmat = TRUE)``, ``svymean``/``svytotal``/``svyratio`` of two variables; CI and p-value on
``degf(design)``), on the designs ``strat`` (``svydesign(id = ~1, strata = ~stype, weights = ~pw,
fpc = ~fpc, data = apistrat)``), ``clus1`` (``svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc,
data = apiclus1)``) and ``clus1_jk1`` (``as.svrepdesign(clus1, type = "JK1")``). Closed form:
1e-9 relative (the conformance README's tolerance).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from csvstudy import csv_project
from pipeline.cli import main

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent / "reference" / "differences_expected.csv"
CONFORMANCE = (HERE.parents[1] / ".." / "shared" / "conformance").resolve()
RTOL = 1e-9

ESTIMATES = """\
estimates:
  - {id: api00, mean: api00, by: [[], [stype], [awards, stype]]}
  - {id: api99, mean: api99, by: [[], [stype]]}
  - {id: sch_wide, proportion: sch.wide, levels: ["Yes"], by: [[], [stype]]}
  - {id: awards_yes, proportion: awards, levels: ["Yes"], by: [[], [stype]]}
  - {id: awards_dist, distribution: awards, by: [[], [stype]]}
  - {id: enroll_total, total: enroll, by: [[], [stype]]}
  - {id: api00_total, total: api00}
  - {id: api99_total, total: api99}
  - {id: acs_k3, mean: acs.k3}
  - {id: acs_46, mean: acs.46}
  - {id: ratio_api, ratio: {numerator: api00, denominator: enroll}}
  - {id: ratio_stu, ratio: {numerator: api.stu, denominator: enroll}}
  - {id: api00_e_h, difference: {of: api00, domain: stype, a: E, b: H}, by: [[], [awards]]}
  - {id: api00_e_m, difference: {of: api00, domain: stype, a: E, b: M}}
  - {id: sch_wide_e_h, difference: {of: sch_wide, domain: stype, a: E, b: H}}
  - {id: awards_e_m, difference: {of: awards_dist, domain: stype, a: E, b: M}}
  - {id: enroll_e_h, difference: {of: enroll_total, domain: stype, a: E, b: H}}
  - {id: growth, difference: {a: api00, b: api99}, by: [[], [stype]], title: Growth in API}
  - {id: awards_minus_sch_wide, difference: {a: awards_yes, b: sch_wide}, by: [[], [stype]]}
  - {id: total_growth, difference: {a: api00_total, b: api99_total}}
  - {id: ratio_gap, difference: {a: ratio_api, b: ratio_stu}}
  - {id: acs_gap, difference: {a: acs_k3, b: acs_46}}
"""

DESIGNS = {
    "strat": ("apistrat.csv", "design:\n  weights: pw\n  strata: [stype]\n  fpc: [fpc]\n"),
    "clus1": ("apiclus1.csv", "design:\n  weights: pw\n  ids: [dnum]\n  fpc: [fpc]\n"),
    "clus1_jk1": ("apiclus1.csv", "design:\n  weights: pw\n  ids: [dnum]\n  fpc: [fpc]\n  variance: replicate\n  replicates: {build: JK1}\n"),
}


def _config(design: str) -> str:
    return (
        f"study: {design.replace('_', '-')}\nwaves:\n  - id: \"1\"\n    raw: RAW\n{DESIGNS[design][1]}"
        "export:\n  formats: [csv, markdown, png]\n" + ESTIMATES
    )


@pytest.fixture(scope="module", params=list(DESIGNS))
def run(request, tmp_path_factory):
    design = request.param
    tmp = tmp_path_factory.mktemp(design)
    cfg = csv_project(tmp, pl.read_csv(CONFORMANCE / "data" / DESIGNS[design][0]), _config(design), design)
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = tmp / "outputs" / design.replace("_", "-") / "1"
    return design, out, pl.read_csv(out / "estimates.csv", infer_schema_length=None)


def test_every_difference_matches_r(run):
    design, _, est = run
    ref = pl.read_csv(REFERENCE).filter(pl.col("design") == design)
    diffs = est.filter(pl.col("statistic") == "difference")
    assert ref.height >= 17 and diffs.height == ref.height, (diffs.height, ref.height)  # every row R made, and no other
    for r in ref.iter_rows(named=True):
        level = r["level"] or None
        got = diffs.filter(
            (pl.col("estimate_id") == r["estimate_id"]) & (pl.col("domain") == r["domain"]) & (pl.col("level").fill_null("") == (level or ""))
        )
        assert got.height == 1, r
        g = got.row(0, named=True)
        for col in ("estimate", "se", "ci_low", "ci_high", "p_value"):
            assert g[col] == pytest.approx(r[col], rel=RTOL, abs=1e-12), (r["estimate_id"], r["domain"], col)
        assert g["df"] == r["df"] and g["ci_method"] == "wald"


def test_difference_rows_name_both_sides_and_equal_the_published_estimates(run):
    _, _, est = run
    row = est.filter((pl.col("estimate_id") == "api00_e_h") & (pl.col("domain") == "All")).row(0, named=True)
    assert (row["variable"], row["by"], row["difference_of"], row["difference_a"], row["difference_b"]) == ("api00", "", "mean", "E", "H")
    sides = {
        d: est.filter((pl.col("estimate_id") == "api00") & (pl.col("domain") == d)).row(0, named=True) for d in ("E", "H")
    }
    assert row["estimate"] == pytest.approx(sides["E"]["estimate"] - sides["H"]["estimate"], rel=1e-12)
    assert row["n"] == sides["E"]["n"] + sides["H"]["n"]
    growth = est.filter((pl.col("estimate_id") == "growth") & (pl.col("domain") == "All")).row(0, named=True)
    assert (growth["variable"], growth["difference_a"], growth["difference_b"], growth["title"]) == ("api00-api99", "api00", "api99", "Growth in API")
    dist = est.filter(pl.col("estimate_id") == "awards_e_m")
    assert sorted(dist.get_column("level").to_list()) == ["No", "Yes"]
    # the proportion rows keep no difference columns' values
    assert est.filter(pl.col("statistic") != "difference").get_column("difference_of").null_count() == est.filter(pl.col("statistic") != "difference").height


def test_tables_and_charts_show_differences_signed_in_their_unit(run):
    design, out, _ = run
    topline = (out / "tables" / "topline.md").read_text()
    est = pl.read_csv(out / "estimates.csv", infer_schema_length=None)
    share = est.filter((pl.col("estimate_id") == "awards_minus_sch_wide") & (pl.col("domain") == "All")).row(0, named=True)
    assert share["flag"] == ""
    points = f"{100 * share['estimate']:+.0f}"
    assert points in topline  # a difference of shares in signed percentage points
    growth = est.filter((pl.col("estimate_id") == "growth") & (pl.col("domain") == "All")).row(0, named=True)
    assert f"{growth['estimate']:+.1f}" in topline  # of means: in the mean's unit, signed, one more decimal
    assert (out / "charts" / "growth.png").exists()


def test_a_difference_with_a_suppressed_side_is_suppressed(tmp_path):
    data = pl.read_csv(CONFORMANCE / "data" / "apistrat.csv")
    config = _config("strat").replace("export:", "tables:\n  min_n: 60\nexport:")  # H (50 schools) is below min_n
    cfg = csv_project(tmp_path, data, config, "strat")
    assert main(["run", str(cfg), "--quiet"]) == 0
    est = pl.read_csv(tmp_path / "outputs" / "strat" / "1" / "estimates.csv", infer_schema_length=None)
    h = est.filter((pl.col("estimate_id") == "api00") & (pl.col("domain") == "H")).row(0, named=True)
    assert h["flag"] == "n<60"
    e_h = est.filter((pl.col("estimate_id") == "api00_e_h") & (pl.col("domain") == "All")).row(0, named=True)
    growth = est.filter((pl.col("estimate_id") == "growth") & (pl.col("domain") == "All")).row(0, named=True)
    assert (e_h["flag"], growth["flag"]) == ("component=suppressed", "")
    assert "* |" in (tmp_path / "outputs" / "strat" / "1" / "tables" / "topline.md").read_text()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{id: d, difference: {of: api0, domain: stype, a: E, b: H}}", "no estimate with id 'api0'; did you mean 'api00'?"),
        ("{id: d, difference: {of: api99, domain: stype, a: E, b: H}, by: [[], [awards]]}",
         "api99 is not estimated by ['awards', 'stype']; add ['awards', 'stype'] to the by of api99"),
        ("{id: d, difference: {a: api00, b: sch_wide}}", "api00 is a mean and sch_wide a proportion"),
        ("{id: d, difference: {a: awards_dist, b: sch_wide}}", "awards_dist has a row per answer"),
        ("{id: d, difference: {of: api00, a: E, b: H}}", "needs both of (the estimate) and domain"),
        ("{id: d, difference: {a: 1, b: 2}}", "names them by id"),
        ("{id: d, difference: {a: api00, b: api00}}", "a and b are the same"),
        ("{id: d, difference: {a: api00, b: api99}, levels: [1]}", "levels do(es) not apply to a difference"),
        ("{id: d, difference: {of: api00, domain: stype, a: E, b: X}}", "difference (d): a and b: code(s) X of stype are not in the data"),
    ],
)
def test_a_bad_difference_is_a_config_error(tmp_path, capsys, entry, message):
    data = pl.read_csv(CONFORMANCE / "data" / "apistrat.csv")
    cfg = csv_project(tmp_path, data, _config("strat") + f"  - {entry}\n", "strat")
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and "estimates[22]" in err, err

"""Issue 12, item 1: crosstabs (``tables.crosstabs``) with row or column percentages, their CIs
and the Rao-Scott test, through the CLI on R's example data, checked against R.

Reference values: ``tests/reference/crosstabs_expected.csv`` (cells) and
``tests/reference/crosstabs_tests_expected.csv`` (tests), written by ``Rscript
tests/reference/crosstabs.R`` with R survey 4.1-1 on ``../shared/conformance/data/apistrat.csv``
and ``svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc)``: a column-percentage cell
is ``svyby(~awards, ~stype, strat, svymean, deff = TRUE)`` with the interval of ``svyby(~I(awards
== level), ~stype, strat, svyciprop, method = "logit")``, the Total ``svymean``/``svyciprop`` of
the whole table; row percentages swap the variables; the tests are ``svychisq(~awards + stype,
strat, statistic = ...)``. ``Q`` is a question with don't know (8) and refused (9) made from the
api data (see the R script).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from csvstudy import conformance_data
from csvstudy import csv_project as _project
from pipeline.cli import main

REFERENCE = Path(__file__).parents[1] / "reference"
#: agreement with R's values: the same formulas in double precision
RTOL = 1e-9
#: R's svyciprop(method = "logit") interval comes from a fitted svyglm, stopped by glm.control's
#: epsilon = 1e-8 on the deviance: its bounds are that fit's, a few 1e-8 relative from the exact
#: logit interval (the largest difference in these tables is 2e-8; tests/conformance/conftest.py's
#: RTOL_GLM is 1e-8 for its cases)
RTOL_CI = 1e-7
#: a share the design fixes (stype is the stratum, with its fpc) has an SE of rounding noise in both
ATOL = 1e-12
TESTS = ("F", "Chisq", "Wald", "adjWald")

API = """\
study: api
waves:
  - id: "1"
    raw: RAW
design:
  weights: pw
  strata: [stype]
  fpc: [fpc]
export:
  formats: [csv, markdown, html, latex, xlsx]
tables:
  toplines: []
  crosstabs:
    - {id: awards_col, rows: awards, columns: stype, title: Awards by school type}
    - {id: awards_row, rows: awards, columns: stype, percent: row, decimals: 1}
    - {id: schwide, rows: sch.wide, columns: stype, notes: [A note of the crosstab.]}
    - {id: awards_Chisq, rows: awards, columns: stype, test: Chisq}
    - {id: awards_Wald, rows: awards, columns: stype, test: Wald}
    - {id: awards_adjWald, rows: awards, columns: stype, test: adjWald}
    - {id: awards_none, rows: awards, columns: stype, test: none}
"""


def expected(case: str, percent: str = "column") -> pl.DataFrame:
    ref = pl.read_csv(REFERENCE / "crosstabs_expected.csv", infer_schema_length=None, schema_overrides={"by": pl.String})
    return ref.filter((pl.col("case") == case) & (pl.col("percent") == percent)).with_columns(pl.col("by").fill_null(""))


def expected_test(case: str, statistic: str) -> dict:
    ref = pl.read_csv(REFERENCE / "crosstabs_tests_expected.csv", infer_schema_length=None, null_values=["NA"])
    rows = ref.filter((pl.col("case") == case) & (pl.col("statistic_type") == statistic))
    assert rows.height == 1
    return rows.row(0, named=True)


def _run(tmp: Path, data: pl.DataFrame, config: str, name: str) -> Path:
    cfg = _project(tmp, data, config, name)
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    return tmp / "outputs" / name / "1"


def _read(out: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    cells = pl.read_csv(out / "estimate" / "crosstabs.csv", infer_schema_length=None, schema_overrides={"by": pl.String, "flag": pl.String})
    tests = pl.read_csv(out / "estimate" / "crosstab_tests.csv", infer_schema_length=None, schema_overrides={"skipped": pl.String})
    return cells.with_columns(pl.col("by", "flag").fill_null("")), tests


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    out = _run(tmp_path_factory.mktemp("api"), conformance_data("apistrat.csv"), API, "api")
    return out, *_read(out)


def _check_cells(cells: pl.DataFrame, estimate_id: str, ref: pl.DataFrame) -> None:
    got = cells.filter(pl.col("estimate_id") == estimate_id)
    assert got.height == ref.height > 0
    for r in ref.iter_rows(named=True):
        rows = got.filter((pl.col("level") == r["level"]) & (pl.col("by") == r["by"]) & (pl.col("domain") == r["domain"]))
        assert rows.height == 1, r
        g = rows.row(0, named=True)
        for col in ("estimate", "se", "ci_low", "ci_high", "deff"):
            rtol = RTOL_CI if col.startswith("ci_") else RTOL
            assert g[col] == pytest.approx(r[col], rel=rtol, abs=ATOL), (r["level"], r["domain"], col)
        assert (g["df"], g["n"], g["variable"], g["statistic"]) == (r["df"], r["n"], r["variable"], "proportion")


def test_column_percentages_match_r_svyby_and_the_total_r_svymean(api):
    _, cells, _ = api
    _check_cells(cells, "awards_col", expected("awards_by_stype"))
    _check_cells(cells, "schwide", expected("schwide_by_stype"))
    row = cells.filter(pl.col("estimate_id") == "awards_col").row(0, named=True)
    assert (row["percent"], row["ci_method"], row["denominator"], row["title"]) == ("column", "logit", "valid", "Awards by school type")


def test_row_percentages_match_r_svyby_with_the_variables_swapped(api):
    _, cells, _ = api
    _check_cells(cells, "awards_row", expected("awards_by_stype", "row"))
    assert set(cells.filter(pl.col("estimate_id") == "awards_row").get_column("percent")) == {"row"}
    # each row of the table (a level of awards, and the Total) sums to 100%
    sums = cells.filter(pl.col("estimate_id") == "awards_row").group_by("domain").agg(pl.col("estimate").sum())
    assert sums.height == 3 and all(s == pytest.approx(1.0, abs=1e-12) for s in sums.get_column("estimate"))


def test_cell_n_counts_the_respondents_in_each_cell(api):
    _, cells, _ = api
    data = conformance_data("apistrat.csv")
    for r in cells.filter(pl.col("estimate_id") == "awards_col").iter_rows(named=True):
        rows = data if r["by"] == "" else data.filter(pl.col("stype") == r["domain"])
        assert r["cell_n"] == rows.filter(pl.col("awards") == r["level"]).height


@pytest.mark.parametrize("statistic", TESTS)
def test_the_test_of_association_matches_r_svychisq(api, statistic):
    _, _, tests = api
    estimate_id = "awards_col" if statistic == "F" else f"awards_{statistic}"
    rows = tests.filter(pl.col("estimate_id") == estimate_id)
    assert rows.height == 1
    got, r = rows.row(0, named=True), expected_test("awards_by_stype", statistic)
    assert (got["statistic_type"], got["variable"], got["by"], got["skipped"]) == (statistic, "awards", "stype", "")
    for col in ("statistic", "ndf", "p_value"):
        assert got[col] == pytest.approx(r[col], rel=RTOL), col
    if r["ddf"] is not None:
        assert got["ddf"] == pytest.approx(r["ddf"], rel=RTOL)


def test_the_row_percentage_table_has_the_same_test_and_none_has_no_test(api):
    _, _, tests = api
    col, row = (tests.filter(pl.col("estimate_id") == i).row(0, named=True) for i in ("awards_col", "awards_row"))
    assert row["statistic"] == pytest.approx(col["statistic"], rel=1e-12) and (row["variable"], row["by"]) == ("stype", "awards")
    assert tests.filter(pl.col("estimate_id") == "awards_none").height == 0
    sch = tests.filter(pl.col("estimate_id") == "schwide").row(0, named=True)
    assert sch["statistic"] == pytest.approx(expected_test("schwide_by_stype", "F")["statistic"], rel=RTOL)


def _pct(x: float, decimals: int = 0) -> str:
    return f"{100 * x:.{decimals}f}"


def test_the_markdown_table_shows_column_percentages_with_cis_the_total_n_and_the_test(api):
    out, _, tests = api
    md = (out / "tables" / "awards_col.md").read_text()
    ref = expected("awards_by_stype")
    assert "| awards | School type: E |" not in md  # no labels configured: the variable's name
    assert "| awards | stype: E | stype: H | stype: M | Total |" in md
    for level in ("No", "Yes"):
        part = {r["domain"]: r for r in ref.filter(pl.col("level") == level).iter_rows(named=True)}
        shares = " | ".join(_pct(part[d]["estimate"]) for d in ("E", "H", "M", "All"))
        cis = " | ".join(f"{_pct(part[d]['ci_low'])}–{_pct(part[d]['ci_high'])}" for d in ("E", "H", "M", "All"))
        assert f"| {level} | {shares} |" in md and f"| 95% CI | {cis} |" in md
    assert "| *Unweighted n* | 100 | 50 | 50 | 200 |" in md  # the strata's sizes in apistrat
    t = tests.filter(pl.col("estimate_id") == "awards_col").row(0, named=True)
    assert f"Rao-Scott F = {t['statistic']:.2f} on {t['ndf']:.1f} and {t['ddf']:.0f} df, p < 0.001." in md
    assert md.startswith("# Awards by school type\n")


def test_the_row_percentage_table_has_a_total_row_and_an_n_column(api):
    out, cells, _ = api
    md = (out / "tables" / "awards_row.md").read_text()
    assert "| awards | stype: E | stype: H | stype: M | Unweighted n |" in md
    total = {r["level"]: r for r in cells.filter((pl.col("estimate_id") == "awards_row") & (pl.col("by") == "")).iter_rows(named=True)}
    shares = " | ".join(_pct(total[t]["estimate"], 1) for t in ("E", "H", "M"))  # decimals: 1
    assert f"| Total | {shares} | 200 |" in md
    assert "| No |" in md and "| Yes |" in md


def test_a_small_cell_is_suppressed_in_every_format(api):
    """sch.wide = No among the elementary schools: 9 schools, fewer than tables.disclosure.min_cell_n."""
    from openpyxl import load_workbook

    out, cells, _ = api
    small = conformance_data("apistrat.csv").filter((pl.col("stype") == "E") & (pl.col("sch.wide") == "No")).height
    assert small < 10
    row = cells.filter((pl.col("estimate_id") == "schwide") & (pl.col("domain") == "E") & (pl.col("level") == "No")).row(0, named=True)
    assert (row["cell_n"], row["flag"]) == (small, "cell<10")
    md = (out / "tables" / "schwide.md").read_text()
    assert "| No | * | " in md and "| 95% CI | * | " in md and "Suppressed: fewer than 10 respondents in the cell" in md
    assert "A note of the crosstab." in md
    tidy = pl.read_csv(out / "tables" / "schwide.csv", infer_schema_length=None)
    cell = tidy.filter((pl.col("row_label") == "No") & (pl.col("column") == "stype=E")).row(0, named=True)
    assert (cell["text"], cell["estimate_id"], cell["flag"]) == ("*", "schwide", "cell<10")
    sheet = load_workbook(out / "tables" / "tables.xlsx")["schwide"]
    texts = [[c.value for c in r] for r in sheet.iter_rows()]
    no_row = next(r for r in texts if r[0] == "No")
    assert no_row[1] == "*"


def test_the_xlsx_sheet_keeps_the_shares_as_numbers_and_the_tidy_csv_names_their_rows(api):
    from openpyxl import load_workbook

    out, cells, _ = api
    sheet = load_workbook(out / "tables" / "tables.xlsx")["awards_col"]
    rows = [[c for c in r] for r in sheet.iter_rows()]
    yes = next(r for r in rows if r[0].value == "Yes")
    ref = {r["domain"]: r["estimate"] for r in expected("awards_by_stype").filter(pl.col("level") == "Yes").iter_rows(named=True)}
    assert [c.value for c in yes[1:5]] == pytest.approx([ref[d] for d in ("E", "H", "M", "All")], rel=RTOL)
    assert yes[1].number_format == "0%"
    tidy = pl.read_csv(out / "tables" / "awards_col.csv", infer_schema_length=None)
    shares = tidy.filter(pl.col("field") == "estimate")
    assert shares.height == 8 and set(shares.get_column("estimate_id")) == {"awards_col"}
    for t in shares.iter_rows(named=True):  # every number is its row of estimate/crosstabs.csv
        assert t["value"] == cells.row(t["source_row"], named=True)["estimate"]
    for suffix in (".html", ".tex"):
        assert "Rao-Scott F" in (out / "tables" / f"awards_col{suffix}").read_text()


# ------------------------------------------------------------------------------ don't know and refused

QUESTION = """\
study: q
waves:
  - id: "1"
    raw: RAW
    labels: {Q: {1: "Yes", 2: "No", 8: "Don't know", 9: "Refused"}}
clean:
  missing:
    also: [{variables: [Q], codes: [8, 9]}]
design:
  weights: pw
  strata: [stype]
  fpc: [fpc]
export:
  formats: [markdown]
tables:
  labels: {stype: School type}
  crosstabs:
    - {id: q_valid, rows: Q, columns: stype}
    - {id: q_all, rows: Q, columns: stype, denominator: all}
"""


@pytest.fixture(scope="module")
def question(tmp_path_factory):
    data = conformance_data("apistrat.csv")
    code = (
        pl.when(pl.col("snum") % 11 == 0).then(8).when(pl.col("snum") % 13 == 0).then(9)
        .when(pl.col("sch.wide") == "Yes").then(1).otherwise(2)
    )
    out = _run(tmp_path_factory.mktemp("question"), data.with_columns(code.alias("Q")), QUESTION, "q")
    return out, *_read(out)


def test_denominator_valid_leaves_dont_know_and_refused_out_of_the_base_as_r_does(question):
    _, cells, tests = question
    ref = expected("q_valid_by_stype").with_columns(pl.lit("Q").alias("variable"))
    _check_cells(cells, "q_valid", ref)
    assert set(cells.filter(pl.col("estimate_id") == "q_valid").get_column("level")) == {"Yes", "No"}
    got = tests.filter(pl.col("estimate_id") == "q_valid").row(0, named=True)
    r = expected_test("q_valid_by_stype", "F")
    assert (got["statistic"], got["ndf"], got["ddf"]) == pytest.approx((r["statistic"], r["ndf"], r["ddf"]), rel=RTOL)


def test_denominator_all_makes_dont_know_and_refused_levels_of_the_table_as_r_does(question):
    out, cells, tests = question
    _check_cells(cells, "q_all", expected("q_all_by_stype").with_columns(pl.lit("Q").alias("variable")))
    got = tests.filter(pl.col("estimate_id") == "q_all").row(0, named=True)
    assert got["p_value"] == pytest.approx(expected_test("q_all_by_stype", "F")["p_value"], rel=RTOL)
    md = (out / "tables" / "q_all.md").read_text()
    assert "| Don't know |" in md and "| Refused |" in md and "don't know and refused included" in md
    assert "| Q | School type: E | School type: H | School type: M | Total |" in md  # tables.labels names the column variable


# ------------------------------------------------------------------------------ bad config


def _errors(tmp_path: Path, crosstab: str, capsys, command: str = "run") -> tuple[int, str]:
    config = API.split("  crosstabs:\n")[0] + f"  crosstabs:\n    - {crosstab}\n"
    cfg = _project(tmp_path, conformance_data("apistrat.csv"), config, "api")
    code = main([command, str(cfg)] + (["--quiet"] if command == "run" else []))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_numeric_variable_without_labels_is_a_config_error_naming_the_key(tmp_path, capsys, command):
    code, err = _errors(tmp_path, "{id: x, rows: stype, columns: api00}", capsys, command)
    assert code == 2, err
    assert "tables.crosstabs[0].columns (x): api00 is a numeric variable without value labels" in err
    assert "waves[].labels: {api00: {1: ..., 2: ...}}" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_variable_not_in_the_data_is_a_config_error_naming_the_key(tmp_path, capsys, command):
    code, err = _errors(tmp_path, "{id: x, rows: awardz, columns: stype}", capsys, command)
    assert code == 2, err
    assert "tables.crosstabs[0].rows" in err and "awardz" in err and "Traceback" not in err


def test_the_same_variable_twice_and_repeated_table_ids_are_refused(tmp_path, capsys):
    code, err = _errors(tmp_path, "{id: x, rows: stype, columns: stype}", capsys)
    assert code == 2 and "rows and columns are both stype; a crosstab needs two different variables" in err
    code, err = _errors(tmp_path, "{id: x, rows: awards, columns: stype}\n    - {id: x, rows: sch.wide, columns: stype}", capsys)
    assert code == 2 and "table ids must be unique across toplines, banners, trends and crosstabs (repeated: x)" in err
    code, err = _errors(tmp_path, "{id: x, rows: awards, columns: stype, percent: cell}", capsys)
    assert code == 2 and "tables.crosstabs[0].percent" in err


def test_a_crosstab_that_cannot_be_tested_is_made_with_the_reason_in_its_note(tmp_path):
    """A variable with one level in the base: the cells are made, the test is skipped and says why."""
    data = conformance_data("apistrat.csv").with_columns(pl.lit("Public").alias("sector"))
    config = API.split("  crosstabs:\n")[0] + "  crosstabs:\n    - {id: x, rows: sector, columns: stype}\n"
    out = _run(tmp_path, data, config, "api")
    cells, tests = _read(out)
    assert cells.filter(pl.col("domain") == "All").get_column("estimate").to_list() == [1.0]
    reason = tests.row(0, named=True)["skipped"]
    assert reason.startswith("not tested: a test of association needs at least 2 levels of sector")
    assert f"(design-based, as R svychisq): {reason}." in (out / "tables" / "x.md").read_text()


def test_a_crosstab_of_a_question_not_asked_in_the_wave_is_not_made(tmp_path):
    data = conformance_data("apistrat.csv").drop("awards")
    config = API.split("  crosstabs:\n")[0].replace('    raw: RAW\n', '    raw: RAW\n    not_asked: [awards]\n')
    config += "  crosstabs:\n    - {id: x, rows: awards, columns: stype}\n    - {id: y, rows: sch.wide, columns: stype}\n"
    out = _run(tmp_path, data, config, "api")
    cells, _ = _read(out)
    assert set(cells.get_column("estimate_id")) == {"y"}
    assert not (out / "tables" / "x.md").exists() and (out / "tables" / "y.md").exists()


PANELS = """\
study: clus1
waves:
  - id: "1"
    raw: RAW
design:
  weights: pw
  ids: [dnum]
  fpc: [fpc]
export:
  formats: [csv, markdown, xlsx]
tables:
  toplines: []
  labels: {stype: School type}
  crosstabs:
    - {id: awards_by_target, rows: awards, columns: sch.wide, by: [stype], title: "Awards by target met, within school type"}
"""


def test_a_crosstab_by_a_domain_has_a_panel_per_domain_each_as_r_on_its_subset(tmp_path):
    """``by: [stype]``: each panel is R's ``subset(clus1, stype == s)`` (zero weights outside, the
    subset's degrees of freedom): cells, Totals and ``svychisq`` as ``tests/reference/crosstab_panels.R``."""
    cfg = _project(tmp_path, conformance_data("apiclus1.csv"), PANELS, "clus1")
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = tmp_path / "outputs" / "clus1" / "1"
    cells = pl.read_csv(out / "estimate" / "crosstabs.csv", infer_schema_length=None, schema_overrides={"panel": pl.String})
    ref = pl.read_csv(REFERENCE / "crosstab_panels_expected.csv")
    assert cells.height == ref.height == 18
    for r in ref.iter_rows(named=True):
        got = cells.filter((pl.col("panel") == r["panel"]) & (pl.col("domain") == r["domain"]) & (pl.col("level") == r["level"]))
        assert got.height == 1, r
        g = got.row(0, named=True)
        assert (g["panel_by"], g["by"]) == ("stype", "" if r["domain"] == "All" else "sch.wide")
        assert g["estimate"] == pytest.approx(r["estimate"], rel=RTOL, abs=ATOL) and g["se"] == pytest.approx(r["se"], rel=RTOL, abs=ATOL)
        assert g["df"] == r["df"], r
        if 0 < r["estimate"] < 1:  # at 0 or 1 R's logit interval is its fit's rounding, not an interval
            assert g["ci_low"] == pytest.approx(r["ci_low"], rel=RTOL_CI) and g["ci_high"] == pytest.approx(r["ci_high"], rel=RTOL_CI)
    tests = pl.read_csv(out / "estimate" / "crosstab_tests.csv", infer_schema_length=None, schema_overrides={"panel": pl.String})
    for r in pl.read_csv(REFERENCE / "crosstab_panels_tests_expected.csv").iter_rows(named=True):
        g = tests.filter(pl.col("panel") == r["panel"]).row(0, named=True)
        for col in ("statistic", "ndf", "ddf", "p_value"):
            assert g[col] == pytest.approx(r[col], rel=RTOL), (r["panel"], col)
    table = (out / "tables" / "awards_by_target.md").read_text(encoding="utf-8")
    for s in ("E", "H", "M"):
        assert f"School type: {s}" in table
    assert "One panel per School type" in table and "M: Test of association of awards and sch.wide" in table


def test_by_naming_a_table_variable_is_refused(tmp_path, capsys):
    cfg = _project(tmp_path, conformance_data("apiclus1.csv"), PANELS.replace("by: [stype]", "by: [awards]"), "clus1")
    assert main(["validate", str(cfg)]) == 2
    assert "by names awards, a variable of the table itself" in capsys.readouterr().err

"""The codebook with weighted frequencies (export format ``codebook``, issue 14 item 2), through
the command line.

Reference values: R ``survey`` 4.1-1, ``tests/reference/codebook.R`` (``Rscript
tests/reference/codebook.R`` writes ``tests/reference/codebook_expected.csv``; the test does not
need R), on R's apistrat (``../shared/conformance/data/apistrat.csv``) with ``svydesign(id = ~1,
strata = ~stype, weights = ~pw, fpc = ~fpc)``: each code's share ``svymean(~factor(x), design)``
with its logit interval ``svyciprop(~I(x == code), design, method = "logit")``; each numeric
variable's ``confint(svymean(~x, design, na.rm = TRUE), df = degf(design))`` and
``svyquantile(~x, design, c(0.25, 0.5, 0.75), na.rm = TRUE)``. The missing values by reason are
checked on the demo against the clean stage's ``missing_reasons.parquet`` and the estimate
stage's ``estimates.csv``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from csvstudy import conformance_data
from csvstudy import csv_project as _project
from pipeline.cli import main

REFERENCE = Path(__file__).parents[1] / "reference" / "codebook_expected.csv"
RTOL = 1e-9
#: svyciprop's logit interval comes from a glm fit: the README's tolerance 1e-8 relative for its bounds
RTOL_GLM = 1e-8
MIN_CELL = 25  # yr.rnd has 21 "Yes": suppressed

STRAT = """\
study: strat
waves:
  - id: "1"
    raw: RAW
ingest:
  pii: [sname]
design:
  weights: pw
  strata: [stype]
  fpc: [fpc]
tables:
  disclosure: {min_cell_n: MIN_CELL}
export:
  formats: [csv, report, codebook]
estimates:
  - {id: api00_mean, mean: api00}
""".replace("MIN_CELL", str(MIN_CELL))


@pytest.fixture(scope="module")
def strat(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("codebook")
    cfg = _project(tmp, conformance_data("apistrat.csv"), STRAT, "strat")
    assert main(["run", str(cfg), "--quiet"]) == 0
    return tmp / "outputs" / "strat" / "1"


@pytest.fixture(scope="module")
def book(strat) -> pl.DataFrame:
    return pl.read_csv(strat / "codebook" / "codebook.csv", infer_schema_length=None, schema_overrides={"code": pl.String})


def _reference() -> list[dict]:
    return pl.read_csv(REFERENCE, infer_schema_length=None, schema_overrides={"level": pl.String}).iter_rows(named=True)


def _row(book: pl.DataFrame, variable: str, section: str, *, code: str | None = None, value: str | None = None) -> dict:
    rows = book.filter((pl.col("variable") == variable) & (pl.col("section") == section))
    if code is not None:
        rows = rows.filter(pl.col("code") == code)
    if value is not None:
        rows = rows.filter(pl.col("value") == value)
    assert rows.height == 1, (variable, section, code, value)
    return rows.row(0, named=True)


@pytest.mark.parametrize("r", [r for r in _reference() if r["statistic"] == "percent"], ids=lambda r: f"{r['variable']}={r['level']}")
def test_each_code_s_weighted_share_and_interval_match_r(book, r):
    got = _row(book, r["variable"], "value", code=r["level"])
    data = conformance_data("apistrat.csv")
    assert got["n"] == data.filter(pl.col(r["variable"]) == r["level"]).height
    assert got["ci_method"] == "logit"
    if got["n"] < MIN_CELL:  # disclosure: the count is shown, the share is not
        assert (got["flag"], got["estimate"], got["ci_low"], got["ci_high"]) == (f"cell<{MIN_CELL}", None, None, None)
        return
    assert got["flag"] is None or got["flag"] == ""
    for key in ("estimate", "se", "ci_low", "ci_high"):
        assert got[key] == pytest.approx(r[key], rel=RTOL if key in ("estimate", "se") else RTOL_GLM), key


def test_the_suppressed_cell_is_the_one_below_min_cell_n(book):
    values = book.filter(pl.col("section") == "value")
    flagged = values.filter(pl.col("flag").fill_null("") != "")
    small = values.filter((pl.col("n") > 0) & (pl.col("n") < MIN_CELL))
    assert flagged.select("variable", "code").rows() == small.select("variable", "code").rows()
    assert ("yr.rnd", "Yes", 21) in flagged.select("variable", "code", "n").rows()
    assert flagged.select(pl.all_horizontal(pl.col("estimate", "se", "ci_low", "ci_high").is_null()).all()).item()
    assert set(flagged.get_column("flag")) == {f"cell<{MIN_CELL}"}


@pytest.mark.parametrize("r", [r for r in _reference() if r["statistic"] != "percent"], ids=lambda r: f"{r['variable']}:{r['statistic']}")
def test_numeric_summaries_match_r(book, r):
    got = _row(book, r["variable"], "summary", value=r["statistic"])
    assert got["estimate"] == pytest.approx(r["estimate"], rel=RTOL)
    if r["statistic"] == "mean":
        for key in ("se", "ci_low", "ci_high"):
            assert got[key] == pytest.approx(r[key], rel=RTOL), key
    valid = conformance_data("apistrat.csv").get_column(r["variable"]).drop_nulls().len()
    assert got["n"] == valid


def test_system_missing_values_are_counted_and_every_row_is_accounted_for(book):
    data = conformance_data("apistrat.csv")
    assert _row(book, "target", "missing", code="system_missing")["n"] == 20
    assert _row(book, "acs.k3", "missing", code="system_missing")["n"] == 103
    assert _row(book, "flag", "missing", code="system_missing")["n"] == 200
    for variable in ("target", "acs.k3", "awards", "api00"):
        rows = book.filter(pl.col("variable") == variable)
        valid = rows.filter(pl.col("section") == "value").get_column("n").sum() if rows.get_column("type")[0] == "categorical" else (
            _row(book, variable, "summary", value="n")["n"])
        assert valid + rows.filter(pl.col("section") == "missing").get_column("n").sum() == data.height, variable


def test_pii_hashed_and_technical_columns_never_appear(strat, book):
    variables = set(book.get_column("variable"))
    assert "sname" not in variables  # ingest.pii
    assert not variables & {"raw_row", "dq_flags", "pw"}  # technical columns and the design's weight
    assert {"awards", "api00", "name"} <= variables
    for f in ("codebook.md", "codebook.csv"):
        assert "sname" not in (strat / "codebook" / f).read_text(encoding="utf-8")
    assert 'id="codebook-sname"' not in (strat / "report.html").read_text(encoding="utf-8")


def test_the_report_has_a_collapsible_section_per_variable(strat, book):
    page = (strat / "report.html").read_text(encoding="utf-8")
    assert '<section id="codebook">' in page and '<a href="#codebook">Codebook</a>' in page
    variables = book.get_column("variable").unique(maintain_order=True).to_list()
    assert page.count('<details id="codebook-') == len(variables)
    assert f'<details id="codebook-{variables[0]}"><summary>' in page


def test_markdown_shows_the_suppressed_share_as_a_star(strat, book):
    md = (strat / "codebook" / "codebook.md").read_text(encoding="utf-8")
    assert "| Yes |  | 21 | * | * | * |" in md.split("## yr.rnd")[1].split("## ")[0]
    awards_yes = _row(book, "awards", "value", code="Yes")
    assert f"| Yes |  | 113 | {100 * awards_yes['estimate']:.0f} | {100 * awards_yes['ci_low']:.0f} | {100 * awards_yes['ci_high']:.0f} |" in md


def test_the_workbook_has_an_index_linking_to_each_variable_s_block(strat, book):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.load_workbook(strat / "codebook" / "codebook.xlsx")
    assert wb.sheetnames == ["Index", "Codebook"]
    index, sheet = wb["Index"], wb["Codebook"]
    variables = book.get_column("variable").unique(maintain_order=True).to_list()
    linked = [(c.value, c.hyperlink.location) for c in index["A"][5:] if c.value is not None]
    assert [v for v, _ in linked] == variables
    for variable, location in linked:
        assert location.startswith("'Codebook'!A")
        assert sheet[location.split("!")[1]].value == variable
    # the block's numbers are the CSV's, as numbers; a suppressed share is the text *
    loc = dict(linked)["awards"].split("!A")[1]
    start = int(loc) + 2  # the variable's row, its header, then its rows
    rows = {sheet.cell(r, 2).value: r for r in range(start, start + 2)}
    got = _row(book, "awards", "value", code="Yes")
    assert sheet.cell(rows["Yes"], 4).value == got["n"]
    assert sheet.cell(rows["Yes"], 5).value == pytest.approx(got["estimate"], rel=1e-14)
    assert sheet.cell(rows["Yes"], 6).value == pytest.approx(got["ci_low"], rel=1e-14)
    loc = int(dict(linked)["yr.rnd"].split("!A")[1]) + 2
    yes = next(r for r in range(loc, loc + 4) if sheet.cell(r, 2).value == "Yes")
    assert [sheet.cell(yes, k).value for k in (4, 5, 6, 7)] == [21, "*", "*", "*"]


# ------------------------------------------------------------------ the demo


@pytest.fixture(scope="module")
def demo(demo_project) -> Path:
    return demo_project / "outputs" / "insecure_communities" / "2012"


def test_demo_missing_values_by_reason_match_the_clean_stage_and_estimates_csv(demo):
    book = pl.read_csv(demo / "codebook" / "codebook.csv", infer_schema_length=None, schema_overrides={"code": pl.String})
    rows = pl.read_parquet(demo / "weight" / "data.parquet").select("raw_row")
    reasons = pl.read_parquet(demo / "clean" / "missing_reasons.parquet").join(rows, on="raw_row")
    counts = {(v, r): n for v, r, n in reasons.group_by("variable", "reason").len().iter_rows()}
    missing = book.filter(pl.col("section") == "missing")
    assert missing.height > 0
    for r in missing.iter_rows(named=True):
        assert r["n"] == counts.get((r["variable"], r["code"]), 0), (r["variable"], r["code"])
    # every reason the clean stage recorded is in the codebook
    for (variable, reason), n in counts.items():
        if variable in set(book.get_column("variable")):
            assert _row(book, variable, "missing", code=reason)["n"] == n
    # Q10A: the distribution's base (denominator all: valid answers, don't know and refused) and its cells
    est = pl.read_csv(demo / "estimates.csv", infer_schema_length=None).filter(
        (pl.col("estimate_id") == "contact_police_distribution") & (pl.col("domain") == "All"))
    q10a = book.filter(pl.col("variable") == "Q10A")
    valid = q10a.filter(pl.col("section") == "value").get_column("n").sum()
    dk, refused = _row(book, "Q10A", "missing", code="dont_know")["n"], _row(book, "Q10A", "missing", code="refused")["n"]
    assert valid + dk + refused == est.get_column("n")[0]
    cells = dict(est.select("level", "cell_n").iter_rows())
    assert (dk, refused) == (cells["Don't know"], cells["Refused"])
    assert _row(book, "Q10A", "value", code="1")["n"] == cells["Strongly agree"]
    assert valid + q10a.filter(pl.col("section") == "missing").get_column("n").sum() == rows.height


def test_demo_codebook_leaves_out_pii_hashes_and_weights(demo):
    book = pl.read_csv(demo / "codebook" / "codebook.csv", infer_schema_length=None, schema_overrides={"code": pl.String})
    variables = set(book.get_column("variable"))
    assert not variables & {"PHONE_HASH", "phone_key", "raw_row", "dq_flags", "w_base", "w_uncalibrated", "w_final", "w_pop"}
    assert not any(v.startswith("rk_") for v in variables)
    assert {"Q10A", "AGE", "YRS_US", "COUNTY"} <= variables
    # the mean years in the U.S. is the estimate stage's (same design, same base)
    est = pl.read_csv(demo / "estimates.csv", infer_schema_length=None).filter((pl.col("estimate_id") == "mean_years_us") & (pl.col("domain") == "All"))
    got = _row(book, "YRS_US", "summary", value="mean")
    for key in ("estimate", "se", "ci_low", "ci_high"):
        assert got[key] == pytest.approx(est.get_column(key)[0], rel=1e-12), key
    assert (demo / "codebook" / "codebook.xlsx").is_file() and "<details" in (demo / "report.html").read_text(encoding="utf-8")


# ------------------------------------------------------------------ a replicate design

CLUS1_JK1 = """\
study: clus1
waves:
  - id: "1"
    raw: RAW
design:
  weights: pw
  ids: [dnum]
  fpc: [fpc]
  variance: replicate
  replicates: {build: JK1}
export:
  formats: [codebook]
estimates:
  - {id: api00_mean, mean: api00}
"""


def test_a_replicate_design_gives_r_s_replicate_mean_and_median(tmp_path):
    """``as.svrepdesign(svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1), type = "JK1")``:
    ``svymean(~api00)`` and ``svyquantile(~api00, 0.5)`` from ``../shared/conformance/expected``."""
    from csvstudy import r_row

    cfg = _project(tmp_path, conformance_data("apiclus1.csv"), CLUS1_JK1, "clus1")
    assert main(["run", str(cfg), "--quiet"]) == 0
    book = pl.read_csv(tmp_path / "outputs" / "clus1" / "1" / "codebook" / "codebook.csv", infer_schema_length=None,
                       schema_overrides={"code": pl.String})
    got, r = _row(book, "api00", "summary", value="mean"), r_row("estimates.csv", "svymean:api00:clus1_jk1")
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low_t"), ("ci_high", "ci_high_t")):
        assert got[ours] == pytest.approx(r[theirs], rel=RTOL), ours
    median = r_row("quantiles.csv", "svyquantile:api00:math:default(mean):clus1_jk1", level="0.5")
    assert _row(book, "api00", "summary", value="median")["estimate"] == median["estimate"]
    for level in ("No", "Yes"):  # svymean(~sch.wide) on the replicate design: share and replicate SE
        got, r = _row(book, "sch.wide", "value", code=level), r_row("estimates.csv", "svymean:sch.wide:clus1_jk1", level)
        assert (got["estimate"], got["se"]) == (pytest.approx(r["estimate"], rel=RTOL), pytest.approx(r["se"], rel=RTOL))


def test_demo_respondent_id_has_counts_but_no_statistics(demo):
    book = pl.read_csv(demo / "codebook" / "codebook.csv", infer_schema_length=None, schema_overrides={"code": pl.String})
    rows = book.filter(pl.col("variable") == "RESPID")  # ingest.id
    assert set(rows.get_column("type")) == {"identifier"}
    assert rows.filter(pl.col("section") == "summary").select("value", "n").rows() == [("n", 2004)]
    assert rows.get_column("estimate").null_count() == rows.height

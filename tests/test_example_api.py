"""The second example study, on real public data: ``configs/api_two_stage.yaml`` on
``raw/api_two_stage.csv`` (R ``survey``'s ``apiclus2``: the California API two-stage cluster
sample, 40 districts then up to 5 schools each, delivered weight ``pw``), run through the
command line on a copy of the project's two files in a temp folder.

Reference values: R ``survey`` 4.1-1 (R 4.2.2), written by ``tests/reference/api_two_stage.R``
(``Rscript tests/reference/api_two_stage.R`` from the project root) into
``tests/reference/api_two_stage_expected.csv``, one row per estimate x domain x level, on
``svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, weights = ~pw, data = apiclus2)``; each row
names its R call in ``r_call``. The test reads the CSV and never needs R.

Tolerances: means, totals, ratios (estimate, se and the Wald t interval on ``degf(design)``)
agree to 1e-9 relative (closed form). Proportions (R ``svyciprop(method = "logit")``; by domain
``svyby(..., svyciprop)``, on the domain's degrees of freedom) come from a glm fit in R, whose
estimate differs from the weighted mean by up to about 1e-9 relative: their estimates and
intervals to 1e-8 relative, the conformance README's tolerance for logit intervals (they agree
to about 1e-10 here), their se (svymean's) to 1e-9. Quantiles (``qrule = "math"``, Woodruff
interval) are data values, compared exactly, with R's ``se`` to 1e-9; an open interval end
(R's NA) must be missing here too.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference" / "api_two_stage_expected.csv"
CONTRASTS = ROOT / "tests" / "reference" / "api_two_stage_contrasts.csv"
CLOSED_FORM = 1e-9
LOGIT = 1e-8
TABLES = ("topline", "quartiles", "differences", "banner", "type_by_award", "award_by_type")
KEY = ("estimate_id", "domain", "level")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project's config and raw file copied to a temp project, validated and run."""
    tmp = tmp_path_factory.mktemp("api_two_stage")
    (tmp / "configs").mkdir()
    (tmp / "raw").mkdir()
    shutil.copy(ROOT / "configs" / "api_two_stage.yaml", tmp / "configs")
    shutil.copy(ROOT / "raw" / "api_two_stage.csv", tmp / "raw")
    cfg = tmp / "configs" / "api_two_stage.yaml"
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    return tmp


@pytest.fixture(scope="module")
def all_estimates(project) -> pl.DataFrame:
    return pl.read_csv(project / "outputs" / "api_two_stage" / "2000" / "estimates.csv", infer_schema_length=None)


@pytest.fixture(scope="module")
def estimates(all_estimates) -> pl.DataFrame:
    """The rows of the api_two_stage_expected.csv references (the differences: test_differences_match_r)."""
    return all_estimates.filter(pl.col("statistic") != "difference")


def _reference() -> pl.DataFrame:
    return pl.read_csv(REFERENCE, infer_schema_length=None).with_columns(pl.col("level").fill_null(""))


def _keys(frame: pl.DataFrame) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in frame.select(pl.col(k).cast(pl.String).fill_null("") for k in KEY).iter_rows()]


def test_every_estimate_has_a_reference_row_and_every_reference_row_is_estimated(estimates):
    ours, theirs = _keys(estimates), _keys(_reference())
    assert len(set(ours)) == len(ours) == estimates.height  # one row per estimate x domain x level
    assert sorted(ours) == sorted(theirs)
    assert estimates.height == 51


def _close(got: float | None, want: float | None, rel: float) -> bool:
    if want is None:  # R's NA: an open end of a quantile's interval
        return got is None or got != got
    return got is not None and got == pytest.approx(want, rel=rel)


@pytest.mark.parametrize("row", list(_reference().iter_rows(named=True)), ids=lambda r: ":".join(r[k] or "-" for k in KEY))
def test_each_row_matches_r_survey(estimates, row):
    rows = estimates.filter(
        (pl.col("estimate_id") == row["estimate_id"]) & (pl.col("domain").cast(pl.String) == row["domain"])
        & (pl.col("level").fill_null("") == row["level"])
    )
    assert rows.height == 1
    got = rows.row(0, named=True)
    statistic = got["statistic"]
    assert got["df"] == row["df"], row["r_call"]
    assert got["conf_level"] == 0.95
    if statistic == "quantile":
        for key in ("estimate", "ci_low", "ci_high"):
            want = row[key]
            assert (got[key] != got[key]) if want is None else got[key] == want, (key, row["r_call"])
        assert _close(got["se"], row["se"], CLOSED_FORM), row["r_call"]
        assert got["ci_method"] == "woodruff"
        return
    for key in ("estimate", "se", "ci_low", "ci_high"):
        rel = LOGIT if statistic == "proportion" and key != "se" else CLOSED_FORM  # a share's se is svymean's: closed form
        assert _close(got[key], row[key], rel), (key, got[key], row[key], row["r_call"])
    assert got["ci_method"] == ("logit" if statistic == "proportion" else "wald")


def test_the_bases_are_the_schools_with_a_value(estimates):
    """``n`` is counted from the raw file: every school, or those with an ``enroll`` figure (6
    missing) for the mean and total of enroll and the ratio of api.stu to enroll."""
    raw = pl.read_csv(ROOT / "raw" / "api_two_stage.csv", infer_schema_length=None)
    has_enroll = raw.filter(pl.col("enroll").is_not_null())
    assert (raw.height, has_enroll.height) == (126, 120)
    for row in estimates.iter_rows(named=True):
        base = has_enroll if row["estimate_id"] in ("enroll_mean", "enroll_total", "tested_share") else raw
        if row["domain"] != "All":
            base = base.filter(pl.col("stype") == row["domain"])
        assert row["n"] == base.height, (row["estimate_id"], row["domain"], row["level"])


def test_the_delivered_weight_is_used_as_is(project):
    """No weighting: the weight stage reports the delivered ``pw``, whose sum is the population
    of schools R's design estimates (``sum(weights(design))``)."""
    qa = (project / "outputs" / "api_two_stage" / "2000" / "weight" / "qa.md").read_text(encoding="utf-8")
    assert "the delivered weight `pw`" in qa and "calibration: none" in qa
    raw = pl.read_csv(ROOT / "raw" / "api_two_stage.csv")
    assert f"population: {raw.get_column('pw').sum():,.0f}" in qa


def _contrasts(kind: str) -> list[dict]:
    return pl.read_csv(CONTRASTS, infer_schema_length=None).filter(pl.col("kind") == kind).to_dicts()


#: the contrasts CSV's names of the config's differences
DIFFERENCE_IDS = {
    "api00_mean:E-H": "api00_e_h", "api00_mean:E-M": "api00_e_m", "api00_mean:H-M": "api00_h_m",
    "sch_wide_met:E-H": "sch_wide_e_h", "sch_wide_met:E-M": "sch_wide_e_m", "sch_wide_met:H-M": "sch_wide_h_m",
}


def test_differences_match_r(all_estimates):
    """Domain differences (``svycontrast`` on ``svyby(..., covmat = TRUE)``) and the growth
    api00 - api99 of the same schools, overall and by type, on ``degf(design)`` = 39."""
    diffs = all_estimates.filter(pl.col("statistic") == "difference")
    refs = _contrasts("domain_difference") + _contrasts("item_difference")
    assert diffs.height == len(refs) == 10
    for r in refs:
        est_id = DIFFERENCE_IDS.get(r["contrast"], "api_growth")
        domain = "All" if r["kind"] == "domain_difference" else r["domain"]
        got = diffs.filter((pl.col("estimate_id") == est_id) & (pl.col("domain") == domain)).row(0, named=True)
        for key in ("estimate", "se", "ci_low", "ci_high", "p_value"):
            assert got[key] == pytest.approx(r[key], rel=CLOSED_FORM), (est_id, domain, key, r["r_call"])
        assert got["df"] == r["df"] == 39


def test_crosstabs_match_r(project):
    """Column and row percentages of stype x awards (``svyby(..., svyciprop)``, each domain on
    its own df) and ``svychisq`` (F: Rao-Scott second order; Chisq: first order)."""
    out = project / "outputs" / "api_two_stage" / "2000" / "estimate"
    cells = pl.read_csv(out / "crosstabs.csv", infer_schema_length=None)
    for kind, table in (("crosstab_column_percent", "type_by_award"), ("crosstab_row_percent", "award_by_type")):
        refs = _contrasts(kind)
        assert len(refs) == 6
        for r in refs:
            by, domain = r["domain"].split("=")
            got = cells.filter((pl.col("estimate_id") == table) & (pl.col("by") == by) & (pl.col("domain") == domain) & (pl.col("level") == r["level"]))
            assert got.height == 1, (table, r["domain"], r["level"])
            g = got.row(0, named=True)
            assert g["estimate"] == pytest.approx(r["estimate"], rel=LOGIT) and g["se"] == pytest.approx(r["se"], rel=CLOSED_FORM)
            # R's logit interval comes from a glm fit: its bounds differ in the 8th digit (tests/stages/test_crosstabs.py)
            assert g["ci_low"] == pytest.approx(r["ci_low"], rel=1e-7) and g["ci_high"] == pytest.approx(r["ci_high"], rel=1e-7)
            assert g["df"] == r["df"]
    tests = pl.read_csv(out / "crosstab_tests.csv", infer_schema_length=None)
    for r in _contrasts("svychisq"):
        table = "type_by_award" if r["contrast"].endswith(":F") else "award_by_type"
        g = tests.filter(pl.col("estimate_id") == table).row(0, named=True)
        for ours, theirs in (("statistic", "statistic"), ("ndf", "ndf"), ("p_value", "p_value")):
            assert g[ours] == pytest.approx(r[theirs], rel=CLOSED_FORM), (table, ours)
        if r["ddf"] is not None:
            assert g["ddf"] == pytest.approx(r["ddf"], rel=CLOSED_FORM)


def test_the_tables_are_written_in_every_format(project, estimates):
    tables = project / "outputs" / "api_two_stage" / "2000" / "tables"
    for table in TABLES:
        for ext in ("md", "html", "csv"):
            path = tables / f"{table}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path
            assert not re.search(r"\bnan\b", path.read_text(encoding="utf-8"), re.IGNORECASE), path  # no undefined bound printed
    import openpyxl

    wb = openpyxl.load_workbook(tables / "tables.xlsx")
    assert wb.sheetnames == ["About", *TABLES]
    cells = [c.value for row in wb["topline"].iter_rows() for c in row]
    mean_all = estimates.filter((pl.col("estimate_id") == "api00_mean") & (pl.col("domain") == "All")).row(0, named=True)
    assert any(isinstance(v, float) and v == pytest.approx(mean_all["estimate"], rel=1e-12) for v in cells)
    top = (tables / "topline.md").read_text(encoding="utf-8")
    assert f"| All | All |  | 126 | {mean_all['estimate']:.1f} | {mean_all['ci_low']:.1f}–{mean_all['ci_high']:.1f} |" in top
    assert "## School-wide growth target met" in top and "| School type | E | Target met | 83 |" in top
    assert "School type: E elementary, M middle, H high school" in top
    quart = (tables / "quartiles.md").read_text(encoding="utf-8")
    assert "| All | All | p50 | 126 | 653.0 | 580.0–766.0 |" in quart
    # an open end of a Woodruff interval (R: NA) is shown as the one bound, flagged for review
    assert "| School type | H | p25 | 20 | 479.0‖ | ≤627.0 | – |" in quart and "‖ The confidence interval has an open end" in quart
    h_p25 = estimates.filter((pl.col("estimate_id") == "api00_quantiles") & (pl.col("domain") == "H") & (pl.col("level") == "p25")).row(0, named=True)
    assert h_p25["flag"] == "ci=open"
    banner = (tables / "banner.md").read_text(encoding="utf-8")
    assert "| Total | School type: E (A) | School type: H (B) | School type: M (C) |" in banner
    assert "## School type\n" not in banner  # the distribution of the column variable itself is not bannered
    tidy = pl.read_csv(tables / "topline.csv", infer_schema_length=None)
    assert set(tidy.get_column("estimate_id").unique().to_list()) == set(estimates.get_column("estimate_id").unique().to_list()) - {"api00_quantiles"}


def test_the_readme_quotes_the_run(all_estimates):
    def row(est_id: str, domain: str = "All", level: str = "") -> dict:
        rows = all_estimates.filter((pl.col("estimate_id") == est_id) & (pl.col("domain") == domain) & (pl.col("level").fill_null("") == level))
        return rows.row(0, named=True)

    mean, growth, e_h = row("api00_mean"), row("api_growth"), row("api00_e_h")
    quoted = [
        f"`estimates.csv` ({all_estimates.height} rows: {all_estimates.filter(pl.col('statistic') != 'difference').height} estimates and 10",
        f"**{mean['estimate']:.1f}** ({mean['ci_low']:.1f}–{mean['ci_high']:.1f})",
        f"**{growth['estimate']:+.1f}** points ({growth['ci_low']:.1f}–{growth['ci_high']:.1f}), p < 0.001",
        f"**{e_h['estimate']:+.1f}** ({e_h['ci_low']:.1f}–{e_h['ci_high']:.1f}), p = {e_h['p_value']:.3f}",
    ]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert [q for q in quoted if " ".join(q.split()) not in readme] == []


#: the codebook's rows (variable, section, code or statistic) that R's reference rows of the whole sample give
CODEBOOK_ROWS = {
    ("awards", "value", "No"): ("awards", "No"), ("awards", "value", "Yes"): ("awards", "Yes"),
    ("sch.wide", "value", "Yes"): ("sch_wide_met", "Target met"),
    ("stype", "value", "E"): ("school_type", "E"), ("stype", "value", "H"): ("school_type", "H"), ("stype", "value", "M"): ("school_type", "M"),
    ("api00", "summary", "mean"): ("api00_mean", ""), ("api99", "summary", "mean"): ("api99_mean", ""),
    ("enroll", "summary", "mean"): ("enroll_mean", ""),
    ("api00", "summary", "p25"): ("api00_quantiles", "p25"), ("api00", "summary", "median"): ("api00_quantiles", "p50"),
    ("api00", "summary", "p75"): ("api00_quantiles", "p75"),
}


@pytest.mark.parametrize("key", list(CODEBOOK_ROWS), ids=lambda k: ":".join(k))
def test_the_codebook_of_the_real_data_example_matches_r(project, key):
    """The codebook's weighted shares, logit intervals, means and quartiles (export format
    ``codebook``) are R's whole-sample values of ``api_two_stage_expected.csv`` (the same design)."""
    book = pl.read_csv(project / "outputs" / "api_two_stage" / "2000" / "codebook" / "codebook.csv", infer_schema_length=None,
                       schema_overrides={"code": pl.String})
    variable, section, which = key
    rows = book.filter((pl.col("variable") == variable) & (pl.col("section") == section) & (pl.col("code" if section == "value" else "value") == which))
    assert rows.height == 1
    got = rows.row(0, named=True)
    estimate_id, level = CODEBOOK_ROWS[key]
    ref = _reference().filter((pl.col("estimate_id") == estimate_id) & (pl.col("domain") == "All") & (pl.col("level") == level)).row(0, named=True)
    assert got["estimate"] == pytest.approx(ref["estimate"], rel=1e-9)
    if section == "value" or which == "mean":
        assert got["se"] == pytest.approx(ref["se"], rel=1e-9)
        for bound in ("ci_low", "ci_high"):  # a logit interval's bounds come from R's glm fit: 1e-8
            assert got[bound] == pytest.approx(ref[bound], rel=1e-8), bound
    assert not set(book.get_column("variable")) & {"pw", "fpc1", "fpc2", "raw_row"}

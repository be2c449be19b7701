"""Issue 12, next slice: the whole distribution of a categorical variable (``distribution:
VAR``) through the config and the estimate stage, checked against R.

Reference values: R ``survey`` 4.1-1 from ``../shared/conformance`` (``nhanes`` is
``svydesign(id = ~SDMVPSU, strata = ~SDMVSTRA, weights = ~WTMEC2YR, nest = TRUE, data =
nhanes)``): ``svymean(~agecat, nhanes)`` in expected/estimates.csv and ``svyby(~agecat,
~RIAGENDR, nhanes, svymean)`` in expected/domains.csv. With ``design.ci_method: mean`` the
interval is R's ``svyciprop(method = "mean")``, the Wald t interval on the design's degrees of
freedom (``ci_low_t``/``ci_high_t``).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from csvstudy import csv_project as _project
from csvstudy import r_row as _r
from pipeline.cli import main

CONFORMANCE = (Path(__file__).parents[2] / ".." / "shared" / "conformance").resolve()
RTOL = 1e-9
AGECAT = ["(0,19]", "(19,39]", "(39,59]", "(59,Inf]"]


NHANES = """\
study: nh
waves:
  - id: "1"
    raw: RAW
design:
  weights: WTMEC2YR
  strata: [SDMVSTRA]
  ids: [SDMVPSU]
  nest: true
  ci_method: mean
estimates:
  - {id: age_dist, distribution: agecat, by: [[], [RIAGENDR]]}
"""


@pytest.fixture(scope="module")
def nhanes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nhanes")
    cfg = _project(tmp, pl.read_csv(CONFORMANCE / "data" / "nhanes.csv"), NHANES, "nh")
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    return pl.read_csv(tmp / "outputs" / "nh" / "1" / "estimates.csv", infer_schema_length=None)


def _check(got: dict, r: dict) -> None:
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low_t"), ("ci_high", "ci_high_t"), ("deff", "deff")):
        assert got[ours] == pytest.approx(r[theirs], rel=RTOL), ours
    assert got["df"] == r["df"]


@pytest.mark.parametrize("level", AGECAT)
def test_distribution_of_the_whole_sample_matches_r_svymean_of_a_factor(nhanes, level):
    rows = nhanes.filter((pl.col("domain") == "All") & (pl.col("level") == level))
    assert rows.height == 1
    got = rows.row(0, named=True)
    _check(got, _r("estimates.csv", "svymean:agecat:nhanes", level))
    assert (got["statistic"], got["variable"], got["ci_method"], got["n"]) == ("proportion", "agecat", "mean", 8591)
    assert got["cell_n"] == pl.read_csv(CONFORMANCE / "data" / "nhanes.csv").filter(pl.col("agecat") == level).height


@pytest.mark.parametrize("sex", ["1", "2"])
@pytest.mark.parametrize("level", AGECAT)
def test_distribution_by_domain_matches_r_svyby(nhanes, level, sex):
    rows = nhanes.filter((pl.col("by") == "RIAGENDR") & (pl.col("domain").cast(pl.String) == sex) & (pl.col("level") == level))
    assert rows.height == 1
    r = _r("domains.csv", "svyby:svymean:agecat:RIAGENDR:nhanes", level, domain=f"RIAGENDR={sex}")
    got = rows.row(0, named=True)
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low_t"), ("ci_high", "ci_high_t")):
        assert got[ours] == pytest.approx(r[theirs], rel=RTOL), ours


def test_the_shares_of_each_domain_sum_to_one_with_a_row_per_level(nhanes):
    sums = nhanes.group_by("by", "domain").agg(pl.col("estimate").sum(), pl.col("level").sort().alias("levels"))
    assert sums.height == 3  # the whole sample and the two sexes
    for row in sums.iter_rows(named=True):
        assert row["estimate"] == pytest.approx(1.0, abs=1e-12)
        assert row["levels"] == AGECAT


# A categorical question with don't-know (8) and refused (9) answers, from the api data
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
  formats: [csv, markdown]
estimates:
  - {id: q_all, distribution: Q, denominator: all, by: [[], [stype]]}
  - {id: q_valid, distribution: Q, by: [[], [stype]]}
"""


@pytest.fixture(scope="module")
def question(tmp_path_factory):
    data = pl.read_csv(CONFORMANCE / "data" / "apistrat.csv", infer_schema_length=None)
    code = (
        pl.when(pl.col("snum") % 11 == 0).then(8).when(pl.col("snum") % 13 == 0).then(9)
        .when(pl.col("sch.wide") == "Yes").then(1).otherwise(2)
    )
    data = data.with_columns(code.alias("Q"))
    tmp = tmp_path_factory.mktemp("question")
    cfg = _project(tmp, data, QUESTION, "q")
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = tmp / "outputs" / "q" / "1"
    return data, pl.read_csv(out / "estimates.csv", infer_schema_length=None), (out / "tables" / "topline.md").read_text()


def test_denominator_all_gives_the_dont_know_and_refused_rows_too(question):
    data, est, _ = question
    every = est.filter(pl.col("estimate_id") == "q_all")
    valid = est.filter(pl.col("estimate_id") == "q_valid")
    assert every.filter(pl.col("domain") == "All").get_column("level").to_list() == ["Yes", "No", "Don't know", "Refused"]
    assert valid.filter(pl.col("domain") == "All").get_column("level").to_list() == ["Yes", "No"]
    for part in (every, valid):
        for total in part.group_by("domain").agg(pl.col("estimate").sum()).get_column("estimate"):
            assert total == pytest.approx(1.0, abs=1e-12)
    # the valid shares are the shares among the answers: all-share / (all-share Yes + No)
    for domain in ("All", "E", "H", "M"):
        a = {r["level"]: r for r in every.filter(pl.col("domain") == domain).iter_rows(named=True)}
        v = {r["level"]: r for r in valid.filter(pl.col("domain") == domain).iter_rows(named=True)}
        answered = a["Yes"]["estimate"] + a["No"]["estimate"]
        assert v["Yes"]["estimate"] == pytest.approx(a["Yes"]["estimate"] / answered, rel=RTOL)
        rows = data if domain == "All" else data.filter(pl.col("stype") == domain)
        assert a["Yes"]["n"] == rows.height and v["Yes"]["n"] == rows.filter(pl.col("Q") <= 2).height
        assert a["Don't know"]["cell_n"] == rows.filter(pl.col("Q") == 8).height
        assert {r["denominator"] for r in a.values()} == {"all"}


def test_a_distribution_is_shown_in_the_topline_with_every_answer(question):
    _, _, topline = question
    for label in ("Yes", "No", "Don't know", "Refused"):
        assert f"| {label} |" in topline


def test_levels_with_a_distribution_are_refused_with_a_hint():
    from pydantic import ValidationError

    from pipeline.config import EstimateSpec

    with pytest.raises(ValidationError, match=r"levels does not apply to distribution .* use proportion: Q10A with levels"):
        EstimateSpec(id="x", distribution="Q10A", levels=(1,))
    with pytest.raises(ValidationError, match="found proportion and distribution together"):
        EstimateSpec(id="x", distribution="Q10A", proportion="Q10A")
    spec = EstimateSpec(id="x", distribution="Q10A")
    assert (spec.statistic, spec.variable, spec.variables, spec.key) == ("proportion", "Q10A", ("Q10A",), "distribution")


def test_a_numeric_variable_without_labels_as_a_distribution_is_refused_naming_the_key(tmp_path, capsys):
    config = NHANES.replace("distribution: agecat", "distribution: HI_CHOL")
    cfg = _project(tmp_path, pl.read_csv(CONFORMANCE / "data" / "nhanes.csv"), config, "nh")
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "estimates[0].distribution (age_dist): HI_CHOL is a numeric variable without value labels" in err
    assert "mean: HI_CHOL" in err and "Traceback" not in err

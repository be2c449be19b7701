"""Unit tests of :mod:`pipeline.survey.formula` and :mod:`pipeline.survey.models` (design-based GLMs).

The agreement with R ``svyglm`` on 17 designs is tests/conformance/test_glm.py; here: formula
errors, reference levels, interactions, na.omit with the design kept, domains, exponentiated
tables, predictive margins against ``tests/reference/margins_expected.csv`` (written by
``tests/reference/margins.R``: R 4.2.2, survey 4.1-1, ``svypredmeans``), and domains, lonely-PSU
policies, a chosen reference level, a factor x factor interaction and a model without intercept
against ``tests/reference/models_expected.csv`` (``tests/reference/models.R``, same R).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.errors import ArgumentError, DataError
from pipeline.survey import Design
from pipeline.survey.formula import model_matrix, parse
from pipeline.survey.models import glm
from pipeline.survey.replicates import as_replicate_design

ROOT = Path(__file__).parents[2]
DATA = (ROOT / ".." / "shared" / "conformance" / "data").resolve()
REFERENCE = ROOT / "tests" / "reference" / "margins_expected.csv"
MODELS_REFERENCE = ROOT / "tests" / "reference" / "models_expected.csv"


def _designs() -> dict[str, Design]:
    strat = Design.from_frame(pl.read_csv(DATA / "apistrat.csv"), strata="stype", weights="pw", fpc=["fpc"])
    clus1 = Design.from_frame(pl.read_csv(DATA / "apiclus1.csv"), ids=["dnum"], weights="pw", fpc=["fpc"])
    nhanes = Design.from_frame(pl.read_csv(DATA / "nhanes.csv"), ids=["SDMVPSU"], strata="SDMVSTRA",
                               weights="WTMEC2YR", nest=True)
    nh = pl.read_csv(DATA / "nhanes.csv")
    nh_lonely = nh.filter(~((pl.col("SDMVSTRA") == 89) & (pl.col("SDMVPSU") == 2)))  # stratum 89 keeps one PSU
    lonely = Design.from_frame(nh_lonely, ids=["SDMVPSU"], strata="SDMVSTRA", weights="WTMEC2YR", nest=True)
    return {"strat": strat, "clus1": clus1, "clus1_jk1": as_replicate_design(clus1, "JK1"), "nhanes": nhanes,
            "nhanes_lonely": lonely}


@pytest.fixture(scope="module")
def designs():
    return _designs()


@pytest.fixture(scope="module")
def clus2():
    return Design.from_frame(pl.read_csv(DATA / "apiclus2.csv"), ids=["dnum", "snum"], fpc=["fpc1", "fpc2"])


# ------------------------------------------------------------------ formulas
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api00 ell", "expected 'response ~ terms'"),
        ("api00 ~ log(ell)", "function log() is not supported"),
        ("api00 ~ ell + ; meals", "unexpected character ';'"),
        ("api00 ~ ell +", "formula ends early"),
        ("api00 ~ C(stype, base = 2)", "C() accepts only 'ref = <level>'"),
        ("api00 ~ ell + 3", "can only be 0 or 1"),
        ("api00 ~ api00 + ell", "the response 'api00' is also a term"),
    ],
)
def test_formula_errors_name_the_problem(text, message):
    with pytest.raises(ArgumentError, match=None) as info:
        parse(text)
    assert message in str(info.value)
    assert "hint:" in str(info.value)


def test_terms_are_ordered_as_r_and_star_expands():
    f = parse("y ~ a:b + c + a*b - b")
    assert [":".join(t) for t in f.terms] == ["c", "a", "a:b"]
    assert parse("y ~ 0 + a").intercept is False and parse("y ~ a - 1").intercept is False


def test_data_errors(designs):
    frame = designs["strat"].frame
    with pytest.raises(ArgumentError, match="column 'elll' is not in the data"):
        model_matrix("api00 ~ elll", frame)
    with pytest.raises(ArgumentError, match="reference level 'X' of 'stype' is not among its levels"):
        model_matrix("api00 ~ C(stype, ref = X)", frame)
    with pytest.raises(DataError, match="has 3 levels"):
        glm(designs["strat"], "stype ~ ell", "quasibinomial")
    with pytest.raises(DataError, match=r"must lie in \[0, 1\]"):
        glm(designs["strat"], "api00 ~ ell", "quasibinomial")
    with pytest.raises(ArgumentError, match="family: expected one of"):
        glm(designs["strat"], "api00 ~ ell", "logistic")


def test_aliased_columns_are_named(designs):
    d = designs["strat"]
    frame = d.frame.with_columns((pl.col("ell") * 2 + 1).alias("ell2"))
    with pytest.raises(DataError, match="'ell2' of 'api00 ~ ell \\+ ell2 \\+ meals' is a combination"):
        glm(d.with_frame(frame), "api00 ~ ell + ell2 + meals")


def test_reference_level_and_interaction_names(designs):
    frame = designs["strat"].frame
    assert model_matrix("api00 ~ stype * ell", frame).columns == (
        "(Intercept)", "stypeH", "stypeM", "ell", "stypeH:ell", "stypeM:ell")
    assert model_matrix("api00 ~ C(stype, ref = 'M') + ell", frame).columns == ("(Intercept)", "stypeE", "stypeH", "ell")
    # a factor inside an interaction without its main effect takes every level (R's rule)
    assert model_matrix("api00 ~ stype:ell", frame).columns == ("(Intercept)", "stypeE:ell", "stypeH:ell", "stypeM:ell")
    assert model_matrix("api00 ~ stype + sch.wide - 1", frame).columns == ("stypeE", "stypeH", "stypeM", "sch.wideYes")
    mm = model_matrix("api00 ~ stype + ell", frame, refs={"stype": "H"}, labels={"stype": {"E": "Elementary"}})
    assert mm.columns[1:3] == ("stypeE", "stypeM") and mm.labels[1] == "stype: Elementary"


def test_reference_level_changes_coefficients_not_the_fit(designs):
    d = designs["clus1"]
    a = glm(d, "api00 ~ stype + ell")
    b = glm(d, "api00 ~ stype + ell", refs={"stype": "M"})
    # intercept of b = intercept of a + stypeM of a; stypeE of b = -stypeM of a
    assert np.isclose(b.coef[0], a.coef[0] + a.coef[2], rtol=1e-10)
    assert np.isclose(b.coef[1], -a.coef[2], rtol=1e-10)
    assert np.isclose(b.se[3], a.se[3], rtol=1e-9)  # the slope and its SE do not depend on it


def test_na_omit_keeps_the_design(clus2):
    fit = glm(clus2, "api00 ~ enroll + meals")
    assert fit.n == 120  # 6 missing enroll
    # same as the domain of complete rows of the whole design ...
    complete = clus2.frame.get_column("enroll").is_not_null().to_numpy()
    dom = glm(clus2.subset(complete), "api00 ~ enroll + meals")
    np.testing.assert_allclose(fit.vcov, dom.vcov, rtol=1e-12)
    # ... but not as a design rebuilt from the complete rows (second-stage sample sizes change)
    rebuilt = Design.from_frame(clus2.frame.filter(pl.Series(complete)), ids=["dnum", "snum"], fpc=["fpc1", "fpc2"])
    again = glm(rebuilt, "api00 ~ enroll + meals")
    np.testing.assert_allclose(again.coef, fit.coef, rtol=1e-10)
    assert not np.allclose(again.se, fit.se, rtol=1e-6)


def test_subset_is_a_domain(designs):
    d = designs["strat"]
    mask = (d.frame.get_column("stype") != "H").to_numpy()
    fit = glm(d, "api00 ~ ell + meals", subset=mask)
    assert fit.n == int(mask.sum())
    same = glm(d.subset(mask), "api00 ~ ell + meals")
    np.testing.assert_allclose(fit.vcov, same.vcov, rtol=1e-12)
    assert fit.df_resid == d.domain_degf(mask) + 1 - 3


def test_table_exponentiate(designs):
    fit = glm(designs["clus1"], "sch.wide ~ ell + meals", "quasibinomial")
    raw, exp = fit.table(), fit.table(conf_level=0.9, exponentiate=True)
    assert raw.columns == ["term", "label", "estimate", "se", "statistic", "p_value", "ci_low", "ci_high", "df"]
    np.testing.assert_allclose(exp["estimate"].to_numpy(), np.exp(raw["estimate"].to_numpy()), rtol=1e-14)
    from scipy import stats

    q = stats.t.ppf(0.95, fit.df_resid)
    np.testing.assert_allclose(exp["ci_low"].to_numpy(), np.exp(fit.coef - q * fit.se), rtol=1e-12)
    assert (exp["ci_low"] < exp["estimate"]).all() and (exp["estimate"] < exp["ci_high"]).all()


def test_coefficients_agree_with_statsmodels(designs):
    import statsmodels.api as sm

    d = designs["strat"]
    fit = glm(d, "sch.wide ~ ell + meals + stype", "quasibinomial")
    mm = fit.matrix
    ref = sm.GLM(mm.y, mm.x, family=sm.families.Binomial(), var_weights=d.weights).fit(tol=1e-14)
    np.testing.assert_allclose(fit.coef, ref.params, rtol=1e-7)


def test_margins_match_r_svypredmeans(designs):
    """Provenance: tests/reference/margins.R (R 4.2.2, survey 4.1-1, ``svypredmeans``)."""
    expected = pl.read_csv(REFERENCE, schema_overrides={"level": pl.String})
    checked = 0
    for (case,), rows in expected.group_by(["case"], maintain_order=True):
        r0 = rows.row(0, named=True)
        cat = ("race", "RIAGENDR") if r0["design"] == "nhanes" else ()
        fit = glm(designs[r0["design"]], r0["formula"], r0["family"], categorical=cat)
        got = fit.margins(r0["variable"]).sort("level")
        assert got["level"].to_list() == rows["level"].to_list(), case
        np.testing.assert_allclose(got["estimate"].to_numpy(), rows["estimate"].to_numpy(), rtol=1e-8, err_msg=case)
        np.testing.assert_allclose(got["se"].to_numpy(), rows["se"].to_numpy(), rtol=1e-7, err_msg=case)
        checked += len(rows)
    assert checked == 16


def test_margins_needs_a_factor(designs):
    fit = glm(designs["strat"], "api00 ~ ell + stype")
    with pytest.raises(ArgumentError, match="'ell' is not a categorical term"):
        fit.margins("ell")


def test_statsmodels_is_not_imported_by_the_package():
    code = "import sys, pipeline.cli, pipeline.survey, pipeline.survey.models; print('statsmodels' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


#: the subset column of models_expected.csv -> the domain as a polars expression
_SUBSETS = {"stype != 'H'": pl.col("stype") != "H", "stype == 'E'": pl.col("stype") == "E",
            "awards == 'Yes'": pl.col("awards") == "Yes"}


def test_domains_lonely_psu_refs_and_interactions_match_r(designs):
    """Provenance: tests/reference/models.R (R 4.2.2, survey 4.1-1, ``svyglm``)."""
    from pipeline.errors import DesignError

    expected = pl.read_csv(MODELS_REFERENCE)
    checked = 0
    for (case,), rows in expected.group_by(["case"], maintain_order=True):
        r0 = rows.row(0, named=True)
        d = designs[r0["design"]].with_lonely_psu(r0["lonely_psu"])
        mask = None if not r0["subset"] else d.frame.select(_SUBSETS[r0["subset"]]).to_series().to_numpy()
        cat = ("race",) if r0["design"] == "nhanes_lonely" else ()
        fit = glm(d, r0["formula"], r0["family"], subset=mask, categorical=cat)
        # R names relevel(stype, "M") levels stypeME, stypeMH; terms are compared in order
        assert len(fit.terms) == rows.height, case
        if not case.startswith("ref:"):
            assert list(fit.terms) == rows["term"].to_list(), case
        np.testing.assert_allclose(fit.coef, rows["estimate"].to_numpy(), rtol=1e-8, atol=1e-12, err_msg=case)
        np.testing.assert_allclose(fit.se, rows["se"].to_numpy(), rtol=1e-8, err_msg=case)
        assert fit.df_resid == r0["df_resid"] and fit.n == r0["n"], case
        np.testing.assert_allclose(fit.dispersion, r0["dispersion"], rtol=1e-8, err_msg=case)
        checked += rows.height
    assert checked == 51
    with pytest.raises(DesignError, match="has only one PSU"):
        glm(designs["nhanes_lonely"], "HI_CHOL ~ race + agecat", "quasibinomial", categorical=("race",))

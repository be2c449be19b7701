"""Issue 13, item 3: ``models:`` from the config through the estimate stage into ``models.csv``,
``estimate/model_tests.csv`` and the model tables, checked against R.

Reference values: R ``survey`` 4.1-1 ``svyglm`` and ``regTermTest``, read from
``../shared/conformance/expected/glm.csv`` and ``glm_tests.csv`` (its README: ``strat`` is
``svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat)``, ``nhanes``
``svydesign(id = ~SDMVPSU, strata = ~SDMVSTRA, weights = ~WTMEC2YR, nest = TRUE, data =
nhanes)``); the cases are those of the conformance file, asked for through the config: the
response and terms (``response``/``terms`` or ``formula``), the family (``linear``: gaussian,
``logistic``: quasibinomial, ``poisson``: quasipoisson), a binary response through ``levels``.
Tolerance: the conformance README's for svyglm (1e-8 relative; R's IRLS stops at 1e-8).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from csvstudy import conformance_data
from csvstudy import csv_project as _project
from pipeline.cli import main

EXPECTED = (Path(__file__).parents[2] / ".." / "shared" / "conformance" / "expected").resolve()
RTOL = 1e-8

STRAT = """\
study: strat
waves:
  - id: "1"
    raw: RAW
design:
  weights: pw
  strata: [stype]
  fpc: [fpc]
export:
  formats: [csv, markdown, xlsx, html]
tables:
  toplines: []
models:
  - {id: ols_api, response: api00, terms: [ell, meals, mobility], title: API score}
  - {id: ols_stype, formula: "api00 ~ stype * ell"}
  - {id: logit_schwide, response: sch.wide, levels: ["Yes"], terms: [ell, meals, stype], family: logistic, title: School-wide target met}
  - {id: poisson_enroll, response: enroll, terms: [stype, meals], family: poisson}
"""

NHANES = """\
study: nhanes
waves:
  - id: "1"
    raw: RAW
design:
  weights: WTMEC2YR
  strata: [SDMVSTRA]
  ids: [SDMVPSU]
  nest: true
export:
  formats: [csv, markdown]
tables:
  toplines: []
models:
  - {id: logit_chol, formula: "HI_CHOL ~ C(race) + agecat + C(RIAGENDR)", levels: [1], family: logistic}
"""


def _run(tmp_path, data: str, config: str, name: str) -> Path:
    cfg = _project(tmp_path, conformance_data(data), config, name)
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    return tmp_path / "outputs" / name / "1"


def _check(out: Path, design: str, models: list[str]) -> int:
    got = pl.read_csv(out / "models.csv", infer_schema_length=None)
    ref = pl.read_csv(EXPECTED / "glm.csv", infer_schema_length=None).filter(pl.col("design") == design)
    checked = 0
    for model in models:
        want = ref.filter(pl.col("model") == model)
        ours = got.filter(pl.col("model_id") == model)
        assert ours.height == want.height > 0, model
        for r in want.iter_rows(named=True):
            g = ours.filter(pl.col("term") == r["term"]).row(0, named=True)
            for ours_col, theirs in (("estimate", "estimate"), ("se", "se"), ("statistic", "statistic"), ("p_value", "p_value"), ("dispersion", "dispersion")):
                assert g[ours_col] == pytest.approx(r[theirs], rel=RTOL), (model, r["term"], ours_col)
            assert (g["df"], g["n"]) == (r["df_resid"], r["n"]), (model, r["term"])
            checked += 1
    tests = pl.read_csv(out / "estimate" / "model_tests.csv", infer_schema_length=None)
    for r in pl.read_csv(EXPECTED / "glm_tests.csv").filter((pl.col("design") == design) & pl.col("model").is_in(models)).iter_rows(named=True):
        terms = r["test_terms"].replace("~", "").strip()
        if "+" in terms:
            continue  # the stage tests each term alone; joint tests are the engine's (tests/conformance)
        g = tests.filter((pl.col("model_id") == r["model"]) & (pl.col("term") == terms)).row(0, named=True)
        assert g["statistic"] == pytest.approx(r["statistic"], rel=RTOL) and g["p_value"] == pytest.approx(r["p_value"], rel=RTOL)
        assert (g["df"], g["ddf"]) == (r["df"], r["ddf"])
    return checked


def test_models_from_the_config_match_r_svyglm_on_strat(tmp_path):
    out = _run(tmp_path, "apistrat.csv", STRAT, "strat")
    assert _check(out, "strat", ["ols_api", "ols_stype", "logit_schwide", "poisson_enroll"]) == 19
    rows = pl.read_csv(out / "models.csv", infer_schema_length=None)
    logit = rows.filter((pl.col("model_id") == "logit_schwide") & (pl.col("term") == "stypeH")).row(0, named=True)
    assert (logit["variable"], logit["level"], logit["reference"], logit["ratio_name"]) == ("stype", "H", "E", "odds ratio")
    assert logit["ratio"] == pytest.approx(2.718281828459045 ** logit["estimate"], rel=1e-12)
    ols = rows.filter((pl.col("model_id") == "ols_api") & (pl.col("term") == "ell")).row(0, named=True)
    assert ols["ratio"] is None and ols["ci_low"] < ols["estimate"] < ols["ci_high"]


def test_a_logistic_model_with_factors_matches_r_on_nhanes(tmp_path):
    """HI_CHOL has 745 missing values: the rows leave the model (n = 7846), not the design."""
    out = _run(tmp_path, "nhanes.csv", NHANES, "nhanes")
    assert _check(out, "nhanes", ["logit_chol"]) == 8


def test_the_model_table_in_every_format(tmp_path):
    out = _run(tmp_path, "apistrat.csv", STRAT, "strat")
    md = (out / "tables" / "logit_schwide.md").read_text(encoding="utf-8")
    rows = pl.read_csv(out / "models.csv", infer_schema_length=None).filter(pl.col("model_id") == "logit_schwide")
    h = rows.filter(pl.col("term") == "stypeH").row(0, named=True)
    assert f"|   H | {h['ratio']:.2f}{'*' if h['p_value'] < 0.05 else ''} | {h['ratio_ci_low']:.2f}–{h['ratio_ci_high']:.2f} |" in md
    assert "|   E (reference) | 1.00 | – |" in md and "| Odds ratio |" in md and "Wald F =" in md
    ols = (out / "tables" / "ols_api.md").read_text(encoding="utf-8")
    ell = pl.read_csv(out / "models.csv").filter((pl.col("model_id") == "ols_api") & (pl.col("term") == "ell")).row(0, named=True)
    assert f"| ell | {ell['estimate']:.2f}" in ols and "| Coefficient |" in ols and "| Intercept |" in ols
    for ext in ("html", "csv"):
        assert (out / "tables" / f"logit_schwide.{ext}").is_file()
    import openpyxl

    assert "logit_schwide" in openpyxl.load_workbook(out / "tables" / "tables.xlsx").sheetnames


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{id: m, response: api00, terms: [ell, nosuch]}", "models[0] (m): nosuch is not in the weighted data"),
        ("{id: m, response: sch.wide, terms: [ell], family: logistic}", "a logistic model needs levels"),
        ("{id: m, formula: \"api00 ~ ell\", terms: [meals]}", "terms applies with response"),
        ("{id: m, response: api00}", "needs terms"),
        ("{id: m, response: api00, terms: [ell], reference: {stype: H}}", "models[0] (m).reference: stype is not a term"),
        ("{id: m, formula: \"api00 ~ ell +\"}", "models[0] (m).formula"),
        ("{id: m, response: api00, terms: [ell], exponentiate: true}", "exponentiate applies to logistic and poisson"),
    ],
)
def test_a_bad_model_is_a_config_error(tmp_path, capsys, entry, message):
    config = STRAT.split("models:")[0] + f"models:\n  - {entry}\n"
    cfg = _project(tmp_path, conformance_data("apistrat.csv"), config, "strat")
    code = main(["validate", str(cfg)])
    if code == 0:  # a data-dependent problem: found when the estimate stage fits the model
        code = main(["run", str(cfg), "--quiet"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_predictive_margins_match_r_svypredmeans(tmp_path):
    """``estimate/model_margins.csv``: R ``svypredmeans(svyglm(sch.wide ~ ell + meals, strat),
    ~stype)`` (the model refitted with stype: the config's logit_schwide), from
    ``tests/reference/margins.R`` (case ``logit_stype:strat``); the model table shows them as percents."""
    out = _run(tmp_path, "apistrat.csv", STRAT, "strat")
    got = pl.read_csv(out / "estimate" / "model_margins.csv", infer_schema_length=None, schema_overrides={"level": pl.String})
    ref = pl.read_csv(Path(__file__).parents[1] / "reference" / "margins_expected.csv").filter(pl.col("case") == "logit_stype:strat")
    assert ref.height == 3
    for r in ref.iter_rows(named=True):
        g = got.filter((pl.col("model_id") == "logit_schwide") & (pl.col("variable") == r["variable"]) & (pl.col("level") == r["level"])).row(0, named=True)
        assert g["estimate"] == pytest.approx(r["estimate"], rel=RTOL) and g["se"] == pytest.approx(r["se"], rel=1e-6), r
        assert g["ci_low"] < g["estimate"] < g["ci_high"]
    md = (out / "tables" / "logit_schwide.md").read_text(encoding="utf-8")
    e = got.filter((pl.col("model_id") == "logit_schwide") & (pl.col("level") == "E")).row(0, named=True)
    assert "| Predicted % |" in md and f"|   E (reference) | 1.00 | – |  | {100 * e['estimate']:.0f}% |" in md

"""Propensity-model nonresponse adjustment in the weight stage (issue 13, item 4).

``weight.nonresponse.method: propensity_classes`` and ``inverse_propensity``: the weighted
logistic regression of the respondent indicator on ``weight.nonresponse.model``, its classes or
its capped inverse, the replicates' refit, and the CLI on a delivery that keeps its eligible
nonrespondents (``simulate_delivery(nonrespondents=True)``).

Reference values: R 4.x with ``survey`` 4.1-1, ``tests/reference/propensity.R`` (glm with
quasibinomial family, checked against svyglm; ``svyquantile(qrule = "math")`` cut points), on
``tests/reference/propensity_input.csv`` (``tests/reference/propensity_input.py``), written to
``tests/reference/propensity_expected.csv``. The CLI tests check the stage's files against an
independent recomputation here (a plain numpy IRLS fit, the cut points, the class totals).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from pipeline.cli import main
from pipeline.config import NonresponseConfig, WeightConfig
from pipeline.errors import CalibrationError, DataError
from pipeline.stages.weight import propensity_adjustment, weight
from pipeline.survey.propensity import fit_propensity, inverse_propensity, model_matrix, propensity_classes, propensity_replicates

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "tests" / "reference"
RTOL = 1e-7

MODELS = {
    "classes": (["COUNTY", "FRAME", "SEXAGE"], ["COUNTY", "FRAME", "SEXAGE"]),
    "mixed": (["COUNTY", "FRAME", "SEX", "AGE"], ["COUNTY", "FRAME", "SEX"]),
}


def _input() -> pl.DataFrame:
    d = pl.read_csv(REF / "propensity_input.csv")
    return d.with_columns(SEX=pl.when(pl.col("SEXAGE") <= 4).then(1).otherwise(2))


def _expected(model: str) -> dict[tuple[str, str], float]:
    e = pl.read_csv(REF / "propensity_expected.csv").filter(pl.col("model") == model)
    return {(q, n): v for q, n, v in e.select("quantity", "name", "value").iter_rows()}


def _fit(model: str):
    d = _input()
    terms, cats = MODELS[model]
    x, names = model_matrix(d, terms, cats)
    resp = d.get_column("resp").to_numpy() == 1
    w = d.get_column("w_base").to_numpy()
    return fit_propensity(x, names, resp, w), x, resp, w


# ------------------------------------------------------------------------------ against R


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_weighted_logistic_fit_matches_r_glm_and_svyglm(model):
    fit, _, _, _ = _fit(model)
    ref = _expected(model)
    names = [n for (q, n) in ref if q == "coefficient"]
    assert fit.names == names  # R's model.matrix names: (Intercept), COUNTY2, ..., AGE
    assert fit.converged
    for name, b in zip(fit.names, fit.coefficients):
        assert b == pytest.approx(ref[("coefficient", name)], rel=RTOL, abs=1e-9), name
    assert fit.p.sum() == pytest.approx(ref[("inverse", "p_sum")], rel=1e-9)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_propensity_quintiles_and_their_factors_match_r(model):
    fit, _, resp, w = _fit(model)
    ref = _expected(model)
    adj = propensity_classes(fit, resp, w, n_classes=5, min_respondents=1, max_factor=None)
    assert adj.probabilities == (0.2, 0.4, 0.6, 0.8)
    assert list(adj.cuts) == pytest.approx([ref[("cut", str(k))] for k in range(1, 5)], rel=1e-9)
    assert len(adj.classes) == 5 and adj.collapses == []
    for k, c in enumerate(adj.classes, start=1):
        assert c["units"] == ref[("class_units", str(k))]
        assert c["respondents"] == ref[("class_respondents", str(k))]
        assert c["factor"] == pytest.approx(ref[("class_factor", str(k))], rel=1e-9)
        assert c["response_rate"] == pytest.approx(1 / c["factor"], rel=1e-12)
    # the respondents carry each class's base weight
    adjusted = w * adj.factor
    for k in range(5):
        rows = adj.class_index == k
        assert adjusted[rows].sum() == pytest.approx(w[rows].sum(), rel=1e-12)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_capped_inverse_propensity_matches_r(model):
    fit, _, resp, w = _fit(model)
    ref = _expected(model)
    adj = inverse_propensity(fit, resp, w, max_factor=4.0)
    s = adj.summary
    assert s["capped"] == ref[("inverse", "capped")] and s["capped"] > 0
    assert s["scale"] == pytest.approx(ref[("inverse", "scale")], rel=1e-9)
    assert s["min"] == pytest.approx(ref[("inverse", "min")], rel=1e-9)
    assert s["max"] == pytest.approx(ref[("inverse", "max")], rel=1e-9)
    assert (w * adj.factor).sum() == pytest.approx(ref[("inverse", "sum_w_factor")], rel=1e-12)
    assert (w * adj.factor).sum() == pytest.approx(w.sum(), rel=1e-12)
    assert (adj.factor[~resp] == 0).all()


# ------------------------------------------------------------------------------ the engine


def test_merged_classes_and_tied_cut_points():
    fit, _, resp, w = _fit("classes")
    adj = propensity_classes(fit, resp, w, n_classes=5, min_respondents=85, max_factor=None)
    # classes 1-4 have 80, 82, 54, 84 respondents: 1 joins 2, then 3 joins 4
    assert [c["class"] for c in adj.classes] == ["1 + 2", "3 + 4", "5"]
    assert adj.probabilities == (0.4, 0.8)
    assert adj.collapses[0] == {"class": "class 1", "into": "class 2", "reason": "80 respondent(s), fewer than min_respondents = 85"}
    # a model with one term of two values: at most two distinct propensities, so one cut is kept
    d = _input()
    x, names = model_matrix(d, ["FRAME"], ["FRAME"])
    two = fit_propensity(x, names, resp, w)
    adj = propensity_classes(two, resp, w, n_classes=5, min_respondents=1, max_factor=None)
    assert len(adj.classes) == 2 and len(adj.cuts) == 1


def test_replicates_refit_the_model():
    fit, x, resp, w = _fit("classes")
    adj = propensity_classes(fit, resp, w, n_classes=5, min_respondents=1, max_factor=None)
    same, lost = propensity_replicates(np.column_stack([w, w]), x, adj)
    assert lost == 0
    np.testing.assert_allclose(same[:, 0], (w * adj.factor)[resp], rtol=1e-10)
    rng = np.random.default_rng(3)
    reps = w[:, None] * rng.integers(0, 3, size=(w.shape[0], 4))
    out, lost = propensity_replicates(reps, x, adj)
    assert lost == 0
    np.testing.assert_allclose(out.sum(axis=0), reps.sum(axis=0), rtol=1e-10)  # each replicate's total carried
    fixed = (reps * adj.factor[:, None])[resp]
    assert not np.allclose(out, fixed)  # the factors were redone, not the full sample's reused
    inv = inverse_propensity(fit, resp, w, max_factor=4.0)
    out, _ = propensity_replicates(reps, x, inv)
    np.testing.assert_allclose(out.sum(axis=0), reps.sum(axis=0), rtol=1e-10)


def test_a_category_where_everyone_responded_is_an_error():
    d = _input().with_columns(G=pl.when(pl.col("resp") == 1).then(pl.col("RESPID") % 2).otherwise(0))
    cfg = NonresponseConfig(respondent="resp = 1", method="propensity_classes", model=["COUNTY", "G"])
    with pytest.raises(DataError) as info:
        propensity_adjustment(d, d.get_column("w_base").to_numpy(), cfg, categorical=["COUNTY", "G"])
    assert info.value.message.startswith("weight.nonresponse.model: the propensity model separates the respondents: ")


def test_a_constant_term_is_an_error():
    d = _input().with_columns(K=pl.lit(1))
    cfg = NonresponseConfig(respondent="resp = 1", method="inverse_propensity", model=["COUNTY", "AGE", "K"])
    with pytest.raises(DataError) as info:
        propensity_adjustment(d, d.get_column("w_base").to_numpy(), cfg, categorical=["COUNTY"])
    assert "weight.nonresponse.model: the propensity model's matrix has rank 5 for 6 columns: K is constant" in info.value.message


def test_a_missing_model_term_is_an_error():
    d = _input().with_columns(AGE=pl.when(pl.col("RESPID") == 100563).then(None).otherwise(pl.col("AGE")))
    cfg = NonresponseConfig(respondent="resp = 1", method="inverse_propensity", model=["COUNTY", "AGE"])
    with pytest.raises(DataError) as info:
        propensity_adjustment(d, d.get_column("w_base").to_numpy(), cfg)
    assert info.value.message.startswith("weight.nonresponse.model: AGE is missing on 1 row(s)")


def test_rules_that_cannot_be_met_name_the_keys():
    d = _input()
    cfg = WeightConfig.model_validate({"nonresponse": {"respondent": "resp = 1", "method": "propensity_classes", "model": ["COUNTY"], "max_factor": 2}})
    with pytest.raises(CalibrationError) as info:
        weight(d, None, cfg, categorical=["COUNTY"])
    assert info.value.message.startswith("weight.nonresponse: even a single class of all rows breaks the rules")
    assert "weight.nonresponse.max_factor" in info.value.hint


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"model": ["COUNTY"], "classes": ["COUNTY"]},
         "model (COUNTY) is for method: propensity_classes or inverse_propensity, not classes"),
        ({"method": "propensity_classes", "classes": ["COUNTY", "FRAME"]},
         "classes (COUNTY, FRAME) is for method: classes, not propensity_classes; give the propensity model's terms as model: [COUNTY, FRAME]"),
        ({"method": "inverse_propensity"}, "method: inverse_propensity needs model, the propensity model's terms, e.g. model: [COUNTY, FRAME]"),
        ({"method": "inverse_propensity", "model": ["COUNTY"], "n_classes": 4},
         "n_classes (4) is for method: propensity_classes; leave it out with method: inverse_propensity"),
        ({}, "method: classes needs classes, e.g. classes: [COUNTY, FRAME]"),
        ({"classes": ["COUNTY"], "n_classes": 4}, "n_classes (4) is for method: propensity_classes; leave it out with method: classes"),
    ],
)
def test_keys_that_do_not_go_with_the_method_are_refused(tmp_path, capsys, section, message):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.csv").write_text("COUNTY,STATUS\n1,1\n2,3\n")
    cfg = tmp_path / "study.yaml"
    nonresponse = {"respondent": "STATUS = 1", **section}
    cfg.write_text(yaml.safe_dump({"study": "s", "waves": [{"id": "w1", "raw": "raw/x.csv"}], "weight": {"nonresponse": nonresponse}}))
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"weight.nonresponse: {message}" in err


# ------------------------------------------------------------------------------ the CLI


MODEL = ["COUNTY", "FRAME", "nr_sex_age", "nr_phone"]


@pytest.fixture(scope="module")
def delivery(tmp_path_factory) -> Path:
    """A 2012 delivery of 600 completes that keeps its eligible nonrespondents (STATUS = 3)."""
    from pipeline.simulate import simulate_delivery, write_delivery

    out = tmp_path_factory.mktemp("nr_delivery")
    write_delivery(simulate_delivery(wave="2012", seed=20121121, n=600, nonrespondents=True), out / "raw")
    return out / "raw"


def _project(tmp_path: Path, delivery: Path, nonresponse: dict, design: dict | None = None) -> Path:
    """The demo's config on the delivery with nonrespondents: the break-offs still dropped, the
    completes (STATUS = 1) and the eligible nonrespondents (STATUS = 3) kept, one more derived
    variables for the propensity model (sex by age group, an unknown age as 30-44; telephone status,
    an unknown one as both)."""
    shutil.copytree(delivery, tmp_path / "raw")
    cfg = yaml.safe_load((ROOT / "configs" / "insecure_communities.yaml").read_text())
    cfg["waves"] = [dict(cfg["waves"][0], raw="../raw/insecure_communities_2012.sav", targets="../raw/targets/latino_adults_2012.csv")]
    cfg["clean"]["drop_partials"] = {"variable": "STATUS", "complete": [1, 3]}
    cfg["clean"]["derive"].append({
        "name": "nr_sex_age", "label": "Sex by age group, an unknown age as 30-44 (propensity model)",
        "expr": "COALESCE(rk_sex_age, CASE WHEN SEX = 1 THEN 2 ELSE 6 END)",
        "value_labels": {1: "Male 18-29", 2: "Male 30-44", 3: "Male 45-64", 4: "Male 65+",
                         5: "Female 18-29", 6: "Female 30-44", 7: "Female 45-64", 8: "Female 65+"},
    })
    cfg["clean"]["derive"].append({
        "name": "nr_phone", "label": "Telephone status, an unknown one as both (propensity model)",
        "expr": "COALESCE(rk_phone, 3)", "value_labels": {1: "Cell only", 2: "Landline only", 3: "Both"},
    })
    cfg["weight"]["nonresponse"] = {"respondent": "STATUS = 1", **nonresponse}
    cfg["weight"]["qa"] = {"max_kish_deff": 10, "max_margin_error": 0.005}
    if design is not None:
        cfg["design"].update(design)
    path = tmp_path / "configs" / "study.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _irls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A plain weighted logistic IRLS, independent of statsmodels."""
    b = np.zeros(x.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-x @ b))
        step = np.linalg.solve(x.T @ (x * (w * p * (1 - p))[:, None]), x.T @ (w * (y - p)))
        b += step
        if np.abs(step).max() < 1e-13:
            break
    return b


def _run(cfg: Path):
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = cfg.parent.parent / "outputs" / "insecure_communities" / "2012"
    clean = pl.read_parquet(out / "clean" / "data.parquet")
    qa = json.loads((out / "weight" / "qa.json").read_text())
    return out, clean, qa


def _model_check(clean: pl.DataFrame, qa: dict) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The eligible sample and the model's terms in qa.json; returns the model matrix, its names, resp."""
    resp = (clean.get_column("STATUS") == 1).to_numpy()
    assert set(clean.get_column("STATUS").unique()) == {1, 3}
    x, names = model_matrix(clean, MODEL, MODEL)
    m = qa["nonresponse"]["model"]
    assert [c["term"] for c in m["coefficients"]] == names
    assert m["terms"] == MODEL and m["categorical"] == MODEL and m["n"] == clean.height
    return x, names, resp


def test_cli_propensity_classes_on_a_delivery_with_nonrespondents(tmp_path, delivery):
    cfg = _project(tmp_path, delivery, {"method": "propensity_classes", "model": MODEL, "max_factor": 10})
    out, clean, qa = _run(cfg)
    x, names, resp = _model_check(clean, qa)
    data = pl.read_parquet(out / "weight" / "data.parquet")
    nonresp = pl.read_parquet(out / "weight" / "nonrespondents.parquet")
    assert data.height == int(resp.sum()) and nonresp.height == int((~resp).sum())
    assert nonresp.columns == ["raw_row", *MODEL, "nonresponse_class", "propensity", "w_base"]
    # w_base of every unit, in clean's order
    w = np.empty(clean.height)
    order = {r: i for i, r in enumerate(clean.get_column("raw_row").to_list())}
    for frame in (data, nonresp):
        for r, wb in zip(frame.get_column("raw_row").to_list(), frame.get_column("w_base").to_list()):
            w[order[r]] = wb
    b = _irls(x, resp.astype(float), w / w.mean())
    nr = qa["nonresponse"]
    got = np.array([c["estimate"] for c in nr["model"]["coefficients"]])
    np.testing.assert_allclose(got, b, rtol=1e-7, atol=1e-9)
    p = 1 / (1 + np.exp(-x @ b))
    np.testing.assert_allclose(nonresp.get_column("propensity").to_numpy(), p[~resp], rtol=1e-8)
    # the classes: cut points at the weighted quintiles of p, the units and the factors
    cuts = [c["propensity"] for c in nr["cuts"]]
    assert [c["probability"] for c in nr["cuts"]] == pytest.approx([0.2, 0.4, 0.6, 0.8]) and nr["collapses"] == []
    # a cut point is a unit's propensity (qrule math): that unit and its ties belong below it; the
    # refit here differs from the stage's in the last digits, hence the nudge
    cls = np.searchsorted(np.asarray(cuts) * (1 + 1e-9), p, side="left")
    assert len(nr["classes"]) == len(cuts) + 1
    np.testing.assert_array_equal(nonresp.get_column("nonresponse_class").to_numpy(), cls[~resp] + 1)
    for k, c in enumerate(nr["classes"]):
        rows = cls == k
        assert (c["units"], c["respondents"]) == (int(rows.sum()), int((rows & resp).sum()))
        # the weighted respondents' total equals the eligible sample's in the class
        assert w[rows & resp].sum() * c["factor"] == pytest.approx(w[rows].sum(), rel=1e-9)
        assert c["response_rate"] == pytest.approx(w[rows & resp].sum() / w[rows].sum(), rel=1e-9)
        assert 1 < c["factor"] <= 10
    assert [c["factor"] for c in nr["classes"]] == sorted((c["factor"] for c in nr["classes"]), reverse=True)  # p up, factor down
    weighted = qa["steps"][1]
    assert weighted["step"] == "nonresponse" and weighted["sum"] == pytest.approx(w.sum(), rel=1e-9)
    text = (out / "weight" / "qa.md").read_text()
    assert "## Nonresponse adjustment" in text
    assert "Method: propensity classes. Response propensity: logistic regression of the respondent indicator on COUNTY (categorical)" in text
    assert "| class | propensity | units | respondents | nonrespondents | weighted response rate | factor |" in text
    assert f"| nr_sex_age8 | {got[names.index('nr_sex_age8')]:.6f} |" in text


def test_cli_inverse_propensity_with_a_cap(tmp_path, delivery):
    cfg = _project(tmp_path, delivery, {"method": "inverse_propensity", "model": MODEL, "max_factor": 5})
    out, clean, qa = _run(cfg)
    x, _, resp = _model_check(clean, qa)
    data = pl.read_parquet(out / "weight" / "data.parquet")
    nonresp = pl.read_parquet(out / "weight" / "nonrespondents.parquet")
    assert "nonresponse_class" not in nonresp.columns
    w_all = data.get_column("w_base").sum() + nonresp.get_column("w_base").sum()
    nr = qa["nonresponse"]
    b = np.array([c["estimate"] for c in nr["model"]["coefficients"]])
    p_resp = 1 / (1 + np.exp(-x[resp] @ b))
    # respondents in clean's order are data.parquet's rows
    assert data.get_column("raw_row").to_list() == clean.filter(pl.Series(resp)).get_column("raw_row").to_list()
    raw = 1 / p_resp
    capped = raw > 5
    f = nr["factors"]
    assert f["capped"] == int(capped.sum()) > 0 and f["cap"] == 5
    factors = np.minimum(raw, 5) * f["scale"]
    wb = data.get_column("w_base").to_numpy()
    assert (wb * factors).sum() == pytest.approx(w_all, rel=1e-9)  # the sample's total, carried
    assert (f["min"], f["max"]) == pytest.approx((factors.min(), factors.max()), rel=1e-9)
    assert f["median"] == pytest.approx(float(np.median(factors)), rel=1e-9)
    assert qa["steps"][1]["sum"] == pytest.approx(w_all, rel=1e-9)
    text = (out / "weight" / "qa.md").read_text()
    assert "Method: inverse propensity." in text
    assert f"Inverse-propensity factors: 1 / p capped at max_factor = 5 ({f['capped']} respondent(s) capped)" in text
    assert "| min | 25% | median | 75% | max | capped |" in text


def test_cli_replicates_refit_the_propensity_model(tmp_path, delivery):
    cfg = _project(
        tmp_path, delivery, {"method": "propensity_classes", "model": MODEL, "max_factor": 10},
        design={"variance": "replicate", "replicates": {"build": "bootstrap", "replicates": 10, "seed": 7}},
    )
    out, _, qa = _run(cfg)
    meta = json.loads((out / "weight" / "replicates.json").read_text())
    assert meta["steps"][0] == "nonresponse" and meta["n_replicates"] == 10
    reps = pl.read_parquet(out / "weight" / "replicates.parquet")
    assert reps.height == pl.read_parquet(out / "weight" / "data.parquet").height
    assert qa["replicates"]["nonresponse_classes_without_respondents"] == 0
    assert not math.isnan(reps.get_column("rep_1").sum())


def test_validate_names_a_model_term_not_in_the_data(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.csv").write_text("COUNTY,FRAME,STATUS\n1,1,1\n2,2,3\n")
    cfg = tmp_path / "study.yaml"
    nonresponse = {"respondent": "STATUS = 1", "method": "propensity_classes", "model": ["COUNTY", "FRAMES"]}
    cfg.write_text(yaml.safe_dump({"study": "s", "waves": [{"id": "w1", "raw": "raw/x.csv"}], "weight": {"nonresponse": nonresponse}}))
    assert main(["validate", str(cfg)]) == 2
    assert "weight.nonresponse.model: FRAMES is not in the data; did you mean 'FRAME'?" in capsys.readouterr().err

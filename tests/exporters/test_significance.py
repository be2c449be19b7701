"""Significance letters between banner columns: the tests (pipeline.stages.estimate.compare_columns,
statistics in pipeline.survey.comparisons) and their letters (pipeline.exporters.significance)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.config import EstimateSpec
from pipeline.exporters.significance import letters_for
from pipeline.exporters.tables import prepare_estimates
from pipeline.io import Codebook, VariableInfo
from pipeline.stages.estimate import DomainCovariance, compare_columns
from pipeline.survey.design import Design
from pipeline.survey.comparisons import p_adjust as _adjust
from pipeline.survey.estimators import proportions

#: R p.adjust(c(0.01, 0.04, 0.03), method = "holm") and "bonferroni"
HOLM = [0.03, 0.06, 0.06]
BONFERRONI = [0.03, 0.12, 0.09]


def test_p_value_adjustments_as_r():
    assert _adjust([0.01, 0.04, 0.03], "holm") == pytest.approx(HOLM)
    assert _adjust([0.01, 0.04, 0.03], "bonferroni") == pytest.approx(BONFERRONI)
    assert _adjust([0.2], "holm") == [0.2]


def test_every_adjustment_matches_r_p_adjust():
    """R ``p.adjust`` on two families (tests/reference/p_adjust.R, its CSV p_adjust_expected.csv)."""
    from pathlib import Path

    from pipeline.config import SignificanceConfig
    from pipeline.survey.comparisons import P_ADJUST_METHODS

    ref = pl.read_csv(Path(__file__).parents[1] / "reference" / "p_adjust_expected.csv")
    methods = set(ref.get_column("method").to_list())
    assert methods == set(P_ADJUST_METHODS) - {"none"}
    assert set(SignificanceConfig.model_fields["adjust"].annotation.__args__) == set(P_ADJUST_METHODS)
    for (family, method), part in ref.group_by(["family", "method"], maintain_order=True):
        part = part.sort("position")
        got = _adjust(part.get_column("p_value").to_list(), method)
        assert got == pytest.approx(part.get_column("p_adjusted").to_list(), rel=1e-12, abs=1e-15), (family, method)


def test_independent_method_from_estimates_alone(estimates):
    cmp = compare_columns(estimates, ["q_agree"], [(), ("REGION",)], method="independent")
    assert cmp.height == 1  # North-South only: East is suppressed, the total is not compared
    r = cmp.row(0, named=True)
    assert (r["domain_a"], r["domain_b"]) == ("North", "South")
    assert r["difference"] == pytest.approx(0.3051 - 0.5549)
    assert r["se"] == pytest.approx(np.hypot(0.03, 0.03)) and r["df"] == 399
    assert r["significant"] and r["p_value"] < 1e-8
    assert letters_for(cmp, {("REGION", "North"): "A", ("REGION", "South"): "B"}) == {("q_agree", "Agree", "REGION", "South"): "A"}


def survey_frame(n: int = 600, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    stratum = rng.integers(1, 4, n)
    group = rng.integers(1, 4, n)
    p = np.array([0.3, 0.45, 0.6])[group - 1]
    y = np.where(rng.random(n) < p, 1, 2)
    w = rng.uniform(0.5, 3.0, n) * stratum
    return pl.DataFrame({"S": stratum, "G": group, "Y": y, "w": w})


def test_design_method_uses_the_covariance_of_the_domains():
    frame = survey_frame()
    codebook = Codebook(variables={
        "Y": VariableInfo("Y", label="Agree?", value_labels={1: "Yes", 2: "No"}),
        "G": VariableInfo("G", value_labels={1: "a", 2: "b", 3: "c"}),
    })
    design = Design.from_frame(frame, weights="w", strata=["S"])
    spec = EstimateSpec(id="yes", proportion="Y", levels=(1,), level_label="Yes", denominator="valid", by=((), ("G",)))
    res = proportions(design.with_frame(frame.with_columns((pl.col("Y") == 1).cast(pl.Int64).alias("yes"))), "yes", by=["G"], levels=[1], na_rm=True)
    est = prepare_estimates(pl.DataFrame({
        "estimate_id": ["yes"] * 3, "level": ["Yes"] * 3, "by": ["G"] * 3, "domain": ["a", "b", "c"],
        "n": res.n.tolist(), "estimate": res.estimate.tolist(), "se": res.se.tolist(), "df": res.df.astype(float).tolist(), "flag": [""] * 3,
    }))
    cmp = compare_columns(est, ["yes"], [("G",)], method="design", covariance=DomainCovariance(frame, codebook, design, [spec]))
    assert cmp.height == 3
    for r in cmp.iter_rows(named=True):
        expected = res.difference({"G": "abc".index(r["domain_a"]) + 1}, {"G": "abc".index(r["domain_b"]) + 1})
        assert r["difference"] == pytest.approx(float(expected.estimate[0]), rel=1e-12)
        assert r["se"] == pytest.approx(float(expected.se[0]), rel=1e-12)
    independent = compare_columns(est, ["yes"], [("G",)], method="independent")
    assert not np.allclose(cmp.get_column("se").to_numpy(), independent.get_column("se").to_numpy(), rtol=1e-6)


def test_design_method_refuses_stale_estimates():
    from pipeline.errors import DataError

    frame = survey_frame()
    codebook = Codebook(variables={"Y": VariableInfo("Y", value_labels={1: "Yes", 2: "No"}), "G": VariableInfo("G", value_labels={1: "a", 2: "b", 3: "c"})})
    design = Design.from_frame(frame, weights="w", strata=["S"])
    spec = EstimateSpec(id="yes", proportion="Y", levels=(1,), level_label="Yes", by=(("G",),))
    est = prepare_estimates(pl.DataFrame({
        "estimate_id": ["yes"] * 2, "level": ["Yes"] * 2, "by": ["G"] * 2, "domain": ["a", "b"],
        "n": [200, 200], "estimate": [0.1, 0.2], "se": [0.02, 0.02], "df": [199.0, 199.0], "flag": ["", ""],
    }))
    with pytest.raises(DataError, match="estimates.csv says 0.1"):
        compare_columns(est, ["yes"], [("G",)], method="design", covariance=DomainCovariance(frame, codebook, design, [spec]))


def test_design_method_with_replicate_weights():
    from pipeline.survey.replicates import jkn

    frame = survey_frame(n=300, seed=5).with_columns(pl.int_range(pl.len()).alias("psu") // 10)
    codebook = Codebook(variables={"Y": VariableInfo("Y", value_labels={1: "Yes", 2: "No"}), "G": VariableInfo("G", value_labels={1: "a", 2: "b", 3: "c"})})
    design = jkn(Design.from_frame(frame, weights="w", strata=["S"], ids=["psu"], nest=True))
    spec = EstimateSpec(id="yes", proportion="Y", levels=(1,), level_label="Yes", by=(("G",),))
    res = proportions(design.with_frame(frame.with_columns((pl.col("Y") == 1).cast(pl.Int64).alias("yes"))), "yes", by=["G"], levels=[1], na_rm=True)
    est = prepare_estimates(pl.DataFrame({
        "estimate_id": ["yes"] * 3, "level": ["Yes"] * 3, "by": ["G"] * 3, "domain": ["a", "b", "c"],
        "n": res.n.tolist(), "estimate": res.estimate.tolist(), "se": res.se.tolist(), "df": res.df.astype(float).tolist(), "flag": [""] * 3,
    }))
    cmp = compare_columns(est, ["yes"], [("G",)], method="design", covariance=DomainCovariance(frame, codebook, design, [spec]))
    r = cmp.filter((pl.col("domain_a") == "a") & (pl.col("domain_b") == "c")).row(0, named=True)
    assert r["se"] == pytest.approx(float(res.difference({"G": 1}, {"G": 3}).se[0]), rel=1e-12)


def test_two_margins_calibrated_to_their_targets_are_not_compared(estimates):
    """Raked margins have no sampling variance (SE 0, deff 0): their difference between two
    counties is the targets', known without error. An SE of 0 made t infinite and marked them
    significantly different; they are not compared (the topline marks them calibrated)."""
    calibrated = estimates.with_columns(
        pl.when(pl.col("estimate_id") == "q_often").then(0.0).otherwise(pl.col("se")).alias("se"),
        pl.when(pl.col("estimate_id") == "q_often").then(0.0).otherwise(pl.col("deff")).alias("deff"),
    )
    cmp = compare_columns(calibrated, ["q_often", "q_agree"], [(), ("REGION",)], method="independent")
    assert cmp.get_column("estimate_id").to_list() == ["q_agree"]

"""The weight and estimate stages on small frames."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.config import DesignConfig, EstimateSpec, TablesConfig, WeightConfig
from pipeline.errors import DataError, TargetsError
from pipeline.io import Codebook, VariableInfo
from pipeline.stages.estimate import COLUMNS, build_design, estimate_all
from pipeline.stages.weight import base_weights, impute_mode, variance_adjustment, weight

REL = 1e-9


def sample(n: int = 400, seed: int = 3) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "raw_row": np.arange(1, n + 1),
            "G": np.where(rng.random(n) < 0.5, 1, 2),
            "FRAME": np.where(rng.random(n) < 0.5, 1, 2),
            "ADULTS": rng.integers(1, 7, n),
            "SEX": np.where(rng.random(n) < 0.4, 1, 2),
            "AGE3": rng.integers(1, 4, n),
            "Q": np.where(rng.random(n) < 0.1, 8, np.where(rng.random(n) < 0.45, 1, 2)),
        }
    )


def targets() -> pl.DataFrame:
    rows = []
    for g, pop in ((1, 10_000), (2, 30_000)):
        for v, shares in (("SEX", (0.48, 0.52)), ("AGE3", (0.3, 0.4, 0.3))):
            rows += [{"g": g, "variable": v, "category": c + 1, "share": s, "population": pop} for c, s in enumerate(shares)]
    return pl.DataFrame(rows)


def weight_config(**kw) -> WeightConfig:
    cfg = {
        "targets_columns": {"g": "G"},
        "base": {"population_by": ["G"], "factors": [{"name": "adults", "expr": "CASE WHEN FRAME = 1 THEN LEAST(ADULTS, 4) ELSE 1 END"}]},
        "rake": {"by": ["G"], "variables": ["SEX", "AGE3"], "tolerance": 1e-10, "max_iter": 200},
    }
    cfg.update(kw)
    return WeightConfig.model_validate(cfg)


def test_base_weights_population_over_n_times_factors():
    f = sample()
    t = targets().rename({"g": "G"})
    w = base_weights(f, t, weight_config())
    n1 = f.filter(pl.col("G") == 1).height
    row = f.row(0, named=True)
    factor = min(row["ADULTS"], 4) if row["FRAME"] == 1 else 1
    expected = (10_000 if row["G"] == 1 else 30_000) / (n1 if row["G"] == 1 else f.height - n1) * factor
    assert w[0] == pytest.approx(expected, rel=REL)


def test_base_weight_factor_must_be_positive():
    f = sample().with_columns(pl.when(pl.col("raw_row") == 5).then(None).otherwise(pl.col("ADULTS")).alias("ADULTS"))
    cfg = weight_config(base={"factors": [{"name": "adults", "expr": "ADULTS"}]})
    with pytest.raises(DataError, match=r"weight.base.factors\[0\] \(adults\): 1 row\(s\) get a missing or non-positive factor .*raw rows \[5\]"):
        base_weights(f, None, cfg)


def test_impute_mode_within_group():
    f = pl.DataFrame({"G": [1, 1, 1, 2, 2, 2], "V": [1, 1, None, 2, None, 3]})
    out, counts = impute_mode(f, ["V"], ["G"])
    assert counts == {"V": 2}
    assert out.get_column("V").to_list() == [1, 1, 1, 2, 2, 3]  # tie in group 2 -> smallest code


def test_weight_hits_targets_and_scales():
    f = sample()
    res = weight(f, targets(), weight_config())
    assert res.qa["converged"] is True
    assert res.qa["max_margin_error"] < 1e-8
    assert res.data.get_column("w_final").sum() == pytest.approx(f.height, rel=REL)
    assert res.data.get_column("w_pop").sum() == pytest.approx(40_000, rel=REL)
    share = res.data.filter(pl.col("G") == 2).group_by("SEX").agg(pl.col("w_pop").sum()).sort("SEX").get_column("w_pop")
    assert (share / share.sum()).to_list() == pytest.approx([0.48, 0.52], rel=1e-8)
    assert res.qa["kish_deff"] == pytest.approx(f.height * (res.data.get_column("w_final") ** 2).sum() / f.height**2, rel=REL)


def test_missing_target_category_is_a_targets_error():
    t = targets().filter(~((pl.col("variable") == "AGE3") & (pl.col("category") == 3)))
    t = t.with_columns(pl.when(pl.col("variable") == "AGE3").then(pl.col("share") / 0.7).otherwise(pl.col("share")).alias("share"))
    with pytest.raises(TargetsError, match="AGE3"):
        weight(sample(), t, weight_config())


def test_trim_then_rerake_keeps_margins():
    cfg = weight_config(trim={"lower": 0.3, "upper": 3, "by": ["G"], "rerake": True, "cycles": 50})
    res = weight(sample(), targets(), cfg)
    steps = [s["step"] for s in res.qa["steps"]]
    assert steps[:4] == ["base", "rake", "trim", "rerake"] and steps[2:] == ["trim", "rerake"] * res.qa["trim"]["cycles"]
    assert res.qa["trim"]["caps_hold"] is True and res.qa["trim"]["outside_caps"] == 0
    assert res.qa["max_margin_error"] < 1e-8


def test_raking_adjustment_from_final_weights_equals_the_rake_step():
    """The estimate stage rebuilds R's raking residuals from the final weights
    (``variance_adjustment``); at convergence they equal those the weighting engine records
    during raking (which are checked against R survey 4.1-1 in
    tests/survey/test_weighting_conformance.py)."""
    from pipeline.survey.design import Design
    from pipeline.survey.estimators import proportions
    from pipeline.survey.weighting import rake, targets_from_shares

    f = sample().with_columns(pl.lit(1.0).alias("w0"))
    t = targets().rename({"g": "G"})
    totals = targets_from_shares(t, by=["G"], share="share", population="population")
    res = rake(f, weight="w0", targets=totals, by=["G"], tolerance=1e-12, max_iter=500)
    f = f.with_columns(pl.Series("w", res.weights), (pl.col("Q") == 1).cast(pl.Int64).alias("yes"))
    base = Design.from_frame(f, weights="w", strata=["G"])
    ours = base.reweight(res.weights, variance_adjustment(f, res.weights, weight_config()))
    engine = base.reweight(res.weights, res.adjustment)
    a = proportions(ours, "yes", by=["FRAME"])
    b = proportions(engine, "yes", by=["FRAME"])
    fixed = proportions(base, "yes", by=["FRAME"])
    assert np.allclose(a.se, b.se, rtol=1e-8)
    assert not np.allclose(a.se, fixed.se, rtol=1e-4)  # the adjustment matters


def test_estimates_schema_and_denominators():
    f = sample()
    res = weight(f, targets(), weight_config())
    cb = Codebook(variables={
        "Q": VariableInfo("Q", label="Agree?", value_labels={1: "Yes", 2: "No", 8: "Don't know"}, missing_values=(8,)),
        "G": VariableInfo("G", value_labels={1: "North", 2: "South"}),
    })
    specs = [
        EstimateSpec(id="yes_all", proportion="Q", levels=(1,), denominator="all", by=((), ("G",))),
        EstimateSpec(id="yes_valid", proportion="Q", levels=(1,), denominator="valid"),
        EstimateSpec(id="each", proportion="Q", denominator="all"),
    ]
    design_config = DesignConfig(weights="w_pop", strata=("G",))
    design = build_design(res.data, design_config, weight_config())
    est = estimate_all(res.data, cb, specs, design, design_config, TablesConfig(min_n=150), wave="w")
    assert tuple(est.columns[: len(COLUMNS)]) == COLUMNS
    d = res.data
    w = d.get_column("w_pop")
    q = d.get_column("Q")
    all_share = float((w * (q == 1)).sum() / w.sum())
    valid_share = float((w * (q == 1)).sum() / w.filter(q != 8).sum())
    row = lambda i, dom="All": est.filter((pl.col("estimate_id") == i) & (pl.col("domain") == dom)).row(0, named=True)  # noqa: E731
    assert row("yes_all")["estimate"] == pytest.approx(all_share, rel=REL)
    assert row("yes_valid")["estimate"] == pytest.approx(valid_share, rel=REL)
    assert row("yes_all")["n"] == d.height and row("yes_valid")["n"] == int((q != 8).sum())
    assert row("yes_all")["level"] == "Yes" and row("yes_all", "South")["by"] == "G"
    each = est.filter(pl.col("estimate_id") == "each")
    assert sorted(each.get_column("level").to_list()) == ["Don't know", "No", "Yes"]
    assert each.get_column("estimate").sum() == pytest.approx(1.0, rel=1e-12)
    flagged = est.filter(pl.col("n") < 150).get_column("flag").unique().to_list()
    assert flagged in ([], ["n<150"])
    assert (est.get_column("ci_low") <= est.get_column("estimate")).all()
    assert (est.get_column("estimate") <= est.get_column("ci_high")).all()


def test_design_config_names_unknown_column():
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="design: variable\\(s\\) NOPE are not in the weighted data"):
        build_design(sample().with_columns(pl.lit(1.0).alias("w_pop")), DesignConfig(strata=("NOPE",)))


def test_unknown_level_code_is_a_config_error_naming_the_estimate():
    from pipeline.errors import ConfigError

    f = sample()
    res = weight(f, targets(), weight_config())
    cb = Codebook(variables={"Q": VariableInfo("Q", value_labels={1: "Yes", 2: "No", 8: "Don't know"})})
    spec = EstimateSpec(id="q_yes", proportion="Q", levels=(1, 7))
    design_config = DesignConfig(weights="w_pop", strata=("G",))
    design = build_design(res.data, design_config, weight_config())
    with pytest.raises(ConfigError) as info:
        estimate_all(res.data, cb, [spec], design, design_config, TablesConfig(), wave="w")
    assert info.value.problems == ["estimates[0].levels (q_yes): code(s) [7] are not labelled codes of Q (codes: 1 Yes, 2 No, 8 Don't know)"]

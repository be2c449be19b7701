"""The weight stage's calibration methods, trimming cycles, targets provenance and errors (issue 4).

The engine (``pipeline.survey.weighting``) is checked against R survey 4.1-1 in tests/survey; these
tests check the stage: config -> engine call, the error text a user sees (file and config key
first, then the engine's diagnosis), and the variance adjustment the estimate stage rebuilds.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.config import WeightConfig
from pipeline.errors import CalibrationError, ConfigError, TargetsError
from pipeline.stages.weight import CALIBRATION_STEPS, variance_adjustment, weight
from pipeline.survey.trimming import TRIM_CENTRES, trim_caps, trim_replicates

#: margins of a converged calibration (share units)
MARGIN_ATOL = 1e-8
#: standard errors from two constructions of the same adjustment
SE_RTOL = 1e-8
TARGETS_FILE = "raw/targets.csv"


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
            "Q": np.where(rng.random(n) < 0.45, 1, 2),
        }
    )


def targets() -> pl.DataFrame:
    rows = []
    for g, pop in ((1, 10_000), (2, 30_000)):
        for v, shares, source, year in (("SEX", (0.48, 0.52), "Census 2010", 2010), ("AGE3", (0.3, 0.4, 0.3), "ACS 2011 1-year", 2011)):
            rows += [
                {"g": g, "variable": v, "category": c + 1, "share": s, "population": pop, "source": source, "year": year}
                for c, s in enumerate(shares)
            ]
    return pl.DataFrame(rows)


RAKE = {"by": ["G"], "variables": ["SEX", "AGE3"], "tolerance": 1e-10, "max_iter": 200}
FACTORS = [{"name": "adults", "expr": "CASE WHEN FRAME = 1 THEN LEAST(ADULTS, 4) ELSE 1 END"}]


def config(**sections) -> WeightConfig:
    cfg = {"targets_columns": {"g": "G"}, "base": {"population_by": ["G"], "factors": FACTORS}, "rake": RAKE}
    cfg.update(sections)
    return WeightConfig.model_validate({k: v for k, v in cfg.items() if v is not None})


METHODS = {
    "rake": {},
    "poststratify": {"rake": None, "poststratify": {"variable": "AGE3", "by": ["G"]}},
    "calibrate:linear": {"rake": None, "calibrate": {"variables": ["SEX", "AGE3"], "by": ["G"]}},
    "calibrate:raking": {"rake": None, "calibrate": {"variables": ["SEX", "AGE3"], "by": ["G"], "method": "raking"}},
    "calibrate:logit": {"rake": None, "calibrate": {"variables": ["SEX", "AGE3"], "by": ["G"], "method": "logit", "bounds": [0.25, 3]}},
}


def shares_by(data: pl.DataFrame, variable: str, weight_col: str = "w_pop") -> dict[tuple[int, int], float]:
    g = data.group_by("G", variable).agg(pl.col(weight_col).sum()).with_columns((pl.col(weight_col) / pl.col(weight_col).sum().over("G")).alias("s"))
    return {(r["G"], r[variable]): r["s"] for r in g.iter_rows(named=True)}


# ----------------------------------------------------------------------- method choice


def test_registry_is_keyed_by_the_config_sections():
    assert set(CALIBRATION_STEPS) == {"rake", "poststratify", "calibrate"}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_hits_its_targets_and_scales(method):
    f = sample()
    before = f.clone()
    res = weight(f, targets(), config(**METHODS[method]), targets_name=TARGETS_FILE)
    assert f.equals(before)  # the input is not modified
    assert res.qa["method"] == method and res.qa["converged"] is True
    assert res.qa["max_margin_error"] < MARGIN_ATOL
    d = res.data
    assert d.get_column("w_final").sum() == pytest.approx(f.height, rel=1e-12)
    assert d.get_column("w_pop").sum() == pytest.approx(40_000, rel=1e-9)
    assert (d.get_column("w_pop") > 0).all()
    assert shares_by(d, "AGE3")[(2, 1)] == pytest.approx(0.3, abs=MARGIN_ATOL)
    if method != "poststratify":
        assert shares_by(d, "SEX")[(1, 2)] == pytest.approx(0.52, abs=MARGIN_ATOL)
    assert d.get_column("w_uncalibrated").to_list() == pytest.approx(d.get_column("w_base").to_list(), rel=1e-12)
    again = weight(f, targets(), config(**METHODS[method]), targets_name=TARGETS_FILE)
    assert again.data.get_column("w_pop").equals(d.get_column("w_pop"))  # deterministic


def test_poststratify_is_one_factor_per_cell():
    res = weight(sample(), targets(), config(**METHODS["poststratify"]))
    g = res.data.with_columns((pl.col("w_pop") / pl.col("w_base")).alias("g")).group_by("G", "AGE3").agg(
        ((pl.col("g").max() - pl.col("g").min()) / pl.col("g").mean()).alias("spread")
    )
    assert g.get_column("spread").max() < 1e-12


def test_logit_bounds_hold_on_the_g_weights():
    res = weight(sample(), targets(), config(**METHODS["calibrate:logit"]))
    g = (res.data.get_column("w_pop") / res.data.get_column("w_uncalibrated")).to_numpy()
    assert g.min() >= 0.25 - 1e-9 and g.max() <= 3 + 1e-9


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"poststratify": {"variable": "AGE3"}},
            "give one calibration method, not rake and poststratify (each calibrates to the same targets)",
        ),
        ({"rake": None, "calibrate": {"variables": ["SEX"], "method": "logit"}}, "method logit needs bounds on the g-weights, e.g. bounds: [0.3, 3]"),
        ({"rake": None, "calibrate": {"variables": ["SEX"], "bounds": [1.2, 3]}}, "bounds on the g-weights must satisfy lower < 1 < upper (got [1.2, 3.0])"),
        ({"trim": {"upper": 3, "cycles": 3, "rerake": False}}, "cycles: 3 needs rerake: true (a cycle is trimming then recalibrating)"),
        ({"rake": None, "trim": {"upper": 3, "cycles": 3}}, "trim.cycles: 3 needs a calibration method (rake, poststratify or calibrate) to redo after trimming"),
    ],
)
def test_config_rejects_inconsistent_weighting(sections, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=None) as info:
        config(**sections)
    assert message in str(info.value)


# ---------------------------------------------------------------- targets: provenance and errors


def test_targets_source_and_year_are_recorded():
    from pipeline.stages.weight import qa_markdown

    res = weight(sample(), targets(), config(), targets_name=TARGETS_FILE)
    assert res.qa["targets"] == {
        "file": TARGETS_FILE,
        "sources": [
            {"variable": "SEX", "source": "Census 2010", "year": "2010"},
            {"variable": "AGE3", "source": "ACS 2011 1-year", "year": "2011"},
        ],
    }
    text = qa_markdown(res.qa, res.margins, "w1")
    assert f"File: `{TARGETS_FILE}`" in text
    assert "| AGE3 | ACS 2011 1-year | 2011 |" in text and "| SEX | Census 2010 | 2010 |" in text


def test_targets_without_provenance_say_so():
    res = weight(sample(), targets().drop("source", "year"), config(), targets_name=TARGETS_FILE)
    assert res.qa["targets"]["sources"][0] == {"variable": "SEX", "source": None, "year": None}


def raises(exc: type[Exception], message: str, frame: pl.DataFrame, t: pl.DataFrame, cfg: WeightConfig, hint: str | None = None) -> None:
    """``message`` is the exact text; ``{category}`` stands for a category of a binary variable
    (both have the same error, so which one is named is floating-point noise)."""
    import re

    with pytest.raises(exc) as info:
        weight(frame, t, cfg, targets_name=TARGETS_FILE)
    assert re.fullmatch(re.escape(message).replace(re.escape("{category}"), "[12]"), info.value.message), info.value.message
    if hint is not None:
        assert info.value.hint == hint


def test_shares_not_summing_to_one_name_file_key_group_variable_and_sum():
    t = targets().with_columns(
        pl.when((pl.col("variable") == "AGE3") & (pl.col("g") == 2) & (pl.col("category") == 1)).then(0.25).otherwise(pl.col("share")).alias("share")
    )
    raises(
        TargetsError,
        "raw/targets.csv (weight.rake): target shares of variable 'AGE3' in G=2 sum to 0.95; expected 1 (within 1e-06)",
        sample(), t, config(),
    )


def test_target_category_missing_from_the_data_is_an_empty_cell():
    f = sample().with_columns(pl.when((pl.col("G") == 1) & (pl.col("AGE3") == 3)).then(2).otherwise(pl.col("AGE3")).alias("AGE3"))
    raises(
        CalibrationError,
        "raw/targets.csv (weight.rake): empty cell: variable 'AGE3' category 3 in group G=1 has a target of 3000 but no rows in the data",
        f, targets(), config(),
    )


def test_data_category_missing_from_the_targets():
    f = sample().with_columns(pl.when(pl.col("raw_row") < 4).then(4).otherwise(pl.col("AGE3")).alias("AGE3"))
    raises(
        TargetsError,
        "raw/targets.csv (weight.rake): variable 'AGE3' category 4 has 2 row(s) in group G=1 but no target; target categories there are [1, 2, 3]",
        f, targets(), config(),
    )


def test_empty_cell_of_a_calibration_names_the_method_key():
    f = sample().with_columns(pl.when((pl.col("G") == 2) & (pl.col("SEX") == 1)).then(2).otherwise(pl.col("SEX")).alias("SEX"))
    raises(
        CalibrationError,
        "raw/targets.csv (weight.calibrate): empty cell: variable 'SEX' category 1 in group G=2 has a target of 14400 but no rows in the data",
        f, targets(), config(**METHODS["calibrate:linear"]),
    )


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_stops_on_an_empty_cell(method):
    """A target category without respondents: a CalibrationError naming the file and the key."""
    key = method.split(":")[0]
    f = sample().with_columns(pl.when((pl.col("G") == 1) & (pl.col("AGE3") == 3)).then(2).otherwise(pl.col("AGE3")).alias("AGE3"))
    raises(
        CalibrationError,
        f"raw/targets.csv (weight.{key}): empty cell: variable 'AGE3' category 3 in group G=1 has a target of 3000 but no rows in the data",
        f, targets(), config(**METHODS[method]),
    )


def test_variable_without_targets():
    raises(TargetsError, "raw/targets.csv: no rows for weight.rake variable(s) AGE3", sample(), targets().filter(pl.col("variable") != "AGE3"), config())


def test_raking_nonconvergence_gives_achieved_error_and_sweeps():
    cfg = config(rake={**RAKE, "tolerance": 1e-12, "max_iter": 2})
    raises(
        CalibrationError,
        "weight.rake: raking did not converge in 2 sweeps: largest share error 0.000232 (variable 'SEX', category {category}, group G=2) "
        "is not below tolerance 1e-12",
        sample(), targets(), cfg,
        hint="raise weight.rake.max_iter, collapse sparse categories, check that the targets are consistent, "
        "or set weight.rake.accept_nonconvergence: true to keep these weights",
    )


def test_raking_nonconvergence_can_be_accepted():
    cfg = config(rake={**RAKE, "tolerance": 1e-12, "max_iter": 2, "accept_nonconvergence": True})
    res = weight(sample(), targets(), cfg)
    assert res.qa["converged"] is False and res.qa["iterations"] == 2


def test_calibration_nonconvergence_gives_achieved_error_and_iterations():
    cfg = config(rake=None, calibrate={"by": ["G"], "variables": ["SEX", "AGE3"], "method": "logit", "bounds": [0.9, 1.1]})
    raises(
        CalibrationError,
        "weight.calibrate: calibration (logit, bounds 0.9 .. 1.1) did not converge in 50 iterations; "
        "group G=1: largest misfit |T - sum(w x)| / (1 + |T|) = 1.21 (epsilon 1e-07)",
        sample(), targets(), cfg,
        hint="widen weight.calibrate.bounds, collapse sparse categories, raise weight.calibrate.max_iter, "
        "or set weight.calibrate.accept_nonconvergence: true to keep these weights",
    )


def test_calibration_variable_not_in_the_data_is_a_config_error():
    with pytest.raises(ConfigError, match=r"weight.calibrate: variable\(s\) AGE9 are not in the cleaned data"):
        weight(sample(), targets(), config(rake=None, calibrate={"variables": ["SEX", "AGE9"], "by": ["G"]}))


# ------------------------------------------------------------------------------ trimming


def test_trim_cycles_run_until_caps_and_margins_hold():
    cfg = config(trim={"lower": 0.5, "upper": 1.5, "by": ["G"], "cycles": 60})
    res = weight(sample(), targets(), cfg)
    t = res.qa["trim"]
    assert t["caps_hold"] is True and t["outside_caps"] == 0 and 1 < t["cycles"] < 60
    cycles = [s for s in res.qa["steps"] if s["step"] == "rerake"]
    assert [s["cycle"] for s in cycles] == list(range(1, t["cycles"] + 1))
    assert cycles[-1]["outside_caps"] == 0 and all(s["outside_caps"] > 0 for s in cycles[:-1])
    assert res.qa["max_margin_error"] < MARGIN_ATOL
    w = res.data.get_column("w_pop").to_numpy()
    groups = res.data.get_column("G").to_numpy() - 1
    lo, hi = trim_caps(w, groups, lower=0.5, upper=1.5, relative_to="median")
    assert (w <= hi * (1 + 1e-6)).all() and (w >= lo * (1 - 1e-6)).all()


def test_trim_cycles_that_cannot_hold_fail_with_the_count():
    cfg = config(trim={"lower": 0.5, "upper": 1.5, "by": ["G"], "cycles": 1})
    raises(
        CalibrationError,
        "weight.trim: after 1 trim-and-rerake cycle(s), 90 weight(s) are still outside the caps (worst 1.77x the lower cap, "
        "in group G=2); the caps and the rake margins do not both hold",
        sample(), targets(), cfg,
    )


def test_trim_outside_caps_can_be_accepted():
    cfg = config(trim={"lower": 0.5, "upper": 1.5, "by": ["G"], "accept_outside_caps": True})
    res = weight(sample(), targets(), cfg)
    assert res.qa["trim"] == {"cycles": 1, "max_cycles": 1, "outside_caps": 90, "caps_hold": False}
    assert res.qa["max_margin_error"] < MARGIN_ATOL


def test_trim_without_recalibration_keeps_the_group_totals():
    cfg = config(rake=None, trim={"lower": 0.5, "upper": 3, "by": ["G"], "strict": True})
    res = weight(sample(), targets(), cfg)
    assert res.qa["steps"][-1]["n_trimmed"] > 0
    d = res.data.with_columns((pl.col("w_pop") / pl.col("w_pop").median().over("G")).alias("r"))
    assert d.get_column("r").max() <= 3 + 1e-9 and d.get_column("r").min() >= 0.5 - 1e-9
    totals = d.group_by("G").agg(pl.col("w_pop").sum(), pl.col("w_base").sum())
    assert totals.get_column("w_pop").to_list() == pytest.approx(totals.get_column("w_base").to_list(), rel=1e-12)


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("relative_to", TRIM_CENTRES)
def test_trimming_replicates_is_the_engine_trim_column_by_column(strict, relative_to):
    """trim_replicates == trim_weights (R trimWeights) on each replicate's in-replicate rows."""
    from pipeline.survey.weighting import trim_weights

    rng = np.random.default_rng(11)
    n, reps = 60, 5
    w = rng.lognormal(0, 0.8, (n, reps)) * (20 if relative_to == "absolute" else 1)
    w[rng.integers(0, n, reps), np.arange(reps)] = 0.0  # rows out of a replicate (a deleted PSU)
    groups = np.repeat([0, 1], n // 2)
    lower, upper = (8.0, 40.0) if relative_to == "absolute" else (0.4, 2.5)
    got = trim_replicates(w, groups, lower=lower, upper=upper, relative_to=relative_to, strict=strict)
    for j in range(reps):
        for g in (0, 1):
            rows = np.flatnonzero((groups == g) & (w[:, j] > 0))
            centre = {"median": np.median, "mean": np.mean, "absolute": lambda x: 1.0}[relative_to](w[rows, j])
            want = trim_weights(w[rows, j], lower=lower * centre, upper=upper * centre, strict=strict).weights
            np.testing.assert_allclose(got[rows, j], want, rtol=1e-12)
    assert (got[w == 0] == 0).all()


# ------------------------------------------------------------------- variance adjustment


def _engine_result(method: str, f: pl.DataFrame):
    """The engine's own weighting step on base weights w0, as the stage would call it."""
    from pipeline.survey.weighting import calibrate, poststratify, rake, targets_from_shares

    t = targets().rename({"g": "G"})
    if method == "poststratify":
        totals = targets_from_shares(t.filter(pl.col("variable") == "AGE3"), by=["G"])
        return poststratify(f, weight="w0", targets=totals, by=["G"])
    totals = targets_from_shares(t, by=["G"])
    if method == "rake":
        return rake(f, weight="w0", targets=totals, by=["G"], tolerance=1e-12, max_iter=500)
    kind = method.split(":")[1]
    bounds = (0.25, 3) if kind == "logit" else (-np.inf, np.inf)
    return calibrate(f, weight="w0", targets=totals, by=["G"], method=kind, bounds=bounds)


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("scale", ["w_pop", "w_final"])
def test_variance_adjustment_equals_the_engine_step(method, scale):
    """variance_adjustment() rebuilds, from the final weights, the adjustment the engine records
    during the step (itself checked against R survey 4.1-1 in tests/survey): the same standard
    errors, on the population or the sample-size scale."""
    from pipeline.survey.design import Design
    from pipeline.survey.estimators import proportions

    rng = np.random.default_rng(5)
    f = sample().with_columns(pl.Series("w0", rng.uniform(20, 200, 400)))
    res = _engine_result(method, f)
    w = np.asarray(res.weights)
    if scale == "w_final":
        w = w * f.height / w.sum()
    f = f.with_columns(pl.Series("w", w), pl.col("w0").alias("w_uncalibrated"), (pl.col("Q") == 1).cast(pl.Int64).alias("yes"))
    base = Design.from_frame(f, weights="w", strata=["G"])
    ours = base.reweight(w, variance_adjustment(f, w, config(**METHODS[method])))
    engine = base.reweight(w, res.adjustment)
    a = proportions(ours, "yes", by=["FRAME"])
    b = proportions(engine, "yes", by=["FRAME"])
    fixed = proportions(base, "yes", by=["FRAME"])
    np.testing.assert_allclose(a.se, b.se, rtol=SE_RTOL)
    assert not np.allclose(a.se, fixed.se, rtol=1e-4)  # the adjustment matters


def test_no_calibration_no_adjustment():
    assert variance_adjustment(sample(), np.ones(400), config(rake=None)) is None


def test_build_design_uses_the_configured_method():
    """The estimate stage's design after GREG calibration carries the GREG residuals."""
    from pipeline.config import DesignConfig
    from pipeline.stages.estimate import build_design
    from pipeline.survey.weighting import GregAdjustment

    cfg = config(**METHODS["calibrate:linear"])
    res = weight(sample(), targets(), cfg)
    design = build_design(res.data, DesignConfig(weights="w_pop", strata=("G",)), cfg)
    assert len(design.adjustments) == 1 and isinstance(design.adjustments[0], GregAdjustment)
    fixed = build_design(res.data, DesignConfig(weights="w_pop", strata=("G",), weighting_variance=False), cfg)
    assert fixed.adjustments == ()


def test_an_unsupported_statistics_argument_becomes_a_config_error_naming_the_key():
    """survey/ raises ArgumentError (no config keys there); the weight stage names the config key (issue 11, item 2)."""
    from pipeline.errors import ArgumentError, ConfigError
    from pipeline.stages._weight_base import keyed_errors

    with pytest.raises(ConfigError) as info:
        with keyed_errors("design.replicates.build: Fay"):
            raise ArgumentError("design: type='Fay' needs rho", hint="give Fay's rho, e.g. rho=0.5")
    assert info.value.message == "design.replicates.build: Fay: type='Fay' needs rho"
    assert info.value.hint == "give Fay's rho, e.g. rho=0.5"

"""Tests of pipeline.survey.weighting: behaviour, errors, variance adjustments, contracts.

Reference values against R survey live in test_weighting_conformance.py; the
numbers here are derived by hand or from closed forms stated next to them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import CalibrationError, DataError, TargetsError
from pipeline.survey.weighting import (
    CALIBRATION_METHODS,
    WEIGHTING_METHODS,
    ChainedAdjustment,
    GregAdjustment,
    NoAdjustment,
    PostStratAdjustment,
    RakingAdjustment,
    WeightingResult,
    calibrate,
    poststratify,
    rake,
    targets_from_shares,
    trim_weights,
    weight_diagnostics,
)

# Tolerances (named, not magic)
EXACT = 1e-12  # closed-form results, floating-point noise only
RAKED = 1e-6  # default raking tolerance on shares


def _targets(rows: list[tuple]) -> pl.DataFrame:
    """Tidy targets from (variable, category, target) or (group, variable, category, target)."""
    if len(rows[0]) == 3:
        return pl.DataFrame(rows, schema={"variable": pl.String, "category": pl.Int64, "target": pl.Float64}, orient="row")
    return pl.DataFrame(
        rows, schema={"region": pl.Int64, "variable": pl.String, "category": pl.Int64, "target": pl.Float64}, orient="row"
    )


@pytest.fixture
def sample() -> pl.DataFrame:
    """Twelve respondents, two regions, sex (1/2) and age (1/2/3)."""
    return pl.DataFrame(
        {
            "region": [1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2],
            "sex": [1, 1, 1, 2, 2, 2, 1, 1, 2, 2, 2, 2],
            "age": [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3],
            "w": [1.0, 2.0, 1.5, 1.0, 1.0, 2.5, 3.0, 1.0, 2.0, 1.0, 1.5, 1.0],
            "income": [10.0, 20.0, 30.0, 15.0, 25.0, 35.0, 12.0, 22.0, 32.0, 14.0, 24.0, 34.0],
        }
    )


@pytest.fixture
def margins_all() -> pl.DataFrame:
    """Sex and age totals for the whole sample (population 1000)."""
    return _targets(
        [("sex", 1, 480.0), ("sex", 2, 520.0), ("age", 1, 300.0), ("age", 2, 350.0), ("age", 3, 350.0)]
    )


@pytest.fixture
def margins_by_region() -> pl.DataFrame:
    """Sex and age totals per region (populations 600 and 400)."""
    return _targets(
        [
            (1, "sex", 1, 300.0), (1, "sex", 2, 300.0),
            (1, "age", 1, 200.0), (1, "age", 2, 200.0), (1, "age", 3, 200.0),
            (2, "sex", 1, 150.0), (2, "sex", 2, 250.0),
            (2, "age", 1, 100.0), (2, "age", 2, 150.0), (2, "age", 3, 150.0),
        ]
    )


def _rake_rows(w: np.ndarray, codes: list[np.ndarray], totals: list[dict[int, float]], sweeps: int) -> np.ndarray:
    """Textbook row-level IPF, the reference for the collapsed-cell implementation."""
    w = w.copy()
    for _ in range(sweeps):
        for c, t in zip(codes, totals):
            for k, target in t.items():
                rows = c == k
                w[rows] *= target / w[rows].sum()
    return w


# --------------------------------------------------------------------------------------
# rake
# --------------------------------------------------------------------------------------


class TestRake:
    def test_hits_margins_and_population(self, sample, margins_all):
        result = rake(sample, weight="w", targets=margins_all)
        assert result.converged
        assert result.method == "rake"
        assert result.max_margin_error < RAKED
        assert result.weights.sum() == pytest.approx(1000.0, rel=1e-9)
        for var in ("sex", "age"):
            for (cat, target) in margins_all.filter(pl.col("variable") == var).select("category", "target").rows():
                achieved = result.weights[sample[var].to_numpy() == cat].sum()
                assert achieved == pytest.approx(target, rel=1e-5)

    def test_collapsed_cells_equal_row_level_ipf(self, sample, margins_all):
        result = rake(sample, weight="w", targets=margins_all, tolerance=1e-14, max_iter=500)
        reference = _rake_rows(
            sample["w"].to_numpy(),
            [sample["sex"].to_numpy(), sample["age"].to_numpy()],
            [{1: 480.0, 2: 520.0}, {1: 300.0, 2: 350.0, 3: 350.0}],
            sweeps=result.iterations,
        )
        np.testing.assert_allclose(result.weights, reference, rtol=EXACT)

    def test_by_groups_rake_each_group_separately(self, sample, margins_by_region):
        result = rake(sample, weight="w", targets=margins_by_region, by=["region"], tolerance=1e-12, max_iter=500)
        for region in (1, 2):
            part = sample.filter(pl.col("region") == region)
            alone = rake(
                part,
                weight="w",
                targets=margins_by_region.filter(pl.col("region") == region).drop("region"),
                tolerance=1e-12,
                max_iter=500,
            )
            np.testing.assert_allclose(result.weights[sample["region"].to_numpy() == region], alone.weights, rtol=1e-10)

    def test_margins_table(self, sample, margins_by_region):
        result = rake(sample, weight="w", targets=margins_by_region, by=["region"])
        m = result.margins
        assert m.columns == [
            "region", "variable", "category", "target_share", "unweighted_share",
            "base_share", "achieved_share", "target", "achieved",
        ]
        assert m.height == margins_by_region.height
        row = m.filter((pl.col("region") == 2) & (pl.col("variable") == "sex") & (pl.col("category") == 1)).row(0, named=True)
        # region 2: sex 1 has 2 of 6 rows, base weight 4 of 9.5; target 150 of 400
        assert row["unweighted_share"] == pytest.approx(2 / 6)
        assert row["base_share"] == pytest.approx(4.0 / 9.5)
        assert row["target_share"] == pytest.approx(150 / 400)
        assert row["achieved_share"] == pytest.approx(150 / 400, abs=RAKED)
        assert row["target"] == 150.0

    def test_crossed_margin_is_a_precrossed_variable(self, sample):
        crossed = sample.with_columns((pl.col("sex") * 10 + pl.col("age")).alias("sex_age"))
        cells = crossed.group_by("sex_age").agg(pl.len()).sort("sex_age")["sex_age"].to_list()
        targets = _targets([("sex_age", c, 100.0 + c) for c in cells])
        result = rake(crossed, weight="w", targets=targets)
        assert result.iterations == 1  # one margin: exact after one sweep
        for c in cells:
            assert result.weights[crossed["sex_age"].to_numpy() == c].sum() == pytest.approx(100.0 + c)

    def test_r_default_stop_rule_counts_cell_changes(self, sample, margins_all):
        loose = rake(sample, weight="w", targets=margins_all, max_iter=10, tolerance=1.0, stop_rule="r_default")
        tight = rake(sample, weight="w", targets=margins_all, max_iter=10, tolerance=1e-6)
        assert loose.converged
        assert loose.iterations <= tight.iterations
        # below 1, R's epsilon is a fraction of the sum of base weights
        relative = rake(sample, weight="w", targets=margins_all, max_iter=10, tolerance=1.0 / 18.5, stop_rule="r_default")
        np.testing.assert_array_equal(relative.weights, loose.weights)

    def test_nonconvergence_raises_with_achieved_error(self, sample, margins_all):
        with pytest.raises(CalibrationError) as info:
            rake(sample, weight="w", targets=margins_all, max_iter=1, tolerance=1e-12)
        message = str(info.value)
        assert message.startswith("raking did not converge in 1 sweeps: largest share error ")
        assert "is not below tolerance 1e-12" in message
        assert "hint: raise max_iter" in message

    def test_nonconvergence_accepted_is_reported(self, sample, margins_all):
        result = rake(sample, weight="w", targets=margins_all, max_iter=1, tolerance=1e-12, accept_nonconvergence=True)
        assert result.converged is False
        assert result.iterations == 1
        assert result.max_margin_error > 1e-12

    def test_string_categories(self, sample):
        frame = sample.with_columns(pl.col("sex").replace_strict({1: "m", 2: "f"}, return_dtype=pl.String))
        targets = pl.DataFrame({"variable": ["sex", "sex"], "category": ["m", "f"], "target": [40.0, 60.0]})
        result = rake(frame, weight="w", targets=targets)
        assert result.weights[frame["sex"].to_numpy() == "m"].sum() == pytest.approx(40.0)
        assert result.margins["category"].to_list() == ["m", "f"]

    def test_result_is_frozen(self, sample, margins_all):
        result = rake(sample, weight="w", targets=margins_all)
        with pytest.raises(ValueError):
            result.weights[0] = 1.0
        with pytest.raises(AttributeError):
            result.iterations = 3  # type: ignore[misc]


# --------------------------------------------------------------------------------------
# Errors: what, where, expected, found, hint
# --------------------------------------------------------------------------------------


class TestErrors:
    def test_null_in_raking_variable(self, sample, margins_all):
        frame = sample.with_columns(pl.when(pl.int_range(pl.len()).is_in([2, 7])).then(None).otherwise(pl.col("age")).alias("age"))
        with pytest.raises(DataError) as info:
            rake(frame, weight="w", targets=margins_all)
        assert str(info.value) == (
            "weighting variable 'age' has 2 missing value(s) (rows 3, 8, 1-based); expected a value on every row\n"
            "  hint: impute 'age' or give the missing rows their own category before weighting"
        )

    def test_null_weight(self, sample, margins_all):
        frame = sample.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None).otherwise(pl.col("w")).alias("w"))
        with pytest.raises(DataError, match=r"^base weight 'w' has 1 missing value\(s\) \(rows 1, 1-based\)"):
            rake(frame, weight="w", targets=margins_all)

    def test_non_positive_weight(self, sample, margins_all):
        frame = sample.with_columns(pl.when(pl.int_range(pl.len()).is_in([4, 5])).then(0.0).otherwise(pl.col("w")).alias("w"))
        with pytest.raises(DataError) as info:
            rake(frame, weight="w", targets=margins_all)
        assert str(info.value) == (
            "base weight 'w': 2 non-positive value(s) (rows 5, 6, 1-based; smallest 0); expected every base weight > 0\n"
            "  hint: rows with zero weight carry no information for weighting: remove them first"
        )

    def test_empty_cell_names_group_variable_category(self, sample, margins_by_region):
        targets = pl.concat([margins_by_region, _targets([(2, "age", 4, 10.0)])])
        with pytest.raises(CalibrationError) as info:
            rake(sample, weight="w", targets=targets, by=["region"])
        assert str(info.value) == (
            "empty cell: variable 'age' category 4 in group region=2 has a target of 10 but no rows in the data\n"
            "  hint: collapse this category with a neighbouring one (in data and targets), or drop it from the targets"
        )

    def test_zero_target_for_absent_category_is_fine(self, sample, margins_all):
        targets = pl.concat([margins_all, _targets([("age", 4, 0.0)])])
        assert rake(sample, weight="w", targets=targets).converged

    def test_data_category_without_target(self, sample, margins_all):
        targets = margins_all.filter(~((pl.col("variable") == "age") & (pl.col("category") == 3)))
        targets = targets.with_columns(
            pl.when(pl.col("variable") == "age").then(pl.col("target") * 1000 / 650).otherwise(pl.col("target")).alias("target")
        )
        with pytest.raises(TargetsError) as info:
            rake(sample, weight="w", targets=targets)
        assert str(info.value) == (
            "variable 'age' category 3 has 4 row(s) in the whole sample but no target; target categories there are [1, 2]\n"
            "  hint: recode the category in cleaning, or add its population total to the targets"
        )

    def test_group_without_targets(self, sample, margins_by_region):
        with pytest.raises(TargetsError) as info:
            rake(sample, weight="w", targets=margins_by_region.filter(pl.col("region") == 1), by=["region"])
        assert str(info.value) == (
            "group region=2 has 6 row(s) in the data but no targets (1 group(s) without targets)\n"
            "  hint: add targets for every group in the data, or drop its rows before weighting"
        )

    def test_targets_for_a_group_absent_from_data(self, sample, margins_by_region):
        extra = margins_by_region.filter(pl.col("region") == 2).with_columns(pl.lit(3, dtype=pl.Int64).alias("region"))
        with pytest.raises(TargetsError, match=r"^targets have rows for group region=3, but the data has no rows in that group"):
            rake(sample, weight="w", targets=pl.concat([margins_by_region, extra]), by=["region"])

    def test_totals_disagree(self, sample, margins_all):
        targets = margins_all.with_columns(
            pl.when(pl.col("variable") == "age").then(pl.col("target") * 1.1).otherwise(pl.col("target")).alias("target")
        )
        with pytest.raises(TargetsError) as info:
            rake(sample, weight="w", targets=targets)
        assert str(info.value).startswith(
            "targets in the whole sample: variable 'age' sums to 1100 but 'sex' sums to 1000; "
            "every variable's targets must add up to the same population total"
        )

    def test_variable_not_in_data(self, sample, margins_all):
        targets = pl.concat([margins_all, _targets([("educ", 1, 1000.0)])])
        with pytest.raises(TargetsError, match=r"^targets name variable\(s\) \['educ'\] that are not columns of the data"):
            rake(sample, weight="w", targets=targets)

    def test_missing_weight_column(self, sample, margins_all):
        with pytest.raises(DataError, match=r"^weight column\(s\) \['wt'\] not found in the data"):
            rake(sample, weight="wt", targets=margins_all)

    def test_duplicate_target(self, sample, margins_all):
        with pytest.raises(TargetsError, match=r"^targets: variable 'sex' category 1 appears more than once in the whole sample"):
            rake(sample, weight="w", targets=pl.concat([margins_all, _targets([("sex", 1, 480.0)])]))

    def test_negative_target(self, sample, margins_all):
        bad = margins_all.with_columns(pl.when(pl.int_range(pl.len()) == 1).then(-5.0).otherwise(pl.col("target")).alias("target"))
        with pytest.raises(TargetsError, match=r"^targets: 1 target\(s\) negative or not finite \(target rows 2, 1-based\)"):
            rake(sample, weight="w", targets=bad)

    def test_zero_target_with_data(self, sample, margins_all):
        bad = margins_all.with_columns(
            pl.when((pl.col("variable") == "sex") & (pl.col("category") == 1)).then(0.0).otherwise(pl.col("target")).alias("target")
        )
        with pytest.raises(TargetsError, match=r"^targets: variable 'sex' category 1 in the whole sample has a target of 0 but 5 row\(s\)"):
            rake(sample, weight="w", targets=bad)

    def test_poststratify_takes_one_variable(self, sample, margins_all):
        with pytest.raises(TargetsError, match=r"^poststratify: targets name 2 variables \['sex', 'age'\]; expected exactly one"):
            poststratify(sample, weight="w", targets=margins_all)


# --------------------------------------------------------------------------------------
# targets_from_shares
# --------------------------------------------------------------------------------------


class TestTargetsFromShares:
    def test_totals(self):
        shares = pl.DataFrame(
            {"region": [1, 1, 2, 2], "variable": ["sex"] * 4, "category": [1, 2, 1, 2],
             "share": [0.5, 0.5, 0.25, 0.75], "population": [600.0, 600.0, 400.0, 400.0]}
        )
        out = targets_from_shares(shares, by=["region"])
        assert out.columns == ["region", "variable", "category", "target"]
        assert out["target"].to_list() == [300.0, 300.0, 100.0, 300.0]

    def test_shares_not_summing_to_one(self):
        shares = pl.DataFrame(
            {"region": [1, 1, 2, 2], "variable": ["sex"] * 4, "category": [1, 2, 1, 2],
             "share": [0.5, 0.5, 0.25, 0.70], "population": [600.0, 600.0, 400.0, 400.0]}
        )
        with pytest.raises(TargetsError) as info:
            targets_from_shares(shares, by=["region"])
        assert str(info.value) == (
            "target shares of variable 'sex' in region=2 sum to 0.95; expected 1 (within 1e-06)\n"
            "  hint: check for a missing or duplicated category, or shares given in percent"
        )

    def test_population_must_be_constant_within_group(self):
        shares = pl.DataFrame({"variable": ["sex", "sex"], "category": [1, 2], "share": [0.5, 0.5], "population": [10.0, 12.0]})
        with pytest.raises(TargetsError, match=r"^target shares: the population differs within the whole population \(10 to 12\)"):
            targets_from_shares(shares)


# --------------------------------------------------------------------------------------
# poststratify and calibrate
# --------------------------------------------------------------------------------------


class TestPoststratify:
    def test_factor_is_target_over_base_total(self, sample):
        targets = _targets([("age", 1, 300.0), ("age", 2, 350.0), ("age", 3, 350.0)])
        result = poststratify(sample, weight="w", targets=targets)
        base = sample["w"].to_numpy()
        age = sample["age"].to_numpy()
        for a, t in ((1, 300.0), (2, 350.0), (3, 350.0)):
            np.testing.assert_allclose(result.weights[age == a], base[age == a] * t / base[age == a].sum(), rtol=EXACT)
        assert result.iterations == 1 and result.converged and result.max_margin_error < EXACT


class TestCalibrate:
    def test_linear_is_closed_form_greg(self, sample):
        targets = pl.DataFrame(
            {"variable": ["sex", "sex", "income"], "category": [1, 2, None], "target": [480.0, 520.0, 24000.0]},
            schema={"variable": pl.String, "category": pl.Int64, "target": pl.Float64},
        )
        result = calibrate(sample, weight="w", targets=targets, method="linear")
        d = sample["w"].to_numpy()
        sex = sample["sex"].to_numpy()
        x = np.column_stack([sex == 1, sex == 2, sample["income"].to_numpy()]).astype(float)
        total = np.array([480.0, 520.0, 24000.0])
        # g = 1 + x' (X' D X)^-1 (T - X' d)   (Deville & Sarndal 1992, chi-square distance)
        g = 1 + x @ np.linalg.solve(x.T @ (x * d[:, None]), total - x.T @ d)
        np.testing.assert_allclose(result.weights, d * g, rtol=1e-10)
        assert result.method == "calibrate:linear"
        income = result.margins.filter(pl.col("variable") == "income").row(0, named=True)
        assert income["category"] is None and income["target_share"] is None
        assert income["achieved"] == pytest.approx(24000.0, rel=1e-10)

    @pytest.mark.parametrize("method", sorted(CALIBRATION_METHODS))
    def test_bounds_hold(self, sample, margins_all, method):
        frame = sample.with_columns(pl.col("w") * (1000 / 18.5))  # base weights that estimate the population
        result = calibrate(frame, weight="w", targets=margins_all, method=method, bounds=(0.5, 2.5))
        g = result.g_weights
        assert g.min() >= 0.5 - 1e-9 and g.max() <= 2.5 + 1e-9
        assert result.max_margin_error < 1e-6

    def test_prescaling_as_r_grake(self, sample, margins_all):
        # R grake(): when every population/sample ratio exceeds 20 the base weights are first
        # scaled by the mean ratio and the bounds apply relative to the scaled weights
        unscaled = calibrate(sample, weight="w", targets=margins_all, method="linear", bounds=(0.5, 2.5))
        scale = np.mean([480 / 7.0, 520 / 11.5, 300 / 6.0, 350 / 6.5, 350 / 6.0])
        g = unscaled.g_weights / scale
        assert g.min() >= 0.5 - 1e-9 and g.max() <= 2.5 + 1e-9

    def test_raking_distance_equals_ipf(self, sample, margins_all):
        ipf = rake(sample, weight="w", targets=margins_all, tolerance=1e-14, max_iter=1000)
        cal = calibrate(sample, weight="w", targets=margins_all, method="raking", epsilon=1e-12)
        np.testing.assert_allclose(cal.weights, ipf.weights, rtol=1e-9)

    def test_by_groups(self, sample, margins_by_region):
        result = calibrate(sample, weight="w", targets=margins_by_region, by=["region"], method="logit", bounds=(0.2, 5))
        for region in (1, 2):
            part = sample.filter(pl.col("region") == region)
            alone = calibrate(
                part, weight="w", targets=margins_by_region.filter(pl.col("region") == region).drop("region"),
                method="logit", bounds=(0.2, 5),
            )
            np.testing.assert_allclose(result.weights[sample["region"].to_numpy() == region], alone.weights, rtol=EXACT)

    def test_infeasible_bounds_do_not_converge(self, sample, margins_all):
        with pytest.raises(CalibrationError, match=r"^calibration \(linear, bounds 0.9 .. 1.1\) did not converge in 50 iterations"):
            calibrate(sample, weight="w", targets=margins_all, method="linear", bounds=(0.9, 1.1))

    def test_logit_needs_finite_bounds(self, sample, margins_all):
        with pytest.raises(ValueError, match="logit calibration needs finite bounds"):
            calibrate(sample, weight="w", targets=margins_all, method="logit")

    def test_unknown_method(self, sample, margins_all):
        with pytest.raises(ValueError, match=r"method must be one of \['linear', 'logit', 'raking'\]"):
            calibrate(sample, weight="w", targets=margins_all, method="quadratic")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# trim_weights
# --------------------------------------------------------------------------------------


class TestTrimWeights:
    def test_one_pass_spreads_equally(self):
        # R trimWeights: 10 -> 6 frees 4, shared equally by the three inside: +4/3 each
        result = trim_weights(np.array([1.0, 2.0, 3.0, 10.0]), upper=6.0)
        np.testing.assert_allclose(result.weights, [1 + 4 / 3, 2 + 4 / 3, 3 + 4 / 3, 6.0], rtol=EXACT)
        assert (result.n_trimmed, result.n_trimmed_upper, result.n_trimmed_lower) == (1, 1, 0)
        assert result.redistributed == pytest.approx(4.0)
        assert result.weights.sum() == pytest.approx(16.0)
        assert isinstance(result.adjustment, NoAdjustment)

    def test_strict_repeats_until_inside(self):
        w = np.array([1.0, 1.0, 5.0, 5.0, 20.0])
        loose = trim_weights(w, upper=7.0)
        assert loose.weights.max() > 7.0  # one pass gives 5 + 13/4 to the rows at 5
        strict = trim_weights(w, upper=7.0, strict=True)
        assert strict.weights.max() <= 7.0 + 1e-12
        assert strict.weights.sum() == pytest.approx(w.sum())
        assert strict.iterations > 1

    def test_per_row_caps(self):
        w = np.array([1.0, 4.0, 9.0, 2.0])
        result = trim_weights(w, upper=np.array([10.0, 3.0, 10.0, 10.0]), lower=np.array([1.5, 0.0, 0.0, 0.0]))
        # row 1 raised to 1.5 (-0.5), row 2 cut to 3 (+1): net +0.5 spread over rows 3 and 4
        np.testing.assert_allclose(result.weights, [1.5, 3.0, 9.25, 2.25], rtol=EXACT)

    def test_infeasible_strict_caps(self):
        with pytest.raises(CalibrationError, match=r"^trim_weights: the weights sum to 16, which cannot fit between the caps"):
            trim_weights(np.array([1.0, 2.0, 3.0, 10.0]), upper=3.0, strict=True)

    def test_lower_above_upper(self):
        with pytest.raises(ValueError, match=r"upper must be greater than lower \(row 1: lower 5, upper 2\)"):
            trim_weights(np.array([1.0, 2.0]), lower=5.0, upper=2.0)


# --------------------------------------------------------------------------------------
# diagnostics
# --------------------------------------------------------------------------------------


class TestDiagnostics:
    def test_formulas(self):
        w = np.array([1.0, 1.0, 2.0, 4.0])
        d = weight_diagnostics(w)
        assert d.n == 4 and d.sum == 8.0 and d.mean == 2.0 and d.ratio == 4.0
        assert d.cv == pytest.approx(np.std(w) / 2.0)  # population sd
        assert d.kish_deff == pytest.approx(4 * 22 / 64)  # n sum(w^2) / sum(w)^2
        assert d.kish_deff == pytest.approx(1 + d.cv**2)
        assert d.effective_n == pytest.approx(64 / 22)
        assert d.moe == pytest.approx(1.96 * math.sqrt(d.kish_deff * 0.25 / 4))

    def test_by_group_and_dict(self):
        d = weight_diagnostics(np.array([1.0, 3.0, 2.0, 2.0]), by=np.array(["b", "a", "b", "a"]))
        out = d.to_dict()
        assert set(out) >= {"n", "sum", "min", "max", "ratio", "mean", "cv", "kish_deff", "effective_n", "moe"}
        assert [g["group"] for g in out["by"]] == ["a", "b"]
        assert out["by"][1]["kish_deff"] == pytest.approx(2 * 5 / 9)


# --------------------------------------------------------------------------------------
# Variance adjustments
# --------------------------------------------------------------------------------------


class TestAdjustments:
    def test_poststrat_residuals_sum_to_zero_within_strata(self, sample):
        targets = _targets([("age", 1, 300.0), ("age", 2, 350.0), ("age", 3, 350.0)])
        result = poststratify(sample, weight="w", targets=targets)
        y = sample["income"].to_numpy()
        x = np.column_stack([result.weights * y, result.weights])
        before = x.copy()
        r = result.adjustment.residualize(x)
        np.testing.assert_array_equal(x, before)  # input untouched
        age = sample["age"].to_numpy()
        adj = result.adjustment
        for a in (1, 2, 3):
            rows = age == a
            np.testing.assert_allclose((r[rows] * (adj.old_weights / adj.weights)[rows, None]).sum(axis=0), 0.0, atol=1e-9)
        # the weight column itself is fully explained by the post-strata
        np.testing.assert_allclose(r[:, 1], 0.0, atol=1e-12)

    def test_greg_residuals_orthogonal_to_model(self, sample, margins_all):
        result = calibrate(sample, weight="w", targets=margins_all, method="linear")
        y = sample["income"].to_numpy()
        r = result.adjustment.residualize(result.weights * y)
        assert r.shape == y.shape
        d = result.base_weights
        g = result.g_weights
        sex, age = sample["sex"].to_numpy(), sample["age"].to_numpy()
        x = np.column_stack([sex == 1, sex == 2, age == 1, age == 2, age == 3]).astype(float)
        # qr.resid(qr(X sqrt(d)), x / (g sqrt(d))) is orthogonal to X sqrt(d)
        np.testing.assert_allclose((x * np.sqrt(d)[:, None]).T @ (r / (g * np.sqrt(d))), 0.0, atol=1e-9)

    def test_raking_residuals_remove_margin_totals(self, sample, margins_all):
        result = rake(sample, weight="w", targets=margins_all, tolerance=1e-12, max_iter=200)
        assert isinstance(result.adjustment, RakingAdjustment)
        r = result.adjustment.residualize(result.weights)  # a total that raking fixes
        np.testing.assert_allclose(r, 0.0, atol=1e-6)

    def test_chained_applies_in_order_and_identity_is_identity(self, sample):
        x = np.arange(24.0).reshape(12, 2)
        np.testing.assert_array_equal(NoAdjustment().residualize(x), x)
        targets = _targets([("age", 1, 300.0), ("age", 2, 350.0), ("age", 3, 350.0)])
        ps = poststratify(sample, weight="w", targets=targets).adjustment
        chained = ChainedAdjustment((NoAdjustment(), ps))
        np.testing.assert_allclose(chained.residualize(x), ps.residualize(x), rtol=EXACT)

    def test_adjustment_types(self, sample, margins_all):
        assert isinstance(calibrate(sample, weight="w", targets=margins_all).adjustment, GregAdjustment)
        assert isinstance(
            poststratify(sample, weight="w", targets=margins_all.filter(pl.col("variable") == "sex")).adjustment,
            PostStratAdjustment,
        )


# --------------------------------------------------------------------------------------
# Contract: every weighting method behaves the same way (scikit-learn's estimator checks)
# --------------------------------------------------------------------------------------

Method = Callable[..., WeightingResult]


def _methods() -> list[tuple[str, Method]]:
    out: list[tuple[str, Method]] = [("rake", rake), ("poststratify", poststratify)]
    for name in sorted(CALIBRATION_METHODS):
        bounds = (0.2, 5.0) if name == "logit" else (-math.inf, math.inf)

        def call(frame, *, weight, targets, by=(), _name=name, _bounds=bounds):
            return calibrate(frame, weight=weight, targets=targets, by=by, method=_name, bounds=_bounds)

        out.append((f"calibrate:{name}", call))
    return out


METHODS = _methods()


def test_registry_covers_the_contract():
    assert set(WEIGHTING_METHODS) == {"rake", "poststratify", "calibrate"}
    assert set(CALIBRATION_METHODS) == {"linear", "raking", "logit"}


def _contract_targets(name: str, margins_by_region: pl.DataFrame) -> pl.DataFrame:
    return margins_by_region.filter(pl.col("variable") == "age") if name == "poststratify" else margins_by_region


@pytest.mark.parametrize(("name", "method"), METHODS, ids=[m[0] for m in METHODS])
class TestContract:
    def test_does_not_mutate_input(self, name, method, sample, margins_by_region):
        targets = _contract_targets(name, margins_by_region)
        frame_copy, targets_copy = sample.clone(), targets.clone()
        method(sample, weight="w", targets=targets, by=["region"])
        assert sample.equals(frame_copy) and targets.equals(targets_copy)

    def test_deterministic(self, name, method, sample, margins_by_region):
        targets = _contract_targets(name, margins_by_region)
        a = method(sample, weight="w", targets=targets, by=["region"])
        b = method(sample, weight="w", targets=targets, by=["region"])
        np.testing.assert_array_equal(a.weights, b.weights)
        assert a.margins.equals(b.margins)

    def test_row_order_invariant(self, name, method, sample, margins_by_region):
        targets = _contract_targets(name, margins_by_region)
        order = np.random.default_rng(7).permutation(sample.height)
        # target rows in another order too, keeping the order of the variables (the raking order)
        shuffled = targets.with_columns(pl.col("variable").rank("ordinal").over("variable").alias("_r")).sort(
            pl.col("variable").replace_strict({v: i for i, v in enumerate(targets["variable"].unique(maintain_order=True))}),
            "_r", descending=[False, True],
        ).drop("_r")
        a = method(sample, weight="w", targets=targets, by=["region"])
        b = method(sample[order], weight="w", targets=shuffled, by=["region"])
        np.testing.assert_allclose(b.weights, a.weights[order], rtol=1e-9)

    def test_positive_weights_hit_targets(self, name, method, sample, margins_by_region):
        targets = _contract_targets(name, margins_by_region)
        result = method(sample, weight="w", targets=targets, by=["region"])
        assert isinstance(result, WeightingResult)
        assert result.weights.shape == (sample.height,)
        assert (result.weights > 0).all()
        assert result.converged
        m = result.margins
        np.testing.assert_allclose(m["achieved"].to_numpy(), m["target"].to_numpy(), rtol=1e-5)
        assert result.max_margin_error < 1e-5

    def test_clear_error_on_empty_cell(self, name, method, sample, margins_by_region):
        targets = pl.concat([_contract_targets(name, margins_by_region), _targets([(1, "age", 9, 50.0)])])
        with pytest.raises(CalibrationError, match=r"^empty cell: variable 'age' category 9 in group region=1"):
            method(sample, weight="w", targets=targets, by=["region"])


# --------------------------------------------------------------------------------------
# Property: margins are hit after raking, for random feasible problems
# --------------------------------------------------------------------------------------


@st.composite
def feasible_raking_problems(draw):
    """A sample with 2-3 categorical variables and targets that some positive weights meet.

    Targets are the margins of ``base * u`` for random ``u > 0``: a positive
    solution exists, so IPF converges (Csiszar 1975).
    """
    n = draw(st.integers(min_value=8, max_value=60))
    n_vars = draw(st.integers(min_value=2, max_value=3))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    columns = {}
    for v in range(n_vars):
        k = int(rng.integers(2, 5))
        columns[f"v{v}"] = rng.integers(0, k, size=n)
    base = rng.uniform(0.2, 5.0, size=n)
    u = rng.uniform(0.3, 3.0, size=n)
    frame = pl.DataFrame({"w": base, **columns})
    rows = []
    for name, codes in columns.items():
        for c in np.unique(codes):
            rows.append((name, int(c), float((base * u)[codes == c].sum())))
    return frame, _targets(rows)


@settings(max_examples=60, deadline=None)
@given(feasible_raking_problems())
def test_property_margins_hit_after_raking(problem):
    frame, targets = problem
    result = rake(frame, weight="w", targets=targets, max_iter=2000, tolerance=1e-9)
    assert result.converged
    assert (result.weights > 0).all()
    for variable, category, target in targets.rows():
        achieved = result.weights[frame[variable].to_numpy() == category].sum()
        assert achieved == pytest.approx(target, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(feasible_raking_problems(), st.randoms(use_true_random=False))
def test_property_raking_is_row_order_invariant(problem, random):
    frame, targets = problem
    order = list(range(frame.height))
    random.shuffle(order)
    a = rake(frame, weight="w", targets=targets, max_iter=2000, tolerance=1e-9)
    b = rake(frame[order], weight="w", targets=targets, max_iter=2000, tolerance=1e-9)
    np.testing.assert_allclose(b.weights, a.weights[order], rtol=1e-9)


# --------------------------------------------------------------------------------------
# Replicate weights: the step redone in every replicate
# --------------------------------------------------------------------------------------


class TestReplicates:
    def test_replicate_equal_to_full_sample_reproduces_it(self, sample, margins_all):
        base = sample["w"].to_numpy()
        reps = np.column_stack([base, base * 2.0])
        for result in (
            rake(sample, weight="w", targets=margins_all, replicates=reps),
            calibrate(sample, weight="w", targets=margins_all, replicates=reps),
            poststratify(sample, weight="w", targets=margins_all.filter(pl.col("variable") == "sex"), replicates=reps),
        ):
            np.testing.assert_allclose(result.replicate_weights[:, 0], result.weights, rtol=1e-12)
            # a scaled replicate is scaled back by the same totals
            np.testing.assert_allclose(result.replicate_weights[:, 1], result.weights, rtol=1e-9)

    def test_zero_replicate_weights_stay_zero(self, sample, margins_all):
        base = sample["w"].to_numpy()
        dropped = base.copy()
        dropped[:3] = 0.0  # a jackknife replicate without the first cluster
        result = rake(sample, weight="w", targets=margins_all, replicates=dropped[:, None])
        assert (result.replicate_weights[:3, 0] == 0).all()
        assert result.replicate_weights[:, 0].sum() == pytest.approx(1000.0, rel=1e-4)

    def test_bad_shape(self, sample, margins_all):
        with pytest.raises(DataError, match=r"^replicate weights must be an \(n, R\) array with n = 12 rows; found shape \(3, 2\)"):
            rake(sample, weight="w", targets=margins_all, replicates=np.ones((3, 2)))


# --------------------------------------------------------------------------------------
# Properties over every method: scale invariance of the base weights, and targets equal to
# the sample's own weighted margins leave the weights unchanged
# --------------------------------------------------------------------------------------


SCALE_FREE = [m for m in METHODS if m[0] != "calibrate:logit"]


@pytest.mark.parametrize(("name", "method"), SCALE_FREE, ids=[m[0] for m in SCALE_FREE])
@settings(max_examples=25, deadline=None)
@given(problem=feasible_raking_problems(), scale=st.floats(min_value=0.01, max_value=100.0))
def test_property_base_weight_scale_is_irrelevant(name, method, problem, scale):
    """Targets are totals: multiplying every base weight by c changes nothing. Not for the
    logit distance: its bounds are on g = w / d, so the scale of d moves g within the bounds and
    the solution with it (R's calibrate behaves the same); that method is left out."""
    frame, targets = problem
    if name == "poststratify":
        targets = targets.filter(pl.col("variable") == "v0")
    try:
        a = method(frame, weight="w", targets=targets)
    except CalibrationError:
        return  # a problem this method cannot solve (linear calibration giving negative weights)
    b = method(frame.with_columns(pl.col("w") * scale), weight="w", targets=targets)
    # the iterative methods stop at a tolerance on the totals (1e-7 relative), not exactly
    np.testing.assert_allclose(b.weights, a.weights, rtol=1e-5, atol=1e-7 * float(a.weights.sum()))


@pytest.mark.parametrize(("name", "method"), METHODS, ids=[m[0] for m in METHODS])
@settings(max_examples=25, deadline=None)
@given(problem=feasible_raking_problems())
def test_property_targets_equal_to_the_sample_margins_change_nothing(name, method, problem):
    frame, _ = problem
    variables = ["v0"] if name == "poststratify" else [c for c in frame.columns if c != "w"]
    rows = []
    for v in variables:
        sums = frame.group_by(v).agg(pl.col("w").sum()).sort(v)
        rows += [(v, int(c), float(t)) for c, t in sums.iter_rows()]
    result = method(frame, weight="w", targets=_targets(rows))
    np.testing.assert_allclose(result.weights, frame.get_column("w").to_numpy(), rtol=1e-9)

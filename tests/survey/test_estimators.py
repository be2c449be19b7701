"""Estimators: the proportion() contract, domains by zero weights, covariance, contrasts, missing data."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import ArgumentError, DataError
from pipeline.survey import estimators as est
from pipeline.survey.design import Design
from pipeline.survey.intervals import CI_METHODS


def _sample(seed: int = 0, n: int = 120) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "stratum": rng.integers(0, 4, n),
            "psu": rng.integers(0, 5, n),
            "w": rng.uniform(1, 5, n),
            "region": rng.choice(["north", "south", "west"], n),
            "q": rng.choice([1, 2, 3, 8], n).astype(np.int64),
            "y": rng.normal(10, 2, n),
        }
    )


def _design(frame: pl.DataFrame) -> Design:
    return Design.from_frame(frame, weights="w", ids=["psu"], strata="stratum", nest=True)


class TestProportionContract:
    def test_columns_in_order_with_original_dtypes(self):
        res = est.proportion(_design(_sample()), "q", by=["region"])
        assert res.columns == ["region", "level", "n", "estimate", "se", "ci_low", "ci_high", "df", "deff"]
        assert res.schema["region"] == pl.String
        assert res.schema["level"] == pl.Int64
        assert res.height == 3 * 4

    def test_levels_restrict_rows_and_keep_absent_levels(self):
        f = _sample()
        res = est.proportion(_design(f), "q", by=["region"], levels=[1, 2, 99])
        assert res.height == 3 * 3
        absent = res.filter(pl.col("level") == 99)
        assert absent["estimate"].to_list() == [0.0, 0.0, 0.0]
        # shares of the listed levels are still out of all non-missing values
        full = est.proportion(_design(f), "q", by=["region"])
        joined = res.join(full, on=["region", "level"], suffix="_all")
        np.testing.assert_allclose(joined["estimate"], joined["estimate_all"])

    def test_n_counts_rows_with_a_value(self):
        f = _sample().with_columns(pl.when(pl.col("q") == 8).then(None).otherwise(pl.col("q")).alias("q"))
        res = est.proportion(_design(f), "q", by=["region"])
        counts = f.filter(pl.col("q").is_not_null()).group_by("region").len()
        for region, n in counts.iter_rows():
            assert set(res.filter(pl.col("region") == region)["n"].to_list()) == {n}

    def test_overall_has_no_by_columns(self):
        res = est.proportion(_design(_sample()), "region")
        assert res.columns[0] == "level"
        assert res["level"].to_list() == ["north", "south", "west"]
        assert res["df"].to_list() == [float(_design(_sample()).degf)] * 3

    def test_unknown_ci_method(self):
        with pytest.raises(ArgumentError, match="unknown ci_method 'exact'"):
            est.proportion(_design(_sample()), "q", ci_method="exact")

    def test_missing_by_value_belongs_to_no_domain(self):
        f = _sample().with_columns(pl.when(pl.col("psu") == 0).then(None).otherwise(pl.col("region")).alias("region"))
        res = est.proportion(_design(f), "q", by=["region"])
        assert res["region"].null_count() == 0


class TestDomains:
    def test_domain_equals_zero_weighted_design(self):
        f = _sample()
        d = _design(f)
        by = est.mean(d, "y", by=["region"])
        mask = (f["region"] == "south").to_numpy()
        alone = est.mean(d.subset(mask), "y")
        i = by.index(region="south")
        assert by.estimate[i] == pytest.approx(alone.estimate[0], rel=1e-12)
        assert by.se[i] == pytest.approx(alone.se[0], rel=1e-12)
        assert by.df[i] == alone.df[0]

    def test_domain_is_not_a_filtered_design(self):
        # dropping rows would change the strata/PSU structure and the SE
        f = _sample()
        by = est.mean(_design(f), "y", by=["region"])
        dropped = est.mean(_design(f.filter(pl.col("region") == "south")), "y")
        assert by.estimate[by.index(region="south")] == pytest.approx(dropped.estimate[0])
        assert by.se[by.index(region="south")] != pytest.approx(dropped.se[0], rel=1e-6)

    def test_covariance_between_domains_and_difference(self):
        f = _sample()
        res = est.mean(_design(f), "y", by=["region"])
        i, j = res.index(region="north"), res.index(region="west")
        diff = res.difference({"region": "north"}, {"region": "west"})
        assert diff.estimate[0] == pytest.approx(res.estimate[i] - res.estimate[j])
        var = res.vcov[i, i] + res.vcov[j, j] - 2 * res.vcov[i, j]
        assert diff.se[0] == pytest.approx(np.sqrt(var))
        assert res.vcov[i, j] != 0.0  # domains share PSUs

    def test_na_rm_treats_missing_as_out_of_domain(self):
        f = _sample().with_columns(pl.when(pl.col("q") == 8).then(None).otherwise(pl.col("y")).alias("y"))
        d = _design(f)
        with pytest.raises(DataError, match=r"variable 'y' has \d+ missing value\(s\)"):
            est.mean(d, "y")
        got = est.mean(d, "y", na_rm=True)
        mask = f["y"].is_not_null().to_numpy()
        alone = est.mean(d.with_frame(f.with_columns(pl.col("y").fill_null(0.0))).subset(mask), "y")
        assert got.estimate[0] == pytest.approx(alone.estimate[0])
        assert got.se[0] == pytest.approx(alone.se[0])
        assert got.design_df == d.degf

    def test_ratio_and_total(self):
        f = _sample()
        d = _design(f)
        r = est.ratio(d, "y", "w")
        t_y, t_w = est.total(d, "y"), est.total(d, "w")
        assert r.estimate[0] == pytest.approx(t_y.estimate[0] / t_w.estimate[0])

    def test_total_of_a_categorical_counts_the_population(self):
        f = _sample()
        d = _design(f)
        counts = est.total(d, "region")
        assert counts.estimate.sum() == pytest.approx(d.weights.sum())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# every registered CI method (likelihood, the slowest, drawn last as before)
@given(seed=st.integers(0, 10_000), method=st.sampled_from([m for m in CI_METHODS if m != "likelihood"] + ["likelihood"]))
def test_properties_of_proportions(seed, method):
    f = _sample(seed, n=60)
    d = _design(f)
    res = est.proportion(d, "q", by=["region"], ci_method=method)
    shares = res.group_by("region").agg(pl.col("estimate").sum())
    np.testing.assert_allclose(shares["estimate"], 1.0, rtol=1e-12)
    assert (res["ci_low"] <= res["estimate"] + 1e-15).all()
    assert (res["estimate"] <= res["ci_high"] + 1e-15).all()
    assert ((res["ci_low"] >= 0) & (res["ci_high"] <= 1)).all()
    # row order does not matter
    perm = np.random.default_rng(seed).permutation(f.height)
    res2 = est.proportion(_design(f[perm]), "q", by=["region"], ci_method=method)
    np.testing.assert_allclose(res2["estimate"], res["estimate"], rtol=1e-12)
    np.testing.assert_allclose(res2["se"], res["se"], rtol=1e-9)
    np.testing.assert_allclose(res2["ci_low"], res["ci_low"], rtol=1e-9, atol=1e-14)


# R 4.2.2, survey 4.1-1 (run for this test):
#   apiclus1$x <- ifelse(apiclus1$api99 > 750, NA, as.numeric(apiclus1$sch.wide == "Yes"))
#   clus1 <- svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1)
#   svyciprop(~x, clus1, method = m, na.rm = TRUE)
#   svyby(~x, ~stype, clus1, svyciprop, method = "likelihood", na.rm = TRUE, vartype = "ci")
R_NA_CIPROP = {
    "likelihood": (0.8174888371217558, 0.90600981720725882),
    "beta": (0.81504823285217887, 0.90698496538974294),
    "logit": (0.81519194415801099, 0.9042584947684964),
}
R_NA_CIPROP_BY = {"E": (0.85271369455082957, 0.94602689338622792), "H": (0.52181179923188359, 0.94604425405356085),
                  "M": (0.42317425979478629, 0.87981262456904852)}
RTOL_PROFILE = 1e-6  # conformance README: likelihood intervals (profile root finding)


def _clus1_with_missing() -> Design:
    from pathlib import Path

    data = (Path(__file__).parents[2] / ".." / "shared" / "conformance" / "data" / "apiclus1.csv").resolve()
    f = pl.read_csv(data, infer_schema_length=10000).with_columns(
        pl.when(pl.col("api99") > 750).then(None).otherwise((pl.col("sch.wide") == "Yes").cast(pl.Int64)).alias("x")
    )
    return Design.from_frame(f, ids=["dnum"], weights="pw", fpc=["fpc"])


@pytest.mark.parametrize("method", sorted(R_NA_CIPROP))
def test_ciprop_with_missing_values_matches_r(method):
    """Regression: svyglm rescales weights over all rows before dropping NAs (likelihood's lambda/dispersion)."""
    res = est.proportion(_clus1_with_missing(), "x", levels=[1], ci_method=method)
    lo, hi = R_NA_CIPROP[method]
    assert res["ci_low"][0] == pytest.approx(lo, rel=RTOL_PROFILE)
    assert res["ci_high"][0] == pytest.approx(hi, rel=RTOL_PROFILE)


def test_ciprop_by_domain_with_missing_values_matches_r():
    res = est.proportion(_clus1_with_missing(), "x", levels=[1], by=["stype"], ci_method="likelihood")
    for stype, lo, hi in res.select("stype", "ci_low", "ci_high").iter_rows():
        assert (lo, hi) == pytest.approx(R_NA_CIPROP_BY[stype], rel=RTOL_PROFILE)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), stat=st.sampled_from(["mean", "total"]))
def test_domain_estimate_is_the_zero_weighted_design(seed, stat):
    """Property: a by-domain estimate equals the same estimate on the design with zero weights outside."""
    f = _sample(seed, n=80)
    d = _design(f)
    fn = getattr(est, stat)
    by = fn(d, "y", by=["region"])
    for region in by.keys["region"].to_list():
        alone = fn(d.subset((f["region"] == region).to_numpy()), "y")
        i = by.index(region=region)
        assert by.estimate[i] == pytest.approx(alone.estimate[0], rel=1e-12)
        assert by.se[i] == pytest.approx(alone.se[0], rel=1e-10)
        assert by.deff[i] == pytest.approx(alone.deff[0], rel=1e-10)


def test_by_without_values_is_a_data_error():
    f = _sample().with_columns(pl.lit(None, dtype=pl.String).alias("empty"))
    with pytest.raises(DataError, match="by empty: no row of the design has a value"):
        est.proportion(_design(f), "q", by=["empty"])

"""The estimators' fast path (group totals, pipeline/survey/_grouped.py) against the dense reference.

The dense path builds the ``(n, K)`` influence values and hands them to
``taylor_vcov``/``replicate_vcov``; it still serves designs with weighting
adjustments. A design re-weighted with an identity adjustment therefore gives
the reference for the same statistics, through the public API. Both must agree
to ``REL`` (relative); a standard error that is zero up to rounding (a domain
of one row) may differ by ``ROUNDING`` times the estimate, the noise each path
leaves there.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.survey import estimators as est
from pipeline.survey.design import Design

REL = 1e-12
ROUNDING = 1e-14


class _Identity:
    """A weighting step that changes nothing: forces the dense path."""

    def residualize(self, x: np.ndarray) -> np.ndarray:
        return x


def _reference(d: Design) -> Design:
    reps = None if d.replicates is None else d.replicates.weights
    return d.reweight(d.weights, _Identity(), replicate_weights=reps)


def _frame(seed: int, n: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    q = rng.choice([1, 2, 3, 8], n)
    w = rng.uniform(1, 5, n)
    w[rng.random(n) < 0.05] = 0.0
    return pl.DataFrame(
        {
            "h": rng.integers(0, 5, n),
            "psu": rng.integers(0, 4, n),
            "ssu": rng.integers(0, 3, n),
            "w": w,
            "region": rng.choice(["north", "south", "west"], n),
            "sex": rng.integers(1, 3, n).astype(np.int8),
            "dom": pl.Series([None if m else int(v) for m, v in zip(rng.random(n) < 0.05, rng.integers(0, 4, n))], dtype=pl.Int32),
            "q": q,
            "qn": pl.Series([None if m else int(v) for m, v in zip(rng.random(n) < 0.1, q)], dtype=pl.Int64),
            "qs": rng.choice(["a", "b", "c"], n),
            "b01": (rng.random(n) < 0.3).astype(np.int8),
            "y": rng.normal(10, 2, n),
            "yn": np.where(rng.random(n) < 0.1, np.nan, rng.normal(5, 1, n)),
            "x": rng.uniform(1, 3, n),
            "fpc1": np.full(n, 40.0),
            "fpc2": np.full(n, 10.0),
            # strata 5 and 6 hold a single PSU; every weight positive
            "h_lonely": np.where(rng.random(n) < 0.1, rng.integers(5, 7, n), rng.integers(0, 5, n)),
            "w_pos": rng.uniform(1, 5, n),
        }
    ).with_columns(pl.when(pl.col("h_lonely") >= 5).then(0).otherwise(pl.col("psu")).alias("psu_lonely"))


def _designs(f: pl.DataFrame, seed: int) -> dict[str, Design]:
    rng = np.random.default_rng(seed + 1000)
    out = {
        f"strata_{lonely}": Design.from_frame(f, weights="w", ids=["psu"], strata="h", nest=True, lonely_psu=lonely)
        for lonely in ("remove", "adjust", "average")
    }
    for lonely in ("adjust", "average"):
        out[f"lonely_{lonely}"] = Design.from_frame(
            f, weights="w_pos", ids=["psu_lonely"], strata="h_lonely", nest=True, lonely_psu=lonely
        )
    out["no_clusters"] = Design.from_frame(f, weights="w")
    out["two_stage_fpc"] = Design.from_frame(
        f, weights="w", ids=["psu", "ssu"], strata="h", nest=True, fpc=["fpc1", "fpc2"], lonely_psu="average"
    )
    out["subset"] = out["strata_adjust"].subset(f["sex"].to_numpy() == 1)
    n, n_rep = f.height, 12
    reps = f["w"].to_numpy()[:, None] * rng.uniform(0.5, 1.5, (n, n_rep))
    reps[rng.random((n, n_rep)) < 0.1] = 0.0
    out["jk1"] = Design.from_replicate_weights(f, replicate_weights=reps, weights="w", type="JK1")
    out["bootstrap_mse"] = Design.from_replicate_weights(f, replicate_weights=reps, weights="w", type="bootstrap", mse=True)
    out["jk1_float32"] = Design.from_replicate_weights(f, replicate_weights=reps.astype(np.float32), weights="w", type="JK1")
    out["jk1_subset"] = out["jk1"].subset(f["sex"].to_numpy() == 1)
    out["rank_deficient"] = Design.from_replicate_weights(f, replicate_weights=np.repeat(reps[:, :3], 4, axis=1), weights="w")
    return out


def _assert_same(got: est.Estimates, ref: est.Estimates) -> None:
    np.testing.assert_allclose(got.estimate, ref.estimate, rtol=REL, atol=0)
    for name in ("n", "n_rows", "df"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref, name), err_msg=name)
    assert got.design_df == ref.design_df
    assert got.keys.equals(ref.keys)
    np.testing.assert_array_equal(got.extra["n_nonzero"], ref.extra["n_nonzero"])
    # covariances: relative to the standard errors, or at the rounding level of the estimates
    se = np.sqrt(np.abs(np.diag(ref.vcov)))
    tau = ROUNDING * np.abs(np.nan_to_num(ref.estimate))
    scale = REL * np.outer(se, se) + np.outer(tau, se) + np.outer(se, tau) + np.outer(tau, tau)
    diff = np.abs(got.vcov - ref.vcov)
    both_nan = np.isnan(got.vcov) & np.isnan(ref.vcov)
    assert ((diff <= scale) | both_nan).all(), float(np.nanmax(diff / np.maximum(scale, 1e-300)))
    finite = np.isfinite(ref.deff) & (np.abs(ref.deff) < 1e12)
    np.testing.assert_array_equal(np.isnan(got.deff), np.isnan(ref.deff))
    np.testing.assert_allclose(got.deff[finite], ref.deff[finite], rtol=1e-10)
    if "replicates" in ref.extra:
        np.testing.assert_allclose(got.extra["replicates"], ref.extra["replicates"], rtol=REL, atol=0)


BYS = [(), ("region",), ("dom",), ("sex", "dom")]
CATEGORICAL = [("q", {}), ("qn", {"na_rm": True}), ("qs", {}), ("b01", {}), ("q", {"levels": [1, 2, 99]}), ("qn", {"levels": [8], "na_rm": True})]


@pytest.mark.parametrize("seed,n", [(0, 60), (1, 150), (2, 400)])
def test_grouped_path_equals_dense_reference(seed, n):
    f = _frame(seed, n)
    checked = 0
    for name, d in _designs(f, seed).items():
        ref = _reference(d)
        for by in BYS:
            cases = [
                (lambda dd, v=v, kw=kw, deff=deff: est.proportions(dd, v, by=by, deff=deff, **kw))
                for v, kw in CATEGORICAL
                for deff in (True, "replace")
            ]
            cases += [(lambda dd, v=v, kw=kw: est.total(dd, v, by=by, categorical=True, **kw)) for v, kw in CATEGORICAL[:3]]
            for v, kw in (("y", {}), ("yn", {"na_rm": True})):
                cases += [
                    lambda dd, v=v, kw=kw: est.mean(dd, v, by=by, **kw),
                    lambda dd, v=v, kw=kw: est.total(dd, v, by=by, **kw),
                    lambda dd, v=v, kw=kw: est.ratio(dd, v, "x", by=by, **kw),
                ]
            for case in cases:
                try:
                    expected = case(ref)
                except Exception as exc:  # noqa: BLE001 - both paths must fail alike
                    with pytest.raises(type(exc)):
                        case(d)
                    continue
                _assert_same(case(d), expected)
                checked += 1
    assert checked > 500


def test_proportion_frames_equal_dense_reference_for_every_interval_but_likelihood():
    # 'likelihood' is left out: its profile (R's grid, spline and root search) turns a
    # 1-ulp change of its inputs into 1e-10 or more in tiny domains, with either path.
    f = _frame(5, 300)
    for name, d in _designs(f, 5).items():
        ref = _reference(d)
        for method in ("logit", "beta", "wilson", "korn_graubard", "mean", "asin", "xlogit"):
            for by in ((), ("region",), ("sex", "dom")):
                got = est.proportion(d, "qn", by=by, ci_method=method)
                expected = est.proportion(ref, "qn", by=by, ci_method=method)
                assert got.columns == expected.columns
                for col in got.columns:
                    if got.schema[col].is_float():
                        np.testing.assert_allclose(got[col].to_numpy(), expected[col].to_numpy(), rtol=1e-10, atol=1e-14, err_msg=f"{name} {method} {col}")
                    else:
                        assert got[col].equals(expected[col]), (name, method, col)


def test_several_variables_stack_the_single_calls():
    f = _frame(7, 200)
    for d in (_designs(f, 7)["strata_adjust"], _designs(f, 7)["jk1"]):
        both = est.proportion(d, ["q", "b01"], by=["region"])
        assert both.columns[0] == "variable"
        singles = pl.concat(
            [est.proportion(d, v, by=["region"]).select(pl.lit(v).alias("variable"), pl.all()) for v in ("q", "b01")],
            how="vertical_relaxed",
        )
        assert both.drop("se", "ci_low", "ci_high", "deff").equals(singles.drop("se", "ci_low", "ci_high", "deff"))
        for col in ("se", "ci_low", "ci_high", "deff"):
            np.testing.assert_allclose(both[col].to_numpy(), singles[col].to_numpy(), rtol=1e-13)

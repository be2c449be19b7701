"""Replicate-weight builders: Hadamard matrices, jackknives, BRR, bootstrap."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.errors import ArgumentError, DesignError
from pipeline.survey import estimators as est
from pipeline.survey import replicates as rp
from pipeline.survey.design import Design


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 11, 12, 15, 16, 19, 23, 24, 27, 30, 33, 35, 40, 50, 63, 100])
def test_hadamard_is_a_balanced_hadamard_matrix(n):
    H = rp.hadamard(n)
    assert H.shape[0] == H.shape[1] > n
    S = 2 * H - 1
    np.testing.assert_array_equal(S @ S.T, H.shape[0] * np.eye(H.shape[0]))
    assert (H[0] == 1).all()  # the first row is not used: every other row is balanced


def test_hadamard_sizes_follow_r():
    # R: smallest precooked order (4, 16, 28, 36) in (m, m + 4], m = n - n %% 4; Paley or doubling beyond
    assert [rp.hadamard(n).shape[0] for n in (3, 12, 15, 24, 27, 32, 35, 16, 19)] == [4, 16, 16, 28, 28, 36, 36, 20, 20]


def _strat2(n_strata: int = 6, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for h in range(n_strata):
        for psu in (1, 2):
            for _ in range(rng.integers(3, 6)):
                rows.append((h, psu, rng.uniform(1, 4), rng.normal(5, 1)))
    return pl.DataFrame(rows, schema=["h", "psu", "w", "y"], orient="row")


def test_brr_total_variance_equals_taylor_with_replacement():
    # with full orthogonal balance, BRR reproduces the with-replacement Taylor variance of a total
    d = Design.from_frame(_strat2(), weights="w", ids=["psu"], strata="h", nest=True)
    taylor = est.total(d, "y").se[0]
    rep = est.total(rp.brr(d), "y").se[0]
    assert rep == pytest.approx(taylor, rel=1e-12)


def test_fay_scale_and_weights():
    d = Design.from_frame(_strat2(), weights="w", ids=["psu"], strata="h", nest=True)
    f = rp.fay(d, rho=0.5)
    assert f.replicates.scale == pytest.approx(1 / (8 * 0.25))
    ratios = f.replicates.weights / d.weights[:, None]
    assert set(np.round(np.unique(ratios), 12)) == {0.5, 1.5}


def test_jkn_matches_stratified_taylor_for_totals():
    d = Design.from_frame(_strat2(), weights="w", ids=["psu"], strata="h", nest=True)
    assert est.total(rp.jkn(d), "y").se[0] == pytest.approx(est.total(d, "y").se[0], rel=1e-12)


def test_jk1_refuses_strata_and_brr_needs_pairs():
    d = Design.from_frame(_strat2(), weights="w", ids=["psu"], strata="h", nest=True)
    with pytest.raises(DesignError, match="can't use JK1 for a stratified design"):
        rp.jk1(d)
    base = _strat2().with_row_index("i")
    first = base.filter((pl.col("h") == 0) & (pl.col("psu") == 2))["i"][0]
    odd = base.with_columns(pl.when(pl.col("i") == first).then(3).otherwise(pl.col("psu")).alias("psu"))  # 3 PSUs in stratum 0
    d_odd = Design.from_frame(odd, weights="w", ids=["psu"], strata="h", nest=True)
    with pytest.raises(DesignError, match="odd numbers of PSUs"):
        rp.brr(d_odd)
    lonely = _strat2().filter(~((pl.col("h") == 0) & (pl.col("psu") == 2)))
    d_lonely = Design.from_frame(lonely, weights="w", ids=["psu"], strata="h", nest=True)
    with pytest.raises(DesignError, match=r"fewer than 2 PSUs \(stratum 0\)"):
        rp.brr(d_lonely)
    with pytest.raises(DesignError, match=r"Stratum \(0\) has only one PSU"):
        rp.jkn(d_lonely)
    assert rp.jkn(d_lonely.with_lonely_psu("remove")).replicates.n_replicates == 10  # the lonely PSU gets no replicate


def test_replicates_only_before_weighting():
    class Identity:
        def residualize(self, x):
            return x

    d = Design.from_frame(_strat2(), weights="w", ids=["psu"], strata="h", nest=True)
    with pytest.raises(DesignError, match="before weighting"):
        rp.jkn(d.reweight(d.weights, Identity()))
    with pytest.raises(ArgumentError, match="unknown replicate type 'JK2'"):
        rp.as_replicate_design(d, "JK2")


def test_bootstrap_is_reproducible_and_roughly_unbiased():
    rng = np.random.default_rng(5)
    f = pl.DataFrame({"psu": np.repeat(np.arange(40), 5), "w": 10.0, "y": rng.normal(size=200) + np.repeat(rng.normal(size=40), 5)})
    d = Design.from_frame(f, weights="w", ids=["psu"])
    a = rp.bootstrap(d, replicates=20, seed=11)
    b = rp.bootstrap(d, replicates=20, seed=11)
    np.testing.assert_array_equal(a.replicates.weights, b.replicates.weights)
    assert a.replicates.scale == pytest.approx(40 / (39 * 19))
    many = rp.bootstrap(d, replicates=2000, seed=3)
    assert est.mean(many, "y").se[0] == pytest.approx(est.mean(d, "y").se[0], rel=0.1)

"""Taylor linearization, lonely PSUs, replicate variance and R's QR rank."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.errors import DesignError
from pipeline.survey.design import Design
from pipeline.survey.variance import LONELY_PSU, qr_rank, replicate_rank, replicate_vcov, taylor_vcov


def test_srs_without_replacement_is_textbook():
    # V(total) = N^2 (1 - n/N) s^2 / n for simple random sampling
    rng = np.random.default_rng(1)
    y = rng.normal(size=30)
    f = pl.DataFrame({"y": y, "N": [300] * 30})
    d = Design.from_frame(f, fpc=["N"])
    v = taylor_vcov(d, d.weights * y)[0, 0]
    assert v == pytest.approx(300**2 * (1 - 30 / 300) * y.var(ddof=1) / 30, rel=1e-12)


def test_stratified_is_sum_over_strata():
    rng = np.random.default_rng(2)
    f = pl.DataFrame({"h": np.repeat([0, 1], 10), "y": rng.normal(size=20), "w": np.repeat([3.0, 5.0], 10)})
    d = Design.from_frame(f, weights="w", strata="h")
    x = d.weights * f["y"].to_numpy()
    expected = sum(
        10 * x[f["h"].to_numpy() == h].var(ddof=1) for h in (0, 1)
    )  # with replacement: n/(n-1) sum (z - zbar)^2 = n * var(ddof=1)
    assert taylor_vcov(d, x)[0, 0] == pytest.approx(expected, rel=1e-12)


def test_row_order_does_not_change_variance():
    rng = np.random.default_rng(3)
    f = pl.DataFrame({"h": rng.integers(0, 3, 60), "psu": rng.integers(0, 4, 60), "w": rng.uniform(1, 3, 60), "y": rng.normal(size=60)})
    d = Design.from_frame(f, weights="w", ids=["psu"], strata="h", nest=True)
    perm = rng.permutation(60)
    d2 = Design.from_frame(f[perm], weights="w", ids=["psu"], strata="h", nest=True)
    x = d.weights * f["y"].to_numpy()
    assert taylor_vcov(d, x)[0, 0] == pytest.approx(taylor_vcov(d2, x[perm])[0, 0], rel=1e-12)


def _lonely_design(option: str) -> Design:
    f = pl.DataFrame({"h": [1, 1, 1, 1, 2], "psu": [1, 1, 2, 2, 1], "w": [1.0, 1, 1, 1, 1], "y": [1.0, 2, 3, 4, 10]})
    return Design.from_frame(f, weights="w", ids=["psu"], strata="h", nest=True, lonely_psu=option)


def test_lonely_psu_registry_keys_are_the_options():
    assert set(LONELY_PSU) == {"fail", "remove", "adjust", "average", "certainty"}


def test_lonely_fail_names_the_stratum():
    d = _lonely_design("fail")
    with pytest.raises(DesignError, match=r"Stratum \(2\) has only one PSU at stage 1"):
        taylor_vcov(d, d.weights * d.frame["y"].to_numpy())


def test_lonely_options():
    y = np.array([1.0, 2, 3, 4, 10])
    v = {opt: taylor_vcov(_lonely_design(opt), y)[0, 0] for opt in ("remove", "certainty", "adjust", "average")}
    base = 2 / (2 - 1) * ((3 - 5) ** 2 + (7 - 5) ** 2)  # stratum 1: PSU totals 3 and 7, n/(n-1) sum (z - zbar)^2
    assert v["remove"] == pytest.approx(base)
    assert v["certainty"] == pytest.approx(base)
    assert v["adjust"] == pytest.approx(base + 10**2)  # lonely total centred at 0
    assert v["average"] == pytest.approx(base * 2 / 1)  # 2 strata, 1 with a variance


def test_lonely_stratum_outside_the_rows_does_not_fail():
    d = _lonely_design("fail")
    present = np.array([True, True, True, True, False])
    x = np.array([1.0, 2, 3, 4, 0])
    assert taylor_vcov(d, x, present=present)[0, 0] == pytest.approx(16.0)


def test_replicate_vcov_drops_nan_replicates_and_their_rscales():
    thetas = np.array([[1.0], [3.0], [np.nan], [2.0]])
    v = replicate_vcov(thetas, np.array([2.0]), scale=0.5, rscales=np.array([1.0, 1.0, 1.0, 2.0]), mse=False)
    assert v[0, 0] == pytest.approx(0.5 * (1 + 1 + 0))
    v = replicate_vcov(thetas, np.array([1.0]), scale=1.0, rscales=np.ones(4), mse=True)
    assert v[0, 0] == pytest.approx(0 + 4 + 1)


def test_qr_rank_matches_numpy_on_generic_matrices():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(40, 6))
    assert qr_rank(a) == 6
    b = np.column_stack([a, a[:, 0] + a[:, 1]])
    assert qr_rank(b, tol=1e-5) == 6


def test_replicate_rank_is_r_qr_rank():
    # replicate_rank certifies full rank from a row sample and otherwise runs qr_rank:
    # either way it must give R's answer, including rank-deficient and near-deficient cases
    rng = np.random.default_rng(11)
    n, n_rep = 3000, 20
    groups = rng.integers(0, n_rep, 400)
    psu = rng.integers(0, 400, n)
    w = rng.uniform(1, 3, n)
    jk = np.where(groups[psu][:, None] == np.arange(n_rep), 0.0, n_rep / (n_rep - 1)) * w[:, None]
    cases = {
        "jackknife": jk,
        "collinear": np.column_stack([jk[:, :10], jk[:, :10] * 2.0]),
        "zero column": np.column_stack([jk[:, :-1], np.zeros(n)]),
        "nearly dependent": np.column_stack([jk[:, :-1], jk[:, 0] + 1e-7 * rng.normal(size=n)]),
        "float32": jk.astype(np.float32),
    }
    for name, a in cases.items():
        for rows in (np.ones(n, dtype=bool), psu < 200, psu < 3, np.arange(n) < 15):
            assert replicate_rank(a, rows, tol=1e-5) == qr_rank(a[rows], tol=1e-5), (name, int(rows.sum()))

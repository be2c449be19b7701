"""Quantiles: R's quantile rules and intervals."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.errors import ArgumentError
from pipeline.survey import estimators as est
from pipeline.survey import replicates as rp
from pipeline.survey.design import Design


def _design(n: int = 101, seed: int = 0) -> Design:
    rng = np.random.default_rng(seed)
    f = pl.DataFrame({"psu": np.arange(n) // 5, "w": rng.uniform(1, 3, n), "y": rng.normal(50, 10, n)})
    return Design.from_frame(f, weights="w", ids=["psu"])


def test_math_rule_is_the_weighted_inverse_cdf():
    d = Design.from_frame(pl.DataFrame({"y": [3.0, 1.0, 2.0, 4.0], "w": [1.0, 1.0, 1.0, 1.0]}), weights="w")
    q = est.quantile(d, "y", probs=[0.25, 0.5, 0.51, 1.0])
    np.testing.assert_array_equal(q.estimate, [1.0, 2.0, 3.0, 4.0])
    # school rule averages at exact ties of the cumulative weight
    assert est.quantile(d, "y", probs=[0.5], qrule="school").estimate[0] == 2.5


def test_interval_contains_estimate_and_se_is_r_definition():
    q = est.quantile(_design(), "y", probs=[0.25, 0.5, 0.75])
    assert ((q.ci_low <= q.estimate) & (q.estimate <= q.ci_high)).all()
    from scipy import stats

    np.testing.assert_allclose(q.se, (q.ci_high - q.ci_low) / (2 * stats.t.ppf(0.975, q.df)))


def test_domains_and_replicates():
    d = _design()
    d = d.with_frame(d.frame.with_columns((pl.col("psu") % 2).alias("g")))
    q = est.quantile(d, "y", by=["g"])
    assert q.keys["g"].to_list() == [0, 1]
    rep = rp.jk1(d)
    qr = est.quantile(rep, "y", interval_type="quantile")
    assert np.isfinite(qr.se).all()


def test_bad_options():
    d = _design()
    with pytest.raises(ArgumentError, match="unknown qrule 'hf10'"):
        est.quantile(d, "y", qrule="hf10")
    with pytest.raises(ArgumentError, match="'quantile' needs a replicate design"):
        est.quantile(d, "y", interval_type="quantile")
    with pytest.raises(ArgumentError, match=r"probs must be in \[0, 1\]"):
        est.quantile(d, "y", probs=[1.5])

"""Cross-tabulation and design-based tests of association."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from pipeline.errors import ArgumentError, DataError
from pipeline.survey.design import Design
from pipeline.survey.tables import CHISQ_STATISTICS, _p_fsum_imhof, chisq_test, crosstab


def _srs(n: int = 400, seed: int = 0, dependent: bool = False) -> Design:
    rng = np.random.default_rng(seed)
    a = rng.choice(["x", "y", "z"], n)
    b = np.where(dependent & (a == "x"), "yes", rng.choice(["no", "yes"], n))
    f = pl.DataFrame({"a": a, "b": b, "w": np.ones(n)})
    return Design.from_frame(f, weights="w")


def test_registry_keys_are_r_statistics():
    assert set(CHISQ_STATISTICS) == {"F", "Chisq", "Wald", "adjWald", "lincom", "saddlepoint"}


def test_equal_weights_srs_gives_pearson_chisq_up_to_the_design_effect():
    d = _srs()
    t = chisq_test(d, "a", "b", statistic="Chisq")
    f = d.frame
    counts = np.array([[((f["a"] == r) & (f["b"] == c)).sum() for c in ("no", "yes")] for r in ("x", "y", "z")])
    x2 = stats.chi2_contingency(counts, correction=False)[0]
    assert t.statistic == pytest.approx(x2, rel=1e-12)
    assert t.statistic_name == "X-squared"
    assert t.ndf == 2 and np.isnan(t.ddf)


def test_dependence_is_detected_by_every_statistic():
    d = _srs(dependent=True)
    for s in CHISQ_STATISTICS:
        assert chisq_test(d, "a", "b", statistic=s).p_value < 1e-6, s
    d = _srs(seed=3)
    assert chisq_test(d, "a", "b").p_value > 1e-3


def test_errors():
    d = _srs()
    with pytest.raises(ArgumentError, match="unknown chi-squared statistic 'G'"):
        chisq_test(d, "a", "b", statistic="G")
    single = d.with_frame(d.frame.with_columns(pl.lit("k").alias("k")))
    with pytest.raises(DataError, match="needs at least 2 levels each"):
        chisq_test(single, "a", "k")


def test_imhof_reproduces_known_distributions():
    assert _p_fsum_imhof(5.0, np.ones(3), np.inf) == pytest.approx(stats.chi2.sf(5, 3), rel=1e-9)
    assert _p_fsum_imhof(2.0, np.ones(2), 50.0) == pytest.approx(stats.f.sf(1.0, 2, 50), rel=1e-9)


def test_crosstab_shares_sum_to_one_within_columns():
    tab = crosstab(_srs(), "a", "b")
    sums = tab.group_by("b").agg(pl.col("estimate").sum())
    np.testing.assert_allclose(sums["estimate"], 1.0)
    assert {"total", "total_se", "ci_low", "ci_high"} <= set(tab.columns)


def test_saddlepoint_ddf_is_robust_to_rounding_below_an_integer():
    """Issue 10, item 1: with numpy 2.4.6 / scipy 1.17.1, d0 * nu of the srs chisq test came out
    397.99999999999994; ``int()`` made it 397 where R uses 398 and the p-value moved from R's
    2.2462e-06 to 2.3209e-06. The count is truncated as R's rep() does, past rounding noise."""
    from pipeline.survey.tables import _p_fsum_saddle, _truncate_count

    assert _truncate_count(397.99999999999994) == 398
    assert _truncate_count(398.0) == 398
    assert _truncate_count(397.6) == 397  # a genuine fraction is truncated, as R's rep(times=)
    eig = np.array([1.0, 1.0])
    assert _p_fsum_saddle(30.0, eig, 397.99999999999994) == _p_fsum_saddle(30.0, eig, 398.0)
    assert _p_fsum_saddle(30.0, eig, 397.99999999999994) != _p_fsum_saddle(30.0, eig, 397.0)

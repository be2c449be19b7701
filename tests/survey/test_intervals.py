"""CI methods for proportions: registry, boundaries at p = 0 and 1, known values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from pipeline.errors import ArgumentError
from pipeline.survey.intervals import CI_METHODS, ProportionInputs, proportion_ci

CLOSED = ["logit", "asin", "beta", "mean", "xlogit", "wilson", "korn_graubard"]


def test_registry_is_the_config_vocabulary():
    assert set(CI_METHODS) == {"logit", "likelihood", "asin", "beta", "mean", "xlogit", "wilson", "korn_graubard"}


def test_unknown_method_and_level():
    x = ProportionInputs.simple(0.3, 0.001, df=20, n=100)
    with pytest.raises(ArgumentError, match="unknown ci_method 'exact'"):
        proportion_ci(x, "exact")
    with pytest.raises(ArgumentError, match="conf_level must be between 0 and 1"):
        proportion_ci(x, "logit", 95)


def test_logit_is_wald_on_the_logit_scale():
    p, var, df = 0.2, 0.0004, 30
    lo, hi = proportion_ci(ProportionInputs.simple(p, var, df=df), "logit")
    half = stats.t.ppf(0.975, df) * np.sqrt(var) / (p * (1 - p))
    eta = np.log(p / (1 - p))
    assert lo[0] == pytest.approx(1 / (1 + np.exp(-(eta - half))))
    assert hi[0] == pytest.approx(1 / (1 + np.exp(-(eta + half))))


def test_korn_graubard_with_srs_variance_is_clopper_pearson():
    # var = p(1-p)/n (deff 1) and df = n - 1: n_eff = n, no df adjustment
    n, x = 50, 7
    p = x / n
    lo, hi = proportion_ci(ProportionInputs.simple(p, p * (1 - p) / n, df=n - 1, n=n), "korn_graubard")
    assert lo[0] == pytest.approx(stats.beta.ppf(0.025, x, n - x + 1))
    assert hi[0] == pytest.approx(stats.beta.ppf(0.975, x + 1, n - x))


def test_korn_graubard_floors_the_design_effect_at_one():
    n, p = 50, 0.14
    small = ProportionInputs.simple(p, p * (1 - p) / n / 4, df=n - 1, n=n)  # deff 0.25
    srs = ProportionInputs.simple(p, p * (1 - p) / n, df=n - 1, n=n)
    np.testing.assert_allclose(proportion_ci(small, "korn_graubard"), proportion_ci(srs, "korn_graubard"))


def test_wilson_with_srs_variance_is_the_score_interval():
    n, p = 40, 0.25
    z = stats.norm.ppf(0.975)
    lo, hi = proportion_ci(ProportionInputs.simple(p, p * (1 - p) / n, df=np.inf, n=n), "wilson")
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    assert lo[0] == pytest.approx(centre - half)
    assert hi[0] == pytest.approx(centre + half)


@pytest.mark.parametrize("method", ["logit", "xlogit", "asin", "mean"])
def test_wald_methods_are_degenerate_at_the_boundary(method):
    for p in (0.0, 1.0):
        lo, hi = proportion_ci(ProportionInputs.simple(p, 0.0, df=30, n=80), method)
        assert (lo[0], hi[0]) == (p, p)


@pytest.mark.parametrize("method", ["beta", "korn_graubard"])
def test_beta_methods_at_the_boundary_use_n(method):
    n = 80  # df = n - 1: no degrees-of-freedom adjustment, n_eff = n
    lo, hi = proportion_ci(ProportionInputs.simple(0.0, 0.0, df=n - 1, n=n), method)
    assert lo[0] == 0.0
    assert hi[0] == pytest.approx(1 - 0.025 ** (1 / n))
    lo, hi = proportion_ci(ProportionInputs.simple(1.0, 0.0, df=n - 1, n=n), method)
    assert hi[0] == 1.0
    assert lo[0] == pytest.approx(0.025 ** (1 / n))


def test_wilson_at_the_boundary():
    n = 80
    z = stats.norm.ppf(0.975)
    lo, hi = proportion_ci(ProportionInputs.simple(0.0, 0.0, df=np.inf, n=n), "wilson")
    assert lo[0] == 0.0
    assert hi[0] == pytest.approx(z**2 / (n + z**2))


def test_likelihood_needs_the_fit():
    with pytest.raises(ArgumentError, match="needs the fit's dispersion"):
        proportion_ci(ProportionInputs.simple(0.3, 0.001, df=20, n=100), "likelihood")


def test_likelihood_is_nan_for_replicate_designs():
    x = ProportionInputs.simple(0.3, 0.001, df=20, n=100)
    x = ProportionInputs(**{**x.__dict__, "replicate": True})
    lo, hi = proportion_ci(x, "likelihood")
    assert np.isnan(lo[0]) and np.isnan(hi[0])


@settings(max_examples=200, deadline=None)
@given(
    p=st.floats(0.0, 1.0),
    deff=st.floats(0.2, 20.0),
    n=st.integers(2, 5000),
    df=st.one_of(st.integers(1, 500).map(float), st.just(np.inf)),
    method=st.sampled_from(CLOSED),
    level=st.sampled_from([0.8, 0.9, 0.95, 0.99]),
)
def test_intervals_contain_the_estimate_and_stay_in_0_1(p, deff, n, df, method, level):
    var = deff * p * (1 - p) / n
    x = ProportionInputs(
        np.array([p]), np.array([var]), np.array([df]), np.array([df]), np.array([float(n)]), np.array([float(n)])
    )
    lo, hi = proportion_ci(x, method, level)
    assert 0.0 <= lo[0] <= p <= hi[0] <= 1.0

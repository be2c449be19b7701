"""Confidence intervals for proportions estimated from survey data.

This module owns the registry :data:`CI_METHODS`, keyed by the config
vocabulary. Every method takes a :class:`ProportionInputs` (estimates, their
design-based variances, degrees of freedom and counts; arrays of equal length)
and a confidence level, and returns ``(ci_low, ci_high)`` arrays, always inside
``[0, 1]``.

The first six reproduce R ``survey`` 4.1-1 ``svyciprop(method = ...)``
(``R/svyciprop.R``); ``alpha = 1 - conf_level`` and ``t = qt(1 - alpha/2, df)``
(normal when ``df`` is infinite):

``logit``
    Wald interval for the intercept of ``svyglm(y ~ 1, quasibinomial)`` on the
    logit scale: ``expit(logit(p) -/+ t * se / (p (1 - p)))`` (the glm's
    sandwich variance of the intercept is ``var / (p(1-p))^2``).
``likelihood``
    Profile-likelihood interval of the same quasibinomial glm, reproducing
    ``confint.svyglm(method = "likelihood")``: the signed root deviance,
    divided by the design-based Pearson dispersion, is profiled on the grid of
    MASS ``profile.glm`` and inverted through R's ``spline`` (FMM) and
    ``approx``, at ``+/- qt(alpha/2, df) * sqrt(lambda)`` with ``lambda`` the
    ratio of the design-based to the model-based variance of the intercept.
    Needs the dispersion and the number of rows in the fit; not available for
    replicate designs (NaN bounds, as R).
``asin``
    Wald on ``asin(sqrt(p))`` with ``se / (2 sqrt(p(1-p)))``, back-transformed
    by ``sin(.)^2``. Bounds on the angle scale are clamped to ``[0, pi/2]``
    first (R does not clamp, so its lower bound wraps around above ``p`` when
    the angle interval crosses 0).
``beta``
    Korn-Graubard type Clopper-Pearson interval with
    ``n_eff = p(1-p)/var * (qt(alpha/2, n_rows - 1) / qt(alpha/2, degf))^2``,
    ``[qbeta(alpha/2, n_eff p, n_eff (1-p) + 1), qbeta(1 - alpha/2, n_eff p + 1, n_eff (1-p))]``.
    R ignores the ``df`` argument here and uses the domain's design degrees
    of freedom ``degf`` and row count ``n_rows``; so does this method.
``mean``
    Wald on ``p``: ``p -/+ t se``, truncated to ``[0, 1]`` (R does not truncate).
``xlogit``
    Wald on ``log(p/(1-p))`` by the delta method; the same formula as
    ``logit`` (R fits the glm for one and not the other; the numbers agree
    to the glm's convergence tolerance).

Two more, common in survey practice:

``korn_graubard``
    Korn & Graubard (1998), as in the NCHS data presentation standards for
    proportions (Parker et al. 2017): Clopper-Pearson with the effective
    sample size ``n_eff = min(n, p(1-p)/var)`` (design effect floored at 1),
    adjusted for degrees of freedom by ``(qt(1-alpha/2, n - 1) / qt(1-alpha/2, df))^2``
    with ``n`` the number of rows with a value in the domain and ``df`` the
    interval's degrees of freedom; ``x = n_eff p`` successes.
``wilson``
    Wilson score interval with the effective sample size
    ``n_eff = p(1-p)/var`` in place of ``n`` and ``t_df`` in place of ``z``:
    ``(p + t^2/(2 n_eff) -/+ t sqrt(p(1-p)/n_eff + t^2/(4 n_eff^2))) / (1 + t^2/n_eff)``.

Boundaries. At ``p = 0`` (or 1) the design-based variance is 0 and the
effective sample size undefined:

* ``logit``, ``xlogit``, ``likelihood``, ``asin``, ``mean`` return the
  degenerate interval ``[p, p]`` (R's glm-based methods return a numerically
  degenerate interval there too);
* ``beta``, ``korn_graubard`` and ``wilson`` use ``n_eff = n`` (the rows in
  the domain with a value, Korn & Graubard's convention), giving ``[0, upper]``
  with ``upper = 1 - (alpha/2)^(1/n_eff)`` for the beta methods and
  ``t^2/(n_eff + t^2)`` for Wilson (mirrored at ``p = 1``). R's ``beta``
  returns NaN there. The same fallback is used whenever the variance is 0
  (a domain inside a single PSU) or not finite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ArgumentError

__all__ = ["CI_METHODS", "ProportionInputs", "proportion_ci"]


@dataclass(frozen=True, eq=False)
class ProportionInputs:
    """What the interval methods need, one entry per estimated proportion.

    Attributes
    ----------
    estimate : numpy.ndarray
        Proportions ``p`` (fractions).
    variance : numpy.ndarray
        Design-based variances of ``p``.
    df : numpy.ndarray
        Degrees of freedom of the interval (the domain's ``degf``; ``inf`` for normal).
    design_df : numpy.ndarray
        The domain's design degrees of freedom (R's ``degf(design)``, used by ``beta``).
    n_rows : numpy.ndarray
        Rows of the domain design (R's ``nrow(design)``, used by ``beta``).
    n_obs : numpy.ndarray
        Rows of the domain with a value of the variable (``korn_graubard``,
        ``wilson`` fallbacks, and the glm of ``likelihood``).
    dispersion : numpy.ndarray or None
        Design-based variance of the Pearson residuals of the quasibinomial
        fit (``likelihood`` only).
    glm_start : numpy.ndarray or None
        ``(K, 3)`` sums over the rows of the fit that start R's IRLS (see
        :func:`glm_intercept`); ``likelihood`` only. Without them the
        converged values are used (differences of order 1e-6 from R).
    logit_variance : numpy.ndarray or None
        Variance of ``logit(p)`` when it does not come from the delta method:
        for replicate designs, R's ``svyglm`` refits the glm in every
        replicate (see :func:`replicate_logit_variance`); used by ``logit``.
    replicate : bool
        Replicate design (``likelihood`` is then not available).
    """

    estimate: np.ndarray
    variance: np.ndarray
    df: np.ndarray
    design_df: np.ndarray
    n_rows: np.ndarray
    n_obs: np.ndarray
    dispersion: np.ndarray | None = None
    glm_start: np.ndarray | None = None
    logit_variance: np.ndarray | None = None
    replicate: bool = False

    @classmethod
    def simple(
        cls,
        estimate: float | np.ndarray,
        variance: float | np.ndarray,
        *,
        df: float | np.ndarray = np.inf,
        n: float | np.ndarray = np.nan,
    ) -> ProportionInputs:
        """Inputs from estimates and variances alone (``design_df = df``, ``n_rows = n_obs = n``)."""
        p = np.atleast_1d(np.asarray(estimate, dtype=np.float64))
        shape = p.shape
        b = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), shape).copy()  # noqa: E731
        return cls(p, b(variance), b(df), b(df), b(n), b(n))


def t_quantile(conf_level: float, df: np.ndarray) -> np.ndarray:
    """Upper ``1 - alpha/2`` quantile of t(df) (normal where df is infinite).

    ``scipy.special.stdtrit``/``ndtri`` are what ``scipy.stats.t.ppf``/``norm.ppf``
    evaluate (bit for bit, NaN for ``df <= 0``), without importing
    ``scipy.stats`` (about a second) on the estimate stage's first call.
    """
    from scipy import special

    df = np.asarray(df, dtype=np.float64)
    a = 1.0 - (1.0 - conf_level) / 2.0
    with np.errstate(invalid="ignore"):
        q = np.where(np.isinf(df), special.ndtri(a), special.stdtrit(np.where(np.isinf(df), 1.0, df), a))
    return q


def _degenerate(p: np.ndarray, var: np.ndarray) -> np.ndarray:
    return (p <= 0) | (p >= 1) | ~(var > 0) | ~np.isfinite(var)


def _expit(eta: np.ndarray) -> np.ndarray:
    # R survey's expit: exp(eta) / (1 + exp(eta))
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(eta)
        return np.where(np.isinf(e), 1.0, e / (1.0 + e))


def _ci_logit(x: ProportionInputs, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    p, var = x.estimate, x.variance
    q = t_quantile(conf_level, x.df)
    deg = _degenerate(p, var)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.log(p / (1 - p))
        se = np.sqrt(var) / (p * (1 - p))
        if x.logit_variance is not None:
            se = np.sqrt(x.logit_variance)
    return _logit_bounds(p, eta, se, q, deg)


def _ci_xlogit(x: ProportionInputs, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    p, var = x.estimate, x.variance
    q = t_quantile(conf_level, x.df)
    deg = _degenerate(p, var)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.log(p / (1 - p))
        se = np.sqrt(var) / (p * (1 - p))  # svycontrast: delta method on svymean
    return _logit_bounds(p, eta, se, q, deg)


def _logit_bounds(p, eta, se, q, deg):
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = _expit(eta - q * se), _expit(eta + q * se)
    return np.where(deg, p, low), np.where(deg, p, high)


def _ci_mean(x: ProportionInputs, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    p = x.estimate
    half = t_quantile(conf_level, x.df) * np.sqrt(np.maximum(x.variance, 0.0))
    return np.clip(p - half, 0.0, 1.0), np.clip(p + half, 0.0, 1.0)


def _ci_asin(x: ProportionInputs, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    p, var = x.estimate, x.variance
    deg = _degenerate(p, var)
    q = t_quantile(conf_level, x.df)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.arcsin(np.sqrt(p))
        se = np.sqrt(var) / (2.0 * np.sqrt(p * (1 - p)))  # d asin(sqrt p)/dp = 1/(2 sqrt(p(1-p)))
        lo = np.clip(theta - q * se, 0.0, np.pi / 2)
        hi = np.clip(theta + q * se, 0.0, np.pi / 2)
    return np.where(deg, p, np.sin(lo) ** 2), np.where(deg, p, np.sin(hi) ** 2)


def _clopper_pearson(p: np.ndarray, n_eff: np.ndarray, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy import stats

    a = 1.0 - conf_level
    tiny = 1e-300  # shape parameters below this are zero (boost overflows on subnormals)
    x, y = n_eff * p, n_eff * (1 - p)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        low = stats.beta.ppf(a / 2, np.maximum(x, tiny), y + 1)
        high = stats.beta.ppf(1 - a / 2, x + 1, np.maximum(y, tiny))
    low = np.where((p <= 0) | (x < tiny), 0.0, low)
    high = np.where((p >= 1) | (y < tiny), 1.0, high)
    return low, high


def _ci_beta(x: ProportionInputs, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    from scipy import stats

    p, var = x.estimate, x.variance
    a = 1.0 - conf_level
    deg = _degenerate(p, var)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(deg, x.n_obs, p * (1 - p) / var)
        # R: n.eff * (qt(alpha/2, nrow(design) - 1) / qt(alpha/2, degf(design)))^2
        ratio = stats.t.ppf(a / 2, x.n_rows - 1) / stats.t.ppf(a / 2, x.design_df)
    return _clopper_pearson(p, n_eff * ratio**2, conf_level)


def _ci_korn_graubard(x: ProportionInputs, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    p, var, n = x.estimate, x.variance, x.n_obs
    deg = _degenerate(p, var)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(deg, n, np.minimum(n, p * (1 - p) / var))
        adj = np.where(np.isinf(x.df), 1.0, (t_quantile(conf_level, n - 1) / t_quantile(conf_level, x.df)) ** 2)
    return _clopper_pearson(p, n_eff * adj, conf_level)


def _ci_wilson(x: ProportionInputs, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    p, var = x.estimate, x.variance
    deg = _degenerate(p, var)
    q = t_quantile(conf_level, x.df)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(deg, x.n_obs, p * (1 - p) / var)
        q2n = q * q / n_eff
        centre = (p + q2n / 2) / (1 + q2n)
        half = q * np.sqrt(p * (1 - p) / n_eff + q2n / (4 * n_eff)) / (1 + q2n)
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _ci_likelihood(x: ProportionInputs, conf_level: float) -> tuple[np.ndarray, np.ndarray]:
    p = x.estimate
    low = np.full(p.shape, np.nan)
    high = np.full(p.shape, np.nan)
    if x.replicate:
        return low, high  # R: not available for replicate designs
    if x.dispersion is None:
        raise ArgumentError(
            "ci_method 'likelihood' needs the fit's dispersion and row count",
            hint="use proportion() on a design, or another ci_method for bare estimates",
        )
    deg = _degenerate(p, x.variance)
    for i in range(p.shape[0]):
        if deg[i]:
            low[i] = high[i] = p[i]
            continue
        start = None if x.glm_start is None else tuple(float(v) for v in x.glm_start[i])
        low[i], high[i] = _profile_interval(
            float(p[i]), float(x.variance[i]), float(x.df[i]), float(x.n_obs[i]), float(x.dispersion[i]), conf_level,
            start,
        )
    return low, high


#: CI methods for proportions, keyed by the config's ``ci_method`` values (in the config's order;
#: ``tests/test_vocabulary.py`` checks the two are the same words).
CI_METHODS: dict[str, Callable[[ProportionInputs, float], tuple[np.ndarray, np.ndarray]]] = {
    "logit": _ci_logit,
    "likelihood": _ci_likelihood,
    "asin": _ci_asin,
    "beta": _ci_beta,
    "mean": _ci_mean,
    "xlogit": _ci_xlogit,
    "wilson": _ci_wilson,
    "korn_graubard": _ci_korn_graubard,
}


def proportion_ci(inputs: ProportionInputs, method: str = "logit", conf_level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Confidence interval of proportions by ``method`` (see the module docstring).

    Parameters
    ----------
    inputs : ProportionInputs
        Estimates, variances, degrees of freedom and counts.
    method : {'logit', 'likelihood', 'asin', 'beta', 'mean', 'xlogit', 'korn_graubard', 'wilson'}
        Interval method.
    conf_level : float
        Confidence level in (0, 1).

    Returns
    -------
    tuple of numpy.ndarray
        ``(ci_low, ci_high)``, inside ``[0, 1]`` and around the estimate.

    Examples
    --------
    >>> lo, hi = proportion_ci(ProportionInputs.simple(0.2, 0.0004, df=30), "logit")
    >>> round(float(lo[0]), 4), round(float(hi[0]), 4)
    (0.1623, 0.244)
    """
    if method not in CI_METHODS:
        raise ArgumentError(
            f"unknown ci_method {method!r}",
            hint=f"expected one of {', '.join(CI_METHODS)}",
        )
    if not (0.0 < conf_level < 1.0):
        raise ArgumentError(f"conf_level must be between 0 and 1 (exclusive); got {conf_level!r}", hint="e.g. 0.95")
    low, high = CI_METHODS[method](inputs, conf_level)
    p = inputs.estimate
    low = np.clip(np.asarray(low, dtype=np.float64), 0.0, 1.0)
    high = np.clip(np.asarray(high, dtype=np.float64), 0.0, 1.0)
    # numerical safety: an interval never excludes its estimate
    low = np.where(np.isnan(low), low, np.minimum(low, p))
    high = np.where(np.isnan(high), high, np.maximum(high, p))
    return low, high


# ---------------------------------------------------------------- likelihood
def replicate_logit_variance(
    thetas: np.ndarray, estimate: np.ndarray, *, scale: float, rscales: np.ndarray, mse: bool
) -> np.ndarray:
    """Variance of the logit intercept as R's ``svyglm`` on a replicate design.

    Every replicate refits ``glm(y ~ 1, quasibinomial)`` from the full-sample
    coefficient with the replicate's weights (normalised to sum 1): Newton
    steps ``eta + (p_r - mu)/(mu (1 - mu))`` until the deviance changes by less
    than ``1e-8 (|dev| + 0.1)`` (at most 25), as ``glm.fit``. The variance
    of those coefficients is ``svrVar``. A replicate proportion of 0 or 1 gives
    the large finite coefficient R's glm stops at, not infinity.

    Parameters
    ----------
    thetas : numpy.ndarray
        ``(R, K)`` replicate proportions (NaN: replicate dropped).
    estimate : numpy.ndarray
        ``(K,)`` full-sample proportions.
    """
    from pipeline.survey.variance import replicate_vcov

    p = np.asarray(thetas, dtype=np.float64)
    beta0 = np.log(estimate / (1 - estimate))
    eta = np.broadcast_to(beta0, p.shape).copy()

    def deviance(mu: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return -2.0 * (np.where(p > 0, p * np.log(mu), 0.0) + np.where(p < 1, (1 - p) * np.log1p(-mu), 0.0))

    mu = 1.0 / (1.0 + np.exp(-eta))
    devold = deviance(mu)
    done = ~np.isfinite(p)
    for _ in range(25):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            step = (p - mu) / (mu * (1 - mu))
        eta = np.where(done, eta, eta + np.nan_to_num(step, nan=0.0))
        mu = 1.0 / (1.0 + np.exp(-eta))
        dev = deviance(mu)
        done = done | (np.abs(dev - devold) / (np.abs(dev) + 0.1) < 1e-8)
        devold = dev
        if done.all():
            break
    betas = np.where(np.isfinite(p), eta, np.nan)
    return np.diag(replicate_vcov(betas, beta0, scale=scale, rscales=rscales, mse=mse))


def glm_start_sums(y: np.ndarray, prior: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per-column sums that start R's IRLS for ``glm(y ~ 1, quasibinomial, weights = prior)``.

    Parameters
    ----------
    y : numpy.ndarray
        ``(n, K)`` 0/1 responses.
    prior : numpy.ndarray
        ``(n, K)`` prior weights: survey weights divided by their mean over
        the rows of the (domain) design, missing values included, as
        ``svyglm`` rescales them before ``glm`` drops the missing rows.
    rows : numpy.ndarray
        ``(n, K)`` bool, rows in each fit.

    Returns
    -------
    numpy.ndarray
        ``(K, 4)``: ``sum w2``, ``sum w2 z``, the deviance at the start
        ``mustart = (prior y + 0.5) / (prior + 1)`` (binomial ``initialize``),
        ``w2 = prior m (1 - m)``, ``z = logit(m) + (y - m) / (m (1 - m))``, and
        the sum of the prior weights over the fit's rows.
    """
    m = (prior * y + 0.5) / (prior + 1.0)
    v = m * (1.0 - m)
    w2 = np.where(rows, prior * v, 0.0)
    z = np.log(m / (1.0 - m)) + (y - m) / v
    dev = np.where(rows, -2.0 * prior * np.where(y > 0.5, np.log(m), np.log1p(-m)), 0.0)
    total = np.where(rows, prior, 0.0).sum(axis=0)
    return np.column_stack([w2.sum(axis=0), (w2 * z).sum(axis=0), dev.sum(axis=0), total])


def glm_intercept(p: float, n: float, start: tuple[float, ...] | None) -> tuple[float, float]:
    """Intercept and its model-based variance as R's ``glm.fit`` leaves them.

    Intercept-only binomial IRLS (``epsilon = 1e-8``, ``maxit = 25``): after the
    first step every row shares ``mu``, so each step is
    ``eta + (p - mu) / (mu (1 - mu))``. R's ``summary.glm`` ``cov.unscaled``
    comes from the weights of the *last* step, i.e. ``mu`` before the final
    update: ``1 / (n mu_prev (1 - mu_prev))``, ``n`` the sum of the prior weights.
    """
    if start is None:
        return float(np.log(p / (1 - p))), 1.0 / (n * p * (1 - p))

    def deviance(mu: float) -> float:
        return -2.0 * n * (p * np.log(mu) + (1 - p) * np.log1p(-mu))

    sum_w2, sum_w2z, devold = start[:3]
    eta = sum_w2z / sum_w2
    naive = 1.0 / sum_w2
    for _ in range(25):
        mu = 1.0 / (1.0 + np.exp(-eta))
        dev = deviance(mu)
        if abs(dev - devold) / (abs(dev) + 0.1) < 1e-8:
            break
        devold = dev
        naive = 1.0 / (n * mu * (1 - mu))
        eta = eta + (p - mu) / (mu * (1 - mu))
    return float(eta), float(naive)


def _profile_interval(
    p: float,
    var: float,
    df: float,
    n: float,
    dispersion: float,
    conf_level: float,
    start: tuple[float, ...] | None = None,
) -> tuple[float, float]:
    """R ``confint.svyglm(method = "likelihood")`` for an intercept-only quasibinomial glm.

    Reproduces survey's ``MASSprofile_glm`` (grid of at most 9 steps of
    ``zmax/5`` standard errors each side) and ``confint_profile`` (FMM spline
    through the profile, then linear interpolation of the parameter at the
    cutoffs), on the logit scale; returns the back-transformed bounds.
    """
    from scipy import stats

    level = conf_level
    # n: rows of the fit (zmax); n_w: sum of its prior weights (deviance, naive variance)
    n_w = n if start is None or len(start) < 4 else start[3]
    b0, naive = glm_intercept(p, n_w, start)
    mu0 = 1.0 / (1.0 + np.exp(-b0))
    q = mu0 * (1 - mu0)
    var_beta = var / q**2                 # design-based variance of the intercept (svy.varcoef)
    lam = var_beta / naive                # R: cov.unscaled / naive.cov
    if np.isinf(df):
        alpha = stats.norm.cdf(stats.norm.ppf((1 - level) / 2) * np.sqrt(lam)) / 2
    elif df <= 0:
        return np.nan, np.nan
    else:
        alpha = stats.norm.cdf(stats.t.ppf((1 - level) / 2, df) * np.sqrt(lam)) / 2
    se = np.sqrt(var_beta)
    # R: sqrt(qf(alpha, 1, n - 1, lower.tail = FALSE)); F(1, d) = t(d)^2, and scipy's t tail stays accurate for tiny alpha
    zmax = stats.t.isf(alpha / 2, n - 1)
    delta = zmax / 5
    dev0 = -2 * n_w * (p * np.log(mu0) + (1 - p) * np.log1p(-mu0))
    bs, zs = [b0], [0.0]
    for sgn in (-1.0, 1.0):
        step, z = 0, 0.0
        while (step := step + 1) < 10 and abs(z) < zmax:
            b = b0 + sgn * step * delta * se
            mu = 1.0 / (1.0 + np.exp(-b))
            dev = -2 * n_w * (p * np.log(mu) + (1 - p) * np.log1p(-mu))
            zz = (dev - dev0) / dispersion
            zz = max(zz, 0.0)
            z = sgn * np.sqrt(zz)
            bs.append(b)
            zs.append(z)
    order = np.argsort(zs, kind="stable")
    bx = np.asarray(bs)[order]
    zy = np.asarray(zs)[order]
    # R: sp <- spline(x = par.vals, y = z); approx(sp$y, sp$x, xout = cutoff)
    xs, ys = _r_spline(bx, zy, 3 * len(bx))
    cutoff = np.array([stats.norm.ppf(2 * alpha), stats.norm.isf(2 * alpha)])
    beta_ci = _r_approx(ys, xs, cutoff)
    return float(_expit(beta_ci[0])), float(_expit(beta_ci[1]))


def regularize(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R ``regularize.values(ties = mean)``: sort by x, average y over tied x."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    ux, inv = np.unique(x, return_inverse=True)
    if len(ux) == len(x):
        return x, y
    sums = np.bincount(inv, weights=y)
    return ux, sums / np.bincount(inv)


def _r_spline(x: np.ndarray, y: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """R ``spline(x, y, n, method = "fmm")``: Forsythe-Malcolm-Moler cubic spline at n even points."""
    x, y = regularize(np.asarray(x, float), np.asarray(y, float))
    b, c, d = _fmm_coef(x, y)
    xout = np.linspace(x[0], x[-1], n_out)
    i = np.clip(np.searchsorted(x, xout, side="right") - 1, 0, len(x) - 1)
    dx = xout - x[i]
    return xout, y[i] + dx * (b[i] + dx * (c[i] + dx * d[i]))


def _fmm_coef(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients of R's ``fmm_spline`` (``src/library/stats/src/splines.c``)."""
    n = len(x)
    b = np.zeros(n)
    c = np.zeros(n)
    d = np.zeros(n)
    if n < 2:
        return b, c, d
    if n < 3:
        t = (y[1] - y[0]) / (x[1] - x[0])
        b[:] = t
        return b, c, d
    nm1 = n - 1
    d[0] = x[1] - x[0]
    c[1] = (y[1] - y[0]) / d[0]
    for i in range(1, nm1):
        d[i] = x[i + 1] - x[i]
        b[i] = 2.0 * (d[i - 1] + d[i])
        c[i + 1] = (y[i + 1] - y[i]) / d[i]
        c[i] = c[i + 1] - c[i]
    b[0] = -d[0]
    b[nm1] = -d[n - 2]
    c[0] = c[nm1] = 0.0
    if n > 3:
        c[0] = c[2] / (x[3] - x[1]) - c[1] / (x[2] - x[0])
        c[nm1] = c[n - 2] / (x[nm1] - x[n - 3]) - c[n - 3] / (x[n - 2] - x[n - 4])
        c[0] = c[0] * d[0] * d[0] / (x[3] - x[0])
        c[nm1] = -c[nm1] * d[n - 2] * d[n - 2] / (x[nm1] - x[n - 4])
    for i in range(1, n):
        t = d[i - 1] / b[i - 1]
        b[i] = b[i] - t * d[i - 1]
        c[i] = c[i] - t * c[i - 1]
    c[nm1] = c[nm1] / b[nm1]
    for i in range(n - 2, -1, -1):
        c[i] = (c[i] - d[i] * c[i + 1]) / b[i]
    b[nm1] = (y[nm1] - y[n - 2]) / d[n - 2] + d[n - 2] * (c[n - 2] + 2.0 * c[nm1])
    for i in range(nm1):
        b[i] = (y[i + 1] - y[i]) / d[i] - d[i] * (c[i + 1] + 2.0 * c[i])
        d[i] = (c[i + 1] - c[i]) / d[i]
        c[i] = 3.0 * c[i]
    c[nm1] = 3.0 * c[nm1]
    d[nm1] = d[n - 2]
    return b, c, d


def _r_approx(x: np.ndarray, y: np.ndarray, xout: np.ndarray) -> np.ndarray:
    """R ``approx(x, y, xout)`` (linear, ``rule = 1``: NaN outside the range, ties averaged)."""
    x, y = regularize(np.asarray(x, float), np.asarray(y, float))
    out = np.interp(xout, x, y)
    return np.where((xout < x[0]) | (xout > x[-1]), np.nan, out)

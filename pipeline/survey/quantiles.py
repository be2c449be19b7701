"""Quantiles of a design and their confidence intervals (R ``svyquantile``, survey 4.1-1).

Owns the quantile rules (:data:`QRULES`: R's ``qrule`` = ``math``, ``school``, ``shahvaish``,
``hf1`` .. ``hf9``), the interval types (:data:`QUANTILE_INTERVALS`: Woodruff's ``mean``
family, Fuller's ``score``, the replicate ``quantile``), :func:`quantile` and its result
:class:`Quantiles`. Domains come from :mod:`pipeline.survey._domains`; R's ``uniroot`` from
:mod:`pipeline.survey._linalg`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError
from pipeline.survey._domains import (
    Columns,
    check_missing,
    compute,
    design_column,
    domain_keys,
    domain_matrix,
    domains_of,
    numeric_values,
)
from pipeline.survey._linalg import uniroot
from pipeline.survey.design import Design
from pipeline.survey.variance import replicate_vcov

__all__ = ["QRULES", "QUANTILE_INTERVALS", "Quantiles", "quantile"]


def _r_cumsum(w: np.ndarray) -> np.ndarray:
    """R ``cumsum``: a long double running sum, each value rounded to double.

    Quantile rules compare cumulative weights with ``p * sum(w)``; equal
    weights (``N/n``) make that an exact tie that only R's accumulation
    order and precision decide (e.g. the median of ``srs``).
    """
    return np.cumsum(np.asarray(w, dtype=np.longdouble)).astype(np.float64)


def _qs(x: np.ndarray, w: np.ndarray, p: float) -> tuple[float, float, int, float, float]:
    """R survey ``qs``: sorted x, last position with cumulative weight <= p * total."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    cumw = _r_cumsum(w[order])
    total = cumw[-1]  # R's sum(): the same long double sequential sum
    hits = np.flatnonzero(cumw <= p * total)
    pos = int(hits[-1]) if len(hits) else 0          # R's last(): 1 (first) when none
    nxt = pos if pos == len(xs) - 1 else pos + 1
    return xs[pos], xs[nxt], pos + 1, p - cumw[pos] / total, cumw[nxt] / total - p


def _drop_zero(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = w != 0
    return x[keep], w[keep]


def _q_math(x, w, p):
    x, w = _drop_zero(x, w)
    qlow, qup, _, wlow, _ = _qs(x, w, p)
    return qlow if wlow == 0 else qup


def _q_school(x, w, p):
    x, w = _drop_zero(x, w)
    qlow, qup, _, wlow, _ = _qs(x, w, p)
    return (qlow + qup) / 2 if wlow == 0 else qup


def _q_hf3(x, w, p):
    x, w = _drop_zero(x, w)
    ux, inv = np.unique(x, return_inverse=True)
    qlow, qup, ilow, wlow, _ = _qs(ux, np.bincount(inv.reshape(-1), weights=w), p)
    return qlow if (wlow == 0 and ilow % 2 == 0) else qup


def _q_hf4(x, w, p):
    x, w = _drop_zero(x, w)
    qlow, qup, _, wlow, wup = _qs(x, w, p)
    gamma = wlow / (wup + wlow)
    return qlow * (1 - gamma) + qup * gamma


def _approx_rule2(pk: np.ndarray, xs: np.ndarray, p: float, constant: bool = False) -> float:
    """R ``approx(pk, xs, p, rule = 2)`` (linear, or ``method = "constant", f = 0``)."""
    from pipeline.survey.intervals import regularize

    pk, xs = regularize(pk, xs)
    if p <= pk[0]:
        return float(xs[0])
    if p >= pk[-1]:
        return float(xs[-1])
    if constant:
        return float(xs[np.searchsorted(pk, p, side="right") - 1])
    return float(np.interp(p, pk, xs))


def _sorted(x, w):
    x, w = _drop_zero(x, w)
    order = np.argsort(x, kind="stable")
    return x[order], w[order]


def _q_hf5(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    return _approx_rule2((cumw - ws / 2) / cumw[-1], xs, p)


def _q_hf6(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    return _approx_rule2(cumw / (cumw[-1] + ws[-1]), xs, p)


def _q_hf7(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    # R survey 4.1-1: c(0, cumw[-n]) / cumw[n - 1]
    return _approx_rule2(np.r_[0.0, cumw[:-1]] / cumw[-2], xs, p)


def _q_hf8(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    return _approx_rule2((np.r_[0.0, cumw[:-1]] / 3 + cumw * 2 / 3) / (cumw[-1] + ws[-1] / 3), xs, p)


def _q_hf9(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    return _approx_rule2((np.r_[0.0, cumw[:-1]] * 3 / 8 + cumw * 5 / 8) / (cumw[-1] + ws[-1] / 4), xs, p)


def _q_shahvaish(x, w, p):
    xs, ws = _sorted(x, w)
    n = len(xs)
    s = _r_cumsum(ws / ws.mean())
    return _approx_rule2((s + 0.5 - ws / 2) / (n + 1), xs, p, constant=True)


#: Quantile rules of R survey ``svyquantile(qrule = ...)``, keyed by their R names.
QRULES: dict[str, Any] = {
    "math": _q_math,
    "school": _q_school,
    "shahvaish": _q_shahvaish,
    "hf1": _q_math,
    "hf2": _q_school,
    "hf3": _q_hf3,
    "hf4": _q_hf4,
    "hf5": _q_hf5,
    "hf6": _q_hf6,
    "hf7": _q_hf7,
    "hf8": _q_hf8,
    "hf9": _q_hf9,
}
QUANTILE_INTERVALS: tuple[str, ...] = ("mean", "beta", "xlogit", "asin", "score", "quantile")


@dataclass(frozen=True, eq=False)
class Quantiles:
    """Quantile estimates with their (asymmetric) confidence intervals.

    Attributes
    ----------
    variable : str
    by : tuple of str
    keys : polars.DataFrame
        ``by`` columns and ``level`` (the probability), one row per estimate.
    estimate, se, ci_low, ci_high, df : numpy.ndarray
        ``se`` is R's ``(ci_high - ci_low) / (2 t)``.
    n : numpy.ndarray
        Rows of the domain with a value.
    qrule, interval_type : str
    conf_level : float
    """

    variable: str
    by: tuple[str, ...]
    keys: pl.DataFrame
    estimate: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    df: np.ndarray
    n: np.ndarray
    qrule: str
    interval_type: str
    conf_level: float

    def to_frame(self) -> pl.DataFrame:
        """Tidy frame: ``by`` columns, ``level``, ``n``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``."""
        return self.keys.with_columns(
            pl.Series("n", self.n, dtype=pl.Int64),
            pl.Series("estimate", self.estimate, dtype=pl.Float64),
            pl.Series("se", self.se, dtype=pl.Float64),
            pl.Series("ci_low", self.ci_low, dtype=pl.Float64),
            pl.Series("ci_high", self.ci_high, dtype=pl.Float64),
            pl.Series("df", self.df, dtype=pl.Float64),
        )


def quantile(
    design: Design,
    variable: str,
    *,
    probs: Sequence[float] = (0.5,),
    by: Sequence[str] = (),
    qrule: str = "math",
    interval_type: str = "mean",
    conf_level: float = 0.95,
    na_rm: bool = False,
    df: float | None = None,
) -> Quantiles:
    """Quantiles of ``variable`` with confidence intervals (R ``svyquantile``, survey >= 4.1).

    Parameters
    ----------
    probs : sequence of float
        Probabilities in [0, 1].
    by : sequence of str
        Domains (R ``svyby``): each domain's quantile, interval and df.
    qrule : {'math', 'school', 'shahvaish', 'hf1', ..., 'hf9'}
        Definition of the sample quantile (:data:`QRULES`); ``math`` (R's
        default) is the smallest value whose weighted CDF reaches ``p``.
    interval_type : {'mean', 'beta', 'xlogit', 'asin', 'score', 'quantile'}
        ``mean`` (Woodruff): an interval for ``P(X <= q)`` (Wald, or beta,
        xlogit, asin as :mod:`~pipeline.survey.intervals`) mapped back through
        the quantile rule; a bound whose probability falls outside [0, 1] is
        NaN, as in R. ``score``: Francisco-Fuller test inversion
        (linearization). ``quantile``: replicate quantiles (replicate designs).
        R ignores beta/xlogit/asin for replicate designs (uses ``mean``); so
        does this function.
    conf_level : float
    na_rm : bool
        Rows with a missing value leave the design (and its ``degf``), as R.
    df : float, optional
        Degrees of freedom (default: the domain's ``degf``).

    Returns
    -------
    Quantiles
    """
    from scipy import stats

    if qrule not in QRULES:
        raise ArgumentError(f"unknown qrule {qrule!r}", hint=f"expected one of {', '.join(QRULES)}")
    if interval_type not in QUANTILE_INTERVALS:
        raise ArgumentError(
            f"unknown interval_type {interval_type!r}", hint=f"expected one of {', '.join(QUANTILE_INTERVALS)}"
        )
    if interval_type == "score" and design.is_replicate:
        raise ArgumentError("interval_type 'score' needs a linearization design", hint="use 'mean' or 'quantile'")
    if interval_type == "quantile" and not design.is_replicate:
        raise ArgumentError("interval_type 'quantile' needs a replicate design", hint="use 'mean' (Woodruff)")
    probs = [float(p) for p in probs]
    if any(not (0.0 <= p <= 1.0) for p in probs):
        raise ArgumentError(f"probs must be in [0, 1]; got {probs}", hint="e.g. probs=[0.25, 0.5, 0.75]")
    rule = QRULES[qrule]
    s = design_column(design, variable)
    y = numeric_values(s, variable)
    miss = check_missing(design, s, variable, na_rm)
    dom = domains_of(design, by)
    dm = domain_matrix(dom)
    alpha = 1.0 - conf_level
    method = interval_type if not design.is_replicate else ("quantile" if interval_type == "quantile" else "mean")
    est, lo, hi, dfs, ns = [], [], [], [], []
    for d in range(dm.shape[1]):
        rows = dm[:, d] & ~miss & design.in_design
        sub = design.subset(rows)
        x, w = y[rows], sub.weights[rows]
        ddf = float(sub.degf) if df is None else float(df)
        qcrit = stats.norm.ppf(1 - alpha / 2) if np.isinf(ddf) else stats.t.ppf(1 - alpha / 2, ddf)
        for p in probs:
            qhat = rule(x, w, p)
            if method == "quantile":
                reps = sub.replicates
                thetas = np.array([rule(x, reps.weights[rows, r], p) for r in range(reps.n_replicates)])
                v = replicate_vcov(thetas[:, None], np.array([qhat]), scale=reps.scale, rscales=reps.rscales, mse=reps.mse)
                low, high = qhat - np.sqrt(v[0, 0]) * qcrit, qhat + np.sqrt(v[0, 0]) * qcrit
            elif method == "score":
                low, high = _fuller_ci(sub, y, rows, p, rule, alpha, ddf)
            else:
                low, high = _woodruff_ci(sub, y, rows, qhat, rule, alpha, ddf, method)
            est.append(qhat)
            lo.append(low)
            hi.append(high)
            dfs.append(ddf)
            ns.append(int(rows.sum()))
    lo_a, hi_a, df_a = np.asarray(lo, float), np.asarray(hi, float), np.asarray(dfs, float)
    q = np.where(np.isinf(df_a), stats.norm.ppf(1 - alpha / 2), stats.t.ppf(1 - alpha / 2, np.where(np.isinf(df_a), 1, df_a)))
    keys = domain_keys(dom, probs, pl.Float64)
    return Quantiles(
        variable=variable,
        by=tuple(by),
        keys=keys,
        estimate=np.asarray(est, float),
        se=(hi_a - lo_a) / (2 * q),
        ci_low=lo_a,
        ci_high=hi_a,
        df=df_a,
        n=np.asarray(ns),
        qrule=qrule,
        interval_type=interval_type,
        conf_level=conf_level,
    )


def _woodruff_ci(sub: Design, y: np.ndarray, rows: np.ndarray, qhat: float, rule, alpha: float, df: float, method: str):
    """R ``woodruffCI``: an interval for ``P(X <= qhat)`` mapped back by the quantile rule."""
    from scipy import stats

    from pipeline.survey.intervals import t_quantile

    ind = np.where(rows, (np.nan_to_num(y) <= qhat).astype(np.float64), 0.0)
    cols = Columns(
        a=ind[:, None], b=rows.astype(np.float64)[:, None], rows=rows[:, None], domain_of=np.zeros(1, dtype=np.int64),
        n=np.array([rows.sum()]), dom_rows=rows[:, None],
    )
    m = compute(sub, cols, "mean", "", (), pl.DataFrame({"level": [None]}), False)
    p, var = float(m.estimate[0]), float(m.vcov[0, 0])
    se = np.sqrt(var)
    q = float(t_quantile(1 - alpha, np.array([df]))[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "mean":
            pl_, pu = p - q * se, p + q * se
        elif method == "xlogit":
            eta, s = np.log(p / (1 - p)), se / (p * (1 - p))
            pl_, pu = 1 / (1 + np.exp(-(eta - q * s))), 1 / (1 + np.exp(-(eta + q * s)))
        elif method == "asin":
            th, s = np.arcsin(np.sqrt(p)), se / (2 * np.sqrt(p * (1 - p)))
            pl_, pu = np.sin(max(th - q * s, 0.0)) ** 2, np.sin(min(th + q * s, np.pi / 2)) ** 2
        else:  # beta: R uses nrow() and degf() of the (domain) design, not df
            n_eff = p * (1 - p) / var * (stats.t.ppf(alpha / 2, sub.n_rows - 1) / stats.t.ppf(alpha / 2, sub.degf)) ** 2
            pl_ = stats.beta.ppf(alpha / 2, n_eff * p, n_eff * (1 - p) + 1)
            pu = stats.beta.ppf(1 - alpha / 2, n_eff * p + 1, n_eff * (1 - p))
    x, w = y[rows], sub.weights[rows]
    low = np.nan if (np.isnan(pl_) or pl_ < 0) else rule(x, w, pl_)
    high = np.nan if (np.isnan(pu) or pu > 1) else rule(x, w, pu)
    return low, high


def _fuller_ci(sub: Design, y: np.ndarray, rows: np.ndarray, p: float, rule, alpha: float, df: float):
    """R ``ffullerCI``: invert the score test of ``P(X > theta) = 1 - p`` (R's ``uniroot``)."""
    from pipeline.survey.intervals import t_quantile

    x = y[rows]
    w = sub.weights[rows]

    def score(theta: float, qlimit: float) -> float:
        u = np.where(rows, (np.nan_to_num(y) > theta).astype(np.float64) - (1 - p), 0.0)
        cols = Columns(
            a=u[:, None], b=rows.astype(np.float64)[:, None], rows=rows[:, None], domain_of=np.zeros(1, dtype=np.int64),
            n=np.array([rows.sum()]), dom_rows=rows[:, None],
        )
        m = compute(sub, cols, "mean", "", (), pl.DataFrame({"level": [None]}), False)
        return float(m.estimate[0] / np.sqrt(m.vcov[0, 0]) - qlimit)

    q75, q25 = np.quantile(x, [0.75, 0.25])  # R IQR(): type 7, unweighted
    iqr = q75 - q25
    lower_t, upper_t = x.min() + iqr / 100, x.max() - iqr / 100
    tol = 1 / (100 * np.sqrt(sub.n_rows))
    crit = float(t_quantile(1 - alpha, np.array([df]))[0])
    qlow = uniroot(lambda t: score(t, crit), lower_t, upper_t, tol)
    qup = uniroot(lambda t: score(t, -crit), lower_t, upper_t, tol)
    # R: qrule(x, w, mean(x <= qlow)) with an unweighted mean
    return rule(x, w, float(np.mean(x <= qlow))), rule(x, w, float(np.mean(x <= qup)))

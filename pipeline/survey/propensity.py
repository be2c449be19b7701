"""Nonresponse adjustment by a response-propensity model: propensity classes or inverse propensity.

Owns :func:`model_matrix` (treatment-coded dummies for categorical terms, numeric covariates, as
R's ``model.matrix`` with factors), :func:`fit_propensity` (the logistic regression of the
respondent indicator on that matrix, weighted by the base weights: R
``glm(resp ~ ..., family = quasibinomial, weights = w)``, whose coefficients ``svyglm`` shares;
statsmodels' GLM, imported only here), :func:`propensity_classes` (cut points at the weighted
quantiles of the propensity, R ``svyquantile(qrule = "math")``, then weighting-class factors
within each class, merged as :func:`pipeline.survey.nonresponse.collapse_classes` merges),
:func:`inverse_propensity` (factor ``1 / p`` capped, then scaled to the sample's total) and
:func:`propensity_replicates` (the model refitted, the cut points and factors redone, in every
replicate). The weight stage evaluates ``weight.nonresponse`` and passes plain arrays.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import CalibrationError, DataError
from pipeline.survey.nonresponse import collapse_classes
from pipeline.survey.quantiles import QRULES

__all__ = [
    "PropensityAdjustment",
    "PropensityModel",
    "fit_propensity",
    "inverse_propensity",
    "model_matrix",
    "propensity_classes",
    "propensity_replicates",
]


#: A fitted propensity this close to 0 or 1 is a separated fit (a category where everyone, or no
#: one, responded): its inverse or its class would carry no information but the category.
SEPARATION = 1e-8


@dataclass(frozen=True)
class PropensityModel:
    """A fitted response-propensity model.

    Attributes
    ----------
    names : list of str
        Columns of the model matrix, R's names: ``(Intercept)``, ``COUNTY2`` (term then level), ``AGE``.
    coefficients : ndarray
        The logit coefficients, in the order of ``names``.
    p : ndarray, shape (n,)
        The fitted propensity of every row.
    converged : bool
    iterations : int
    """

    names: list[str]
    coefficients: np.ndarray
    p: np.ndarray
    converged: bool
    iterations: int


@dataclass(frozen=True)
class PropensityAdjustment:
    """A propensity-model nonresponse adjustment of one sample.

    Attributes
    ----------
    method : str
        ``propensity_classes`` or ``inverse_propensity``.
    respondent : ndarray of bool
    factor : ndarray
        The adjustment factor of every respondent (0 for nonrespondents).
    model : PropensityModel
    class_index : ndarray of int or None
        The propensity class of every row (``propensity_classes``), ``0 .. n_classes - 1``.
    classes : list of dict
        Per class: ``class``, ``p_min``, ``p_max``, ``units``, ``respondents``,
        ``nonrespondents``, ``response_rate`` (weighted), ``factor``.
    collapses : list of dict
        Merges of adjacent classes (as :func:`~pipeline.survey.nonresponse.collapse_classes`).
    probabilities : tuple of float
        The quantile levels of the cut points kept (after ties and merges).
    cuts : tuple of float
        The cut points: class k holds ``cuts[k-1] < p <= cuts[k]``.
    summary : dict
        ``inverse_propensity``: the factors' ``min``, ``q1``, ``median``, ``q3``, ``max`` over the
        respondents, ``capped`` (how many), ``cap`` and ``scale`` (the constant applied after capping).
    """

    method: str
    respondent: np.ndarray
    factor: np.ndarray
    model: PropensityModel
    class_index: np.ndarray | None = None
    classes: list[dict[str, Any]] = field(default_factory=list)
    collapses: list[dict[str, Any]] = field(default_factory=list)
    probabilities: tuple[float, ...] = ()
    cuts: tuple[float, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    cap: float | None = None


def model_matrix(frame: pl.DataFrame, terms: Sequence[str], categorical: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The model matrix of ``terms``: an intercept, dummies for the categorical terms, the rest as is.

    A categorical term gets one column per category but the first (sorted, R's factor levels),
    named term then category as R does (``COUNTY2``); the frame must hold no nulls.

    Examples
    --------
    >>> x, names = model_matrix(pl.DataFrame({"A": [1, 2, 3, 2], "X": [0.5, 1.0, 1.5, 2.0]}), ["A", "X"], ["A"])
    >>> names
    ['(Intercept)', 'A2', 'A3', 'X']
    >>> x[:, 1].tolist()
    [0.0, 1.0, 0.0, 1.0]
    """
    n = frame.height
    columns = [np.ones(n)]
    names = ["(Intercept)"]
    cats = set(categorical)
    for term in terms:
        s = frame.get_column(term)
        if term in cats:
            values = s.to_list()
            levels = sorted(set(values))
            for level in levels[1:]:
                columns.append(np.array([v == level for v in values], dtype=np.float64))
                names.append(f"{term}{level}")
        else:
            columns.append(s.cast(pl.Float64).to_numpy())
            names.append(term)
    return np.column_stack(columns), names


def fit_propensity(x: np.ndarray, names: Sequence[str], respondent: np.ndarray, w: np.ndarray) -> PropensityModel:
    """The ``w``-weighted logistic regression of ``respondent`` on ``x`` (maximum likelihood, IRLS).

    R: ``glm(resp ~ ..., family = quasibinomial, weights = w)`` (the point estimates of
    ``svyglm``); statsmodels ``GLM(family=Binomial(), freq_weights=w)``, converged to a relative
    deviance change of 1e-12. The weights are scaled to mean 1 first, as ``svyglm`` scales them
    (the coefficients do not depend on the scale; R's ``glm`` given population weights of about
    1e4 diverges from its start values). Rows with weight 0 (out of a replicate) do not count.

    Raises
    ------
    DataError
        When the matrix is rank deficient (a term that is constant, or a combination of others,
        among the rows with weight) or the fit does not converge (a category in which everyone,
        or no one, responded: the propensity goes to 1 or 0).
    """
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning, PerfectSeparationWarning

    used = w > 0
    rank = np.linalg.matrix_rank(x[used])
    if rank < x.shape[1]:
        q, r = np.linalg.qr(x[used])
        diag = np.abs(np.diag(r))
        aliased = [names[j] for j in range(len(names)) if diag[j] <= 1e-7 * diag.max()]
        raise DataError(
            f"the propensity model's matrix has rank {rank} for {x.shape[1]} columns: {', '.join(aliased) or 'some columns'} "
            "is constant or a combination of the other terms among the weighted rows",
            hint="leave out the term (or merge its categories)",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("error", PerfectSeparationWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            fit = sm.GLM(respondent.astype(np.float64), x, family=sm.families.Binomial(), freq_weights=w / w[used].mean()).fit(tol=1e-12, maxiter=100)
        except (PerfectSeparationWarning, np.linalg.LinAlgError) as exc:
            raise DataError(f"the propensity model cannot be fitted: {exc}", hint="a category where everyone (or no one) responded: merge it or leave out the term") from None
    p = np.asarray(fit.predict(x), dtype=np.float64)
    converged = bool(fit.converged)
    if not converged or not np.isfinite(fit.params).all():
        raise DataError(
            f"the propensity model did not converge in 100 iterations (largest |coefficient| {np.nanmax(np.abs(fit.params)):.3g})",
            hint="a category where everyone (or no one) responded: merge it or leave out the term",
        )
    extreme = used & ((p < SEPARATION) | (p > 1 - SEPARATION))
    if extreme.any():  # R glm: "fitted probabilities numerically 0 or 1 occurred"
        raise DataError(
            f"the propensity model separates the respondents: {int(extreme.sum())} unit(s) have a fitted propensity "
            f"numerically 0 or 1 (largest |coefficient| {np.abs(fit.params).max():.3g})",
            hint="a category where everyone (or no one) responded: merge it or leave out the term",
        )
    return PropensityModel(names=list(names), coefficients=np.asarray(fit.params, dtype=np.float64), p=p, converged=converged,
                           iterations=int(fit.fit_history["iteration"]))


def _cuts(p: np.ndarray, w: np.ndarray, probabilities: Sequence[float]) -> tuple[list[float], list[float]]:
    """Weighted quantiles of ``p`` (R ``svyquantile(qrule = "math")``) at ``probabilities``; a cut
    equal to the one before (ties) or at the largest value (an empty last class) is dropped."""
    rule = QRULES["math"]
    top = p[w > 0].max()
    kept_p, kept_q = [], []
    for prob in probabilities:
        q = float(rule(p, w, prob))
        if (kept_q and q <= kept_q[-1]) or q >= top:
            continue
        kept_p.append(float(prob))
        kept_q.append(q)
    return kept_p, kept_q


def _class_stats(index: np.ndarray, k: int, respondent: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w_all = np.bincount(index, weights=w, minlength=k)
    w_resp = np.bincount(index, weights=np.where(respondent, w, 0.0), minlength=k)
    r = np.bincount(index, weights=respondent.astype(np.float64), minlength=k)
    return w_all, w_resp, r


def propensity_classes(
    model: PropensityModel,
    respondent: np.ndarray,
    w: np.ndarray,
    *,
    n_classes: int,
    min_respondents: int,
    max_factor: float | None,
) -> PropensityAdjustment:
    """Adjust within classes of the estimated propensity (Little 1986; Kalton and Flores-Cervantes 2003).

    The cut points are the ``w``-weighted quantiles of the propensity over every row (respondents
    and nonrespondents) at ``1/n_classes, 2/n_classes, ...`` (R ``svyquantile(qrule = "math")``);
    class k holds the rows with ``cut[k-1] < p <= cut[k]`` (R ``cut(p, c(-Inf, cuts, Inf))``).
    Within each class the respondents' factor is ``sum(w, class) / sum(w, respondents in class)``,
    the inverse of the class's weighted response rate. A class with fewer than
    ``min_respondents`` respondents or a factor above ``max_factor`` is merged with the next
    class (the previous one for the last), as :func:`~pipeline.survey.nonresponse.collapse_classes` does.

    Examples
    --------
    >>> m = PropensityModel(["(Intercept)"], np.zeros(1), np.array([.2, .2, .4, .4, .8, .8]), True, 1)
    >>> a = propensity_classes(m, np.array([True, False, True, False, True, True]), np.ones(6),
    ...                        n_classes=3, min_respondents=1, max_factor=None)
    >>> [c["factor"] for c in a.classes]
    [2.0, 2.0, 1.0]
    """
    p = model.p
    probs, cuts = _cuts(p, w, [k / n_classes for k in range(1, n_classes)])
    index = np.searchsorted(np.asarray(cuts), p, side="left")
    k = len(cuts) + 1
    w_all, w_resp, r = _class_stats(index, k, respondent, w)
    keys = [(j + 1,) for j in range(k)]
    groups, collapses = collapse_classes(
        keys, r.tolist(), w_all.tolist(), w_resp.tolist(), min_respondents=min_respondents, max_factor=max_factor,
        label=lambda key: f"class {key[0]}",
    )
    final = np.empty(k, dtype=np.int64)
    for g, members in enumerate(groups):
        final[members] = g
    index = final[index]
    kept = [j for j in range(len(cuts)) if final[j] != final[j + 1]]  # a cut between two final classes
    probs, cuts = [probs[j] for j in kept], [cuts[j] for j in kept]
    w_all, w_resp, r = _class_stats(index, len(groups), respondent, w)
    factor_k = w_all / w_resp
    report = []
    for g, members in enumerate(groups):
        rows = index == g
        report.append(
            {
                "class": " + ".join(str(m + 1) for m in members),
                "p_min": float(p[rows].min()),
                "p_max": float(p[rows].max()),
                "units": int(rows.sum()),
                "respondents": int((rows & respondent).sum()),
                "nonrespondents": int((rows & ~respondent).sum()),
                "response_rate": float(w_resp[g] / w_all[g]),
                "factor": float(factor_k[g]),
            }
        )
    factor = np.where(respondent, factor_k[index], 0.0)
    return PropensityAdjustment(
        method="propensity_classes", respondent=respondent, factor=factor, model=model, class_index=index, classes=report,
        collapses=collapses, probabilities=tuple(probs), cuts=tuple(cuts),
    )


def _inverse_factors(p: np.ndarray, respondent: np.ndarray, w: np.ndarray, cap: float | None) -> tuple[np.ndarray, int, float]:
    raw = 1.0 / p
    capped = raw > cap if cap is not None else np.zeros(p.shape, dtype=bool)
    f = np.where(capped, cap if cap is not None else 1.0, raw)
    f = np.where(respondent, f, 0.0)
    carried = float((w * f).sum())
    if carried <= 0:
        return f, 0, math.nan
    scale = float(w.sum()) / carried
    return f * scale, int((capped & respondent & (w > 0)).sum()), scale


def inverse_propensity(model: PropensityModel, respondent: np.ndarray, w: np.ndarray, *, max_factor: float | None) -> PropensityAdjustment:
    """Weight each respondent by the inverse of its propensity, ``min(1 / p, max_factor)``, then
    scale every factor by one constant so that the respondents carry the whole sample's ``w``
    total (the cap applies before that scaling, so a capped factor ends at ``max_factor x scale``).

    Examples
    --------
    >>> m = PropensityModel(["(Intercept)"], np.zeros(1), np.array([.5, .5, .25, .25]), True, 1)
    >>> a = inverse_propensity(m, np.array([True, False, True, False]), np.ones(4), max_factor=None)
    >>> a.factor.tolist(), a.summary["scale"]
    ([1.3333333333333333, 0.0, 2.6666666666666665, 0.0], 0.6666666666666666)
    """
    f, capped, scale = _inverse_factors(model.p, respondent, w, max_factor)
    fr = f[respondent]
    q = np.quantile(fr, [0, 0.25, 0.5, 0.75, 1]) if fr.size else np.full(5, math.nan)
    summary = {
        "min": float(q[0]), "q1": float(q[1]), "median": float(q[2]), "q3": float(q[3]), "max": float(q[4]),
        "capped": capped, "cap": max_factor, "scale": scale,
    }
    return PropensityAdjustment(method="inverse_propensity", respondent=respondent, factor=f, model=model, summary=summary, cap=max_factor)


def propensity_replicates(reps: np.ndarray, x: np.ndarray, adj: PropensityAdjustment) -> tuple[np.ndarray, int]:
    """Redo the adjustment in every replicate: the model refitted with the replicate's weights, then
    the cut points at the full sample's kept quantile levels (``propensity_classes``: the number of
    classes and the merges are those of the full sample) and the factors, or the capped and
    scaled inverse propensities. Returns the respondents' rows and the number of (class,
    replicate) pairs with no respondent weight (their weight cannot be carried; factor 1).
    """
    resp = adj.respondent
    out = np.zeros_like(reps)
    lost = 0
    for j in range(reps.shape[1]):
        wr = reps[:, j]
        try:
            fit = fit_propensity(x, adj.model.names, resp, wr)
        except DataError as exc:
            raise CalibrationError(f"replicate {j + 1}: {exc.message}", hint=exc.hint) from None
        if adj.method == "inverse_propensity":
            f, _, _ = _inverse_factors(fit.p, resp, wr, adj.cap)
            out[:, j] = wr * f
            continue
        cuts = [float(QRULES["math"](fit.p, wr, prob)) for prob in adj.probabilities]
        index = np.searchsorted(np.asarray(cuts), fit.p, side="left")
        k = len(cuts) + 1
        w_all, w_resp, _ = _class_stats(index, k, resp, wr)
        empty = w_resp <= 0
        lost += int((empty & (w_all > 0)).sum())
        fk = np.where(empty, 1.0, w_all / np.where(empty, 1.0, w_resp))
        out[:, j] = np.where(resp, wr * fk[index], 0.0)
    return out[resp], lost

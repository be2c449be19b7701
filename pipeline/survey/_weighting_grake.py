"""Generalised raking (Deville & Sarndal 1992; Deville, Sarndal & Sautory 1993).

Owns the calibration distance functions and the Newton iteration that finds
g-weights ``g = 1 + F(x' eta)`` meeting population totals, written after R
survey's ``grake()`` (R/grake.R, survey 4.1-1): same update, same step
halving, same pre-scaling, same stopping rule
``max |misfit| / (1 + |total|) < epsilon``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# MASS::ginv(tol = 256 * .Machine$double.eps) in R survey's grake()
_GINV_RTOL = 256 * np.finfo(np.float64).eps
# grake() rescales the weights first when every population/sample ratio exceeds this
_PRESCALE_THRESHOLD = 20.0


@dataclass(frozen=True)
class CalibrationDistance:
    """A calibration distance, given by its inverse derivative.

    ``g = 1 + fm1(u, lower, upper)`` maps the linear predictor ``u = x' eta``
    to a g-weight and ``df`` is its derivative (R survey's ``Fm1`` and ``dF``).

    Attributes
    ----------
    name : str
        Config vocabulary: ``linear``, ``raking`` or ``logit``.
    fm1, df : callable
        ``(u, lower, upper) -> ndarray``.
    needs_finite_bounds : bool
        Logit calibration is only defined for ``lower < 1 < upper`` finite.
    """

    name: str
    fm1: Callable[[np.ndarray, float, float], np.ndarray]
    df: Callable[[np.ndarray, float, float], np.ndarray]
    needs_finite_bounds: bool = False


def _linear_fm1(u: np.ndarray, lower: float, upper: float) -> np.ndarray:
    return np.minimum(np.maximum(u + 1.0, lower), upper) - 1.0


def _linear_df(u: np.ndarray, lower: float, upper: float) -> np.ndarray:
    return ((u < upper - 1.0) & (u > lower - 1.0)).astype(np.float64)


def _raking_fm1(u: np.ndarray, lower: float, upper: float) -> np.ndarray:
    return np.minimum(np.maximum(np.exp(u), lower), upper) - 1.0


def _raking_df(u: np.ndarray, lower: float, upper: float) -> np.ndarray:
    return np.where((u < upper - 1.0) & (u > lower - 1.0), np.exp(u), 0.0)


def _logit_fm1(u: np.ndarray, lower: float, upper: float) -> np.ndarray:
    a = (upper - lower) / ((upper - 1.0) * (1.0 - lower))
    e = np.exp(a * u)
    return (lower * (upper - 1.0) + upper * (1.0 - lower) * e) / (upper - 1.0 + (1.0 - lower) * e) - 1.0


def _logit_df(u: np.ndarray, lower: float, upper: float) -> np.ndarray:
    a = (upper - lower) / ((upper - 1.0) * (1.0 - lower))
    e = np.exp(a * u)
    den = upper - 1.0 + (1.0 - lower) * e
    num = lower * (upper - 1.0) + upper * (1.0 - lower) * e
    return upper * (1.0 - lower) * e * a / den - num * ((1.0 - lower) * e * a) / den**2


LINEAR = CalibrationDistance("linear", _linear_fm1, _linear_df)
RAKING = CalibrationDistance("raking", _raking_fm1, _raking_df)
LOGIT = CalibrationDistance("logit", _logit_fm1, _logit_df, needs_finite_bounds=True)


@dataclass(frozen=True)
class GrakeOutcome:
    """Result of :func:`grake`: g-weights and how the iteration ended."""

    g: np.ndarray
    iterations: int
    converged: bool
    misfit: float  # max |misfit| / (1 + |total|) at the end


def ginv(a: np.ndarray) -> np.ndarray:
    """Moore-Penrose inverse with MASS::ginv's relative tolerance."""
    u, s, vt = np.linalg.svd(a)
    keep = s > _GINV_RTOL * (s[0] if s.size else 0.0)
    return (vt[keep].T / s[keep]) @ u[:, keep].T


def grake(
    x: np.ndarray,
    d: np.ndarray,
    totals: np.ndarray,
    distance: CalibrationDistance,
    *,
    lower: float,
    upper: float,
    max_iter: int,
    epsilon: float,
) -> GrakeOutcome:
    """Newton iteration for calibration g-weights (R survey ``grake``).

    Parameters
    ----------
    x : ndarray, shape (n, p)
        Calibration model matrix.
    d : ndarray, shape (n,)
        Base weights.
    totals : ndarray, shape (p,)
        Population totals of the columns of ``x``.
    distance : CalibrationDistance
    lower, upper : float
        Bounds on the g-weights.
    max_iter : int
        R's ``maxit``.
    epsilon : float
        R's ``epsilon``: stop when ``max |T - X'w| / (1 + |T|) < epsilon``.
    """
    sample_total = x.T @ d
    scale = None
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = totals / sample_total
    # R: pre-scaling for people starting with no weights
    if scales.size and np.all(np.isfinite(scales)) and scales.min() > _PRESCALE_THRESHOLD:
        scale = float(np.mean(scales))
        d = d * scale
        sample_total = sample_total * scale

    eta = np.zeros(x.shape[1])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        xeta = x @ eta
        g = 1.0 + distance.fm1(xeta, lower, upper)
        deriv = distance.df(xeta, lower, upper)
        iteration = 1
        while True:
            tmat = (x * (d * deriv)[:, None]).T @ x
            misfit = totals - sample_total - x.T @ (d * distance.fm1(xeta, lower, upper))
            deta = ginv(tmat) @ misfit
            eta = eta + deta
            xeta = x @ eta
            g = 1.0 + distance.fm1(xeta, lower, upper)
            deriv = distance.df(xeta, lower, upper)
            # R: step halving while the g-weights or their derivatives overflow
            while iteration < max_iter and not (np.all(np.isfinite(g)) and np.all(np.isfinite(deriv))):
                iteration += 1
                deta = deta / 2.0
                eta = eta - deta
                xeta = x @ eta
                g = 1.0 + distance.fm1(xeta, lower, upper)
                deriv = distance.df(xeta, lower, upper)
            misfit = totals - sample_total - x.T @ (d * distance.fm1(xeta, lower, upper))
            achieved = float(np.max(np.abs(misfit) / (1.0 + np.abs(totals)))) if misfit.size else 0.0
            if np.isfinite(achieved) and achieved < epsilon:
                converged = True
                break
            iteration += 1
            if iteration > max_iter:
                converged = False
                break
    if scale is not None:
        g = g * scale
    return GrakeOutcome(g=g, iterations=min(iteration, max_iter), converged=converged, misfit=achieved)

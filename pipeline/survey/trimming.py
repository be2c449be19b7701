"""Trimming of weights: one sample (R survey ``trimWeights``), within groups, and replicate weights.

Owns :func:`trim_weights` (caps, redistribution of the excess in equal parts), the caps of
grouped trimming (:func:`trim_caps`: ``lower``/``upper`` x the group's median, mean, or 1),
:func:`trim_groups` (trim_weights within each group), :func:`trim_replicates` (every replicate
column trimmed with caps from its own weights) and :func:`outside_caps` with its tolerance
:data:`CAP_RTOL`; :func:`group_codes` codes the trimming groups. The weight stage maps
``weight.trim`` onto these arguments.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError, CalibrationError
from pipeline.survey._weighting_prep import check_weight_array, group_codes
from pipeline.survey._weighting_result import WeightingResult, empty_margins
from pipeline.survey.adjustments import NoAdjustment

__all__ = ["CAP_RTOL", "TRIM_CENTRES", "group_codes", "outside_caps", "trim_caps", "trim_groups", "trim_replicates", "trim_weights"]

#: A weight counts as inside a trimming cap when within this relative distance of it.
CAP_RTOL = 1e-6
#: What the caps multiply (``weight.trim.relative_to``): the group's median or mean weight, or 1.
TRIM_CENTRES = ("median", "mean", "absolute")

Centre = Literal["median", "mean", "absolute"]


def _cap(value: float | np.ndarray | None, n: int, default: float, name: str) -> np.ndarray:
    if value is None:
        return np.full(n, default)
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(n, float(a))
    if a.shape != (n,):
        raise ValueError(f"trim_weights: {name} must be a number or an array with one value per row ({n}); found shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"trim_weights: {name} has {int(np.isnan(a).sum())} missing value(s)")
    return a


def trim_weights(
    weights: np.ndarray | pl.Series,
    *,
    lower: float | np.ndarray | None = None,
    upper: float | np.ndarray | None = None,
    strict: bool = False,
    max_iter: int = 100,
) -> WeightingResult:
    """Trim weights to ``[lower, upper]`` and spread the excess (R survey ``trimWeights``).

    Weights outside the bounds are set to the bound; the net amount removed
    is added in equal parts to every weight that was inside (R adds
    ``sum(trimmings) / n_inside`` to each, not proportionally). With
    ``strict=False`` this is done once, so some weights can end up outside
    the bounds again; ``strict=True`` repeats until none is outside.

    Parameters
    ----------
    weights : array-like, shape (n,)
        Weights to trim (finite, > 0).
    lower, upper : float or array-like of shape (n,), optional
        Caps, one number or one per row (e.g. ``5 * county median``); None: no cap.
    strict : bool
        Repeat until every weight is inside the bounds.
    max_iter : int
        Safety limit on the passes when ``strict``.

    Returns
    -------
    WeightingResult
        ``method='trim'``; ``n_trimmed`` rows trimmed (at least once);
        ``redistributed`` the net weight spread over the others;
        ``adjustment`` a :class:`~pipeline.survey.adjustments.NoAdjustment` (keep the previous step's).

    Raises
    ------
    DataError
        Null, non-finite or non-positive weights.
    CalibrationError
        ``strict`` bounds that cannot hold (the total does not fit between
        ``sum(lower)`` and ``sum(upper)``, or every weight is outside).
    """
    if isinstance(weights, pl.Series):
        weights = weights.cast(pl.Float64).to_numpy()
    w0 = check_weight_array(np.asarray(weights), what="weights to trim")
    n = w0.size
    lo = _cap(lower, n, -math.inf, "lower")
    hi = _cap(upper, n, math.inf, "upper")
    if (lo > hi).any():
        i = int(np.flatnonzero(lo > hi)[0])
        raise ValueError(f"trim_weights: upper must be greater than lower (row {i + 1}: lower {lo[i]:g}, upper {hi[i]:g})")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; found {max_iter!r}")
    total = float(w0.sum())
    if strict and (total > hi.sum() * (1 + 1e-12) or total < lo.sum() * (1 - 1e-12)):
        raise CalibrationError(
            f"trim_weights: the weights sum to {total:.6g}, which cannot fit between the caps "
            f"(sum of lower caps {lo.sum():.6g}, sum of upper caps {hi.sum():.6g})",
            hint="loosen the caps",
        )

    w = w0.copy()
    ever_low = np.zeros(n, dtype=bool)
    ever_high = np.zeros(n, dtype=bool)
    redistributed = 0.0
    passes = 0
    while True:
        outside = (w < lo) | (w > hi)
        if not outside.any():
            break
        if outside.all():
            raise CalibrationError(
                f"trim_weights: all {n} weights are outside the bounds; nothing is left to take the trimmed amount",
                hint="loosen the caps",
            )
        if passes >= max_iter:
            raise CalibrationError(
                f"trim_weights: {int(outside.sum())} weight(s) still outside the bounds after {passes} passes",
                hint="loosen the caps or use strict=False",
            )
        ever_low |= w < lo
        ever_high |= w > hi
        clipped = np.minimum(np.maximum(w, lo), hi)
        excess = float((w - clipped).sum())
        clipped[~outside] += excess / float((~outside).sum())
        w = clipped
        redistributed += excess
        passes += 1
        if not strict:
            break
    if (w <= 0).any():
        raise CalibrationError(
            f"trim_weights: raising weights to the lower bound left {int((w <= 0).sum())} weight(s) non-positive",
            hint="lower the lower cap",
        )
    return WeightingResult(
        weights=w,
        base_weights=w0,
        method="trim",
        iterations=passes,
        converged=not ((w < lo) | (w > hi)).any() if strict else True,
        max_margin_error=math.nan,
        margins=empty_margins(),
        adjustment=NoAdjustment(),
        n_trimmed=int((ever_low | ever_high).sum()),
        n_trimmed_lower=int(ever_low.sum()),
        n_trimmed_upper=int(ever_high.sum()),
        redistributed=redistributed,
    )


def _centre(values: np.ndarray, relative_to: str) -> float:
    if relative_to == "median":
        return float(np.median(values))
    if relative_to == "mean":
        return float(np.mean(values))
    return 1.0


def trim_caps(
    w: np.ndarray, groups: np.ndarray, *, lower: float | None, upper: float | None, relative_to: Centre = "median"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row lower and upper caps: ``lower``/``upper`` x the group's median (mean, or 1).

    ``groups`` is the dense group code (``0 .. G - 1``) of every row; a missing cap is infinite.

    >>> lo, hi = trim_caps(np.array([1.0, 2.0, 3.0, 10.0]), np.array([0, 0, 0, 1]), lower=0.5, upper=2.0)
    >>> lo.tolist(), hi.tolist()
    ([1.0, 1.0, 1.0, 5.0], [4.0, 4.0, 4.0, 20.0])
    """
    if relative_to not in TRIM_CENTRES:
        raise ArgumentError(f"trim: unknown relative_to {relative_to!r}", hint=f"use one of {', '.join(TRIM_CENTRES)}")
    lo = np.full(w.size, -np.inf)
    hi = np.full(w.size, np.inf)
    for g in range(int(groups.max()) + 1):
        rows = groups == g
        c = _centre(w[rows], relative_to)
        if lower is not None:
            lo[rows] = lower * c
        if upper is not None:
            hi[rows] = upper * c
    return lo, hi


def outside_caps(w: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Rows whose weight is outside its caps by more than :data:`CAP_RTOL` (relative)."""
    return (w > hi * (1 + CAP_RTOL)) | (w < lo * (1 - CAP_RTOL))


def trim_groups(
    w: np.ndarray,
    groups: np.ndarray,
    *,
    n_groups: int,
    lower: float | None,
    upper: float | None,
    relative_to: Centre = "median",
    strict: bool = False,
    context: Callable[[int], AbstractContextManager[Any]] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Trim within each group with :func:`trim_weights` (R ``trimWeights``), caps from :func:`trim_caps`.

    Returns the trimmed weights and the counts summed over the groups (``n_trimmed``,
    ``n_trimmed_lower``, ``n_trimmed_upper``, ``redistributed``; ``passes`` the most of any
    group). ``context(g)``, when given, wraps group ``g``'s trimming (for the caller to name the
    group in an error).
    """
    lo, hi = trim_caps(w, groups, lower=lower, upper=upper, relative_to=relative_to)
    out = w.copy()
    counts = {"n_trimmed": 0, "n_trimmed_lower": 0, "n_trimmed_upper": 0, "redistributed": 0.0, "passes": 0}
    for g in range(n_groups):
        rows = np.flatnonzero(groups == g)
        with context(g) if context is not None else nullcontext():
            res = trim_weights(w[rows], lower=lo[rows], upper=hi[rows], strict=strict)
        out[rows] = res.weights
        counts["n_trimmed"] += res.n_trimmed
        counts["n_trimmed_lower"] += res.n_trimmed_lower
        counts["n_trimmed_upper"] += res.n_trimmed_upper
        counts["redistributed"] += float(res.redistributed)
        counts["passes"] = max(counts["passes"], res.iterations)
    return out, counts


def trim_replicates(
    reps: np.ndarray,
    groups: np.ndarray,
    *,
    lower: float | None,
    upper: float | None,
    relative_to: Centre = "median",
    strict: bool = False,
    max_iter: int = 100,
) -> np.ndarray:
    """Trim every replicate column as :func:`trim_weights` trims a sample.

    Within each group, the caps come from the replicate's own weights (its median, mean, or
    absolute) over the rows in the replicate (weight > 0); rows out of the replicate stay at zero.
    The trimmed amount is spread in equal parts over the group's other rows of the replicate
    (R ``trimWeights``); with ``strict`` this repeats until every weight is inside.
    """
    out = np.array(reps, dtype=np.float64, copy=True)
    for g in range(int(groups.max()) + 1):
        rows = np.flatnonzero(groups == g)
        block = out[rows]
        pos = block > 0
        masked = np.where(pos, block, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a replicate without rows in the group: no caps
            if relative_to == "median":
                centre = np.nanmedian(masked, axis=0)
            elif relative_to == "mean":
                centre = np.nanmean(masked, axis=0)
            else:
                centre = np.ones(block.shape[1])
        lo = np.full(block.shape[1], -np.inf) if lower is None else lower * centre
        hi = np.full(block.shape[1], np.inf) if upper is None else upper * centre
        for _ in range(max_iter):
            outside = pos & ((block < lo) | (block > hi))
            inside = pos & ~outside
            n_inside = inside.sum(axis=0)
            act = outside.any(axis=0) & (n_inside > 0)
            if not act.any():
                break
            clipped = np.where(pos, np.clip(block, lo, hi), 0.0)
            excess = (block - clipped).sum(axis=0)
            share = np.where(act, excess / np.maximum(n_inside, 1), 0.0)
            block = np.where(act, clipped + inside * share, block)
            if not strict:
                break
        out[rows] = block
    return out

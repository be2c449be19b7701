"""The result of a weighting step and the diagnostics of a weight vector.

Owns :class:`WeightingResult` (weights, the step's margins and its variance
:class:`~pipeline.survey.adjustments.Adjustment`), :class:`WeightDiagnostics` and
:func:`weight_diagnostics` (Kish design effect, effective n, margin of error), shared by the
calibration methods (:mod:`pipeline.survey.weighting`) and trimming (:mod:`pipeline.survey.trimming`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import DataError
from pipeline.survey._weighting_prep import check_weight_array
from pipeline.survey.adjustments import Adjustment

__all__ = ["MARGIN_COLUMNS", "WeightDiagnostics", "WeightingResult", "empty_margins", "frozen", "rows_of_groups", "weight_diagnostics"]

# z for the 95% margin of error in weight diagnostics.
_Z95 = 1.96

MARGIN_COLUMNS = (
    "variable",
    "category",
    "target_share",
    "unweighted_share",
    "base_share",
    "achieved_share",
    "target",
    "achieved",
)


def frozen(a: np.ndarray) -> np.ndarray:
    if isinstance(a, np.ndarray) and a.dtype == np.float64 and a.base is None and not a.flags.writeable:
        return a  # already a read-only array that owns its data (made read-only by its maker): no copy
    a = np.array(a, dtype=np.float64, copy=True)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class WeightDiagnostics:
    """Summary of a weight vector (Pew's pewmethods vocabulary).

    Attributes
    ----------
    n : int
    sum, min, max, mean : float
    ratio : float
        The weight ratio ``max / min``.
    cv : float
        Coefficient of variation with the population standard deviation
        (``ddof = 0``): ``sd / mean``.
    kish_deff : float
        Kish's design effect due to weighting, ``1 + cv**2 = n * sum(w**2) / sum(w)**2``.
    effective_n : float
        ``n / kish_deff = sum(w)**2 / sum(w**2)``.
    moe : float
        95% margin of error of a proportion of 0.5: ``1.96 * sqrt(kish_deff * 0.25 / n)``.
    by : tuple of (key, WeightDiagnostics)
        The same per group, when ``by`` was given.
    """

    n: int
    sum: float
    min: float
    max: float
    ratio: float
    mean: float
    cv: float
    kish_deff: float
    effective_n: float
    moe: float
    by: tuple[tuple[Any, WeightDiagnostics], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-ready); groups under ``"by"`` as ``{"group": key, ...}``."""
        out: dict[str, Any] = {
            "n": self.n,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "ratio": self.ratio,
            "mean": self.mean,
            "cv": self.cv,
            "kish_deff": self.kish_deff,
            "effective_n": self.effective_n,
            "moe": self.moe,
        }
        if self.by:
            out["by"] = [{"group": key, **d.to_dict()} for key, d in self.by]
        return out


@dataclass(frozen=True, eq=False)
class WeightingResult:
    """The outcome of one weighting step.

    Attributes
    ----------
    weights : ndarray, shape (n,)
        Final weights, aligned with the input rows (read-only).
    base_weights : ndarray, shape (n,)
        The weights the step started from (read-only).
    method : str
        ``poststratify``, ``rake``, ``calibrate:linear|raking|logit`` or ``trim``.
    iterations : int
        Sweeps (raking), Newton steps (calibration), passes (trimming); 1 for
        post-stratification.
    converged : bool
    max_margin_error : float
        Largest ``|achieved share - target share|`` over groups, categorical
        variables and categories; for numeric calibration variables R's misfit
        ``|achieved - target| / (1 + |target|)``. NaN for trimming (no targets).
    margins : polars.DataFrame
        ``*by, variable, category, target_share, unweighted_share, base_share,
        achieved_share, target, achieved``; shares are within the group; for
        numeric variables the share columns are null and ``target``/``achieved``
        are totals. Empty for trimming.
    adjustment : Adjustment
        For the variance (see :class:`Adjustment`).
    n_trimmed : int
        Trimming: rows moved to a bound at least once (``n_trimmed_lower`` to
        the lower, ``n_trimmed_upper`` to the upper bound).
    redistributed : float
        Trimming: total weight taken from (positive) or given to (negative)
        the trimmed rows and spread over the others, summed over passes.
    replicate_weights : ndarray, shape (n, R), or None
        When replicate weights were given: the step redone in every
        replicate, as R survey does for replicate designs (read-only).
    """

    weights: np.ndarray
    base_weights: np.ndarray
    method: str
    iterations: int
    converged: bool
    max_margin_error: float
    margins: pl.DataFrame
    adjustment: Adjustment
    n_trimmed: int = 0
    n_trimmed_lower: int = 0
    n_trimmed_upper: int = 0
    redistributed: float = 0.0
    replicate_weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", frozen(self.weights))
        object.__setattr__(self, "base_weights", frozen(self.base_weights))
        if self.replicate_weights is not None:
            object.__setattr__(self, "replicate_weights", frozen(self.replicate_weights))

    @property
    def g_weights(self) -> np.ndarray:
        """``weights / base_weights``."""
        return self.weights / self.base_weights

    def diagnostics(self, *, by: Any = None) -> WeightDiagnostics:
        """:func:`weight_diagnostics` of the final weights."""
        return weight_diagnostics(self.weights, by=by)

    def summary(self) -> dict[str, Any]:
        """Manifest-ready summary: the step and the weight diagnostics."""
        return {
            "method": self.method,
            "iterations": self.iterations,
            "converged": self.converged,
            "max_margin_error": self.max_margin_error,
            "n_trimmed": self.n_trimmed,
            "n_trimmed_lower": self.n_trimmed_lower,
            "n_trimmed_upper": self.n_trimmed_upper,
            "redistributed": self.redistributed,
            **self.diagnostics().to_dict(),
        }


def empty_margins() -> pl.DataFrame:
    schema: dict[str, pl.DataType] = {"variable": pl.String, "category": pl.Null}
    schema.update({c: pl.Float64 for c in MARGIN_COLUMNS[2:]})
    return pl.DataFrame(schema=schema)


def rows_of_groups(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n_groups + 1))
    return [order[bounds[g] : bounds[g + 1]] for g in range(n_groups)]


def _diagnostics(w: np.ndarray) -> WeightDiagnostics:
    n = w.size
    total = float(w.sum())
    mean = total / n
    cv = float(np.std(w) / mean)  # population sd (ddof = 0)
    kish = float(n * np.sum(w * w) / total**2)
    return WeightDiagnostics(
        n=n,
        sum=total,
        min=float(w.min()),
        max=float(w.max()),
        ratio=float(w.max() / w.min()),
        mean=mean,
        cv=cv,
        kish_deff=kish,
        effective_n=n / kish,
        moe=_Z95 * math.sqrt(kish * 0.25 / n),
    )


def weight_diagnostics(weights: np.ndarray | pl.Series, *, by: Any = None) -> WeightDiagnostics:
    """Summarise a weight vector: spread, weight ratio, Kish design effect, effective n, margin of error.

    Parameters
    ----------
    weights : array-like, shape (n,)
        Finite positive weights.
    by : array-like of shape (n,), optional
        Group labels; per-group diagnostics go to ``.by`` (sorted by label).

    Returns
    -------
    WeightDiagnostics
        ``kish_deff = n * sum(w**2) / sum(w)**2 = 1 + cv**2`` with the
        population-variance CV (Kish 1965); ``effective_n = n / kish_deff``;
        ``moe = 1.96 * sqrt(kish_deff * 0.25 / n)``.

    Examples
    --------
    >>> weight_diagnostics(np.array([1.0, 1.0, 2.0, 4.0])).kish_deff
    1.375
    """
    if isinstance(weights, pl.Series):
        weights = weights.cast(pl.Float64).to_numpy()
    w = check_weight_array(np.asarray(weights), what="weights")
    if w.size == 0:
        raise DataError("weight_diagnostics: no weights")
    overall = _diagnostics(w)
    if by is None:
        return overall
    labels = by.to_numpy() if isinstance(by, pl.Series) else np.asarray(by)
    if labels.shape != w.shape:
        raise ValueError(f"weight_diagnostics: by must have one label per weight ({w.size}); found shape {labels.shape}")
    keys, codes = np.unique(labels, return_inverse=True)
    rows = rows_of_groups(codes.reshape(-1), keys.size)
    per_group = tuple((k, _diagnostics(w[r])) for k, r in zip(keys.tolist(), rows))
    return WeightDiagnostics(**{**overall.__dict__, "by": per_group})

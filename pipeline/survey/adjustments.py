"""Variance adjustments of weighting steps (R survey ``svyrecvar`` with ``design$postStrata``).

Owns what a weighting step leaves for Taylor linearization (:class:`Adjustment`: post-strata,
raking, GREG calibration residuals, none, a chain of them) and :func:`calibration_adjustment`,
the rebuild of the last calibration's adjustment from final weights (the estimate stage's
path): one projection (:func:`pipeline.survey._linalg.projection_basis`), one tolerance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError
from pipeline.survey._linalg import projection_basis
from pipeline.survey._weighting_prep import group_codes

__all__ = [
    "CALIBRATION_ADJUSTMENTS",
    "RAKING_VARIANCE_SWEEPS",
    "Adjustment",
    "ChainedAdjustment",
    "GregAdjustment",
    "NoAdjustment",
    "PostStratAdjustment",
    "RakingAdjustment",
    "RowArrays",
    "calibration_adjustment",
]

#: R survey svyrecvar(): number of passes over the raking margins when residualizing
#: estimating functions for the variance.
RAKING_VARIANCE_SWEEPS = 10


@runtime_checkable
class Adjustment(Protocol):
    """What a weighting step leaves for Taylor linearization.

    The design applies ``residualize`` to the ``(n, k)`` matrix of weighted
    estimating-function values (computed with the final weights) before
    summing by PSU, as R survey's ``svyrecvar`` does with ``design$postStrata``.
    """

    def residualize(self, x: np.ndarray) -> np.ndarray:
        """Return the residualized copy of ``x`` (same shape; ``x`` is not modified)."""
        ...


def _as_matrix(x: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    a = np.array(x, dtype=np.float64, copy=True)
    was_vector = a.ndim == 1
    if was_vector:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] != n:
        raise ValueError(f"residualize expects an array with {n} rows; found shape {np.shape(x)}")
    return a, was_vector


def _key_means(index: np.ndarray, z: np.ndarray, n_keys: int, denominator: np.ndarray) -> np.ndarray:
    sums = np.empty((n_keys, z.shape[1]))
    for j in range(z.shape[1]):
        sums[:, j] = np.bincount(index, weights=z[:, j], minlength=n_keys)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator[:, None] > 0, sums / denominator[:, None], 0.0)


@dataclass(frozen=True, eq=False)
class NoAdjustment:
    """No residualization: the step is treated as fixed weights.

    Returned by :func:`trim_weights`. As in R survey's ``trimWeights`` (which
    keeps ``design$postStrata``), the adjustment of the step before trimming
    stays in force: a design should keep its earlier adjustments and append
    this one, which changes nothing.
    """

    def residualize(self, x: np.ndarray) -> np.ndarray:
        return np.array(x, dtype=np.float64, copy=True)


@dataclass(frozen=True, eq=False)
class PostStratAdjustment:
    """Post-stratification residuals (R survey ``svyrecvar``, ordinary post-strata).

    Within post-stratum ``s`` the estimating functions lose
    ``psw_i * sum_s(x * oldw / psw) / sum_s(oldw)``.

    Attributes
    ----------
    index : ndarray of int, shape (n,)
        Post-stratum of every row (``group x category``).
    weights : ndarray, shape (n,)
        Weights after post-stratification (R's ``attr(, "weights")``).
    old_weights : ndarray, shape (n,)
        Weights before it (R's ``attr(, "oldweights")``).
    """

    index: np.ndarray
    weights: np.ndarray
    old_weights: np.ndarray

    def residualize(self, x: np.ndarray) -> np.ndarray:
        a, was_vector = _as_matrix(x, self.index.size)
        n_keys = int(self.index.max()) + 1
        denominator = np.bincount(self.index, weights=self.old_weights, minlength=n_keys)
        means = _key_means(self.index, a * (self.old_weights / self.weights)[:, None], n_keys, denominator)
        a -= means[self.index] * self.weights[:, None]
        return a[:, 0] if was_vector else a


class RowArrays(Sequence[np.ndarray]):
    """A tuple of read-only row arrays, each made on first access (and then kept).

    Raking's variance adjustment holds two ``(n,)`` arrays per margin; made eagerly they cost
    more time and memory than the raking itself on large samples, and most callers never use them.
    """

    def __init__(self, makers: Sequence[Callable[[], np.ndarray]]) -> None:
        self._makers = tuple(makers)
        self._made: dict[int, np.ndarray] = {}

    @staticmethod
    def _read_only(a: np.ndarray) -> np.ndarray:
        a = np.ascontiguousarray(a)
        a.flags.writeable = False
        return a

    def __len__(self) -> int:
        return len(self._makers)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        i = range(len(self._makers))[i]
        if i not in self._made:
            self._made[i] = self._read_only(self._makers[i]())
        return self._made[i]

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


@dataclass(frozen=True, eq=False)
class RakingAdjustment:
    """Raking residuals (R survey ``svyrecvar``, ``raking`` branch).

    Ten passes over the margins; margin ``m`` replaces ``x`` by
    ``x - psw_m * ave(x / psw_m, margin_m)`` with ``ave`` the unweighted mean
    within the margin's category and ``psw_m`` the weights right after margin
    ``m`` was matched in the last raking sweep.

    Attributes
    ----------
    index : tuple of ndarray of int
        Per margin, the ``group x category`` key of every row.
    weights : tuple of ndarray
        Per margin, the weights after that margin's step in the last sweep.
    sweeps : int
        Passes over the margins (R: 10).
    """

    index: tuple[np.ndarray, ...]
    weights: tuple[np.ndarray, ...]
    sweeps: int = RAKING_VARIANCE_SWEEPS

    def residualize(self, x: np.ndarray) -> np.ndarray:
        a, was_vector = _as_matrix(x, self.index[0].size)
        prepared = []
        for idx in self.index:
            n_keys = int(idx.max()) + 1
            prepared.append((idx, n_keys, np.bincount(idx, minlength=n_keys).astype(np.float64)))
        for _ in range(self.sweeps):
            for (idx, n_keys, counts), psw in zip(prepared, self.weights):
                means = _key_means(idx, a / psw[:, None], n_keys, counts)
                a -= psw[:, None] * means[idx]
        return a[:, 0] if was_vector else a


@dataclass(frozen=True, eq=False)
class GregAdjustment:
    """Calibration (GREG) residuals (R survey ``svyrecvar``, ``greg_calibration``).

    ``x`` becomes ``qr.resid(qr(X * sqrt(d)), x / w) * w`` with ``w = g * sqrt(d)``
    (``d`` base weights, ``g`` g-weights). Calibration within groups uses the
    block-diagonal model, i.e. one projection per group.

    Attributes
    ----------
    blocks : tuple of (ndarray of int or None, ndarray)
        Per group: its rows (None: all rows) and an orthonormal basis of the
        column space of ``X_g * sqrt(d_g)``.
    w : ndarray, shape (n,)
        ``g * sqrt(d)``.
    """

    blocks: tuple[tuple[np.ndarray | None, np.ndarray], ...]
    w: np.ndarray

    def residualize(self, x: np.ndarray) -> np.ndarray:
        a, was_vector = _as_matrix(x, self.w.size)
        z = a / self.w[:, None]
        for rows, basis in self.blocks:
            if rows is None:
                z -= basis @ (basis.T @ z)
            else:
                zb = z[rows]
                z[rows] = zb - basis @ (basis.T @ zb)
        a = z * self.w[:, None]
        return a[:, 0] if was_vector else a


@dataclass(frozen=True, eq=False)
class ChainedAdjustment:
    """Several adjustments applied in order (R: the ``design$postStrata`` list)."""

    steps: tuple[Adjustment, ...]

    def residualize(self, x: np.ndarray) -> np.ndarray:
        a = np.array(x, dtype=np.float64, copy=True)
        for step in self.steps:
            a = step.residualize(a)
        return a


#: The calibration methods whose variance adjustment :func:`calibration_adjustment` rebuilds,
#: keyed as the weight stage's calibration sections.
CALIBRATION_ADJUSTMENTS = ("rake", "poststratify", "calibrate")


def calibration_adjustment(
    frame: pl.DataFrame,
    weights: np.ndarray,
    *,
    method: str,
    by: Sequence[str],
    variables: Sequence[str],
    uncalibrated: np.ndarray | None = None,
) -> Adjustment:
    """The variance adjustment of a calibration, rebuilt from the final weights.

    Taylor linearization after calibration uses the calibration's residuals (R survey
    ``svyrecvar`` with ``design$postStrata``). The final weights satisfy the calibration
    constraints, so the adjustment of the last calibration step can be rebuilt from them:

    - ``rake``: R's raking residuals (:class:`RakingAdjustment`), each margin keyed by group x
      category, with the final weights as the weights after each margin's step in the last sweep
      (equal at convergence);
    - ``poststratify``: :class:`PostStratAdjustment` over group x category (its residuals depend
      on the old weights only through their ratio to the new ones, constant within a
      post-stratum, so the final weights stand for both);
    - ``calibrate`` (any distance): :class:`GregAdjustment`, the projection
      (:func:`~pipeline.survey._linalg.projection_basis`, the one the calibration itself uses) on
      the indicators of every category within each group in the metric of ``uncalibrated``, the
      weights the last calibration started from, with ``g = weights / uncalibrated``.

    Every adjustment is invariant to the scale of ``weights``.

    Parameters
    ----------
    frame : polars.DataFrame
        The weighted data, with the ``by`` columns and the calibration ``variables``.
    weights : array-like, shape (n,)
        The final (analysis) weights.
    method : {'rake', 'poststratify', 'calibrate'}
    by, variables : sequence of str
        The calibration's groups and variables.
    uncalibrated : array-like, shape (n,), optional
        Needed for ``calibrate``.
    """
    if method not in CALIBRATION_ADJUSTMENTS:
        raise ArgumentError(f"calibration_adjustment: unknown method {method!r}", hint=f"use one of {', '.join(CALIBRATION_ADJUSTMENTS)}")
    by, variables = list(by), list(variables)
    if missing := [c for c in [*by, *variables] if c not in frame.columns]:
        raise ArgumentError(f"calibration_adjustment: column(s) {', '.join(missing)} are not in the frame")
    w = np.asarray(weights, dtype=np.float64)

    def keys(v: str) -> np.ndarray:
        return frame.select(pl.struct([*by, v]).rank("dense")).to_series().to_numpy().astype(np.int64) - 1

    if method == "rake":
        return RakingAdjustment(index=tuple(keys(v) for v in variables), weights=tuple(w for _ in variables))
    if method == "poststratify":
        return PostStratAdjustment(index=keys(variables[0]), weights=w, old_weights=w)
    if uncalibrated is None:
        raise ArgumentError("calibration_adjustment: method 'calibrate' needs the uncalibrated weights")
    d = np.asarray(uncalibrated, dtype=np.float64)
    sqrt_d = np.sqrt(d)
    groups, _ = group_codes(frame, by)
    codes = {v: frame.get_column(v).to_numpy() for v in variables}
    blocks = []
    for g in range(int(groups.max()) + 1):
        rows = np.flatnonzero(groups == g)
        cols = [(codes[v][rows] == c).astype(np.float64) for v in variables for c in np.unique(codes[v][rows])]
        x = np.stack(cols, axis=1) * sqrt_d[rows][:, None]
        blocks.append((None if not by else rows, projection_basis(x)))
    g_weights = w / d
    return GregAdjustment(blocks=tuple(blocks), w=g_weights * sqrt_d)

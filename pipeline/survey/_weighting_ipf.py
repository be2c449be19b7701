"""Iterative proportional fitting on collapsed cells.

Raking only needs the base-weight total of every cell of the cross-table
``group x all raking variables``: rows of one cell get the same adjustment
factor. This module runs IPF on that cell table, so the cost grows with the
number of non-empty cells, not with the number of rows; the caller maps the
cell factors back to rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

StopRule = Literal["margins", "r_default"]


@dataclass(frozen=True)
class CellMargin:
    """One raking margin on the cell table.

    Attributes
    ----------
    keys : ndarray of int, shape (n_cells,)
        Margin key of every cell: ``group * n_categories + category``.
    groups : ndarray of int, shape (n_keys,)
        Group of every margin key.
    targets : ndarray, shape (n_keys,)
        Population total of every margin key (0 where the category is absent
        from both data and targets in that group).
    """

    keys: np.ndarray
    groups: np.ndarray
    targets: np.ndarray

    @property
    def target_shares(self) -> np.ndarray:
        group_total = np.bincount(self.groups, weights=self.targets)
        return self.targets / group_total[self.groups]


@dataclass(frozen=True)
class IpfOutcome:
    """Cell weights after raking and how the iteration ended.

    ``after_step[v]`` holds the cell weights right after margin ``v`` was
    matched in the last sweep: R survey keeps these per-margin weights for the
    raking variance (``svyrecvar``'s raking branch).
    """

    cell_weights: np.ndarray
    iterations: int
    converged: bool
    max_share_error: float
    after_step: tuple[np.ndarray, ...]


def share_error(cell_weights: np.ndarray, cell_groups: np.ndarray, margins: Sequence[CellMargin]) -> float:
    """Largest |achieved share - target share| over groups, margins and categories."""
    n_groups = int(cell_groups.max()) + 1 if cell_groups.size else 0
    group_total = np.bincount(cell_groups, weights=cell_weights, minlength=n_groups)
    worst = 0.0
    for m in margins:
        achieved = np.bincount(m.keys, weights=cell_weights, minlength=m.targets.size)
        share = achieved / group_total[m.groups]
        worst = max(worst, float(np.max(np.abs(share - m.target_shares))))
    return worst


def ipf(
    cell_weights: np.ndarray,
    cell_groups: np.ndarray,
    margins: Sequence[CellMargin],
    *,
    max_iter: int,
    tolerance: float,
    stop_rule: StopRule = "margins",
) -> IpfOutcome:
    """Rake cell weights to the margins.

    Parameters
    ----------
    cell_weights : ndarray, shape (n_cells,)
        Base-weight total of every non-empty cell.
    cell_groups : ndarray of int, shape (n_cells,)
        Group of every cell.
    margins : sequence of CellMargin
        Matched in order within each sweep.
    max_iter : int
        Maximum number of full sweeps.
    tolerance : float
        ``stop_rule='margins'``: stop after the first sweep whose largest share
        error is below ``tolerance``. ``stop_rule='r_default'``: R survey
        ``rake()``'s rule, stop when the largest change of any cell between two
        sweeps is below ``tolerance`` (a count when ``tolerance >= 1``, a
        fraction of the sum of the base weights otherwise).
    """
    w = np.array(cell_weights, dtype=np.float64, copy=True)
    if stop_rule == "r_default":
        # R survey rake(): epsilon < 1 is relative to the sum of the sampling weights
        threshold = tolerance * float(w.sum()) if tolerance < 1 else tolerance
    elif stop_rule == "margins":
        threshold = tolerance
    else:  # pragma: no cover - checked by the public function
        raise ValueError(stop_rule)

    after: list[np.ndarray] = []
    converged = False
    iterations = 0
    while iterations < max_iter:
        before = w.copy()
        after = []
        for m in margins:
            current = np.bincount(m.keys, weights=w, minlength=m.targets.size)
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(current > 0, m.targets / current, 1.0)
            w = w * factor[m.keys]
            after.append(w)
        iterations += 1
        if stop_rule == "margins":
            done = share_error(w, cell_groups, margins) < threshold
        else:
            done = float(np.max(np.abs(w - before))) < threshold
        if done:
            converged = True
            break
    return IpfOutcome(
        cell_weights=w,
        iterations=iterations,
        converged=converged,
        max_share_error=share_error(w, cell_groups, margins),
        after_step=tuple(after),
    )

"""Weighting: post-stratification, raking and calibration to population totals.

This module owns the calibration steps that turn base weights into final weights
(:data:`WEIGHTING_METHODS`, :data:`CALIBRATION_METHODS`) and re-exports, for one import path,
the record each step leaves for the variance (:mod:`pipeline.survey.adjustments`), the result
type and diagnostics (:mod:`pipeline.survey._weighting_result`) and trimming
(:mod:`pipeline.survey.trimming`). Inputs are a polars frame (one row per respondent: base
weight, grouping columns, weighting variables) and a tidy target table; outputs are frozen
:class:`WeightingResult` values. No files, no config objects.

Targets are population **totals**, one row per group, variable and category::

    *by, variable, category, target

(:func:`targets_from_shares` converts shares plus a per-group population).
A crossed margin such as sex x age is a pre-crossed variable. Calibration also
takes numeric variables: a single row per group with a null ``category`` and
the population total of the variable.

The formulas follow R survey 4.1-1 (Lumley): ``postStratify``, ``rake``,
``calibrate``/``grake`` and ``trimWeights``; the variance adjustments are
those of ``svyrecvar`` (see :class:`PostStratAdjustment`,
:class:`RakingAdjustment`, :class:`GregAdjustment`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.errors import CalibrationError, DataError
from pipeline.survey._linalg import projection_basis
from pipeline.survey._weighting_grake import LINEAR, LOGIT, RAKING, CalibrationDistance, grake
from pipeline.survey._weighting_ipf import CellMargin, StopRule, ipf
from pipeline.survey._weighting_prep import SHARES_ATOL, Problem, combine_codes_counts, prepare, targets_from_shares
from pipeline.survey._weighting_result import (
    MARGIN_COLUMNS,
    WeightDiagnostics,
    WeightingResult,
    frozen,
    rows_of_groups,
    weight_diagnostics,
)
from pipeline.survey.adjustments import (
    RAKING_VARIANCE_SWEEPS,
    Adjustment,
    ChainedAdjustment,
    GregAdjustment,
    NoAdjustment,
    PostStratAdjustment,
    RakingAdjustment,
    RowArrays,
)
from pipeline.survey.trimming import trim_weights

__all__ = [
    "MARGIN_COLUMNS",
    "SHARES_ATOL",
    "RAKING_VARIANCE_SWEEPS",
    "CALIBRATION_METHODS",
    "WEIGHTING_METHODS",
    "Adjustment",
    "ChainedAdjustment",
    "GregAdjustment",
    "NoAdjustment",
    "PostStratAdjustment",
    "RakingAdjustment",
    "WeightDiagnostics",
    "WeightingResult",
    "calibrate",
    "poststratify",
    "rake",
    "targets_from_shares",
    "trim_weights",
    "weight_diagnostics",
]




# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _check_control(*, max_iter: int, tolerance: float, name: str = "tolerance") -> None:
    if not isinstance(max_iter, (int, np.integer)) or isinstance(max_iter, bool) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; found {max_iter!r}")
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(f"{name} must be a positive number; found {tolerance!r}")


def _margins_report(
    problem: Problem,
    weights: np.ndarray,
    cells: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[pl.DataFrame, float, str]:
    """The margins table, the largest margin error and where it is.

    ``cells`` (raking): the ``(n_cells, 1 + n_margins)`` table of the cells' group and margin
    codes, and every cell's row count, base weight and final weight; the margins are then
    added up from the cells, so the report's cost grows with the cells, not the rows.
    """
    gc = problem.groups.codes
    n_groups = problem.groups.n_groups
    if cells is not None:
        table, *totals = cells
        per_cell = tuple(np.asarray(c, dtype=np.float64) for c in totals)
        gc = table[:, 0]

        def key_sums(key: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
            return tuple(np.bincount(key, weights=c, minlength=size) for c in per_cell)
    else:

        def key_sums(key: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
            return (
                np.bincount(key, minlength=size).astype(np.float64),
                np.bincount(key, weights=problem.base, minlength=size),
                np.bincount(key, weights=weights, minlength=size),
            )

    n_g, base_g, final_g = key_sums(gc, n_groups)

    groups: list[np.ndarray] = []
    variables: list[str] = []
    categories: list[Any] = []
    cols: dict[str, list[np.ndarray]] = {c: [] for c in MARGIN_COLUMNS[2:]}
    errors: list[np.ndarray] = []
    for v, m in enumerate(problem.margins):
        rows = m.target_rows
        g_idx = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        j_idx = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        groups.append(g_idx)
        variables.extend([m.variable] * len(rows))
        categories.extend(r[2] for r in rows)
        if m.kind == "categorical":
            k = len(m.categories)
            key = gc * k + (m.codes if cells is None else cells[0][:, 1 + v])
            size = n_groups * k
            count, base_t, final_t = (a.reshape(n_groups, k)[g_idx, j_idx] for a in key_sums(key, size))
            target = m.targets[g_idx, j_idx]
            target_share = target / m.targets.sum(axis=1)[g_idx]
            achieved_share = final_t / final_g[g_idx]
            cols["target_share"].append(target_share)
            cols["unweighted_share"].append(count / n_g[g_idx])
            cols["base_share"].append(base_t / base_g[g_idx])
            cols["achieved_share"].append(achieved_share)
            cols["target"].append(target)
            cols["achieved"].append(final_t)
            errors.append(np.abs(achieved_share - target_share))
        else:
            final_t = np.bincount(problem.groups.codes, weights=weights * m.values, minlength=n_groups)[g_idx]
            target = m.targets[g_idx, 0]
            nan = np.full(len(rows), np.nan)
            for c in ("target_share", "unweighted_share", "base_share", "achieved_share"):
                cols[c].append(nan)
            cols["target"].append(target)
            cols["achieved"].append(final_t)
            # R survey grake(): misfit relative to 1 + |total|
            errors.append(np.abs(final_t - target) / (1.0 + np.abs(target)))
    g_all = np.concatenate(groups) if groups else np.zeros(0, dtype=np.int64)
    err = np.concatenate(errors) if errors else np.zeros(0)
    data: dict[str, pl.Series] = {}
    for j, (col, dtype) in enumerate(zip(problem.by, problem.by_dtypes)):
        data[col] = pl.Series(col, [problem.groups.keys[g][j] for g in g_all], dtype=dtype)
    data["variable"] = pl.Series("variable", variables, dtype=pl.String)
    data["category"] = pl.Series("category", categories, dtype=problem.category_dtype)
    for c, parts in cols.items():
        values = np.concatenate(parts) if parts else np.zeros(0)
        data[c] = pl.Series(c, values, dtype=pl.Float64, nan_to_null=True)
    frame = pl.DataFrame(data)
    if err.size == 0:
        return frame, 0.0, ""
    worst = int(np.argmax(err))
    where = f"variable '{variables[worst]}'"
    if categories[worst] is not None:
        where += f", category {categories[worst]!r}"
    where += f", {problem.groups.label(int(g_all[worst]))}"
    return frame, float(err[worst]), where


def _check_replicates(replicates: np.ndarray | None, n: int) -> np.ndarray | None:
    if replicates is None:
        return None
    r = np.asarray(replicates, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != n:
        raise DataError(
            f"replicate weights must be an (n, R) array with n = {n} rows; found shape {r.shape}",
            hint="pass the analysis replicate weights (already multiplied by the sampling weights), one column per replicate",
        )
    bad = ~np.isfinite(r) | (r < 0)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(
            f"replicate weights: {int(bad.sum())} negative or non-finite value(s) (first at row {i + 1}, replicate {j + 1}: "
            f"{float(r[i, j])!r}); expected finite weights >= 0"
        )
    return r


def _key_sums(keys: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Column sums of ``values`` (n, R) within each key: (size, R)."""
    from scipy import sparse

    indicator = sparse.csr_matrix(
        (np.ones(keys.size), (keys, np.arange(keys.size))), shape=(size, keys.size)
    )
    return np.asarray(indicator @ values)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, empty)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------------------
# Post-stratification
# --------------------------------------------------------------------------------------


def poststratify(
    frame: pl.DataFrame,
    *,
    weight: str,
    targets: pl.DataFrame,
    by: Sequence[str] = (),
    replicates: np.ndarray | None = None,
) -> WeightingResult:
    """Post-stratify base weights to population totals (R survey ``postStratify``).

    Every row of post-stratum ``s`` (group x category) gets its base weight
    times ``N_s / sum_s(d)``.

    Parameters
    ----------
    frame : polars.DataFrame
        Base weight column, ``by`` columns and the post-stratification variable.
    weight : str
        Base weight column.
    targets : polars.DataFrame
        ``*by, variable, category, target`` for exactly one (possibly crossed) variable.
    by : sequence of str
        Grouping columns: post-strata are ``by x category``.
    replicates : ndarray, shape (n, R), optional
        Analysis replicate weights; each replicate is post-stratified to the
        same totals (R's ``postStratify`` on a replicate design). A replicate
        with no weight in a post-stratum keeps zero weights there.

    Returns
    -------
    WeightingResult
        ``adjustment`` is a :class:`PostStratAdjustment`.

    Raises
    ------
    DataError, TargetsError, CalibrationError
        See :func:`rake`.
    """
    problem = prepare(frame, weight=weight, targets=targets, by=by, method="poststratify", single_variable=True)
    reps = _check_replicates(replicates, problem.n)
    m = problem.margins[0]
    k = len(m.categories)
    key = problem.groups.codes * k + m.codes
    current = np.bincount(key, weights=problem.base, minlength=m.targets.size)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(current > 0, m.targets.ravel() / current, 1.0)
    weights = problem.base * factor[key]
    rep_weights = None
    if reps is not None:
        rep_factor = _ratio(m.targets.ravel()[:, None], _key_sums(key, reps, m.targets.size), 0.0)
        rep_weights = reps * rep_factor[key]
    margins, error, _ = _margins_report(problem, weights)
    return WeightingResult(
        weights=weights,
        base_weights=problem.base,
        replicate_weights=rep_weights,
        method="poststratify",
        iterations=1,
        converged=True,
        max_margin_error=error,
        margins=margins,
        adjustment=PostStratAdjustment(index=key, weights=frozen(weights), old_weights=frozen(problem.base)),
    )


# --------------------------------------------------------------------------------------
# Raking
# --------------------------------------------------------------------------------------


def rake(
    frame: pl.DataFrame,
    *,
    weight: str,
    targets: pl.DataFrame,
    by: Sequence[str] = (),
    max_iter: int = 50,
    tolerance: float = 1e-6,
    accept_nonconvergence: bool = False,
    stop_rule: StopRule = "margins",
    replicates: np.ndarray | None = None,
) -> WeightingResult:
    """Rake base weights to marginal population totals (iterative proportional fitting).

    Rows are collapsed to the cells of ``by x all raking variables``; IPF runs
    on the cell totals and the cell adjustment factors are mapped back to the
    rows, so the cost grows with the number of cells, not rows.

    Parameters
    ----------
    frame : polars.DataFrame
        Base weight column, ``by`` columns and the raking variables (codes).
    weight : str
        Base weight column; every value must be finite and > 0.
    targets : polars.DataFrame
        ``*by, variable, category, target``: the population total of each
        category of each raking variable within each group. The raking
        variables are the distinct ``variable`` values; a crossed margin is a
        pre-crossed variable. Every variable's totals in a group must agree.
    by : sequence of str
        Grouping columns; raking is done separately within each group.
    max_iter : int
        Maximum number of full sweeps over the margins.
    tolerance : float
        ``stop_rule='margins'`` (default): converged when, after a full sweep,
        ``max |achieved share - target share| < tolerance`` over groups,
        margins and categories. ``stop_rule='r_default'``: R survey ``rake()``'s
        ``epsilon``: stop when no cell of the ``by x variables`` table changed by
        ``tolerance`` or more between two sweeps (a count when ``tolerance >= 1``,
        a fraction of the sum of base weights otherwise). R's default is
        ``max_iter=10, tolerance=1``.
    accept_nonconvergence : bool
        Return ``converged=False`` instead of raising.
    stop_rule : {'margins', 'r_default'}
    replicates : ndarray, shape (n, R), optional
        Analysis replicate weights, raked alongside the full sample as R's
        ``rake`` does on a replicate design: every replicate gets the same
        number of sweeps as the full-sample weights (the stopping rule looks at
        the full sample only).

    Returns
    -------
    WeightingResult
        ``adjustment`` is a :class:`RakingAdjustment`.

    Raises
    ------
    DataError
        Missing columns, a null in a weight, ``by`` column or raking variable,
        a non-positive base weight.
    TargetsError
        A data category without target, a group without targets, totals that
        disagree between variables, malformed targets.
    CalibrationError
        A target category without data rows in a group (empty cell), or no
        convergence (unless ``accept_nonconvergence``).

    Examples
    --------
    >>> frame = pl.DataFrame({"w": [1.0, 1.0, 1.0, 1.0], "sex": [1, 1, 2, 2], "age": [1, 2, 1, 1]})
    >>> targets = pl.DataFrame({"variable": ["sex", "sex", "age", "age"], "category": [1, 2, 1, 2],
    ...                         "target": [50.0, 50.0, 70.0, 30.0]})
    >>> result = rake(frame, weight="w", targets=targets)
    >>> result.converged, round(float(result.weights.sum()), 6)
    (True, 100.0)
    """
    _check_control(max_iter=max_iter, tolerance=tolerance)
    if stop_rule not in ("margins", "r_default"):
        raise ValueError(f"stop_rule must be 'margins' or 'r_default'; found {stop_rule!r}")
    problem = prepare(frame, weight=weight, targets=targets, by=by, method="rake")
    reps = _check_replicates(replicates, problem.n)
    n_groups = problem.groups.n_groups
    margins = problem.margins
    cell_of_row, table, cell_count = combine_codes_counts(
        [problem.groups.codes, *(m.codes for m in margins)],
        [n_groups, *(len(m.categories) for m in margins)],
        problem.n,
    )
    cell_base = np.bincount(cell_of_row, weights=problem.base)
    cell_groups = table[:, 0]
    cell_margins = []
    for v, m in enumerate(margins):
        k = len(m.categories)
        cell_margins.append(
            CellMargin(
                keys=cell_groups * k + table[:, 1 + v],
                groups=np.repeat(np.arange(n_groups), k),
                targets=m.targets.ravel(),
            )
        )
    outcome = ipf(cell_base, cell_groups, cell_margins, max_iter=max_iter, tolerance=tolerance, stop_rule=stop_rule)
    weights = problem.base * (outcome.cell_weights / cell_base)[cell_of_row]
    weights.flags.writeable = False  # the result's own array: WeightingResult need not copy it
    report, error, where = _margins_report(problem, weights, cells=(table, cell_count, cell_base, outcome.cell_weights))
    if not outcome.converged and not accept_nonconvergence:
        rule = (
            f"largest share error {error:.3g} ({where}) is not below tolerance {tolerance:g}"
            if stop_rule == "margins"
            else f"cells still changed by {tolerance:g} or more (R rake() rule); largest share error {error:.3g} ({where})"
        )
        raise CalibrationError(
            f"raking did not converge in {outcome.iterations} sweeps: {rule}",
            hint="raise max_iter, collapse sparse categories, check that the targets are consistent, "
            "or set accept_nonconvergence to keep these weights",
        )
    rep_weights = None
    if reps is not None:
        cell_reps = _key_sums(cell_of_row, reps, cell_base.size)
        raked = cell_reps.copy()
        for _ in range(outcome.iterations):
            for cm in cell_margins:
                raked = raked * _ratio(cm.targets[:, None], _key_sums(cm.keys, raked, cm.targets.size), 1.0)[cm.keys]
        rep_weights = reps * _ratio(raked, cell_reps, 0.0)[cell_of_row]
    # the per-margin row arrays of the variance adjustment are made when a variance needs them
    base, gcodes = problem.base, problem.groups.codes
    adjustment = RakingAdjustment(
        index=RowArrays([lambda m=m: gcodes * len(m.categories) + m.codes for m in margins]),
        weights=RowArrays([lambda a=after: base * (a / cell_base)[cell_of_row] for after in outcome.after_step]),
    )
    return WeightingResult(
        weights=weights,
        base_weights=problem.base,
        replicate_weights=rep_weights,
        method="rake",
        iterations=outcome.iterations,
        converged=outcome.converged,
        max_margin_error=error,
        margins=report,
        adjustment=adjustment,
    )


# --------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------

CALIBRATION_METHODS: dict[str, CalibrationDistance] = {
    "linear": LINEAR,
    "raking": RAKING,
    "logit": LOGIT,
}
"""Calibration distances keyed by the config vocabulary (R survey ``calfun``)."""


def _model_matrix(problem: Problem, rows: np.ndarray, g: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    cols: list[np.ndarray] = []
    totals: list[float] = []
    names: list[str] = []
    full_set_seen = False
    for m in problem.margins:
        if m.kind == "numeric":
            cols.append(m.values[rows])
            totals.append(float(m.targets[g, 0]))
            names.append(m.variable)
            continue
        codes = m.codes[rows]
        present = np.flatnonzero(m.targets[g] > 0)
        # Every categorical variable's indicators sum to the same column (the intercept): keep all
        # of the first and drop the first category of the others (R's treatment contrasts), so
        # that the Newton system stays non-singular; the column space is unchanged.
        if full_set_seen:
            present = present[1:]
        full_set_seen = True
        for j in present:
            cols.append((codes == j).astype(np.float64))
            totals.append(float(m.targets[g, j]))
            names.append(f"{m.variable}={m.categories[j]!r}")
    x = np.stack(cols, axis=1) if cols else np.zeros((rows.size, 0))
    return x, np.asarray(totals), names


def calibrate(
    frame: pl.DataFrame,
    *,
    weight: str,
    targets: pl.DataFrame,
    by: Sequence[str] = (),
    method: Literal["linear", "raking", "logit"] = "linear",
    bounds: tuple[float, float] = (-math.inf, math.inf),
    max_iter: int = 50,
    epsilon: float = 1e-7,
    accept_nonconvergence: bool = False,
    replicates: np.ndarray | None = None,
) -> WeightingResult:
    """Calibrate base weights to population totals (R survey ``calibrate``).

    The g-weights ``g = 1 + F(x' eta)`` solve ``sum(d g x) = T`` by Newton
    steps (R's ``grake``); ``F`` is the calibration distance of ``method``.
    Categorical variables enter as one indicator per category (the same
    column space as R's treatment contrasts plus intercept), numeric variables
    as they are.

    Parameters
    ----------
    frame : polars.DataFrame
        Base weight, ``by`` columns and calibration variables.
    weight : str
        Base weight column.
    targets : polars.DataFrame
        ``*by, variable, category, target``. Categorical variable: one row per
        category; numeric variable: one row per group with a null ``category``
        and the population total of the variable.
    by : sequence of str
        Calibrate separately within each group.
    method : {'linear', 'raking', 'logit'}
        Key of :data:`CALIBRATION_METHODS`. Logit needs finite bounds.
    bounds : (float, float)
        Bounds on the g-weights (adjusted / base weight), as R's ``bounds``.
    max_iter : int
        R's ``maxit`` (50).
    epsilon : float
        R's ``epsilon`` (1e-7): stop when ``|T - sum(w x)| / (1 + |T|) < epsilon``
        for every total.
    accept_nonconvergence : bool
        Return ``converged=False`` instead of raising.
    replicates : ndarray, shape (n, R), optional
        Analysis replicate weights, each calibrated to the same totals (R's
        ``calibrate`` on a replicate design; as there, a replicate that does
        not converge keeps its last iterate without an error).

    Returns
    -------
    WeightingResult
        ``method`` is ``calibrate:<method>``; ``adjustment`` a :class:`GregAdjustment`.

    Raises
    ------
    DataError, TargetsError
        As :func:`rake`.
    CalibrationError
        Empty cell, no convergence (for example bounds that cannot be met),
        or non-positive calibrated weights (linear calibration without bounds).
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"method must be one of {sorted(CALIBRATION_METHODS)}; found {method!r}")
    _check_control(max_iter=max_iter, tolerance=epsilon, name="epsilon")
    distance = CALIBRATION_METHODS[method]
    lower, upper = (float(b) for b in bounds)
    if not lower < upper:
        raise ValueError(f"bounds must satisfy lower < upper; found {bounds!r}")
    if distance.needs_finite_bounds and not (math.isfinite(lower) and math.isfinite(upper) and lower < 1.0 < upper):
        raise ValueError(f"logit calibration needs finite bounds with lower < 1 < upper; found {bounds!r}")
    problem = prepare(frame, weight=weight, targets=targets, by=by, method="calibrate", allow_numeric=True)
    reps = _check_replicates(replicates, problem.n)
    rep_weights = None if reps is None else np.zeros_like(reps)

    n_groups = problem.groups.n_groups
    all_rows = np.arange(problem.n) if n_groups == 1 else None
    group_rows = [all_rows] if all_rows is not None else rows_of_groups(problem.groups.codes, n_groups)
    g_weights = np.ones(problem.n)
    blocks: list[tuple[np.ndarray | None, np.ndarray]] = []
    iterations = 0
    converged = True
    failure = ""
    sqrt_d = np.sqrt(problem.base)
    for g, rows in enumerate(group_rows):
        x, totals, names = _model_matrix(problem, rows, g)
        d = problem.base[rows]
        outcome = grake(x, d, totals, distance, lower=lower, upper=upper, max_iter=max_iter, epsilon=epsilon)
        iterations = max(iterations, outcome.iterations)
        if not outcome.converged and converged:
            converged = False
            failure = f"{problem.groups.label(g)}: largest misfit |T - sum(w x)| / (1 + |T|) = {outcome.misfit:.3g}"
        g_weights[rows] = outcome.g
        if reps is not None:
            for r in range(reps.shape[1]):
                d_r = reps[rows, r]
                rep = grake(x, d_r, totals, distance, lower=lower, upper=upper, max_iter=max_iter, epsilon=epsilon)
                rep_weights[rows, r] = d_r * rep.g
        basis = projection_basis(x * sqrt_d[rows][:, None])
        blocks.append((None if all_rows is not None else rows, basis))

    weights = problem.base * g_weights
    if not converged and not accept_nonconvergence:
        raise CalibrationError(
            f"calibration ({method}, bounds {lower:g} .. {upper:g}) did not converge in {max_iter} iterations; "
            f"{failure} (epsilon {epsilon:g})",
            hint="widen the bounds, collapse sparse categories, check the targets, raise max_iter, "
            "or set accept_nonconvergence to keep these weights",
        )
    if not np.all(np.isfinite(weights)) or (weights <= 0).any():
        bad = ~np.isfinite(weights) | (weights <= 0)
        raise CalibrationError(
            f"calibration ({method}) produced {int(bad.sum())} non-positive or non-finite weight(s) "
            f"(smallest g-weight {np.nanmin(g_weights):.4g})",
            hint="set bounds on the g-weights (for example (0.3, 3)) or use method 'raking' or 'logit'",
        )
    report, error, _ = _margins_report(problem, weights)
    return WeightingResult(
        weights=weights,
        base_weights=problem.base,
        replicate_weights=rep_weights,
        method=f"calibrate:{method}",
        iterations=iterations,
        converged=converged,
        max_margin_error=error,
        margins=report,
        adjustment=GregAdjustment(blocks=tuple(blocks), w=frozen(g_weights * sqrt_d)),
    )


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------

WEIGHTING_METHODS: dict[str, Callable[..., WeightingResult]] = {
    "poststratify": poststratify,
    "rake": rake,
    "calibrate": calibrate,
}
"""Weighting steps that take ``(frame, *, weight, targets, by, ...)``, keyed by the config vocabulary."""

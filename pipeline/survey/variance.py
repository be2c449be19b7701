"""Variance estimation: Taylor linearization, replicate variance, lonely PSUs.

Everything here works on *estimating-function* (influence) values: an
``(n, k)`` array ``x`` whose column ``j`` holds, for every row, that row's
contribution to statistic ``j`` already multiplied by its weight (zero outside
the domain). For a total that is ``w_i y_i``; for a ratio ``A/B`` it is
``w_i (a_i - R b_i) / B``. The covariance of the ``k`` statistics is then

* Taylor linearization (:func:`taylor_vcov`): R ``survey``'s ``svyrecvar``:
  weighting adjustments residualize ``x``, then the multistage
  with-/without-replacement variance of PSU totals is summed over strata and
  stages (``multistage``/``onestage``/``onestrat`` in ``R/survey.R``);
* replicate weights (:func:`replicate_vcov`): R's ``svrVar``.

The lonely-PSU policies are the registry :data:`LONELY_PSU`, keyed by the
values of R's ``options(survey.lonely.psu = ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import DesignError

if TYPE_CHECKING:
    from pipeline.survey.design import Design

__all__ = ["LONELY_PSU", "qr_rank", "replicate_vcov", "taylor_vcov"]

# A stratum counts as a census (no variance) when every f = (N - n)/N is below this (R onestrat).
_CENSUS_TOL = 1e-7


def _lonely_fail(totals: np.ndarray, f: np.ndarray, where: str) -> np.ndarray:
    raise DesignError(
        f"variance: Stratum {where}",
        hint="set the design's lonely_psu to 'adjust', 'average', 'remove' or 'certainty', "
        "or collapse the stratum with a neighbour",
    )


def _lonely_zero(totals: np.ndarray, f: np.ndarray, where: str) -> np.ndarray:
    # R centres the single PSU on its own mean: no contribution
    return np.zeros_like(totals)


def _lonely_adjust(totals: np.ndarray, f: np.ndarray, where: str) -> np.ndarray:
    # R leaves the PSU total uncentred, i.e. centred on zero, the grand mean of
    # an estimating function that sums to zero (svymean), scaled by f
    return totals * np.sqrt(f)[:, None]


def _lonely_average(totals: np.ndarray, f: np.ndarray, where: str) -> np.ndarray:
    # NaN marks the stratum; the other strata are scaled up by nstrat / nokstrat
    return np.full_like(totals, np.nan)


#: Lonely-PSU policies (R ``survey.lonely.psu``). Each takes the PSU totals of
#: the lonely strata (rows), their ``f = 1 - n/N`` and a label for messages, and
#: returns the rows of the scaled, centred total matrix ``D`` whose ``D'D`` is the
#: stratum's variance contribution (NaN rows: ``average``).
LONELY_PSU: dict[str, Callable[[np.ndarray, np.ndarray, str], np.ndarray]] = {
    "fail": _lonely_fail,
    "remove": _lonely_zero,
    "certainty": _lonely_zero,
    "adjust": _lonely_adjust,
    "average": _lonely_average,
}


def _group_sums(codes: np.ndarray, x: np.ndarray, n_groups: int) -> np.ndarray:
    """Column sums of ``x`` within groups ``codes`` (``0..n_groups-1``), by sorting."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    out = np.zeros((n_groups, x.shape[1]), dtype=np.float64)
    if len(order):
        out[sorted_codes[starts]] = np.add.reduceat(x[order], starts, axis=0)
    return out


def _first(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Value of ``values`` at the first row of each group (groups without rows: 0)."""
    out = np.zeros(n_groups, dtype=values.dtype)
    uniq, first = np.unique(codes, return_index=True)
    out[uniq] = values[first]
    return out


def taylor_vcov(design: Design, x: np.ndarray, *, present: np.ndarray | None = None) -> np.ndarray:
    """Covariance matrix of ``k`` statistics by Taylor linearization (R ``svyrecvar``).

    Parameters
    ----------
    design : Design
        A linearization design.
    x : numpy.ndarray
        ``(n,)`` or ``(n, k)`` weighted estimating-function values (see the
        module docstring).
    present : numpy.ndarray, optional
        ``(n,)`` bool, rows that belong to the (sub)design whose variance is
        wanted (default: ``design.in_design``). Only used by the lonely-PSU
        rules, as R counts strata of a subset design: ``fail`` only fails for
        lonely strata with present rows, ``average`` scales by the number of
        present strata.

    Returns
    -------
    numpy.ndarray
        ``(k, k)`` covariance matrix.

    Notes
    -----
    For each stage ``s`` and stratum ``h`` with ``n_h`` sampled units, unit
    totals ``z_c`` and ``f_h = (N_h - n_h)/N_h`` (1 without fpc),

    ``V_h = f_h n_h/(n_h - 1) sum_c (z_c - zbar_h)(z_c - zbar_h)'``,

    with ``zbar_h = sum_c z_c / n_h``. Stage ``s > 1`` terms are multiplied by
    the sampling fractions ``n/N`` of the earlier stages and only enter when
    an fpc was given (R: with-replacement first stages make later stages
    irrelevant).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    for adj in design.adjustments:
        x = np.asarray(adj.residualize(x), dtype=np.float64)
        if x.ndim == 1:
            x = x[:, None]
    present = design.in_design if present is None else np.asarray(present, dtype=bool)
    k = x.shape[1]
    v = np.zeros((k, k), dtype=np.float64)
    n_stages = design.n_stages if design.popsize is not None else 1
    mult_row = np.ones(x.shape[0], dtype=np.float64)
    for s in range(n_stages):
        v += _stage_vcov(design, x, s, mult_row, present)
        if design.popsize is None:
            break
        mult_row = mult_row * design.n_psu[:, s] / design.popsize[:, s]
        if not (mult_row > 0).any():
            break
    return v


def _stage_vcov(design: Design, x: np.ndarray, s: int, mult_row: np.ndarray, present: np.ndarray) -> np.ndarray:
    clusters = design.clusters[:, s]
    strata = design.strata[:, s]
    n_clusters = int(clusters.max()) + 1
    n_strata = int(strata.max()) + 1
    z = _group_sums(clusters, x, n_clusters)                      # PSU totals
    h_c = _first(clusters, strata, n_clusters)                    # stratum of each PSU
    n_c = _first(clusters, design.n_psu[:, s], n_clusters)        # n_h of each PSU
    if design.popsize is None:
        f_c = np.ones(n_clusters)
    else:
        big_n = _first(clusters, design.popsize[:, s], n_clusters)
        with np.errstate(invalid="ignore", divide="ignore"):
            f_c = np.where(np.isinf(big_n), 1.0, (big_n - n_c) / big_n)
    mult_c = _first(clusters, mult_row, n_clusters)
    present_c = np.bincount(clusters, weights=present.astype(np.float64), minlength=n_clusters) > 0
    present_h = np.bincount(h_c, weights=present_c.astype(np.float64), minlength=n_strata) > 0
    n_h = _first(h_c, n_c, n_strata)
    census_h = np.bincount(h_c, weights=(f_c >= _CENSUS_TOL).astype(np.float64), minlength=n_strata) == 0

    # centre on the stratum mean of n_h PSU totals, scale by f n/(n-1)
    zbar_h = _group_sums(h_c, z, n_strata) / n_h[:, None]
    lonely_c = (n_c == 1) & ~census_h[h_c]
    scale_c = np.where(n_c > 1, f_c * n_c / np.maximum(n_c - 1, 1), f_c)
    d = (z - zbar_h[h_c]) * np.sqrt(scale_c)[:, None]
    d[census_h[h_c]] = 0.0
    lonely_ok = lonely_c & present_c
    if lonely_c.any():
        if design.lonely_psu == "fail" and lonely_ok.any():
            where = _stratum_label(design, s, h_c[np.flatnonzero(lonely_ok)[0]])
            LONELY_PSU["fail"](z[lonely_ok], f_c[lonely_ok], f"{where} has only one PSU at stage {s + 1}")
        # a lonely stratum without rows in this (sub)design is absent in R: no contribution
        rule = _lonely_zero if design.lonely_psu == "fail" else LONELY_PSU[design.lonely_psu]
        d[lonely_c] = rule(z[lonely_c], f_c[lonely_c], "")
    if design.lonely_psu == "average":
        # per group of strata (the whole design at stage 1, the parent PSU later),
        # the sum over non-lonely strata times nstrat / nokstrat (R onestage)
        if s == 0:
            group_h = np.zeros(n_strata, dtype=np.int64)
        else:
            parent_c = _first(clusters, design.clusters[:, s - 1], n_clusters)
            group_h = _first(h_c, parent_c, n_strata)
        n_groups = int(group_h.max()) + 1
        lonely_h = np.zeros(n_strata, dtype=bool)
        lonely_h[h_c[lonely_c]] = True
        nstrat = np.bincount(group_h, weights=present_h.astype(np.float64), minlength=n_groups)
        nbad = np.bincount(group_h, weights=(present_h & lonely_h).astype(np.float64), minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            factor_g = nstrat / (nstrat - nbad)
        factor_g = np.where(nstrat == 0, 1.0, factor_g)
        d = np.nan_to_num(d, nan=0.0)
        mult_c = mult_c * factor_g[group_h[h_c]]
    return (d * mult_c[:, None]).T @ d


def _stratum_label(design: Design, s: int, code: int) -> str:
    """The user's label of stratum ``code`` at stage ``s`` (for messages)."""
    cols = design.spec.get("strata") or ()
    row = int(np.flatnonzero(design.strata[:, s] == code)[0])
    if s == 0 and cols:
        value = design.frame.get_column(cols[0])[row]
        return f"({value})"
    ids = design.spec.get("ids") or ()
    if s > 0 and len(ids) >= s:
        value = design.frame.get_column(ids[s - 1])[row]
        return f"(cluster {ids[s - 1]}={value})"
    return f"(row {row + 1})"


def replicate_vcov(
    thetas: np.ndarray,
    full: np.ndarray,
    *,
    scale: float,
    rscales: np.ndarray,
    mse: bool,
) -> np.ndarray:
    """Replicate covariance matrix, R's ``svrVar``.

    Parameters
    ----------
    thetas : numpy.ndarray
        ``(R, k)`` replicate estimates; NaN marks a replicate where the
        statistic is undefined (e.g. an empty domain): it is dropped from that
        statistic's sums together with its ``rscale``.
    full : numpy.ndarray
        ``(k,)`` full-sample estimates (centre when ``mse``).
    scale, rscales, mse
        The design's constants (:class:`~pipeline.survey.design.ReplicateWeights`).

    Returns
    -------
    numpy.ndarray
        ``(k, k)``: ``scale * sum_r rscale_r (theta_r - c)(theta_r - c)'`` with
        ``c`` the mean over valid replicates with ``rscale > 0`` or ``full``.
    """
    thetas = np.asarray(thetas, dtype=np.float64)
    if thetas.ndim == 1:
        thetas = thetas[:, None]
    rscales = np.asarray(rscales, dtype=np.float64)
    valid = np.isfinite(thetas)
    if mse:
        centre = np.asarray(full, dtype=np.float64)
    else:
        use = valid & (rscales[:, None] > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            centre = np.where(use, thetas, 0.0).sum(axis=0) / use.sum(axis=0)
    dev = np.where(valid, thetas - centre, 0.0)
    return scale * (dev * rscales[:, None]).T @ dev


def qr_rank(a: np.ndarray, tol: float = 1e-7) -> int:
    """Rank of ``a`` as R's ``qr(a, tol)$rank`` (LINPACK ``dqrdc2``).

    Householder QR with R's limited column pivoting: a column whose remaining
    norm falls below ``tol`` times its original norm is moved to the end and
    not counted. Used for the degrees of freedom of replicate designs
    (``degf`` = rank of the replicate weights - 1, ``tol = 1e-5``).
    """
    x = np.array(a, dtype=np.float64, copy=True)
    n, p = x.shape
    if n == 0 or p == 0:
        return 0
    qraux = np.sqrt((x * x).sum(axis=0))
    work1 = qraux.copy()
    work2 = np.where(qraux == 0, 1.0, qraux)
    k = p + 1  # 1-based, as in the Fortran
    lup = min(n, p)
    for l in range(lup):  # noqa: E741 - the Fortran's name
        # cycle negligible columns to the end
        while (l + 1) < k and qraux[l] < work2[l] * tol:
            x[:, l:] = np.concatenate([x[:, l + 1 :], x[:, l : l + 1]], axis=1)
            qraux[l:] = np.r_[qraux[l + 1 :], qraux[l]]
            work1[l:] = np.r_[work1[l + 1 :], work1[l]]
            work2[l:] = np.r_[work2[l + 1 :], work2[l]]
            k -= 1
        if l == n - 1:
            break
        col = x[l:, l]
        nrmxl = np.sqrt(col @ col)
        if nrmxl == 0.0:
            continue
        if col[0] != 0.0:
            nrmxl = np.copysign(nrmxl, col[0])
        x[l:, l] = col / nrmxl
        x[l, l] += 1.0
        if l + 1 < p:
            v = x[l:, l]
            t = -(v @ x[l:, l + 1 :]) / x[l, l]
            x[l:, l + 1 :] += np.outer(v, t)
            # update the remaining column norms (vectorised over j; same arithmetic as the Fortran)
            j = np.arange(l + 1, p)
            j = j[qraux[j] != 0.0]
            if len(j):
                tt = np.maximum(1.0 - (np.abs(x[l, j]) / qraux[j]) ** 2, 0.0)
                small = np.abs(tt) < 1e-6
                qraux[j[~small]] = qraux[j[~small]] * np.sqrt(tt[~small])
                if small.any():
                    js = j[small]
                    qraux[js] = np.sqrt((x[l + 1 :, js] ** 2).sum(axis=0))
                    work1[js] = qraux[js]
        qraux[l] = x[l, l]
        x[l, l] = -nrmxl
    return int(min(k - 1, n))

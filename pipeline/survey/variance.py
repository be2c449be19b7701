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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import DesignError
from pipeline.survey._linalg import qr_rank, replicate_rank

if TYPE_CHECKING:
    from pipeline.survey.design import Design

__all__ = ["LONELY_PSU", "TaylorStage", "qr_rank", "replicate_rank", "replicate_vcov", "stage_vcov", "taylor_stages", "taylor_vcov"]

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


class _Grouper:
    """Group sums and first values by integer codes ``0..n_groups-1``.

    ``sum(x)`` sums the rows of ``x`` in the stable order of their codes, group
    by group (``np.add.reduceat``); the sort is done on the first ``sum`` and kept. ``first_of`` needs no sort
    (the first row of each group is a ``np.minimum.at`` over row numbers). A
    design keeps one grouper per stage (rows to clusters, clusters to strata),
    so this work is paid once per design, not per estimate.
    """

    def __init__(self, codes: np.ndarray, n_groups: int):
        self.codes = codes
        self.n_groups = int(n_groups)
        first = np.full(self.n_groups, len(codes), dtype=np.int64)
        np.minimum.at(first, codes, np.arange(len(codes)))
        self.groups = np.flatnonzero(first < len(codes))     # groups with rows
        self.first = first[self.groups]                       # their first row
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def sum(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n_groups, x.shape[1]), dtype=np.float64)
        if len(self.codes):
            if self._sorted is None:
                order = np.argsort(self.codes, kind="stable")
                sorted_codes = self.codes[order]
                self._sorted = order, np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
            order, starts = self._sorted
            out[self.groups] = np.add.reduceat(x[order], starts, axis=0)
        return out

    def first_of(self, values: np.ndarray) -> np.ndarray:
        """Value at the first row of each group (groups without rows: 0)."""
        out = np.zeros(self.n_groups, dtype=values.dtype)
        out[self.groups] = values[self.first]
        return out


@dataclass(frozen=True, eq=False)
class TaylorStage:
    """What the variance of one sampling stage needs from the design alone.

    Everything here depends on the design's clusters, strata and fpc, never on
    the statistic, so :func:`taylor_stages` computes it once per design (cached
    on the design) and every estimate reuses it.

    Attributes
    ----------
    index : int
        The stage (0 = first-stage PSUs).
    codes : numpy.ndarray
        ``(n,)`` cluster code of every row at this stage (``0..n_clusters-1``).
    rows : _Grouper
        Rows to clusters (for row-level influence values).
    n_clusters, n_strata : int
    h_c : numpy.ndarray
        ``(C,)`` stratum of each cluster.
    n_c, f_c : numpy.ndarray
        ``(C,)`` sampled units ``n_h`` in the cluster's stratum and ``f = (N_h - n_h)/N_h`` (1 without fpc).
    mult_c : numpy.ndarray
        ``(C,)`` product of the sampling fractions ``n/N`` of the earlier stages.
    n_h : numpy.ndarray
        ``(H,)`` sampled units per stratum.
    census_h : numpy.ndarray
        ``(H,)`` strata sampled completely (no variance).
    strata : _Grouper
        Clusters to strata.
    group_h : numpy.ndarray
        ``(H,)`` group of strata over which the ``average`` lonely-PSU rule
        counts (the whole design at stage 1, the parent cluster later).
    has_lonely : bool
        Some stratum has a single cluster (and is not a census): only then do
        the rows present in a domain matter (see ``present`` of :func:`taylor_vcov`).
    """

    index: int
    codes: np.ndarray
    rows: _Grouper
    n_clusters: int
    n_strata: int
    h_c: np.ndarray
    n_c: np.ndarray
    f_c: np.ndarray
    mult_c: np.ndarray
    n_h: np.ndarray
    census_h: np.ndarray
    strata: _Grouper
    group_h: np.ndarray
    has_lonely: bool


def taylor_stages(design: Design) -> tuple[TaylorStage, ...]:
    """The stages that contribute to Taylor variances of ``design`` (cached on the design).

    Without fpc only the first stage contributes; with fpc, stage ``s > 1``
    contributes while some rows have a non-zero product of earlier sampling
    fractions (R ``svyrecvar``/``multistage``).
    """
    return design._cached("taylor_stages", lambda: _build_stages(design))


def _build_stages(design: Design) -> tuple[TaylorStage, ...]:
    stages = []
    n_stages = design.n_stages if design.popsize is not None else 1
    mult_row = np.ones(design.clusters.shape[0], dtype=np.float64)
    for s in range(n_stages):
        codes = design.clusters[:, s]
        n_clusters = int(codes.max()) + 1
        n_strata = int(design.strata[:, s].max()) + 1
        rows = _Grouper(codes, n_clusters)
        h_c = rows.first_of(design.strata[:, s])
        n_c = rows.first_of(design.n_psu[:, s])
        if design.popsize is None:
            f_c = np.ones(n_clusters)
        else:
            big_n = rows.first_of(design.popsize[:, s])
            with np.errstate(invalid="ignore", divide="ignore"):
                f_c = np.where(np.isinf(big_n), 1.0, (big_n - n_c) / big_n)
        strata = _Grouper(h_c, n_strata)
        census_h = np.bincount(h_c, weights=(f_c >= _CENSUS_TOL).astype(np.float64), minlength=n_strata) == 0
        if s == 0:
            group_h = np.zeros(n_strata, dtype=np.int64)
        else:
            group_h = strata.first_of(rows.first_of(design.clusters[:, s - 1]))
        stages.append(
            TaylorStage(
                index=s,
                codes=codes,
                rows=rows,
                n_clusters=n_clusters,
                n_strata=n_strata,
                h_c=h_c,
                n_c=n_c,
                f_c=f_c,
                mult_c=rows.first_of(mult_row),
                n_h=strata.first_of(n_c),
                census_h=census_h,
                strata=strata,
                group_h=group_h,
                has_lonely=bool(((n_c == 1) & ~census_h[h_c]).any()),
            )
        )
        if design.popsize is None:
            break
        mult_row = mult_row * design.n_psu[:, s] / design.popsize[:, s]
        if not (mult_row > 0).any():
            break
    return tuple(stages)


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
    present_f = present.astype(np.float64)
    for st in taylor_stages(design):
        present_c = np.bincount(st.codes, weights=present_f, minlength=st.n_clusters) > 0
        v += stage_vcov(design, st, st.rows.sum(x), present_c)
    return v


def stage_vcov(design: Design, st: TaylorStage, z: np.ndarray, present_c: np.ndarray) -> np.ndarray:
    """One stage's contribution to the Taylor covariance, from cluster totals.

    Parameters
    ----------
    design : Design
        The design (its lonely-PSU policy and labels for messages).
    st : TaylorStage
        The stage (:func:`taylor_stages`).
    z : numpy.ndarray
        ``(n_clusters, k)`` totals of the weighted influence values by cluster
        of this stage. :func:`taylor_vcov` sums row-level values; the
        estimators build them directly from weighted group totals by cluster
        (:mod:`pipeline.survey.estimators`), which never needs an ``(n, k)`` array.
    present_c : numpy.ndarray
        ``(n_clusters,)`` bool, clusters with a row in the (sub)design (see
        ``present`` of :func:`taylor_vcov`).

    Returns
    -------
    numpy.ndarray
        ``(k, k)``.
    """
    s, h_c, n_c, f_c = st.index, st.h_c, st.n_c, st.f_c
    mult_c = st.mult_c
    census_c = st.census_h[h_c]

    # centre on the stratum mean of n_h PSU totals, scale by f n/(n-1)
    zbar_h = st.strata.sum(z) / st.n_h[:, None]
    lonely_c = (n_c == 1) & ~census_c
    scale_c = np.where(n_c > 1, f_c * n_c / np.maximum(n_c - 1, 1), f_c)
    d = (z - zbar_h[h_c]) * np.sqrt(scale_c)[:, None]
    d[census_c] = 0.0
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
        group_h = st.group_h
        n_strata = st.n_strata
        present_h = np.bincount(h_c, weights=present_c.astype(np.float64), minlength=n_strata) > 0
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
    with np.errstate(invalid="ignore"):  # 'average' with every stratum of a group lonely: NaN, as R
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

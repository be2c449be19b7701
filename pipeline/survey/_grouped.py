"""Estimates from weighted group totals: the estimators' fast path.

Every statistic of :mod:`pipeline.survey.estimators` is a ratio ``A_k / B_k``
of weighted totals over the rows of a domain. For a categorical variable the
numerator of "level ``l`` in domain ``d``" is the weight total of the rows
with that level, for a numeric one the total of ``w y``. A row contributes to
one numerator and one denominator, so everything the estimators need can be
read off totals by *group*, ``g = (domain, slot)``:

* point estimates: totals by group;
* Taylor variances: R's ``svyrecvar`` only uses the cluster totals of the
  influence values, and for column ``k = (d, l)`` these are
  ``z_ck = (A_ck - est_k B_cd) / B_d``, with ``A_ck``, ``B_cd`` the totals by
  cluster and group: one ``np.bincount`` over ``cluster * G + group`` per
  variable and stage, whose sum over clusters also gives the point estimates;
* replicate variances: the totals by group under each replicate weight are
  ``S @ W`` with ``S`` the sparse ``groups x rows`` indicator matrix; the
  replicate weights ``W`` are read once per call, in row blocks, for all the
  variables together and never copied (float32 blocks are upcast one at a
  time and accumulated in float64);
* design effects: the weighted variance of the linearized variable within a
  domain; for level indicators it is a closed form in the group totals.

Nothing of size ``n x (domains x levels)`` is built, and no row is visited
more than a few times per variable. The dense path of
:func:`pipeline.survey._domains.compute` (influence values as an ``(n, K)``
array) stays the reference: it serves designs with weighting adjustments
(their residualization needs row-level values) and statistics that come out
infinite, and ``tests/survey/test_grouped.py`` checks that both paths agree.

Codes. A categorical variable has one *slot* per distinct level and, when the
levels to report were given, one more for the values not among them (they
stay in the denominator); a numeric variable has one slot. Slot ``S`` (the
number of slots) marks a missing value, domain ``D`` a row outside every
domain or outside the design: those rows fall into groups that are dropped,
so no masking pass is needed. Groups are numbered ``domain * (S + 1) + slot``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline.survey._linalg import REPLICATE_BLOCK
from pipeline.survey.variance import replicate_vcov, stage_vcov, taylor_stages

__all__ = ["GroupedCall", "GroupedResult", "GroupedVariable", "estimate_grouped"]


@dataclass(frozen=True, eq=False)
class GroupedVariable:
    """One variable coded into slots.

    Attributes
    ----------
    slots : numpy.ndarray
        ``(n,)`` slot of every row, ``0..n_slots - 1``, or ``n_slots`` for a
        missing value (any integer dtype: the data's own Int8 codes do).
    n_slots : int
        ``S``.
    report : numpy.ndarray
        ``(L,)`` slot of each reported column, per domain in this order.
    has_missing : bool
        Some row has slot ``n_slots`` (otherwise row counts per domain are
        those of the domain itself).
    a, b : numpy.ndarray or None
        ``(n,)`` numerator and denominator values (``None``: 1). A
        categorical variable has neither.
    ratio : bool
        ``A / B`` (mean, proportion, ratio); ``False`` for totals.
    categorical : bool
        Level indicators (closed-form design effects).
    """

    slots: np.ndarray
    n_slots: int
    report: np.ndarray
    has_missing: bool = True
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    ratio: bool = True
    categorical: bool = True


@dataclass(frozen=True, eq=False)
class GroupedResult:
    """One variable's estimates (``K = D x L`` columns, domains slowest)."""

    estimate: np.ndarray
    vcov: np.ndarray
    n: np.ndarray                # (K,) rows of the domain with a value
    n_nonzero: np.ndarray        # (K,) of those, rows with a non-zero weight
    thetas: np.ndarray | None    # (R, K) replicate estimates
    deff: np.ndarray | None      # (K,); None when not requested


@dataclass(frozen=True, eq=False)
class GroupedCall:
    """What :func:`estimate_grouped` returns: per variable results, and per domain facts."""

    results: list[GroupedResult]
    domain_rows: np.ndarray                 # (D,) rows of each domain (R nrow)
    psu_weight: np.ndarray | None           # (C, D) weight of each domain's rows by first-stage PSU (Taylor)
    replicate_sumsq: np.ndarray | None      # (D, R) column sums of squares of each domain's replicate weights
    replicate_sumsq_all: np.ndarray | None  # (R,) the same over every row (an upper bound for any domain)


def estimate_grouped(
    design,
    dom_x: np.ndarray,
    n_domains: int,
    variables: list[GroupedVariable],
    *,
    deff: bool | str,
    domain_rows: np.ndarray | None = None,
    domain_rows_sumsq: bool = False,
) -> GroupedCall:
    """Estimates, covariances and design effects of ``variables`` by domain.

    Parameters
    ----------
    design : Design
        A design without weighting adjustments.
    dom_x : numpy.ndarray
        ``(n,)`` integer domain of every row, ``D`` outside every domain or
        outside the design.
    n_domains : int
        ``D``.
    variables : list of GroupedVariable
        Estimated together: they share the domain coding and, on a replicate
        design, one pass over the replicate weights.
    deff : bool or 'replace'
        Design effect to compute (``False``: none).
    domain_rows : numpy.ndarray, optional
        ``(D,)`` rows of each domain, when the caller knows them.
    domain_rows_sumsq : bool
        Replicate designs: also return the ``(D, R)`` column sums of squares
        of the replicate weights of each domain's rows (for the degrees of
        freedom, :func:`pipeline.survey._linalg.replicate_rank`).

    Returns
    -------
    GroupedCall
    """
    w = design.weights
    all_nonzero = design._cached("all_weights_nonzero", lambda: bool((w != 0).all()))
    if domain_rows is None:
        domain_rows = np.bincount(dom_x, minlength=n_domains + 1)[:n_domains]
    if all_nonzero:
        domain_nonzero = domain_rows
    else:
        domain_nonzero = np.bincount(dom_x, weights=(w != 0).astype(np.float64), minlength=n_domains + 1)[:n_domains]
    shape = _Shape(n_domains)
    results = []
    psu_weight = sumsq = None
    if design.replicates is not None:
        # totals over the whole sample: one "cluster"
        full_totals = [{name: t[0] for name, t in v[0].items()} for v in _cluster_totals([None], variables, dom_x, w, shape)]
        rep_totals, sumsq = _replicate_totals(
            design.replicates.weights, dom_x, shape, variables, [t["W"] for t in full_totals], domain_rows_sumsq
        )
    else:
        stages = taylor_stages(design)
        all_cluster_totals = _cluster_totals(stages, variables, dom_x, w, shape)
    for i, var in enumerate(variables):
        g1 = shape.groups(var)
        if design.replicates is not None:
            totals = full_totals[i]
            cluster_totals = None
        else:
            cluster_totals = all_cluster_totals[i]
            # totals over the whole sample: the first stage's cluster totals summed
            totals = {name: t.sum(axis=0) for name, t in cluster_totals[0].items()}
            if psu_weight is None and var.a is None and not var.has_missing:
                psu_weight = shape.domain_sums(cluster_totals[0]["W"], var)
        if var.has_missing:
            # rows with a value differ from the domain's rows: count them
            key = dom_x * (var.n_slots + 1) + var.slots
            counts = np.bincount(key, minlength=g1)
            n_dom = shape.domain_sums(counts, var)
            if all_nonzero:
                nz_dom = n_dom
            else:
                nz_dom = shape.domain_sums(np.bincount(key, weights=(w != 0).astype(np.float64), minlength=g1), var)
        else:
            n_dom, nz_dom = domain_rows, domain_nonzero
        est, den = _ratios(var, totals, shape)
        cols_n, cols_nz = shape.per_column(n_dom, var), shape.per_column(nz_dom, var)
        thetas = None
        if design.replicates is not None:
            reps = design.replicates
            ra, rb = rep_totals[i]
            if var.ratio:
                with np.errstate(invalid="ignore", divide="ignore"):
                    thetas = ra / rb
            else:
                thetas = ra
            vcov = replicate_vcov(thetas, est, scale=reps.scale, rscales=reps.rscales, mse=reps.mse)
        else:
            vcov = _taylor(design, stages, var, cluster_totals, est, den, shape, all_nonzero, dom_x)
        deffs = None
        if deff is not False:
            deffs = _deff(design, var, dom_x, totals, est, den, vcov, cols_n, cols_nz, shape, deff)
        results.append(GroupedResult(estimate=est, vcov=vcov, n=cols_n, n_nonzero=cols_nz, thetas=thetas, deff=deffs))
    return GroupedCall(
        results=results,
        domain_rows=domain_rows,
        psu_weight=psu_weight,
        replicate_sumsq=None if sumsq is None else sumsq[:n_domains],
        replicate_sumsq_all=None if sumsq is None else sumsq.sum(axis=0),
    )


# ------------------------------------------------------------------ group algebra
class _Shape:
    """Index arithmetic of ``(D + 1) x (S + 1)`` groups for ``D`` domains."""

    def __init__(self, n_domains: int):
        self.d = n_domains

    def groups(self, var: GroupedVariable) -> int:
        return (self.d + 1) * (var.n_slots + 1)

    def by_group(self, values: np.ndarray, var: GroupedVariable) -> np.ndarray:
        """``(..., G)`` -> ``(..., D, S)``: the outside-domain and missing groups dropped."""
        shape = values.shape[:-1] + (self.d + 1, var.n_slots + 1)
        return values.reshape(shape)[..., : self.d, : var.n_slots]

    def domain_sums(self, values: np.ndarray, var: GroupedVariable) -> np.ndarray:
        """``(..., G)`` -> ``(..., D)``: sums over the slots of each domain."""
        return self.by_group(values, var).sum(axis=-1)

    def columns(self, values: np.ndarray, var: GroupedVariable) -> np.ndarray:
        """``(..., G)`` -> ``(..., D * L)``: the reported slots of every domain."""
        picked = self.by_group(values, var)[..., var.report]
        return picked.reshape(picked.shape[:-2] + (-1,))

    def per_column(self, per_domain: np.ndarray, var: GroupedVariable) -> np.ndarray:
        """``(..., D)`` -> ``(..., D * L)``: a domain's value for each of its columns."""
        return np.repeat(per_domain, len(var.report), axis=-1)

    def per_group(self, per_domain: np.ndarray, var: GroupedVariable) -> np.ndarray:
        """``(D,)`` -> ``(G,)``: a domain's value on each of its (non-missing) groups, 0 elsewhere."""
        out = np.zeros(self.groups(var))
        self.by_group(out, var)[...] = np.asarray(per_domain).reshape(self.d, 1)
        return out


#: Rows per chunk of the Taylor pass: a chunk's codes, weights and group indices stay in cache
#: while every variable is added up.
_TAYLOR_CHUNK = 1 << 16


def _cluster_totals(clusterings, variables, dom_x, w, shape: _Shape) -> list[list[dict[str, np.ndarray]]]:
    """Per variable and clustering, the ``W``/``A``/``B`` totals by cluster and group, ``(C, G)`` each.

    ``clusterings`` are the Taylor stages (their ``codes`` and ``n_clusters``),
    or ``[None]`` for totals over the whole sample (one cluster). One
    ``np.bincount`` over ``cluster * G + domain * (S + 1) + slot`` per
    variable, clustering and total, taken chunk by chunk of rows with the
    variables innermost, so the chunk's cluster codes and weights are read
    from memory once for all the variables (at 10^7 rows the pass is
    memory-bound).
    """
    n = w.shape[0]
    n_clusters = [1 if st is None else st.n_clusters for st in clusterings]
    out = [[{} for _ in clusterings] for _ in variables]
    for start in range(0, n, _TAYLOR_CHUNK):
        stop = min(start + _TAYLOR_CHUNK, n)
        w_c, dom_c = w[start:stop], dom_x[start:stop]
        for s, st in enumerate(clusterings):
            codes_c = None if st is None else st.codes[start:stop]
            bases: dict[int, np.ndarray] = {}  # number of slots -> cluster * G + domain * (S + 1)
            for var, per_stage in zip(variables, out):
                g1 = shape.groups(var)
                base = bases.get(var.n_slots)
                if base is None:
                    base = dom_c * (var.n_slots + 1)
                    base = bases[var.n_slots] = base if codes_c is None else codes_c * g1 + base
                idx = base + var.slots[start:stop]
                size = n_clusters[s] * g1
                totals = per_stage[s]
                parts = {"W": np.bincount(idx, weights=w_c, minlength=size)}
                if var.a is not None:
                    parts["A"] = np.bincount(idx, weights=w_c * var.a[start:stop], minlength=size)
                if var.b is not None:
                    parts["B"] = np.bincount(idx, weights=w_c * var.b[start:stop], minlength=size)
                for name, part in parts.items():
                    if name in totals:
                        totals[name] += part
                    else:
                        totals[name] = part
    for var, per_stage in zip(variables, out):
        for c, totals in zip(n_clusters, per_stage):
            for name in list(totals):
                totals[name] = totals[name].reshape(c, shape.groups(var))
            totals.setdefault("A", totals["W"])
            totals.setdefault("B", totals["W"])
    return out


def _ratios(var: GroupedVariable, totals: dict, shape: _Shape) -> tuple[np.ndarray, np.ndarray]:
    """Point estimates and their denominators (1 for totals), by column."""
    a_cols = shape.columns(totals["A"], var)
    if not var.ratio:
        return a_cols, np.ones_like(a_cols)
    den = shape.per_column(shape.domain_sums(totals["B"], var), var)
    with np.errstate(invalid="ignore", divide="ignore"):
        return a_cols / den, den


# ------------------------------------------------------------------ Taylor
def _taylor(design, stages, var, cluster_totals, est, den, shape: _Shape, all_nonzero, dom_x) -> np.ndarray:
    """Taylor covariance from the totals by cluster and group (see the module docstring).

    The lonely-PSU rules need the clusters with a row of the (domain) design:
    with every weight non-zero, those with a positive weight total; otherwise
    counted. The ``average`` rule counts strata per domain, as R does when
    ``svyby`` subsets the design domain by domain.
    """
    k = est.shape[0]
    n_rep = len(var.report)
    v = np.zeros((k, k), dtype=np.float64)
    average = design.lonely_psu == "average"
    v_domain = [np.zeros((n_rep, n_rep)) for _ in range(shape.d)] if average else []
    need_present = average or any(st.has_lonely for st in stages)
    for st, totals in zip(stages, cluster_totals):
        z = _cluster_influence(var, totals, est, den, shape)
        present_cd = None
        if need_present:
            if all_nonzero:
                present_cd = shape.domain_sums(totals["W"], var) > 0                               # (C, D)
            else:
                idx = st.codes * shape.groups(var) + dom_x * (var.n_slots + 1) + var.slots
                counts = np.bincount(idx, minlength=st.n_clusters * shape.groups(var))
                present_cd = shape.domain_sums(counts.reshape(st.n_clusters, -1), var) > 0
            present_c = present_cd.any(axis=1)
        else:
            present_c = np.ones(st.n_clusters, dtype=bool)
        v += stage_vcov(design, st, z, present_c)
        for d in range(len(v_domain)):
            cols = slice(d * n_rep, (d + 1) * n_rep)
            v_domain[d] += stage_vcov(design, st, z[:, cols], present_cd[:, d])
    for d, block in enumerate(v_domain):
        v[d * n_rep : (d + 1) * n_rep, d * n_rep : (d + 1) * n_rep] = block
    return v


def _cluster_influence(var, totals, est, den, shape: _Shape) -> np.ndarray:
    """``z_ck = (A_ck - est_k B_cd) / B_d`` (totals: ``A_ck``); NaN from empty domains -> 0."""
    a_c = shape.columns(totals["A"], var)
    if not var.ratio:
        return np.nan_to_num(a_c, nan=0.0)
    b_c = shape.per_column(shape.domain_sums(totals["B"], var), var)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (a_c - est[None, :] * b_c) / den[None, :]
    return np.nan_to_num(z, nan=0.0)


# ------------------------------------------------------------------ replicates
#: Rows per unit of work of the replicate pass (its blocks run on up to ``_THREADS`` threads).
_CHUNK = 1 << 17
_THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


def _replicate_totals(weights, dom_x, shape: _Shape, variables, weight_totals, domain_rows_sumsq):
    """Totals by group under every replicate weight: one pass over the rows of ``weights``.

    Each row block multiplies a sparse ``groups x rows`` indicator matrix
    ``S`` into the block of replicate weights: ``csc @ dense`` adds every
    row's replicate weights into its groups, visiting them once (``R``
    additions per entry, against ``R x groups`` per row for a dense
    product). A row has one entry per variable, at its group (valued ``a``),
    and a second one (valued ``b``) when the denominator has values of its own.

    Level indicators without missing values skip the entries of each
    domain's most frequent level: one shared entry per row accumulates the
    domain total, and that level's total is the domain total minus the other
    levels'. The subtraction loses nothing that matters, because the level
    it recovers is the largest one (at least ``1/S`` of the domain), and the
    0/1 items of a questionnaire have a third of the entries.

    Row chunks (``_CHUNK`` rows) run on a thread pool (the sparse product
    releases the GIL) and are added up in chunk order, so results do not
    depend on the number of threads. Returns per variable the ``(R, D*L)``
    numerator and denominator totals by column and, on request, the
    ``(D + 1, R)`` column sums of squares of each domain's rows (the last:
    rows outside every domain).
    """
    n = weights.shape[0]
    plan = _ReplicatePlan.build(weights, dom_x, shape, variables, weight_totals, domain_rows_sumsq)
    chunks = [(lo, min(lo + _CHUNK, n)) for lo in range(0, n, _CHUNK)]
    if len(chunks) > 1 and _THREADS > 1:
        with ThreadPoolExecutor(min(_THREADS, len(chunks))) as pool:
            parts = list(pool.map(plan.accumulate, chunks))
    else:
        parts = [plan.accumulate(c) for c in chunks]
    acc = parts[0][0]
    sumsq = parts[0][1]
    for part_acc, part_sq in parts[1:]:
        acc += part_acc
        if sumsq is not None:
            sumsq += part_sq

    out = []
    domain_totals = acc[: plan.shared].T                                      # (R, D + 1)
    for var, (off_a, off_b), major in zip(variables, plan.layout, plan.majors):
        g1 = shape.groups(var)
        ta = acc[off_a : off_a + g1].T                                      # (R, G)
        if major is not None:
            # the skipped level: its domain's total minus the other levels'
            ta = ta.copy()
            by_group = shape.by_group(ta, var)                              # a view, (R, D, S)
            for d in range(shape.d):
                others = np.delete(by_group[:, d, :], major[d], axis=-1).sum(axis=-1)
                by_group[:, d, major[d]] = domain_totals[:, d] - others
            rb = domain_totals[:, : shape.d]
        else:
            tb = ta if off_b is None else acc[off_b : off_b + g1].T
            rb = shape.domain_sums(tb, var)
        out.append((shape.columns(ta, var), shape.per_column(rb, var)))
    return out, sumsq


@dataclass(frozen=True, eq=False)
class _ReplicatePlan:
    """The groups of :func:`_replicate_totals` and the entries of a row; the pass over a chunk of rows."""

    weights: np.ndarray
    dom_x: np.ndarray
    shape: _Shape
    layout: list            # per variable: offset of its A groups, of its B groups (or None)
    majors: list            # per variable: most frequent slot of each domain (None: every slot has entries)
    shared: int             # groups of the shared domain totals (0: none)
    n_groups: int
    entries: list           # per entry of a row: (variable or None for the domain total, offset, values, majors)
    all_ones: bool          # every entry has value 1 (level indicators)
    skips: int              # entries that may be skipped (level indicators' most frequent level)
    sumsq: bool

    @classmethod
    def build(cls, weights, dom_x, shape: _Shape, variables, weight_totals, sumsq: bool) -> _ReplicatePlan:
        shared = shape.d + 1 if any(_complement(v) for v in variables) else 0  # groups 0..D: domain totals
        offset = shared
        layout, majors = [], []
        entries = [(None, 0, None, None)] if shared else []
        for var, totals in zip(variables, weight_totals):
            g1 = shape.groups(var)
            separate_b = var.ratio and not (var.a is None and var.b is None)
            layout.append((offset, offset + g1 if separate_b else None))
            major = None
            if _complement(var):
                # the most frequent slot of each domain (outside the domains: none, every entry kept)
                major = np.full(shape.d + 1, var.n_slots + 1, dtype=np.int64)
                major[: shape.d] = np.argmax(shape.by_group(totals, var), axis=-1)
            majors.append(major)
            entries.append((var, offset, var.a, major))
            if separate_b:
                entries.append((var, offset + g1, var.b, None))
            offset += g1 * (2 if separate_b else 1)
        all_ones = all(values is None for _, _, values, _ in entries)
        skips = sum(major is not None for _, _, _, major in entries)
        return cls(weights, dom_x, shape, layout, majors, shared, offset, entries, all_ones, skips, sumsq)

    def accumulate(self, bounds: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        """``S @ W`` (and the domains' sums of squares) over rows ``bounds[0]:bounds[1]``."""
        from scipy import sparse

        n_rep = self.weights.shape[1]
        d1 = self.shape.d + 1
        acc = np.zeros((self.n_groups, n_rep), dtype=np.float64)
        sq = np.zeros((d1, n_rep), dtype=np.float64) if self.sumsq else None
        for start in range(bounds[0], bounds[1], REPLICATE_BLOCK):
            stop = min(start + REPLICATE_BLOCK, bounds[1])
            m = stop - start
            block = np.ascontiguousarray(self.weights[start:stop], dtype=np.float64)
            dom_b = self.dom_x[start:stop]
            # entries, row by row (the columns of S): group and value of each, and whether it is kept
            n_entries = len(self.entries)
            idx = np.empty((m, n_entries), dtype=np.int64)
            val = None if self.all_ones else np.ones((m, n_entries))
            mask = per_row = None
            if self.skips:
                mask = np.ones((m, n_entries), dtype=bool)
                per_row = np.full(m, n_entries - self.skips, dtype=np.int64)
            bases: dict[int, np.ndarray] = {}  # number of slots -> domain * (S + 1)
            for j, (var, offset, values, major) in enumerate(self.entries):
                if var is None:  # the shared domain totals
                    idx[:, j] = dom_b
                    continue
                base = bases.get(var.n_slots)
                if base is None:
                    base = bases[var.n_slots] = dom_b * (var.n_slots + 1)
                slots = var.slots[start:stop]
                column = idx[:, j]
                np.add(base, slots, out=column)
                column += offset
                if values is not None:
                    val[:, j] = values[start:stop]
                if major is not None:
                    keep = slots != major[dom_b]
                    mask[:, j] = keep
                    per_row += keep
            if mask is not None:
                flat = mask.ravel()
                idx = np.compress(flat, idx.ravel())
                val = np.ones(len(idx)) if val is None else np.compress(flat, val.ravel())
                indptr = np.empty(m + 1, dtype=np.int64)
                indptr[0] = 0
                np.cumsum(per_row, out=indptr[1:])
            else:
                idx = idx.ravel()
                val = np.ones(len(idx)) if val is None else val.ravel()
                indptr = np.arange(0, m * n_entries + 1, n_entries)
            acc += sparse.csc_array((val, idx, indptr), shape=(self.n_groups, m)) @ block
            if sq is not None:
                by_domain = sparse.csc_array((np.ones(m), dom_b, np.arange(m + 1)), shape=(d1, m))
                sq += by_domain @ (block * block)
        return acc, sq


def _complement(var: GroupedVariable) -> bool:
    """Level indicators without missing values: their most frequent level needs no entries."""
    return var.a is None and var.b is None and not var.has_missing


# ------------------------------------------------------------------ design effects
def _deff(design, var, dom_x, totals, est, den, vcov, cols_n, cols_nz, shape: _Shape, deff) -> np.ndarray:
    """``var / var_srs`` as the dense path (see :mod:`pipeline.survey.estimators`), from group totals.

    ``var_srs = s2 / nobs * factor`` with ``s2`` the weighted variance (times
    ``n/(n-1)``) of the linearized variable ``u = a - est b`` over the
    domain's rows. A level indicator takes two values in a domain, ``1 - est``
    on the level's rows and ``-est`` on the others, so ``sum w (u - ubar)^2`` is
    a closed form in the level's weight total and that of the other levels
    (a sum, never a difference); numeric variables take a second pass over
    the rows.
    """
    big_n = shape.per_column(shape.domain_sums(totals["W"], var), var)
    nobs = (cols_n if design.replicates is not None else cols_nz).astype(np.float64)
    e = est if var.ratio else np.zeros_like(est)
    if var.categorical:
        t_w = shape.by_group(totals["W"], var)                          # (D, S)
        own = shape.columns(totals["W"], var)
        others = np.stack([np.delete(t_w, s, axis=-1).sum(axis=-1) for s in var.report], axis=-1).reshape(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ubar = (own * (1.0 - e) + others * (0.0 - e)) / big_n
            ss = own * (1.0 - e - ubar) ** 2 + others * (0.0 - e - ubar) ** 2
    else:
        # one column (and slot) per domain: u_i = a_i - e_d b_i on the domain's rows
        w = design.weights
        g1 = shape.groups(var)
        key = dom_x * (var.n_slots + 1) + var.slots
        a = np.ones_like(w) if var.a is None else var.a
        b = np.ones_like(w) if var.b is None else var.b
        inside = shape.per_group(np.ones(shape.d), var)[key] > 0
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            u = np.where(inside, np.nan_to_num(a - shape.per_group(e, var)[key] * b, nan=0.0), 0.0)
            ubar = shape.domain_sums(np.bincount(key, weights=w * u, minlength=g1), var) / big_n
            dev2 = w * (u - shape.per_group(ubar, var)[key]) ** 2
            ss = shape.domain_sums(np.bincount(key, weights=dev2, minlength=g1), var)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = ss / big_n * nobs / (nobs - 1)
        factor = big_n**2 if not var.ratio else (big_n / den) ** 2
        vsrs = s2 * factor / nobs
        if deff is True:
            vsrs = vsrs * (big_n - nobs) / big_n
            # R (svymean): "Sample size greater than population size: are weights correctly scaled?" -> NA
            vsrs = np.where(big_n < nobs, np.nan, vsrs)
        return np.diag(vcov) / vsrs

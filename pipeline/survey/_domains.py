"""The domain engine shared by every estimator and cross-tabulation.

Owns the coding of a design's variables and domains into estimating-function columns (numerator
``a``, denominator ``b`` per estimate), and their estimation: the grouped fast path
(:func:`pipeline.survey._grouped.estimate_grouped`) and the dense reference path
(:func:`compute`, influence values to :func:`~pipeline.survey.variance.taylor_vcov` or
:func:`~pipeline.survey.variance.replicate_vcov`), domain degrees of freedom and design
effects. :mod:`pipeline.survey.estimators`, :mod:`pipeline.survey.quantiles` and
:mod:`pipeline.survey.tables` use its public names; see :mod:`pipeline.survey.estimators`
for the conventions (R ``svyby`` domains, ``na_rm``, ``deff``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError, DataError
from pipeline.survey._grouped import GroupedVariable, estimate_grouped
from pipeline.survey.design import Design
from pipeline.survey.results import Deff, Estimates
from pipeline.survey.variance import replicate_vcov, taylor_stages, taylor_vcov

__all__ = [
    "Coded",
    "Columns",
    "Domains",
    "check_missing",
    "compute",
    "design_column",
    "design_flag",
    "domain_keys",
    "domain_matrix",
    "domains_of",
    "estimate_coded",
    "is_categorical",
    "level_estimate",
    "level_estimates",
    "levels_of",
    "missing_mask",
    "numeric_coded",
    "numeric_estimate",
    "numeric_values",
]


def missing_mask(s: pl.Series) -> np.ndarray:
    if not s.dtype.is_float() and not s.null_count():
        return np.zeros(s.len(), dtype=bool)  # nothing missing: skip the pass
    m = s.is_null()
    if s.dtype.is_float():
        m = m | s.is_nan()
    return m.fill_null(True).to_numpy().astype(bool)


def design_column(design: Design, name: str, role: str = "variable") -> pl.Series:
    if name not in design.frame.columns:
        raise ArgumentError(
            f"{role} {name!r} is not in the design's data",
            hint=f"columns are: {', '.join(design.frame.columns[:20])}{' ...' if design.frame.width > 20 else ''}",
        )
    return design.frame.get_column(name)


def is_categorical(s: pl.Series, categorical: bool | None) -> bool:
    if categorical is not None:
        return categorical
    return not (s.dtype.is_numeric() or s.dtype == pl.Boolean)


def numeric_values(s: pl.Series, name: str) -> np.ndarray:
    if not (s.dtype.is_numeric() or s.dtype == pl.Boolean):
        raise DataError(
            f"variable {name!r} is not numeric (dtype {s.dtype})",
            hint="use proportions() for categorical variables, or cast the column",
        )
    return s.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)


def levels_of(s: pl.Series, levels: Sequence[Any] | None) -> list[Any]:
    if levels is not None:
        return list(levels)
    if isinstance(s.dtype, pl.Enum):
        return list(s.dtype.categories.to_list())
    vals = s.drop_nulls()
    if vals.dtype.is_float():
        vals = vals.filter(~vals.is_nan())
    return vals.unique().sort().to_list()


@dataclass(frozen=True)
class Domains:
    keys: pl.DataFrame          # one row per domain (by columns)
    code: np.ndarray            # (n,) domain code per row, -1 outside every domain
    rows: np.ndarray | None = None  # (D,) rows of each domain, when known without a pass

    @property
    def count(self) -> int:
        return self.keys.height

    def code_outside_last(self) -> np.ndarray:
        """Domain codes with ``D`` (not -1) for rows outside every domain, as the grouped path wants."""
        n_dom = max(self.count, 1)
        if self.rows is not None and int(self.rows.sum()) == self.code.shape[0]:
            return self.code  # every row is in a domain
        return np.where(self.code < 0, n_dom, self.code).astype(np.intp)


# Integer columns whose values span at most this many codes are coded by offset and bincount.
_SMALL_RANGE = 1 << 20


def _small_int_codes(s: pl.Series) -> tuple[np.ndarray, int, int] | None:
    """``(values - min, min, span)`` of an integer column with a small range; ``None`` otherwise.

    Nulls get code 0 (callers mask them); an all-null column gives ``None``.
    Coding by offset replaces a hash join or a sort by one pass and a table lookup.
    """
    if not s.dtype.is_integer() or s.null_count() == s.len():
        return None
    lo, hi = int(s.min()), int(s.max())
    span = hi - lo + 1
    if span > _SMALL_RANGE or not (-(2**62) < lo and hi < 2**62):
        return None
    values = (s.fill_null(lo) if s.null_count() else s).to_numpy()
    if lo == 0 and values.dtype.itemsize < np.dtype(np.intp).itemsize and values.dtype.kind in "iu":
        return values, lo, span  # already 0-based: keep the column's own (small) integers
    return values.astype(np.intp) - lo, lo, span


def design_flag(design: Design, name: str) -> bool:
    """Cached whole-design facts: every row in the design, every weight non-zero."""
    if name == "all_in_design":
        return design._cached(name, lambda: bool(design.in_design.all()))
    return design._cached(name, lambda: bool((design.weights != 0).all()))


def domains_of(design: Design, by: Sequence[str]) -> Domains:
    by = list(by)
    if not by:
        if design_flag(design, "all_in_design"):
            n = design.in_design.shape[0]
            return Domains(pl.DataFrame(), np.zeros(n, dtype=np.intp), np.array([n]))
        return Domains(pl.DataFrame(), np.where(design.in_design, 0, -1).astype(np.int64))
    for b in by:
        design_column(design, b, "by variable")
    sub = design.frame.select(by)
    fast = _int_domains(design, sub, by)
    if fast is not None:
        return fast
    eligible = design.in_design & (design.weights != 0)  # R svyby: zero-weight rows make no domain
    for b in by:
        eligible &= ~missing_mask(sub.get_column(b))
    keys = sub.filter(pl.Series(eligible)).unique().sort(by)
    if keys.height == 0:
        raise _no_domain_error(by)
    coded = sub.join(keys.with_row_index("__domain"), on=by, how="left", maintain_order="left")
    code = coded.get_column("__domain").fill_null(-1).cast(pl.Int64).to_numpy()
    code = np.where(design.in_design, code, -1)
    return Domains(keys, code)


def _no_domain_error(by: Sequence[str]) -> DataError:
    return DataError(
        f"by {', '.join(by)}: no row of the design has a value (and a non-zero weight) for every by variable",
        hint="check the by variables for missing values",
    )


def _int_domains(design: Design, sub: pl.DataFrame, by: list[str]) -> Domains | None:
    """:func:`domains_of` for integer ``by`` columns of small range, without a join or a sort.

    The combination of the columns' offsets (first column most significant)
    orders the domains as ``sort(by)`` does; the domains are the combinations
    seen on eligible rows (in the design, non-zero weight, no null), and a
    lookup table gives every row its domain.
    """
    coded = [_small_int_codes(sub.get_column(b)) for b in by]
    if any(c is None for c in coded) or np.prod([float(c[2]) for c in coded]) > _SMALL_RANGE:
        return None
    combined = coded[0][0] if len(coded) == 1 else coded[0][0].astype(np.intp)
    for offsets, _, span in coded[1:]:
        combined = combined * span + offsets
    nulls = None
    for b in by:
        col = sub.get_column(b)
        if col.null_count():
            m = col.is_null().to_numpy()
            nulls = m if nulls is None else (nulls | m)
    n_combos = int(np.prod([c[2] for c in coded]))
    rows = None
    if design_flag(design, "all_in_design") and design_flag(design, "all_weights_nonzero") and nulls is None:
        counts = np.bincount(combined, minlength=n_combos)
        seen = counts > 0
        rows = counts[seen]  # every row is eligible: the domains' row counts come for free
    else:
        eligible = design.in_design & (design.weights != 0)  # R svyby: zero-weight rows make no domain
        if nulls is not None:
            eligible &= ~nulls
        seen = np.bincount(combined[eligible], minlength=n_combos) > 0
    if not seen.any():
        raise _no_domain_error(by)
    present = np.flatnonzero(seen)
    lookup = np.full(n_combos, -1, dtype=np.int64)
    lookup[present] = np.arange(len(present))
    code = lookup[combined]
    if nulls is not None:
        code[nulls] = -1
    if not design_flag(design, "all_in_design"):
        code[~design.in_design] = -1
    columns, rest = [], present
    for b, (_, lo, span) in reversed(list(zip(by, coded))):
        columns.append(pl.Series(b, rest % span + lo).cast(sub.schema[b]))
        rest = rest // span
    return Domains(pl.DataFrame(columns[::-1]), code, rows)


@dataclass(frozen=True)
class Columns:
    """The ``K`` ratios ``sum w a_k / sum w b_k`` (``b`` None for totals)."""

    a: np.ndarray               # (n, K) numerators, zero outside the column's rows
    b: np.ndarray | None        # (n, K) denominators (None: totals)
    rows: np.ndarray            # (n, K) bool, rows of the R subset design of each column
    domain_of: np.ndarray       # (K,) domain index of each column
    n: np.ndarray               # (K,) rows with a value
    dom_rows: np.ndarray        # (n, D) bool domain membership (by values only)


def compute(
    design: Design,
    cols: Columns,
    statistic: str,
    variable: str,
    by: tuple[str, ...],
    keys: pl.DataFrame,
    deff: Deff,
) -> Estimates:
    w = design.weights
    a, b = cols.a, cols.b
    ta = w @ a
    if b is None:
        est = ta
        tb = np.ones_like(ta)
    else:
        tb = w @ b
        with np.errstate(invalid="ignore", divide="ignore"):
            est = ta / tb
    if design.replicates is not None:
        reps = design.replicates
        ra = reps.weights.T @ a
        if b is None:
            thetas = ra
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                thetas = ra / (reps.weights.T @ b)
        vcov = replicate_vcov(thetas, est, scale=reps.scale, rscales=reps.rscales, mse=reps.mse)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            z = w[:, None] * (a if b is None else (a - est[None, :] * b) / tb[None, :])
        z = np.nan_to_num(z, nan=0.0)
        present = cols.rows.any(axis=1)
        vcov = taylor_vcov(design, z, present=present)
        if design.lonely_psu == "average":
            # R computes each domain on its own subset design: strata are counted per domain
            for d in np.unique(cols.domain_of):
                idx = np.flatnonzero(cols.domain_of == d)
                pres = cols.rows[:, idx].any(axis=1)
                vcov[np.ix_(idx, idx)] = taylor_vcov(design, z[:, idx], present=pres)
    deffs = _deff(design, cols, est, tb, vcov, statistic, deff)
    extra: dict[str, Any] = {"n_nonzero": (cols.rows & (w != 0)[:, None]).sum(axis=0)}
    if design.replicates is not None:
        extra["replicates"] = thetas
    dom_df = np.array([design.domain_degf(cols.dom_rows[:, d]) for d in range(cols.dom_rows.shape[1])])
    dom_nrow = (cols.dom_rows & design.in_design[:, None]).sum(axis=0)
    return Estimates(
        statistic=statistic,
        variable=variable,
        by=by,
        keys=keys,
        estimate=est,
        vcov=vcov,
        n=cols.n.astype(np.int64),
        n_rows=dom_nrow[cols.domain_of].astype(np.int64),
        df=dom_df[cols.domain_of].astype(np.float64),
        design_df=design.degf,
        deff=deffs,
        deff_kind=deff,
        extra=extra,
    )


def _deff(
    design: Design,
    cols: Columns,
    est: np.ndarray,
    tb: np.ndarray,
    vcov: np.ndarray,
    statistic: str,
    deff: Deff,
) -> np.ndarray:
    k = est.shape[0]
    if deff is False:
        return np.full(k, np.nan)
    if deff not in (True, "replace"):
        raise ArgumentError(f"deff must be True, False or 'replace'; got {deff!r}", hint="R's deff= values")
    w = design.weights
    rows = cols.rows
    wr = np.where(rows, w[:, None], 0.0)
    big_n = wr.sum(axis=0)
    if design.replicates is not None:
        nobs = rows.sum(axis=0).astype(np.float64)
    else:
        nobs = (rows & (w != 0)[:, None]).sum(axis=0).astype(np.float64)
    # u: the linearized variable of R's svyvar (y for totals, a - R b for ratios/means)
    u = cols.a if cols.b is None else cols.a - est[None, :] * cols.b
    u = np.where(rows, np.nan_to_num(u, nan=0.0), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ubar = (wr * u).sum(axis=0) / big_n
        s2 = (wr * (u - ubar) ** 2).sum(axis=0) / big_n * nobs / (nobs - 1)
        factor = big_n**2 if cols.b is None else (big_n / tb) ** 2
        vsrs = s2 * factor / nobs
        if deff is True:
            vsrs = vsrs * (big_n - nobs) / big_n
            # R (svymean): "Sample size greater than population size: are weights correctly scaled?" -> NA
            vsrs = np.where(big_n < nobs, np.nan, vsrs)
        return np.diag(vcov) / vsrs


def check_missing(design: Design, s: pl.Series, name: str, na_rm: bool, extra: np.ndarray | None = None) -> np.ndarray:
    miss = missing_mask(s)
    if extra is not None:
        miss = miss | extra
    if not na_rm:
        bad = miss & design.in_design
        if bad.any():
            rows = (np.flatnonzero(bad) + 1)[:5].tolist()
            raise DataError(
                f"variable {name!r} has {int(bad.sum())} missing value(s) (rows {', '.join(map(str, rows))}"
                f"{' ...' if bad.sum() > 5 else ''})",
                hint="pass na_rm=True to leave those rows out of the domain (R's na.rm = TRUE)",
            )
    return miss


def domain_matrix(dom: Domains) -> np.ndarray:
    n = dom.code.shape[0]
    d = max(dom.count, 1)
    out = np.zeros((n, d), dtype=bool)
    inside = dom.code >= 0
    out[np.flatnonzero(inside), dom.code[inside]] = True
    return out


def domain_keys(dom: Domains, levels: list[Any] | None, level_dtype: pl.DataType | None) -> pl.DataFrame:
    """One row per estimate: the domain's ``by`` values (domains slowest) and ``level``."""
    n_lv = 1 if levels is None else len(levels)
    n_dom = max(dom.count, 1)
    if levels is None:
        level = pl.Series("level", [None] * n_dom, dtype=pl.String)
    else:
        level = pl.Series("level", levels * n_dom, dtype=level_dtype, strict=False)
    if not dom.count:
        return pl.DataFrame([level])
    by = dom.keys.select(pl.all().repeat_by(n_lv).explode())
    return by.with_columns(level)


# ------------------------------------------------------------------ estimators
@dataclass(frozen=True, eq=False)
class Coded:
    """One variable ready to estimate: its group coding (fast path), the keys of
    its estimates, and a builder of its dense ``(n, K)`` columns (reference path)."""

    variable: str
    grouped: GroupedVariable
    keys: pl.DataFrame
    dense: Callable[[], Columns]


def estimate_coded(design: Design, dom: Domains, coded: list[Coded], statistic: str, by: Sequence[str], deff: Deff) -> list[Estimates]:
    """Estimates of every coded variable, from group totals when the design allows.

    Designs with weighting adjustments residualize row-level influence
    values, so they take the dense path (:func:`compute`), as do statistics
    that come out infinite (a zero denominator total), whose influence values
    the dense path zeroes row by row. Everything else goes through
    :func:`pipeline.survey._grouped.estimate_grouped`; on a replicate design
    all the variables share one pass over the replicate weights.
    """
    if deff is not False and deff not in (True, "replace"):
        raise ArgumentError(f"deff must be True, False or 'replace'; got {deff!r}", hint="R's deff= values")
    by = tuple(by)
    if design.adjustments:
        return [compute(design, c.dense(), statistic, c.variable, by, c.keys, deff) for c in coded]
    n_dom = max(dom.count, 1)
    # replicate degf need a bound on each domain's replicate-weight column norms: the pass
    # computes them the first time; after that the whole sample's serve as a bound
    need_sumsq = (
        design.is_replicate
        and "replicate_col_sumsq" not in design._cache
        and not all(design._replicate_degf_known(dom.code == d) for d in range(n_dom))
    )
    call = estimate_grouped(
        design, dom.code_outside_last(), n_dom, [c.grouped for c in coded], deff=deff,
        domain_rows=dom.rows, domain_rows_sumsq=need_sumsq,
    )
    dom_df = _domain_df(design, dom.code, n_dom, call)
    dom_nrow = call.domain_rows
    out = []
    for c, res in zip(coded, call.results):
        if np.isinf(res.estimate).any():
            out.append(compute(design, c.dense(), statistic, c.variable, by, c.keys, deff))
            continue
        domain_of = np.repeat(np.arange(n_dom), len(c.grouped.report))
        extra: dict[str, Any] = {"n_nonzero": res.n_nonzero.astype(np.int64)}
        if design.replicates is not None:
            extra["replicates"] = res.thetas
        out.append(
            Estimates(
                statistic=statistic,
                variable=c.variable,
                by=by,
                keys=c.keys,
                estimate=res.estimate,
                vcov=res.vcov,
                n=res.n.astype(np.int64),
                n_rows=dom_nrow[domain_of].astype(np.int64),
                df=dom_df[domain_of].astype(np.float64),
                design_df=design.degf,
                deff=np.full(len(res.estimate), np.nan) if res.deff is None else res.deff,
                deff_kind=deff,
                extra=extra,
            )
        )
    return out


def _domain_df(design: Design, code: np.ndarray, n_dom: int, call) -> np.ndarray:
    """Degrees of freedom of every domain (R ``degf`` of the domain's subset design).

    Linearization: first-stage PSUs with a domain row of non-zero weight,
    minus their strata (PSUs are nested in strata). A PSU has such a row when
    its weight total in the domain is positive (weights are non-negative):
    :func:`~pipeline.survey._grouped.estimate_grouped` returns those totals
    when some variable had no missing value, else one bincount over
    ``PSU x domain`` counts them. Replicate: :meth:`Design._replicate_degf`
    per domain, cached on the design; the column sums of squares that bound
    its certificate come from the replicate pass, or, once one call has
    computed them, from the whole sample's (a looser but valid bound).
    """
    if design.replicates is not None:
        if call.replicate_sumsq_all is not None:
            design._cache.setdefault("replicate_col_sumsq", call.replicate_sumsq_all)
        sumsq = call.replicate_sumsq
        bound = design._cache.get("replicate_col_sumsq")  # sums over more rows: an upper bound
        df = [design._replicate_degf(code == d, bound if sumsq is None else sumsq[d]) for d in range(n_dom)]
        return np.asarray(df, dtype=np.int64)
    st = taylor_stages(design)[0]
    if call.psu_weight is not None:
        psu_in = call.psu_weight > 0                                               # (C, D)
    else:
        dom_x = np.where(code < 0, n_dom, code)
        idx = st.codes * (n_dom + 1) + dom_x
        size = st.n_clusters * (n_dom + 1)
        if design_flag(design, "all_weights_nonzero"):
            psu_rows = np.bincount(idx, minlength=size)
        else:
            psu_rows = np.bincount(idx, weights=(design.weights != 0).astype(np.float64), minlength=size)
        psu_in = psu_rows.reshape(st.n_clusters, n_dom + 1)[:, :n_dom] > 0
    df = [
        np.count_nonzero(psu_in[:, d]) - np.count_nonzero(np.bincount(st.h_c[psu_in[:, d]], minlength=1))
        for d in range(n_dom)
    ]
    return np.asarray(df, dtype=np.int64)


def numeric_coded(
    design: Design,
    variable: str,
    dom: Domains,
    miss: np.ndarray,
    y: np.ndarray,
    statistic: str,
    yb: np.ndarray | None = None,
) -> Coded:
    """A numeric variable (or ratio ``y / yb``): one slot, numerator ``y``, denominator 1 or ``yb``."""
    a = np.nan_to_num(y, nan=0.0)
    b = None if yb is None else np.nan_to_num(yb, nan=0.0)

    def dense() -> Columns:
        dm = domain_matrix(dom)
        rows = dm & ~miss[:, None] & design.in_design[:, None]
        ca = np.where(rows, a[:, None], 0.0)
        if yb is not None:
            cb = np.where(rows, b[:, None], 0.0)
        else:
            cb = None if statistic == "total" else rows.astype(np.float64)
        return Columns(a=ca, b=cb, rows=rows, domain_of=np.arange(dm.shape[1]), n=rows.sum(axis=0), dom_rows=dm)

    grouped = GroupedVariable(
        slots=miss.astype(np.int8),
        n_slots=1,
        report=np.zeros(1, dtype=np.int64),
        has_missing=bool(miss.any()),
        a=a,
        b=b,
        ratio=statistic != "total",
        categorical=False,
    )
    return Coded(variable, grouped, domain_keys(dom, None, None), dense)


def numeric_estimate(
    design: Design, variable: str, *, by: Sequence[str], na_rm: bool, deff: Deff, statistic: str
) -> Estimates:
    s = design_column(design, variable)
    y = numeric_values(s, variable)
    miss = check_missing(design, s, variable, na_rm)
    dom = domains_of(design, by)
    return estimate_coded(design, dom, [numeric_coded(design, variable, dom, miss, y, statistic)], statistic, by, deff)[0]


def level_estimate(
    design: Design,
    variable: str,
    *,
    by: Sequence[str],
    levels: Sequence[Any] | None,
    na_rm: bool,
    deff: Deff,
    statistic: str,
) -> Estimates:
    return level_estimates(design, [variable], by=by, levels=levels, na_rm=na_rm, deff=deff, statistic=statistic)[0]


def level_estimates(
    design: Design,
    variables: Sequence[str],
    *,
    by: Sequence[str],
    levels: Sequence[Any] | None,
    na_rm: bool,
    deff: Deff,
    statistic: str,
) -> list[Estimates]:
    """Shares (or totals) of the levels of each of ``variables``, estimated together."""
    found = []
    for variable in variables:
        s = design_column(design, variable)
        miss = check_missing(design, s, variable, na_rm)
        small = None if isinstance(s.dtype, pl.Enum | pl.Categorical) else _small_int_codes(s)
        lv = _observed_levels(design, s, small, levels)
        if not lv:
            raise DataError(
                f"variable {variable!r} has no non-missing values in the design",
                hint="check the filters and missing-value codes",
            )
        found.append((variable, s, miss, small, lv))
    dom = domains_of(design, by)
    keys: dict = {}  # variables with the same levels and dtype share their keys frame
    coded = [
        _level_coded(design, variable, dom, s, miss, small, lv, explicit=levels is not None, statistic=statistic, keys=keys)
        for variable, s, miss, small, lv in found
    ]
    return estimate_coded(design, dom, coded, statistic, by, deff)


def _observed_levels(design: Design, s: pl.Series, small, levels: Sequence[Any] | None) -> list[Any]:
    """The levels to report: ``levels``, or the sorted values seen in the design (enum: category order)."""
    if levels is not None or small is None:
        return levels_of(s if design_flag(design, "all_in_design") else s.filter(pl.Series(design.in_design)), levels)
    offsets, lo, span = small
    if span <= 2 and design_flag(design, "all_in_design"):
        return list(range(lo, lo + span))  # the minimum and the maximum: both seen (0/1 items)
    keep = None if design_flag(design, "all_in_design") else design.in_design
    if s.null_count():
        nonnull = s.is_not_null().to_numpy()
        keep = nonnull if keep is None else (keep & nonnull)
    seen = np.bincount(offsets if keep is None else offsets[keep], minlength=span) > 0
    return (np.flatnonzero(seen) + lo).tolist()


def _level_coded(
    design: Design,
    variable: str,
    dom: Domains,
    s: pl.Series,
    miss: np.ndarray,
    small,
    lv: list[Any],
    *,
    explicit: bool,
    statistic: str,
    keys: dict | None = None,
) -> Coded:
    """A categorical variable coded into slots: one per distinct level, plus "other" when ``levels`` were given.

    Integer columns of small range map values to slots through a lookup table
    on their offsets (the data's own 0/1 codes are used as they are); other
    columns compare with each level as the dense path does.
    """
    try:
        lv_series = pl.Series(lv, dtype=s.dtype, strict=True) if not isinstance(s.dtype, pl.Enum) else pl.Series(lv, dtype=pl.String)
    except Exception as exc:  # noqa: BLE001 - report the user's level values
        raise ArgumentError(
            f"levels {lv!r} do not fit variable {variable!r} (dtype {s.dtype})",
            hint="give levels as values of the variable",
        ) from exc
    values = s.cast(pl.String) if isinstance(s.dtype, pl.Enum | pl.Categorical) else s
    level_values = lv_series.to_list()
    distinct = list(dict.fromkeys(level_values))
    slot_of = {v: i for i, v in enumerate(distinct)}
    n_slots = len(distinct) + (1 if explicit else 0)
    fill = len(distinct) if explicit else n_slots  # values not among the levels: "other" (or outside the design)
    slot_dtype = np.int8 if n_slots < 127 else np.int32
    if small is not None:
        offsets, lo, span = small
        lut = np.full(span, fill, dtype=slot_dtype)
        for v, i in slot_of.items():
            if lo <= v < lo + span:
                lut[v - lo] = i
        identity = fill == n_slots and span == n_slots and bool((lut == np.arange(span)).all())
        slots = offsets if (identity and offsets.dtype.itemsize <= np.dtype(slot_dtype).itemsize) else lut[offsets]
    else:
        slots = np.full(s.len(), fill, dtype=slot_dtype)
        for v, i in slot_of.items():
            slots[(values == v).fill_null(False).to_numpy()] = i
    has_missing = bool(miss.any())
    if has_missing:
        slots = np.where(miss, n_slots, slots).astype(slot_dtype)

    def dense() -> Columns:
        dm = domain_matrix(dom)
        rows_d = dm & ~miss[:, None] & design.in_design[:, None]          # (n, D)
        ind = np.column_stack([(values == v).fill_null(False).to_numpy() for v in level_values]).astype(np.float64)
        n_dom = dm.shape[1]
        # columns ordered domain-major: (d, level)
        rows = np.repeat(rows_d, len(level_values), axis=1)
        a = np.where(rows, np.tile(ind, (1, n_dom)), 0.0)
        b = None if statistic == "total" else rows.astype(np.float64)
        return Columns(
            a=a, b=b, rows=rows, domain_of=np.repeat(np.arange(n_dom), len(level_values)), n=rows.sum(axis=0), dom_rows=dm
        )

    grouped = GroupedVariable(
        slots=slots,
        n_slots=n_slots,
        report=np.array([slot_of[v] for v in level_values], dtype=np.int64),
        has_missing=has_missing,
        ratio=statistic != "total",
        categorical=True,
    )
    cache_key = (tuple(map(repr, lv)), s.dtype)
    if keys is None or cache_key not in keys:
        frame = domain_keys(dom, lv, s.dtype)
        if keys is None:
            return Coded(variable, grouped, frame, dense)
        keys[cache_key] = frame
    return Coded(variable, grouped, keys[cache_key], dense)

"""Design-based estimators: totals, means, proportions and ratios, overall and by domains.

This module owns the estimators and their result type :class:`Estimates`.
Every statistic here is a ratio of weighted totals ``A / B`` (a total has no
denominator; a mean is ``sum w y / sum w``; the proportion of a level is the
mean of its indicator), so one code path gives the estimates, their full
covariance matrix (between levels *and* between domains) and design effects:

* Taylor linearization: influence values ``w_i (a_i - R b_i) / B`` go to
  :func:`pipeline.survey.variance.taylor_vcov` (R ``svymean``/``svyratio``);
* replicate designs: the statistic is recomputed with every replicate's
  weights and :func:`pipeline.survey.variance.replicate_vcov` applies.

Domains are estimated by zero weights outside the domain (R ``svyby``),
never by dropping rows. ``na_rm=True`` treats rows with a missing value as
outside the domain (R ``na.rm = TRUE``): the design (strata, PSUs, ``degf``)
stays that of the whole sample. Rows with a missing ``by`` value belong to no
domain (R drops them from ``svyby``).

Conventions follow R ``survey`` 4.1-1 (see ``conformance/README.md``):

``deff=True``
    ``var / var_srs`` with ``var_srs = svyvar(u) / n * (1 - n/N)`` on the
    domain rows (``N`` the sum of their weights, ``n`` the rows with a non-zero
    weight, or all rows for replicate designs); totals multiply ``var_srs``
    by ``N^2``, ratios by ``(N / B)^2``. ``deff="replace"`` omits ``(1 - n/N)``.
    Weights that sum to less than the sample size give NaN (R's ``svymean``
    warns and returns NA); weights summing to exactly ``n`` give ``inf``.
``df``
    The domain's design degrees of freedom (R ``degf`` of the domain subset,
    as ``svyby(..., svyciprop)`` uses); :attr:`Estimates.design_df` holds the
    whole design's.

Where this module deliberately differs from R survey 4.1-1:

* ``nrow()`` of a domain of a *calibrated* design (used by the ``beta``
  interval's df adjustment) is the number of domain rows here; R keeps the
  out-of-domain rows of calibrated designs and counts them.
* Interval bounds are kept inside [0, 1] (see :mod:`pipeline.survey.intervals`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError, DataError
from pipeline.survey._grouped import GroupedVariable, estimate_grouped
from pipeline.survey.design import Design
from pipeline.survey.variance import replicate_vcov, taylor_stages, taylor_vcov

__all__ = [
    "Estimates",
    "mean",
    "proportion",
    "proportions",
    "ratio",
    "total",
]

Deff = bool | Literal["replace"]


# ------------------------------------------------------------------ results
@dataclass(frozen=True, eq=False)
class Estimates:
    """Estimates with their covariance matrix: what every estimator returns.

    One entry per domain x level (``keys``), domains slowest.

    Attributes
    ----------
    statistic : {'total', 'mean', 'proportion', 'ratio', 'contrast'}
        What was estimated (R: svytotal, svymean, svymean of a factor, svyratio).
    variable : str
        The analysis variable (``num/den`` for ratios).
    by : tuple of str
        Domain variables (empty: the whole sample).
    keys : polars.DataFrame
        One row per estimate: the ``by`` columns (original dtypes) and ``level``
        (category for categorical variables, null otherwise).
    estimate : numpy.ndarray
        ``(K,)`` point estimates.
    vcov : numpy.ndarray
        ``(K, K)`` covariance matrix, across levels and domains.
    n : numpy.ndarray
        ``(K,)`` rows of the domain with a value of the variable.
    n_rows : numpy.ndarray
        ``(K,)`` rows of the domain design (R ``nrow``).
    df : numpy.ndarray
        ``(K,)`` domain degrees of freedom.
    design_df : int
        Degrees of freedom of the whole design (R ``degf(design)``).
    deff : numpy.ndarray
        ``(K,)`` design effects (NaN when not requested).
    deff_kind : bool or 'replace'
        Which design effect ``deff`` holds.
    """

    statistic: str
    variable: str
    by: tuple[str, ...]
    keys: pl.DataFrame
    estimate: np.ndarray
    vcov: np.ndarray
    n: np.ndarray
    n_rows: np.ndarray
    df: np.ndarray
    design_df: int
    deff: np.ndarray
    deff_kind: Deff = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    @property
    def se(self) -> np.ndarray:
        """Standard errors, ``sqrt(diag(vcov))``."""
        return np.sqrt(np.maximum(np.diag(self.vcov), 0.0))

    def confint(self, conf_level: float = 0.95, df: Literal["domain", "design"] | float = "domain") -> np.ndarray:
        """Wald intervals ``estimate -/+ q * se``.

        Parameters
        ----------
        conf_level : float
            Confidence level.
        df : {'domain', 'design'} or float
            Degrees of freedom of the t quantile: the domain's, the whole
            design's (R ``confint(x, df = degf(design))``), or a number
            (``float('inf')`` for R's default normal interval).

        Returns
        -------
        numpy.ndarray
            ``(K, 2)`` lower and upper bounds.
        """
        from pipeline.survey.intervals import _tq

        dfs = self._df_array(df)
        q = _tq(conf_level, dfs)
        se = self.se
        return np.column_stack([self.estimate - q * se, self.estimate + q * se])

    def _df_array(self, df: Literal["domain", "design"] | float) -> np.ndarray:
        if isinstance(df, str):
            if df == "domain":
                return self.df.astype(np.float64)
            if df == "design":
                return np.full(len(self), float(self.design_df))
            raise ArgumentError(f"unknown df {df!r}", hint="use 'domain', 'design' or a number")
        return np.full(len(self), float(df))

    def to_frame(self, conf_level: float = 0.95, df: Literal["domain", "design"] | float = "domain") -> pl.DataFrame:
        """Tidy frame: ``by`` columns, ``level``, ``n``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``, ``deff``.

        Intervals are Wald intervals with a t quantile (see :meth:`confint`).
        """
        ci = self.confint(conf_level, df)
        return self.keys.with_columns(
            pl.Series("n", self.n, dtype=pl.Int64),
            pl.Series("estimate", self.estimate, dtype=pl.Float64),
            pl.Series("se", self.se, dtype=pl.Float64),
            pl.Series("ci_low", ci[:, 0], dtype=pl.Float64),
            pl.Series("ci_high", ci[:, 1], dtype=pl.Float64),
            pl.Series("df", self._df_array(df), dtype=pl.Float64),
            pl.Series("deff", self.deff, dtype=pl.Float64),
        )

    def index(self, **key: Any) -> int:
        """Position of the estimate whose ``by`` values (and ``level``) equal ``key``.

        Examples
        --------
        ``res.index(stype="E", level="Yes")``
        """
        unknown = set(key) - set(self.keys.columns)
        if unknown:
            raise ArgumentError(
                f"unknown key column(s) {', '.join(sorted(unknown))}",
                hint=f"keys are {', '.join(self.keys.columns)}",
            )
        hit = np.ones(len(self), dtype=bool)
        for col, value in key.items():
            hit &= (self.keys.get_column(col) == value).fill_null(False).to_numpy()
        found = np.flatnonzero(hit)
        if len(found) != 1:
            raise ArgumentError(
                f"{len(found)} estimates match {key!r}; expected exactly one",
                hint="give every by column (and level for categorical variables)",
            )
        return int(found[0])

    def contrast(self, coefficients: np.ndarray | Sequence[float], *, labels: Sequence[str] | None = None) -> Estimates:
        """Linear combinations ``L @ estimate`` with covariance ``L V L'`` (R ``svycontrast``).

        Parameters
        ----------
        coefficients : array_like
            ``(K,)`` or ``(m, K)`` contrast coefficients.
        labels : sequence of str, optional
            Names of the ``m`` contrasts (the ``level`` column of the result).

        Returns
        -------
        Estimates
            ``statistic='contrast'``; ``df`` is the smallest domain df involved.
        """
        L = np.atleast_2d(np.asarray(coefficients, dtype=np.float64))
        if L.shape[1] != len(self):
            raise ArgumentError(
                f"contrast: {L.shape[1]} coefficients for {len(self)} estimates",
                hint="one coefficient per estimate, in the order of .keys",
            )
        m = L.shape[0]
        labels = list(labels) if labels is not None else [f"contrast_{i + 1}" for i in range(m)]
        involved = L != 0
        df = np.array([self.df[row].min() if row.any() else self.design_df for row in involved], dtype=np.float64)
        nn = np.array([self.n[row].sum() if row.any() else 0 for row in involved], dtype=np.int64)
        return Estimates(
            statistic="contrast",
            variable=self.variable,
            by=(),
            keys=pl.DataFrame({"level": labels}),
            estimate=L @ self.estimate,
            vcov=L @ self.vcov @ L.T,
            n=nn,
            n_rows=nn,
            df=df,
            design_df=self.design_df,
            deff=np.full(m, np.nan),
            deff_kind=False,
        )

    def difference(self, first: Mapping[str, Any], second: Mapping[str, Any]) -> Estimates:
        """``estimate[first] - estimate[second]`` with its standard error from the covariance.

        Examples
        --------
        ``res.difference({"stype": "E"}, {"stype": "H"})``
        """
        i, j = self.index(**first), self.index(**second)
        L = np.zeros(len(self))
        L[i] += 1.0
        L[j] -= 1.0
        label = f"{_key_label(first)} - {_key_label(second)}"
        out = self.contrast(L, labels=[label])
        return out


def _key_label(key: Mapping[str, Any]) -> str:
    return "*".join(f"{k}={v}" for k, v in key.items())


# ------------------------------------------------------------------ helpers
def _missing_mask(s: pl.Series) -> np.ndarray:
    if not s.dtype.is_float() and not s.null_count():
        return np.zeros(s.len(), dtype=bool)  # nothing missing: skip the pass
    m = s.is_null()
    if s.dtype.is_float():
        m = m | s.is_nan()
    return m.fill_null(True).to_numpy().astype(bool)


def _get(design: Design, name: str, role: str = "variable") -> pl.Series:
    if name not in design.frame.columns:
        raise ArgumentError(
            f"{role} {name!r} is not in the design's data",
            hint=f"columns are: {', '.join(design.frame.columns[:20])}{' ...' if design.frame.width > 20 else ''}",
        )
    return design.frame.get_column(name)


def _is_categorical(s: pl.Series, categorical: bool | None) -> bool:
    if categorical is not None:
        return categorical
    return not (s.dtype.is_numeric() or s.dtype == pl.Boolean)


def _numeric_values(s: pl.Series, name: str) -> np.ndarray:
    if not (s.dtype.is_numeric() or s.dtype == pl.Boolean):
        raise DataError(
            f"variable {name!r} is not numeric (dtype {s.dtype})",
            hint="use proportions() for categorical variables, or cast the column",
        )
    return s.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)


def _levels_of(s: pl.Series, levels: Sequence[Any] | None) -> list[Any]:
    if levels is not None:
        return list(levels)
    if isinstance(s.dtype, pl.Enum):
        return list(s.dtype.categories.to_list())
    vals = s.drop_nulls()
    if vals.dtype.is_float():
        vals = vals.filter(~vals.is_nan())
    return vals.unique().sort().to_list()


@dataclass(frozen=True)
class _Domains:
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


def _flag(design: Design, name: str) -> bool:
    """Cached whole-design facts: every row in the design, every weight non-zero."""
    if name == "all_in_design":
        return design._cached(name, lambda: bool(design.in_design.all()))
    return design._cached(name, lambda: bool((design.weights != 0).all()))


def _domains(design: Design, by: Sequence[str]) -> _Domains:
    by = list(by)
    if not by:
        if _flag(design, "all_in_design"):
            n = design.in_design.shape[0]
            return _Domains(pl.DataFrame(), np.zeros(n, dtype=np.intp), np.array([n]))
        return _Domains(pl.DataFrame(), np.where(design.in_design, 0, -1).astype(np.int64))
    for b in by:
        _get(design, b, "by variable")
    sub = design.frame.select(by)
    fast = _int_domains(design, sub, by)
    if fast is not None:
        return fast
    eligible = design.in_design & (design.weights != 0)  # R svyby: zero-weight rows make no domain
    for b in by:
        eligible &= ~_missing_mask(sub.get_column(b))
    keys = sub.filter(pl.Series(eligible)).unique().sort(by)
    if keys.height == 0:
        raise _no_domain_error(by)
    coded = sub.join(keys.with_row_index("__domain"), on=by, how="left", maintain_order="left")
    code = coded.get_column("__domain").fill_null(-1).cast(pl.Int64).to_numpy()
    code = np.where(design.in_design, code, -1)
    return _Domains(keys, code)


def _no_domain_error(by: Sequence[str]) -> DataError:
    return DataError(
        f"by {', '.join(by)}: no row of the design has a value (and a non-zero weight) for every by variable",
        hint="check the by variables for missing values",
    )


def _int_domains(design: Design, sub: pl.DataFrame, by: list[str]) -> _Domains | None:
    """:func:`_domains` for integer ``by`` columns of small range, without a join or a sort.

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
    if _flag(design, "all_in_design") and _flag(design, "all_weights_nonzero") and nulls is None:
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
    if not _flag(design, "all_in_design"):
        code[~design.in_design] = -1
    columns, rest = [], present
    for b, (_, lo, span) in reversed(list(zip(by, coded))):
        columns.append(pl.Series(b, rest % span + lo).cast(sub.schema[b]))
        rest = rest // span
    return _Domains(pl.DataFrame(columns[::-1]), code, rows)


@dataclass(frozen=True)
class _Columns:
    """The ``K`` ratios ``sum w a_k / sum w b_k`` (``b`` None for totals)."""

    a: np.ndarray               # (n, K) numerators, zero outside the column's rows
    b: np.ndarray | None        # (n, K) denominators (None: totals)
    rows: np.ndarray            # (n, K) bool, rows of the R subset design of each column
    domain_of: np.ndarray       # (K,) domain index of each column
    n: np.ndarray               # (K,) rows with a value
    dom_rows: np.ndarray        # (n, D) bool domain membership (by values only)


def _compute(
    design: Design,
    cols: _Columns,
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
    cols: _Columns,
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


def _check_missing(design: Design, s: pl.Series, name: str, na_rm: bool, extra: np.ndarray | None = None) -> np.ndarray:
    miss = _missing_mask(s)
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


def _domain_matrix(dom: _Domains) -> np.ndarray:
    n = dom.code.shape[0]
    d = max(dom.count, 1)
    out = np.zeros((n, d), dtype=bool)
    inside = dom.code >= 0
    out[np.flatnonzero(inside), dom.code[inside]] = True
    return out


def _keys(dom: _Domains, levels: list[Any] | None, level_dtype: pl.DataType | None) -> pl.DataFrame:
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
class _Coded:
    """One variable ready to estimate: its group coding (fast path), the keys of
    its estimates, and a builder of its dense ``(n, K)`` columns (reference path)."""

    variable: str
    grouped: GroupedVariable
    keys: pl.DataFrame
    dense: Callable[[], _Columns]


def _estimate(design: Design, dom: _Domains, coded: list[_Coded], statistic: str, by: Sequence[str], deff: Deff) -> list[Estimates]:
    """Estimates of every coded variable, from group totals when the design allows.

    Designs with weighting adjustments residualize row-level influence
    values, so they take the dense path (:func:`_compute`), as do statistics
    that come out infinite (a zero denominator total), whose influence values
    the dense path zeroes row by row. Everything else goes through
    :func:`pipeline.survey._grouped.estimate_grouped`; on a replicate design
    all the variables share one pass over the replicate weights.
    """
    if deff is not False and deff not in (True, "replace"):
        raise ArgumentError(f"deff must be True, False or 'replace'; got {deff!r}", hint="R's deff= values")
    by = tuple(by)
    if design.adjustments:
        return [_compute(design, c.dense(), statistic, c.variable, by, c.keys, deff) for c in coded]
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
            out.append(_compute(design, c.dense(), statistic, c.variable, by, c.keys, deff))
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
        if _flag(design, "all_weights_nonzero"):
            psu_rows = np.bincount(idx, minlength=size)
        else:
            psu_rows = np.bincount(idx, weights=(design.weights != 0).astype(np.float64), minlength=size)
        psu_in = psu_rows.reshape(st.n_clusters, n_dom + 1)[:, :n_dom] > 0
    df = [
        np.count_nonzero(psu_in[:, d]) - np.count_nonzero(np.bincount(st.h_c[psu_in[:, d]], minlength=1))
        for d in range(n_dom)
    ]
    return np.asarray(df, dtype=np.int64)


def _numeric_coded(
    design: Design,
    variable: str,
    dom: _Domains,
    miss: np.ndarray,
    y: np.ndarray,
    statistic: str,
    yb: np.ndarray | None = None,
) -> _Coded:
    """A numeric variable (or ratio ``y / yb``): one slot, numerator ``y``, denominator 1 or ``yb``."""
    a = np.nan_to_num(y, nan=0.0)
    b = None if yb is None else np.nan_to_num(yb, nan=0.0)

    def dense() -> _Columns:
        dm = _domain_matrix(dom)
        rows = dm & ~miss[:, None] & design.in_design[:, None]
        ca = np.where(rows, a[:, None], 0.0)
        if yb is not None:
            cb = np.where(rows, b[:, None], 0.0)
        else:
            cb = None if statistic == "total" else rows.astype(np.float64)
        return _Columns(a=ca, b=cb, rows=rows, domain_of=np.arange(dm.shape[1]), n=rows.sum(axis=0), dom_rows=dm)

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
    return _Coded(variable, grouped, _keys(dom, None, None), dense)


def _numeric_estimate(
    design: Design, variable: str, *, by: Sequence[str], na_rm: bool, deff: Deff, statistic: str
) -> Estimates:
    s = _get(design, variable)
    y = _numeric_values(s, variable)
    miss = _check_missing(design, s, variable, na_rm)
    dom = _domains(design, by)
    return _estimate(design, dom, [_numeric_coded(design, variable, dom, miss, y, statistic)], statistic, by, deff)[0]


def _level_estimate(
    design: Design,
    variable: str,
    *,
    by: Sequence[str],
    levels: Sequence[Any] | None,
    na_rm: bool,
    deff: Deff,
    statistic: str,
) -> Estimates:
    return _level_estimates(design, [variable], by=by, levels=levels, na_rm=na_rm, deff=deff, statistic=statistic)[0]


def _level_estimates(
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
        s = _get(design, variable)
        miss = _check_missing(design, s, variable, na_rm)
        small = None if isinstance(s.dtype, pl.Enum | pl.Categorical) else _small_int_codes(s)
        lv = _observed_levels(design, s, small, levels)
        if not lv:
            raise DataError(
                f"variable {variable!r} has no non-missing values in the design",
                hint="check the filters and missing-value codes",
            )
        found.append((variable, s, miss, small, lv))
    dom = _domains(design, by)
    keys: dict = {}  # variables with the same levels and dtype share their keys frame
    coded = [
        _level_coded(design, variable, dom, s, miss, small, lv, explicit=levels is not None, statistic=statistic, keys=keys)
        for variable, s, miss, small, lv in found
    ]
    return _estimate(design, dom, coded, statistic, by, deff)


def _observed_levels(design: Design, s: pl.Series, small, levels: Sequence[Any] | None) -> list[Any]:
    """The levels to report: ``levels``, or the sorted values seen in the design (enum: category order)."""
    if levels is not None or small is None:
        return _levels_of(s if _flag(design, "all_in_design") else s.filter(pl.Series(design.in_design)), levels)
    offsets, lo, span = small
    if span <= 2 and _flag(design, "all_in_design"):
        return list(range(lo, lo + span))  # the minimum and the maximum: both seen (0/1 items)
    keep = None if _flag(design, "all_in_design") else design.in_design
    if s.null_count():
        nonnull = s.is_not_null().to_numpy()
        keep = nonnull if keep is None else (keep & nonnull)
    seen = np.bincount(offsets if keep is None else offsets[keep], minlength=span) > 0
    return (np.flatnonzero(seen) + lo).tolist()


def _level_coded(
    design: Design,
    variable: str,
    dom: _Domains,
    s: pl.Series,
    miss: np.ndarray,
    small,
    lv: list[Any],
    *,
    explicit: bool,
    statistic: str,
    keys: dict | None = None,
) -> _Coded:
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

    def dense() -> _Columns:
        dm = _domain_matrix(dom)
        rows_d = dm & ~miss[:, None] & design.in_design[:, None]          # (n, D)
        ind = np.column_stack([(values == v).fill_null(False).to_numpy() for v in level_values]).astype(np.float64)
        n_dom = dm.shape[1]
        # columns ordered domain-major: (d, level)
        rows = np.repeat(rows_d, len(level_values), axis=1)
        a = np.where(rows, np.tile(ind, (1, n_dom)), 0.0)
        b = None if statistic == "total" else rows.astype(np.float64)
        return _Columns(
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
        frame = _keys(dom, lv, s.dtype)
        if keys is None:
            return _Coded(variable, grouped, frame, dense)
        keys[cache_key] = frame
    return _Coded(variable, grouped, keys[cache_key], dense)


def total(
    design: Design,
    variable: str,
    *,
    by: Sequence[str] = (),
    na_rm: bool = False,
    deff: Deff = True,
    categorical: bool | None = None,
) -> Estimates:
    """Population total of ``variable`` (R ``svytotal``), overall or by domains.

    Parameters
    ----------
    design : Design
        The survey design.
    variable : str
        Column to total. Categorical (string, categorical, enum) columns give
        the estimated population count of every level, as R on a factor.
    by : sequence of str
        Domain variables; one estimate per observed combination.
    na_rm : bool
        Treat rows with a missing value as outside the domain. ``False``
        raises :class:`~pipeline.errors.DataError` when values are missing.
    deff : bool or 'replace'
        Design effect to compute (see the module docstring).
    categorical : bool, optional
        Force the categorical (per-level) or numeric treatment.

    Returns
    -------
    Estimates
    """
    s = _get(design, variable)
    if _is_categorical(s, categorical):
        return _level_estimate(design, variable, by=by, levels=None, na_rm=na_rm, deff=deff, statistic="total")
    return _numeric_estimate(design, variable, by=by, na_rm=na_rm, deff=deff, statistic="total")


def mean(
    design: Design,
    variable: str,
    *,
    by: Sequence[str] = (),
    na_rm: bool = False,
    deff: Deff = True,
    categorical: bool | None = None,
) -> Estimates:
    """Population mean of ``variable`` (R ``svymean``), overall or by domains.

    Categorical variables give the proportion of every level (as R
    ``svymean`` on a factor; see :func:`proportions`). Parameters as
    :func:`total`.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"psu": [1, 2, 3, 4], "w": [1.0, 1, 2, 2], "y": [1.0, 2, 3, 4]})
    >>> d = Design.from_frame(df, weights="w", ids=["psu"])
    >>> round(float(mean(d, "y").estimate[0]), 4)
    2.8333
    """
    s = _get(design, variable)
    if _is_categorical(s, categorical):
        return _level_estimate(design, variable, by=by, levels=None, na_rm=na_rm, deff=deff, statistic="proportion")
    return _numeric_estimate(design, variable, by=by, na_rm=na_rm, deff=deff, statistic="mean")


def proportions(
    design: Design,
    variable: str,
    *,
    by: Sequence[str] = (),
    levels: Sequence[Any] | None = None,
    na_rm: bool = False,
    deff: Deff = True,
) -> Estimates:
    """Share of every level of ``variable`` (R ``svymean`` on a factor), overall or by domains.

    Parameters
    ----------
    levels : sequence, optional
        Levels to report (default: every observed level, sorted; enum
        columns in their category order). The shares are always of all
        non-missing values, whatever ``levels`` keeps; a level absent from a
        domain has estimate 0.

    Other parameters as :func:`total`. Numeric columns are treated as
    categorical codes.
    """
    return _level_estimate(design, variable, by=by, levels=levels, na_rm=na_rm, deff=deff, statistic="proportion")


def ratio(
    design: Design,
    numerator: str,
    denominator: str,
    *,
    by: Sequence[str] = (),
    na_rm: bool = False,
    deff: Deff = True,
) -> Estimates:
    """Ratio of population totals ``numerator / denominator`` (R ``svyratio``).

    With ``na_rm`` rows missing either variable are outside the domain.
    """
    sa, sb = _get(design, numerator), _get(design, denominator)
    ya, yb = _numeric_values(sa, numerator), _numeric_values(sb, denominator)
    miss = _check_missing(design, sa, numerator, na_rm, extra=_missing_mask(sb))
    dom = _domains(design, by)
    coded = _numeric_coded(design, f"{numerator}/{denominator}", dom, miss, ya, "ratio", yb=yb)
    return _estimate(design, dom, [coded], "ratio", by, deff)[0]


# ---------------------------------------------------------- pipeline entry
def proportion(
    design: Design,
    variable: str | Sequence[str],
    *,
    by: Sequence[str] = (),
    levels: Sequence | None = None,
    ci_method: str = "logit",
    conf_level: float = 0.95,
    na_rm: bool = True,
    df: float | None = None,
) -> pl.DataFrame:
    """Proportions of the levels of ``variable`` with confidence intervals, by domains.

    The function the estimate stage calls: R ``svyby(~I(x == level), ~by,
    design, svyciprop, method = ci_method)`` for every level, with the
    estimates and design effects of ``svymean`` on the factor.

    Parameters
    ----------
    design : Design
        The survey design.
    variable : str or sequence of str
        Categorical column (numeric codes are treated as categories). Several
        columns are estimated together, sharing the domain coding and, on a
        replicate design, one pass over the replicate weights (one call for
        ten items costs about what two single calls do); the result then
        starts with a ``variable`` column and stacks the variables in order.
    by : sequence of str
        Domain variables (empty: the whole sample). Rows with a missing
        ``by`` value belong to no domain.
    levels : sequence, optional
        Levels to report; ``None`` means every observed level. Shares are of
        all non-missing values; a listed level absent from a domain gets a row
        with estimate 0.
    ci_method : {'logit', 'likelihood', 'asin', 'beta', 'mean', 'xlogit', 'korn_graubard', 'wilson'}
        Interval method (:data:`pipeline.survey.intervals.CI_METHODS`).
    conf_level : float
        Confidence level.
    na_rm : bool
        Rows with a missing value are outside the domain (default, as the
        stage needs); ``False`` raises when values are missing.
    df : float, optional
        Degrees of freedom of the intervals instead of each domain's
        ``degf`` (R ``svyciprop(df = )``; ``float('inf')`` for normal
        quantiles). ``beta`` ignores it, as R does.

    Returns
    -------
    polars.DataFrame
        One row per domain x level; columns: each ``by`` column (original
        dtype; after ``variable`` when several were given), ``level``, ``n``
        (rows of the domain with a value),
        ``estimate`` (fraction), ``se``, ``ci_low``, ``ci_high``, ``df`` (the
        domain's degrees of freedom, as ``svyby`` gives ``svyciprop``), ``deff``.
    """
    from pipeline.survey.intervals import CI_METHODS, ProportionInputs, proportion_ci

    if ci_method not in CI_METHODS:
        raise ArgumentError(f"unknown ci_method {ci_method!r}", hint=f"expected one of {', '.join(CI_METHODS)}")
    several = not isinstance(variable, str)
    variables = list(variable) if several else [variable]
    if not variables:
        raise ArgumentError("proportion: no variables given", hint="give a column name or a list of them")
    results = _level_estimates(design, variables, by=by, levels=levels, na_rm=na_rm, deff=True, statistic="proportion")
    # the interval methods work element by element: one call for all variables
    est = np.concatenate([res.estimate for res in results])
    dfs = np.concatenate([res.df for res in results])
    ci_df = dfs if df is None else np.full(len(est), float(df))
    dispersion = glm_start = logit_var = None
    if ci_method == "logit" and design.is_replicate:
        from pipeline.survey.intervals import replicate_logit_variance

        reps = design.replicates
        logit_var = replicate_logit_variance(
            np.hstack([res.extra["replicates"] for res in results]), est, scale=reps.scale, rscales=reps.rscales, mse=reps.mse
        )
    if ci_method == "likelihood" and not design.is_replicate:
        glm_start = np.vstack([_glm_start(design, v, by, res, na_rm) for v, res in zip(variables, results)])
        # survey's Pearson residuals carry sqrt(prior / rescaled weight): with missing values
        # that ratio is sum(prior) / n over the fit's rows
        n_obs = np.concatenate([res.n for res in results])
        dispersion = np.concatenate([_pearson_dispersion(design, res, na_rm) for res in results]) * glm_start[:, 3] / n_obs
    inputs = ProportionInputs(
        estimate=est,
        variance=np.concatenate([np.diag(res.vcov) for res in results]),
        df=ci_df,
        design_df=dfs,
        n_rows=np.concatenate([res.n_rows for res in results]).astype(np.float64),
        n_obs=np.concatenate([res.n for res in results]).astype(np.float64),
        dispersion=dispersion,
        glm_start=glm_start,
        logit_variance=logit_var,
        replicate=design.is_replicate,
    )
    low, high = proportion_ci(inputs, ci_method, conf_level)
    keys = results[0].keys if not several else pl.concat([res.keys for res in results], how="vertical_relaxed")
    frame = keys.with_columns(
        pl.Series("n", np.concatenate([res.n for res in results]), dtype=pl.Int64),
        pl.Series("estimate", est, dtype=pl.Float64),
        pl.Series("se", np.concatenate([res.se for res in results]), dtype=pl.Float64),
        pl.Series("ci_low", low, dtype=pl.Float64),
        pl.Series("ci_high", high, dtype=pl.Float64),
        pl.Series("df", ci_df, dtype=pl.Float64),
        pl.Series("deff", np.concatenate([res.deff for res in results]), dtype=pl.Float64),
    )
    if several:
        names = np.repeat(np.array(variables, dtype=object), [len(res) for res in results])
        frame = frame.select(pl.Series("variable", names, dtype=pl.String), pl.all())
    return frame


def _pearson_dispersion(design: Design, res: Estimates, na_rm: bool) -> np.ndarray:
    """Design-based variance of the Pearson residuals of ``svyglm(I(x == level) ~ 1, quasibinomial)``.

    R ``summary.svyglm``: ``svyvar(resid(fit, "pearson"), design)`` with
    survey's residuals ``(y - p) sqrt(prior / w) / sqrt(p (1 - p))``, ``w`` the
    weights rescaled over the fit's rows. Without missing values
    ``prior = w`` and their weighted variance with R's ``n/(n-1)`` factor is
    exactly ``n/(n - 1)``, ``n`` the rows of the fit with a non-zero weight
    (the caller multiplies by ``sum(prior) / n`` otherwise).
    """
    nz = res.extra["n_nonzero"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return nz / (nz - 1)


def _glm_start(design: Design, variable: str, by: Sequence[str], res: Estimates, na_rm: bool) -> np.ndarray:
    """Starting sums of R's IRLS for each domain x level fit (see :func:`intervals.glm_start_sums`)."""
    from pipeline.survey.intervals import glm_start_sums

    s = _get(design, variable)
    miss = _missing_mask(s)
    dom = _domains(design, by)
    dm = _domain_matrix(dom)
    rows_d = dm & ~miss[:, None] & design.in_design[:, None]
    values = s.cast(pl.String) if isinstance(s.dtype, pl.Enum | pl.Categorical) else s
    levels = res.keys.get_column("level").to_list()
    n_lv = len(res) // max(dm.shape[1], 1)
    rows = np.repeat(rows_d, n_lv, axis=1)
    y = np.column_stack([(values == lv).fill_null(False).to_numpy() for lv in levels]).astype(np.float64)
    # svyglm rescales the weights to mean 1 over the (domain) design's rows, missing values included
    dom = np.repeat(dm & design.in_design[:, None], n_lv, axis=1)
    wd = np.where(dom, design.weights[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prior = np.where(rows, design.weights[:, None], 0.0) * dom.sum(axis=0) / wd.sum(axis=0)
    return glm_start_sums(y, prior, rows)


# ------------------------------------------------------------------ quantiles
def _r_cumsum(w: np.ndarray) -> np.ndarray:
    """R ``cumsum``: a long double running sum, each value rounded to double.

    Quantile rules compare cumulative weights with ``p * sum(w)``; equal
    weights (``N/n``) make that an exact tie that only R's accumulation
    order and precision decide (e.g. the median of ``srs``).
    """
    return np.cumsum(np.asarray(w, dtype=np.longdouble)).astype(np.float64)


def _qs(x: np.ndarray, w: np.ndarray, p: float) -> tuple[float, float, int, float, float]:
    """R survey ``qs``: sorted x, last position with cumulative weight <= p * total."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    cumw = _r_cumsum(w[order])
    total = cumw[-1]  # R's sum(): the same long double sequential sum
    hits = np.flatnonzero(cumw <= p * total)
    pos = int(hits[-1]) if len(hits) else 0          # R's last(): 1 (first) when none
    nxt = pos if pos == len(xs) - 1 else pos + 1
    return xs[pos], xs[nxt], pos + 1, p - cumw[pos] / total, cumw[nxt] / total - p


def _drop_zero(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = w != 0
    return x[keep], w[keep]


def _q_math(x, w, p):
    x, w = _drop_zero(x, w)
    qlow, qup, _, wlow, _ = _qs(x, w, p)
    return qlow if wlow == 0 else qup


def _q_school(x, w, p):
    x, w = _drop_zero(x, w)
    qlow, qup, _, wlow, _ = _qs(x, w, p)
    return (qlow + qup) / 2 if wlow == 0 else qup


def _q_hf3(x, w, p):
    x, w = _drop_zero(x, w)
    ux, inv = np.unique(x, return_inverse=True)
    qlow, qup, ilow, wlow, _ = _qs(ux, np.bincount(inv.reshape(-1), weights=w), p)
    return qlow if (wlow == 0 and ilow % 2 == 0) else qup


def _q_hf4(x, w, p):
    x, w = _drop_zero(x, w)
    qlow, qup, _, wlow, wup = _qs(x, w, p)
    gamma = wlow / (wup + wlow)
    return qlow * (1 - gamma) + qup * gamma


def _approx_rule2(pk: np.ndarray, xs: np.ndarray, p: float, constant: bool = False) -> float:
    """R ``approx(pk, xs, p, rule = 2)`` (linear, or ``method = "constant", f = 0``)."""
    from pipeline.survey.intervals import _regularize

    pk, xs = _regularize(pk, xs)
    if p <= pk[0]:
        return float(xs[0])
    if p >= pk[-1]:
        return float(xs[-1])
    if constant:
        return float(xs[np.searchsorted(pk, p, side="right") - 1])
    return float(np.interp(p, pk, xs))


def _sorted(x, w):
    x, w = _drop_zero(x, w)
    order = np.argsort(x, kind="stable")
    return x[order], w[order]


def _q_hf5(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    return _approx_rule2((cumw - ws / 2) / cumw[-1], xs, p)


def _q_hf6(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    return _approx_rule2(cumw / (cumw[-1] + ws[-1]), xs, p)


def _q_hf7(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    # R survey 4.1-1: c(0, cumw[-n]) / cumw[n - 1]
    return _approx_rule2(np.r_[0.0, cumw[:-1]] / cumw[-2], xs, p)


def _q_hf8(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    return _approx_rule2((np.r_[0.0, cumw[:-1]] / 3 + cumw * 2 / 3) / (cumw[-1] + ws[-1] / 3), xs, p)


def _q_hf9(x, w, p):
    xs, ws = _sorted(x, w)
    cumw = _r_cumsum(ws)
    return _approx_rule2((np.r_[0.0, cumw[:-1]] * 3 / 8 + cumw * 5 / 8) / (cumw[-1] + ws[-1] / 4), xs, p)


def _q_shahvaish(x, w, p):
    xs, ws = _sorted(x, w)
    n = len(xs)
    s = _r_cumsum(ws / ws.mean())
    return _approx_rule2((s + 0.5 - ws / 2) / (n + 1), xs, p, constant=True)


#: Quantile rules of R survey ``svyquantile(qrule = ...)``, keyed by their R names.
QRULES: dict[str, Any] = {
    "math": _q_math,
    "school": _q_school,
    "shahvaish": _q_shahvaish,
    "hf1": _q_math,
    "hf2": _q_school,
    "hf3": _q_hf3,
    "hf4": _q_hf4,
    "hf5": _q_hf5,
    "hf6": _q_hf6,
    "hf7": _q_hf7,
    "hf8": _q_hf8,
    "hf9": _q_hf9,
}
QUANTILE_INTERVALS: tuple[str, ...] = ("mean", "beta", "xlogit", "asin", "score", "quantile")


@dataclass(frozen=True, eq=False)
class Quantiles:
    """Quantile estimates with their (asymmetric) confidence intervals.

    Attributes
    ----------
    variable : str
    by : tuple of str
    keys : polars.DataFrame
        ``by`` columns and ``level`` (the probability), one row per estimate.
    estimate, se, ci_low, ci_high, df : numpy.ndarray
        ``se`` is R's ``(ci_high - ci_low) / (2 t)``.
    n : numpy.ndarray
        Rows of the domain with a value.
    qrule, interval_type : str
    conf_level : float
    """

    variable: str
    by: tuple[str, ...]
    keys: pl.DataFrame
    estimate: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    df: np.ndarray
    n: np.ndarray
    qrule: str
    interval_type: str
    conf_level: float

    def to_frame(self) -> pl.DataFrame:
        """Tidy frame: ``by`` columns, ``level``, ``n``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``."""
        return self.keys.with_columns(
            pl.Series("n", self.n, dtype=pl.Int64),
            pl.Series("estimate", self.estimate, dtype=pl.Float64),
            pl.Series("se", self.se, dtype=pl.Float64),
            pl.Series("ci_low", self.ci_low, dtype=pl.Float64),
            pl.Series("ci_high", self.ci_high, dtype=pl.Float64),
            pl.Series("df", self.df, dtype=pl.Float64),
        )


def quantile(
    design: Design,
    variable: str,
    *,
    probs: Sequence[float] = (0.5,),
    by: Sequence[str] = (),
    qrule: str = "math",
    interval_type: str = "mean",
    conf_level: float = 0.95,
    na_rm: bool = False,
    df: float | None = None,
) -> Quantiles:
    """Quantiles of ``variable`` with confidence intervals (R ``svyquantile``, survey >= 4.1).

    Parameters
    ----------
    probs : sequence of float
        Probabilities in [0, 1].
    by : sequence of str
        Domains (R ``svyby``): each domain's quantile, interval and df.
    qrule : {'math', 'school', 'shahvaish', 'hf1', ..., 'hf9'}
        Definition of the sample quantile (:data:`QRULES`); ``math`` (R's
        default) is the smallest value whose weighted CDF reaches ``p``.
    interval_type : {'mean', 'beta', 'xlogit', 'asin', 'score', 'quantile'}
        ``mean`` (Woodruff): an interval for ``P(X <= q)`` (Wald, or beta,
        xlogit, asin as :mod:`~pipeline.survey.intervals`) mapped back through
        the quantile rule; a bound whose probability falls outside [0, 1] is
        NaN, as in R. ``score``: Francisco-Fuller test inversion
        (linearization). ``quantile``: replicate quantiles (replicate designs).
        R ignores beta/xlogit/asin for replicate designs (uses ``mean``); so
        does this function.
    conf_level : float
    na_rm : bool
        Rows with a missing value leave the design (and its ``degf``), as R.
    df : float, optional
        Degrees of freedom (default: the domain's ``degf``).

    Returns
    -------
    Quantiles
    """
    from scipy import stats

    if qrule not in QRULES:
        raise ArgumentError(f"unknown qrule {qrule!r}", hint=f"expected one of {', '.join(QRULES)}")
    if interval_type not in QUANTILE_INTERVALS:
        raise ArgumentError(
            f"unknown interval_type {interval_type!r}", hint=f"expected one of {', '.join(QUANTILE_INTERVALS)}"
        )
    if interval_type == "score" and design.is_replicate:
        raise ArgumentError("interval_type 'score' needs a linearization design", hint="use 'mean' or 'quantile'")
    if interval_type == "quantile" and not design.is_replicate:
        raise ArgumentError("interval_type 'quantile' needs a replicate design", hint="use 'mean' (Woodruff)")
    probs = [float(p) for p in probs]
    if any(not (0.0 <= p <= 1.0) for p in probs):
        raise ArgumentError(f"probs must be in [0, 1]; got {probs}", hint="e.g. probs=[0.25, 0.5, 0.75]")
    rule = QRULES[qrule]
    s = _get(design, variable)
    y = _numeric_values(s, variable)
    miss = _check_missing(design, s, variable, na_rm)
    dom = _domains(design, by)
    dm = _domain_matrix(dom)
    alpha = 1.0 - conf_level
    method = interval_type if not design.is_replicate else ("quantile" if interval_type == "quantile" else "mean")
    est, lo, hi, dfs, ns = [], [], [], [], []
    for d in range(dm.shape[1]):
        rows = dm[:, d] & ~miss & design.in_design
        sub = design.subset(rows)
        x, w = y[rows], sub.weights[rows]
        ddf = float(sub.degf) if df is None else float(df)
        qcrit = stats.norm.ppf(1 - alpha / 2) if np.isinf(ddf) else stats.t.ppf(1 - alpha / 2, ddf)
        for p in probs:
            qhat = rule(x, w, p)
            if method == "quantile":
                reps = sub.replicates
                thetas = np.array([rule(x, reps.weights[rows, r], p) for r in range(reps.n_replicates)])
                v = replicate_vcov(thetas[:, None], np.array([qhat]), scale=reps.scale, rscales=reps.rscales, mse=reps.mse)
                low, high = qhat - np.sqrt(v[0, 0]) * qcrit, qhat + np.sqrt(v[0, 0]) * qcrit
            elif method == "score":
                low, high = _fuller_ci(sub, y, rows, p, rule, alpha, ddf)
            else:
                low, high = _woodruff_ci(sub, y, rows, qhat, rule, alpha, ddf, method)
            est.append(qhat)
            lo.append(low)
            hi.append(high)
            dfs.append(ddf)
            ns.append(int(rows.sum()))
    lo_a, hi_a, df_a = np.asarray(lo, float), np.asarray(hi, float), np.asarray(dfs, float)
    q = np.where(np.isinf(df_a), stats.norm.ppf(1 - alpha / 2), stats.t.ppf(1 - alpha / 2, np.where(np.isinf(df_a), 1, df_a)))
    keys = _keys(dom, probs, pl.Float64)
    return Quantiles(
        variable=variable,
        by=tuple(by),
        keys=keys,
        estimate=np.asarray(est, float),
        se=(hi_a - lo_a) / (2 * q),
        ci_low=lo_a,
        ci_high=hi_a,
        df=df_a,
        n=np.asarray(ns),
        qrule=qrule,
        interval_type=interval_type,
        conf_level=conf_level,
    )


def _woodruff_ci(sub: Design, y: np.ndarray, rows: np.ndarray, qhat: float, rule, alpha: float, df: float, method: str):
    """R ``woodruffCI``: an interval for ``P(X <= qhat)`` mapped back by the quantile rule."""
    from scipy import stats

    from pipeline.survey.intervals import _tq

    ind = np.where(rows, (np.nan_to_num(y) <= qhat).astype(np.float64), 0.0)
    cols = _Columns(
        a=ind[:, None], b=rows.astype(np.float64)[:, None], rows=rows[:, None], domain_of=np.zeros(1, dtype=np.int64),
        n=np.array([rows.sum()]), dom_rows=rows[:, None],
    )
    m = _compute(sub, cols, "mean", "", (), pl.DataFrame({"level": [None]}), False)
    p, var = float(m.estimate[0]), float(m.vcov[0, 0])
    se = np.sqrt(var)
    q = float(_tq(1 - alpha, np.array([df]))[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        if method == "mean":
            pl_, pu = p - q * se, p + q * se
        elif method == "xlogit":
            eta, s = np.log(p / (1 - p)), se / (p * (1 - p))
            pl_, pu = 1 / (1 + np.exp(-(eta - q * s))), 1 / (1 + np.exp(-(eta + q * s)))
        elif method == "asin":
            th, s = np.arcsin(np.sqrt(p)), se / (2 * np.sqrt(p * (1 - p)))
            pl_, pu = np.sin(max(th - q * s, 0.0)) ** 2, np.sin(min(th + q * s, np.pi / 2)) ** 2
        else:  # beta: R uses nrow() and degf() of the (domain) design, not df
            n_eff = p * (1 - p) / var * (stats.t.ppf(alpha / 2, sub.n_rows - 1) / stats.t.ppf(alpha / 2, sub.degf)) ** 2
            pl_ = stats.beta.ppf(alpha / 2, n_eff * p, n_eff * (1 - p) + 1)
            pu = stats.beta.ppf(1 - alpha / 2, n_eff * p + 1, n_eff * (1 - p))
    x, w = y[rows], sub.weights[rows]
    low = np.nan if (np.isnan(pl_) or pl_ < 0) else rule(x, w, pl_)
    high = np.nan if (np.isnan(pu) or pu > 1) else rule(x, w, pu)
    return low, high


def _fuller_ci(sub: Design, y: np.ndarray, rows: np.ndarray, p: float, rule, alpha: float, df: float):
    """R ``ffullerCI``: invert the score test of ``P(X > theta) = 1 - p`` (R's ``uniroot``)."""
    from pipeline.survey.intervals import _tq

    x = y[rows]
    w = sub.weights[rows]

    def score(theta: float, qlimit: float) -> float:
        u = np.where(rows, (np.nan_to_num(y) > theta).astype(np.float64) - (1 - p), 0.0)
        cols = _Columns(
            a=u[:, None], b=rows.astype(np.float64)[:, None], rows=rows[:, None], domain_of=np.zeros(1, dtype=np.int64),
            n=np.array([rows.sum()]), dom_rows=rows[:, None],
        )
        m = _compute(sub, cols, "mean", "", (), pl.DataFrame({"level": [None]}), False)
        return float(m.estimate[0] / np.sqrt(m.vcov[0, 0]) - qlimit)

    q75, q25 = np.quantile(x, [0.75, 0.25])  # R IQR(): type 7, unweighted
    iqr = q75 - q25
    lower_t, upper_t = x.min() + iqr / 100, x.max() - iqr / 100
    tol = 1 / (100 * np.sqrt(sub.n_rows))
    crit = float(_tq(1 - alpha, np.array([df]))[0])
    qlow = _r_uniroot(lambda t: score(t, crit), lower_t, upper_t, tol)
    qup = _r_uniroot(lambda t: score(t, -crit), lower_t, upper_t, tol)
    # R: qrule(x, w, mean(x <= qlow)) with an unweighted mean
    return rule(x, w, float(np.mean(x <= qlow))), rule(x, w, float(np.mean(x <= qup)))


def _r_uniroot(f, lower: float, upper: float, tol: float, maxiter: int = 1000) -> float:
    """R ``uniroot`` (Brent's zeroin as ``R_zeroin2``), for reproducible roots of step functions."""
    eps = np.finfo(float).eps
    a, b = lower, upper
    fa, fb = f(a), f(b)
    if fa * fb > 0:
        raise DataError(
            "quantile score interval: the score test does not change sign over the data range",
            hint="use interval_type='mean' (Woodruff)",
        )
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    c, fc = a, fa
    for _ in range(maxiter + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * eps * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p_ = cb * t1
                q_ = 1.0 - t1
            else:
                q_, t1, t2 = fa / fc, fb / fc, fb / fa
                p_ = t2 * (cb * q_ * (q_ - t1) - (b - a) * (t1 - 1.0))
                q_ = (q_ - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p_ > 0:
                q_ = -q_
            else:
                p_ = -p_
            if p_ < (0.75 * cb * q_ - abs(tol_act * q_) / 2) and p_ < abs(prev_step * q_ / 2):
                new_step = p_ / q_
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b

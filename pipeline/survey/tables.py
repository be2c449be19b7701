"""Cross-tabulations and design-based tests of association (R ``svytable``, ``svychisq``).

This module owns :func:`crosstab` (weighted two-way tables with design-based
SEs, through :mod:`pipeline.survey.estimators`) and :func:`chisq_test`, the
Rao-Scott and Wald tests of R ``survey`` 4.1-1 ``svychisq``, registered in
:data:`CHISQ_STATISTICS` under R's ``statistic =`` names:

``F`` (default)
    Pearson's X² of the weighted table (rescaled to the number of rows) with
    the Rao-Scott second-order correction: ``F = X² / tr(Delta)`` on
    ``d0 = tr(Delta)² / tr(Delta²)`` and ``d0 * nu`` degrees of freedom, where
    ``Delta`` is the design-effect matrix of the interaction contrasts and
    ``nu`` the design degrees of freedom (PSUs - strata; ``degf`` for
    replicate designs).
``Chisq``
    First-order correction: ``statistic`` is the *unadjusted* X² (as R
    reports it); the p-value is that of ``X² / mean(eigenvalues of Delta)``
    on ``(r-1)(c-1)`` df.
``Wald`` / ``adjWald``
    Design-based Wald test of the interaction contrasts of the cell totals:
    ``F = W / ((r-1)(c-1))`` on ``(r-1)(c-1)`` and ``nu`` df, or
    ``F = W (nu - d + 1) / (d nu)`` on ``d`` and ``nu - d + 1`` df.
``saddlepoint``
    X² referred to its asymptotic distribution, a linear combination of
    chi-squared(1) variables weighted by the eigenvalues of ``Delta``
    (divided by an independent chi-squared on ``d0 nu`` df for linearization
    designs), by the saddlepoint approximation (R's ``pFsum``/``pchisqsum``).
``lincom``
    The same distribution computed exactly, by Imhof's (1961) numerical
    inversion of the characteristic function. (R asks the CompQuadForm
    package for this and, without it, falls back to the saddlepoint.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError, DataError
from pipeline.survey.design import Design

__all__ = ["CHISQ_STATISTICS", "ChisqTest", "chisq_test", "crosstab"]


@dataclass(frozen=True, eq=False)
class ChisqTest:
    """Result of :func:`chisq_test`.

    Attributes
    ----------
    statistic_type : str
        The requested statistic (key of :data:`CHISQ_STATISTICS`).
    statistic_name : {'F', 'X-squared'}
        What ``statistic`` is.
    statistic, ndf, ddf, p_value : float
        ``ndf``/``ddf`` NaN where R reports none (``ddf`` for ``Chisq``).
    method : str
        R's description of the test.
    design_df : float
        ``nu``.
    table : polars.DataFrame
        The weighted table scaled to the number of rows (``row``, ``col``,
        ``observed``), R's ``svytable(..., Ntotal = n)``.
    """

    statistic_type: str
    statistic_name: str
    statistic: float
    ndf: float
    ddf: float
    p_value: float
    method: str
    design_df: float
    table: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """The scalar fields as a dict (for reports)."""
        return {
            "statistic_type": self.statistic_type,
            "statistic_name": self.statistic_name,
            "statistic": self.statistic,
            "ndf": self.ndf,
            "ddf": self.ddf,
            "p_value": self.p_value,
            "method": self.method,
            "design_df": self.design_df,
        }


@dataclass(frozen=True)
class _Prep:
    nr: int
    nc: int
    rows: list[Any]
    cols: list[Any]
    cells: np.ndarray       # (n, nr*nc) indicators, rows fastest; NaN where missing
    mr: np.ndarray
    mc: np.ndarray
    ok: np.ndarray          # rows with both values
    n_total: int            # R's N = nrow(model matrix), missing rows included
    nu: float
    observed: np.ndarray    # (nr, nc) svytable(Ntotal = N)
    x2: float


def _prepare(design: Design, row: str, col: str) -> _Prep:
    from pipeline.survey._domains import design_column, levels_of, missing_mask

    r_s, c_s = design_column(design, row, "row variable"), design_column(design, col, "column variable")
    inset = design.in_design
    rows = levels_of(r_s.filter(pl.Series(inset)), None)
    cols = levels_of(c_s.filter(pl.Series(inset)), None)
    if len(rows) < 2 or len(cols) < 2:
        raise DataError(
            f"chisq_test: {row!r} x {col!r} needs at least 2 levels each; found {len(rows)} and {len(cols)}",
            hint="a test of association needs variation in both variables",
        )
    rv = r_s.cast(pl.String) if isinstance(r_s.dtype, pl.Enum | pl.Categorical) else r_s
    cv = c_s.cast(pl.String) if isinstance(c_s.dtype, pl.Enum | pl.Categorical) else c_s
    mr = np.column_stack([(rv == v).fill_null(False).to_numpy() for v in rows]).astype(np.float64)
    mc = np.column_stack([(cv == v).fill_null(False).to_numpy() for v in cols]).astype(np.float64)
    ok = ~missing_mask(r_s) & ~missing_mask(c_s) & inset
    nr, nc = len(rows), len(cols)
    cells = np.column_stack([mr[:, i] * mc[:, j] for j in range(nc) for i in range(nr)])
    n_total = int(inset.sum())
    w = np.where(ok, design.weights, 0.0)
    tab = (w @ cells).reshape(nc, nr).T
    observed = tab * n_total / tab.sum()
    expected = observed.sum(axis=1)[:, None] * observed.sum(axis=0)[None, :] / observed.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        x2 = float(np.nansum((observed - expected) ** 2 / expected))
    if design.is_replicate:
        nu = float(design.degf)
    else:
        # R: all PSUs and strata of the design, whatever their weights
        nu = float(len(np.unique(design.clusters[inset, 0])) - len(np.unique(design.strata[inset, 0])))
    return _Prep(nr, nc, rows, cols, cells, mr, mc, ok, n_total, nu, observed, x2)


def _stats_of(design: Design, a: np.ndarray, rows: np.ndarray, ratio: bool) -> tuple[np.ndarray, np.ndarray]:
    """Means (``ratio``) or totals of the columns of ``a`` over ``rows``, with their covariance."""
    from pipeline.survey._domains import Columns, compute

    k = a.shape[1]
    rows_k = np.repeat(rows[:, None], k, axis=1)
    cols = Columns(
        a=np.where(rows_k, a, 0.0),
        b=rows_k.astype(np.float64) if ratio else None,
        rows=rows_k,
        domain_of=np.zeros(k, dtype=np.int64),
        n=rows_k.sum(axis=0),
        dom_rows=rows[:, None],
    )
    res = compute(design, cols, "mean" if ratio else "total", "", (), pl.DataFrame({"level": [None] * k}), False)
    return res.estimate, res.vcov


def _delta(design: Design, p: _Prep) -> np.ndarray:
    """Rao-Scott design-effect matrix of the interaction contrasts (R svychisq)."""
    nr, nc = p.nr, p.nc
    mean2, V = _stats_of(design, p.cells, p.ok, ratio=True)
    r_idx = np.tile(np.arange(nr), nc)
    c_idx = np.repeat(np.arange(nc), nr)
    X1 = np.column_stack(
        [np.ones(nr * nc)]
        + [(r_idx == i).astype(float) for i in range(1, nr)]
        + [(c_idx == j).astype(float) for j in range(1, nc)]
    )
    inter = np.column_stack([(r_idx == i) & (c_idx == j) for j in range(1, nc) for i in range(1, nr)]).astype(float)
    q, _ = np.linalg.qr(X1)
    C = inter - q @ (q.T @ inter)                    # qr.resid(qr(X1), X12[, interactions])
    with np.errstate(divide="ignore"):
        inv = np.where(mean2 == 0, 0.0, 1.0 / mean2)
    denom = C.T @ (np.diag(inv) / p.n_total) @ C
    numr = C.T @ np.diag(inv) @ V @ np.diag(inv) @ C
    delta = np.linalg.solve(denom, numr)
    if not float(np.trace(delta)) > 1e-10:  # design effects are of order 1; zero (or NaN) means no variance
        raise DataError(
            "no test of association: the table's cell shares have no sampling variance (the design fixes "
            "them, e.g. a variable calibrated to the targets within the groups of the other)",
            hint="test a variable that is not one of the weighting margins of those groups",
        )
    return delta


def _wald(design: Design, p: _Prep, adjusted: bool) -> tuple[float, float, float]:
    nr, nc = p.nr, p.nc
    a = np.column_stack([p.cells, p.mr, p.mc, np.ones(p.cells.shape[0])])
    cells, V = _stats_of(design, a, p.ok, ratio=False)
    k = nr * nc
    tot = cells[k + nr + nc]
    rs, cs = cells[k : k + nr], cells[k + nr : k + nr + nc]
    r_idx = np.tile(np.arange(nr), nc)
    c_idx = np.repeat(np.arange(nc), nr)
    jac = np.column_stack(
        [
            np.eye(k),
            -(r_idx[:, None] == np.arange(nr)[None, :]).astype(float) * (cs[c_idx] / tot)[:, None],
            -(c_idx[:, None] == np.arange(nc)[None, :]).astype(float) * (rs[r_idx] / tot)[:, None],
            (rs[r_idx] * cs[c_idx] / tot**2)[:, None],
        ]
    )
    y = cells[:k] - rs[r_idx] * cs[c_idx] / tot
    vv = jac @ V @ jac.T
    use = (r_idx > 0) & (c_idx > 0)
    w = float(y[use] @ np.linalg.solve(vv[np.ix_(use, use)], y[use]))
    d = (nr - 1) * (nc - 1)
    if adjusted:
        ddf = p.nu - d + 1
        return w * ddf / (d * p.nu), float(d), ddf
    return w / d, float(d), p.nu


_Result = tuple[str, float, float, float, float, str]
_RAO_SCOTT = "Pearson's X^2: Rao & Scott adjustment"


def _wald_test(design: Design, p: _Prep) -> _Result:
    from scipy import stats

    f, ndf, ddf = _wald(design, p, adjusted=False)
    return "F", f, ndf, ddf, float(stats.f.sf(f, ndf, ddf)), "Design-based Wald test of association"


def _adj_wald_test(design: Design, p: _Prep) -> _Result:
    from scipy import stats

    f, ndf, ddf = _wald(design, p, adjusted=True)
    return "F", f, ndf, ddf, float(stats.f.sf(f, ndf, ddf)), "Design-based Wald test of association"


def _rao_scott_f(design: Design, p: _Prep) -> _Result:
    from scipy import stats

    delta = _delta(design, p)
    tr = float(np.trace(delta))
    d0 = tr**2 / float(np.trace(delta @ delta))
    f = p.x2 / tr
    return "F", f, d0, d0 * p.nu, float(stats.f.sf(f, d0, d0 * p.nu)), _RAO_SCOTT


def _rao_scott_chisq(design: Design, p: _Prep) -> _Result:
    from scipy import stats

    delta = _delta(design, p)
    df = float(delta.shape[1])
    return "X-squared", p.x2, df, np.nan, float(stats.chi2.sf(p.x2 / np.mean(np.diag(delta)), df)), _RAO_SCOTT


def _eigen_and_ddf(design: Design, p: _Prep) -> tuple[np.ndarray, float]:
    delta = _delta(design, p)
    d0 = float(np.trace(delta)) ** 2 / float(np.trace(delta @ delta))
    ddf = np.inf if design.is_replicate else d0 * p.nu
    return np.real(np.linalg.eigvals(delta)), ddf


def _saddlepoint_test(design: Design, p: _Prep) -> _Result:
    eig, ddf = _eigen_and_ddf(design, p)
    label = _RAO_SCOTT if design.is_replicate else "Pearson's X^2: saddlepoint approximation"
    return "X-squared", p.x2, np.nan, np.nan, _p_fsum_saddle(p.x2, eig, ddf), label


def _lincom_test(design: Design, p: _Prep) -> _Result:
    eig, ddf = _eigen_and_ddf(design, p)
    label = _RAO_SCOTT if design.is_replicate else "Pearson's X^2: asymptotic exact distribution"
    return "X-squared", p.x2, np.nan, np.nan, _p_fsum_imhof(p.x2, eig, ddf), label


#: The tests of :func:`chisq_test`, keyed by R's ``statistic =`` names (see the module docstring).
CHISQ_STATISTICS: dict[str, Callable[[Design, _Prep], _Result]] = {
    "F": _rao_scott_f,
    "Chisq": _rao_scott_chisq,
    "Wald": _wald_test,
    "adjWald": _adj_wald_test,
    "lincom": _lincom_test,
    "saddlepoint": _saddlepoint_test,
}


def chisq_test(design: Design, row: str, col: str, *, statistic: str = "F") -> ChisqTest:
    """Design-based test of association between two categorical variables (R ``svychisq``).

    Parameters
    ----------
    design : Design
        Linearization or replicate design.
    row, col : str
        The two variables (levels sorted as R's factor levels). Rows missing
        either value are left out of the table and the estimates (R's
        ``na.rm = TRUE``), but count in the number of rows the table is
        scaled to, as in R.
    statistic : {'F', 'Chisq', 'Wald', 'adjWald', 'lincom', 'saddlepoint'}
        See the module docstring.

    Returns
    -------
    ChisqTest
    """
    if statistic not in CHISQ_STATISTICS:
        raise ArgumentError(
            f"unknown chi-squared statistic {statistic!r}", hint=f"expected one of {', '.join(CHISQ_STATISTICS)}"
        )
    p = _prepare(design, row, col)
    name, value, ndf, ddf, pv, method = CHISQ_STATISTICS[statistic](design, p)
    table = pl.DataFrame(
        {
            "row": pl.Series([r for _ in p.cols for r in p.rows]),
            "col": pl.Series([c for c in p.cols for _ in p.rows]),
            "observed": p.observed.T.reshape(-1),
        }
    )
    return ChisqTest(statistic, name, float(value), float(ndf), float(ddf), float(pv), method, p.nu, table)


# ------------------------------------------------------------- distributions
def _saddle(x: float, lam: np.ndarray) -> float:
    """R survey ``saddle``: Lugannani-Rice upper tail of ``sum lam_i chi2_1`` at ``x`` (NaN if unusable)."""
    from scipy import stats

    from pipeline.survey._linalg import uniroot

    d = lam.max()
    lam = lam / d
    x = x / d

    def k0(z: float) -> float:
        return -np.sum(np.log(1 - 2 * z * lam)) / 2

    def k1(z: float) -> float:
        return float(np.sum(lam / (1 - 2 * z * lam)))

    def k2(z: float) -> float:
        return float(2 * np.sum(lam**2 / (1 - 2 * z * lam) ** 2))

    if (lam < 0).any():
        lmin = np.max(1 / (2 * lam[lam < 0])) * 0.99999
    elif x > lam.sum():
        lmin = -0.01
    else:
        lmin = -len(lam) / (2 * x)
    lmax = np.min(1 / (2 * lam[lam > 0])) * 0.99999
    z = uniroot(lambda t: k1(t) - x, float(lmin), float(lmax), 1e-8)
    w = np.sign(z) * np.sqrt(2 * (z * x - k0(z)))
    v = z * np.sqrt(k2(z))
    if abs(z) < 1e-4:
        return np.nan
    return float(stats.norm.sf(w + np.log(v / w) / w))


def _p_fsum_saddle(x: float, eig: np.ndarray, ddf: float) -> float:
    """R ``pFsum(..., method = "saddlepoint")`` / ``pchisqsum`` upper tail, Satterthwaite fallback."""
    from scipy import stats

    tr = eig.mean()
    tr2 = np.mean(eig**2) / tr**2
    if np.isinf(ddf):
        guess = float(stats.chi2.sf(x / (tr * tr2), len(eig) / tr2))
        s = _saddle(x, eig)
        return guess if np.isnan(s) else s
    ndf = len(eig) / tr2
    guess = float(stats.f.sf(x / ndf / (tr * tr2), ndf, ddf))
    # R: a <- c(a, -x/ddf); df <- c(df, ddf); rep(a, df) with R's truncating rep().
    # d0 * nu is often an integer in exact arithmetic (d0 = d when Delta's eigenvalues are
    # equal) and lands a rounding error below it (397.99999999999994 for 398) depending on
    # the BLAS and summation order; truncate only past that noise, as R does on its own sums.
    lam = np.concatenate([eig, np.full(_truncate_count(ddf), -x / ddf)])
    s = _saddle(0.0, lam)
    return guess if np.isnan(s) else s


def _truncate_count(value: float) -> int:
    """``int(value)`` as R's ``rep(times=)``, but robust to a rounding error below an integer."""
    nearest = round(value)
    if abs(value - nearest) <= 1e-9 * max(1.0, abs(value)):
        return int(nearest)
    return int(value)


def _p_fsum_imhof(x: float, eig: np.ndarray, ddf: float) -> float:
    """P(sum eig_i chi2_1 > x [* chi2_ddf / ddf]) by Imhof's (1961) inversion formula.

    ``P(Q > 0) = 1/2 + (1/pi) int_0^inf sin(theta(u)) / (u rho(u)) du`` for
    ``Q = sum_j lam_j chi2_{h_j} - q``. The integrand oscillates with
    half-period ``2 pi / q`` (or decays fast when a ``chi2_ddf`` term is
    present); it is integrated half-period by half-period with Gauss-Legendre
    and the alternating tail of partial sums is summed by repeated averaging
    (Euler's transformation).
    """
    if np.isinf(ddf):
        lam, h, q = np.asarray(eig, float), np.ones(len(eig)), float(x)
    else:
        lam = np.r_[eig, -x / ddf]
        h = np.r_[np.ones(len(eig)), ddf]
        q = 0.0

    def f(u: np.ndarray) -> np.ndarray:
        lu = np.multiply.outer(u, lam)
        theta = 0.5 * (np.arctan(lu) @ h) - 0.5 * q * u
        log_rho = np.log1p(lu**2) @ (h / 4)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.sin(theta) * np.exp(-log_rho) / u
        return np.where(u == 0, 0.5 * (h @ lam - q), out)

    scale = np.max(np.abs(lam))
    step = np.pi / max(q / 2, 1e-3 * scale) if q > 0 else 0.5 / scale
    nodes, weights = np.polynomial.legendre.leggauss(40)
    n_terms = 4000
    starts = np.arange(n_terms) * step
    u = starts[:, None] + (nodes[None, :] + 1) * step / 2
    terms = (f(u.ravel()).reshape(u.shape) @ weights) * step / 2
    partial = np.cumsum(terms)
    tail = partial[-64:]
    for _ in range(63):  # repeated averaging of the oscillating partial sums
        tail = (tail[1:] + tail[:-1]) / 2
    return float(min(max(0.5 + tail[0] / np.pi, 0.0), 1.0))


# ------------------------------------------------------------------ tables
def crosstab(
    design: Design,
    row: str,
    col: str,
    *,
    by: Sequence[str] = (),
    na_rm: bool = True,
    conf_level: float = 0.95,
) -> pl.DataFrame:
    """Column percentages of ``row`` within each level of ``col`` (and ``by``), with SEs.

    A banner table: the shares of ``row``'s levels in the domains
    ``by x col`` (:func:`pipeline.survey.estimators.proportions`), plus the
    estimated population count of every cell.

    Returns
    -------
    polars.DataFrame
        ``by`` columns, ``col``, ``level`` (of ``row``), ``n``, ``estimate``,
        ``se``, ``ci_low``, ``ci_high`` (t intervals on the domain df),
        ``df``, ``deff``, ``total``, ``total_se``.
    """
    from pipeline.survey.estimators import proportions, total

    domains = [*by, col]
    shares = proportions(design, row, by=domains, na_rm=na_rm)
    counts = total(design, row, by=domains, na_rm=na_rm, categorical=True)
    frame = shares.to_frame(conf_level, "domain")
    return frame.with_columns(
        pl.Series("total", counts.estimate, dtype=pl.Float64),
        pl.Series("total_se", counts.se, dtype=pl.Float64),
    )


"""Pairwise comparisons of domain estimates: differences, their design-based standard errors,
t tests and multiple-comparison adjustment (the statistics behind a banner's letters).

Given the estimates of several domains and their covariance matrix (the full ``vcov`` of one
design pass, :class:`pipeline.survey.estimators.Estimates`, as R ``svycontrast`` on ``svyby``
results uses it; or a diagonal matrix of squared standard errors for domains treated as
independent), :func:`pairwise_differences` tests ``estimate[i] - estimate[j]`` for each pair
with ``d / se(d)`` on the smaller of the two degrees of freedom, two-sided, and adjusts the
p-values within each family of pairs (:func:`p_adjust`, as R ``p.adjust``).

Nothing here knows about configs, flags or tables: which pairs are compared is the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    import numpy as np
    import polars as pl

__all__ = ["P_ADJUST_METHODS", "p_adjust", "pairwise_differences"]

#: multiple-comparison adjustments: R ``p.adjust``'s names -> ``statsmodels.stats.multitest``'s
#: (Holm 1979; Hochberg 1988; Hommel 1988; Benjamini & Hochberg 1995; Benjamini & Yekutieli 2001)
P_ADJUST_METHODS = {
    "none": None,
    "bonferroni": "bonferroni",
    "holm": "holm",
    "hochberg": "simes-hochberg",
    "hommel": "hommel",
    "BH": "fdr_bh",
    "BY": "fdr_by",
}


def p_adjust(p: Sequence[float], method: str = "none") -> list[float]:
    """Adjusted p-values of one family of tests, as R ``p.adjust`` (computed by
    ``statsmodels.stats.multitest.multipletests``).

    Examples
    --------
    >>> [round(x, 6) for x in p_adjust([0.01, 0.04, 0.03], "holm")]
    [0.03, 0.06, 0.06]
    >>> [round(x, 6) for x in p_adjust([0.01, 0.04, 0.03], "BH")]
    [0.03, 0.04, 0.04]
    """
    if method not in P_ADJUST_METHODS:
        raise ValueError(f"p_adjust: method must be one of {', '.join(P_ADJUST_METHODS)}, got {method!r}")
    p = [float(x) for x in p]
    if P_ADJUST_METHODS[method] is None or len(p) <= 1:
        return p
    from statsmodels.stats.multitest import multipletests

    return [float(x) for x in multipletests(p, method=P_ADJUST_METHODS[method])[1]]


def pairwise_differences(
    estimate: np.ndarray | Sequence[float],
    vcov: np.ndarray,
    df: np.ndarray | Sequence[float],
    families: Sequence[Sequence[tuple[int, int]]],
    *,
    alpha: float = 0.05,
    adjust: str = "none",
) -> pl.DataFrame:
    """Test ``estimate[a] - estimate[b]`` for every pair ``(a, b)`` of every family.

    Parameters
    ----------
    estimate : array of float
        The domain estimates.
    vcov : 2-d array
        Their covariance matrix (``diag(se**2)`` for independent domains).
    df : array of float
        Each estimate's degrees of freedom (``inf``: normal reference distribution).
    families : sequence of sequence of (int, int)
        Pairs of positions; p-values are adjusted within each family.
    alpha : float
        Significance level, applied to the adjusted p-value.
    adjust : {'none', 'bonferroni', 'holm', 'hochberg', 'hommel', 'BH', 'BY'}
        As R ``p.adjust`` (:data:`P_ADJUST_METHODS`).

    Returns
    -------
    polars.DataFrame
        ``a``, ``b``, ``difference``, ``se``, ``df``, ``t``, ``p_value``, ``p_adjusted``,
        ``significant``; one row per pair, in the order given.

    Examples
    --------
    >>> import numpy as np
    >>> out = pairwise_differences([0.3, 0.5], np.diag([0.0009, 0.0016]), [np.inf, np.inf], [[(0, 1)]])
    >>> round(out["difference"][0], 6), round(out["se"][0], 6)
    (-0.2, 0.05)
    """
    import numpy as np
    import polars as pl
    from scipy import stats

    if not 0 < alpha < 1:
        raise ValueError(f"pairwise_differences: alpha must be between 0 and 1, got {alpha}")
    est = [float(x) for x in estimate]
    v = np.asarray(vcov, dtype=np.float64)
    dfs = np.asarray(df, dtype=np.float64)
    if v.shape != (len(est), len(est)) or dfs.shape != (len(est),):
        raise ValueError(f"pairwise_differences: {len(est)} estimates need a {len(est)}x{len(est)} vcov and {len(est)} df, got {v.shape} and {dfs.shape}")
    records = []
    for family in families:
        rows = []
        for ia, ib in family:
            d = est[ia] - est[ib]
            var = v[ia, ia] + v[ib, ib] - 2 * v[ia, ib]
            dof = float(min(dfs[ia], dfs[ib]))
            se = float(np.sqrt(max(var, 0.0)))
            t = d / se if se > 0 else (0.0 if d == 0 else float(np.copysign(np.inf, d)))
            p = float(2 * stats.t.sf(abs(t), dof)) if np.isfinite(dof) else float(2 * stats.norm.sf(abs(t)))
            rows.append({"a": ia, "b": ib, "difference": d, "se": se, "df": dof, "t": t, "p_value": p})
        for rec, p_adj in zip(rows, p_adjust([r["p_value"] for r in rows], adjust), strict=True):
            rec["p_adjusted"] = p_adj
            rec["significant"] = bool(p_adj < alpha)
        records += rows
    schema = {
        "a": pl.Int64, "b": pl.Int64, "difference": pl.Float64, "se": pl.Float64, "df": pl.Float64, "t": pl.Float64,
        "p_value": pl.Float64, "p_adjusted": pl.Float64, "significant": pl.Boolean,
    }
    return pl.DataFrame(records, schema=schema)

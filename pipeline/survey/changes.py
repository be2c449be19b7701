"""Changes between independent samples (the trends stage's between-wave differences).

Owns :func:`independent_difference`: the difference of two estimates from independent samples
(two waves), with variance ``se_1^2 + se_0^2`` (no covariance), degrees of freedom
``df_1 + df_0`` (the two designs stacked as strata of one design, as R survey's ``degf`` would
count them), the interval ``difference +/- t(df) se`` and the two-sided p-value from ``t(df)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Differences", "independent_difference"]


@dataclass(frozen=True, eq=False)
class Differences:
    """``estimate - estimate_from`` per row, with ``se``, ``df``, ``ci_low``, ``ci_high`` and ``p_value``
    (NaN where ``se`` is 0: no test)."""

    estimate: np.ndarray
    se: np.ndarray
    df: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray


def independent_difference(
    estimate: np.ndarray,
    se: np.ndarray,
    df: np.ndarray,
    estimate_from: np.ndarray,
    se_from: np.ndarray,
    df_from: np.ndarray,
    conf_level: np.ndarray | float,
) -> Differences:
    """The change from ``estimate_from`` to ``estimate``, the two from independent samples.

    >>> d = independent_difference(np.array([0.5]), np.array([0.03]), np.array([30.0]),
    ...                            np.array([0.4]), np.array([0.04]), np.array([20.0]), 0.95)
    >>> round(float(d.estimate[0]), 6), round(float(d.se[0]), 6), float(d.df[0])
    (0.1, 0.05, 50.0)
    """
    from scipy import stats

    estimate, se, df = (np.asarray(x, dtype=np.float64) for x in (estimate, se, df))
    estimate_from, se_from, df_from = (np.asarray(x, dtype=np.float64) for x in (estimate_from, se_from, df_from))
    diff = estimate - estimate_from
    se_diff = np.power(np.power(se, 2) + np.power(se_from, 2), 0.5)
    df_diff = df + df_from
    conf = np.asarray(conf_level, dtype=np.float64)
    t = stats.t.ppf(1 - (1 - conf) / 2, df_diff)
    p = np.array(
        [float(2 * stats.t.sf(abs(d / s), f)) if s > 0 else float("nan") for d, s, f in zip(diff, se_diff, df_diff)],
        dtype=np.float64,
    )
    return Differences(estimate=diff, se=se_diff, df=df_diff, ci_low=diff - t * se_diff, ci_high=diff + t * se_diff, p_value=p)

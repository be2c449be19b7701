"""Estimates across waves, with change rows between consecutive waves.

:func:`trend_estimates` stacks the waves' ``estimates.csv`` (DESIGN.md section 5 schema) and adds,
for every estimate x level x domain present in two consecutive waves, a ``difference`` row in
the layout of ``outputs/<study>/trends/estimates.csv`` (the trends stage): ``wave`` is
``"<later> vs <earlier>"``, ``wave_from``/``wave_to`` name the two waves, ``estimate`` is the
later minus the earlier estimate, ``se = sqrt(se_1^2 + se_2^2)`` (independent samples), ``df =
df_1 + df_2`` (the two designs as strata of one), a t interval and a two-sided ``p_value``. A
change row is suppressed (``flag`` ``component=suppressed``) when either wave's estimate is.

The export stage uses it for the trend tables of a wave (the waves up to that one); the trend
table (:func:`pipeline.exporters.tables.trend_table`) reads this layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipeline.stages._reliability import is_suppressed

if TYPE_CHECKING:
    import polars as pl

__all__ = ["trend_estimates"]


def trend_estimates(waves: Sequence[tuple[str, pl.DataFrame]]) -> pl.DataFrame:
    """Stack the waves' estimates and add change rows between consecutive waves.

    Parameters
    ----------
    waves : sequence of (wave id, estimates frame)
        In wave order.

    Returns
    -------
    polars.DataFrame
        The estimates.csv columns plus, on change rows (``statistic = 'difference'``),
        ``wave_from``, ``wave_to`` and ``p_value``.
    """
    import numpy as np
    import polars as pl
    from scipy import stats

    from pipeline.exporters.tables import prepare_estimates

    frames = []
    for wave, est in waves:
        e = prepare_estimates(est).drop("_row").with_columns(pl.lit(str(wave)).alias("wave"))
        frames.append((str(wave), e))
    if not frames:
        return pl.DataFrame()
    stacked = pl.concat([f for _, f in frames], how="diagonal_relaxed")
    key = ["estimate_id", "level", "by", "domain"]
    changes = []
    for (w1, e1), (w2, e2) in zip(frames, frames[1:], strict=False):
        joined = e2.join(e1, on=key, how="inner", suffix="_prev")
        for r in joined.iter_rows(named=True):
            d = r["estimate"] - r["estimate_prev"]
            se = float(np.hypot(r["se"], r["se_prev"]))
            df = float(r["df"] + r["df_prev"])
            conf = r["conf_level"]
            q = stats.t.ppf(1 - (1 - conf) / 2, df) if np.isfinite(df) else stats.norm.ppf(1 - (1 - conf) / 2)
            t = d / se if se > 0 else 0.0
            p = float(2 * stats.t.sf(abs(t), df)) if np.isfinite(df) else float(2 * stats.norm.sf(abs(t)))
            suppressed = is_suppressed(r["flag"]) or is_suppressed(r["flag_prev"])
            changes.append(
                {
                    **{c: r[c] for c in e2.columns if c in r},
                    "statistic": "difference",
                    "wave": f"{w2} vs {w1}",
                    "n": int(r["n"] + r["n_prev"]),
                    "estimate": d,
                    "se": se,
                    "ci_low": d - q * se,
                    "ci_high": d + q * se,
                    "ci_method": "t_independent",
                    "df": df,
                    "deff": None,
                    "flag": "component=suppressed" if suppressed else "",
                    "wave_from": w1,
                    "wave_to": w2,
                    "p_value": p,
                }
            )
    if not changes:
        return stacked
    return pl.concat([stacked, pl.DataFrame(changes, infer_schema_length=None)], how="diagonal_relaxed")

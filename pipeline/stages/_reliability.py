"""Reliability and disclosure flags of estimates (the ``flag`` column of estimates.csv).

The estimate stage calls :func:`flags` on its tidy rows; every table shows and footnotes them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import TablesConfig


def flags(rows: pl.DataFrame, tables: TablesConfig) -> pl.Series:
    """One flag per row: empty, or the rule that applies (``n<30``)."""
    import polars as pl

    return rows.select(
        pl.when(pl.col("n") < tables.min_n).then(pl.lit(f"n<{tables.min_n}")).otherwise(pl.lit("")).alias("flag")
    ).to_series()

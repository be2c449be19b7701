"""Reading the tidy estimates for presentation: ``estimates.csv`` (a wave's, or the trends
stage's) as every table, chart and workbook reads it.

The lowest module of :mod:`pipeline.exporters`: it imports no other exporter, so that the
table model (:mod:`~pipeline.exporters.tables`), the banner letters
(:mod:`~pipeline.exporters.significance`) and the charts all read estimates the same way
without importing one another.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

__all__ = ["TEXT_COLUMNS", "is_change", "prepare_estimates", "read_estimates"]

#: the text columns of estimates.csv that are read as text, empty (not null) when missing
TEXT_COLUMNS = ("by", "flag", "level", "domain")


def read_estimates(path: Path | str) -> pl.DataFrame:
    """``estimates.csv`` with text columns as text (empty, not null) and ``_row``: its 0-based row."""
    import polars as pl

    est = pl.read_csv(
        path,
        infer_schema_length=None,
        schema_overrides={"wave": pl.String, "by": pl.String, "flag": pl.String, "level": pl.String, "domain": pl.String},
    )
    return prepare_estimates(est)


def prepare_estimates(est: pl.DataFrame) -> pl.DataFrame:
    """Fill the text columns and add ``_row`` (the 0-based row) when missing.

    Examples
    --------
    >>> import polars as pl
    >>> prepare_estimates(pl.DataFrame({"estimate": [0.5], "by": [None]})).row(0, named=True)
    {'_row': 0, 'estimate': 0.5, 'by': ''}
    """
    import polars as pl

    fills = [pl.col(c).cast(pl.String).fill_null("") for c in TEXT_COLUMNS if c in est.columns]
    est = est.with_columns(fills)
    if "_row" not in est.columns:
        est = est.with_row_index("_row").with_columns(pl.col("_row").cast(pl.Int64))
    return est


def is_change(est: pl.DataFrame) -> pl.Expr:
    """The rows of a change between waves (trends/estimates.csv: ``wave_from`` set), not the
    differences of one wave (``estimates[].difference``: ``statistic`` difference too).

    Examples
    --------
    >>> import polars as pl
    >>> rows = pl.DataFrame({"statistic": ["difference", "difference"], "wave_from": [None, "1"]})
    >>> rows.filter(is_change(rows)).height
    1
    """
    import polars as pl

    return pl.col("wave_from").is_not_null() if "wave_from" in est.columns else pl.repeat(False, pl.len())

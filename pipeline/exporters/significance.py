"""Significance letters between banner columns, from the tests the estimate stage made.

The tests themselves are computed by the estimate stage in its design pass
(:func:`pipeline.stages.estimate.banner_comparisons`, statistics in
:mod:`pipeline.survey.comparisons`) and written as ``estimate/comparisons.csv``
(:data:`COMPARISON_COLUMNS` and the banner's ``table``). This module owns that artifact's
schema, reads it (:func:`read_comparisons`, checked against ``estimates.csv``), and turns it
into the letters of the cells (:func:`letters_for`) and the note under a banner
(:func:`letters_note`). It computes nothing and builds no design.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import DataError

if TYPE_CHECKING:
    import polars as pl

__all__ = ["COMPARISON_COLUMNS", "comparison_schema", "letters_for", "letters_note", "read_comparisons"]

#: columns of the comparisons frame (estimate/comparisons.csv and tables/comparisons.csv, then ``table``)
COMPARISON_COLUMNS = (
    "estimate_id", "level", "by", "domain_a", "domain_b", "row_a", "row_b", "estimate_a", "estimate_b",
    "difference", "se", "df", "t", "p_value", "p_adjusted", "significant", "method",
)


def comparison_schema() -> dict[str, Any]:
    """The polars types of ``estimate/comparisons.csv`` (:data:`COMPARISON_COLUMNS`, then ``table``)."""
    import polars as pl

    return {
        "estimate_id": pl.String, "level": pl.String, "by": pl.String, "domain_a": pl.String, "domain_b": pl.String,
        "row_a": pl.Int64, "row_b": pl.Int64, "estimate_a": pl.Float64, "estimate_b": pl.Float64, "difference": pl.Float64,
        "se": pl.Float64, "df": pl.Float64, "t": pl.Float64, "p_value": pl.Float64, "p_adjusted": pl.Float64,
        "significant": pl.Boolean, "method": pl.String, "table": pl.String,
    }


def read_comparisons(path: Path | str, estimates: pl.DataFrame) -> pl.DataFrame:
    """The estimate stage's ``estimate/comparisons.csv``, checked against ``estimates.csv``.

    Parameters
    ----------
    path : path
    estimates : polars.DataFrame
        The wave's estimates (:func:`pipeline.exporters.estimates.read_estimates`, with ``_row``).

    Raises
    ------
    DataError
        A compared estimate is not the one of estimates.csv at its row (the files are from
        different runs).
    """
    import polars as pl

    cmp = pl.read_csv(path, schema=comparison_schema()) if Path(path).stat().st_size > 0 else pl.DataFrame(schema=comparison_schema())
    if cmp.height:
        shown = dict(zip(estimates.get_column("_row").to_list(), estimates.get_column("estimate").to_list(), strict=True))
        for r in cmp.iter_rows(named=True):
            for side in ("a", "b"):
                row, value = r[f"row_{side}"], r[f"estimate_{side}"]
                if row not in shown or shown[row] != value:
                    raise DataError(
                        f"{path}: the comparison of {r['estimate_id']} in {r[f'domain_{side}']} is of the estimate {value!r}, "
                        f"but estimates.csv row {row} says {shown.get(row)!r}",
                        hint="the estimates and their comparisons are from different runs; rerun: survey-pipeline run CONFIG --from estimate",
                    )
    return cmp


def letters_for(comparisons: pl.DataFrame, letter_of: Mapping[tuple[str, str], str]) -> dict[tuple[str, str, str, str], str]:
    """``(estimate_id, level, by, domain) -> letters`` of the columns that cell significantly exceeds.

    Letters are in column order.
    """
    got: dict[tuple[str, str, str, str], list[str]] = {}
    for c in comparisons.filter(comparisons.get_column("significant")).iter_rows(named=True):
        higher, lower = (c["domain_a"], c["domain_b"]) if c["difference"] > 0 else (c["domain_b"], c["domain_a"])
        letter = letter_of.get((c["by"], lower))
        if letter:
            got.setdefault((c["estimate_id"], c["level"], c["by"], higher), []).append(letter)
    order = {v: i for i, v in enumerate(letter_of.values())}
    return {k: "".join(sorted(v, key=lambda x: order.get(x, 0))) for k, v in got.items()}


def letters_note(method: str, alpha: float, adjust: str) -> str:
    """The note under a banner explaining its letters."""
    how = {
        "design": "design-based t test of the difference, its variance from the full covariance of the two estimates",
        "independent": "t test of the difference treating the two estimates as independent, ignoring their covariance",
    }[method]
    adj = {
        "none": "", "bonferroni": ", Bonferroni-adjusted", "holm": ", Holm-adjusted", "hochberg": ", Hochberg-adjusted",
        "hommel": ", Hommel-adjusted", "BH": ", Benjamini-Hochberg false discovery rate", "BY": ", Benjamini-Yekutieli false discovery rate",
    }[adjust]
    return (
        "Letters: the column's percentage is significantly higher than that of the column with the letter, "
        f"within the same group of columns ({how}; two-sided, alpha = {alpha:g}{adj}). Suppressed estimates are not compared."
    )

"""How table cells show numbers: each statistic's value format (:data:`VALUE_FORMATS`: percent
for proportions), percentage-point changes, counts and intervals.

A new statistic is one entry in :data:`VALUE_FORMATS` (its scale and unit); the table builders
(:mod:`pipeline.exporters.tables`) look each row's format up by its ``statistic``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DASH", "NOT_ESTIMATED", "VALUE_FORMATS", "ValueFormat", "count_text", "interval_text", "percent_text", "points_text", "value_format"]

NOT_ESTIMATED = "–"
DASH = "–"  # en dash between interval bounds


@dataclass(frozen=True)
class ValueFormat:
    """How tables show the values of one statistic (the ``statistic`` column of estimates.csv).

    ``scale`` multiplies the stored value for display (100: fractions shown as percents),
    ``unit`` names what the columns show (table subtitles: ``percent``).
    """

    statistic: str
    scale: int
    unit: str

    def text(self, x: float | None, decimals: int) -> str:
        """The value rounded to ``decimals``, without a unit: ``0.4481 -> '45'``."""
        return NOT_ESTIMATED if x is None else f"{self.scale * x:.{decimals}f}"

    def interval(self, low: float, high: float, decimals: int) -> str:
        return f"{self.text(low, decimals)}{DASH}{self.text(high, decimals)}"


#: statistic -> how tables show it; one entry per statistic of :data:`pipeline.config.STATISTICS`
VALUE_FORMATS: dict[str, ValueFormat] = {"proportion": ValueFormat("proportion", 100, "percent")}


def value_format(row: Mapping[str, Any]) -> ValueFormat:
    """The :class:`ValueFormat` of an estimates row's statistic (rows without the column: proportions)."""
    statistic = row.get("statistic") or "proportion"
    if statistic not in VALUE_FORMATS:
        raise ValueError(f"tables: no value format for statistic {statistic!r} (known: {', '.join(VALUE_FORMATS)})")
    return VALUE_FORMATS[statistic]


def percent_text(x: float | None, decimals: int) -> str:
    """A fraction as a rounded percent without the sign: ``0.4481 -> '45'``.

    >>> percent_text(0.4481, 0), percent_text(None, 1)
    ('45', '–')
    """
    return VALUE_FORMATS["proportion"].text(x, decimals)


def points_text(x: float | None, decimals: int) -> str:
    """A difference of fractions in percentage points, signed: ``0.061 -> '+6'``."""
    if x is None:
        return NOT_ESTIMATED
    text = f"{100 * x:+.{decimals}f}"
    return f"{0:.{decimals}f}" if float(text) == 0 else text  # no sign on a change that rounds to 0


def count_text(n: int | float | None) -> str:
    return NOT_ESTIMATED if n is None else f"{int(n):,}"


def interval_text(low: float, high: float, decimals: int) -> str:
    """A proportion's interval in percent: ``(0.413, 0.485) -> '41–49'``."""
    return VALUE_FORMATS["proportion"].interval(low, high, decimals)

"""How table cells show numbers: each statistic's value format (:data:`VALUE_FORMATS`: percent
for proportions), percentage-point changes, counts and intervals.

A new statistic is one entry in :data:`VALUE_FORMATS` (its scale and unit); the table builders
(:mod:`pipeline.exporters.tables`) look each row's format up by its ``statistic``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DASH", "NOT_ESTIMATED", "VALUE_FORMATS", "ValueFormat", "count_text", "interval_text", "percent_text", "points_text", "value_format", "with_decimals"]

NOT_ESTIMATED = "–"
DASH = "–"  # en dash between interval bounds


@dataclass(frozen=True)
class ValueFormat:
    """How tables show the values of one statistic (the ``statistic`` column of estimates.csv).

    ``scale`` multiplies the stored value for display (100: fractions shown as percents),
    ``unit`` names what the columns show (table subtitles: ``percent``), ``header`` the value
    column's heading (``%``). ``extra_decimals`` is added to the table's ``decimals`` (a mean
    of age is ``38.2`` where shares show ``44``); ``fixed_decimals`` replaces them (a total is a
    whole number); ``thousands`` writes thousands separators (``1,234,000``).
    """

    statistic: str
    scale: int
    unit: str
    header: str = "%"
    extra_decimals: int = 0
    fixed_decimals: int | None = None
    thousands: bool = False
    description: str = "Share"
    """How a table describes an estimate of the statistic (``Weighted mean``)."""
    signed: bool = False
    """Values carry their sign (``+6``, ``-2.3``): differences."""

    def digits(self, decimals: int) -> int:
        """The decimals shown for a table's ``decimals``."""
        return self.fixed_decimals if self.fixed_decimals is not None else decimals + self.extra_decimals

    def text(self, x: float | None, decimals: int) -> str:
        """The value rounded for a table of ``decimals``, without a unit: ``0.4481 -> '45'``.

        >>> VALUE_FORMATS["mean"].text(38.2149, 0), VALUE_FORMATS["total"].text(1234000.4, 0)
        ('38.2', '1,234,000')
        """
        if x is None or x != x:  # not estimated, or NaN (an open end of a quantile's interval)
            return NOT_ESTIMATED
        text = f"{self.scale * x:{'+' if self.signed else ''}{',' if self.thousands else ''}.{self.digits(decimals)}f}"
        return text[1:] if self.signed and float(text.replace(",", "")) == 0 else text  # no sign on a value that rounds to 0

    def change(self, x: float | None, decimals: int) -> str:
        """A change between waves, signed: percentage points for shares (:func:`points_text`),
        the statistic's own unit otherwise (``+2.3`` years, ``-1,200`` people).

        >>> VALUE_FORMATS["proportion"].change(0.061, 0), VALUE_FORMATS["total"].change(-1200.2, 0)
        ('+6', '-1,200')
        """
        if self.statistic == "proportion" or x is None:
            return points_text(x, decimals)
        text = f"{self.scale * x:+{',' if self.thousands else ''}.{self.digits(decimals)}f}"
        return text[1:] if float(text.replace(",", "")) == 0 else text  # no sign on a change that rounds to 0

    def margin(self, moe: float, decimals: int) -> str:
        """A margin of error: ``±4.1`` (percentage points for shares, at least one decimal); ``–``
        when the interval has an open end."""
        if moe != moe:
            return NOT_ESTIMATED
        digits = max(decimals, 1) if self.fixed_decimals is None and self.extra_decimals == 0 else self.digits(decimals)
        return f"±{self.scale * moe:{',' if self.thousands else ''}.{digits}f}"

    def interval(self, low: float, high: float, decimals: int) -> str:
        """``41–49``; the bounds of a difference without a plus sign (``-3–5``); an interval with an
        open end (R gives no bound there: a quantile at the edge of the data) as its one bound.

        >>> fmt = VALUE_FORMATS["quantile"]
        >>> fmt.interval(580.0, 766.0, 0), fmt.interval(float("nan"), 627.0, 0), fmt.interval(float("nan"), float("nan"), 0)
        ('580.0–766.0', '≤627.0', '–')
        """
        plain = ValueFormat(self.statistic, self.scale, self.unit, thousands=self.thousands, extra_decimals=self.extra_decimals,
                            fixed_decimals=self.fixed_decimals)
        if low != low and high != high:
            return NOT_ESTIMATED
        if low != low:
            return f"≤{plain.text(high, decimals)}"
        if high != high:
            return f"≥{plain.text(low, decimals)}"
        return f"{plain.text(low, decimals)}{DASH}{plain.text(high, decimals)}"


#: statistic -> how tables show it; one entry per statistic of :data:`pipeline.config.STATISTICS`
VALUE_FORMATS: dict[str, ValueFormat] = {
    "proportion": ValueFormat("proportion", 100, "percent"),
    "mean": ValueFormat("mean", 1, "mean", "mean", extra_decimals=1, thousands=True, description="Weighted mean"),
    "total": ValueFormat("total", 1, "estimated number", "number", fixed_decimals=0, thousands=True, description="Estimated population total"),
    "ratio": ValueFormat("ratio", 1, "ratio", "ratio", extra_decimals=2, description="Ratio of weighted totals"),
    "quantile": ValueFormat("quantile", 1, "quantile", "value", extra_decimals=1, thousands=True, description="Weighted quantiles (p50: the median)"),
    # a difference of shares, in signed percentage points; of another statistic: that one's format, signed (value_format)
    "difference": ValueFormat("difference", 100, "percentage points", "points", signed=True,
                              description="Difference of the shares (a minus b), in percentage points"),
}


def value_format(row: Mapping[str, Any]) -> ValueFormat:
    """The :class:`ValueFormat` of an estimates row's statistic (rows without the column:
    proportions); a row's ``decimals`` (the estimate's ``estimates[].decimals``, see
    :func:`with_decimals`) fixes its decimals.

    >>> value_format({"statistic": "mean", "decimals": 2}).text(38.2149, 0)
    '38.21'
    >>> value_format({"statistic": "difference", "difference_of": "mean"}).text(-2.349, 0)
    '-2.3'
    """
    statistic = row.get("statistic") or "proportion"
    if statistic not in VALUE_FORMATS:
        raise ValueError(f"tables: no value format for statistic {statistic!r} (known: {', '.join(VALUE_FORMATS)})")
    fmt = VALUE_FORMATS[statistic]
    of = row.get("difference_of")
    if statistic == "difference" and of not in (None, "proportion"):
        from dataclasses import replace

        base = value_format({"statistic": of})
        fmt = replace(base, statistic="difference", signed=True, description=f"Difference of the {of}s (a minus b)")
    if row.get("decimals") is not None:
        from dataclasses import replace

        return replace(fmt, fixed_decimals=int(row["decimals"]), extra_decimals=0)
    return fmt


def with_decimals(est: Any, decimals: Mapping[str, int]) -> Any:
    """Estimates rows with a ``decimals`` column: each estimate's ``estimates[].decimals``
    (``decimals``: estimate id -> decimals; rows are unchanged when no estimate sets any)."""
    import polars as pl

    if not decimals or est.height == 0:
        return est
    return est.with_columns(pl.col("estimate_id").replace_strict(dict(decimals), default=None, return_dtype=pl.Int64).alias("decimals"))


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

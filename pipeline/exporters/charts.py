"""Charts (matplotlib, no pyplot state): estimates by subgroup and the weighting check.

:func:`estimate_chart`
    One estimate, overall and by each of its domains: horizontal bars of the weighted
    percent with confidence-interval whiskers, from ``estimates.csv``; suppressed estimates
    are drawn as a note, not a bar.
:func:`weighting_chart`
    Per raking variable (rows) and raking group (columns): each category's target share
    against its unweighted and weighted (final) shares, from ``weight/margins.csv``.

:func:`figure_bytes` renders a figure as PNG or SVG (text kept as text in SVG, no dates in the
metadata, so the same inputs give the same file).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pipeline.flags import is_suppressed

if TYPE_CHECKING:
    import polars as pl

    from pipeline.io import Codebook

__all__ = ["estimate_chart", "figure_bytes", "weighting_chart"]

PALETTE = ("#1f4e79", "#2e7d32", "#b45f06", "#6a1b9a", "#00695c", "#ad1457")
MUTED = "#7f7f7f"


@dataclass(frozen=True)
class ChartScale:
    """How charts draw one statistic: ``factor`` times the stored value, on an axis from
    ``limits[0]`` to ``limits[1]`` (``None``: matplotlib's choice), labelled ``axis``, values
    suffixed ``suffix``."""

    statistic: str
    factor: int
    axis: str
    suffix: str
    limits: tuple[float, float] | None
    caption: str
    """The caption under the chart in the report."""


#: statistic -> how charts draw it; one entry per statistic of :data:`pipeline.config.STATISTICS`
CHART_SCALES: dict[str, ChartScale] = {
    "proportion": ChartScale(
        "proportion", 100, "percent (weighted), with confidence interval", "%", (0, 100), "Weighted percent with its confidence interval; * suppressed."
    ),
    "mean": ChartScale("mean", 1, "mean (weighted), with confidence interval", "", None, "Weighted mean with its confidence interval; * suppressed."),
    "total": ChartScale(
        "total", 1, "estimated number (weighted), with confidence interval", "", None, "Estimated number with its confidence interval; * suppressed."
    ),
    "ratio": ChartScale("ratio", 1, "ratio of totals (weighted), with confidence interval", "", None, "Ratio of weighted totals with its confidence interval; * suppressed."),
    "quantile": ChartScale(
        "quantile", 1, "quantile (weighted), with confidence interval", "", None, "Weighted quantile with its confidence interval; * suppressed."
    ),
    # a difference of shares, in percentage points; of another statistic: that statistic's scale (chart_scale)
    "difference": ChartScale(
        "difference", 100, "difference in percentage points, with confidence interval", "", None,
        "Difference (a minus b) with its confidence interval; * suppressed.",
    ),
}


#: the longest legend entry of a chart before it is shortened with an ellipsis
LEGEND_CHARS = 60


def legend_label(row: Mapping[str, Any]) -> str:
    """An estimate's name in a chart's legend: its title (shortened), not its id.

    >>> legend_label({"estimate_id": "q", "title": "Less likely to contact police if a victim of a crime, for fear of being asked"})
    'Less likely to contact police if a victim of a crime, for…'
    >>> legend_label({"estimate_id": "q", "title": None})
    'q'
    """
    title = str(row.get("title") or row["estimate_id"])
    if len(title) <= LEGEND_CHARS:
        return title
    cut = title[: LEGEND_CHARS - 1].rsplit(" ", 1)[0]
    return cut + "…"


def chart_scale(row: Mapping[str, Any]) -> ChartScale:
    """The :class:`ChartScale` of an estimates row's statistic (rows without the column: proportions)."""
    statistic = row.get("statistic") or "proportion"
    if statistic not in CHART_SCALES:
        raise ValueError(f"charts: no chart scale for statistic {statistic!r} (known: {', '.join(CHART_SCALES)})")
    of = row.get("difference_of")
    if statistic == "difference" and of not in (None, "proportion"):
        from dataclasses import replace

        base = chart_scale({"statistic": of})
        return replace(CHART_SCALES["difference"], factor=base.factor, axis=f"difference of the {of}s, with confidence interval")
    return CHART_SCALES[statistic]


def _figure(width: float, height: float, *, layout: str | None = "constrained") -> Any:
    import matplotlib

    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text in SVG (searchable, smaller)
    matplotlib.rcParams["svg.hashsalt"] = "survey-pipeline"  # deterministic element ids
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def figure_bytes(figure: Any, fmt: Literal["png", "svg"], *, dpi: int = 150) -> bytes:
    """The figure as PNG or SVG bytes."""
    import io

    buf = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    figure.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    return buf.getvalue()


def estimate_chart(
    estimates: pl.DataFrame,
    estimate_id: str,
    *,
    labels: Mapping[str, str] | None = None,
    codebook: Codebook | None = None,
    decimals: int = 0,
    notice: str | None = None,
) -> Any:
    """Bars of one estimate (each level) overall and by domain, with CI whiskers.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import numpy as np
    import polars as pl

    from pipeline.exporters.tables import by_label, domain_label, prepare_estimates

    est = prepare_estimates(estimates).filter(pl.col("estimate_id") == estimate_id)
    if est.height == 0:
        raise ValueError(f"no estimate {estimate_id!r} in estimates.csv")
    levels = est.get_column("level").unique(maintain_order=True).to_list()
    first = est.row(0, named=True)
    scale = chart_scale(first)
    # y positions: the whole sample, then each domain variable's block, with a gap and a heading
    ticks: list[tuple[float, str, bool]] = []
    bars: list[tuple[float, dict[str, Any], int]] = []
    y = 0.0
    groups = est.get_column("by").unique(maintain_order=True).to_list()
    bar_h = 0.8 / len(levels)
    for g, by in enumerate(groups):
        part = est.filter(pl.col("by") == by)
        if by:
            y += 0.4
            ticks.append((y, by_label(by, codebook, labels or {}), True))
            y += 1.0
        for domain in part.get_column("domain").unique(maintain_order=True).to_list():
            ticks.append((y, domain_label(domain) if by else "All", False))
            for k, level in enumerate(levels):
                row = part.filter((pl.col("domain") == domain) & (pl.col("level") == level))
                if row.height:
                    offset = (k - (len(levels) - 1) / 2) * bar_h
                    bars.append((y + offset, row.row(0, named=True), k if len(levels) > 1 else g))
            y += 1.0
    # a fixed layout (constrained layout doubles the drawing time): room for the longest label
    longest = max(len(t[1]) for t in ticks)
    width, height = 7.5, 1.9 + 0.3 * y
    left = min(0.45, (0.3 + 0.075 * longest) / width)
    fig = _figure(width, height, layout=None)
    ax = fig.add_axes((left, 0.85 / height, 0.93 - left, 1 - 1.75 / height))
    from pipeline.exporters.values import value_format

    shown = [scale.factor * r["ci_high"] for _, r, _ in bars if not is_suppressed(r["flag"]) and r["ci_high"] is not None]
    # the value's label right of its interval: 1 point on the 0-100% axis, 1% of the widest bar on others
    pad = 1.0 if scale.limits is not None else 0.01 * max((abs(h) for h in shown), default=1.0)
    for pos, r, colour in bars:
        if is_suppressed(r["flag"]):
            ax.text(0.005, pos, "* suppressed (unreliable or too few respondents)", va="center", ha="left", fontsize=8, color=MUTED)
            continue
        p = scale.factor * r["estimate"]
        lo, hi = scale.factor * r["ci_low"], scale.factor * r["ci_high"]
        ax.barh(pos, p, height=bar_h * 0.9, color=PALETTE[colour % len(PALETTE)], alpha=0.85 if r["by"] else 1.0)
        ax.errorbar(p, pos, xerr=np.array([[p - lo], [hi - p]]), fmt="none", ecolor="#222222", elinewidth=1, capsize=3)
        ax.text(hi + pad, pos, f"{value_format(r).text(r['estimate'], decimals)}{scale.suffix}", va="center", ha="left", fontsize=8)
    ax.set_yticks([t[0] for t in ticks], [t[1] for t in ticks])
    for tick, (_, _, heading) in zip(ax.get_yticklabels(), ticks, strict=True):
        if heading:
            tick.set_fontweight("bold")
    ax.set_ylim(y - 0.4, -0.6)  # top to bottom, with room around the first and last bars
    if scale.limits is not None:
        ax.set_xlim(*scale.limits)
    ax.set_xlabel(scale.axis)
    ax.xaxis.grid(True, color="#e0e0e0")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    title = textwrap.fill(str(first.get("title") or estimate_id), 85)
    what = (levels[0] if len(levels) == 1 else ", ".join(levels)) or scale.statistic  # a mean has no level
    fig.text(0.01, 1 - 0.12 / height, f"{title}\n{what}; {100 * first['conf_level']:g}% CI ({first['ci_method']})", fontsize=10, va="top", ha="left")
    if len(levels) > 1:
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(color=PALETTE[k % len(PALETTE)], label=lv) for k, lv in enumerate(levels)], fontsize=8, loc="lower right")
    if notice:
        fig.text(0.01, 0.05 / height, textwrap.fill(notice, 130), fontsize=6.5, color=MUTED, va="bottom", ha="left")
    return fig


def trend_chart(
    trends: pl.DataFrame,
    estimate_ids: Sequence[str] = (),
    *,
    decimals: int = 0,
    notice: str | None = None,
) -> Any:
    """Each estimate (whole sample) across waves: a line with CI whiskers; changes flagged
    significant between consecutive waves are marked with an asterisk.

    ``trends`` is the layout of ``trends/estimates.csv``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import polars as pl

    from pipeline.exporters.estimates import is_change, prepare_estimates
    from pipeline.exporters.values import value_format

    est = prepare_estimates(trends).filter(pl.col("by") == "")
    levels = est.filter(~is_change(est))
    ids = list(estimate_ids)
    if not ids:  # every estimate of one statistic, the first in the estimates' order (one y axis)
        first = levels.get_column("statistic").head(1).to_list()
        ids = levels.filter(pl.col("statistic").is_in(first)).get_column("estimate_id").unique(maintain_order=True).to_list()
    waves = levels.get_column("wave").unique(maintain_order=True).to_list()
    x_of = {w: i for i, w in enumerate(waves)}
    fig = _figure(7.5, 4.8, layout=None)
    ax = fig.add_axes((0.1, 0.16, 0.86, 0.74))  # room below for the wave labels and the notice
    scales: set[ChartScale] = set()
    for k, est_id in enumerate(ids):
        part = levels.filter(pl.col("estimate_id") == est_id)
        if part.get_column("level").n_unique() != 1:
            continue  # an estimate of every answer is not one line
        rows = [r for r in part.iter_rows(named=True) if not is_suppressed(r["flag"])]
        if not rows:
            continue
        colour = PALETTE[k % len(PALETTE)]
        scale = chart_scale(rows[0])
        scales.add(scale)
        xs = [x_of[r["wave"]] for r in rows]
        ps = [scale.factor * r["estimate"] for r in rows]
        err = [[p - scale.factor * r["ci_low"] for p, r in zip(ps, rows)], [scale.factor * r["ci_high"] - p for p, r in zip(ps, rows)]]
        ax.errorbar(xs, ps, yerr=err, color=colour, marker="o", capsize=3, linewidth=1.5, label=legend_label(rows[0]))
        for x, r in zip(xs, rows):
            ax.annotate(f"{value_format(r).text(r['estimate'], decimals)}{scale.suffix}", (x, scale.factor * r["estimate"]),
                        textcoords="offset points", xytext=(8, -3), fontsize=8, color=colour)
        changes = est.filter(is_change(est) & (pl.col("estimate_id") == est_id) & (pl.col("flag") == "significant"))
        for r in changes.iter_rows(named=True):
            x0, x1 = x_of[str(r["wave_from"])], x_of[str(r["wave_to"])]
            y = (ps[xs.index(x0)] + ps[xs.index(x1)]) / 2 if x0 in xs and x1 in xs else None
            if y is not None:
                ax.text((x0 + x1) / 2, y, "*", fontsize=14, color=colour, ha="center", va="bottom")
    ax.set_xticks(range(len(waves)), waves)
    ax.set_xlim(-0.4, len(waves) - 0.6)
    if len(scales) > 1:
        from pipeline.errors import ConfigError

        raise ConfigError(
            f"export.charts: the trend chart draws estimates of one statistic on one axis; these are of {', '.join(sorted(c.statistic for c in scales))} "
            f"({', '.join(ids)})",
            hint="list estimates of one statistic in export.charts, e.g. export.charts: [" + ids[0] + "]",
        )
    ax.set_ylabel((scales.pop() if scales else CHART_SCALES["proportion"]).axis)
    ax.yaxis.grid(True, color="#e0e0e0")
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Estimates by wave (* significant change between consecutive waves)", fontsize=10, loc="left")
    if notice:
        fig.text(0.01, 0.005, textwrap.fill(notice, 130), fontsize=6.5, color=MUTED, va="bottom", ha="left")
    return fig


def weighting_chart(
    margins: pl.DataFrame,
    *,
    codebook: Codebook | None = None,
    group_columns: Sequence[str] = (),
    notice: str | None = None,
) -> Any:
    """Targets against unweighted and weighted shares of every raking margin.

    Parameters
    ----------
    margins : polars.DataFrame
        ``weight/margins.csv``: ``variable``, ``category``, ``label``, ``target_share``,
        ``unweighted_share``, ``final_share`` and the raking groups' columns.
    group_columns : sequence of str
        The raking groups' columns (``weight.rake.by``); one panel column per group.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import polars as pl

    variables = margins.get_column("variable").unique(maintain_order=True).to_list()
    by = [c for c in group_columns if c in margins.columns]
    groups = margins.select(by).unique(maintain_order=True).rows() if by else [()]
    from matplotlib.ticker import MaxNLocator

    sizes = [margins.filter(pl.col("variable") == v).get_column("category").n_unique() for v in variables]
    # a fixed layout: constrained layout would double the drawing time of these many panels
    width = max(2.4 * len(groups) + 2.6, 6.0)
    title = textwrap.wrap("Weighting check: raking targets against unweighted and weighted shares", int(width * 9.5))
    # the header band: the title's lines, then the legend's row (the legend never covers a panel)
    header = 0.25 + 0.2 * len(title) + 0.3
    height = sum(0.2 * s + 0.55 for s in sizes) + 0.45 + header
    fig = _figure(width, height, layout=None)
    grid = fig.add_gridspec(
        len(variables), len(groups), height_ratios=sizes, left=2.4 / width, right=1 - 0.25 / width,
        top=1 - (header + 0.25) / height, bottom=0.75 / height, hspace=0.55, wspace=0.08,
    )
    for i, v in enumerate(variables):
        for j, g in enumerate(groups):
            ax = fig.add_subplot(grid[i, j])
            part = margins.filter(pl.col("variable") == v)
            for col, value in zip(by, g, strict=True):
                part = part.filter(pl.col(col) == value)
            part = part.sort("category")
            ypos = list(range(part.height))
            cats = part.get_column("label").to_list() if "label" in part.columns else part.get_column("category").cast(pl.String).to_list()
            ax.scatter(100 * part.get_column("unweighted_share").fill_null(0), ypos, facecolors="none", edgecolors=MUTED, s=22, label="unweighted", zorder=2)
            ax.scatter(100 * part.get_column("final_share").fill_null(0), ypos, color=PALETTE[0], s=14, label="weighted", zorder=3)
            ax.scatter(100 * part.get_column("target_share").fill_null(0), ypos, marker="|", color="#c62828", s=120, linewidths=1.6, label="target", zorder=4)
            ax.set_yticks(ypos, [textwrap.shorten(str(c), 30) for c in cats] if j == 0 else [""] * len(cats))
            ax.set_ylim(len(ypos) - 0.5, -0.5)
            ax.tick_params(labelsize=7)
            ax.xaxis.grid(True, color="#e6e6e6")
            ax.set_axisbelow(True)
            shown = [100 * part.get_column(c).fill_null(0).max() for c in ("unweighted_share", "final_share", "target_share")]
            ax.set_xlim(0, max(max(x for x in shown if x is not None), 1.0) * 1.1)  # room right of the largest point
            ax.xaxis.set_major_locator(MaxNLocator(4))
            if i == 0 and by:
                names = [codebook.label_of(c, x) if codebook is not None else str(x) for c, x in zip(by, g, strict=True)]
                ax.set_title(", ".join(names), fontsize=9)
            if j == 0:
                label = codebook.get(v).label if codebook is not None and v in codebook else v
                ax.set_ylabel(textwrap.fill(str(label or v), 22), fontsize=8)
            if i == len(variables) - 1:
                ax.set_xlabel("percent", fontsize=8)
            if i == 0 and j == 0:
                handles, labels = ax.get_legend_handles_labels()
    fig.suptitle("\n".join(title), fontsize=11, x=0.01, y=1 - 0.12 / height, ha="left", va="top")
    fig.legend(handles, labels, fontsize=7, loc="upper right", ncol=3, frameon=False,
               bbox_to_anchor=(1 - 0.1 / width, 1 - (0.2 + 0.2 * len(title)) / height))
    if notice:
        fig.text(0.01, 0.05 / height, textwrap.fill(notice, int(width * 16)), fontsize=6.5, color=MUTED, va="bottom", ha="left")
    return fig

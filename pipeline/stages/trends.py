"""Trends (study level, after every wave's estimates): all waves' estimates in one file, plus a
change row between consecutive waves for every estimate present in both.

The waves are independent samples: the difference, its se, df, t interval and p-value are
:func:`pipeline.survey.changes.independent_difference` (variance se_1^2 + se_2^2, df_1 + df_2,
difference +/- t(df) se, two-sided p from t(df)); a change row is flagged
``significant`` when p < ``trends.alpha``, and ``component=suppressed`` (withheld in tables)
when either wave's estimate is suppressed.

The stage also renders the trend tables (``tables.trends``; by default one table of every
estimate overall) with :func:`pipeline.exporters.tables.trend_table`, in the formats of
``export.formats``, under ``trends/`` (``trends/tables.docx``: the Word document, without a
methods statement), and, with two or more waves and ``png``/``svg`` among the
formats, the trend chart (``trends/trend_chart.*``: the charted estimates across waves).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pipeline.flags import is_suppressed
from pipeline.stages import Reads

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import TrendsConfig
    from pipeline.stages import StageOutput, StudyContext

KEY = ("estimate_id", "statistic", "variable", "level", "by", "domain")


def trends(estimates: Mapping[str, pl.DataFrame], config: TrendsConfig, *, order: Sequence[str]) -> pl.DataFrame:
    """Stack the waves' estimates (``order``) and add change rows between consecutive waves."""
    import polars as pl

    from pipeline.survey.changes import independent_difference

    waves = [w for w in order if w in estimates]
    frames = [estimates[w].with_columns(pl.col("wave").cast(pl.String)) for w in waves]
    stacked = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    changes = []
    for w0, w1 in zip(waves, waves[1:]):
        a = estimates[w0].select(*KEY, "n", "estimate", "se", "df", "conf_level", "flag")
        carried = [c for c in ("denominator", "title") if c in estimates[w1].columns]
        # a change is of the estimate's statistic (a change of a difference: of what the difference is of)
        of = pl.col("statistic")
        if "difference_of" in estimates[w1].columns:
            of = pl.when(pl.col("statistic") == "difference").then(pl.col("difference_of")).otherwise(pl.col("statistic"))
        b = estimates[w1].select(*KEY, "n", "estimate", "se", "df", "conf_level", "flag", *carried, of.alias("difference_of"))
        carried.append("difference_of")
        j = b.join(a, on=list(KEY), how="inner", suffix="_from")
        if j.height == 0:
            continue
        d = independent_difference(
            j["estimate"].to_numpy(), j["se"].to_numpy(), j["df"].to_numpy(),
            j["estimate_from"].to_numpy(), j["se_from"].to_numpy(), j["df_from"].to_numpy(), j["conf_level"].to_numpy(),
        )
        diff, se, df = d.estimate, d.se, d.df
        # a change involving a suppressed estimate is withheld too
        suppressed = [is_suppressed(f0) or is_suppressed(f1) for f0, f1 in zip(j["flag_from"].fill_null(""), j["flag"].fill_null(""))]
        p = pl.Series(d.p_value)
        changes.append(
            j.select(
                pl.lit(f"{w1} vs {w0}").alias("wave"),
                "estimate_id",
                pl.lit("difference").alias("statistic"),
                "variable",
                "level",
                "by",
                "domain",
                (pl.col("n") + pl.col("n_from")).alias("n"),
                pl.Series("estimate", diff),
                pl.Series("se", se),
                pl.Series("ci_low", d.ci_low),
                pl.Series("ci_high", d.ci_high),
                pl.lit("t_independent").alias("ci_method"),
                "conf_level",
                pl.Series("df", df, dtype=pl.Float64),
                pl.lit(None, dtype=pl.Float64).alias("deff"),
                pl.when(pl.Series(suppressed)).then(pl.lit("component=suppressed"))
                .when(p < config.alpha).then(pl.lit("significant")).otherwise(pl.lit("")).alias("flag"),
                *[pl.col(c) for c in carried],
                pl.lit(w0).alias("wave_from"),
                pl.lit(w1).alias("wave_to"),
                p.alias("p_value"),
            )
        )
    out = pl.concat([stacked, *changes], how="diagonal_relaxed") if changes else stacked
    return out


READS = Reads(
    config=("study", "title", "notice", "trends", "tables", "export", "waves[].id", "waves[].field_dates", "estimates[].id", "estimates[].decimals"),
    upstream=("estimates.csv",),
)
"""The change test, the trend tables' rules and formats, and every wave's estimates."""


def run(ctx: StudyContext) -> StageOutput:
    import polars as pl

    from pipeline.config import TrendSpec
    from pipeline.exporters import file_timestamp
    from pipeline.exporters.formats import FORMATS, render_tables
    from pipeline.exporters.estimates import is_change
    from pipeline.exporters.tables import prepare_estimates, read_estimates, trend_table
    from pipeline.exporters.values import with_decimals
    from pipeline.stages import StageOutput

    config = ctx.config
    est = {w: read_estimates(ctx.wave_path(w, "estimates.csv")).drop("_row") for w in ctx.waves}
    table = trends(est, config.trends, order=list(ctx.waves))
    files: dict[str, object] = {"trends/estimates.csv": table}
    tables = []
    if table.height:
        decimals = {i: d for i, d in ((e.id, e.decimals) for e in config.estimates) if d is not None}
        rows = with_decimals(prepare_estimates(table), decimals)  # _row: the row of trends/estimates.csv each cell shows
        specs = config.tables.trends or (TrendSpec(id="trends"),)
        common = {"title": config.title, "notice": config.notice}
        tables = [trend_table(rows, spec, config.tables, alpha=config.trends.alpha, **common) for spec in specs]
        formats = set(config.export.formats)
        created = file_timestamp(w for w in config.waves if w.id in ctx.waves)
        files.update(render_tables(
            tables, formats, "trends", rows, title=config.title or config.study, wave=", ".join(ctx.waves), notice=config.notice, created=created
        ))
        if len(ctx.waves) > 1:
            from pipeline.exporters.charts import trend_chart

            charted = [f for f in FORMATS.values() if f.kind == "chart" and f.name in formats]
            fig = trend_chart(with_decimals(table, decimals), config.export.charts, decimals=config.tables.decimals, notice=config.notice) if charted else None
            for fmt in charted:
                files[f"trends/trend_chart{fmt.suffix}"] = fmt.render(fig)
    changes = table.filter(is_change(table)) if table.height else table
    return StageOutput(
        files=files,
        diagnostics={
            "waves": list(ctx.waves),
            "tables": len(tables),
            "change_rows": changes.height,
            "significant": int((changes.get_column("flag") == "significant").sum()) if changes.height else 0,
        },
        rows=table.height,
    )

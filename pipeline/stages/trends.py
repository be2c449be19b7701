"""Trends (study level, after every wave's estimates): all waves' estimates in one file, plus a
change row between consecutive waves for every estimate present in both.

The waves are independent samples, so the difference of two estimates has variance
se_1^2 + se_2^2 (no covariance), and its degrees of freedom are df_1 + df_2 (the two designs
stacked as strata of one design, as R survey's degf would count them). The interval is
difference +/- t(df) se, the p-value two-sided from t(df); a change row is flagged
``significant`` when p < ``trends.alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import TrendsConfig
    from pipeline.runner import StudyContext
    from pipeline.stages import StageOutput

KEY = ("estimate_id", "statistic", "variable", "level", "by", "domain")


def trends(estimates: Mapping[str, pl.DataFrame], config: TrendsConfig, *, order: Sequence[str]) -> pl.DataFrame:
    """Stack the waves' estimates (``order``) and add change rows between consecutive waves."""
    import polars as pl
    from scipy import stats

    waves = [w for w in order if w in estimates]
    frames = [estimates[w].with_columns(pl.col("wave").cast(pl.String)) for w in waves]
    stacked = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    changes = []
    for w0, w1 in zip(waves, waves[1:]):
        a = estimates[w0].select(*KEY, "n", "estimate", "se", "df", "conf_level")
        b = estimates[w1].select(*KEY, "n", "estimate", "se", "df", "conf_level", "ci_method", *(["denominator", "title"] if "title" in estimates[w1].columns else []))
        j = b.join(a, on=list(KEY), how="inner", suffix="_from")
        if j.height == 0:
            continue
        diff = (j["estimate"] - j["estimate_from"]).to_numpy()
        se = ((j["se"] ** 2 + j["se_from"] ** 2) ** 0.5).to_numpy()
        df = (j["df"] + j["df_from"]).to_numpy()
        conf = j["conf_level"].to_numpy()
        t = stats.t.ppf(1 - (1 - conf) / 2, df)
        with_se = se > 0
        p = pl.Series([float(2 * stats.t.sf(abs(d / s), f)) if ok else float("nan") for d, s, f, ok in zip(diff, se, df, with_se)])
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
                pl.Series("ci_low", diff - t * se),
                pl.Series("ci_high", diff + t * se),
                pl.lit("t_independent").alias("ci_method"),
                "conf_level",
                pl.Series("df", df, dtype=pl.Float64),
                pl.lit(None, dtype=pl.Float64).alias("deff"),
                pl.when(p < config.alpha).then(pl.lit("significant")).otherwise(pl.lit("")).alias("flag"),
                *([pl.col("denominator"), pl.col("title")] if "title" in j.columns else []),
                pl.lit(w0).alias("wave_from"),
                pl.lit(w1).alias("wave_to"),
                p.alias("p_value"),
            )
        )
    out = pl.concat([stacked, *changes], how="diagonal_relaxed") if changes else stacked
    return out


def trends_markdown(table: pl.DataFrame, title: str) -> str:
    """One table per estimate: domains down, waves and changes across."""
    import polars as pl

    lines = [f"# {title}: trends", ""]
    if table.height == 0:
        return "\n".join(lines + ["No estimates yet.", ""])
    levels = table.filter(pl.col("statistic") != "difference")
    waves = levels.get_column("wave").unique(maintain_order=True).to_list()
    changes = table.filter(pl.col("statistic") == "difference").get_column("wave").unique(maintain_order=True).to_list()
    for est_id in levels.get_column("estimate_id").unique(maintain_order=True).to_list():
        part = table.filter(pl.col("estimate_id") == est_id)
        lines += [f"## {part.get_column('title')[0] if 'title' in part.columns else est_id} (`{est_id}`)", ""]
        lines += ["| group | domain | level | " + " | ".join(waves + changes) + " |", "|---|---|---|" + "---:|" * (len(waves) + len(changes))]
        for (by, domain, level), rows in part.group_by(["by", "domain", "level"], maintain_order=True):
            cells = []
            for w in waves + changes:
                r = rows.filter(pl.col("wave") == w)
                if r.height == 0:
                    cells.append("—")
                    continue
                v = 100 * r.get_column("estimate")[0]
                mark = " *" if r.get_column("flag")[0] == "significant" else ""
                cells.append(f"{v:+.1f}{mark}" if w in changes else f"{v:.1f}")
            lines.append(f"| {by or 'All'} | {domain} | {level} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Percentages; changes in percentage points (later wave minus earlier). * significant at the configured level (independent samples, t test).", ""]
    return "\n".join(lines)


def run(ctx: StudyContext) -> StageOutput:
    import polars as pl

    from pipeline.stages import StageOutput

    strings = {c: pl.String for c in ("wave", "by", "flag", "level", "domain")}
    est = {
        w: pl.read_csv(ctx.wave_path(w, "estimates.csv"), infer_schema_length=None, schema_overrides=strings).with_columns(
            pl.col("by").fill_null(""), pl.col("flag").fill_null("")
        )
        for w in ctx.waves
    }
    table = trends(est, ctx.config.trends, order=list(ctx.waves))
    changes = table.filter(pl.col("statistic") == "difference") if table.height else table
    return StageOutput(
        files={"trends/estimates.csv": table, "trends/trends.md": trends_markdown(table, ctx.config.title or ctx.config.study)},
        diagnostics={
            "waves": list(ctx.waves),
            "change_rows": changes.height,
            "significant": int((changes.get_column("flag") == "significant").sum()) if changes.height else 0,
        },
        rows=table.height,
    )

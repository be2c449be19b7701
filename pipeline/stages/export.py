"""Export: publication tables from the tidy ``estimates.csv`` (the single source of numbers).

For now: a topline table per estimate (overall and each domain: unweighted n, weighted
percent, confidence interval), as Markdown and as CSV. Flags from the estimate stage are
footnoted. Every number in a table is a rounding of one row of ``estimates.csv``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.stages import StageContext, StageOutput

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import StudyConfig


def topline_frame(estimates: pl.DataFrame, *, decimals: int = 0) -> pl.DataFrame:
    """One formatted row per estimate row: what the published topline shows."""
    import polars as pl

    pct = lambda c: (pl.col(c) * 100).round(decimals)  # noqa: E731
    fmt = lambda e: e.cast(pl.Float64).map_elements(lambda v: f"{v:.{decimals}f}", return_dtype=pl.String)  # noqa: E731
    return estimates.select(
        "estimate_id",
        "title",
        "level",
        pl.when(pl.col("by") == "").then(pl.lit("All")).otherwise(pl.col("by")).alias("group"),
        pl.col("domain"),
        pl.col("n"),
        fmt(pct("estimate")).alias("percent"),
        pl.concat_str([fmt(pct("ci_low")), pl.lit("–"), fmt(pct("ci_high"))]).alias("ci"),
        pl.col("flag"),
    )


def topline_markdown(estimates: pl.DataFrame, config: StudyConfig, wave: str) -> str:
    import polars as pl

    decimals = config.tables.decimals
    table = topline_frame(estimates, decimals=decimals)
    conf = estimates.get_column("conf_level").unique().to_list() if estimates.height else [config.design.conf_level]
    level_text = ", ".join(f"{100 * c:g}%" for c in conf)
    lines = [f"# {config.title or config.study}: topline, wave {wave}", ""]
    if config.notice:
        lines += [f"> {config.notice}", ""]
    for est_id in table.get_column("estimate_id").unique(maintain_order=True).to_list():
        part = table.filter(pl.col("estimate_id") == est_id)
        first = estimates.filter(pl.col("estimate_id") == est_id).row(0, named=True)
        base = "all respondents asked, don't know and refused included" if first["denominator"] == "all" else "valid answers"
        several = part.get_column("level").n_unique() > 1
        what = "Shares of each answer" if several else f"Share answering **{first['level']}**"
        lines += [f"## {first['title']}", "", f"{what} (`{est_id}`, variable `{first['variable']}`; base: {base}).", ""]
        head = ["group", "domain", *(["answer"] if several else []), "n", "%", f"{level_text} CI"]
        lines += ["| " + " | ".join(head) + " |", "|---|---|" + ("---|" if several else "") + "---:|---:|---|"]
        for r in part.iter_rows(named=True):
            mark = " †" if r["flag"] else ""
            cells = [r["group"], r["domain"], *([r["level"]] if several else []), f"{r['n']:,}", f"{r['percent']}{mark}", r["ci"]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "---",
        f"Weighted percentages; {level_text} confidence intervals ({', '.join(estimates.get_column('ci_method').unique().to_list()) if estimates.height else config.design.ci_method} method) "
        "from Taylor-linearized design-based standard errors. n is the unweighted number of respondents.",
        f"† fewer than {config.tables.min_n} respondents: interpret with caution.",
        "",
    ]
    return "\n".join(lines)


def run(ctx: StageContext) -> StageOutput:
    import polars as pl

    est = pl.read_csv(ctx.path("estimates.csv"), infer_schema_length=None, schema_overrides={"by": pl.String, "flag": pl.String, "level": pl.String, "domain": pl.String})
    est = est.with_columns(pl.col("by").fill_null(""), pl.col("flag").fill_null(""))
    files: dict[str, object] = {}
    if "markdown" in ctx.config.export.formats:
        files["tables/topline.md"] = topline_markdown(est, ctx.config, ctx.wave.id)
    if "csv" in ctx.config.export.formats:
        files["tables/topline.csv"] = topline_frame(est, decimals=ctx.config.tables.decimals)
    return StageOutput(files=files, diagnostics={"tables": len(files)}, rows=est.height)

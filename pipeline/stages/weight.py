"""Weight: base weights, raking to the wave's targets, trimming, final scaling, QA.

The statistics live in :mod:`pipeline.survey.weighting`; this stage wires them to the config
and the targets file:

1. base weight ``w_base`` = N_h / n_h within ``weight.base.population_by`` groups (N_h from the
   targets file's ``population`` column), times each ``weight.base.factors`` expression
   (household adults, dual-frame compositing, ...);
2. missing raking variables are imputed (``rake.impute: mode``: the most common category in
   the respondent's raking group), and the imputations are counted;
3. raking within ``rake.by`` groups to the targets' shares times the group's population;
4. trimming at ``trim.lower``/``trim.upper`` x the group median, then one more raking pass;
5. ``w_final`` scaled to the sample size, ``w_pop`` to the population;
6. QA: the achieved margins against the targets, Kish design effect, effective n, margin of
   error; limits in ``weight.qa`` fail the stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import CalibrationError, ConfigError, DataError, TargetsError
from pipeline.stages import StageContext, StageOutput

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from pipeline.config import RakeConfig, WeightConfig


@dataclass(frozen=True)
class WeightStageResult:
    data: pl.DataFrame
    margins: pl.DataFrame
    qa: dict[str, Any]


def base_weights(frame: pl.DataFrame, targets: pl.DataFrame | None, config: WeightConfig) -> np.ndarray:
    """``w_base``: N_h / n_h times the configured factors."""
    import numpy as np
    import polars as pl

    from pipeline.config import parse_expr

    by = list(config.base.population_by)
    w = np.ones(frame.height)
    if by:
        if targets is None or "population" not in targets.columns:
            raise ConfigError(
                "weight.base.population_by needs a targets file with a 'population' column",
                hint="add 'targets:' to the wave, or remove weight.base.population_by",
            )
        pops = targets.select([*by, "population"]).unique()
        dup = pops.group_by(by).len().filter(pl.col("len") > 1)
        if dup.height:
            raise TargetsError(f"targets: more than one population value for group(s) {dup.select(by).rows()} of {by}")
        counts = frame.group_by(by).len(name="n_h")
        joined = frame.select(by).with_row_index("_i").join(counts, on=by, how="left").join(pops, on=by, how="left").sort("_i")
        missing = joined.filter(pl.col("population").is_null())
        if missing.height:
            groups = sorted(set(missing.select(by).rows()))
            raise TargetsError(
                f"targets: no population for group(s) {groups} of {', '.join(by)}",
                hint="every group in the data needs a population total in the targets file",
            )
        w = (joined.get_column("population") / joined.get_column("n_h")).to_numpy().astype(float)
    for i, factor in enumerate(config.base.factors):
        values = frame.select(parse_expr(factor.expr).cast(pl.Float64).alias("f")).get_column("f")
        bad = values.is_null() | (values <= 0)
        if bad.any():
            rows = frame.filter(bad).get_column("raw_row").head(5).to_list() if "raw_row" in frame.columns else []
            raise DataError(
                f"weight.base.factors[{i}] ({factor.name}): {int(bad.sum())} row(s) get a missing or non-positive factor "
                f"from {factor.expr!r} (raw rows {rows})",
                hint="make the expression return a positive number for every row, e.g. with COALESCE",
            )
        w = w * values.to_numpy()
    return w


def impute_mode(frame: pl.DataFrame, variables: list[str], by: list[str]) -> tuple[pl.DataFrame, dict[str, int]]:
    """Fill nulls of each variable with its most common value within ``by`` (ties: smallest)."""
    import polars as pl

    counts: dict[str, int] = {}
    for v in variables:
        n = int(frame.get_column(v).null_count())
        counts[v] = n
        if n == 0:
            continue
        keys = by or []
        mode = (
            frame.filter(pl.col(v).is_not_null())
            .group_by([*keys, v])
            .len()
            .sort([*keys, "len", v], descending=[*([False] * len(keys)), True, False])
            .group_by(keys or pl.lit(1), maintain_order=True)
            .first()
        )
        if keys:
            frame = frame.join(mode.select([*keys, pl.col(v).alias("_mode")]), on=keys, how="left")
        else:
            frame = frame.with_columns(pl.lit(mode.get_column(v)[0]).alias("_mode"))
        frame = frame.with_columns(pl.col(v).fill_null(pl.col("_mode"))).drop("_mode")
    return frame, counts


def achieved_margins(frame: pl.DataFrame, targets: pl.DataFrame, variables: list[str], by: list[str], weights: dict[str, str]) -> pl.DataFrame:
    """Target share against unweighted and weighted shares, per group, variable and category."""
    import polars as pl

    parts = []
    for v in variables:
        aggs = [pl.len().alias("n")] + [pl.col(w).sum().alias(name) for name, w in weights.items()]
        g = frame.group_by([*by, v]).agg(aggs).rename({v: "category"}).with_columns(pl.lit(v).alias("variable"))
        tot = g.group_by(by or pl.lit(1).alias("_all")).agg([pl.col("n").sum().alias("_n")] + [pl.col(k).sum().alias(f"_{k}") for k in weights])
        g = g.join(tot, on=by, how="left") if by else g.join(tot.drop("_all"), how="cross")
        g = g.with_columns(
            [(pl.col("n") / pl.col("_n")).alias("unweighted_share")] + [(pl.col(k) / pl.col(f"_{k}")).alias(f"{k}_share") for k in weights]
        )
        parts.append(g.select([*by, "variable", pl.col("category").cast(pl.Int64), "n", "unweighted_share", *[f"{k}_share" for k in weights]]))
    got = pl.concat(parts)
    t = targets.filter(pl.col("variable").is_in(variables)).select(
        [*by, "variable", pl.col("category").cast(pl.Int64), "share", *(["label"] if "label" in targets.columns else [])]
    )
    out = t.join(got, on=[*by, "variable", "category"], how="full", coalesce=True).rename({"share": "target_share"})
    last = list(weights)[-1]
    return out.with_columns((pl.col(f"{last}_share") - pl.col("target_share")).alias("error")).sort([*by, "variable", "category"])


def _rake_once(frame: pl.DataFrame, weight_col: str, totals: pl.DataFrame, rake: RakeConfig) -> Any:
    from pipeline.survey.weighting import rake as rake_weights

    return rake_weights(
        frame,
        weight=weight_col,
        targets=totals,
        by=list(rake.by),
        max_iter=rake.max_iter,
        tolerance=rake.tolerance,
        accept_nonconvergence=rake.accept_nonconvergence,
    )


def weight(frame: pl.DataFrame, targets: pl.DataFrame | None, config: WeightConfig) -> WeightStageResult:
    """Compute ``w_base``, ``w_final`` and ``w_pop`` for one wave's cleaned data."""
    import numpy as np
    import polars as pl

    from pipeline.survey.weighting import targets_from_shares, trim_weights, weight_diagnostics

    if targets is not None and config.targets_columns:
        targets = targets.rename({k: v for k, v in config.targets_columns.items() if k in targets.columns})
    w_base = base_weights(frame, targets, config)
    frame = frame.with_columns(pl.Series("w_base", w_base))
    qa: dict[str, Any] = {"steps": []}
    qa["steps"].append({"step": "base", **weight_diagnostics(w_base).to_dict()})
    w = w_base
    iterations, converged = 0, True
    rake = config.rake
    imputed: dict[str, int] = {}
    if rake is not None:
        if targets is None:
            raise ConfigError("weight.rake needs the wave's 'targets' file", hint="add 'targets: <file>' to the wave")
        by, variables = list(rake.by), list(rake.variables)
        missing_cols = [c for c in [*by, *variables] if c not in frame.columns]
        if missing_cols:
            raise ConfigError(f"weight.rake: variable(s) {', '.join(missing_cols)} are not in the cleaned data", hint="derive them in clean.derive")
        absent = [v for v in variables if v not in set(targets.get_column("variable").to_list())]
        if absent:
            raise TargetsError(f"targets: no rows for raking variable(s) {', '.join(absent)}", hint="add them to the targets file or remove them from weight.rake.variables")
        if rake.impute == "mode":
            frame, imputed = impute_mode(frame, variables, by)
        shares = targets.filter(pl.col("variable").is_in(variables)).with_columns(pl.col("category").cast(pl.Int64))
        totals = targets_from_shares(shares, by=by, share="share", population="population")
        result = _rake_once(frame.with_columns(pl.Series("_w", w)), "_w", totals, rake)
        w, iterations, converged = result.weights, result.iterations, result.converged
        qa["steps"].append({"step": "rake", "iterations": result.iterations, "converged": result.converged,
                            "max_margin_error": result.max_margin_error, **weight_diagnostics(w).to_dict()})
        if config.trim is not None:
            trim = config.trim
            tby = list(trim.by)
            ref = frame.select(tby).with_columns(pl.Series("_w", w)) if tby else pl.DataFrame({"_w": w})
            agg = {"median": pl.col("_w").median(), "mean": pl.col("_w").mean(), "absolute": pl.lit(1.0)}[trim.relative_to]
            centre = (ref.with_columns(agg.over(tby).alias("_c")) if tby else ref.with_columns(agg.alias("_c"))).get_column("_c").to_numpy()
            lower = None if trim.lower is None else trim.lower * centre
            upper = None if trim.upper is None else trim.upper * centre
            trimmed = trim_weights(w, lower=lower, upper=upper, strict=trim.strict)
            w = trimmed.weights
            qa["steps"].append({"step": "trim", **_trim_counts(trimmed), **weight_diagnostics(w).to_dict()})
            if trim.rerake:
                result = _rake_once(frame.with_columns(pl.Series("_w", w)), "_w", totals, rake)
                w = result.weights
                iterations += result.iterations
                converged = result.converged
                qa["steps"].append({"step": "rerake", "iterations": result.iterations, "converged": result.converged,
                                    "max_margin_error": result.max_margin_error, **weight_diagnostics(w).to_dict()})
    n = frame.height
    total_pop = float(w.sum())
    w_final = w * n / w.sum()
    frame = frame.with_columns(pl.Series("w_final", w_final), pl.Series("w_pop", w * total_pop / w.sum()))
    diag = weight_diagnostics(w_final).to_dict()
    margins = None
    max_err = 0.0
    if rake is not None:
        margins = achieved_margins(frame, shares, list(rake.variables), list(rake.by), {"base": "w_base", "final": "w_final"})
        max_err = float(margins.get_column("error").abs().max())
    qa.update(
        {
            "n": n,
            "population": total_pop,
            "kish_deff": diag["kish_deff"],
            "effective_n": diag["effective_n"],
            "moe_95": diag["moe"],
            "iterations": iterations,
            "converged": converged,
            "max_margin_error": max_err,
            "imputed": imputed,
            "final": diag,
        }
    )
    limits = config.qa
    if limits.max_kish_deff is not None and qa["kish_deff"] > limits.max_kish_deff:
        raise CalibrationError(
            f"weight QA: Kish design effect {qa['kish_deff']:.3f} exceeds weight.qa.max_kish_deff = {limits.max_kish_deff}",
            hint="tighten trimming or collapse raking categories, or raise the limit if the design effect is expected",
        )
    if limits.max_margin_error is not None and max_err > limits.max_margin_error:
        raise CalibrationError(
            f"weight QA: the final weights miss a raking target by {max_err:.4f} (limit weight.qa.max_margin_error = {limits.max_margin_error})",
            hint="see weight/margins.csv; trimming without re-raking, or non-convergence, leaves margins off",
        )
    if margins is None:
        margins = pl.DataFrame()
    return WeightStageResult(data=frame, margins=margins, qa=qa)


def _trim_counts(trimmed: Any) -> dict[str, Any]:
    out = {}
    for key in ("n_trimmed", "n_trimmed_lower", "n_trimmed_upper", "redistributed", "iterations"):
        if hasattr(trimmed, key):
            out[key] = getattr(trimmed, key)
    if hasattr(trimmed, "diagnostics") and isinstance(trimmed.diagnostics, dict):
        out.update({k: v for k, v in trimmed.diagnostics.items() if isinstance(v, (int, float, str, bool))})
    return out


def _with_weight_labels(codebook: Any) -> Any:
    from pipeline.io import VariableInfo

    labels = {
        "w_base": "base weight (design x household adults x dual-frame factors)",
        "w_final": "final weight, scaled to the sample size",
        "w_pop": "final weight, scaled to the population",
    }
    for name, label in labels.items():
        codebook = codebook.with_variable(VariableInfo(name=name, label=label))
    return codebook


def qa_markdown(qa: dict[str, Any], margins: pl.DataFrame, wave: str) -> str:
    import polars as pl

    lines = [
        f"# Weighting QA, wave {wave}",
        "",
        f"- respondents: {qa['n']:,}; population: {qa['population']:,.0f}",
        f"- Kish design effect: {qa['kish_deff']:.3f}; effective n: {qa['effective_n']:,.0f}; margin of error (95%, p = 0.5): ±{100 * qa['moe_95']:.1f} points",
        f"- raking iterations: {qa['iterations']}; converged: {qa['converged']}; largest margin error: {qa['max_margin_error']:.2e}",
        f"- imputed for raking: {', '.join(f'{k} {v}' for k, v in qa['imputed'].items()) or 'none'}",
        "",
        "| step | min | max | max/min | CV | Kish deff | effective n |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in qa["steps"]:
        lines.append(f"| {s['step']} | {s['min']:.3g} | {s['max']:.3g} | {s['ratio']:.1f} | {s['cv']:.3f} | {s['kish_deff']:.3f} | {s['effective_n']:.0f} |")
    if margins.height:
        lines += ["", "## Margins: targets against unweighted, base-weighted and final shares (%)", ""]
        show = margins.with_columns([(pl.col(c) * 100).round(1) for c in ("target_share", "unweighted_share", "base_share", "final_share")])
        with pl.Config(tbl_formatting="MARKDOWN", tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True, tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=80):
            lines.append(str(show.drop("error")))
    return "\n".join(lines) + "\n"


def run(ctx: StageContext) -> StageOutput:
    import polars as pl

    frame = ctx.read_frame("clean/data.parquet")
    codebook = ctx.read_codebook("clean/codebook.json")
    targets = None
    if ctx.wave.targets is not None:
        path = ctx.config.resolve(ctx.wave.targets)
        try:
            targets = pl.read_csv(path, infer_schema_length=None)
        except Exception as exc:
            raise DataError(f"{path}: cannot read the targets file ({exc})") from exc
        need = {"variable", "category", "share"}
        if not need <= set(targets.columns):
            raise TargetsError(f"{path}: the targets file needs columns {sorted(need)}; found {targets.columns}")
    result = weight(frame, targets, ctx.config.weight)
    ids = ["raw_row"] + ([ctx.config.ingest.id] if ctx.config.ingest.id else [])
    return StageOutput(
        files={
            "weight/data.parquet": result.data,
            "weight/codebook.json": _with_weight_labels(codebook).to_json(),
            "weight/weights.csv": result.data.select([*ids, "w_base", "w_final", "w_pop"]),
            "weight/margins.csv": result.margins,
            "weight/qa.json": result.qa,
            "weight/qa.md": qa_markdown(result.qa, result.margins, ctx.wave.id),
        },
        diagnostics={k: result.qa[k] for k in ("kish_deff", "effective_n", "iterations", "converged", "max_margin_error", "moe_95")},
        rows=result.data.height,
    )

"""Estimate: every configured estimate, overall and by domains, into tidy ``estimates.csv``.

The design (weights, strata, clusters, fpc, lonely-PSU policy) comes from the config's
``design`` section; the statistics from :mod:`pipeline.survey`. Domains are estimated by zero
weights inside the full design, never by dropping rows.

Denominators. For ``denominator: all`` the don't-know and refused answers stay in the base
(they count as "not in the levels"), as the published figures of the demo study do; for
``denominator: valid`` they are left out. Rows with no answer at all (system missing: skipped
by the questionnaire's logic, or set missing as out of range) are never in the base. Each row's
``denominator`` column says which base it used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.stages import Reads, StageContext, StageOutput
from pipeline.stages._reliability import flags

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import DesignConfig, EstimateSpec, StudyConfig, TablesConfig, WeightConfig
    from pipeline.io import Codebook

#: estimates.csv columns, in the order of the DESIGN.md section 5 contract; more may follow.
COLUMNS = (
    "wave", "estimate_id", "statistic", "variable", "level", "by", "domain", "n",
    "estimate", "se", "ci_low", "ci_high", "ci_method", "conf_level", "df", "deff", "flag",
)
EXTRA_COLUMNS = ("denominator", "title", "cell_n")


def build_design(frame: pl.DataFrame, config: DesignConfig, weighting: WeightConfig | None = None) -> Any:
    """The linearization design of the config's ``design`` section.

    With the weight stage's config and ``design.weighting_variance``, the design remembers the
    weighting (:func:`pipeline.stages.weight.variance_adjustment`: raking, post-stratification
    or calibration residuals), so Taylor linearization accounts for it as R survey does.
    """
    from pipeline.stages.weight import variance_adjustment
    from pipeline.survey.design import Design

    missing = [c for c in (config.weights, *config.strata, *config.ids, *config.fpc) if c not in frame.columns]
    if missing:
        raise ConfigError(f"design: variable(s) {', '.join(missing)} are not in the weighted data")
    design = Design.from_frame(
        frame,
        weights=config.weights,
        ids=list(config.ids),
        strata=list(config.strata) or None,
        fpc=list(config.fpc),
        nest=config.nest,
        lonely_psu=config.lonely_psu,
    )
    if weighting is not None and config.weighting_variance:
        w = frame.get_column(config.weights).to_numpy()
        adjustment = variance_adjustment(frame, w, weighting)
        if adjustment is not None:
            design = design.reweight(w, adjustment)
    return design


def replicate_design(frame: pl.DataFrame, config: DesignConfig, replicates: pl.DataFrame, meta: dict[str, Any]) -> Any:
    """A replicate design from the weight stage's ``weight/replicates.parquet`` and ``.json``.

    The replicate weights are final (the weighting was redone in every replicate) and on the
    scale of ``design.weights``; rows are matched by ``raw_row``.
    """
    import polars as pl

    from pipeline.errors import DataError
    from pipeline.survey.design import Design

    if config.weights not in frame.columns:
        raise ConfigError(f"design.weights: {config.weights} is not in the weighted data")
    rep_cols = [c for c in replicates.columns if c != "raw_row"]
    joined = frame.select("raw_row").join(replicates, on="raw_row", how="left", maintain_order="left")
    if joined.select(pl.any_horizontal(pl.col(rep_cols).is_null())).to_series().any():
        raise DataError("weight/replicates.parquet does not cover every row of weight/data.parquet", hint="rerun the weight stage (--from weight)")
    rscales = meta.get("rscales")
    return Design.from_replicate_weights(
        frame,
        replicate_weights=joined.select(rep_cols).to_numpy(),
        weights=config.weights,
        type=meta["type"],
        combined_weights=True,
        scale=meta.get("scale"),
        rscales=None if rscales is None else list(rscales),
        rho=meta.get("rho"),
        mse=bool(meta.get("mse", False)),
    )


def _indicator_frame(frame: pl.DataFrame, spec: EstimateSpec, codebook: Codebook) -> tuple[pl.DataFrame, str, list[Any]]:
    """Add the analysis column for a spec; return (frame, column, levels to report)."""
    import polars as pl

    var = spec.proportion
    info = codebook.get(var)
    missing = sorted(info.missing_values, key=str)
    col = f"__{spec.id}"
    x = pl.col(var)
    if spec.levels is not None:
        in_levels = x.is_in(list(spec.levels))
        if spec.denominator == "all":
            expr = pl.when(x.is_null()).then(None).otherwise(in_levels.cast(pl.Int64))
        else:
            expr = pl.when(x.is_null() | x.is_in(missing)).then(None).otherwise(in_levels.cast(pl.Int64))
        return frame.with_columns(expr.alias(col)), col, [1]
    expr = x if spec.denominator == "all" else pl.when(x.is_in(missing)).then(None).otherwise(x)
    return frame.with_columns(expr.alias(col)), col, []


def estimate_all(
    frame: pl.DataFrame,
    codebook: Codebook,
    specs: Sequence[EstimateSpec],
    design: Any,
    design_config: DesignConfig,
    tables: TablesConfig,
    *,
    wave: str,
) -> pl.DataFrame:
    """Tidy estimates (DESIGN.md section 5 schema) for every spec and domain list.

    ``design`` is built once over ``frame`` (:func:`build_design` or :func:`replicate_design`);
    each spec adds its analysis column to the design's frame.
    """
    import polars as pl

    from pipeline.survey.estimators import proportion

    problems = []
    for i, spec in enumerate(specs):
        if spec.proportion not in frame.columns:
            problems.append(f"estimates[{i}].proportion: {spec.proportion} is not in the weighted data")
        for by in spec.by:
            problems += [f"estimates[{i}].by: {b} is not in the weighted data" for b in by if b not in frame.columns]
        labels = codebook.get(spec.proportion).value_labels
        unknown = [c for c in spec.levels or () if labels and c not in labels]
        if unknown:
            problems.append(
                f"estimates[{i}].levels ({spec.id}): code(s) {unknown} are not labelled codes of {spec.proportion} "
                f"(codes: {', '.join(f'{k} {v}' for k, v in labels.items())})"
            )
    if problems:
        raise ConfigError(f"estimates: {len(problems)} problem(s):", problems=problems)

    rows: list[pl.DataFrame] = []
    for spec in specs:
        work, col, levels = _indicator_frame(frame, spec, codebook)
        spec_design = design.with_frame(work)
        method = spec.ci_method or design_config.ci_method
        for by in spec.by:
            res = proportion(
                spec_design, col, by=list(by), levels=levels or None, ci_method=method, conf_level=design_config.conf_level, na_rm=True
            )
            if by:
                res = res.filter(pl.all_horizontal([pl.col(b).is_not_null() for b in by]))
            res = _with_cell_counts(res, work, col, list(by), spec_design.in_design)
            rows.append(_tidy(res, spec, list(by), codebook, wave=wave, method=method, conf_level=design_config.conf_level, tables=tables))
    if not rows:
        return pl.DataFrame(schema={c: pl.String for c in (*COLUMNS, *EXTRA_COLUMNS)})
    return pl.concat(rows, how="vertical_relaxed")


def _with_cell_counts(res: pl.DataFrame, work: pl.DataFrame, col: str, by: list[str], in_design: Any) -> pl.DataFrame:
    """``cell_n``: the unweighted respondents of each domain x level row who have the level (the
    numerator of the share, counted as ``n`` counts its base), for the disclosure rule."""
    import numpy as np
    import polars as pl

    base = (
        work.select([*by, pl.col(col).alias("level")])
        .with_columns(pl.Series("_in", np.asarray(in_design, dtype=bool)))
        .filter(pl.col("_in") & pl.col("level").is_not_null())
        .drop("_in")
    )
    if by:
        base = base.filter(pl.all_horizontal([pl.col(b).is_not_null() for b in by]))
    counts = base.group_by([*by, "level"]).len(name="cell_n").with_columns(pl.col("level").cast(res.schema["level"]))
    out = res.join(counts, on=[*by, "level"], how="left", maintain_order="left")
    return out.with_columns(pl.col("cell_n").fill_null(0).cast(pl.Int64))


def _tidy(
    res: pl.DataFrame,
    spec: EstimateSpec,
    by: list[str],
    codebook: Codebook,
    *,
    wave: str,
    method: str,
    conf_level: float,
    tables: TablesConfig,
) -> pl.DataFrame:
    import polars as pl

    var = spec.proportion
    if spec.levels is not None:
        labels = [codebook.label_of(var, c) for c in spec.levels]
        level_text = spec.level_label or " or ".join(labels)
        level = pl.lit(level_text)
    else:
        level = pl.col("level").map_elements(lambda c: codebook.label_of(var, c), return_dtype=pl.String)
    if by:
        domain = pl.concat_str(
            [pl.col(b).map_elements(lambda c, b=b: codebook.label_of(b, c), return_dtype=pl.String) for b in by], separator="*"
        )
    else:
        domain = pl.lit("All")
    out = res.select(
        pl.lit(wave).alias("wave"),
        pl.lit(spec.id).alias("estimate_id"),
        pl.lit("proportion").alias("statistic"),
        pl.lit(var).alias("variable"),
        level.alias("level"),
        pl.lit("*".join(by)).alias("by"),
        domain.alias("domain"),
        pl.col("n").cast(pl.Int64),
        pl.col("estimate").cast(pl.Float64),
        pl.col("se").cast(pl.Float64),
        pl.col("ci_low").cast(pl.Float64),
        pl.col("ci_high").cast(pl.Float64),
        pl.lit(method).alias("ci_method"),
        pl.lit(conf_level).alias("conf_level"),
        pl.col("df").cast(pl.Float64),
        pl.col("deff").cast(pl.Float64),
        pl.lit("").alias("flag"),
        pl.lit(spec.denominator).alias("denominator"),
        pl.lit(spec.title or codebook.get(var).label or var).alias("title"),
        pl.col("cell_n"),
    )
    return out.with_columns(flags(out, tables))


TEST_COLUMNS = (
    "wave", "estimate_id", "variable", "by", "statistic_type", "statistic_name", "statistic", "ndf", "ddf", "p_value", "method", "design_df",
    "skipped",
)


def association_tests(frame: pl.DataFrame, codebook: Codebook, specs: Sequence[EstimateSpec], design: Any, *, wave: str) -> pl.DataFrame:
    """R ``svychisq`` of each estimate's variable (as estimated: its levels, or the combined
    level against the rest, with the estimate's denominator) with each single ``by`` variable.

    A test that cannot be computed (a variable with one level in the base: an answer nobody
    gave, a domain variable with one value) is not an error: its row has no statistic and says
    why in ``skipped`` (empty for the tests made), and the estimates are written all the same.
    """
    import polars as pl

    from pipeline.errors import DataError
    from pipeline.survey.tables import chisq_test

    rows = []
    for spec in specs:
        if spec.test == "none":
            continue
        work, col, _ = _indicator_frame(frame, spec, codebook)
        spec_design = design.with_frame(work)
        for by in spec.by:
            if len(by) != 1:
                continue
            row: dict[str, Any] = {"wave": wave, "estimate_id": spec.id, "variable": spec.proportion, "by": by[0]}
            reason = _untestable(work, col, spec, by[0], codebook)
            if reason is None:
                try:
                    t = chisq_test(spec_design, col, by[0], statistic=spec.test)
                except DataError as exc:  # e.g. no variance: reported, not fatal to the other estimates
                    reason = exc.message
            if reason is not None:
                rows.append({**row, "skipped": reason})
                continue
            rows.append(
                {
                    **row,
                    "statistic_type": t.statistic_type, "statistic_name": t.statistic_name, "statistic": t.statistic,
                    "ndf": t.ndf, "ddf": t.ddf, "p_value": t.p_value, "method": t.method, "design_df": t.design_df, "skipped": "",
                }
            )
    schema = {c: pl.String for c in TEST_COLUMNS} | {c: pl.Float64 for c in ("statistic", "ndf", "ddf", "p_value", "design_df")}
    return pl.DataFrame(rows, schema=schema)


def _untestable(work: pl.DataFrame, col: str, spec: EstimateSpec, by: str, codebook: Codebook) -> str | None:
    """Why the test of ``col`` with ``by`` cannot be made (fewer than 2 levels in its base), or None."""
    import polars as pl

    base = work.filter(pl.col(col).is_not_null() & pl.col(by).is_not_null())
    for name, shown in ((col, spec.proportion), (by, by)):
        values = sorted(base.get_column(name).unique().to_list(), key=str)
        if len(values) >= 2:
            continue
        if name == col and spec.levels is not None:
            chosen = spec.level_label or " or ".join(codebook.label_of(spec.proportion, c) for c in spec.levels)
            found = f"every respondent in the base {'chose' if values == [1] else 'did not choose'} {chosen}"
        elif values:
            found = f"every respondent in the base has {shown} = {codebook.label_of(name if name == by else spec.proportion, values[0])}"
        else:
            found = f"no respondent has a value of {shown}"
        return f"not tested: a test of association needs at least 2 levels of {shown}; {found}"
    return None


READS = Reads(
    config=("design", "weight", "estimates", "waves[].id", "waves[].not_asked", "tables.min_n", "tables.reliability", "tables.disclosure"),
    upstream=("weight/data.parquet", "weight/codebook.json", "weight/replicates.json", "weight/replicates.parquet"),
)
"""The design, the estimates the wave can make, the flag rules, and the weighted data."""


def run(ctx: StageContext) -> StageOutput:
    from pipeline.io import Codebook

    frame = ctx.read_frame("weight/data.parquet")
    codebook = Codebook.from_json(ctx.path("weight/codebook.json").read_text(encoding="utf-8"))
    config: StudyConfig = ctx.config
    if config.design.variance == "replicate":
        meta = json.loads(ctx.path("weight/replicates.json").read_text(encoding="utf-8"))
        design = replicate_design(frame, config.design, ctx.read_frame("weight/replicates.parquet"), meta)
    else:
        design = build_design(frame, config.design, config.weight)
    specs = config.estimates_for(ctx.wave.id)
    est = estimate_all(frame, codebook, specs, design, config.design, config.tables, wave=ctx.wave.id)
    tests = association_tests(frame, codebook, specs, design, wave=ctx.wave.id)
    return StageOutput(
        files={"estimates.csv": est, "estimate/association_tests.csv": tests, "estimate/codebook.json": codebook.to_json()},
        diagnostics={
            "estimates": est.height,
            "flagged": int((est.get_column("flag") != "").sum()) if est.height else 0,
            "tests_skipped": int((tests.get_column("skipped") != "").sum()),
        },
        rows=est.height,
    )

"""The weight stage's base weights, error context and QA report (a private module of :mod:`pipeline.stages.weight`).

Owns ``w_base`` (:func:`base_weights`: a delivered weight, N_h / n_h, the weights R's
``svydesign`` derives from ``design.fpc``, times ``weight.base.factors``), the checks of the
targets file's groups and populations, the imputation of calibration variables
(:func:`impute_mode`), the achieved margins and targets provenance of the QA, ``weight/qa.md``
(:func:`qa_markdown`) and the weight columns' codebook labels. The statistics are in
:mod:`pipeline.survey`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pipeline.config import STAGE_WEIGHTS
from pipeline.errors import ArgumentError, CalibrationError, ConfigError, DataError, TargetsError, translate_argument_error
from pipeline.stages._common import UNCALIBRATED  # the weighted data's column for GREG residuals

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from pipeline.config import DesignConfig, WeightConfig



@contextmanager
def keyed_errors(where: str, *, hint: str | None = None) -> Iterator[None]:
    """Prefix an engine error with the file and config key it comes from (keeping its class)."""
    try:
        yield
    except (TargetsError, CalibrationError, DataError) as exc:
        raise type(exc)(f"{where}: {exc.message}", hint=hint or exc.hint) from exc
    except ArgumentError as exc:  # an option the statistics do not support: a config problem
        raise translate_argument_error(exc, where, prefix="design") from exc


def raw_rows(frame: pl.DataFrame, mask: np.ndarray, limit: int = 5) -> list[int]:
    """The ``raw_row`` of the first rows in ``mask`` (1-based positions without that column)."""
    import numpy as np

    positions = np.flatnonzero(mask)[:limit]
    if "raw_row" in frame.columns:
        return frame.get_column("raw_row").gather(positions).to_list()
    return (positions + 1).tolist()


# ----------------------------------------------------------------------------- base weights


def base_weight_source(config: WeightConfig, design: DesignConfig | None = None) -> tuple[str, str | None]:
    """Where ``w_base`` starts from, as ``(kind, config key or column)``.

    ``column``: a delivered weight (``weight.base.column``, or ``design.weights`` naming a data
    column: a final weight used as is); ``population_by``: N_h / n_h; ``fpc``: derived from
    ``design.fpc`` as R's ``svydesign`` does with neither weights nor probs; ``equal``: all 1
    (R's "No weights or probabilities supplied, assuming equal probability").
    """
    if config.base.column is not None:
        return "column", config.base.column
    if design is not None and design.weights not in STAGE_WEIGHTS:
        return "column", design.weights
    if config.base.population_by:
        return "population_by", None
    if design is not None and design.fpc:
        return "fpc", None
    return "equal", None


def delivered_weight(frame: pl.DataFrame, column: str, key: str) -> np.ndarray:
    """A weight delivered with the data: numeric, present and positive on every row.

    Raises ConfigError when ``column`` is not in the data or not numeric, DataError (naming the
    column and the raw rows) when it is missing or not positive on some rows.
    """
    import numpy as np
    import polars as pl

    if column not in frame.columns:
        raise ConfigError(
            f"{key}: {column} is not a column of the cleaned data",
            hint=f"name the delivered weight's column, or use one the weight stage makes ({', '.join(STAGE_WEIGHTS)})",
        )
    s = frame.get_column(column)
    if not s.dtype.is_numeric():
        raise ConfigError(f"{key}: {column} holds {s.dtype} values; a weight must be a number", hint=f"cast {column} in clean.derive")
    values = s.cast(pl.Float64)
    bad = (values.is_null() | values.is_nan() | (values <= 0) | values.is_infinite()).fill_null(True).to_numpy()
    if bad.any():
        missing = int((values.is_null() | values.is_nan()).sum())
        raise DataError(
            f"{key}: the delivered weight {column} is missing or not positive on {int(bad.sum())} row(s) "
            f"({missing} missing, {int(bad.sum()) - missing} zero, negative or infinite; raw rows {raw_rows(frame, bad)})",
            hint=f"every respondent needs a positive {column}; drop those rows in cleaning (clean.required: [{column}]) or ask the vendor",
        )
    return values.to_numpy().astype(np.float64)


def fpc_weights(frame: pl.DataFrame, design: DesignConfig) -> np.ndarray:
    """Sampling weights derived from ``design.fpc`` as R's ``svydesign`` (no weights, no probs):
    ``1 / prod_s(n_s / N_s)`` over the stages of ``design.ids``, n_s / N_s the stage's sampling
    fraction in the row's stratum."""
    from pipeline.survey.design import Design

    missing = [c for c in (*design.strata, *design.ids, *design.fpc) if c not in frame.columns]
    if missing:
        raise ConfigError(f"design: variable(s) {', '.join(missing)} are not in the cleaned data", hint="check design.strata, design.ids and design.fpc")
    try:
        lin = Design.from_frame(
            frame, ids=list(design.ids), strata=list(design.strata) or None, fpc=list(design.fpc),
            nest=design.nest, lonely_psu=design.lonely_psu,
        )
    except ArgumentError as exc:
        raise ConfigError(
            f"design.fpc: {exc.message.removeprefix('design: ')}",
            hint="declare the sampling weight (weight.base.column: <column>), or give every stage a finite population in design.fpc",
        ) from exc
    except DataError as exc:
        raise type(exc)(f"design.fpc: the base weights come from the fpc, but {exc.message.removeprefix('design: ')}", hint=exc.hint) from exc
    return lin.weights.copy()


def base_weights(
    frame: pl.DataFrame, targets: pl.DataFrame | None, config: WeightConfig, *, design: DesignConfig | None = None,
    targets_name: str = "the targets file",
) -> np.ndarray:
    """``w_base``: the starting weight (:func:`base_weight_source`) times the configured factors."""
    import numpy as np
    import polars as pl

    from pipeline.config import parse_expr

    by = list(config.base.population_by)
    w = np.ones(frame.height)
    source, column = base_weight_source(config, design)
    if source == "column":
        w = delivered_weight(frame, column, "weight.base.column" if config.base.column is not None else "design.weights")
    elif source == "fpc":
        w = fpc_weights(frame, design)
    if by:
        if targets is None or "population" not in targets.columns:
            raise ConfigError(
                "weight.base.population_by needs a targets file with a 'population' column",
                hint="add 'targets:' to the wave, or remove weight.base.population_by",
            )
        check_group_columns(frame, targets, by, targets_name, "weight.base.population_by")
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
        check_populations(joined.select([*by, "population"]).unique(maintain_order=True), by, targets_name, "weight.base.population_by")
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


def _kind(dtype: Any) -> str:
    return "numbers" if dtype.is_numeric() else "text" if str(dtype) == "String" else f"values of type {dtype}"


def check_group_columns(frame: pl.DataFrame, targets: pl.DataFrame, by: Sequence[str], targets_name: str, key: str) -> None:
    """The group columns are in the targets file and coded as in the data (numbers or text in both)."""
    missing = [c for c in by if c not in targets.columns]
    if missing:
        raise TargetsError(
            f"{targets_name}: {key} column(s) {', '.join(missing)} are not in the targets file; found {', '.join(targets.columns)}",
            hint="name the group columns as in the data, or rename them with weight.targets_columns",
        )
    for c in by:
        t, d = targets.schema[c], frame.schema[c]
        if t != d and not (t.is_numeric() and d.is_numeric()):
            sample = frame.get_column(c).drop_nulls().head(1).to_list()
            raise TargetsError(
                f"{targets_name}: {key} column {c} holds {_kind(t)} in the targets file but {_kind(d)} in the data"
                + (f" (first value {sample[0]})" if sample else ""),
                hint=f"code {c} the same way in the delivery and in the targets file",
            )


def check_populations(pops: pl.DataFrame, by: Sequence[str], targets_name: str, key: str) -> None:
    """A group with respondents needs a positive population: name the targets file and the group."""
    import polars as pl

    p = pl.col("population").cast(pl.Float64)
    bad = pops.filter(p.is_null() | ~p.is_finite() | (p <= 0))
    if bad.height:
        row = bad.row(0, named=True)
        group = ", ".join(f"{c} = {row[c]}" for c in by) if by else "the whole population"
        raise TargetsError(
            f"{targets_name} ({key}): the population of group {group} is {row['population']}, but the group has respondents; "
            f"expected a positive number of people ({bad.height} group(s) like this)",
            hint=f"correct the 'population' column of {targets_name} for {group}, or leave the group's respondents out of the wave",
        )


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


# ------------------------------------------------------------------------------------ QA


def targets_provenance(targets: pl.DataFrame, variables: Sequence[str], *, file: str) -> dict[str, Any]:
    """The targets' ``source`` and ``year`` per variable (null where the file has no such column)."""
    import polars as pl

    cols = [c for c in ("source", "year") if c in targets.columns]
    rows = targets.filter(pl.col("variable").is_in(list(variables)))
    sources = []
    for v in variables:
        sub = rows.filter(pl.col("variable") == v)
        entry: dict[str, Any] = {"variable": v}
        for c in ("source", "year"):
            values = sorted({str(x) for x in sub.get_column(c).drop_nulls().to_list()}) if c in cols else []
            entry[c] = "; ".join(values) if values else None
        sources.append(entry)
    return {"file": file, "sources": sources}


def achieved_margins(frame: pl.DataFrame, targets: pl.DataFrame, variables: list[str], by: list[str], weights: dict[str, str]) -> pl.DataFrame:
    """Target share against unweighted and weighted shares, per group, variable and category."""
    import numpy as np
    import polars as pl

    def sums(keys: list[str]) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
        # weighted sums by np.bincount, in row order: the same bytes every run (a polars
        # group_by sum adds in an order that can vary between runs with the threads)
        cells = frame.select(keys).unique().sort(keys, nulls_last=True).with_row_index("_cell")
        code = frame.select(keys).join(cells, on=keys, how="left", nulls_equal=True, maintain_order="left").get_column("_cell").to_numpy()
        out = {"n": np.bincount(code, minlength=cells.height)}
        for name, w in weights.items():
            out[name] = np.bincount(code, weights=frame.get_column(w).to_numpy().astype(np.float64), minlength=cells.height)
        return cells.drop("_cell"), out

    parts = []
    for v in variables:
        cells, cell_sums = sums([*by, v])
        if by:
            groups, group_sums = sums(by)
            at = cells.select(by).join(groups.with_row_index("_g"), on=by, how="left", nulls_equal=True, maintain_order="left").get_column("_g").to_numpy()
        else:
            group_sums = {k: np.array([x.sum()]) for k, x in cell_sums.items()}
            at = np.zeros(cells.height, dtype=np.int64)
        g = cells.rename({v: "category"}).with_columns(
            pl.lit(v).alias("variable"),
            pl.Series("n", cell_sums["n"], dtype=pl.Int64),
            pl.Series("unweighted_share", cell_sums["n"] / group_sums["n"][at]),
            *[pl.Series(f"{k}_share", cell_sums[k] / group_sums[k][at]) for k in weights],
        )
        parts.append(g.select([*by, "variable", pl.col("category").cast(pl.Int64), "n", "unweighted_share", *[f"{k}_share" for k in weights]]))
    got = pl.concat(parts)
    t = targets.filter(pl.col("variable").is_in(variables)).select(
        [*by, "variable", pl.col("category").cast(pl.Int64), "share", *(["label"] if "label" in targets.columns else [])]
    )
    out = t.join(got, on=[*by, "variable", "category"], how="full", coalesce=True).rename({"share": "target_share"})
    # a target category no respondent has (share 0, dropped by the weighting): n 0 and shares 0
    absent = pl.col("n").is_null() & pl.col("target_share").is_not_null()
    out = out.with_columns(
        [pl.when(absent).then(0).otherwise(pl.col("n")).alias("n")]
        + [pl.when(absent).then(0.0).otherwise(pl.col(c)).alias(c) for c in ("unweighted_share", *[f"{k}_share" for k in weights])]
    )
    last = list(weights)[-1]
    return out.with_columns((pl.col(f"{last}_share") - pl.col("target_share")).alias("error")).sort([*by, "variable", "category"])


# ------------------------------------------------------------------------------- reports


def with_weight_labels(codebook: Any, *, uncalibrated: bool, base: dict[str, Any] | None = None) -> Any:
    from pipeline.io import VariableInfo

    labels = {
        "w_base": "base weight (design x household adults x dual-frame factors)" if base is None or base["source"] == "population_by"
        else f"base weight: {base_text(base).replace('`', '')}",
        "w_final": "final weight, scaled to the sample size",
        "w_pop": "final weight, scaled to the population",
    }
    if uncalibrated:
        labels[UNCALIBRATED] = "weight the last calibration started from (base x nonresponse, trimmed)"
    for name, label in labels.items():
        codebook = codebook.with_variable(VariableInfo(name=name, label=label))
    return codebook


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, spec)


def base_text(base: dict[str, Any]) -> str:
    text = {
        "column": f"the delivered weight `{base['column']}`",
        "population_by": "N_h / n_h within weight.base.population_by",
        "fpc": "derived from design.fpc (1 / product of the stages' sampling fractions n/N, as R svydesign)",
        "equal": "equal (no weight.base.column, population_by or design.fpc)",
    }[base["source"]]
    return text + (f", times {', '.join(base['factors'])}" if base.get("factors") else "")


def qa_markdown(qa: dict[str, Any], margins: pl.DataFrame, wave: str) -> str:
    import polars as pl

    lines = [
        f"# Weighting QA, wave {wave}",
        "",
        f"- respondents: {qa['n']:,}; population: {qa['population']:,.0f}",
        *([f"- base weight: {base_text(qa['base'])}"] if "base" in qa else []),
        f"- Kish design effect: {qa['kish_deff']:.3f}; effective n: {qa['effective_n']:,.0f}; margin of error (95%, p = 0.5): ±{100 * qa['moe_95']:.1f} points",
        f"- calibration: {qa.get('method') or 'none'}; iterations: {qa['iterations']}; converged: {qa['converged']}; largest margin error: {qa['max_margin_error']:.2e}",
        f"- imputed for calibration: {', '.join(f'{k} {v}' for k, v in qa['imputed'].items()) or 'none'}",
    ]
    if "trim" in qa:
        t = qa["trim"]
        lines.append(
            f"- trimming: {t['cycles']} of at most {t['max_cycles']} cycle(s); weights outside the caps after the last "
            f"recalibration: {t['outside_caps']}{'' if t['caps_hold'] else ' (accepted: weight.trim.accept_outside_caps)'}"
        )
    if "replicates" in qa:
        r = qa["replicates"]
        lines.append(f"- replicate weights: {r['n_replicates']} {r['type']} ({r['source']}); weighting redone in each: {', '.join(r['steps']) or 'none'}")
    if "targets" in qa:
        lines += ["", "## Targets", "", f"File: `{qa['targets']['file']}`", "", "| variable | source | year |", "|---|---|---|"]
        for s in qa["targets"]["sources"]:
            lines.append(f"| {s['variable']} | {s['source'] or 'not given'} | {s['year'] or 'not given'} |")
    if "nonresponse" in qa:
        nr = qa["nonresponse"]
        lines += [
            "",
            "## Nonresponse adjustment",
            "",
            f"Respondents ({nr['respondent']}): {nr['respondents']:,}; nonrespondents: {nr['nonrespondents']:,}.",
        ]
        if nr.get("method", "classes") == "classes":
            lines += ["", "| class | respondents | nonrespondents | factor |", "|---|---:|---:|---:|"]
            lines += [f"| {c['class']} | {c['respondents']} | {c['nonrespondents']} | {c['factor']:.4f} |" for c in nr["classes"]]
        else:
            lines += _propensity_markdown(nr)
        if nr["collapses"]:
            lines += ["", "Collapsed classes, in order:", ""]
            lines += [f"- {c['class']} into {c['into']}: {c['reason']}" for c in nr["collapses"]]
    lines += [
        "",
        "## Steps",
        "",
        "| step | cycle | min | max | max/min | CV | Kish deff | effective n | outside caps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in qa["steps"]:
        lines.append(
            f"| {s['step']} | {s.get('cycle', '')} | {s['min']:.3g} | {s['max']:.3g} | {s['ratio']:.1f} | {s['cv']:.3f} | "
            f"{s['kish_deff']:.3f} | {s['effective_n']:.0f} | {_fmt(s.get('outside_caps'), 'd')} |"
        )
    if margins.height:
        lines += ["", "## Margins: targets against unweighted, base-weighted and final shares (%)", ""]
        shares = ("target_share", "unweighted_share", "base_share", "final_share")
        head = [c for c in margins.columns if c not in (*shares, "error")]
        lines.append("| " + " | ".join([*head, "target", "unweighted", "base", "final"]) + " |")
        lines.append("|" + "---|" * len(head) + "---:|" * 4)
        for row in margins.iter_rows(named=True):
            cells = ["" if row[c] is None else str(row[c]) for c in head]
            cells += [_fmt(None if row[c] is None else 100 * row[c], ".1f") for c in shares]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _propensity_markdown(nr: dict[str, Any]) -> list[str]:
    """The propensity model's part of the nonresponse section: the model, then the classes or the
    inverse-propensity factors' distribution."""
    m = nr["model"]
    method = {"propensity_classes": "propensity classes", "inverse_propensity": "inverse propensity"}[nr["method"]]
    cats = set(m["categorical"])
    terms = ", ".join(f"{t} (categorical)" if t in cats else f"{t} (numeric)" for t in m["terms"])
    lines = [
        "",
        f"Method: {method}. Response propensity: logistic regression of the respondent indicator on {terms}, "
        f"weighted by w_base (as R glm(family = quasibinomial, weights = w_base)); n = {m['n']:,}, "
        f"{m['iterations']} iteration(s), converged: {m['converged']}; fitted propensity {m['p_min']:.4f} to {m['p_max']:.4f}.",
        "",
        "| term | coefficient |",
        "|---|---:|",
        *[f"| {c['term']} | {c['estimate']:.6f} |" for c in m["coefficients"]],
    ]
    if nr["method"] == "propensity_classes":
        cuts = ", ".join(f"{c['propensity']:.4f} ({100 * c['probability']:g}%)" for c in nr["cuts"]) or "none"
        lines += [
            "",
            f"Propensity classes: {len(nr['classes'])} of {nr['n_classes']} (cut points at the w_base-weighted quantiles of the "
            f"propensity over all {m['n']:,} units: {cuts}); factor = sum(w_base, class) / sum(w_base, respondents in class).",
            "",
            "| class | propensity | units | respondents | nonrespondents | weighted response rate | factor |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {c['class']} | {c['p_min']:.4f} to {c['p_max']:.4f} | {c['units']} | {c['respondents']} | {c['nonrespondents']} | "
            f"{100 * c['response_rate']:.1f}% | {c['factor']:.4f} |"
            for c in nr["classes"]
        ]
    else:
        f = nr["factors"]
        cap = "none" if f["cap"] is None else f"{f['cap']:g}"
        lines += [
            "",
            f"Inverse-propensity factors: 1 / p capped at max_factor = {cap} ({f['capped']} respondent(s) capped), then all "
            f"multiplied by {f['scale']:.6f} so that the respondents carry the sample's w_base total.",
            "",
            "| min | 25% | median | 75% | max | capped |",
            "|---:|---:|---:|---:|---:|---:|",
            f"| {f['min']:.4f} | {f['q1']:.4f} | {f['median']:.4f} | {f['q3']:.4f} | {f['max']:.4f} | {f['capped']} |",
        ]
    return lines

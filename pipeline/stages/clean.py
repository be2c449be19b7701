"""Clean: quarantine unusable rows, give missing values their reasons, recode and derive.

Order of work (each step sees the result of the one before):

1. flag partial interviews (``drop_partials``) and exact duplicates (``drop_duplicates``:
   identical in every column, the first copy is kept);
2. recodes (value maps, optionally only where a condition holds: a vendor batch coded
   differently);
3. missing codes: every code declared user-missing in the file, plus ``missing.also``, gets a
   reason (``dont_know``, ``refused``, or ``user_missing``) recorded in the codebook. The codes
   stay in the data so that tables can show "Don't know" and an estimate can put them in or
   out of its denominator;
4. out-of-range values (``valid``) become system-missing, counted per variable;
5. rows without a valid value in a ``required`` variable are flagged;
6. derived variables (SQL expressions, parsed never eval-ed) with their labels.

Flagged rows go to the quarantine file with their original values and every reason that
applies; the stage checks raw = kept + quarantined and fails if not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, DataError
from pipeline.io import Codebook, VariableInfo
from pipeline.stages import StageContext, StageOutput

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import CleanConfig

REASON_COLUMN = "quarantine_reason"


@dataclass(frozen=True)
class CleanResult:
    """The cleaned data, the quarantined rows, the codebook and the counts."""

    data: pl.DataFrame
    quarantine: pl.DataFrame
    codebook: Codebook
    report: dict[str, Any]


def clean(frame: pl.DataFrame, codebook: Codebook, config: CleanConfig) -> CleanResult:
    """Clean one wave's ingested data.

    Parameters
    ----------
    frame : polars.DataFrame
        The ingested data, with the ``raw_row`` column ingest adds.
    codebook : Codebook
    config : CleanConfig

    Returns
    -------
    CleanResult
    """
    import polars as pl

    from pipeline.config import parse_expr

    _check_names(frame, config)
    original = frame
    flags: dict[str, pl.Expr] = {}

    if config.drop_partials is not None:
        rule = config.drop_partials
        flags["partial"] = ~pl.col(rule.variable).is_in(list(rule.complete)).fill_null(False)
    if config.drop_duplicates is not None:
        content = [c for c in frame.columns if c != "raw_row"]
        flags["duplicate"] = ~pl.struct(content).is_first_distinct()

    # recodes
    for rc in config.recodes:
        mapped = pl.col(rc.variable).replace_strict(
            {k: v for k, v in rc.map.items()}, default=pl.col(rc.variable), return_dtype=frame.schema[rc.variable]
        )
        cond = parse_expr(rc.when) if rc.when else pl.lit(True)
        frame = frame.with_columns(pl.when(cond.fill_null(False)).then(mapped).otherwise(pl.col(rc.variable)).alias(rc.variable))

    # missing codes and their reasons
    codebook = _missing_reasons(codebook, config, frame.columns)

    # out-of-range values -> system missing
    out_of_range: dict[str, int] = {}
    fixes = []
    for name in config.valid.labelled:
        info = codebook.get(name)
        allowed = set(info.value_labels) | set(info.missing_values)
        if not info.value_labels:
            raise ConfigError(
                f"clean.valid.labelled: {name} has no value labels in the codebook, so no code is valid",
                hint="move it to clean.valid.ranges with [low, high]",
            )
        bad = pl.col(name).is_not_null() & ~pl.col(name).is_in(sorted(allowed, key=str))
        out_of_range[name] = int(frame.select(bad.sum()).item())
        fixes.append(pl.when(bad).then(None).otherwise(pl.col(name)).alias(name))
    for name, (lo, hi) in config.valid.ranges.items():
        info = codebook.get(name)
        declared = sorted(info.missing_values, key=str)
        bad = pl.col(name).is_not_null() & ~pl.col(name).is_between(lo, hi) & ~pl.col(name).is_in(declared)
        out_of_range[name] = int(frame.select(bad.sum()).item())
        fixes.append(pl.when(bad).then(None).otherwise(pl.col(name)).alias(name))
    if fixes:
        frame = frame.with_columns(fixes)

    for name in config.required:
        info = codebook.get(name)
        flags[f"missing_{name}"] = pl.col(name).is_null() | pl.col(name).is_in(sorted(info.missing_values, key=str))

    # derived variables
    for d in config.derive:
        try:
            frame = frame.with_columns(parse_expr(d.expr).alias(d.name))
        except Exception as exc:
            raise ConfigError(f"clean.derive ({d.name}): cannot evaluate {d.expr!r}: {exc}") from exc
        codebook = codebook.with_variable(VariableInfo(name=d.name, label=d.label, value_labels=dict(d.value_labels)))

    # quarantine
    flag_frame = frame.select([e.alias(k) for k, e in flags.items()]) if flags else pl.DataFrame()
    if flags:
        reasons = flag_frame.select(
            pl.concat_str([pl.when(pl.col(k)).then(pl.lit(k)) for k in flags], separator=";", ignore_nulls=True).alias(REASON_COLUMN)
        ).get_column(REASON_COLUMN)
        drop = flag_frame.select(pl.any_horizontal(list(flags))).to_series()
    else:
        reasons = pl.Series(REASON_COLUMN, [None] * frame.height, dtype=pl.String)
        drop = pl.Series([False] * frame.height)
    quarantine = original.filter(drop).with_columns(reasons.filter(drop).alias(REASON_COLUMN))
    kept = frame.filter(~drop)

    raw_rows, kept_rows, q_rows = frame.height, kept.height, quarantine.height
    if raw_rows != kept_rows + q_rows:
        raise DataError(f"clean: rows do not reconcile: raw {raw_rows} != kept {kept_rows} + quarantined {q_rows}")
    report = {
        "raw_rows": raw_rows,
        "kept_rows": kept_rows,
        "quarantined_rows": q_rows,
        "rules": {k: int(flag_frame.get_column(k).sum()) for k in flags},
        "out_of_range": out_of_range,
        "missing_codes": _missing_counts(kept, codebook),
    }
    return CleanResult(data=kept, quarantine=quarantine, codebook=codebook, report=report)


def _check_names(frame: pl.DataFrame, config: CleanConfig) -> None:
    """Every variable a rule names must exist: one config error listing them all."""
    problems = []
    cols = set(frame.columns)
    if config.drop_partials and config.drop_partials.variable not in cols:
        problems.append(f"clean.drop_partials.variable: {config.drop_partials.variable} is not in the data")
    if config.drop_duplicates and config.drop_duplicates.id not in cols:
        problems.append(f"clean.drop_duplicates.id: {config.drop_duplicates.id} is not in the data")
    for i, rc in enumerate(config.recodes):
        if rc.variable not in cols:
            problems.append(f"clean.recodes[{i}].variable: {rc.variable} is not in the data")
    for i, extra in enumerate(config.missing.also):
        problems += [f"clean.missing.also[{i}].variables: {v} is not in the data" for v in extra.variables if v not in cols]
    problems += [f"clean.valid.labelled: {v} is not in the data" for v in config.valid.labelled if v not in cols]
    problems += [f"clean.valid.ranges: {v} is not in the data" for v in config.valid.ranges if v not in cols]
    problems += [f"clean.required: {v} is not in the data" for v in config.required if v not in cols]
    from pipeline.config import parse_expr

    derived: set[str] = set()
    for i, d in enumerate(config.derive):
        unknown = [c for c in parse_expr(d.expr).meta.root_names() if c not in cols and c not in derived]
        if unknown:
            problems.append(f"clean.derive[{i}] ({d.name}): unknown variable(s) {', '.join(sorted(set(unknown)))}")
        derived.add(d.name)
    if problems:
        raise ConfigError(f"clean: {len(problems)} rule(s) name variables that are not in the data:", problems=problems)


def _missing_reasons(codebook: Codebook, config: CleanConfig, columns: list[str]) -> Codebook:
    """Record the reason of every missing code in the codebook (and add ``missing.also``)."""
    extra: dict[str, set[Any]] = {}
    for item in config.missing.also:
        for v in item.variables:
            extra.setdefault(v, set()).update(item.codes)
    dk, ref = set(config.missing.dont_know), set(config.missing.refused)
    defaults = {**{c: "Don't know" for c in dk}, **{c: "Refused" for c in ref}}
    for name in columns:
        info = codebook.get(name)
        codes = list(info.missing_values) + sorted(extra.get(name, set()) - set(info.missing_values))
        if not codes:
            continue
        reasons = {c: "dont_know" if c in dk else "refused" if c in ref else "user_missing" for c in codes}
        labels: Mapping[Any, str] = info.value_labels
        added = {c: defaults[c] for c in extra.get(name, set()) if c not in labels and c in defaults}
        codebook = codebook.with_variable(
            replace(info, missing_values=tuple(codes), missing_reasons=reasons, value_labels={**labels, **added})
        )
    return codebook


def _missing_counts(frame: pl.DataFrame, codebook: Codebook) -> dict[str, dict[str, int]]:
    import polars as pl

    out: dict[str, dict[str, int]] = {}
    for name, info in codebook.variables.items():
        if not info.missing_reasons or name not in frame.columns:
            continue
        counts: dict[str, int] = {}
        for code, reason in info.missing_reasons.items():
            try:
                n = int(frame.select((pl.col(name) == code).sum()).item())
            except Exception:  # a string column with a numeric code
                continue
            counts[reason] = counts.get(reason, 0) + n
        counts["system_missing"] = int(frame.get_column(name).null_count())
        out[name] = counts
    return out


def report_markdown(report: Mapping[str, Any], wave: str) -> str:
    lines = [
        f"# Cleaning report, wave {wave}",
        "",
        f"- raw rows: {report['raw_rows']:,}",
        f"- kept rows: {report['kept_rows']:,}",
        f"- quarantined rows: {report['quarantined_rows']:,} (raw = kept + quarantined: checked)",
        "",
        "## Rules that quarantine rows",
        "",
        "| rule | rows |",
        "|---|---:|",
        *[f"| {k} | {v:,} |" for k, v in report["rules"].items()],
        "",
        "## Out-of-range values set missing",
        "",
        "| variable | values |",
        "|---|---:|",
        *[f"| {k} | {v:,} |" for k, v in report["out_of_range"].items()],
        "",
    ]
    return "\n".join(lines)


def run(ctx: StageContext) -> StageOutput:
    frame = ctx.read_frame("ingest/data.parquet")
    codebook = ctx.read_codebook("ingest/codebook.json")
    result = clean(frame, codebook, ctx.config.clean)
    return StageOutput(
        files={
            "clean/data.parquet": result.data,
            "clean/codebook.json": result.codebook.to_json(),
            "clean/quarantine.parquet": result.quarantine,
            "clean/report.json": result.report,
            "clean/report.md": report_markdown(result.report, ctx.wave.id),
        },
        diagnostics={k: result.report[k] for k in ("raw_rows", "kept_rows", "quarantined_rows", "rules")},
        rows=result.data.height,
    )

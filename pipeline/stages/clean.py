"""Clean: quarantine unusable rows, give every missing value its reason, flag doubtful ones.

Rules run in this order, each on the result of the one before; no row is dropped until the
end, so every rule sees every row and every count reconciles:

1. ``drop_partials`` (partial interviews), ``drop_duplicates`` (rows identical in every
   column), ``near_duplicates`` (the same key, e.g. a hashed phone number, under another id);
2. recodes: the wave's own (``waves[].recodes``), then the study's (``clean.recodes``);
3. missing codes: codes the file declares user-missing, plus ``clean.missing.also`` and
   ``waves[].missing_also``, get a reason (``dont_know``, ``refused``, ``user_missing``) in the
   codebook. The codes stay in the data so that tables can show them and an estimate can put
   them in or out of its base;
4. ``valid``: values that are not a labelled code (or outside a range) are set missing
   (reason ``out_of_range``);
5. ``checks``: consistency rules (``YRS_US <= AGE``), action set_missing (``inconsistent``),
   flag or quarantine;
6. ``skips``: answers where the question was not asked are set missing (``skip_violation``),
   blanks where it was not asked are legitimate skips (``skipped``), blanks where it was asked
   can be flagged (``skip_missing_<VAR>``);
7. ``required``: rows without a valid value in these variables are quarantined;
8. ``speeders``, ``straightlining``, ``field_period``, ``interviewers``: quarantine or flag;
9. derived variables (SQL expressions, parsed never eval-ed) with their labels;
10. the hashed identifier columns (``ingest.hash``) are dropped: no later artifact has them.

Every value set missing is recorded with its reason and original value
(``missing_reasons.parquet``); every other null is ``skipped`` or ``system_missing``. Removed
rows go to the quarantine file with their original values and every reason that applies;
flagged rows stay, with their flags in ``dq_flags``. The stage checks raw = kept +
quarantined and fails if not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, DataError
from pipeline.io import Codebook, VariableInfo
from pipeline.stages import Reads, StageContext, StageOutput

if TYPE_CHECKING:
    import datetime as dt

    import polars as pl

    from pipeline.config import CleanConfig, ExtraMissing, Recode

REASON_COLUMN = "quarantine_reason"
FLAGS_COLUMN = "dq_flags"


@dataclass(frozen=True)
class CleanResult:
    """The cleaned data, the quarantined rows, the codebook, the reasons and the counts."""

    data: pl.DataFrame
    quarantine: pl.DataFrame
    codebook: Codebook
    missing_reasons: pl.DataFrame
    interviewers: pl.DataFrame | None
    report: dict[str, Any]


@dataclass
class _Ledger:
    """What the rules decided, row by row (all masks align with the input rows)."""

    quarantine: dict[str, pl.Series] = field(default_factory=dict)
    flags: dict[str, pl.Series] = field(default_factory=dict)
    set_missing: list[pl.DataFrame] = field(default_factory=list)  # raw_row, variable, reason, value
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def row_rule(self, name: str, mask: pl.Series, action: str, *, kind: str) -> None:
        mask = mask.fill_null(False).alias(name)
        (self.quarantine if action == "quarantine" else self.flags)[name] = mask
        self.counts[name] = {"kind": kind, "action": action, "rows": int(mask.sum())}

    def pending(self) -> pl.Series:
        """Rows not yet quarantined (the candidates of the later row rules)."""
        import polars as pl

        if not self.quarantine:
            return None  # type: ignore[return-value]
        return pl.DataFrame(list(self.quarantine.values())).select(~pl.any_horizontal(pl.all())).to_series()


def clean(
    frame: pl.DataFrame,
    codebook: Codebook,
    config: CleanConfig,
    *,
    wave_recodes: Sequence[Recode] = (),
    wave_missing: Sequence[ExtraMissing] = (),
    field_dates: tuple[dt.date, dt.date] | None = None,
    drop_columns: Sequence[str] = (),
) -> CleanResult:
    """Clean one wave's ingested data.

    Parameters
    ----------
    frame : polars.DataFrame
        The ingested data, with the ``raw_row`` column ingest adds.
    codebook : Codebook
    config : CleanConfig
    wave_recodes, wave_missing : sequence
        The wave's own recodes and undeclared missing codes.
    field_dates : (date, date), optional
        The wave's field period, for ``field_period``.
    drop_columns : sequence of str
        Columns to drop from every output (the hashed identifiers).

    Returns
    -------
    CleanResult
    """
    import polars as pl

    from pipeline.config import parse_expr

    recodes = [*wave_recodes, *config.recodes]
    _check_names(frame, codebook, config, recodes, wave_missing, field_dates)
    original = frame
    ledger = _Ledger()

    # 1. rows that are not interviews to keep
    if config.drop_partials is not None:
        rule = config.drop_partials
        ledger.row_rule("partial", ~pl.Series(frame.get_column(rule.variable).is_in(list(rule.complete))), "quarantine", kind="partial interview")
    if config.drop_duplicates is not None:
        content = [c for c in frame.columns if c != "raw_row"]
        dup = frame.select(~pl.struct(content).is_first_distinct()).to_series()
        ledger.row_rule("duplicate", dup, "quarantine", kind="exact duplicate")
    if config.near_duplicates is not None:
        ledger.row_rule("near_duplicate", _near_duplicates(frame, config, ledger.pending()), config.near_duplicates.action, kind="near-duplicate")

    # 2. recodes
    recoded: dict[str, int] = {}
    for i, rc in enumerate(recodes):
        cond = parse_expr(rc.when).fill_null(False) if rc.when else pl.lit(True)
        exprs, changed = [], 0
        for var in rc.variables:
            mapped = pl.col(var).replace_strict(dict(rc.map), default=pl.col(var), return_dtype=frame.schema[var])
            new = pl.when(cond).then(mapped).otherwise(pl.col(var))
            changed += int(frame.select((new.ne_missing(pl.col(var))).sum()).item())
            exprs.append(new.alias(var))
        frame = frame.with_columns(exprs)
        recoded[f"{'+'.join(rc.variables)}" + (f" where {rc.when}" if rc.when else "")] = changed

    # 3. missing codes and their reasons
    codebook = _missing_reasons(codebook, config, [*config.missing.also, *wave_missing], frame.columns)

    # 4. out of range -> missing
    out_of_range: dict[str, int] = {}
    for name in config.valid.labelled:
        info = codebook.get(name)
        allowed = sorted(set(info.value_labels) | set(info.missing_values), key=str)
        frame = _set_missing(frame, ledger, name, pl.col(name).is_not_null() & ~pl.col(name).is_in(allowed), "out_of_range", out_of_range)
    for name, (lo, hi) in config.valid.ranges.items():
        declared = sorted(codebook.get(name).missing_values, key=str)
        bad = pl.col(name).is_not_null() & ~pl.col(name).is_between(lo, hi) & ~pl.col(name).is_in(declared)
        frame = _set_missing(frame, ledger, name, bad, "out_of_range", out_of_range)

    # 5. consistency checks
    for chk in config.checks:
        failing = ~parse_expr(chk.expr).fill_null(True)
        if chk.action == "set_missing":
            counts: dict[str, int] = {}
            mask = frame.select(failing).to_series()
            for var in chk.variables:
                frame = _set_missing(frame, ledger, var, failing & pl.col(var).is_not_null(), "inconsistent", counts)
            ledger.counts[f"check_{chk.name}"] = {"kind": "consistency check", "action": "set_missing", "rows": int(mask.sum()), "values": counts}
        else:
            ledger.row_rule(f"check_{chk.name}", frame.select(failing).to_series(), chk.action, kind="consistency check")

    # 6. skip logic
    skipped_mask: dict[str, pl.Expr] = {}
    for rule in config.skips:
        asked = parse_expr(rule.asked_if).fill_null(False)
        violation = ~asked & pl.any_horizontal([pl.col(v).is_not_null() for v in rule.variables])
        n_violation = int(frame.select(violation.sum()).item())
        if rule.action == "set_missing":
            counts = {}
            for var in rule.variables:
                frame = _set_missing(frame, ledger, var, ~asked & pl.col(var).is_not_null(), "skip_violation", counts)
            ledger.counts[f"skip_{rule.name}"] = {"kind": "skip violation", "action": "set_missing", "rows": n_violation, "values": counts}
        else:
            ledger.row_rule(f"skip_{rule.name}", frame.select(violation).to_series(), rule.action, kind="skip violation")
        for var in rule.variables:
            skipped_mask[var] = skipped_mask.get(var, pl.lit(False)) | ~asked
            if rule.require_answer:
                ledger.row_rule(f"skip_missing_{var}", frame.select(asked & pl.col(var).is_null()).to_series(), "flag", kind="asked but blank")

    # 7. required variables
    for name in config.required:
        info = codebook.get(name)
        missing = frame.select(pl.col(name).is_null() | pl.col(name).is_in(sorted(info.missing_values, key=str))).to_series()
        ledger.row_rule(f"missing_{name}", missing, "quarantine", kind="required variable missing")

    # 8. doubtful interviews
    interviewers = None
    if config.speeders is not None:
        ledger.row_rule("speeder", _speeders(frame, config, ledger.pending()), config.speeders.action, kind="speeder")
    if config.straightlining is not None:
        ledger.row_rule("straightlining", _straightlining(frame, codebook, config), config.straightlining.action, kind="straight-lining")
    if config.field_period is not None and field_dates is not None:
        col = pl.col(config.field_period.variable)
        outside = frame.select(col.is_not_null() & ~col.is_between(pl.lit(field_dates[0]), pl.lit(field_dates[1]))).to_series()
        ledger.row_rule("outside_field_period", outside, config.field_period.action, kind="interview date outside the field period")
    if config.interviewers is not None:
        interviewers, flagged = _interviewer_report(frame, codebook, config, ledger.pending())
        ledger.row_rule("interviewer", frame.get_column(config.interviewers.variable).is_in(flagged), config.interviewers.action, kind="implausible interviewer")
        ledger.counts["interviewer"]["interviewers"] = flagged

    # 9. derived variables
    for d in config.derive:
        try:
            frame = frame.with_columns(parse_expr(d.expr).alias(d.name))
        except Exception as exc:  # polars' own errors, wrapped with the rule's name
            raise ConfigError(f"clean.derive ({d.name}): cannot evaluate {d.expr!r}: {expression_failure(d.expr, exc, frame)}") from exc
        source = codebook.get(d.labels_from) if d.labels_from else VariableInfo(name=d.name)
        codebook = codebook.with_variable(
            VariableInfo(
                name=d.name,
                label=d.label or source.label,
                value_labels={**source.value_labels, **d.value_labels},
                missing_values=source.missing_values,
                missing_ranges=source.missing_ranges,
                missing_reasons=source.missing_reasons,
            )
        )

    # split: quarantine / kept, with reasons and flags
    n = frame.height
    q_frame = pl.DataFrame(list(ledger.quarantine.values())) if ledger.quarantine else pl.DataFrame({"_": [False] * n})
    drop = q_frame.select(pl.any_horizontal(pl.all())).to_series()
    reasons = q_frame.select(
        pl.concat_str([pl.when(pl.col(k)).then(pl.lit(k)) for k in q_frame.columns], separator=";", ignore_nulls=True)
    ).to_series()
    f_frame = pl.DataFrame(list(ledger.flags.values())) if ledger.flags else None
    flags = (
        f_frame.select(pl.concat_str([pl.when(pl.col(k)).then(pl.lit(k)) for k in f_frame.columns], separator=";", ignore_nulls=True)).to_series().fill_null("")
        if f_frame is not None
        else pl.Series([""] * n)
    )
    for k, mask in ledger.flags.items():  # a flag counts on the rows that are kept
        ledger.counts[k]["rows"] = int((mask & ~drop).sum())
    drop_cols = [c for c in drop_columns if c in frame.columns]
    quarantine = original.filter(drop).with_columns(reasons.filter(drop).alias(REASON_COLUMN)).drop(drop_cols)
    kept = frame.with_columns(flags.alias(FLAGS_COLUMN)).filter(~drop).drop(drop_cols)
    codebook = codebook.drop(drop_cols).with_variable(VariableInfo(FLAGS_COLUMN, label="data-quality flags of the cleaning rules (;-separated)"))

    reconcile(original, kept, quarantine)
    raw_rows, kept_rows, q_rows = n, kept.height, quarantine.height
    reasons_table = _missing_table(kept, codebook, ledger, skipped_mask, frame)
    report = {
        "raw_rows": raw_rows,
        "kept_rows": kept_rows,
        "quarantined_rows": q_rows,
        "rules": {k: v["rows"] for k, v in ledger.counts.items()},
        "rule_details": ledger.counts,
        "recoded_values": recoded,
        "out_of_range": out_of_range,
        "missing_reasons": _reason_counts(reasons_table),
        "missing_codes": _missing_counts(kept, codebook),
        "by": _counts_by(frame, codebook, config.report_by, drop, ledger),
    }
    return CleanResult(data=kept, quarantine=quarantine, codebook=codebook, missing_reasons=reasons_table, interviewers=interviewers, report=report)


def reconcile(raw: pl.DataFrame, kept: pl.DataFrame, quarantine: pl.DataFrame) -> None:
    """Every raw row is either kept or quarantined, exactly once; else a DataError naming rows."""
    import polars as pl

    rows = pl.concat([kept.select("raw_row"), quarantine.select("raw_row")]).get_column("raw_row")
    lost = raw.select("raw_row").filter(~pl.col("raw_row").is_in(rows.implode())).get_column("raw_row")
    twice = rows.filter(rows.is_duplicated()).unique().sort()
    if raw.height != kept.height + quarantine.height or lost.len() or twice.len():
        raise DataError(
            f"clean: rows do not reconcile: raw {raw.height} != kept {kept.height} + quarantined {quarantine.height}"
            + (f"; lost raw rows {lost.head(10).to_list()}" if lost.len() else "")
            + (f"; rows both kept and quarantined or repeated {twice.head(10).to_list()}" if twice.len() else ""),
            hint="this is a bug in a cleaning rule: please report it with the config",
        )


# ---------------------------------------------------------------------------- rule helpers


def _set_missing(frame: pl.DataFrame, ledger: _Ledger, var: str, bad: pl.Expr, reason: str, counts: dict[str, int]) -> pl.DataFrame:
    """Set ``var`` missing where ``bad`` holds; record each value with its reason."""
    import polars as pl

    hit = frame.filter(bad.fill_null(False))
    counts[var] = counts.get(var, 0) + hit.height
    if hit.height:
        ledger.set_missing.append(
            hit.select(
                "raw_row",
                pl.lit(var).alias("variable"),
                pl.lit(reason).alias("reason"),
                pl.col(var).cast(pl.String).alias("value"),
            )
        )
    return frame.with_columns(pl.when(bad.fill_null(False)).then(None).otherwise(pl.col(var)).alias(var))


def _near_duplicates(frame: pl.DataFrame, config: CleanConfig, pending: pl.Series | None) -> pl.Series:
    """Rows whose key matches an earlier kept row's key under a different id."""
    import polars as pl

    rule = config.near_duplicates
    assert rule is not None
    idcol = config.drop_duplicates.id if config.drop_duplicates else None
    if idcol is None:
        raise ConfigError("clean.near_duplicates needs clean.drop_duplicates.id (the respondent id) to tell a re-interview from a copy")
    cand = pl.Series([True] * frame.height) if pending is None else pending
    columns = list(dict.fromkeys(["raw_row", rule.key, idcol, *rule.order_by]))  # order_by may name the id
    work = frame.select(columns).with_columns(cand.alias("_cand"), pl.int_range(pl.len()).alias("_i"))
    work = work.filter(pl.col("_cand") & pl.col(rule.key).is_not_null()).sort([*rule.order_by, "raw_row"])
    first_id = pl.col(idcol).first().over(rule.key)
    hits = work.filter(pl.col(idcol) != first_id).get_column("_i").sort()  # scatter wants sorted indices (polars < 1.30)
    return pl.Series([False] * frame.height).scatter(hits, True) if hits.len() else pl.Series([False] * frame.height)


def _speeders(frame: pl.DataFrame, config: CleanConfig, pending: pl.Series | None) -> pl.Series:
    import polars as pl

    rule = config.speeders
    assert rule is not None
    cand = pl.Series([True] * frame.height) if pending is None else pending
    dur = pl.col(rule.duration)
    median = dur.filter(pl.col("_cand")).median()
    median = median.over(list(rule.by)) if rule.by else median
    return frame.with_columns(cand.alias("_cand")).select(pl.col("_cand") & (dur < rule.fraction * median)).to_series()


def _straightlining(frame: pl.DataFrame, codebook: Codebook, config: CleanConfig) -> pl.Series:
    """Every item of the battery answered, with one and the same substantive code."""
    import polars as pl

    rule = config.straightlining
    assert rule is not None
    valid = [pl.col(v).is_not_null() & ~pl.col(v).is_in(sorted(codebook.get(v).missing_values, key=str)) for v in rule.variables]
    first = pl.col(rule.variables[0])
    same = [pl.col(v) == first for v in rule.variables[1:]]
    return frame.select(pl.all_horizontal(valid) & pl.all_horizontal(same)).to_series()


def _interviewer_report(frame: pl.DataFrame, codebook: Codebook, config: CleanConfig, pending: pl.Series | None) -> tuple[pl.DataFrame, list[Any]]:
    """Per interviewer: interviews, don't-know/refused rate, modal battery pattern share."""
    import polars as pl

    rule = config.interviewers
    assert rule is not None
    cand = pl.Series([True] * frame.height) if pending is None else pending
    work = frame.filter(cand)
    missing = [pl.col(v).is_in(sorted(codebook.get(v).missing_values, key=str)).fill_null(False).cast(pl.Int64) for v in rule.battery]
    work = work.select(
        pl.col(rule.variable).alias("interviewer"),
        pl.sum_horizontal(missing).alias("_dk"),
        pl.concat_str([pl.col(v).cast(pl.String).fill_null(".") for v in rule.battery]).alias("_pattern"),
    )
    per = work.group_by("interviewer").agg(
        pl.len().alias("interviews"),
        (pl.col("_dk").sum() / (pl.len() * len(rule.battery))).alias("dk_refused_rate"),
    )
    # the modal pattern: the most frequent, ties to the smallest pattern (mode() picks any of a tie)
    modal = (
        work.group_by("interviewer", "_pattern")
        .len()
        .sort(["interviewer", "len", "_pattern"], descending=[False, True, False])
        .group_by("interviewer", maintain_order=True)
        .first()
    )
    per = per.join(modal, on="interviewer", how="left", nulls_equal=True, maintain_order="left").select(
        "interviewer", "interviews", "dk_refused_rate",
        pl.col("_pattern").alias("modal_pattern"), (pl.col("len") / pl.col("interviews")).alias("modal_pattern_share"),
    )
    eligible = per.filter(pl.col("interviews") >= rule.min_interviews)
    others_rate = float(eligible.get_column("dk_refused_rate").median() or 0.0)
    flagged_expr = (pl.col("interviews") >= rule.min_interviews) & (
        (pl.col("modal_pattern_share") >= rule.max_pattern_share)
        | ((pl.col("dk_refused_rate") <= rule.min_dk_rate) & pl.lit(others_rate > rule.min_dk_rate))
    )
    per = per.with_columns(flagged_expr.alias("flagged")).sort("interviewer")
    flagged = per.filter(pl.col("flagged")).get_column("interviewer").to_list()
    return per, flagged


def _check_names(
    frame: pl.DataFrame,
    codebook: Codebook,
    config: CleanConfig,
    recodes: Sequence[Recode],
    wave_missing: Sequence[ExtraMissing],
    field_dates: Any,
) -> None:
    """Every variable and code a rule names must exist: one config error listing them all."""
    from pipeline import expressions
    from pipeline._text import did_you_mean

    problems: list[str] = []
    cols = set(frame.columns)

    def need(key: str, names: Sequence[str]) -> None:
        problems.extend(f"{key}: {v} is not in the data{did_you_mean(v, cols)}" for v in names if v not in cols)

    def exprs(key: str, text: str, known: set[str]) -> None:
        unknown = sorted({c for c in expressions.columns(text, key=key) if c not in known})
        if unknown:
            problems.append(f"{key}: unknown variable(s) {', '.join(unknown)} in {text!r}" + "".join(did_you_mean(c, known) for c in unknown))

    if config.drop_partials:
        need("clean.drop_partials.variable", [config.drop_partials.variable])
        labels = codebook.get(config.drop_partials.variable).value_labels
        bad = [c for c in config.drop_partials.complete if labels and c not in labels]
        if bad:
            problems.append(f"clean.drop_partials.complete: code(s) {bad} of {config.drop_partials.variable} are not labelled codes (labels: {dict(labels)})")
    if config.drop_duplicates:
        need("clean.drop_duplicates.id", [config.drop_duplicates.id])
    if config.near_duplicates:
        need("clean.near_duplicates.key", [config.near_duplicates.key])
        need("clean.near_duplicates.order_by", config.near_duplicates.order_by)
    for i, rc in enumerate(recodes):
        need(f"recodes[{i}].variables", rc.variables)
        if rc.when:
            exprs(f"recodes[{i}].when", rc.when, cols)
    for i, extra in enumerate([*config.missing.also, *wave_missing]):
        need(f"missing.also[{i}].variables", extra.variables)
    need("clean.valid.labelled", config.valid.labelled)
    problems.extend(
        f"clean.valid.labelled: {v} has no value labels in the codebook, so no code is valid; give it a range in clean.valid.ranges"
        for v in config.valid.labelled
        if v in cols and not codebook.get(v).value_labels
    )
    need("clean.valid.ranges", list(config.valid.ranges))
    for i, chk in enumerate(config.checks):
        exprs(f"clean.checks[{i}] ({chk.name})", chk.expr, cols)
        need(f"clean.checks[{i}].variables", chk.variables)
    for i, sk in enumerate(config.skips):
        exprs(f"clean.skips[{i}] ({sk.name})", sk.asked_if, cols)
        need(f"clean.skips[{i}].variables", sk.variables)
    need("clean.required", config.required)
    if config.speeders:
        need("clean.speeders.duration", [config.speeders.duration])
        need("clean.speeders.by", config.speeders.by)
    if config.straightlining:
        need("clean.straightlining.variables", config.straightlining.variables)
    if config.field_period:
        need("clean.field_period.variable", [config.field_period.variable])
        if field_dates is None:
            problems.append("clean.field_period: the wave has no field_dates (waves[].field_dates: [first, last])")
    if config.interviewers:
        need("clean.interviewers.variable", [config.interviewers.variable])
        need("clean.interviewers.battery", config.interviewers.battery)
    need("clean.report_by", config.report_by)
    derived = set(cols)
    for i, d in enumerate(config.derive):
        exprs(f"clean.derive[{i}] ({d.name})", d.expr, derived)
        if d.labels_from and d.labels_from not in derived:
            problems.append(f"clean.derive[{i}] ({d.name}).labels_from: {d.labels_from} is not in the data")
        derived.add(d.name)
    if problems:
        raise ConfigError(f"clean: {len(problems)} rule(s) name variables or codes that are not in the data:", problems=problems)


def _missing_reasons(codebook: Codebook, config: CleanConfig, extras: Sequence[ExtraMissing], columns: list[str]) -> Codebook:
    """Record the reason of every missing code in the codebook (and add the undeclared ones)."""
    extra: dict[str, set[Any]] = {}
    for item in extras:
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


def _missing_table(kept: pl.DataFrame, codebook: Codebook, ledger: _Ledger, skipped: Mapping[str, pl.Expr], frame: pl.DataFrame) -> pl.DataFrame:
    """Every missing value of the kept rows with its reason (long: raw_row, variable, reason, value)."""
    import polars as pl

    schema = {"raw_row": pl.Int64, "variable": pl.String, "reason": pl.String, "value": pl.String}
    parts = [p.cast(schema) for p in ledger.set_missing]
    kept_rows = kept.get_column("raw_row")
    set_missing = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    set_missing = set_missing.filter(pl.col("raw_row").is_in(kept_rows.implode()))
    already = set_missing.select("raw_row", "variable")
    for name, info in codebook.variables.items():
        if name not in kept.columns or name in ("raw_row", FLAGS_COLUMN):
            continue
        for code, reason in info.missing_reasons.items():
            try:
                hit = kept.filter(pl.col(name) == code)
            except Exception:  # a string column with a numeric code
                continue
            if hit.height:
                parts.append(hit.select("raw_row", pl.lit(name).alias("variable"), pl.lit(reason).alias("reason"), pl.lit(str(code)).alias("value")))
    for name in kept.columns:
        if name in ("raw_row", FLAGS_COLUMN) or kept.get_column(name).null_count() == 0:
            continue
        if name in skipped:
            legit = frame.select("raw_row", skipped[name].alias("_skip")).filter(pl.col("_skip")).get_column("raw_row")
        else:
            legit = pl.Series([], dtype=pl.Int64)
        nulls = kept.filter(pl.col(name).is_null()).select("raw_row")
        nulls = nulls.join(already.filter(pl.col("variable") == name), on="raw_row", how="anti")
        parts.append(
            nulls.select(
                "raw_row",
                pl.lit(name).alias("variable"),
                pl.when(pl.col("raw_row").is_in(legit.implode())).then(pl.lit("skipped")).otherwise(pl.lit("system_missing")).alias("reason"),
                pl.lit(None, dtype=pl.String).alias("value"),
            )
        )
    if not parts:
        return pl.DataFrame(schema=schema)
    table = pl.concat([p.cast(schema) for p in parts])
    return table.filter(pl.col("raw_row").is_in(kept_rows.implode())).sort("raw_row", "variable")


def _reason_counts(table: pl.DataFrame) -> dict[str, int]:
    return dict(table.group_by("reason").len().sort("reason").iter_rows())


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


def _counts_by(frame: pl.DataFrame, codebook: Codebook, by: Sequence[str], drop: pl.Series, ledger: _Ledger) -> list[dict[str, Any]]:
    """Raw, kept, quarantined and each rule's rows per group of ``by``."""
    import polars as pl

    if not by:
        return []
    rules = {**ledger.quarantine, **ledger.flags}
    work = frame.select(list(by)).with_columns(drop.alias("_q"), *[m.alias(k) for k, m in rules.items()])
    agg = work.group_by(list(by)).agg(
        pl.len().alias("raw_rows"),
        (~pl.col("_q")).sum().alias("kept_rows"),
        pl.col("_q").sum().alias("quarantined_rows"),
        *[pl.col(k).sum().alias(k) for k in rules],
    ).sort(list(by), nulls_last=True)
    out = []
    for row in agg.iter_rows(named=True):
        group = "*".join(codebook.label_of(b, row[b]) if row[b] is not None else "(missing)" for b in by)
        out.append({"group": group, **{k: v for k, v in row.items() if k not in by}})
    return out


def report_markdown(report: Mapping[str, Any], wave: str) -> str:
    details = report["rule_details"]
    lines = [
        f"# Cleaning report, wave {wave}",
        "",
        f"- raw rows: {report['raw_rows']:,}",
        f"- kept rows: {report['kept_rows']:,}",
        f"- quarantined rows: {report['quarantined_rows']:,} (raw = kept + quarantined: checked)",
        "",
        "## Rules",
        "",
        "| rule | what | action | rows |",
        "|---|---|---|---:|",
        *[f"| {k} | {v['kind']} | {v['action']} | {v['rows']:,} |" for k, v in details.items()],
        "",
    ]
    flagged = details.get("interviewer", {}).get("interviewers")
    if flagged is not None:
        lines += [f"Interviewers flagged as implausible: {', '.join(map(str, flagged)) or 'none'} (see interviewers.csv).", ""]
    if report["recoded_values"]:
        lines += ["## Recodes", "", "| recode | values changed |", "|---|---:|", *[f"| {k} | {v:,} |" for k, v in report["recoded_values"].items()], ""]
    oor = {k: v for k, v in report["out_of_range"].items() if v}
    lines += ["## Values set missing as out of range", ""]
    if oor:
        lines += ["| variable | values |", "|---|---:|", *[f"| {k} | {v:,} |" for k, v in oor.items()], ""]
    else:  # an empty table reads as a rendering fault
        lines += ["None: every value is within the valid codes and ranges.", ""]
    lines += ["## Missing values of the kept rows, by reason", "", "| reason | values |", "|---|---:|",
              *[f"| {k} | {v:,} |" for k, v in report["missing_reasons"].items()], ""]
    if report["by"]:
        keys = [k for k in report["by"][0] if k != "group"]
        lines += ["## By group", "", "| group | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        lines += ["| " + row["group"] + " | " + " | ".join(f"{row[k]:,}" for k in keys) + " |" for row in report["by"]]
        lines.append("")
    return "\n".join(lines)


READS = Reads(
    config=("clean", "ingest.hash", "waves[].id", "waves[].not_asked", "waves[].recodes", "waves[].missing_also", "waves[].field_dates"),
    upstream=("ingest/data.parquet", "ingest/codebook.json"),
)
"""The cleaning rules (as they apply to the wave), the wave's own recodes and missing codes, and ingest's data."""


def run(ctx: StageContext) -> StageOutput:
    frame = ctx.read_frame("ingest/data.parquet")
    codebook = ctx.read_codebook("ingest/codebook.json")
    wave = ctx.wave
    result = clean(
        frame,
        codebook,
        ctx.config.clean_for(wave.id),
        wave_recodes=wave.recodes,
        wave_missing=wave.missing_also,
        field_dates=wave.field_dates,
        drop_columns=list(ctx.config.ingest.hash.values()),
    )
    files: dict[str, Any] = {
        "clean/data.parquet": result.data,
        "clean/codebook.json": result.codebook.to_json(),
        "clean/quarantine.parquet": result.quarantine,
        "clean/quarantine.csv": result.quarantine,
        "clean/missing_reasons.parquet": result.missing_reasons,
        "clean/report.json": result.report,
        "clean/report.md": report_markdown(result.report, wave.id),
    }
    if result.interviewers is not None:
        files["clean/interviewers.csv"] = result.interviewers
    return StageOutput(
        files=files,
        diagnostics={k: result.report[k] for k in ("raw_rows", "kept_rows", "quarantined_rows", "rules")},
        rows=result.data.height,
    )


def expression_failure(text: str, exc: Exception, frame: pl.DataFrame) -> str:
    """What went wrong evaluating a config expression, in one line: polars' first line (not its
    plan of the expression), and the text columns the expression reads, the usual cause."""
    from pipeline import expressions

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text_columns = [c for c in expressions.columns(text) if c in frame.columns and not frame.schema[c].is_numeric()]
    if text_columns:
        first += f"; {', '.join(text_columns)} {'holds' if len(text_columns) == 1 else 'hold'} text, not numeric codes"
    return first


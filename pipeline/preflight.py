"""Pre-flight: every variable and code the config names, checked against each wave's data before
any stage runs (``survey-pipeline validate``, and ``run`` before its first stage).

The data are those the stages will see, made in memory by the stages' own functions and never
written: the raw file read and harmonised by :func:`pipeline.stages.ingest.ingest` (``rename``,
``labels``, ``not_asked``, ``ingest.pii``/``hash``), then cleaned by
:func:`pipeline.stages.clean.clean` (the wave's and the study's recodes, missing codes, rules and
``clean.derive``). Against them, for every wave (``waves[].not_asked`` respected):

- the clean rules (:func:`pipeline.stages.clean._check_names`), recodes and their codes;
- weighting: ``weight.base`` (``population_by``, factor expressions), ``weight.nonresponse``,
  ``weight.rake``/``poststratify``/``calibrate`` (``variables``, ``by``), ``weight.trim.by``,
  ``weight.targets_columns``, and the targets file: its group columns, a row for every
  calibration variable, and its categories against the data's codes in every group (a target
  category without respondents is an empty cell; a data code without a target cannot be
  weighted);
- the design: ``design.weights``, ``strata``, ``ids``, ``fpc``, replicate columns, and
  ``design.nest``: PSU ids that repeat across strata need ``design.nest: true`` (R's
  ``svydesign`` stops with "clusters not nested in strata");
- ``estimates[]`` (``proportion``, ``by``, ``levels``), ``tables.crosstabs[]`` (``rows``,
  ``columns``), ``tables.labels`` and the tables' domain lists, ``methods.moe_by``,
  ``export.weights``;
- across waves: ``harmonize.same_meaning`` and value-label drift (as the harmonize stage).

Every problem of every wave is reported at once, each with its key path and the wave(s), with a
"did you mean" for near misses: a :class:`~pipeline.errors.ConfigError` (exit 2) for names and
codes that do not fit the data, a :class:`~pipeline.errors.DataError` (exit 1) for files that
cannot be read, cleaning that fails on the data, and value-label drift between waves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline._text import did_you_mean
from pipeline.errors import ConfigError, DataError, PipelineError

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl

    from pipeline.config import StudyConfig, Wave
    from pipeline.io import Codebook

#: How many offending values a problem line shows.
_SHOW = 5


def code_text(value: Any) -> str:
    """A code as the YAML spells it: ``3``, not ``3.0`` nor ``np.int64(3)``."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _norm(value: Any) -> Any:
    """A code as a set key: whole floats and ints are one key."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _codes(values: Iterable[Any], limit: int = _SHOW) -> str:
    values = list(values)
    text = ", ".join(code_text(v) for v in values[:limit])
    return text + (f", ... ({len(values)} in all)" if len(values) > limit else "")


@dataclass
class _Report:
    """Problems found, each with the waves it was found in (the same text is listed once)."""

    config: dict[str, list[str]] = field(default_factory=dict)
    data: dict[str, list[str]] = field(default_factory=dict)

    def add(self, text: str, wave: str | None = None, *, data: bool = False) -> None:
        waves = (self.data if data else self.config).setdefault(text, [])
        if wave is not None and wave not in waves:
            waves.append(wave)

    def add_error(self, exc: PipelineError, wave: str | None, *, prefix: str = "") -> None:
        """A stage function's error: its problem lines (or its message and hint)."""
        is_data = not isinstance(exc, ConfigError)
        lines = list(getattr(exc, "problems", None) or []) or [exc.message + (f"; hint: {exc.hint}" if exc.hint else "")]
        for line in lines:
            self.add(prefix + line, wave, data=is_data)

    @staticmethod
    def render(problems: dict[str, list[str]]) -> list[str]:
        out = []
        for text, waves in problems.items():
            if not waves:
                out.append(text)
            else:
                out.append(f"{text} ({'wave' if len(waves) == 1 else 'waves'} {', '.join(waves)})")
        return out


@dataclass(frozen=True)
class _WaveData:
    """One wave as the stages will see it (``data`` is None when cleaning could not run)."""

    index: int
    wave: Wave
    raw: Path
    ingest_codebook: Codebook
    columns: frozenset[str]
    data: pl.DataFrame | None
    codebook: Codebook | None
    raw_rows: int
    raw_columns: int


def preflight(config: StudyConfig, *, waves: Sequence[str] | None = None) -> list[str]:
    """Check every name and code of the config against the data of each wave.

    Parameters
    ----------
    config : StudyConfig
    waves : sequence of str, optional
        Wave ids to check (default: every wave); ``run --wave`` checks the waves it runs.

    Returns
    -------
    list of str
        One note per wave (rows and columns read, rows kept by the cleaning rules).

    Raises
    ------
    ConfigError
        Listing every name or code of the config that does not fit the data (exit 2), with
        the data problems, if any, after them.
    DataError
        Listing every file that cannot be read (exit 1) when the config has no other problem.
    """
    selected = [w for w in config.waves if waves is None or w.id in set(waves)]
    report = _Report()
    found: list[_WaveData] = []
    recode_codes: dict[tuple[str, str, str], list[tuple[str, bool]]] = {}
    ingested = [got for wave in selected if (got := _ingest_wave(config, wave, report)) is not None]
    hashed = set(config.ingest.hash.values())
    by_wave = {g[0].id: frozenset((set(g[2].columns) | {d.name for d in config.clean_for(g[0].id).derive}) - hashed) for g in ingested}
    for wave, path, frame, codebook, diag in ingested:
        names = _Names(config, wave, by_wave)
        wd = _clean_wave(config, names, path, frame, codebook, diag, report, recode_codes)
        found.append(wd)
        _check_wave(config, names, wd, report)
    for (key, var, code), hits in recode_codes.items():
        if not any(hit for _, hit in hits):  # a study-wide recode needs the code in one wave only
            for wave_id, _ in hits:
                report.add(f"{key}: code {code} of {var} is neither in the data nor among its value labels, so the recode changes nothing", wave_id)
    _check_study(config, found, report, all_waves=len(found) == len(config.waves))

    notes = [
        f"wave {wd.wave.id}: {wd.raw_rows:,} rows, {wd.raw_columns} columns in {wd.raw.name}"
        + (f" ({wd.data.height:,} kept by the cleaning rules)" if wd.data is not None else "")
        for wd in found
    ]
    if report.config:
        lines = _Report.render(report.config) + [f"data: {p}" for p in _Report.render(report.data)]
        raise ConfigError(
            f"{config.path}: {len(report.config)} problem(s) with the names and codes the config gives, "
            "checked against each wave's data (its raw file after waves[].rename, the recodes and clean.derive):",
            problems=lines,
        )
    if report.data:
        lines = _Report.render(report.data)
        raise DataError(
            f"{config.path}: {len(lines)} problem(s) with the data files:\n" + "\n".join(f"  - {p}" for p in lines),
            hint=("check the paths under waves[] (relative to the config file)"
                  + (", or create the files with 'survey-pipeline simulate'" if config.study == "insecure_communities" else "")
                  if any("not found" in p for p in lines) else "each line names the config key and the file; correct the file or the config"),
        )
    return notes


# ------------------------------------------------------------------------------ one wave


@dataclass(frozen=True)
class _Names:
    """How a wave reports a name its data lacks: not asked, only in another wave, or a near miss."""

    config: StudyConfig
    wave: Wave
    by_wave: dict[str, frozenset[str]]  # the columns of every wave read, after clean.derive

    @property
    def index(self) -> int:
        return [w.id for w in self.config.waves].index(self.wave.id)

    def missing(self, name: str, pool: Iterable[str]) -> str:
        if name in self.wave.not_asked:
            return f"{name} is not in the data (waves[{self.index}].not_asked lists it)"
        others = [w for w, cols in self.by_wave.items() if w != self.wave.id and name in cols]
        if others:
            return (f"{name} is not in the data (wave {', '.join(others)} has it); if this wave did not ask it, "
                    f"list it in waves[{self.index}].not_asked")
        return f"{name} is not in the data{did_you_mean(name, pool)}"


#: clean._check_names' line for a missing name (rewritten with the wave's own hint)
_NOT_IN_DATA = re.compile(r"^(?P<key>[^:]+): (?P<name>\S+) is not in the data(; did you mean '[^']*'\?)?$")


def _ingest_wave(config: StudyConfig, wave: Wave, report: _Report) -> tuple[Wave, Path, pl.DataFrame, Codebook, dict] | None:
    """The wave's raw file read as the ingest stage reads it, and its columns checked against the
    numeric codes the config gives them (a throwaway hash key: nothing is kept)."""
    import secrets

    from pipeline.stages.ingest import ingest, numeric_needs

    i = [w.id for w in config.waves].index(wave.id)
    path = config.resolve(wave.raw)
    if not path.is_file():
        report.add(f"{path}: raw file not found (config key waves[{i}].raw)", data=True)
        return None
    try:
        frame, codebook, diag = ingest(
            path, config.ingest, key=secrets.token_bytes(32), wave_index=i, rename=wave.rename, labels=wave.labels,
            not_asked=wave.not_asked, numeric=numeric_needs(config, wave.id),
        )
    except PipelineError as exc:
        report.add_error(exc, wave.id, prefix="" if isinstance(exc, ConfigError) else f"waves[{i}].raw: ")
        return None
    return wave, path, frame, codebook, diag


def _clean_wave(
    config: StudyConfig, names: _Names, path: Path, frame: pl.DataFrame, codebook: Codebook, diag: dict,
    report: _Report, recode_codes: dict[tuple[str, str, str], list[tuple[str, bool]]],
) -> _WaveData:
    """Check the clean rules' names, then clean the wave in memory (nothing written)."""
    from pipeline.stages.clean import _check_names, clean

    wave, i = names.wave, names.index
    gone = set(wave.not_asked)
    cols = set(frame.columns)
    problems: list[str] = []

    def need(key: str, variables: Iterable[str], pool: set[str]) -> None:
        problems.extend(f"{key}: {names.missing(v, pool)}" for v in variables if v not in pool)

    # the recodes, with the keys they have in the YAML (clean._check_names sees them merged)
    recodes = [(f"waves[{i}].recodes[{j}]", rc, list(rc.variables)) for j, rc in enumerate(wave.recodes)]
    recodes += [(f"clean.recodes[{j}]", rc, [v for v in rc.variables if v not in gone]) for j, rc in enumerate(config.clean.recodes)]
    produced: dict[str, set[Any]] = {}
    for key, rc, variables in recodes:
        if not variables:
            continue
        need(f"{key}.variables", variables, cols)
        if rc.when:
            _need_expr(problems, f"{key}.when", rc.when, cols)
        for v in variables:
            if v not in cols:
                continue
            have = {_norm(c) for c in frame.get_column(v).drop_nulls().unique().to_list()}
            have |= {_norm(c) for c in codebook.get(v).value_labels} | produced.get(v, set())
            for code in rc.map:
                recode_codes.setdefault((f"{key}.map", v, code_text(code)), []).append((wave.id, _norm(code) in have))
            produced.setdefault(v, set()).update(_norm(c) for c in rc.map.values() if c is not None)
    for j, extra in enumerate(wave.missing_also):
        need(f"waves[{i}].missing_also[{j}].variables", extra.variables, cols)
    for j, extra in enumerate(config.clean.missing.also):
        need(f"clean.missing.also[{j}].variables", [v for v in extra.variables if v not in gone], cols)

    clean_cfg = config.clean_for(wave.id)
    rules = clean_cfg.model_copy(update={"recodes": (), "missing": clean_cfg.missing.model_copy(update={"also": ()})})
    try:
        _check_names(frame, codebook, rules, [], [], wave.field_dates)
    except ConfigError as exc:
        for line in exc.problems or [exc.message]:
            m = _NOT_IN_DATA.match(line)
            problems.append(f"{m['key']}: {names.missing(m['name'], cols)}" if m else line)
    for p in problems:
        report.add(p, wave.id)

    data = cleaned_codebook = None
    hashed = set(config.ingest.hash.values())
    columns = (cols | {d.name for d in clean_cfg.derive}) - hashed
    if not problems:
        try:
            result = clean(frame, codebook, clean_cfg, wave_recodes=wave.recodes, wave_missing=wave.missing_also,
                           field_dates=wave.field_dates, drop_columns=sorted(hashed))
        except PipelineError as exc:
            report.add_error(exc, wave.id, prefix="" if exc.message.startswith("clean") else "clean: ")
        except Exception as exc:  # polars on data the rules do not fit (a text column compared with codes, ...)
            report.add(f"clean: the cleaning rules cannot be applied to {path.name} ({type(exc).__name__}: {exc})", wave.id, data=True)
        else:
            data, cleaned_codebook = result.data, result.codebook
            columns = set(data.columns)
    return _WaveData(
        index=i, wave=wave, raw=path, ingest_codebook=codebook, columns=frozenset(columns),
        data=data, codebook=cleaned_codebook, raw_rows=int(diag["raw_rows"]), raw_columns=int(diag["columns"]),
    )


def _expr_names(text: str) -> list[str]:
    """The columns an expression reads (parsed as the stages parse it, never evaluated)."""
    from pipeline import expressions

    return list(dict.fromkeys(expressions.columns(text)))


def _need_expr(problems: list[str], key: str, text: str, pool: set[str] | frozenset[str]) -> None:
    unknown = [c for c in _expr_names(text) if c not in pool]
    for c in unknown:
        problems.append(f"{key}: {c} in {text!r} is not in the data{did_you_mean(c, pool)}")


def _check_wave(config: StudyConfig, names: _Names, wd: _WaveData, report: _Report) -> None:
    """Weighting, targets, design, estimates, tables and export against the cleaned data."""
    from pipeline.config import parse_expr
    from pipeline.config import STAGE_WEIGHTS
    from pipeline.stages._common import UNCALIBRATED

    # without the cleaned data (a clean rule names an unknown variable) only the names are checked
    df, cb, wave, i = wd.data, wd.codebook, wd.wave, wd.index
    gone = set(wave.not_asked)
    cols = set(wd.columns)
    w = config.weight
    calibration = w.calibration
    weighted = cols | set(STAGE_WEIGHTS) | ({UNCALIBRATED} if calibration is not None else set())
    problems: list[str] = []

    def need(key: str, variables: Iterable[str], pool: set[str] = cols, *, skip_not_asked: bool = False) -> list[str]:
        bad = [v for v in variables if v not in pool and not (skip_not_asked and v in gone)]
        problems.extend(f"{key}: {names.missing(v, pool)}" for v in bad)
        return bad

    # ---- weighting
    need("weight.base.population_by", w.base.population_by)
    for j, factor in enumerate(w.base.factors):
        _need_expr(problems, f"weight.base.factors[{j}].expr ({factor.name})", factor.expr, cols)
    respondents = df
    if w.nonresponse is not None:
        _need_expr(problems, "weight.nonresponse.respondent", w.nonresponse.respondent, cols)
        need("weight.nonresponse.classes", w.nonresponse.classes)
        need("weight.nonresponse.model", w.nonresponse.model)
        if df is not None and all(c in cols for c in _expr_names(w.nonresponse.respondent)):
            try:
                respondents = df.filter(parse_expr(w.nonresponse.respondent).fill_null(False))
            except Exception:  # polars cannot evaluate it: the weight stage reports it with its key
                respondents = df
    if calibration is not None:
        key, section = calibration
        vkey = f"weight.{key}.variable" if key == "poststratify" else f"weight.{key}.variables"
        need(vkey, section.variables)
        need(f"weight.{key}.by", section.by)
        if section.impute == "none" and respondents is not None:
            for v in section.variables:
                if v in cols and (n := respondents.get_column(v).null_count()):
                    problems.append(f"weight.{key}.impute: none, but {v} has {n:,} missing value(s) that {key} cannot weight; "
                                    f"set weight.{key}.impute: mode, or give them a code in clean.derive")
    if w.trim is not None:
        need("weight.trim.by", w.trim.by)
    for k, v in w.targets_columns.items():
        need(f"weight.targets_columns.{k}", [v])
    targets, tname = _read_targets(config, wd, report)
    if targets is not None:
        for p in _check_targets(config, wd, targets, tname, respondents):
            report.add(p, wave.id, data=True)  # the targets file does not fit the data (exit 1, as in the weight stage)
    elif wave.targets is None:
        if w.base.population_by:
            problems.append(f"weight.base.population_by needs the wave's targets file with a 'population' column (waves[{i}].targets)")
        if calibration is not None:
            problems.append(f"weight.{calibration[0]} needs the wave's targets file (waves[{i}].targets)")

    # ---- design
    d = config.design
    need("design.weights", [d.weights], weighted)
    bad_design = need("design.strata", d.strata) + need("design.ids", d.ids) + need("design.fpc", d.fpc)
    if d.strata and d.ids and not d.nest and not bad_design and df is not None:
        problems += _nest_problem(df, cb, d.ids[0], d.strata[0])
    if d.replicates is not None:
        need("design.replicates.columns", d.replicates.columns)
        if d.replicates.pattern is not None:
            if not any(re.search(d.replicates.pattern, c) for c in cols):
                problems.append(f"design.replicates.pattern: {d.replicates.pattern!r} matches no column of the data")

    # ---- estimates (those the wave makes: not_asked ones left out, as the estimate stage does)
    made = {e.id: e for e in config.estimates_for(wave.id)}
    for j, spec in enumerate(config.estimates):
        spec = made.get(spec.id)  # type: ignore[assignment]
        if spec is None:
            continue
        unknown = need(f"estimates[{j}].{spec.key}", list(spec.variables), weighted)
        for by in spec.by:
            need(f"estimates[{j}].by", by, weighted)
        if df is not None:
            from pipeline.stages.estimate import statistic_problems

            problems += statistic_problems(j, spec, df, cb)
        if spec.levels and not unknown and df is not None:
            problems += _level_problems(df, cb, f"estimates[{j}].levels ({spec.id})", spec.variable, spec.levels)
        d = spec.difference
        if d is not None and d.domain is not None and not unknown and df is not None:
            problems += _level_problems(df, cb, f"estimates[{j}].difference ({spec.id}): a and b", d.domain, [d.a, d.b])

    # ---- crosstabs (those the wave makes, as the estimate stage does)
    from pipeline.stages._estimate_crosstabs import crosstab_problems, crosstabs_for

    for j, xt in crosstabs_for(config.tables, wave):
        need(f"tables.crosstabs[{j}].rows", [xt.rows], weighted)
        need(f"tables.crosstabs[{j}].columns", [xt.columns], weighted)
        need(f"tables.crosstabs[{j}].by", list(xt.by), weighted)
        if df is not None:
            problems += crosstab_problems(j, xt, df, cb, missing=False)

    # ---- models (those the wave fits): the formula parses, its variables are in the data
    if config.models:
        from pipeline.stages._estimate_models import model_problems, models_for

        for j, m in models_for(config.models, wave):
            if df is not None:
                problems += model_problems(j, m, df, cb)

    # ---- tables, methods, export
    need("tables.labels", list(config.tables.labels), weighted, skip_not_asked=True)
    for kind in ("toplines", "trends"):
        for j, t in enumerate(getattr(config.tables, kind)):
            for by in t.by or ():
                need(f"tables.{kind}[{j}].by", by, weighted, skip_not_asked=True)
    for j, t in enumerate(config.tables.banners):
        for by in t.columns:
            need(f"tables.banners[{j}].columns", by, weighted, skip_not_asked=True)
    if config.methods.moe_by is not None:
        need("methods.moe_by", config.methods.moe_by, weighted, skip_not_asked=True)
    need("export.weights", config.export.weights, weighted)
    for p in problems:
        report.add(p, wave.id)


def _read_targets(config: StudyConfig, wd: _WaveData, report: _Report) -> tuple[pl.DataFrame | None, str]:
    """The wave's targets file as the weight stage reads it (columns renamed by targets_columns)."""
    import polars as pl

    wave, i = wd.wave, wd.index
    if wave.targets is None:
        return None, ""
    path = config.resolve(wave.targets)
    try:
        tname = str(path.relative_to(config.root))
    except ValueError:
        tname = str(path)
    if not path.is_file():
        report.add(f"{path}: targets file not found (config key waves[{i}].targets)", data=True)
        return None, tname
    try:
        targets = pl.read_csv(path, infer_schema_length=None)
    except Exception as exc:  # polars' parse errors, wrapped with the file
        report.add(f"waves[{i}].targets: cannot read {path}: {exc}", data=True)
        return None, tname
    need = ["variable", "category", "share"]
    if config.weight.base.population_by or config.weight.calibration is not None:
        need.append("population")
    absent = [c for c in need if c not in targets.columns]
    if absent:
        report.add(f"waves[{i}].targets: {path} needs the column(s) {', '.join(absent)}; found {', '.join(targets.columns)}", data=True)
        return None, tname
    for k, v in config.weight.targets_columns.items():
        if k not in targets.columns:
            report.add(f"weight.targets_columns.{k}: {tname} has no column {k}{did_you_mean(k, targets.columns)}", wave.id)
    return targets.rename({k: v for k, v in config.weight.targets_columns.items() if k in targets.columns}), tname


def _check_targets(config: StudyConfig, wd: _WaveData, targets: pl.DataFrame, tname: str, respondents: pl.DataFrame | None) -> list[str]:
    """The targets file against the data: group columns, variables, and categories in every group."""
    import polars as pl

    cb = wd.codebook
    cols = set(wd.columns)
    problems: list[str] = []
    w = config.weight

    def kind_mismatch(key: str, columns: Sequence[str]) -> list[str]:
        """A group column coded as text on one side and numbers on the other matches no group."""
        out = []
        for c in columns:
            if wd.data is None or c not in targets.columns or c not in wd.data.columns:
                continue
            t, d = targets.schema[c], wd.data.schema[c]
            if t.is_numeric() != d.is_numeric():
                kind = lambda dtype: "numbers" if dtype.is_numeric() else "text"  # noqa: E731
                out.append(f"{key} column {c} holds {kind(t)} in the targets file but {kind(d)} in the data ({tname}); "
                           f"code {c} the same way in the delivery and in the targets file")
        return out

    pop_by = [c for c in w.base.population_by if c in cols]
    if mismatch := kind_mismatch("weight.base.population_by", pop_by):
        return problems + mismatch
    if pop_by and len(pop_by) == len(w.base.population_by):
        if missing := [c for c in pop_by if c not in targets.columns]:
            problems.append(f"weight.base.population_by: {', '.join(missing)} is not a column of {tname} "
                            f"(columns: {', '.join(targets.columns)}); rename it with weight.targets_columns")
        elif wd.data is not None and cb is not None:
            have = {tuple(_norm(x) for x in r) for r in targets.select(pop_by).drop_nulls().unique().rows()}
            groups = [r for r in wd.data.select(pop_by).drop_nulls().unique().sort(pop_by).rows() if tuple(_norm(x) for x in r) not in have]
            if groups:
                problems.append(f"weight.base.population_by: {tname} has no population for {_groups(cb, pop_by, groups)}")

    if w.calibration is None:
        return problems
    key, section = w.calibration
    vkey = f"weight.{key}.variable" if key == "poststratify" else f"weight.{key}.variables"
    by = list(section.by)
    if any(c not in cols for c in [*by, *section.variables]):
        return problems  # reported by the caller
    if mismatch := kind_mismatch(f"weight.{key}.by", by):
        return problems + mismatch
    if missing := [c for c in by if c not in targets.columns]:
        return problems + [f"weight.{key}.by: {', '.join(missing)} is not a column of {tname} (columns: {', '.join(targets.columns)}); "
                           f"name the group columns as in the data, or rename them with weight.targets_columns"]
    named = [str(v) for v in targets.get_column("variable").drop_nulls().unique(maintain_order=True).to_list()]
    for v in section.variables:
        if v not in named:
            problems.append(f"{vkey}: {tname} has no rows for {v}{did_you_mean(v, named)}")
            continue
        rows = targets.filter(pl.col("variable").cast(pl.String) == v)
        if rows.get_column("category").null_count() == rows.height or respondents is None or cb is None:
            continue  # one total without category (a numeric calibration variable), or no cleaned data
        try:
            rows = rows.with_columns(pl.col("category").cast(pl.Int64), pl.col("share").cast(pl.Float64))
        except Exception:  # polars: a category that is not an integer code
            found = _codes(rows.get_column("category").unique(maintain_order=True).to_list())
            problems.append(f"{vkey}: the categories of {v} in {tname} must be integer codes as in the data; found {found}")
            continue
        target = {}
        for r in rows.select(*by, "category", "share").rows():
            target[(tuple(_norm(x) for x in r[:-2]), _norm(r[-2]))] = r[-1]
        present = respondents.select(*by, v).drop_nulls().group_by(*by, v).len().sort(*by, v)
        data = {(tuple(_norm(x) for x in r[:-2]), _norm(r[-2])): r[-1] for r in present.rows()}
        data_groups = {g for g, _ in data}
        empty = sorted((k for k, s in target.items() if s is not None and s > 0 and k not in data and k[0] in data_groups), key=str)
        untargeted = sorted((k for k in data if k not in target and any(g == k[0] for g, _ in target)), key=str)
        zero = sorted((k for k, s in target.items() if k in data and s is not None and s == 0), key=str)
        no_targets = sorted({g for g in data_groups if not any(t == g for t, _ in target)}, key=str)
        no_data = sorted({g for g, _ in target if g not in data_groups}, key=str)
        where = lambda g: _group(cb, by, g)  # noqa: E731
        if empty:
            cells = "; ".join(f"{_labelled(cb, v, c)} in {where(g)}" for g, c in empty[:_SHOW])
            problems.append(f"{vkey}: {tname} gives {v} target shares where the data has no respondent ({len(empty)} empty cell(s): "
                            f"{cells}); collapse the category with a neighbouring one in clean.derive and in {tname}, or drop it from {tname}")
        if untargeted:
            cells = "; ".join(f"{_labelled(cb, v, c)} in {where(g)} ({data[(g, c)]:,} respondent(s))" for g, c in untargeted[:_SHOW])
            problems.append(f"{vkey}: {v} has {len(untargeted)} code(s) in the data that {tname} gives no target ({cells}); "
                            f"recode them in clean.derive or add their shares to {tname}")
        if zero:
            cells = "; ".join(f"{code_text(c)} in {where(g)} ({data[(g, c)]:,} respondent(s))" for g, c in zero[:_SHOW])
            problems.append(f"{vkey}: {tname} gives {v} a target share of 0 where the data has respondents ({cells}); "
                            "weights must stay positive: merge the category in clean.derive and in the targets")
        if no_targets:
            problems.append(f"{vkey}: {tname} has no targets for {v} in {', '.join(where(g) for g in no_targets[:_SHOW])}")
        if no_data and by:
            problems.append(f"weight.{key}.by: {tname} has targets for {v} in {', '.join(where(g) for g in no_data[:_SHOW])}, "
                            "where the data has no respondent")
    return problems


def _group(cb: Codebook, by: Sequence[str], key: tuple[Any, ...]) -> str:
    if not by:
        return "the whole sample"
    return " * ".join(f"{b} {_labelled(cb, b, v)}" for b, v in zip(by, key))


def _labelled(cb: Codebook, variable: str, code: Any) -> str:
    """``2 (South)``: the code and its value label, or the code alone."""
    label = cb.label_of(variable, _norm(code))
    return code_text(code) + (f" ({label})" if label != code_text(code) else "")


def _groups(cb: Codebook, by: Sequence[str], keys: Sequence[tuple[Any, ...]]) -> str:
    return ", ".join(_group(cb, by, k) for k in keys[:_SHOW]) + (f", ... ({len(keys)} groups)" if len(keys) > _SHOW else "")


def _nest_problem(df: pl.DataFrame, cb: Codebook, psu: str, stratum: str) -> list[str]:
    """PSU ids found in more than one stratum need design.nest: true (R: "clusters not nested in strata")."""
    import polars as pl

    pairs = df.select(psu, stratum).drop_nulls().unique()
    spread = pairs.group_by(psu).agg(pl.col(stratum).sort().alias("_strata")).filter(pl.col("_strata").list.len() > 1).sort(psu)
    if spread.height == 0:
        return []
    first_id, strata = spread.row(0)
    shown = " and ".join(_labelled(cb, stratum, s) for s in strata[:_SHOW])
    return [
        f"design.nest: PSU ids repeat across strata: {psu} {code_text(first_id)} is in {stratum} {shown}"
        + (f" ({spread.height:,} ids of {psu} are in more than one {stratum})" if spread.height > 1 else "")
        + "; R's svydesign stops with \"clusters not nested in strata\"; if the PSU ids are numbered within each stratum, "
        "set design.nest: true"
    ]


def _level_problems(df: pl.DataFrame, cb: Codebook, key: str, variable: str, levels: Sequence[Any]) -> list[str]:
    """A level must be a labelled code (when the variable has labels, as the estimate stage requires) or a code in the data."""
    labels = cb.get(variable).value_labels
    if labels:
        known = {_norm(c) for c in labels}
        bad = [c for c in levels if _norm(c) not in known]
        if bad:
            return [f"{key}: code(s) {_codes(bad)} are not labelled codes of {variable} "
                    f"(codes: {', '.join(f'{code_text(k)} {v}' for k, v in labels.items())})"]
        return []
    values = df.get_column(variable).drop_nulls().unique().sort().to_list()
    known = {_norm(c) for c in values}
    bad = [c for c in levels if _norm(c) not in known]
    if bad:
        return [f"{key}: code(s) {_codes(bad)} of {variable} are not in the data, and {variable} has no value labels "
                f"(codes in the data: {_codes(values, 12)})"]
    return []


# ------------------------------------------------------------------------------ across waves


def _check_study(config: StudyConfig, found: Sequence[_WaveData], report: _Report, *, all_waves: bool) -> None:
    """harmonize.same_meaning names, and value-label drift between the waves (the harmonize stage)."""
    from pipeline.stages.harmonize import harmonize

    if not found:
        return
    names = set().union(*(wd.ingest_codebook.variables for wd in found))
    for j, s in enumerate(config.harmonize.same_meaning):
        if s.variable not in names:
            if all_waves:
                report.add(f"harmonize.same_meaning[{j}].variable: {s.variable} is in no wave's data{did_you_mean(s.variable, names)}")
            continue
        labelled = {_norm(c) for wd in found for c in wd.ingest_codebook.get(s.variable).value_labels}
        bad = [c for c in s.codes if _norm(c) not in labelled]
        if bad and all_waves:
            report.add(f"harmonize.same_meaning[{j}].codes: code(s) {_codes(bad)} of {s.variable} have no value label in any wave")
    if len(found) > 1:
        try:
            harmonize({wd.wave.id: wd.ingest_codebook for wd in found}, config.harmonize)
        except DataError as exc:  # one line per drifting code, each with the hint
            header, *items = exc.message.split("\n")
            for item in items or [header]:
                report.add(f"harmonize: {item.strip().removeprefix('- ')}" + (f"; hint: {exc.hint}" if exc.hint else ""), data=True)

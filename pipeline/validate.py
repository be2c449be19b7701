"""``survey-pipeline validate``: check a config against its raw files without writing anything."""

from __future__ import annotations

from pipeline.config import StudyConfig
from pipeline.errors import ConfigError, DataError


def validate(config: StudyConfig) -> list[str]:
    """Read every wave's raw file and targets and check the config's names against them.

    Returns notes (one line per wave) when all is well; raises DataError (unreadable or
    missing files, exit 1) or ConfigError (names that do not exist, exit 2) listing every
    problem found.
    """
    import polars as pl

    from pipeline.stages.clean import _check_names
    from pipeline.stages.ingest import ingest, numeric_needs

    data_problems: list[str] = []
    config_problems: list[str] = []
    notes: list[str] = []
    for i, wave in enumerate(config.waves):
        path = config.resolve(wave.raw)
        try:
            frame, codebook, diag = ingest(path, config.ingest, wave_index=i, rename=wave.rename, labels=wave.labels, not_asked=wave.not_asked,
                                        numeric=numeric_needs(config, wave.id))
        except DataError as exc:
            data_problems.append(f"waves[{i}].raw: {exc.message}")
            continue
        except ConfigError as exc:
            config_problems.append(f"waves[{i}]: {exc.message}")
            continue
        try:
            _check_names(frame, codebook, config.clean_for(wave.id), [*wave.recodes, *config.clean_for(wave.id).recodes], wave.missing_also, wave.field_dates)
        except ConfigError as exc:
            config_problems += [f"waves[{i}] ({wave.id}): {p}" for p in exc.problems] or [exc.message]
        config_problems += [f"waves[{i}] ({wave.id}): {p}" for p in _weight_column_problems(frame.columns, config)]
        if wave.targets is not None:
            tpath = config.resolve(wave.targets)
            if not tpath.is_file():
                data_problems.append(f"waves[{i}].targets: targets file not found: {tpath}")
            else:
                try:
                    t = pl.read_csv(tpath, infer_schema_length=None)
                    need = {"variable", "category", "share"}
                    if not need <= set(t.columns):
                        data_problems.append(f"waves[{i}].targets: {tpath} needs columns {sorted(need)}; found {t.columns}")
                except Exception as exc:  # polars parse errors
                    data_problems.append(f"waves[{i}].targets: cannot read {tpath}: {exc}")
        notes.append(f"wave {wave.id}: {diag['raw_rows']:,} rows, {diag['columns']} columns in {path.name}")
    if config_problems:
        raise ConfigError(f"{config.path}: {len(config_problems)} problem(s):", problems=config_problems)
    if data_problems:
        raise DataError(f"{config.path}: {len(data_problems)} problem(s) with the raw files:\n" + "\n".join(f"  - {p}" for p in data_problems))
    return notes


def _weight_column_problems(columns: list[str], config: StudyConfig) -> list[str]:
    """The delivered weight and the design variables must be columns of the data (as read, or
    made by ``clean.derive``); the weights the weight stage makes are not."""
    from pipeline.config import STAGE_WEIGHTS

    known = set(columns) | {d.name for d in config.clean.derive}
    named = [("weight.base.column", config.weight.base.column)]
    if config.design.weights not in STAGE_WEIGHTS:
        named.append(("design.weights", config.design.weights))
    named += [(f"design.{key}", c) for key in ("strata", "ids", "fpc") for c in getattr(config.design, key)]
    import difflib

    problems = []
    for key, name in named:
        if name is not None and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"{key}: {name} is not a column of the raw file (nor made by clean.derive){hint}")
    return problems

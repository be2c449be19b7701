"""Ingest: read the wave's raw delivery into polars with its codebook; drop declared PII.

The raw file is only read. Declared identifier columns (``ingest.pii``) are removed here, so
no later stage and no output ever sees them. A cleaning rule that needs an identifier (near-duplicate
detection by phone number) gets a salted hash of it (``ingest.hash``), made here before the
drop; the clean stage drops the hash in turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.io import Codebook, read_survey
from pipeline.stages import StageContext, StageOutput

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl

    from pipeline.config import IngestConfig


def ingest(
    path: Path,
    config: IngestConfig,
    *,
    salt: str = "",
    wave_index: int = 0,
    rename: Mapping[str, str] | None = None,
    labels: Mapping[str, Mapping[Any, str]] | None = None,
    not_asked: Sequence[str] = (),
) -> tuple[pl.DataFrame, Codebook, dict]:
    """Read ``path``, harmonise names and labels, keep salted hashes, drop the PII columns.

    Parameters
    ----------
    rename : mapping, optional
        The wave's variable names -> the study's names (``waves[].rename``), applied first.
    labels : mapping, optional
        Value labels replacing the file's for some variables (``waves[].labels``).
    not_asked : sequence of str
        Study variables the wave did not ask (``waves[].not_asked``): an error if the file has one.

    Returns
    -------
    (frame, codebook, diagnostics)
    """
    import polars as pl

    frame, codebook = read_survey(path)
    if rename:
        absent = [k for k in rename if k not in frame.columns]
        clash = [v for k, v in rename.items() if v in frame.columns and v not in rename]
        if absent or clash:
            raise ConfigError(
                f"waves[{wave_index}].rename: cannot rename in {path}",
                problems=[f"waves[{wave_index}].rename.{k}: {k} is not in the file" for k in absent]
                + [f"waves[{wave_index}].rename: {v} is already a column of the file" for v in clash],
            )
        frame = frame.rename(dict(rename))
        codebook = codebook.rename(rename)
    asked = sorted(set(not_asked or ()) & set(frame.columns))
    if asked:
        raise ConfigError(
            f"waves[{wave_index}].not_asked: {', '.join(asked)} {'is' if len(asked) == 1 else 'are'} in {path}",
            hint="remove them from not_asked (the wave has them), or rename them with waves[].rename",
        )
    for name, mapping in (labels or {}).items():
        if name not in frame.columns:
            raise ConfigError(f"waves[{wave_index}].labels.{name}: {name} is not in {path} (after renaming)")
        codebook = codebook.with_variable(replace(codebook.get(name), value_labels=dict(mapping)))
    missing = [c for c in (*config.pii, *config.hash, *([config.id] if config.id else [])) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"ingest: column(s) {', '.join(missing)} named in the config are not in {path}",
            hint=f"columns in the file: {', '.join(frame.columns[:40])}{' ...' if frame.width > 40 else ''}",
        )
    if config.hash:
        frame = frame.with_columns(
            [salted_hash(pl.col(src), salt).alias(dst) for src, dst in config.hash.items()]
        )
    frame = frame.drop(list(config.pii))
    codebook = codebook.drop(config.pii)
    frame = frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("raw_row"))
    diagnostics = {
        "raw_rows": frame.height,
        "columns": frame.width - 1,
        "pii_dropped": list(config.pii),
        "pii_hashed": dict(config.hash),
        "file_label": codebook.file_label,
    }
    return frame, codebook, diagnostics


def salted_hash(expr: pl.Expr, salt: str) -> pl.Expr:
    """sha256(salt + value), 32 hex characters; null stays null."""
    import hashlib

    import polars as pl

    return expr.cast(pl.String).map_elements(lambda v: hashlib.sha256((salt + v).encode()).hexdigest()[:32], return_dtype=pl.String)


def study_salt(outputs: Path) -> str:
    """The salt of identifier hashes: ``SURVEY_PIPELINE_SALT``, else ``outputs/<study>/.salt``.

    The file is created once with a random salt and never published; deleting it only changes
    the hashes, not what the cleaning rules find.
    """
    import os
    import secrets

    env = os.environ.get("SURVEY_PIPELINE_SALT")
    if env:
        return env
    path = outputs / ".salt"
    if not path.is_file():
        outputs.mkdir(parents=True, exist_ok=True)
        from pipeline.io import write_text

        write_text(path, secrets.token_hex(16))
    return path.read_text(encoding="utf-8").strip()


def run(ctx: StageContext) -> StageOutput:
    wave = ctx.wave
    path = ctx.config.resolve(wave.raw)
    index = [w.id for w in ctx.config.waves].index(wave.id)
    salt = study_salt(ctx.config.outputs) if ctx.config.ingest.hash else ""
    frame, codebook, diagnostics = ingest(
        path, ctx.config.ingest, salt=salt, wave_index=index, rename=wave.rename, labels=wave.labels, not_asked=wave.not_asked
    )
    # the raw file relative to the project: the same codebook bytes wherever the project lives
    root = ctx.config.root.resolve()
    source = path.resolve()
    codebook = replace(codebook, source=source.relative_to(root).as_posix() if source.is_relative_to(root) else str(path))
    return StageOutput(
        files={"ingest/data.parquet": frame, "ingest/codebook.json": codebook.to_json()},
        diagnostics=diagnostics,
        rows=frame.height,
    )

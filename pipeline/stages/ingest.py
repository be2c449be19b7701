"""Ingest: read the wave's raw delivery into polars with its codebook; drop declared PII.

The raw file is only read. Declared identifier columns (``ingest.pii``) are removed here, so
no later stage and no output ever sees them. (A later cleaning rule that needs a salted hash
of an identifier will derive it here, before the drop.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.io import Codebook, read_survey
from pipeline.stages import StageContext, StageOutput

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl

    from pipeline.config import IngestConfig


def ingest(path: Path, config: IngestConfig, *, wave_index: int = 0) -> tuple[pl.DataFrame, Codebook, dict]:
    """Read ``path`` and drop the PII columns.

    Returns
    -------
    (frame, codebook, diagnostics)
    """
    import polars as pl

    frame, codebook = read_survey(path)
    missing = [c for c in (*config.pii, *( [config.id] if config.id else [])) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"ingest: column(s) {', '.join(missing)} named in the config are not in {path}",
            hint=f"columns in the file: {', '.join(frame.columns[:40])}{' ...' if frame.width > 40 else ''}",
        )
    frame = frame.drop(list(config.pii))
    codebook = codebook.drop(config.pii)
    frame = frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("raw_row"))
    diagnostics = {
        "raw_rows": frame.height,
        "columns": frame.width - 1,
        "pii_dropped": list(config.pii),
        "file_label": codebook.file_label,
    }
    return frame, codebook, diagnostics


def run(ctx: StageContext) -> StageOutput:
    wave = ctx.wave
    path = ctx.config.resolve(wave.raw)
    index = [w.id for w in ctx.config.waves].index(wave.id)
    frame, codebook, diagnostics = ingest(path, ctx.config.ingest, wave_index=index)
    return StageOutput(
        files={"ingest/data.parquet": frame, "ingest/codebook.json": codebook.to_json()},
        diagnostics=diagnostics,
        rows=frame.height,
    )

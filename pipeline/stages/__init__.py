"""The five stages. Each stage module has a pure function of data (``ingest``, ``clean``, ...)
usable from a notebook, and a ``run(ctx)`` adapter that the runner calls: it reads the upstream
artifacts through the context and returns a :class:`StageOutput` whose files the runner writes.
Stages never write files themselves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import StudyConfig, Wave
    from pipeline.io import Codebook

STAGES: tuple[str, ...] = ("ingest", "clean", "weight", "estimate", "export")
"""The stages run once per wave, in this order."""
STUDY_STAGES: tuple[str, ...] = ("harmonize", "trends")
"""The stages run once per study: harmonize after every wave's ingest, trends at the end."""
ALL_STAGES: tuple[str, ...] = ("ingest", "harmonize", "clean", "weight", "estimate", "export", "trends")
"""Every stage in the order a run takes them (for ``--from`` and ``--only``)."""


@dataclass(frozen=True)
class StageOutput:
    """What a stage produced.

    Attributes
    ----------
    files : mapping of str to DataFrame, dict, list or str
        Relative path (under the wave's output folder) -> content. ``.parquet``/``.csv`` paths
        take a DataFrame, ``.json`` a dict or list, anything else text.
    diagnostics : dict
        Numbers for the manifest (row counts, design effects, convergence...).
    rows : int or None
        The number of rows the stage produced, for the progress line.
    """

    files: Mapping[str, Any]
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    rows: int | None = None


@dataclass(frozen=True)
class StageContext:
    """What a stage may read: the config, its wave, and the upstream artifacts."""

    config: StudyConfig
    wave: Wave
    wave_dir: Path

    def path(self, relative: str) -> Path:
        return self.wave_dir / relative

    def read_frame(self, relative: str) -> pl.DataFrame:
        import polars as pl

        p = self.path(relative)
        return pl.read_parquet(p) if p.suffix == ".parquet" else pl.read_csv(p, infer_schema_length=None)

    def read_codebook(self, relative: str) -> Codebook:
        from pipeline.io import Codebook

        return Codebook.from_json(self.path(relative).read_text(encoding="utf-8"))


def stage_runner(name: str) -> Callable[[StageContext], StageOutput]:
    """The ``run`` function of a stage module, imported on demand (keeps start-up fast)."""
    module = importlib.import_module(f"pipeline.stages.{name}")
    return module.run


def external_inputs(name: str, config: StudyConfig, wave: Wave) -> dict[str, Path]:
    """Files from outside the outputs folder that a stage reads (their bytes are fingerprinted)."""
    if name == "ingest":
        return {"raw": config.resolve(wave.raw)}
    if name == "weight" and wave.targets is not None:
        return {"targets": config.resolve(wave.targets)}
    return {}

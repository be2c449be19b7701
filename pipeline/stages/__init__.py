"""The stages, and what a stage may read. Each stage module has a pure function of data
(``ingest``, ``clean``, ...) usable from a notebook, a ``run(ctx)`` adapter that the runner calls,
and beside it ``READS``, a :class:`Reads`: the config key paths it reads, the upstream artifacts
it opens and the config keys naming the external files it reads. The runner fingerprints exactly
what ``READS`` declares, and hands ``run`` a context whose config is a :class:`ConfigView`: reading
a key, or opening an artifact, that the stage does not declare raises :class:`UndeclaredRead`.
``run`` returns a :class:`StageOutput` whose files the runner writes; stages never write files.

This module also holds what the stages share (:class:`StageContext`, :class:`StudyContext`):
stages import ``pipeline.survey`` and ``pipeline.exporters``, never each other.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import StudyConfig
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


# ------------------------------------------------------------------------------ what a stage reads


@dataclass(frozen=True)
class Reads:
    """What a stage reads, declared next to its ``run``.

    Attributes
    ----------
    config : tuple of str
        Config key paths, ``tables.decimals``, ``design``, ``waves[].raw`` (``[]``: every item of a
        list; in a wave stage, ``waves[]`` is the stage's own wave). A key covers everything under it.
    upstream : tuple of str
        Artifacts it opens, relative to the wave's folder (a wave stage) or to each wave's folder
        (a study stage); one ending in ``/`` covers the folder.
    files : tuple of str
        Config keys naming external files whose bytes it reads (``waves[].raw``); the key's value
        counts as read too.
    """

    config: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Every config key path the stage may read: ``config`` and ``files``."""
        return (*self.config, *(k for k in self.files if k not in self.config))

    def covers(self, path: str) -> bool:
        """Whether ``path`` (e.g. ``tables.banners[].id``) is under a declared key."""
        return any(path == k or path.startswith(k + ".") or path.startswith(k + "[]") for k in self.keys)

    def leads_to(self, path: str) -> bool:
        """Whether a declared key is under ``path`` (reading ``path`` on the way there is allowed)."""
        return path == "" or any(k.startswith(path + ".") or k.startswith(path + "[]") for k in self.keys)

    def opens(self, relative: str) -> bool:
        return any(relative == u or (u.endswith("/") and relative.startswith(u)) for u in self.upstream)


class UndeclaredRead(PipelineError):
    """A stage read a config key or an artifact its ``READS`` does not declare (a bug in the stage)."""


def stage_reads(name: str) -> Reads:
    """The ``READS`` declaration of a stage module."""
    return importlib.import_module(f"pipeline.stages.{name}").READS


def artifact_stage(relative: str) -> str:
    """The wave stage that writes an artifact: ``weight/qa.json`` -> ``weight``."""
    top = relative.split("/", 1)[0]
    if top in ("ingest", "clean", "weight", "estimate"):
        return top
    if top == "estimates.csv":
        return "estimate"
    return "export"


@dataclass
class _Scope:
    """Shared by the views of one stage run: what it declares, its wave, and what it read."""

    stage: str
    reads: Reads
    wave: str | None  # a wave stage's wave; None in a study stage

    def refuse(self, what: str) -> UndeclaredRead:
        declared = ", ".join(self.reads.keys) or "nothing"
        return UndeclaredRead(
            f"the {self.stage} stage read {what} but does not declare it (it declares: {declared})",
            hint=f"add it to READS in pipeline/stages/{self.stage}.py (its fingerprint follows READS)",
        )


#: every config key path read through a view, by stage (the tests compare it with READS)
SEEN: dict[str, set[str]] = {}


class ConfigView:
    """A stage's view of the config: attribute reads are checked against its :class:`Reads`.

    A model field gives a view (or a tuple of views) when it is a model, its value otherwise; a
    method or property (``model_dump``...) needs the whole object declared. ``resolve``, ``root``,
    ``outputs`` and ``path`` are always allowed; ``wave(id)``, ``clean_for(id)`` and
    ``estimates_for(id)`` need the keys they read (``clean`` and ``waves[].not_asked``, ...).
    """

    __slots__ = ("_obj", "_path", "_scope")

    def __init__(self, obj: Any, path: str, scope: _Scope) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_scope", scope)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(view, WeightConfig) holds
        return type(object.__getattribute__(self, "_obj"))

    def __getattr__(self, name: str) -> Any:
        obj, path, scope = self._obj, self._path, self._scope
        if path == "waves[]" and scope.wave is not None and obj.id != scope.wave:
            raise scope.refuse(f"wave {obj.id!s}'s {name} (a wave stage reads only its own wave)")
        if path == "" and name in ("resolve", "root", "outputs", "path"):
            return getattr(obj, name)
        if path == "" and f"_view_{name}" in ConfigView.__dict__:
            return getattr(self, f"_view_{name}")
        fields = getattr(type(obj), "model_fields", {})
        if name not in fields:
            if not scope.reads.covers(path):
                raise scope.refuse(f"{path or 'the config'}.{name} (only a key declared whole can be used whole)")
            self._see(path)
            return getattr(obj, name)
        child = f"{path}.{name}" if path else name
        value = getattr(obj, name)
        if isinstance(value, tuple) and not value and scope.reads.leads_to(child):
            return value
        if _is_model(value) or (isinstance(value, tuple) and value and all(_is_model(v) for v in value)):
            if not (scope.reads.covers(child) or scope.reads.leads_to(child)):
                raise scope.refuse(child)
            if _is_model(value):
                return ConfigView(value, child, scope)
            return tuple(ConfigView(v, child + "[]", scope) for v in value)
        if not scope.reads.covers(child):
            raise scope.refuse(child)
        self._see(child)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"the config is read-only ({self._path or 'config'}.{name})")

    def _see(self, path: str) -> None:
        SEEN.setdefault(self._scope.stage, set()).add(path)

    # ---- the config's helpers, in terms of the keys they read
    def _view_wave(self, wave_id: str) -> ConfigView:
        return ConfigView(self._obj.wave(wave_id), "waves[]", self._scope)

    def _view_clean_for(self, wave_id: str) -> ConfigView:
        self._need("clean", "waves[].not_asked")
        return ConfigView(self._obj.clean_for(wave_id), "clean", self._scope)

    def _view_estimates_for(self, wave_id: str) -> tuple[ConfigView, ...]:
        self._need("estimates", "waves[].not_asked")
        return tuple(ConfigView(e, "estimates[]", self._scope) for e in self._obj.estimates_for(wave_id))

    def _need(self, *keys: str) -> None:
        for key in keys:
            if not self._scope.reads.covers(key):
                raise self._scope.refuse(key)
        self._see(keys[-1])

    def unwrap(self) -> Any:
        """The config object itself (for tests; a stage must not use it)."""
        return self._obj

    def __eq__(self, other: object) -> bool:
        return self._obj == (other._obj if isinstance(other, ConfigView) else other)

    def __hash__(self) -> int:
        return hash(self._obj)

    def __repr__(self) -> str:
        return f"ConfigView({self._path or 'config'}: {self._obj!r})"


def _is_model(value: Any) -> bool:
    return hasattr(type(value), "model_fields") and not isinstance(value, type)


def config_view(config: StudyConfig, stage: str, wave: str | None) -> ConfigView:
    """The config as ``stage`` may read it (``wave``: a wave stage's wave, None for a study stage)."""
    return ConfigView(config, "", _Scope(stage, stage_reads(stage), wave))


# ------------------------------------------------------------------------------ contexts


def _check_open(reads: Reads | None, stage: str, relative: str) -> None:
    if reads is not None and not reads.opens(relative):
        raise UndeclaredRead(
            f"the {stage} stage opened {relative} but does not declare it (READS.upstream: {', '.join(reads.upstream) or 'nothing'})",
            hint=f"add it to READS.upstream in pipeline/stages/{stage}.py",
        )


@dataclass(frozen=True)
class StageContext:
    """What a wave stage may read: its view of the config, its wave, and the declared upstream artifacts.

    ``reads`` None (a context made by hand, e.g. in a notebook) opens any artifact.
    """

    config: Any  # StudyConfig or its ConfigView
    wave: Any  # Wave or its ConfigView
    wave_dir: Path
    wave_index: int = 0  # the wave's position in ``waves`` (for messages: waves[1].rename)
    stage: str = ""
    reads: Reads | None = None

    def path(self, relative: str) -> Path:
        _check_open(self.reads, self.stage, relative)
        return self.wave_dir / relative

    def read_frame(self, relative: str) -> pl.DataFrame:
        import polars as pl

        p = self.path(relative)
        return pl.read_parquet(p) if p.suffix == ".parquet" else pl.read_csv(p, infer_schema_length=None)

    def read_codebook(self, relative: str) -> Codebook:
        from pipeline.io import Codebook

        return Codebook.from_json(self.path(relative).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class StudyContext:
    """What a study-level stage may read: its view of the config and every wave's declared artifacts."""

    config: Any  # StudyConfig or its ConfigView
    waves: tuple[str, ...]  # the waves with the input artifacts, in config order
    outputs: Path
    stage: str = ""
    reads: Reads | None = None

    def wave_path(self, wave: str, relative: str) -> Path:
        _check_open(self.reads, self.stage, relative)
        return self.outputs / wave / relative


def stage_runner(name: str) -> Callable[[Any], StageOutput]:
    """The ``run`` function of a stage module, imported on demand (keeps start-up fast)."""
    module = importlib.import_module(f"pipeline.stages.{name}")
    return module.run


def external_inputs(name: str, config: StudyConfig, wave_id: str) -> dict[str, tuple[str, Path]]:
    """The external files a wave stage declares (``READS.files``) that its wave names:
    ``{"raw": ("waves[0].raw", path)}`` (their bytes are fingerprinted)."""
    index = [w.id for w in config.waves].index(wave_id)
    wave = config.waves[index]
    out: dict[str, tuple[str, Path]] = {}
    for key in stage_reads(name).files:
        if not key.startswith("waves[]."):
            raise ValueError(f"READS.files of {name}: {key} is not a per-wave key (waves[].<key>)")
        leaf = key.removeprefix("waves[].")
        value = getattr(wave, leaf)
        if value is not None:
            out[leaf] = (f"waves[{index}].{leaf}", config.resolve(value))
    return out

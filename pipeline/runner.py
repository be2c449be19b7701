"""The runner: stage order, fingerprints, skip-if-fresh, manifest, atomic writes and the lock.

A stage's fingerprint is the sha256 of the package version, a digest of the package's code,
the stage's config slice, the fingerprint of the upstream stage whose artifacts it reads, and
the bytes of the external files it reads (the raw delivery, the targets). A stage is *fresh*
when the manifest records that fingerprint and its artifacts are on disk with the recorded
hashes; a fresh stage is not run again. A stage's files are first written into a staging
folder and then moved into place one by one with ``os.replace``; the manifest (itself
written atomically) is updated only after all of them are in place, so a run killed half-way
leaves no half-written file and the next run redoes that stage.

Only one run of a study at a time: ``outputs/<study>/.lock`` (an OS lock, released when the
process ends, even when killed).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.config import StudyConfig
from pipeline.errors import ConfigError, DataError, LockError, PipelineError
from pipeline.stages import ALL_STAGES, STAGES, STUDY_STAGES, StageContext, StageOutput, external_inputs, stage_runner

MANIFEST_VERSION = 1


# ------------------------------------------------------------------------------ reporting


class Progress:
    """Progress lines on stderr: stage, wave, status, rows, elapsed. Silent when quiet."""

    def __init__(self, *, quiet: bool = False, stream: Any = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr

    def line(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def stage(self, wave: str, stage: str, status: str, *, rows: int | None = None, seconds: float | None = None, note: str = "") -> None:
        parts = [f"[{wave}] {stage:<9} {status:<7}"]
        if rows is not None:
            parts.append(f"{rows:>7,} rows")
        if seconds is not None:
            parts.append(f"{seconds:6.2f} s")
        if note:
            parts.append(note)
        self.line("  ".join(parts))


# ------------------------------------------------------------------------------ fingerprints


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_CODE_DIGEST: str | None = None


def code_digest() -> str:
    """A digest of the package's source files: a code change makes every stage stale."""
    global _CODE_DIGEST
    if _CODE_DIGEST is None:
        root = Path(__file__).resolve().parent
        h = hashlib.sha256()
        for p in sorted(root.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
        _CODE_DIGEST = h.hexdigest()
    return _CODE_DIGEST


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Fingerprint:
    """The parts of a stage's fingerprint, kept apart so that ``status`` can say why."""

    version: str
    code: str
    config: str
    upstream: str | None
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def value(self) -> str:
        return _hash_json([self.version, self.code, self.config, self.upstream, sorted(self.inputs.items())])

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "code": self.code, "config": self.config, "upstream": self.upstream, "inputs": self.inputs}


def fingerprint(config: StudyConfig, wave_id: str, stage: str, upstream: str | None) -> Fingerprint:
    wave = config.wave(wave_id)
    inputs: dict[str, str] = {}
    for name, path in external_inputs(stage, config, wave).items():
        if not path.is_file():
            key = "raw" if name == "raw" else "targets"
            raise DataError(
                f"{path}: {name} file not found (config key waves[{_wave_index(config, wave_id)}].{key})",
                hint="check the path (relative to the config file) or create the file"
                + (" with 'survey-pipeline simulate'" if config.study == "insecure_communities" else ""),
            )
        inputs[name] = sha256_file(path)
    return Fingerprint(
        version=__version__,
        code=code_digest(),
        config=_hash_json(config.stage_slice(stage, wave_id)),
        upstream=upstream,
        inputs=inputs,
    )


def _wave_index(config: StudyConfig, wave_id: str) -> int:
    return [w.id for w in config.waves].index(wave_id)


# ------------------------------------------------------------------------------ manifest


class Manifest:
    """``outputs/<study>/manifest.json``: per wave and stage, what ran and what it made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"manifest_version": MANIFEST_VERSION, "waves": {}}
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if loaded.get("manifest_version") == MANIFEST_VERSION:
                    self.data = loaded
            except (json.JSONDecodeError, OSError):
                pass  # an unreadable manifest only means every stage is stale

    def entry(self, wave: str, stage: str) -> dict[str, Any] | None:
        return self.data["waves"].get(wave, {}).get(stage)

    def record(self, wave: str, stage: str, entry: dict[str, Any]) -> None:
        self.data["waves"].setdefault(wave, {})[stage] = entry

    def study_entry(self, stage: str) -> dict[str, Any] | None:
        return self.data.get("study_stages", {}).get(stage)

    def record_study(self, stage: str, entry: dict[str, Any]) -> None:
        self.data.setdefault("study_stages", {})[stage] = entry

    def save(self, study: str) -> None:
        from pipeline.io import write_json

        self.data["study"] = study
        self.data["updated"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.data["package_version"] = __version__
        write_json(self.path, self.data)


def stale_reason(entry: dict[str, Any] | None, fp: Fingerprint, wave_dir: Path) -> str | None:
    """Why a stage must run again, or None when it is fresh."""
    if entry is None or entry.get("status") not in ("ran", "cached"):
        return "never run" if entry is None else f"last run {entry.get('status')}"
    old = entry.get("fingerprint_parts", {})
    if entry.get("fingerprint") != fp.value:
        if old.get("upstream") != fp.upstream:
            return "upstream stage changed"
        if old.get("config") != fp.config:
            return "config changed"
        if old.get("inputs") != fp.inputs:
            changed = [k for k in fp.inputs if old.get("inputs", {}).get(k) != fp.inputs[k]]
            return f"input file changed ({', '.join(changed)})"
        if old.get("version") != fp.version or old.get("code") != fp.code:
            return "code changed"
        return "fingerprint changed"
    for rel, digest in entry.get("artifacts", {}).items():
        p = wave_dir / rel
        if not p.is_file():
            return f"artifact missing ({rel})"
        if sha256_file(p) != digest:
            return f"artifact modified ({rel})"
    return None


# ------------------------------------------------------------------------------ writing


def write_stage_files(wave_dir: Path, stage: str, output: StageOutput) -> dict[str, str]:
    """Write a stage's files via a staging folder; return their sha256 by relative path."""
    staging = wave_dir / f".staging-{stage}-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        hashes: dict[str, str] = {}
        for rel, content in output.files.items():
            tmp = staging / rel
            tmp.parent.mkdir(parents=True, exist_ok=True)
            _write_content(tmp, content)
            hashes[rel] = sha256_file(tmp)
        for rel in output.files:
            dest = wave_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, dest)
        return hashes
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_content(path: Path, content: Any) -> None:
    suffix = path.suffix
    if suffix == ".parquet":
        content.write_parquet(path)
    elif suffix == ".csv" and not isinstance(content, str):
        content.write_csv(path)
    elif suffix == ".json" and not isinstance(content, str):
        from pipeline.io import _json_default

        path.write_text(json.dumps(content, indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8")
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(str(content), encoding="utf-8")


# ------------------------------------------------------------------------------ running


@dataclass(frozen=True)
class StageRecord:
    wave: str
    stage: str
    status: str  # ran | cached | failed | skipped
    seconds: float = 0.0
    reason: str | None = None


@dataclass(frozen=True)
class RunResult:
    records: tuple[StageRecord, ...]
    outputs: Path

    @property
    def ran(self) -> list[StageRecord]:
        return [r for r in self.records if r.status == "ran"]


def _select_waves(config: StudyConfig, waves: Sequence[str] | None) -> list[str]:
    if not waves:
        return [w.id for w in config.waves]
    for w in waves:
        config.wave(w)  # raises ConfigError naming the unknown wave
    return [w.id for w in config.waves if w.id in set(waves)]


def _check_stage(name: str | None, option: str) -> None:
    if name is not None and name not in ALL_STAGES:
        raise ConfigError(f"{option} {name}: unknown stage", hint=f"stages: {', '.join(ALL_STAGES)}")


def acquire_lock(outputs: Path) -> Any:
    """Hold ``outputs/.lock`` for the run; fail at once with a clear message if it is taken."""
    from filelock import FileLock, Timeout

    outputs.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(outputs / ".lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout as exc:
        raise LockError(
            f"another survey-pipeline run of this study is in progress (lock {outputs / '.lock'} is held)",
            hint="wait for it to finish, then run again; the lock is released when that process ends",
        ) from exc
    return lock


def run(
    config: StudyConfig,
    *,
    waves: Sequence[str] | None = None,
    from_stage: str | None = None,
    only: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Run the stages of the selected waves, skipping the fresh ones.

    Parameters
    ----------
    config : StudyConfig
    waves : list of str, optional
        Wave ids to run (default: all).
    from_stage : str, optional
        Run this stage and every later one, fresh or not; earlier stages are used as they are.
    only : str, optional
        Run just this stage (fresh or not), using the existing upstream artifacts.
    force : bool
        Run every selected stage even when fresh.
    """
    _check_stage(from_stage, "--from")
    _check_stage(only, "--only")
    if from_stage and only:
        raise ConfigError("--from and --only cannot be combined", hint="use one of them")
    progress = progress or Progress()
    wave_ids = _select_waves(config, waves)
    from pipeline.preflight import preflight

    preflight(config, waves=wave_ids)  # every name and code against the data, before any stage writes
    outputs = config.outputs
    start = ALL_STAGES.index(from_stage) if from_stage else 0
    selection = _Selection(
        selected=frozenset(s for i, s in enumerate(ALL_STAGES) if (only is None or s == only) and i >= start),
        forced=force or from_stage is not None or only is not None,
        explicit=only or from_stage,
    )
    lock = acquire_lock(outputs)
    try:
        manifest = Manifest(outputs / "manifest.json")
        records: list[StageRecord] = []
        for wave_id in wave_ids:
            records += _run_wave(config, wave_id, manifest, ("ingest",), selection, progress)
        records += _run_study_stage(config, "harmonize", manifest, selection, progress)
        for wave_id in wave_ids:
            records += _run_wave(config, wave_id, manifest, STAGES[1:], selection, progress)
        records += _run_study_stage(config, "trends", manifest, selection, progress)
        return RunResult(records=tuple(records), outputs=outputs)
    finally:
        lock.release()


@dataclass(frozen=True)
class _Selection:
    """Which stages this run may run, and whether it reruns them when fresh."""

    selected: frozenset[str]
    forced: bool
    explicit: str | None  # the --only/--from stage, for messages


def _execute(
    config: StudyConfig,
    label: str,
    stage: str,
    ctx: Any,
    directory: Path,
    manifest: Manifest,
    fp: Fingerprint,
    reason: str | None,
    selection: _Selection,
    progress: Progress,
    record: Any,
) -> StageRecord:
    """Run one stage, write its files, record it in the manifest (or record the failure)."""
    started = time.perf_counter()
    try:
        output = stage_runner(stage)(ctx)
        artifacts = write_stage_files(directory, stage, output)
    except PipelineError as exc:
        seconds = time.perf_counter() - started
        record({"status": "failed", "error": str(exc), "seconds": round(seconds, 3)})
        manifest.save(config.study)
        progress.stage(label, stage, "failed", seconds=seconds)
        if not str(exc).startswith(f"[{label}]"):
            exc.message = f"[{label}] {stage}: {exc.message}"
            exc.args = (exc.message,)
        raise
    seconds = time.perf_counter() - started
    record(
        {
            "status": "ran",
            "fingerprint": fp.value,
            "fingerprint_parts": fp.to_dict(),
            "seconds": round(seconds, 3),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "rows": output.rows,
            "artifacts": artifacts,
            "diagnostics": dict(output.diagnostics),
        }
    )
    manifest.save(config.study)
    note = "(forced)" if selection.forced and reason is None else f"({reason})" if reason else ""
    progress.stage(label, stage, "ran", rows=output.rows, seconds=seconds, note=note)
    return StageRecord(label, stage, "ran", seconds, reason)


def _run_wave(
    config: StudyConfig,
    wave_id: str,
    manifest: Manifest,
    stages: Sequence[str],
    selection: _Selection,
    progress: Progress,
) -> list[StageRecord]:
    wave = config.wave(wave_id)
    wave_dir = config.outputs / wave_id
    records: list[StageRecord] = []
    first = STAGES.index(stages[0])
    previous = manifest.entry(wave_id, STAGES[first - 1]) if first else None
    upstream: str | None = previous.get("fingerprint") if previous else None
    for stage in stages:
        entry = manifest.entry(wave_id, stage)
        if stage not in selection.selected:
            later = STAGES[STAGES.index(stage) + 1 :]
            if not any(s in selection.selected for s in later):
                continue
            if entry is None or entry.get("status") not in ("ran", "cached"):
                raise PipelineError(
                    f"[{wave_id}] {stage} has no artifacts yet, and {selection.explicit} needs them",
                    hint=f"run the whole wave first: survey-pipeline run {config.path} --wave {wave_id}",
                )
            upstream = entry["fingerprint"]
            records.append(StageRecord(wave_id, stage, "skipped"))
            continue
        fp = fingerprint(config, wave_id, stage, upstream)
        reason = stale_reason(entry, fp, wave_dir)
        if reason is None and not selection.forced:
            progress.stage(wave_id, stage, "cached", rows=entry.get("rows"))
            manifest.record(wave_id, stage, {**entry, "status": "cached", "seconds": 0.0})
            manifest.save(config.study)
            records.append(StageRecord(wave_id, stage, "cached"))
            upstream = fp.value
            continue
        ctx = StageContext(config=config, wave=wave, wave_dir=wave_dir)
        records.append(
            _execute(config, wave_id, stage, ctx, wave_dir, manifest, fp, reason, selection, progress,
                     lambda e, s=stage: manifest.record(wave_id, s, e))
        )
        upstream = fp.value
    return records


# ------------------------------------------------------------------------------ study stages

#: the wave stage whose artifacts a study stage reads
_STUDY_INPUT = {"harmonize": "ingest", "trends": "estimate"}


@dataclass(frozen=True)
class StudyContext:
    """What a study-level stage may read: the config and every wave's artifacts."""

    config: StudyConfig
    waves: tuple[str, ...]  # the waves with the input artifacts, in config order
    outputs: Path

    def wave_path(self, wave: str, relative: str) -> Path:
        return self.outputs / wave / relative


def study_fingerprint(config: StudyConfig, stage: str, manifest: Manifest) -> tuple[Fingerprint, tuple[str, ...]]:
    """A study stage's fingerprint: its config slice and the input stage's fingerprint in every wave."""
    inputs: dict[str, str] = {}
    for w in config.waves:
        entry = manifest.entry(w.id, _STUDY_INPUT[stage])
        if entry and entry.get("status") in ("ran", "cached"):
            inputs[w.id] = entry["fingerprint"]
    fp = Fingerprint(
        version=__version__,
        code=code_digest(),
        config=_hash_json(config.study_slice(stage)),
        upstream=_hash_json(inputs),
        inputs=inputs,
    )
    return fp, tuple(inputs)


def _run_study_stage(config: StudyConfig, stage: str, manifest: Manifest, selection: _Selection, progress: Progress) -> list[StageRecord]:
    if stage not in selection.selected:
        return []
    fp, waves = study_fingerprint(config, stage, manifest)
    entry = manifest.study_entry(stage)
    reason = stale_reason(entry, fp, config.outputs)
    forced = selection.forced
    if reason is None and not forced:
        progress.stage("study", stage, "cached")
        manifest.record_study(stage, {**entry, "status": "cached", "seconds": 0.0})
        manifest.save(config.study)
        return [StageRecord("study", stage, "cached")]
    ctx = StudyContext(config=config, waves=waves, outputs=config.outputs)
    return [_execute(config, "study", stage, ctx, config.outputs, manifest, fp, reason, selection, progress, lambda e: manifest.record_study(stage, e))]


# ------------------------------------------------------------------------------ status


@dataclass(frozen=True)
class StageStatus:
    wave: str
    stage: str
    state: str  # fresh | stale
    reason: str | None
    last_status: str | None
    finished: str | None


def status(config: StudyConfig, *, waves: Iterable[str] | None = None) -> list[StageStatus]:
    """Which stages are fresh or stale, and why (nothing is run or written)."""
    manifest = Manifest(config.outputs / "manifest.json")
    out: list[StageStatus] = []
    for wave_id in _select_waves(config, list(waves) if waves else None):
        wave_dir = config.outputs / wave_id
        upstream: str | None = None
        upstream_stale = False
        for stage in STAGES:
            entry = manifest.entry(wave_id, stage)
            try:
                fp = fingerprint(config, wave_id, stage, upstream)
                reason = stale_reason(entry, fp, wave_dir)
            except DataError as exc:
                fp, reason = None, exc.message
            if reason is None and upstream_stale:
                reason = "upstream stage is stale"
            if reason == "upstream stage changed" and upstream_stale:
                reason = "upstream stage is stale"
            out.append(
                StageStatus(
                    wave_id,
                    stage,
                    "stale" if reason else "fresh",
                    reason,
                    entry.get("status") if entry else None,
                    entry.get("finished") if entry else None,
                )
            )
            upstream_stale = upstream_stale or reason is not None
            upstream = fp.value if fp else None
    stale_input = {"harmonize": {s.wave for s in out if s.stage == "ingest" and s.state == "stale"},
                   "trends": {s.wave for s in out if s.stage == "estimate" and s.state == "stale"}}
    for stage in STUDY_STAGES:
        entry = manifest.study_entry(stage)
        fp, _ = study_fingerprint(config, stage, manifest)
        reason = stale_reason(entry, fp, config.outputs)
        if stale_input[stage]:
            reason = f"{_STUDY_INPUT[stage]} is stale in wave(s) {', '.join(sorted(stale_input[stage]))}"
        elif reason == "upstream stage changed":
            reason = "a wave's input changed"
        out.append(StageStatus("study", stage, "stale" if reason else "fresh", reason,
                               entry.get("status") if entry else None, entry.get("finished") if entry else None))
    return out

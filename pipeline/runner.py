"""The runner: stage order, skip-if-fresh, the lock, and handing each stage what it declares.

Each stage declares what it reads (``READS`` in its module, see :mod:`pipeline.stages`); its
fingerprint (:mod:`pipeline.manifest`) covers exactly that, and the runner hands ``run`` a view of
the config and a context that refuse anything else (:class:`pipeline.stages.UndeclaredRead`).
A stage is *fresh*
when the manifest records that fingerprint and its artifacts are on disk with the recorded
hashes; a fresh stage is not run again. A stage's files are first written into a staging
folder and then moved into place one by one with ``os.replace``; the manifest (itself
written atomically) is updated only after all of them are in place, so a run killed half-way
leaves no half-written file and the next run redoes that stage.

A stage's folders hold exactly what its manifest entry lists: when a stage runs, the files its
previous entry listed that the new run no longer makes (a format removed from ``export.formats``)
and any stray file in its folders are removed, after the manifest records the new entry, and
never a file another entry lists or anything outside the outputs folder. A stray file makes the
stage stale. A failed stage keeps listing the earlier run's files (they are still on disk), and
``status`` and the failed ``run`` say that they, and every later stage's, are out of date.

Only one run of a study at a time: ``outputs/<study>/.lock`` (an OS lock, released when the
process ends, even when killed), with ``outputs/<study>/.run.json`` (pid, start time) for
``status``. Holding the lock, a run removes the staging folders of runs that were killed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline._outputs import remove_dead_staging, remove_superseded, write_stage_files
from pipeline.config import StudyConfig
from pipeline.errors import ConfigError, DataError, LockError, PipelineError
from pipeline.manifest import (  # noqa: F401  (the names tests and tools import from the runner)
    MANIFEST_VERSION,
    Fingerprint,
    Manifest,
    _hash_json,
    code_digest,
    fingerprint,
    sha256_file,
    stale_reason,
    stray_files,
    study_fingerprint,
    study_input,
)
from pipeline.stages import ALL_STAGES, STAGES, STUDY_STAGES, StageContext, StudyContext, config_view, stage_reads, stage_runner


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


def run_in_progress(outputs: Path) -> dict[str, Any] | None:
    """Whether a run of the study holds its lock now: ``{"lock", "pid", "started"}`` or None.

    Probes ``outputs/.lock`` without waiting (and without creating it); pid and start time come
    from ``outputs/.run.json`` when the process that wrote it is alive.
    """
    from filelock import FileLock, Timeout

    lock_path = outputs / ".lock"
    if not lock_path.is_file():
        return None
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        info: dict[str, Any] = {"lock": lock_path, "pid": None, "started": None}
        try:
            recorded = json.loads((outputs / ".run.json").read_text(encoding="utf-8"))
            pid = int(recorded["pid"])
            os.kill(pid, 0)  # a killed run's file names a dead process
            info.update(pid=pid, started=recorded.get("started"))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return info
    lock.release()
    return None


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
    outputs = config.outputs
    checked = _preflight(config, wave_ids)  # every name and code against the data, before any stage writes
    start = ALL_STAGES.index(from_stage) if from_stage else 0
    selection = _Selection(
        selected=frozenset(s for i, s in enumerate(ALL_STAGES) if (only is None or s == only) and i >= start),
        forced=force or from_stage is not None or only is not None,
        explicit=only or from_stage,
    )
    lock = acquire_lock(outputs)
    try:
        from pipeline.io import write_json

        write_json(outputs / ".run.json", {"pid": os.getpid(), "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
        _tidy_outputs(config, progress)
        manifest = Manifest(outputs / "manifest.json")
        manifest.data["preflight"] = checked
        records: list[StageRecord] = []
        try:
            for wave_id in wave_ids:
                records += _run_wave(config, wave_id, manifest, ("ingest",), selection, progress)
            records += _run_study_stage(config, "harmonize", manifest, selection, progress)
            for wave_id in wave_ids:
                records += _run_wave(config, wave_id, manifest, STAGES[1:], selection, progress)
            records += _run_study_stage(config, "trends", manifest, selection, progress)
        except PipelineError as exc:
            if getattr(exc, "failed_stage", None):
                _say_out_of_date(exc, config, manifest, wave_ids, *exc.failed_stage)
            raise
        return RunResult(records=tuple(records), outputs=outputs)
    finally:
        (outputs / ".run.json").unlink(missing_ok=True)
        lock.release()


def preflight_key(config: StudyConfig, wave_ids: Sequence[str]) -> str | None:
    """What the pre-flight check's verdict depends on: the code, the whole config and the bytes
    of the waves' raw and targets files (None when one is missing: the check must say so)."""
    files: dict[str, str] = {}
    for wave in config.waves:
        if wave.id not in wave_ids:
            continue
        for key in ("raw", "targets"):
            rel = getattr(wave, key)
            if rel is None:
                continue
            path = config.resolve(rel)
            if not path.is_file():
                return None
            files[f"{wave.id}/{key}"] = sha256_file(path)
    return _hash_json([__version__, code_digest(), config.model_dump(mode="json"), sorted(wave_ids), files])


def _preflight(config: StudyConfig, wave_ids: Sequence[str]) -> str | None:
    """Run :func:`pipeline.preflight.preflight` unless the last run already passed it with the
    same code, config and input bytes (the check is deterministic: its verdict would be the same).
    Returns the key to record in the manifest."""
    from pipeline.preflight import preflight

    key = preflight_key(config, wave_ids)
    recorded = Manifest(config.outputs / "manifest.json").data.get("preflight")
    if key is None or key != recorded:
        preflight(config, waves=wave_ids)
    return key


def _tidy_outputs(config: StudyConfig, progress: Progress) -> None:
    """Before any stage: remove killed runs' staging folders and the old salt; make the hash key."""
    outputs = config.outputs
    removed = remove_dead_staging(outputs)
    if removed:
        progress.line(f"removed {len(removed)} staging folder(s) left by an interrupted run: {', '.join(removed)}")
    salt = outputs / ".salt"
    if salt.is_file():
        # with the salt beside them, the old hashes could be reversed by hashing every phone number
        salt.unlink()
        progress.line(f"removed {salt}: the old salt of identifier hashes (they are now keyed with a key kept outside outputs/)")
    if config.ingest.hash:
        from pipeline.stages.ingest import hash_key

        _, created = hash_key(config, create=True)
        if created is not None:
            print(
                f"created the identifier hash key {created} (ingest.hash): keep it private and out of outputs/ and git; "
                "with another key the hashes differ",
                file=progress.stream,
                flush=True,
            )


def _say_out_of_date(exc: PipelineError, config: StudyConfig, manifest: Manifest, wave_ids: Sequence[str], label: str, stage: str) -> None:
    """Add to a failed run's error which files on disk are from an earlier run and now out of date:
    those of every stage that is stale now (the failed one, the later ones, the waves not reached)."""
    try:
        affected = [(s.wave, s.stage) for s in status(config, waves=wave_ids) if s.state == "stale"]
    except PipelineError:  # status cannot judge (e.g. a raw file gone): the failed stage and its successors
        if label == "study":
            affected = [("study", stage)]
        else:
            affected = [(label, s) for s in STAGES[STAGES.index(stage):]] + [
                ("study", s) for s in STUDY_STAGES if STAGES.index(study_input(s)) >= STAGES.index(stage)]
    outputs = config.outputs
    lines = []
    for where, name in affected:
        entry = manifest.study_entry(name) if where == "study" else manifest.entry(where, name)
        base = outputs if where == "study" else outputs / where
        present = [rel for rel in (entry or {}).get("artifacts", {}) if (base / rel).is_file()]
        if present:
            lines.append(f"    [{where}] {name}: {_summarise(present)}")
    if lines:
        exc.message += "\n  these files on disk are from an earlier run and now out of date:\n" + "\n".join(lines)
        exc.args = (exc.message,)


def _summarise(paths: Iterable[str]) -> str:
    """``estimates.csv, estimate/ (2 files)``: top-level files by name, folders by count."""
    files, folders = [], {}
    for rel in sorted(paths):
        if "/" in rel:
            top = rel.split("/", 1)[0]
            folders[top] = folders.get(top, 0) + 1
        else:
            files.append(rel)
    return ", ".join([*files, *(f"{f}/ ({n} file{'s' if n > 1 else ''})" for f, n in folders.items())])


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
    previous: dict[str, Any] | None,
) -> StageRecord:
    """Run one stage, write its files, record it in the manifest (or record the failure).

    After the manifest lists the new entry, the previous entry's files the stage no longer
    makes, and stray files in its folders, are removed. A failure keeps the previous entry's
    files listed (they are on disk, out of date) so that nothing on disk goes unlisted.
    """
    started = time.perf_counter()
    before = dict((previous or {}).get("artifacts", {}))
    try:
        output = stage_runner(stage)(ctx)
        artifacts = write_stage_files(directory, stage, output)
    except PipelineError as exc:
        seconds = time.perf_counter() - started
        failed: dict[str, Any] = {"status": "failed", "error": str(exc), "seconds": round(seconds, 3),
                                  "failed": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        if before:
            failed["artifacts"] = before
            failed["artifacts_finished"] = (previous or {}).get("finished") or (previous or {}).get("artifacts_finished")
        record(failed)
        manifest.save(config.study)
        progress.stage(label, stage, "failed", seconds=seconds)
        if not str(exc).startswith(f"[{label}]"):
            exc.message = f"[{label}] {stage}: {exc.message}"
            exc.args = (exc.message,)
        exc.failed_stage = (label, stage)  # type: ignore[attr-defined]  # for the run's out-of-date note
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
    removed = remove_superseded(directory, config.outputs, before, artifacts,
                                manifest.listed(None if label == "study" else label), manifest.listed_paths(config.outputs))
    note = "(forced)" if selection.forced and reason is None else f"({reason})" if reason else ""
    if removed:
        note += f" (removed {len(removed)} earlier file(s) it no longer makes: {_summarise(removed)})"
    progress.stage(label, stage, "ran", rows=output.rows, seconds=seconds, note=note.strip())
    return StageRecord(label, stage, "ran", seconds, reason)


def _run_wave(
    config: StudyConfig,
    wave_id: str,
    manifest: Manifest,
    stages: Sequence[str],
    selection: _Selection,
    progress: Progress,
) -> list[StageRecord]:
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
        reason = stale_reason(entry, fp, wave_dir, manifest.listed(wave_id))
        if reason is None and not selection.forced:
            progress.stage(wave_id, stage, "cached", rows=entry.get("rows"))
            manifest.record(wave_id, stage, {**entry, "status": "cached", "seconds": 0.0})
            manifest.save(config.study)
            records.append(StageRecord(wave_id, stage, "cached"))
            upstream = fp.value
            continue
        view = config_view(config, stage, wave_id)
        ctx = StageContext(config=view, wave=view.wave(wave_id), wave_dir=wave_dir, wave_index=[w.id for w in config.waves].index(wave_id),
                           stage=stage, reads=stage_reads(stage))
        records.append(
            _execute(config, wave_id, stage, ctx, wave_dir, manifest, fp, reason, selection, progress,
                     lambda e, s=stage: manifest.record(wave_id, s, e), entry)
        )
        upstream = fp.value
    return records


# ------------------------------------------------------------------------------ study stages

def _run_study_stage(config: StudyConfig, stage: str, manifest: Manifest, selection: _Selection, progress: Progress) -> list[StageRecord]:
    if stage not in selection.selected:
        return []
    fp, waves = study_fingerprint(config, stage, manifest)
    entry = manifest.study_entry(stage)
    reason = stale_reason(entry, fp, config.outputs, manifest.listed(None))
    forced = selection.forced
    if reason is None and not forced:
        progress.stage("study", stage, "cached")
        manifest.record_study(stage, {**entry, "status": "cached", "seconds": 0.0})
        manifest.save(config.study)
        return [StageRecord("study", stage, "cached")]
    ctx = StudyContext(config=config_view(config, stage, None), waves=waves, outputs=config.outputs, stage=stage, reads=stage_reads(stage))
    return [_execute(config, "study", stage, ctx, config.outputs, manifest, fp, reason, selection, progress, lambda e: manifest.record_study(stage, e), entry)]


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
        upstream_failed: str | None = None
        for stage in STAGES:
            entry = manifest.entry(wave_id, stage)
            try:
                fp = fingerprint(config, wave_id, stage, upstream)
                reason = stale_reason(entry, fp, wave_dir, manifest.listed(wave_id))
            except DataError as exc:
                fp, reason = None, exc.message
            if reason is None and upstream_stale:
                reason = "upstream stage is stale"
            if reason == "upstream stage changed" and upstream_stale:
                reason = "upstream stage is stale"
            if upstream_failed and reason in (None, "upstream stage changed", "upstream stage is stale"):
                # its files are from a run before the failure: out of date, whatever the fingerprints say
                reason = f"upstream stage failed: {upstream_failed}"
            if entry is not None and entry.get("status") == "failed" and upstream_failed is None:
                upstream_failed = stage
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
    stale_input = {name: {s.wave for s in out if s.stage == study_input(name) and s.state == "stale"} for name in STUDY_STAGES}
    for stage in STUDY_STAGES:
        entry = manifest.study_entry(stage)
        fp, _ = study_fingerprint(config, stage, manifest)
        reason = stale_reason(entry, fp, config.outputs, manifest.listed(None))
        upto = STAGES[: STAGES.index(study_input(stage)) + 1]
        failed: dict[str, list[str]] = {}
        for s in out:
            if s.stage in upto and s.last_status == "failed":
                failed.setdefault(s.stage, []).append(s.wave)
        if failed:
            reason = "upstream stage failed: " + "; ".join(f"{name} in wave(s) {', '.join(ws)}" for name, ws in failed.items())
        elif stale_input[stage]:
            reason = f"{study_input(stage)} is stale in wave(s) {', '.join(sorted(stale_input[stage]))}"
        elif reason == "upstream stage changed":
            reason = "a wave's input changed"
        out.append(StageStatus("study", stage, "stale" if reason else "fresh", reason,
                               entry.get("status") if entry else None, entry.get("finished") if entry else None))
    return out

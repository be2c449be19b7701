"""The runner: stage order, fingerprints, skip-if-fresh, manifest, atomic writes and the lock.

A stage's fingerprint is the sha256 of the package version, a digest of the package's code,
the stage's config slice, the fingerprint of the upstream stage whose artifacts it reads, and
the bytes of the external files it reads (the raw delivery, the targets). A stage is *fresh*
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
    if stage == "ingest" and config.ingest.hash:
        from pipeline.stages.ingest import hash_key, hash_key_id

        key, _ = hash_key(config)
        inputs["hash_key"] = hash_key_id(key) if key else "none yet"
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

    def listed(self, wave: str | None) -> set[str]:
        """Every file the entries of a wave (None: the study stages) list, relative to their folder."""
        entries = self.data.get("study_stages", {}) if wave is None else self.data["waves"].get(wave, {})
        return {rel for e in entries.values() for rel in e.get("artifacts", {})}

    def listed_paths(self, outputs: Path) -> set[Path]:
        """Every file any entry lists, as normalised absolute paths (the files cleanup never removes)."""
        paths = {_normal(outputs / w / rel) for w in self.data["waves"] for rel in self.listed(w)}
        return paths | {_normal(outputs / rel) for rel in self.listed(None)}

    def save(self, study: str) -> None:
        from pipeline.io import write_json

        self.data["study"] = study
        self.data["updated"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        self.data["package_version"] = __version__
        write_json(self.path, self.data)


def _normal(path: Path) -> Path:
    return Path(os.path.normpath(path.absolute()))


def stray_files(directory: Path, artifacts: Iterable[str], listed: set[str]) -> list[str]:
    """Files in the folders a stage writes to (``tables/`` for ``tables/topline.md``) that no entry lists."""
    stray = []
    for folder in sorted({rel.split("/", 1)[0] for rel in artifacts if "/" in rel}):
        top = directory / folder
        if folder in ("", ".", "..") or top.is_symlink() or not top.is_dir():
            continue
        for base, dirs, files in os.walk(top):  # symlinked folders are not followed
            dirs.sort()
            for name in sorted(files):
                rel = Path(base, name).relative_to(directory).as_posix()
                if rel not in listed:
                    stray.append(rel)
    return stray


def _stray_reason(stray: list[str]) -> str:
    if len(stray) == 1:
        return f"stray file not in the manifest: {stray[0]}"
    more = f" and {len(stray) - 3} more" if len(stray) > 3 else ""
    return f"{len(stray)} stray files not in the manifest: {', '.join(stray[:3])}{more}"


def stale_reason(entry: dict[str, Any] | None, fp: Fingerprint, wave_dir: Path, listed: set[str] | None = None) -> str | None:
    """Why a stage must run again, or None when it is fresh.

    ``listed`` (every file the manifest lists in ``wave_dir``) enables the check for stray files.
    """
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
            if changed == ["hash_key"]:
                return "hash key changed"
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
    if listed is not None:
        stray = stray_files(wave_dir, entry.get("artifacts", {}), listed)
        if stray:
            return _stray_reason(stray)
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


def remove_superseded(
    directory: Path,
    outputs: Path,
    before: Iterable[str],
    after: Iterable[str],
    listed: set[str],
    protected: set[Path],
) -> list[str]:
    """Remove what a stage's previous entry listed (``before``) and its new run did not make
    (``after``), and the stray files in its folders; return what was removed (relative paths).

    Called once the manifest lists the new entry. Never removes a file that any entry lists
    (``protected``), the manifest or lock, or anything outside ``outputs`` (even through a link).
    """
    before, after = set(before), set(after)
    candidates = (before - after) | set(stray_files(directory, before | after, listed))
    root = _normal(outputs)
    real_root = outputs.resolve()
    removed = []
    for rel in sorted(candidates):
        path = _normal(directory / rel)
        if path in protected or path == root or not path.is_relative_to(root):
            continue
        if path.parent == root and path.name in ("manifest.json", ".lock", ".run.json"):
            continue
        if not path.parent.resolve().is_relative_to(real_root):
            continue
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(rel)
            _prune_empty(path.parent, _normal(directory))
    return removed


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and folder.is_relative_to(stop) and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def remove_dead_staging(outputs: Path) -> list[str]:
    """Remove the staging folders of killed runs (call only while holding the study lock)."""
    removed = []
    for staging in sorted([*outputs.glob(".staging-*"), *outputs.glob("*/.staging-*")]):
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging)
            removed.append(staging.relative_to(outputs).as_posix())
    return removed


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


#: the study stages downstream of each wave stage (harmonize reads ingest; trends reads estimate)
_DOWNSTREAM_STUDY = {"ingest": ("harmonize", "trends"), "clean": ("trends",), "weight": ("trends",), "estimate": ("trends",), "export": ()}


def _say_out_of_date(exc: PipelineError, config: StudyConfig, manifest: Manifest, wave_ids: Sequence[str], label: str, stage: str) -> None:
    """Add to a failed run's error which files on disk are from an earlier run and now out of date:
    those of every stage that is stale now (the failed one, the later ones, the waves not reached)."""
    try:
        affected = [(s.wave, s.stage) for s in status(config, waves=wave_ids) if s.state == "stale"]
    except PipelineError:  # status cannot judge (e.g. a raw file gone): the failed stage and its successors
        if label == "study":
            affected = [("study", stage)]
        else:
            affected = [(label, s) for s in STAGES[STAGES.index(stage):]] + [("study", s) for s in _DOWNSTREAM_STUDY[stage]]
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
        reason = stale_reason(entry, fp, wave_dir, manifest.listed(wave_id))
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
                     lambda e, s=stage: manifest.record(wave_id, s, e), entry)
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
    reason = stale_reason(entry, fp, config.outputs, manifest.listed(None))
    forced = selection.forced
    if reason is None and not forced:
        progress.stage("study", stage, "cached")
        manifest.record_study(stage, {**entry, "status": "cached", "seconds": 0.0})
        manifest.save(config.study)
        return [StageRecord("study", stage, "cached")]
    ctx = StudyContext(config=config, waves=waves, outputs=config.outputs)
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
    stale_input = {"harmonize": {s.wave for s in out if s.stage == "ingest" and s.state == "stale"},
                   "trends": {s.wave for s in out if s.stage == "estimate" and s.state == "stale"}}
    for stage in STUDY_STAGES:
        entry = manifest.study_entry(stage)
        fp, _ = study_fingerprint(config, stage, manifest)
        reason = stale_reason(entry, fp, config.outputs, manifest.listed(None))
        upto = STAGES[: STAGES.index(_STUDY_INPUT[stage]) + 1]
        failed: dict[str, list[str]] = {}
        for s in out:
            if s.stage in upto and s.last_status == "failed":
                failed.setdefault(s.stage, []).append(s.wave)
        if failed:
            reason = "upstream stage failed: " + "; ".join(f"{name} in wave(s) {', '.join(ws)}" for name, ws in failed.items())
        elif stale_input[stage]:
            reason = f"{_STUDY_INPUT[stage]} is stale in wave(s) {', '.join(sorted(stale_input[stage]))}"
        elif reason == "upstream stage changed":
            reason = "a wave's input changed"
        out.append(StageStatus("study", stage, "stale" if reason else "fresh", reason,
                               entry.get("status") if entry else None, entry.get("finished") if entry else None))
    return out

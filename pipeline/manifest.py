"""Fingerprints and the manifest: what makes a stage stale, and the record of what ran.

A stage's fingerprint is the sha256 of the package version, a digest of the package's code, the
values at the config key paths its ``READS`` declares (per-wave keys, ``waves[].raw``, resolved for
the stage's wave; a study stage's for every wave), the fingerprint of the stage before it (a study
stage: of its input stage in every wave) and the bytes of the external files ``READS.files`` names
(the raw delivery, the targets) and, for ``ingest.hash``, the hash key's id. ``status`` says which
part changed. The manifest (``outputs/<study>/manifest.json``) records, per wave and stage, the
fingerprint, its parts and the hashes of the files the stage made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.config import StudyConfig
from pipeline.errors import DataError
from pipeline.stages import STAGES, artifact_stage, external_inputs, stage_reads

MANIFEST_VERSION = 1


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


# ------------------------------------------------------------------------------ stage fingerprints


def config_slice(config: StudyConfig, stage: str, wave_id: str | None = None) -> dict[str, Any]:
    """The values at the key paths ``stage`` declares (``READS.config`` and ``READS.files``), by key.

    ``wave_id``: a wave stage's wave (``waves[].raw`` is that wave's); None: a study stage
    (``waves[].id`` lists every wave's).
    """
    dump = json.loads(config.model_dump_json())
    index = None if wave_id is None else [w.id for w in config.waves].index(wave_id)
    out = {}
    for key in stage_reads(stage).keys:
        try:
            out[key] = _at(dump, key.split("."), index)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"READS of the {stage} stage: {key} is not a config key path") from exc
    return out


def _at(node: Any, parts: list[str], index: int | None) -> Any:
    if not parts:
        return node
    head, rest = parts[0], parts[1:]
    if head.endswith("[]"):
        items = node[head[:-2]]
        if head == "waves[]" and index is not None:
            return _at(items[index], rest, None)
        return [_at(item, rest, None) for item in items]
    return _at(node[head], rest, None)


def fingerprint(config: StudyConfig, wave_id: str, stage: str, upstream: str | None) -> Fingerprint:
    """A wave stage's fingerprint (``upstream``: the fingerprint of the stage before it)."""
    inputs: dict[str, str] = {}
    for name, (key, path) in external_inputs(stage, config, wave_id).items():
        if not path.is_file():
            raise DataError(
                f"{path}: {name} file not found (config key {key})",
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
        config=_hash_json(config_slice(config, stage, wave_id)),
        upstream=upstream,
        inputs=inputs,
    )


def study_input(stage: str) -> str:
    """The last wave stage whose artifacts a study stage reads (harmonize: ingest; trends: estimate)."""
    return max((artifact_stage(rel) for rel in stage_reads(stage).upstream), key=STAGES.index)


def study_fingerprint_of(config: StudyConfig, stage: str, inputs: dict[str, str]) -> Fingerprint:
    """A study stage's fingerprint from its input stage's fingerprint in every wave that has one."""
    return Fingerprint(
        version=__version__,
        code=code_digest(),
        config=_hash_json(config_slice(config, stage)),
        upstream=_hash_json(inputs),
        inputs=inputs,
    )


def study_fingerprint(config: StudyConfig, stage: str, manifest: Manifest) -> tuple[Fingerprint, tuple[str, ...]]:
    """A study stage's fingerprint: its config slice and the input stage's fingerprint in every wave."""
    inputs: dict[str, str] = {}
    for w in config.waves:
        entry = manifest.entry(w.id, study_input(stage))
        if entry and entry.get("status") in ("ran", "cached"):
            inputs[w.id] = entry["fingerprint"]
    return study_fingerprint_of(config, stage, inputs), tuple(inputs)

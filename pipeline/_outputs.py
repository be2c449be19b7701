"""Writing a stage's files and tidying the outputs folder: staging folders moved into place with
``os.replace`` (a run killed half-way leaves no half-written file), removal of the files a stage no
longer makes and of stray files (never a file the manifest lists, nothing outside ``outputs/``),
and removal of killed runs' staging folders.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.manifest import _normal, sha256_file, stray_files
from pipeline.stages import StageOutput


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

"""Shared fixtures: a tiny study project in a temp folder."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from tinystudy import TINY_CONFIG, write_tiny_sav, write_tiny_targets


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A project folder with configs/tiny.yaml, raw/tiny.sav and raw/targets.csv; returns the config path."""
    (tmp_path / "configs").mkdir()
    write_tiny_sav(tmp_path / "raw" / "tiny.sav")
    write_tiny_targets(tmp_path / "raw" / "targets.csv")
    cfg = tmp_path / "configs" / "tiny.yaml"
    cfg.write_text(textwrap.dedent(TINY_CONFIG))
    return cfg


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory) -> Path:
    """A copy of the project's configs/ and raw/ after one run of the main job (shared: read only)."""
    from pipeline.cli import main

    root = Path(__file__).resolve().parents[1]
    project = tmp_path_factory.mktemp("demo")
    shutil.copytree(root / "configs", project / "configs")
    shutil.copytree(root / "raw", project / "raw")
    assert main(["run", str(project / "configs" / "insecure_communities.yaml"), "--quiet"]) == 0
    return project

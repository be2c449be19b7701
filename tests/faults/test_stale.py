"""Issue 10, item 8: stale files presented as current.

- a run killed while the export stage stages its files leaves a ``.staging-export-<pid>/``
  folder; the next run (which holds the study lock) removes it;
- files an earlier run wrote that the new run no longer produces (formats removed from
  ``export.formats``) are removed, and ``status`` reports stray files as out of date;
- after a failed rerun, ``status`` and ``run`` say which outputs on disk are from an earlier run;
- ``status`` says when a run is in progress.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import DataError


def _outputs(cfg: Path) -> Path:
    return cfg.parent.parent / "outputs" / "tiny"


def _manifest(cfg: Path) -> dict:
    return json.loads((_outputs(cfg) / "manifest.json").read_text())


def _status_lines(capsys, cfg: Path) -> dict[str, str]:
    capsys.readouterr()
    assert main(["status", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    return {" ".join(line.split()[:2]): line for line in out.splitlines() if line.startswith("[")}


def _listed(cfg: Path) -> set[Path]:
    """Every file the manifest lists, as absolute paths."""
    out = _outputs(cfg)
    m = _manifest(cfg)
    files = {out / wave / rel for wave, stages in m["waves"].items() for e in stages.values() for rel in e.get("artifacts", {})}
    files |= {out / rel for e in m.get("study_stages", {}).values() for rel in e.get("artifacts", {})}
    return files


#: Runs the CLI with ``os.replace`` patched to SIGKILL the process at the first move out of the
#: export stage's staging folder: the kill lands after the staging folder is full, deterministically.
_KILL_DURING_EXPORT_STAGING = """
import os, signal, sys
_replace = os.replace
def replace(src, dst, *args, **kwargs):
    if ".staging-export-" in str(src):
        os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *args, **kwargs)
os.replace = replace
from pipeline.cli import main
sys.exit(main(["run", sys.argv[1], "--quiet"]))
"""


def test_staging_folder_of_a_killed_run_is_removed_by_the_next_run(tiny_project):
    cfg = tiny_project
    killed = subprocess.run([sys.executable, "-c", _KILL_DURING_EXPORT_STAGING, str(cfg)], capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    wave_dir = _outputs(cfg) / "w1"
    left = list(wave_dir.glob(".staging-export-*"))
    assert left and any(p.is_file() for p in left[0].rglob("*"))  # the kill left a full staging folder
    res = subprocess.run([sys.executable, "-m", "pipeline", "run", str(cfg)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not list(_outputs(cfg).rglob(".staging-*"))
    assert "removed 1 staging folder" in res.stderr and ".staging-export-" in res.stderr


def test_removed_export_formats_leave_no_files_behind(tiny_project, capsys):
    cfg = tiny_project
    cfg.write_text(cfg.read_text() + "export:\n  formats: [csv, markdown, html, latex, sav]\n")
    assert main(["run", str(cfg), "--quiet"]) == 0
    wave_dir = _outputs(cfg) / "w1"
    assert (wave_dir / "tables" / "topline.html").is_file() and list((wave_dir / "analysis").glob("*.sav"))

    cfg.write_text(cfg.read_text().replace("[csv, markdown, html, latex, sav]", "[csv, markdown]"))
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert not (wave_dir / "tables" / "topline.html").exists()
    assert not (wave_dir / "tables" / "topline.tex").exists()
    assert not (wave_dir / "analysis").exists()  # its only files are gone, and the empty folder with them
    on_disk = {p for p in _outputs(cfg).rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert on_disk - {_outputs(cfg) / "manifest.json"} == _listed(cfg)
    assert all(" fresh" in line for line in _status_lines(capsys, cfg).values())


def test_removed_formats_also_leave_the_trend_tables(tiny_project, capsys):
    """The trends stage renders in ``export.formats``: a format removed there reruns it."""
    cfg = tiny_project
    cfg.write_text(cfg.read_text() + "export:\n  formats: [csv, markdown, html]\n")
    assert main(["run", str(cfg), "--quiet"]) == 0
    trend_html = _outputs(cfg) / "trends" / "trends.html"
    assert trend_html.is_file()
    cfg.write_text(cfg.read_text().replace("[csv, markdown, html]", "[csv, markdown]"))
    assert "stale  (config changed)" in _status_lines(capsys, cfg)["[study] trends"]
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert not trend_html.exists()
    assert (_outputs(cfg) / "trends" / "trends.md").is_file()


def test_status_reports_stray_files_and_run_removes_them(tiny_project, capsys):
    cfg = tiny_project
    assert main(["run", str(cfg), "--quiet"]) == 0
    stray = _outputs(cfg) / "w1" / "tables" / "topline.tex"
    stray.write_text("from an earlier run\n")
    lines = _status_lines(capsys, cfg)
    assert "stale  (stray file not in the manifest: tables/topline.tex)" in lines["[w1] export"]
    assert " fresh" in lines["[w1] estimate"]
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert not stray.exists()
    assert all(" fresh" in line for line in _status_lines(capsys, cfg).values())


def test_cleanup_never_deletes_another_stages_file_or_anything_outside_outputs(tiny_project):
    cfg = tiny_project
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = _outputs(cfg)
    raw = cfg.parent.parent / "raw" / "tiny.sav"
    from pipeline.runner import sha256_file

    m = _manifest(cfg)
    # a tampered entry listing a file of the estimate stage and a file outside outputs/
    m["waves"]["w1"]["export"]["artifacts"]["estimates.csv"] = sha256_file(out / "w1" / "estimates.csv")
    m["waves"]["w1"]["export"]["artifacts"]["../../../raw/tiny.sav"] = sha256_file(raw)
    (out / "manifest.json").write_text(json.dumps(m))
    assert main(["run", str(cfg), "--quiet", "--only", "export"]) == 0
    assert raw.is_file() and (out / "w1" / "estimates.csv").is_file()
    assert "estimates.csv" not in _manifest(cfg)["waves"]["w1"]["export"]["artifacts"]


def test_failed_rerun_marks_later_outputs_out_of_date(tiny_project, capsys, monkeypatch):
    cfg = tiny_project
    assert main(["run", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    good = cfg.read_text()
    # the estimates change, and the estimate stage fails on the data (a config that the pre-flight
    # check refuses never reaches a stage, so the failure is made inside the stage)
    bad = good.replace("proportion: Q1\n    levels: [1]", "proportion: SEX\n    levels: [1]", 1)
    assert bad != good
    cfg.write_text(bad)

    def fails(*args, **kwargs):
        raise DataError("estimates: 1 problem(s): the data changed under the stage")

    monkeypatch.setattr("pipeline.stages.estimate.estimate_all", fails)
    assert main(["run", str(cfg), "--quiet"]) == 1
    _, err = capsys.readouterr()
    assert "[w1] estimate: estimates: 1 problem(s)" in err
    assert "from an earlier run and now out of date" in err
    assert "[w1] estimate: estimates.csv, models.csv, estimate/ (7 files)" in err
    assert "[w1] export: tables/ (2 files)" in err
    assert "[study] trends: trends/ (3 files)" in err
    assert (_outputs(cfg) / "w1" / "estimates.csv").is_file()  # kept, but reported

    lines = _status_lines(capsys, cfg)
    assert " fresh" in lines["[w1] weight"]
    assert "stale  (last run failed)" in lines["[w1] estimate"]
    assert "stale  (upstream stage failed: estimate)" in lines["[w1] export"]
    assert "stale  (upstream stage failed: estimate in wave(s) w1)" in lines["[study] trends"]
    # the failed stage keeps listing the earlier run's files: they are not strays
    assert "estimates.csv" in _manifest(cfg)["waves"]["w1"]["estimate"]["artifacts"]

    monkeypatch.undo()
    cfg.write_text(good)
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert all(" fresh" in line for line in _status_lines(capsys, cfg).values())


def test_status_says_a_run_is_in_progress(tiny_project, capsys):
    from filelock import FileLock

    cfg = tiny_project
    assert main(["run", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["status", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "in progress" not in out
    lock = FileLock(str(_outputs(cfg) / ".lock"))
    lock.acquire()
    try:
        assert main(["status", str(cfg)]) == 0
        out, _ = capsys.readouterr()
    finally:
        lock.release()
    assert out.splitlines()[0].startswith(f"a run of this study is in progress (lock {_outputs(cfg) / '.lock'} is held)")


def test_status_from_another_process_during_a_run_names_its_pid(tiny_project, monkeypatch):
    import os

    from pipeline import runner
    from pipeline.config import load_config

    seen: list[str] = []
    real = runner.stage_runner

    def probing(stage):
        if stage == "estimate":
            res = subprocess.run([sys.executable, "-m", "pipeline", "status", str(tiny_project)], capture_output=True, text=True, timeout=120)
            seen.append(res.stdout)
        return real(stage)

    monkeypatch.setattr(runner, "stage_runner", probing)
    runner.run(load_config(tiny_project), progress=runner.Progress(quiet=True))
    assert seen and seen[0].startswith(f"a run of this study is in progress (pid {os.getpid()}, started ")
    assert not (_outputs(tiny_project) / ".run.json").exists()  # removed when the run ends


@pytest.mark.parametrize("where", ["w1", "."])
def test_staging_folders_of_study_and_wave_stages_both_cleaned(tiny_project, where):
    cfg = tiny_project
    assert main(["run", str(cfg), "--quiet"]) == 0
    stale = _outputs(cfg) / where / ".staging-trends-999999"
    (stale / "trends").mkdir(parents=True)
    (stale / "trends" / "estimates.csv").write_text("x\n")
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert not stale.exists()

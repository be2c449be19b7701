"""End-to-end CLI tests on a tiny study in a temporary folder.

Run, cached rerun, partial rerun after a config edit, --force/--from/--only/--wave, bad config
(exit 2 with the key path), missing raw file (exit 1 naming the file), the lock, and a run
killed half-way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline.cli import main

STAGES = ["ingest", "clean", "weight", "estimate", "export"]
CONTRACT_COLUMNS = [
    "wave", "estimate_id", "statistic", "variable", "level", "by", "domain", "n",
    "estimate", "se", "ci_low", "ci_high", "ci_method", "conf_level", "df", "deff", "flag",
]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def manifest(cfg: Path) -> dict:
    return json.loads((cfg.parent.parent / "outputs" / "tiny" / "manifest.json").read_text())


def statuses(cfg: Path) -> dict[str, str]:
    return {s: e["status"] for s, e in manifest(cfg)["waves"]["w1"].items()}


def test_help_is_fast_and_imports_nothing_heavy():
    code = "import sys, pipeline.cli as c; c.build_parser(); print(sorted(m for m in ('polars','numpy','scipy','pyreadstat','pydantic','statsmodels','pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    res = run_cli("--help")
    assert res.returncode == 0 and "run" in res.stdout and "simulate" in res.stdout


def test_run_then_cached_then_partial_rerun(tiny_project, capsys):
    cfg = tiny_project
    assert main(["run", str(cfg)]) == 0
    out, err = capsys.readouterr()
    assert "results: " in out and "estimates.csv" in out
    assert "[w1] ingest" in err and "ran" in err
    assert statuses(cfg) == {s: "ran" for s in STAGES}

    wave_dir = cfg.parent.parent / "outputs" / "tiny" / "w1"
    est = pl.read_csv(wave_dir / "estimates.csv")
    assert est.columns[: len(CONTRACT_COLUMNS)] == CONTRACT_COLUMNS
    overall = est.filter((pl.col("estimate_id") == "q1_yes") & (pl.col("domain") == "All")).row(0, named=True)
    assert overall["level"] == "Yes" and overall["n"] == 119
    assert overall["ci_low"] < overall["estimate"] < overall["ci_high"]
    by_region = est.filter((pl.col("estimate_id") == "q1_yes") & (pl.col("by") == "REGION"))
    assert sorted(by_region.get_column("domain").to_list()) == ["North", "South"]
    levels = est.filter(pl.col("estimate_id") == "q1_all").get_column("level").to_list()
    assert sorted(levels) == ["No", "Yes"]  # denominator valid: DK/refused left out
    assert (wave_dir / "tables" / "topline.md").is_file()

    diag = manifest(cfg)["waves"]["w1"]
    assert diag["clean"]["diagnostics"]["raw_rows"] == 121
    assert diag["clean"]["diagnostics"]["kept_rows"] == 119
    assert diag["clean"]["diagnostics"]["quarantined_rows"] == 2
    for key in ("kish_deff", "effective_n", "iterations", "converged", "max_margin_error"):
        assert key in diag["weight"]["diagnostics"]

    # nothing changed: nothing runs
    assert main(["run", str(cfg)]) == 0
    _, err = capsys.readouterr()
    assert "nothing to do" in err
    assert statuses(cfg) == {s: "cached" for s in STAGES}

    # edit the estimates section: estimate and export rerun, the rest is cached
    text = cfg.read_text().replace("by: [[], [REGION]]", "by: [[], [REGION], [SEX]]")
    cfg.write_text(text)
    assert main(["run", str(cfg), "--quiet"]) == 0
    _, err = capsys.readouterr()
    assert err == ""
    assert statuses(cfg) == {"ingest": "cached", "clean": "cached", "weight": "cached", "estimate": "ran", "export": "ran"}

    # edit the weight section: weight and later rerun
    cfg.write_text(cfg.read_text().replace("tolerance: 1.0e-8", "tolerance: 1.0e-9"))
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert statuses(cfg) == {"ingest": "cached", "clean": "cached", "weight": "ran", "estimate": "ran", "export": "ran"}

    # a changed raw file reruns everything
    raw = cfg.parent.parent / "raw" / "tiny.sav"
    from tinystudy import write_tiny_sav

    write_tiny_sav(raw, seed=8)
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert statuses(cfg) == {s: "ran" for s in STAGES}


def test_force_from_only_and_wave(tiny_project, capsys):
    cfg = tiny_project
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert main(["run", str(cfg), "--quiet", "--force"]) == 0
    assert statuses(cfg) == {s: "ran" for s in STAGES}
    assert main(["run", str(cfg), "--quiet", "--from", "weight"]) == 0
    m = manifest(cfg)["waves"]["w1"]
    assert [m[s]["status"] for s in STAGES] == ["ran", "ran", "ran", "ran", "ran"]  # statuses of the last run that touched them
    first = {s: m[s]["finished"] for s in STAGES}
    assert main(["run", str(cfg), "--quiet", "--only", "estimate"]) == 0
    assert statuses(cfg)["estimate"] == "ran"
    assert main(["run", str(cfg), "--quiet", "--wave", "w1"]) == 0
    assert statuses(cfg) == {s: "cached" for s in STAGES}
    assert first  # finished timestamps recorded
    capsys.readouterr()
    assert main(["run", str(cfg), "--wave", "nope"]) == 2
    _, err = capsys.readouterr()
    assert "--wave nope: no such wave" in err and "w1" in err


def test_only_needs_upstream_artifacts(tiny_project, capsys):
    assert main(["run", str(tiny_project), "--only", "weight"]) == 1
    _, err = capsys.readouterr()
    assert "ingest has no artifacts yet" in err


def test_status_and_validate(tiny_project, capsys):
    cfg = tiny_project
    assert main(["validate", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "wave w1: 121 rows" in out and "OK" in out
    assert not (cfg.parent.parent / "outputs").exists()  # validate writes nothing
    assert main(["status", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "[w1] ingest    stale  (never run)" in out
    assert "[study] trends    stale  (estimate is stale in wave(s) w1)" in out
    main(["run", str(cfg), "--quiet"])
    capsys.readouterr()
    cfg.write_text(cfg.read_text().replace("min_n: 5", "min_n: 6"))
    assert main(["status", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    lines = {line.split()[1]: line for line in out.splitlines()}
    assert " fresh" in lines["weight"]
    assert "stale  (config changed)" in lines["estimate"]
    assert "stale" in lines["export"]


def test_bad_config_exits_2_with_key_path(tiny_project):
    cfg = tiny_project
    cfg.write_text(cfg.read_text().replace("tolerance:", "tolerence:"))
    res = run_cli("run", str(cfg))
    assert res.returncode == 2
    assert "weight.rake.tolerence: unknown key; did you mean 'tolerance'?" in res.stderr
    assert str(cfg) in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_raw_file_exits_1_naming_the_file(tiny_project):
    raw = tiny_project.parent.parent / "raw" / "tiny.sav"
    raw.unlink()
    res = run_cli("run", str(tiny_project))
    assert res.returncode == 1
    assert f"{raw}: raw file not found (config key waves[0].raw)" in res.stderr
    assert "Traceback" not in res.stderr


def test_config_rule_naming_unknown_variable(tiny_project, capsys):
    cfg = tiny_project
    cfg.write_text(cfg.read_text().replace("required: [REGION]", "required: [REGOIN]"))
    assert main(["run", str(cfg)]) == 2
    _, err = capsys.readouterr()
    assert "clean.required: REGOIN is not in the data" in err


def test_second_run_exits_with_clear_message_while_locked(tiny_project, capsys):
    from filelock import FileLock

    outputs = tiny_project.parent.parent / "outputs" / "tiny"
    outputs.mkdir(parents=True)
    lock = FileLock(str(outputs / ".lock"))
    lock.acquire()
    try:
        res = run_cli("run", str(tiny_project))
    finally:
        lock.release()
    assert res.returncode == 1
    assert "another survey-pipeline run of this study is in progress" in res.stderr


def test_raw_file_is_never_written(tiny_project):
    raw = tiny_project.parent.parent / "raw" / "tiny.sav"
    before = (raw.read_bytes(), raw.stat().st_mtime_ns)
    assert main(["run", str(tiny_project), "--quiet"]) == 0
    assert (raw.read_bytes(), raw.stat().st_mtime_ns) == before


@pytest.mark.parametrize("delay", [0.8, 1.6, 2.4])
def test_killed_run_leaves_no_half_written_artifact(tiny_project, delay):
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(tiny_project), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    outputs = tiny_project.parent.parent / "outputs" / "tiny"
    # whatever the manifest records as done has intact artifacts
    if (outputs / "manifest.json").exists():
        for stage, entry in json.loads((outputs / "manifest.json").read_text())["waves"].get("w1", {}).items():
            if entry.get("status") == "ran":
                for rel in entry["artifacts"]:
                    assert (outputs / "w1" / rel).is_file(), (stage, rel)
    res = run_cli("run", str(tiny_project))
    assert res.returncode == 0, res.stderr
    assert statuses(tiny_project)  # complete manifest
    assert all(s in ("ran", "cached") for s in statuses(tiny_project).values())
    assert not list((outputs / "w1").glob(".staging-*"))
    res = run_cli("run", str(tiny_project))
    assert "nothing to do" in res.stderr


def test_simulate_uses_the_wave_defaults(tmp_path, capsys):
    """`simulate --wave 2014` without --seed/--n writes the committed 2014 delivery."""
    root = Path(__file__).resolve().parents[1]
    assert main(["simulate", "--wave", "2014", "--out", str(tmp_path)]) == 0
    for rel in ("insecure_communities_2014_answer_key.csv", "targets/latino_adults_2014.csv"):
        assert (tmp_path / rel).read_text() == (root / "raw" / rel).read_text(), rel
    assert main(["simulate", "--wave", "2016", "--out", str(tmp_path)]) == 2
    assert main(["simulate", "--n", "4"]) == 2

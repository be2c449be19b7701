"""Issue 10, item 9: the same inputs give the same output bytes.

Two uninterrupted runs of the demo differed in ``clean/interviewers.csv`` (the modal battery
pattern of an interviewer with tied patterns was whichever polars' ``mode()`` met first), in the
last digits of ``weight/margins.csv`` (polars group_by sums, added in an order that varies with
the threads), in the analysis files and workbooks (creation times from the clock), in the
codebooks (the raw file's absolute path) and in ``report.html`` (the date of the run).

Exempt, and listed here: ``manifest.json`` (its timestamps and seconds describe the run). The
identifier hash key (``keys/<study>.key``, random when made by the first run) is an input of the
run, not an output: the second run gets the first run's key, as a rerun of the same study does.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[2]
STUDY = "insecure_communities"
#: output files whose bytes may differ between two runs of the same inputs, and why
EXEMPT = {"manifest.json": "the run's timestamps and seconds"}


def _files(outputs: Path) -> dict[str, Path]:
    return {p.relative_to(outputs).as_posix(): p for p in sorted(outputs.rglob("*")) if p.is_file()}


def test_two_runs_of_the_demo_write_the_same_bytes(demo_project, tmp_path):
    first = demo_project / "outputs" / STUDY
    project = tmp_path / "again"
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copytree(ROOT / "raw", project / "raw")
    (project / "keys").mkdir()
    key = f"keys/{STUDY}.key"
    shutil.copy2(demo_project / key, project / key)  # an input (the key of the identifier hashes)
    assert main(["run", str(project / "configs" / f"{STUDY}.yaml"), "--quiet"]) == 0
    a, b = _files(first), _files(project / "outputs" / STUDY)
    assert sorted(a) == sorted(b)
    assert len(a) > 60  # every wave's stages and formats, and the trends
    differ = [name for name in a if name not in EXEMPT and a[name].read_bytes() != b[name].read_bytes()]
    assert differ == []
    for name in ("2012/clean/interviewers.csv", "2012/weight/margins.csv", "2012/tables/tables.xlsx", "2012/analysis/insecure_communities_2012.sav"):
        assert name in a


# ------------------------------------------------------------------ the sources, one by one


def test_modal_pattern_of_tied_patterns_is_the_smallest_whatever_the_row_order():
    from pipeline.config import CleanConfig
    from pipeline.io import Codebook
    from pipeline.stages.clean import _interviewer_report

    # interviewer 7: patterns "12" and "21" three times each, "33" once; interviewer 8: "44" x2, "11" x2
    rows = [(7, 1, 2)] * 3 + [(7, 2, 1)] * 3 + [(7, 3, 3)] + [(8, 4, 4)] * 2 + [(8, 1, 1)] * 2
    frame = pl.DataFrame(rows, schema={"INTVR": pl.Int64, "A": pl.Int64, "B": pl.Int64}, orient="row")
    config = CleanConfig.model_validate({"interviewers": {"variable": "INTVR", "battery": ["A", "B"], "min_interviews": 2}})
    rng = np.random.default_rng(10)
    for _ in range(30):
        shuffled = frame[rng.permutation(frame.height).tolist()]
        per, _ = _interviewer_report(shuffled, Codebook(), config, None)
        assert per.select("interviewer", "modal_pattern", "modal_pattern_share").rows() == [(7, "12", 3 / 7), (8, "11", 0.5)]


def _margins_inputs() -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(9)
    n = 200_000
    frame = pl.DataFrame(
        {
            "G": rng.integers(1, 9, n),
            "X": rng.integers(1, 17, n),
            "w_base": rng.lognormal(0, 1, n),
            "w_final": rng.lognormal(0, 1, n) * 1e3,
        }
    )
    targets = pl.DataFrame({"G": np.repeat(np.arange(1, 9), 16), "variable": "X", "category": np.tile(np.arange(1, 17), 8), "share": 1 / 16})
    return frame, targets


_MARGINS_SCRIPT = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from test_reproducible import _margins_inputs
from pipeline.stages.weight import achieved_margins
frame, targets = _margins_inputs()
out = achieved_margins(frame, targets, ["X"], ["G"], {"base": "w_base", "final": "w_final"})
print(hashlib.sha256(out.write_csv().encode()).hexdigest())
"""


def test_achieved_margins_are_the_same_bytes_in_every_process():
    import subprocess
    import sys

    from pipeline.stages.weight import achieved_margins

    # the order of polars' parallel group sums varied between processes (with the threads'
    # timing: on main this failed in some tries, not all); each process here gets its own
    # thread count, on which np.bincount does not depend
    digests = {
        subprocess.run(
            [sys.executable, "-c", _MARGINS_SCRIPT, str(Path(__file__).parent)],
            capture_output=True, text=True, check=True, cwd=ROOT, env={**os.environ, "POLARS_MAX_THREADS": str(threads)},
        ).stdout
        for threads in (1, 2, 3, 4, 8)
    }
    assert len(digests) == 1
    frame, targets = _margins_inputs()
    calls = [achieved_margins(frame, targets, ["X"], ["G"], {"base": "w_base", "final": "w_final"}) for _ in range(3)]
    got = calls[0].filter((pl.col("G") == 2) & (pl.col("category") == 3)).row(0, named=True)
    inside = frame.filter(pl.col("G") == 2)
    assert got["final_share"] == pytest.approx(inside.filter(pl.col("X") == 3)["w_final"].sum() / inside["w_final"].sum(), rel=1e-12)
    assert got["n"] == inside.filter(pl.col("X") == 3).height
    overall = achieved_margins(frame, targets.filter(pl.col("G") == 1).drop("G"), ["X"], [], {"final": "w_final"})
    assert overall.get_column("unweighted_share").sum() == pytest.approx(1.0)


def _analysis_file():
    from pipeline.exporters.spss import AnalysisFile

    frame = pl.DataFrame({"Q1": [1.0, 2.0, 8.0], "w_final": [0.5, 1.5, 1.0]})
    return AnalysisFile(frame, {"Q1": "Agree?", "w_final": "Final weight"}, {"Q1": {1.0: "Yes", 2.0: "No", 8.0: "Don't know"}}, {"Q1": [8.0]}, "tiny", "SYNTHETIC")


@pytest.mark.parametrize("kind", ["sav", "dta"])
def test_analysis_files_carry_the_given_creation_time_not_the_clock(kind, tmp_path):
    import pyreadstat

    from pipeline.exporters.spss import dta_bytes, sav_bytes

    write, read = {"sav": (sav_bytes, pyreadstat.read_sav), "dta": (dta_bytes, pyreadstat.read_dta)}[kind]
    when = dt.datetime(2012, 12, 10, 7, 5)
    data = write(_analysis_file(), timestamp=when)
    path = tmp_path / f"a.{kind}"
    path.write_bytes(data)
    values, meta = read(str(path), output_format="dict")
    assert meta.creation_time == when
    assert values["w_final"] == [0.5, 1.5, 1.0]
    default = write(_analysis_file())
    assert default == write(_analysis_file())
    path.write_bytes(default)
    assert read(str(path), output_format="dict", metadataonly=True)[1].creation_time == dt.datetime(1980, 1, 1)


def test_workbook_creation_time_is_the_field_period_end():
    import io
    import zipfile

    from pipeline.config import Wave
    from pipeline.exporters import file_timestamp
    from pipeline.exporters.xlsx import workbook_bytes

    wave = Wave.model_validate({"id": "2012", "raw": "x.sav", "field_dates": ["2012-11-17", "2012-12-10"]})
    assert file_timestamp([wave]) == dt.datetime(2012, 12, 10)
    assert file_timestamp([]) == dt.datetime(1980, 1, 1)
    data = workbook_bytes((), title="t", created=file_timestamp([wave]))
    core = zipfile.ZipFile(io.BytesIO(data)).read("docProps/core.xml").decode()
    assert "<dcterms:created xsi:type=\"dcterms:W3CDTF\">2012-12-10T00:00:00Z</dcterms:created>" in core
    assert str(dt.date.today().year) not in core or dt.date.today().year == 2012


def test_codebook_names_the_raw_file_relative_to_the_project(demo_project):
    import json

    for stage in ("ingest", "clean", "weight", "estimate"):
        cb = json.loads((demo_project / "outputs" / STUDY / "2012" / stage / "codebook.json").read_text(encoding="utf-8"))
        assert cb["source"] == "raw/insecure_communities_2012.sav", stage


def test_report_has_no_run_date(demo_project):
    text = (demo_project / "outputs" / STUDY / "2012" / "report.html").read_text(encoding="utf-8")
    assert "report of" not in text
    assert dt.date.today().strftime("%d %B %Y") not in text


def test_built_bootstrap_replicates_need_a_seed(tiny_project, capsys):
    import yaml

    raw = yaml.safe_load(tiny_project.read_text(encoding="utf-8"))
    raw["design"].update({"variance": "replicate", "replicates": {"build": "bootstrap", "replicates": 20}})
    tiny_project.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["validate", str(tiny_project)]) == 2
    err = capsys.readouterr().err
    assert "design.replicates: build: bootstrap needs a seed (e.g. seed: 20121120), so that a rerun draws the same replicates" in err
    assert "Traceback" not in err

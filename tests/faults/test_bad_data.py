"""Bad deliveries from the command line (issue 10, item 6): each exits 1 with a message naming
the file and the variable (or group, or category) and what was expected, never a traceback.

Each test builds the tiny study of tests/tinystudy.py and spoils one thing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pyreadstat
import pytest

from pipeline.io import read_survey


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=300)


def assert_data_error(cfg: Path, *needles: str, command: str = "run") -> str:
    """``command`` exits 1 without a traceback and its message contains every needle."""
    res = run_cli(command, str(cfg), "--quiet") if command == "run" else run_cli(command, str(cfg))
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stderr, f"{needle!r} not in:\n{res.stderr}"
    return res.stderr


def raw_of(cfg: Path) -> Path:
    return cfg.parent.parent / "raw"


def to_csv(cfg: Path, frame: pl.DataFrame, *, header: str | None = None) -> Path:
    """Write ``frame`` as raw/tiny.csv (with the .sav's codebook beside it) and point the config at it."""
    raw = raw_of(cfg)
    _, codebook = read_survey(raw / "tiny.sav")
    text = frame.write_csv()
    if header is not None:
        text = header + "\n" + text.split("\n", 1)[1]
    (raw / "tiny.csv").write_text(text)
    (raw / "tiny.csv.codebook.json").write_text(codebook.to_json())
    cfg.write_text(cfg.read_text().replace("../raw/tiny.sav", "../raw/tiny.csv"))
    return raw / "tiny.csv"


def sav_frame(cfg: Path) -> pl.DataFrame:
    frame, _ = pyreadstat.read_sav(str(raw_of(cfg) / "tiny.sav"), output_format="polars", user_missing=True)
    return frame


def test_zero_row_sav_is_refused_at_ingest_by_validate_and_run(tiny_project):
    path = raw_of(tiny_project) / "tiny.sav"
    frame, meta = pyreadstat.read_sav(str(path), output_format="polars", user_missing=True)
    pyreadstat.write_sav(frame.head(0), str(path), variable_value_labels=meta.variable_value_labels)
    assert_data_error(tiny_project, str(path), "no rows", command="validate")
    err = assert_data_error(tiny_project, "waves[0].raw", str(path), "no rows")  # run's pre-flight check
    assert "SchemaError" not in err
    assert not (tiny_project.parent.parent / "outputs").exists()


def test_numeric_variable_delivered_as_text_names_file_variable_value_and_row(tiny_project):
    """AGE as text in a CSV (one word among the numbers), where clean.valid.ranges needs numbers."""
    frame = sav_frame(tiny_project).with_columns(
        pl.Series("AGE", [str(18 + i % 60) for i in range(121)]).scatter(40, "unknown")
    )
    path = to_csv(tiny_project, frame)
    cfg = tiny_project
    cfg.write_text(cfg.read_text().replace("    labelled: [REGION, SEX, Q1]\n", "    labelled: [REGION, SEX, Q1]\n    ranges: {AGE: [18, 99]}\n"))
    for command in ("validate", "run"):
        err = assert_data_error(cfg, str(path), "column AGE is text", "clean.valid.ranges.AGE", 'row 41 has "unknown"', command=command)
        assert "ComputeError" not in err and "InvalidOperationError" not in err


def test_labelled_variable_delivered_as_text_is_named_with_its_codebook(tiny_project):
    """SEX has numeric value labels in its codebook; the CSV has a word in it."""
    frame = sav_frame(tiny_project)
    frame = frame.with_columns(frame.get_column("SEX").cast(pl.Int64).cast(pl.String).scatter(12, "female"))
    path = to_csv(tiny_project, frame)
    assert_data_error(tiny_project, str(path), "column SEX is text", "codebook", 'row 13 has "female"')


def test_csv_with_a_duplicated_column_name_is_refused(tiny_project):
    frame = sav_frame(tiny_project)
    header = ",".join(frame.columns).replace("STATUS", "SEX")
    path = to_csv(tiny_project, frame, header=header)
    err = assert_data_error(tiny_project, str(path), "column SEX appears twice", "columns 3 and 5")
    assert "SEX_duplicated_0" not in err
    assert_data_error(tiny_project, str(path), "column SEX appears twice", command="validate")


def _spoil_targets(cfg: Path, expr: pl.Expr, column: str) -> Path:
    path = raw_of(cfg) / "targets.csv"
    pl.read_csv(path).with_columns(expr.alias(column)).write_csv(path)
    return path


def test_group_with_population_zero_names_the_targets_file_and_group(tiny_project):
    _spoil_targets(tiny_project, pl.when(pl.col("REGION") == 1).then(0).otherwise(pl.col("population")), "population")
    err = assert_data_error(tiny_project, "raw/targets.csv", "weight.base.population_by", "group REGION = 1", "population")
    assert "remove them first" not in err


def test_group_with_population_zero_without_base_population_by(tiny_project):
    cfg = tiny_project
    cfg.write_text(cfg.read_text().replace("  base:\n    population_by: [REGION]\n", ""))
    _spoil_targets(cfg, pl.when(pl.col("REGION") == 1).then(0).otherwise(pl.col("population")), "population")
    assert_data_error(cfg, "raw/targets.csv", "weight.rake", "group REGION = 1")


CALIBRATIONS = {
    "rake": "  rake:\n    by: [REGION]\n    variables: [rk_sex]\n    tolerance: 1.0e-8\n",
    "poststratify": "  poststratify:\n    by: [REGION]\n    variable: rk_sex\n",
    "calibrate": "  calibrate:\n    by: [REGION]\n    variables: [rk_sex]\n",
}


def _use(cfg: Path, method: str) -> None:
    cfg.write_text(cfg.read_text().replace(CALIBRATIONS["rake"], CALIBRATIONS[method]))


@pytest.mark.parametrize("method", list(CALIBRATIONS))
def test_share_zero_for_a_category_with_respondents_is_an_error_in_every_method(tiny_project, method):
    _use(tiny_project, method)
    region1 = pl.col("REGION") == 1
    _spoil_targets(tiny_project, pl.when(region1).then(pl.when(pl.col("category") == 1).then(0.0).otherwise(1.0)).otherwise(pl.col("share")), "share")
    err = assert_data_error(tiny_project, "raw/targets.csv", f"weight.{method}", "rk_sex a target share of 0", "REGION 1 (North)", "weights must stay positive")
    assert "int * NoneType" not in err


@pytest.mark.parametrize("method", list(CALIBRATIONS))
def test_share_zero_for_a_category_nobody_has_is_dropped_and_reported(tiny_project, method):
    """A target category with share 0 and no respondent: nothing to match; margins.csv shows it
    with n 0 and shares 0, and the report (which multiplied None) is written."""
    from pipeline.cli import main

    cfg = tiny_project
    _use(cfg, method)
    cfg.write_text(cfg.read_text() + "export:\n  formats: [csv, markdown, report]\n")
    path = raw_of(cfg) / "targets.csv"
    t = pl.read_csv(path)
    extra = t.filter(pl.col("category") == 1).with_columns(pl.lit(3, dtype=t.schema["category"]).alias("category"), pl.lit(0.0).alias("share"))
    pl.concat([t, extra]).write_csv(path)
    assert main(["run", str(cfg), "--quiet"]) == 0
    wave = cfg.parent.parent / "outputs" / "tiny" / "w1"
    margins = pl.read_csv(wave / "weight" / "margins.csv").filter(pl.col("category") == 3)
    assert margins.height == 2
    assert margins.get_column("n").to_list() == [0, 0]
    for col in ("target_share", "unweighted_share", "base_share", "final_share", "error"):
        assert margins.get_column(col).to_list() == [0.0, 0.0], col
    assert (wave / "report.html").is_file()


def test_text_check_names_the_delivered_column_and_skips_empty_ones():
    from pipeline.errors import DataError
    from pipeline.io import Codebook
    from pipeline.stages.ingest import check_numeric_columns

    frame = pl.DataFrame({"EMPTY": pl.Series([None, None], dtype=pl.String), "AGE": ["34", "n/a"]})
    check_numeric_columns(frame.select("EMPTY"), Codebook(), Path("w2.csv"), {"EMPTY": "clean.valid.ranges.EMPTY"})
    with pytest.raises(DataError, match=r'w2.csv: column AGE_YRS \(AGE after waves\[\].rename\) is text, but clean.valid.ranges.AGE needs numbers; row 2 has "n/a"'):
        check_numeric_columns(frame, Codebook(), Path("w2.csv"), {"AGE": "clean.valid.ranges.AGE"}, renamed={"AGE": "AGE_YRS"})


def test_group_coded_as_text_in_the_data_but_numbers_in_the_targets(tiny_project):
    """REGION delivered as names ("North") while the targets file has codes: a polars SchemaError
    in the base weights' join before; now the targets file, the key and the column are named."""
    cfg = tiny_project
    frame = sav_frame(cfg)
    frame = frame.with_columns(pl.when(pl.col("REGION") == 1).then(pl.lit("North")).otherwise(pl.lit("South")).alias("REGION"))
    to_csv(cfg, frame)
    sidecar = raw_of(cfg) / "tiny.csv.codebook.json"
    import json

    book = json.loads(sidecar.read_text())
    for v in book["variables"]:
        if v["name"] == "REGION":
            v["value_labels"] = []
    sidecar.write_text(json.dumps(book))
    cfg.write_text(cfg.read_text().replace("labelled: [REGION, SEX, Q1]", "labelled: [SEX, Q1]"))
    err = assert_data_error(cfg, "raw/targets.csv", "weight.base.population_by column REGION holds numbers in the targets file but text in the data")
    assert "SchemaError" not in err


def test_text_column_used_only_in_a_derived_variable(tiny_project):
    """SEX delivered as words in a CSV and used only by clean.derive (``SEX IN (1, 2)``): the
    comparison of text with numbers was a polars InvalidOperationError traceback."""
    frame = sav_frame(tiny_project).with_columns(
        pl.when(pl.col("SEX") == 1).then(pl.lit("male")).otherwise(pl.lit("female")).alias("SEX")
    )
    to_csv(tiny_project, frame)
    import json

    sidecar = raw_of(tiny_project) / "tiny.csv.codebook.json"
    book = json.loads(sidecar.read_text())
    for v in book["variables"]:
        if v["name"] == "SEX":
            v["value_labels"] = []  # no numeric labels: only the expression needs numbers
    sidecar.write_text(json.dumps(book))
    cfg = tiny_project
    cfg.write_text(cfg.read_text().replace("labelled: [REGION, SEX, Q1]", "labelled: [REGION, Q1]"))
    for command in ("validate", "run"):
        res = run_cli(command, str(cfg))
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert "clean.derive (rk_sex): cannot evaluate" in res.stderr and "SEX holds text, not numeric codes" in res.stderr
        assert "larger expression" not in res.stderr  # polars' plan of the expression is not shown

"""Reading survey files with their codebook, and atomic writes."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyreadstat
import pytest

from pipeline.errors import DataError
from pipeline.io import Codebook, read_survey, write_json, write_text

from tinystudy import write_tiny_sav

DATA = Path(__file__).resolve().parent / "data"


def test_sav_codebook_travels(tmp_path):
    path = tmp_path / "tiny.sav"
    written = write_tiny_sav(path)
    frame, codebook = read_survey(path)
    assert frame.height == written.height
    assert frame.schema["Q1"] == pl.Int64  # whole-number doubles come back as integer codes
    q1 = codebook.get("Q1")
    assert q1.label == "Do you agree?"
    assert q1.value_labels == {1: "Yes", 2: "No", 8: "Don't know", 9: "Refused"}
    assert q1.missing_values == (8, 9)
    assert q1.is_user_missing(8) and not q1.is_user_missing(1)
    # user-missing codes are kept as values, not nulled
    assert frame.filter(pl.col("Q1") == 8).height == 2
    again = Codebook.from_json(codebook.to_json())
    assert again == codebook
    assert codebook.label_of("Q1", 8) == "Don't know"
    assert codebook.label_of("Q1", 3.0) == "3"


def test_dta_xpt_csv_parquet(tmp_path):
    frame = pl.DataFrame({"ID": [1.0, 2.0, 3.0], "Q": [1.0, 2.0, 1.0], "W": [1.5, 2.0, 0.5]})
    pyreadstat.write_dta(frame, str(tmp_path / "a.dta"), column_labels={"Q": "question"}, variable_value_labels={"Q": {1: "yes", 2: "no"}})
    pyreadstat.write_xport(frame, str(tmp_path / "a.xpt"), column_labels={"Q": "question"})
    frame.write_csv(tmp_path / "a.csv")
    frame.write_parquet(tmp_path / "a.parquet")
    for name in ("a.dta", "a.xpt", "a.csv", "a.parquet"):
        got, codebook = read_survey(tmp_path / name)
        assert got.get_column("Q").to_list() == [1, 2, 1], name
        assert got.get_column("W").to_list() == [1.5, 2.0, 0.5], name
        assert set(codebook.variables) >= {"ID", "Q", "W"}
    _, cb = read_survey(tmp_path / "a.dta")
    assert cb.get("Q").value_labels == {1: "yes", 2: "no"} and cb.get("Q").label == "question"


def test_sas7bdat():
    frame, codebook = read_survey(DATA / "small.sas7bdat")
    assert frame.get_column("Q1").to_list() == [1, 2, 8]
    assert frame.get_column("NAME").to_list() == ["a", "b", "c"]
    assert codebook.get("Q1").label == "Question one"


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="raw file not found: .*nope.sav"):
        read_survey(tmp_path / "nope.sav")
    (tmp_path / "a.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '\.xlsx'"):
        read_survey(tmp_path / "a.xlsx")
    (tmp_path / "bad.sav").write_text("not spss")
    with pytest.raises(DataError, match="bad.sav: cannot read the file"):
        read_survey(tmp_path / "bad.sav")


def test_atomic_write_leaves_no_temp_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "out" / "a.json"
    write_json(target, {"a": 1})
    assert target.read_text().strip().startswith("{")

    class Boom:
        pass

    with pytest.raises(TypeError):
        write_json(target, {"a": Boom()})
    assert '"a": 1' in target.read_text()  # the old file is intact
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temp file left
    write_text(target, "x")
    assert target.read_text() == "x"

"""The demo's second wave (issue 7): add 2014 to a study that ran 2012 alone, the trend, label drift."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]
WAVE_STAGES = ("ingest", "clean", "weight", "estimate", "export")


def wave_2014_entry(text: str) -> str:
    start = text.index('  - id: "2014"')
    end = text.index("\ningest:")
    return text[start:end]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("waves")
    shutil.copytree(ROOT / "configs", project / "configs")
    shutil.copytree(ROOT / "raw", project / "raw")
    return project


def test_adding_2014_reruns_only_2014_and_the_trends(project):
    cfg = project / "configs" / "insecure_communities.yaml"
    full = cfg.read_text()
    entry = wave_2014_entry(full)
    cfg.write_text(full.replace(entry, ""))  # the study as it was in 2012
    assert main(["run", str(cfg), "--quiet"]) == 0
    cfg.write_text(full)  # one more entry in waves:
    assert main(["run", str(cfg), "--quiet"]) == 0
    m = json.loads((project / "outputs" / "insecure_communities" / "manifest.json").read_text())
    assert {s: m["waves"]["2012"][s]["status"] for s in WAVE_STAGES} == {s: "cached" for s in WAVE_STAGES}
    assert {s: m["waves"]["2014"][s]["status"] for s in WAVE_STAGES} == {s: "ran" for s in WAVE_STAGES}
    assert m["study_stages"]["trends"]["status"] == "ran"
    assert m["study_stages"]["trends"]["diagnostics"]["waves"] == ["2012", "2014"]


def test_the_planted_change_is_detected_and_the_unchanged_items_mostly_not(project):
    t = pl.read_csv(project / "outputs" / "insecure_communities" / "trends" / "estimates.csv", infer_schema_length=None,
                    schema_overrides={"wave": pl.String, "by": pl.String, "flag": pl.String})
    ch = t.filter(pl.col("wave_from").is_not_null() & (pl.col("domain") == "All"))  # the changes between waves
    flags = dict(ch.select("estimate_id", pl.col("flag").fill_null("")).iter_rows())
    assert flags["contact_police_less_likely"] == "significant"  # planted: Q10A truth -8.0 points
    assert flags["afraid_leave_home"] == "significant"  # planted: Q10D truth -7.0 points
    # the other attitude items are unchanged in the population (the 2014 population is older and
    # its Q10A fell, so the mean age, the years in the U.S. and the number less likely move)
    unchanged = ["less_likely_offer_information", "feel_less_safe", "police_stop_without_reason"]
    assert sum(flags[k] == "significant" for k in unchanged) <= 1
    q10a = ch.filter(pl.col("estimate_id") == "contact_police_less_likely").row(0, named=True)
    assert -0.13 < q10a["estimate"] < -0.04 and q10a["ci_high"] < 0


def test_unmapped_label_drift_stops_the_run(project, capsys):
    cfg = project / "configs" / "insecure_communities.yaml"
    full = cfg.read_text()
    no_educ_labels = re.sub(r"      EDUC: \{.*?\}\n", "", full, count=1, flags=re.S)
    assert no_educ_labels != full
    cfg.write_text(no_educ_labels)
    try:
        assert main(["run", str(cfg), "--quiet"]) == 1
    finally:
        cfg.write_text(full)
    _, err = capsys.readouterr()
    assert "EDUC code 4: \"Some college/technical/associate's\" in wave 2012 but \"Associate's degree\" in wave 2014" in err


def test_trend_table_and_chart(project):
    trends = project / "outputs" / "insecure_communities" / "trends"
    table = (trends / "trend.md").read_text()
    assert "Change 2012–2014 (points for shares)" in table
    svg = (trends / "trend_chart.svg").read_text()
    # the legend names the estimates by their titles, not their ids (issue 14, item 5)
    assert "2012" in svg and "2014" in svg and "contact_police_less_likely" not in svg
    assert "Less likely to contact police if a victim of a crime, for…" in svg
    assert (trends / "trend_chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trend_word_document_numbers_trace_to_the_trend_estimates(project):
    """``trends/tables.docx`` (issue 14, item 3), read back with python-docx: its body rows are the
    tidy ``trends/trend.csv`` rows, and every share and change of shares is the rounding of the
    ``trends/estimates.csv`` row that file names, computed here independently (tables.decimals 0)."""
    import docx
    from docx.oxml.ns import qn

    trends = project / "outputs" / "insecure_communities" / "trends"
    (wt,) = docx.Document(str(trends / "tables.docx")).tables
    header = [r._tr for r in wt.rows if r._tr.trPr is not None and r._tr.trPr.find(qn("w:tblHeader")) is not None]
    assert header == [r._tr for r in wt.rows[:2]]  # the "Wave" spanner, then the column labels
    body = [[c.text for c in r.cells] for r in wt.rows[2:] if len({id(c._tc) for c in r.cells}) > 1]
    tidy = pl.read_csv(trends / "trend.csv", infer_schema_length=None, schema_overrides={"by": pl.String, "flag": pl.String})
    est = pl.read_csv(trends / "estimates.csv", infer_schema_length=None).to_dicts()
    cells = [part.to_dicts() for _, part in tidy.group_by("row", maintain_order=True)]
    assert len(body) == len(cells)
    checked = 0
    for shown, row in zip(body, cells, strict=True):
        assert shown[0] == row[0]["row_label"] and len(shown) == len(row) + 1
        for text, c in zip(shown[1:], row, strict=True):
            assert text == c["text"]
            src = est[c["source_row"]] if c["source_row"] is not None else None
            shares = src is not None and (src["statistic"] == "proportion" or (src["statistic"] == "difference" and src["difference_of"] == "proportion"))
            if not shares or text in ("*", "–"):
                continue
            value = re.match(r"^[+-]?\d+", text).group(0)
            expected = f"{100 * src['estimate']:{'+' if src['statistic'] == 'difference' else ''}.0f}"
            assert value == ("0" if expected.lstrip("+-") == "0" else expected), (text, src)  # no sign on a zero change
            checked += 1
    assert checked >= 15

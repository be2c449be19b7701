"""Issue 14, item 5: the finished look of the outputs, found by reading them (each fix tested here
or next to the output it touches)."""

from __future__ import annotations

from csvstudy import conformance_data, csv_project
from pipeline.cli import main

STRAT = """\
study: strat
waves:
  - id: "1"
    raw: RAW
design:
  weights: pw
  strata: [stype]
  fpc: [fpc]
export:
  formats: [csv, markdown]
estimates:
  - {id: api00_mean, mean: api00}
"""


def test_the_clean_report_has_no_empty_out_of_range_table(tmp_path):
    cfg = csv_project(tmp_path, conformance_data("apistrat.csv"), STRAT, "strat")
    assert main(["run", str(cfg), "--quiet"]) == 0
    report = (tmp_path / "outputs" / "strat" / "1" / "clean" / "report.md").read_text(encoding="utf-8")
    section = report.split("## Values set missing as out of range", 1)[1].split("##", 1)[0]
    assert "None: every value is within the valid codes and ranges." in section and "| variable | values |" not in section

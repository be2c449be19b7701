"""Disclosure counts the cell, and one untestable estimate does not stop the estimate stage
(issue 10, items 11 and 7), on the tiny study of tests/tinystudy.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyreadstat

from pipeline.cli import main

Q1_LABELS = {1: "Yes", 2: "No", 3: "Not sure", 8: "Don't know", 9: "Refused"}


def rewrite_sav(cfg: Path, change) -> pl.DataFrame:
    """Apply ``change`` to the tiny .sav's frame and write it back with its labels (Q1 also gets
    the code 3 'Not sure', which nobody chooses)."""
    path = cfg.parent.parent / "raw" / "tiny.sav"
    frame, meta = pyreadstat.read_sav(str(path), output_format="polars", user_missing=True)
    frame = change(frame)
    labels = dict(meta.variable_value_labels) | {"Q1": Q1_LABELS}
    pyreadstat.write_sav(frame, str(path), column_labels=meta.column_names_to_labels, variable_value_labels=labels, missing_ranges={"Q1": [8, 9]})
    return frame


def add_estimates(cfg: Path, yaml: str) -> None:
    cfg.write_text(cfg.read_text().replace("tables:\n  min_n: 5\n", yaml + "tables:\n  min_n: 5\n"))


def outputs(cfg: Path) -> Path:
    return cfg.parent.parent / "outputs" / "tiny" / "w1"


def test_a_cell_of_2_of_216_is_suppressed_for_disclosure(tiny_project):
    """Every answer of Q1 with don't know and refused in the base: 2 of the 216 respondents
    refused. The base n is 216 (far above tables.min_n), the cell is 2: suppressed (cell<10),
    not published as 1%."""
    from tinystudy import write_tiny_sav

    cfg = tiny_project
    write_tiny_sav(cfg.parent.parent / "raw" / "tiny.sav", n=218)

    def change(frame: pl.DataFrame) -> pl.DataFrame:
        q1 = frame.get_column("Q1").to_numpy().copy()
        status = frame.get_column("STATUS").to_numpy().copy()
        q1[(q1 == 8) | (q1 == 9)] = 1.0
        q1[[30, 60]] = 9.0  # two refusals
        status[100] = 2.0  # a second partial: 218 - 2 partials = 216 kept (the duplicate goes too)
        return frame.with_columns(pl.Series("Q1", q1), pl.Series("STATUS", status))

    rewrite_sav(cfg, change)
    add_estimates(cfg, "  - id: q1_every\n    proportion: Q1\n    denominator: all\n    by: [[]]\n")
    cfg.write_text(cfg.read_text().replace("tables:\n  min_n: 5\n", "tables:\n  min_n: 30\n  disclosure: {min_cell_n: 10}\n"))
    assert main(["run", str(cfg), "--quiet"]) == 0
    est = pl.read_csv(outputs(cfg) / "estimates.csv").filter(pl.col("estimate_id") == "q1_every")
    assert "cell_n" in est.columns
    rows = {r["level"]: r for r in est.iter_rows(named=True)}
    refused = rows["Refused"]
    assert refused["n"] == 216 and refused["cell_n"] == 2
    assert 0.001 < refused["estimate"] < 0.02  # about 1% of the base (weighted)
    assert refused["flag"] == "cell<10"
    # the other answers are large cells and not suppressed for disclosure
    assert not (rows["Yes"]["flag"] or "").startswith("cell") and rows["Yes"]["cell_n"] > 10
    # the cells add up to the base
    assert sum(r["cell_n"] for r in rows.values()) == 216
    # a level-combined estimate counts the respondents with any of its levels
    yes = pl.read_csv(outputs(cfg) / "estimates.csv").filter((pl.col("estimate_id") == "q1_yes") & (pl.col("domain") == "All")).row(0, named=True)
    assert yes["cell_n"] == rows["Yes"]["cell_n"]
    # the topline shows the suppression mark, not 1%
    topline = (outputs(cfg) / "tables" / "topline.md").read_text()
    refused_line = next(line for line in topline.splitlines() if "Refused" in line)
    assert "*" in refused_line and f"| {100 * refused['estimate']:.0f}" not in refused_line, refused_line


def test_a_test_with_one_level_is_skipped_and_reported_while_the_estimates_are_written(tiny_project):
    """'Not sure' (code 3) is a level nobody chose: its Rao-Scott test cannot be computed. The
    stage writes every estimate, the test's row says why it was skipped, and the banner note
    says so; the other estimates' tests are made."""
    cfg = tiny_project
    rewrite_sav(cfg, lambda f: f)
    add_estimates(cfg, "  - id: q1_unsure\n    proportion: Q1\n    levels: [3]\n    by: [[], [REGION]]\n")
    cfg.write_text(cfg.read_text().replace("tables:\n  min_n: 5\n", "tables:\n  min_n: 5\n  banners: [{id: by_region, columns: [[], [REGION]]}]\n"))
    assert main(["run", str(cfg), "--quiet"]) == 0
    est = pl.read_csv(outputs(cfg) / "estimates.csv")
    unsure = est.filter(pl.col("estimate_id") == "q1_unsure")
    assert unsure.height == 3 and unsure.get_column("estimate").to_list() == [0.0, 0.0, 0.0]
    assert est.filter(pl.col("estimate_id") == "q1_yes").height == 3
    tests = pl.read_csv(outputs(cfg) / "estimate" / "association_tests.csv")
    skipped = tests.filter(pl.col("estimate_id") == "q1_unsure").row(0, named=True)
    assert skipped["by"] == "REGION" and skipped["p_value"] is None
    assert "not tested" in skipped["skipped"] and "Not sure" in skipped["skipped"] and "2 levels" in skipped["skipped"]
    made = tests.filter(pl.col("estimate_id") == "q1_yes").row(0, named=True)
    assert not made["skipped"] and np.isfinite(made["p_value"])
    banner = (outputs(cfg) / "tables" / "by_region.md").read_text()
    assert "q1_unsure not tested" in banner and "q1_yes F(" in banner
    manifest = json.loads((cfg.parent.parent / "outputs" / "tiny" / "manifest.json").read_text())
    assert manifest["waves"]["w1"]["estimate"]["diagnostics"]["tests_skipped"] == 1


def test_a_test_of_a_raking_margin_within_its_groups_is_skipped_not_a_traceback(tiny_project):
    """rk_sex is raked to the targets within REGION, so its shares by REGION have no sampling
    variance: the Rao-Scott test divided by a zero trace (ZeroDivisionError traceback). It is
    reported as skipped with the reason, and the estimates are written."""
    cfg = tiny_project
    rewrite_sav(cfg, lambda f: f)
    add_estimates(cfg, "  - id: sex_male\n    proportion: rk_sex\n    levels: [1]\n    by: [[], [REGION]]\n")
    assert main(["run", str(cfg), "--quiet"]) == 0
    est = pl.read_csv(outputs(cfg) / "estimates.csv").filter(pl.col("estimate_id") == "sex_male")
    assert est.height == 3
    tests = pl.read_csv(outputs(cfg) / "estimate" / "association_tests.csv")
    row = tests.filter(pl.col("estimate_id") == "sex_male").row(0, named=True)
    assert row["p_value"] is None and "no sampling variance" in row["skipped"]

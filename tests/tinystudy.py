"""Builders for a tiny study project (labelled .sav, targets, config), shared by tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]

TINY_CONFIG = """\
study: tiny
title: "Tiny test study"
waves:
  - id: "w1"
    raw: ../raw/tiny.sav
    targets: ../raw/targets.csv
ingest:
  id: RESPID
  pii: [PHONE]
clean:
  drop_partials: {variable: STATUS, complete: [1]}
  drop_duplicates: {id: RESPID}
  valid:
    labelled: [REGION, SEX, Q1]
  required: [REGION]
  derive:
    - name: rk_sex
      expr: "CASE WHEN SEX IN (1, 2) THEN SEX END"
      value_labels: {1: "Male", 2: "Female"}
weight:
  base:
    population_by: [REGION]
  rake:
    by: [REGION]
    variables: [rk_sex]
    tolerance: 1.0e-8
design:
  weights: w_pop
  strata: [REGION]
estimates:
  - id: q1_yes
    proportion: Q1
    levels: [1]
    denominator: all
    by: [[], [REGION]]
  - id: q1_all
    proportion: Q1
    denominator: valid
    by: [[]]
tables:
  min_n: 5
"""


def write_tiny_sav(path: Path, *, n: int = 120, seed: int = 7) -> pl.DataFrame:
    """A small labelled SPSS file: 2 regions, sex, a yes/no item with DK/refused, 1 partial, 1 duplicate."""
    import pyreadstat

    rng = np.random.default_rng(seed)
    region = np.repeat([1.0, 2.0], n // 2)
    sex = np.where(rng.random(n) < 0.4, 1.0, 2.0)
    q1 = np.where(rng.random(n) < 0.45, 1.0, 2.0)
    q1[[3, 10, 20]] = [8.0, 9.0, 8.0]
    status = np.ones(n)
    status[5] = 2.0
    frame = pl.DataFrame(
        {
            "RESPID": np.arange(1, n + 1, dtype=float),
            "REGION": region,
            "SEX": sex,
            "Q1": q1,
            "STATUS": status,
            "PHONE": [f"555-{i:04d}" for i in range(n)],
        }
    )
    frame = pl.concat([frame, frame.slice(7, 1)])  # one exact duplicate
    path.parent.mkdir(parents=True, exist_ok=True)
    pyreadstat.write_sav(
        frame,
        str(path),
        column_labels={"Q1": "Do you agree?", "REGION": "Region", "SEX": "Sex"},
        variable_value_labels={
            "REGION": {1: "North", 2: "South"},
            "SEX": {1: "Male", 2: "Female"},
            "Q1": {1: "Yes", 2: "No", 8: "Don't know", 9: "Refused"},
            "STATUS": {1: "Complete", 2: "Partial"},
        },
        missing_ranges={"Q1": [8, 9]},
    )
    return frame


def write_tiny_targets(path: Path) -> None:
    rows = []
    for region, pop in ((1, 1000), (2, 3000)):
        for cat, share in ((1, 0.49), (2, 0.51)):
            rows.append({"REGION": region, "variable": "rk_sex", "category": cat, "share": share, "population": pop})
    pl.DataFrame(rows).write_csv(path)

"""A second study for tests/test_stage_reads.py: the tiny study with two waves and the options the
demo does not use (replicate variance, a wave's own missing codes, trends alpha, harmonize...)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import polars as pl

from tinystudy import TINY_CONFIG, write_tiny_sav, write_tiny_targets

EXTENDED = TINY_CONFIG.replace(
    '    targets: ../raw/targets.csv\n',
    '    targets: ../raw/targets.csv\n'
    '    missing_also: [{variables: [Q1], codes: [7]}]\n'
    '  - id: "w2"\n'
    '    raw: ../raw/tiny2.sav\n'
    '    targets: ../raw/targets.csv\n'
    '    rename: {GENDER: SEX}\n',
).replace(
    "design:\n  weights: w_pop\n  strata: [REGION]\n",
    "design:\n  weights: w_pop\n  strata: [REGION]\n  variance: replicate\n  replicates: {build: JKn}\n",
).replace(
    "tables:\n  min_n: 5\n",
    textwrap.dedent("""\
    tables:
      min_n: 5
      decimals: 1
      notes: [A note.]
      significance: {method: independent}
      banners: [{id: banner, columns: [[], [REGION]]}]
      trends: [{id: trend, title: Change, by: [[]]}]
      crosstabs: [{id: xtab, rows: Q1, columns: REGION, percent: row}]
    export:
      formats: [csv, markdown, html, latex, xlsx, methods]
    methods:
      sponsor: Nobody
      languages: [English]
    harmonize:
      same_meaning: [{variable: Q1, codes: [2]}]
    trends:
      alpha: 0.1
    """),
)


def write_wave2(path: Path) -> None:
    """The second wave: SEX renamed GENDER, more 'Yes' (as tests/stages/test_waves.py's)."""
    import pyreadstat

    frame = write_tiny_sav(path, seed=11)
    q1 = np.where(np.random.default_rng(5).random(frame.height) < 0.75, 1.0, 2.0)
    frame = frame.with_columns(pl.Series("Q1", q1)).rename({"SEX": "GENDER"})
    pyreadstat.write_sav(
        frame, str(path),
        variable_value_labels={"REGION": {1: "North", 2: "South"}, "GENDER": {1: "Male", 2: "Female"},
                               "Q1": {1: "Yes", 2: "No", 8: "Don't know", 9: "Refused"}, "STATUS": {1: "Complete", 2: "Partial"}},
        missing_ranges={"Q1": [8, 9]},
    )


#: the same with post-stratification and a nonresponse adjustment (the partials kept as the
#: nonrespondents), Taylor variance, and every format the trends stage writes
POSTSTRATIFIED = (
    EXTENDED.replace("  drop_partials: {variable: STATUS, complete: [1]}\n", "")
    .replace("  rake:\n    by: [REGION]\n    variables: [rk_sex]\n    tolerance: 1.0e-8\n",
             "  nonresponse: {respondent: 'STATUS = 1', classes: [REGION], min_respondents: 5, max_factor: 3}\n"
             "  poststratify: {variable: rk_sex, by: [REGION]}\n")
    .replace("  variance: replicate\n  replicates: {build: JKn}\n", "  ci_method: wilson\n")
    .replace("formats: [csv, markdown, html, latex, xlsx, methods]", "formats: [csv, markdown, html, latex, xlsx, svg, methods]")
    .replace("  banners: [{id: banner, columns: [[], [REGION]]}]\n", "")  # the methods' margins of error then follow the estimates
    .replace('title: "Tiny test study"\n', "")  # untitled: tables and charts are headed by the study's name
)


def write_extended(root: Path, text: str = EXTENDED) -> Path:
    """configs/tiny.yaml (two waves, ``text``), raw/tiny.sav, raw/tiny2.sav, raw/targets.csv."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    write_tiny_sav(root / "raw" / "tiny.sav")
    write_wave2(root / "raw" / "tiny2.sav")
    write_tiny_targets(root / "raw" / "targets.csv")
    cfg = root / "configs" / "tiny.yaml"
    cfg.write_text(textwrap.dedent(text))
    return cfg

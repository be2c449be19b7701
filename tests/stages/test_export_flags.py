"""Reliability and disclosure flags (pipeline.flags): the NCHS Data Presentation
Standards for Proportions (Parker et al. 2017) and the minimum cell size."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.config import ReliabilityConfig, TablesConfig
from pipeline.flags import flags, is_suppressed, parse_flag
from pipeline.survey.intervals import ProportionInputs, proportion_ci


DEFAULT = TablesConfig()


def flag_of(n, p, se, df=None, tables=DEFAULT, cell=None):
    cell = n if cell is None else cell  # the disclosure rule counts the cell (tests/faults/test_disclosure.py)
    rows = pl.DataFrame({"n": [n], "cell_n": [cell], "estimate": [p], "se": [se], "df": [float(n - 1 if df is None else df)]})
    return flags(rows, tables)[0]


def kg_width(n, p, se, df):
    low, high = proportion_ci(ProportionInputs.simple(p, se**2, df=df, n=n), "korn_graubard", 0.95)
    return float(high[0] - low[0])


def test_each_rule_in_the_order_of_the_standard():
    assert flag_of(5, 0.5, 0.1) == "cell<10"  # disclosure first
    assert flag_of(20, 0.5, 0.1) == "n<30"
    assert flag_of(100, 0.9, 0.08) == "n_eff<30"  # p(1-p)/var = 14
    assert kg_width(40, 0.5, 0.08, 39) >= 0.30 and flag_of(40, 0.5, 0.08) == "ci_width>=0.3"
    assert 0.05 < kg_width(40, 0.02, 0.02, 39) < 0.30 and flag_of(40, 0.02, 0.02) == "rel_ci_width>1.3"
    assert flag_of(2000, 0.44, 0.018) == ""


def test_review_flags_on_shown_estimates():
    assert flag_of(200, 0.97, 0.012, df=5) == "complement_rel_ci_width>1.3; df<8"
    assert flag_of(40, 0.0, 0.0) == "estimate=0" and flag_of(40, 1.0, 0.0) == "estimate=1"
    assert not is_suppressed("df<8; estimate=1") and is_suppressed("n_eff<30")


def test_a_suppressed_row_has_one_flag_the_first_rule():
    """tests/stages/test_weight_estimate.py relies on rows below min_n carrying only ``n<min_n``."""
    tables = TablesConfig(min_n=150)
    rows = pl.DataFrame({"n": [40, 140], "cell_n": [40, 140], "estimate": [0.0, 0.5], "se": [0.0, 0.2], "df": [3.0, 139.0]})
    assert flags(rows, tables).to_list() == ["n<150", "n<150"]


def test_thresholds_come_from_the_config():
    loose = TablesConfig(min_n=5, disclosure={"min_cell_n": 3}, reliability={"min_effective_n": 10, "max_ci_width": 0.5, "min_df": 2})
    assert flag_of(20, 0.5, 0.1, tables=loose) == ""
    assert flag_of(20, 0.5, 0.1, tables=TablesConfig(min_n=5, reliability={"standard": "none"})) == ""
    assert flag_of(8, 0.5, 0.1, tables=TablesConfig(min_n=5, reliability={"standard": "none"})) == "cell<10"
    with pytest.raises(ValueError, match="ci_width_ok must be smaller than max_ci_width"):
        ReliabilityConfig(ci_width_ok=0.3, max_ci_width=0.2)


def test_codes_parse_to_rules_with_their_thresholds():
    parsed = [(r.name, r.action, t) for r, t in parse_flag("ci_width>=0.3; df<8")]
    assert parsed == [("ci_width", "suppress", "30 points"), ("df", "review", "8")]
    assert [(r.action, r.symbol) for r, _ in parse_flag("some other rule")] == [("review", "†")]


def test_vectorised_over_many_rows():
    rng = np.random.default_rng(1)
    n = rng.integers(1, 3000, 500)
    p = rng.uniform(0, 1, 500)
    rows = pl.DataFrame({"n": n, "cell_n": n, "estimate": p, "se": np.sqrt(p * (1 - p) / n * 2), "df": (n - 1).astype(float)})
    got = flags(rows, TablesConfig())
    assert got.len() == 500
    assert all(f == "cell<10" for f, k in zip(got, n, strict=True) if k < 10)


def test_the_standard_applies_to_proportions_only():
    rows = pl.DataFrame({"statistic": ["mean", "proportion"], "n": [100, 100], "cell_n": [100, 90], "estimate": [0.9, 0.9], "se": [0.08, 0.08], "df": [99.0, 99.0]})
    assert flags(rows, TablesConfig()).to_list() == ["", "n_eff<30"]
    rows = pl.DataFrame({"statistic": ["total"], "n": [20], "cell_n": [None], "estimate": [5.0], "se": [1.0], "df": [19.0]})
    assert flags(rows, TablesConfig()).to_list() == ["n<30"]

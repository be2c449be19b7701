"""The coverage study's machinery on two replicates (the study itself is a benchmark:
tests/benchmarks/bench_coverage.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.simulate import simulate_delivery
from pipeline.simulate.coverage import HEADLINES, coverage_study, summarize

ROOT = Path(__file__).resolve().parents[2]


def test_two_replicates_of_one_population():
    r = coverage_study(ROOT / "configs" / "insecure_communities.yaml", replicates=2, first_seed=7, population_seed=20121120, processes=1)
    assert r.height == 2 * 2 * len(HEADLINES)
    truth = simulate_delivery(seed=7, population_seed=20121120).truth.filter(pl.col("domain") == "All")
    q10a = truth.filter(pl.col("variable") == "Q10A").get_column("share")[0]
    assert set(r.filter(pl.col("estimate_id") == "contact_police_less_likely").get_column("truth").to_list()) == {q10a}
    assert (r.get_column("covered") == ((r["ci_low"] <= r["truth"]) & (r["truth"] <= r["ci_high"]))).all()
    s = summarize(r)
    assert s.height == 4 and (s.get_column("replicates") == 2).all()
    # the two samples differ, the population does not
    assert r.filter(pl.col("data") == "clean").get_column("estimate").n_unique() == 4


def test_fixed_population_seed_gives_the_same_population():
    a = simulate_delivery(seed=1, population_seed=5, n=200)
    b = simulate_delivery(seed=2, population_seed=5, n=200)
    assert a.targets.equals(b.targets) and a.truth.equals(b.truth)
    assert not a.clean.equals(b.clean)
    assert simulate_delivery(seed=3, n=200).truth.get_column("share")[0] != pytest.approx(a.truth.get_column("share")[0], rel=1e-12)

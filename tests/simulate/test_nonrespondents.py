"""``simulate_delivery(nonrespondents=True)``: a delivery that keeps its eligible nonrespondents
(issue 13, item 4), for the propensity-model nonresponse adjustment; the default delivery is unchanged."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.simulate import simulate_delivery
from pipeline.simulate._nonrespondents import NONRESPONDENT_STATUS, RESPONSE_SCALE

KNOWN = {"RESPID", "PHONE_HASH", "COUNTY", "FRAME", "INTDATE", "STATUS", "S1", "SEX", "AGE", "AGECAT", "PHONESTAT", "HH_ADULTS"}


@pytest.fixture(scope="module")
def pair():
    return simulate_delivery(n=400, seed=11), simulate_delivery(n=400, seed=11, nonrespondents=True)


def test_the_delivered_records_are_the_default_delivery(pair):
    plain, kept = pair
    assert kept.data.head(plain.data.height).equals(plain.data)
    assert kept.answer_key.head(plain.answer_key.height).equals(plain.answer_key)
    assert kept.clean.equals(plain.clean) and kept.targets.equals(plain.targets)
    assert NONRESPONDENT_STATUS not in plain.codebook.value_labels["STATUS"]


def test_nonrespondents_carry_the_frame_and_screener_items_only(pair):
    plain, kept = pair
    nr = kept.data.slice(plain.data.height)
    assert nr.height > 0 and (nr.get_column("STATUS") == NONRESPONDENT_STATUS).all()
    for name in nr.columns:
        nulls = nr.get_column(name).null_count()
        if name == "HH_ADULTS":
            assert (nr.get_column(name).is_null() == (nr.get_column("FRAME") == 2)).all()
        elif name in KNOWN:
            assert nulls == 0, name
        else:
            assert nulls == nr.height, name
    assert kept.data.get_column("RESPID").n_unique() == kept.data.height - plain.data.height + plain.data.get_column("RESPID").n_unique()
    assert kept.data.get_column("PHONE_HASH").n_unique() == nr.height + plain.data.get_column("PHONE_HASH").n_unique()
    key = kept.answer_key.slice(plain.data.height)
    assert key.get_column("RESPID").to_list() == nr.get_column("RESPID").to_list()
    assert key.select(pl.col("^DQ_[A-Z]+$").exclude("DQ_DETAIL", "DQ_DRIFT")).sum().row(0) == (0,) * 8
    assert key.get_column("DQ_DRIFT").to_list() == (nr.get_column("COUNTY") == 4).cast(pl.Int8).to_list()  # 2012: Maricopa's batch
    assert kept.codebook.value_labels["STATUS"][NONRESPONDENT_STATUS].startswith("Eligible, no interview")


def test_the_response_rate_follows_the_propensity(pair):
    """Per stratum as many nonrespondents as completes x (1 - r) / r; and those less likely to
    respond (young men, section 7.3) are over-represented among them."""
    plain, kept = pair
    nr = kept.data.slice(plain.data.height)
    done = plain.clean
    rate = done.height / (done.height + nr.height)
    assert 0.25 < rate < 0.5  # RESPONSE_SCALE x a mean propensity near 1
    assert RESPONSE_SCALE == 0.4

    def share_young_men(f):
        return float(((f.get_column("SEX") == 1) & (f.get_column("AGE") < 30)).mean())

    assert share_young_men(nr) > share_young_men(done) + 0.03
    counts = nr.group_by("COUNTY", "FRAME").len().sort("COUNTY", "FRAME").get_column("len").to_numpy()
    assert counts.shape == (8,) and (counts > 0).all() and np.ptp(counts) < counts.mean()


def test_the_drifted_batch_codes_its_nonrespondents_alike():
    """2014: Harris's vendor batch exports SEX as 0/1, its nonrespondents too (the wave's recode
    maps both back)."""
    kept = simulate_delivery(wave="2014", n=400, seed=11, nonrespondents=True)
    nr = kept.data.filter(pl.col("STATUS") == NONRESPONDENT_STATUS)
    harris = nr.filter(pl.col("COUNTY") == 2).get_column("SEX").unique().sort().to_list()
    others = nr.filter(pl.col("COUNTY") != 2).get_column("SEX").unique().sort().to_list()
    assert (harris, others) == ([0, 1], [1, 2])

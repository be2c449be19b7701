"""Acceptance checks of the synthetic demo data (studies/insecure_communities.md section 7.8).

The generator runs once per module (a few seconds); every check below reads that one delivery.
The detectors in this file are written independently of the generator, from the codebook rules,
so "the answer key counts match" means: what the key says was injected is exactly what a
validator finds.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.errors import ConfigError
from pipeline.simulate import DEFAULT_SEED, Delivery, delivery_paths, simulate_delivery, write_delivery

ROOT = Path(__file__).resolve().parents[2]
COMMITTED_RAW = ROOT / "raw"

FIELD_START, FIELD_END = dt.date(2012, 11, 17), dt.date(2012, 12, 10)  # section 2
BATTERY = ["Q10A", "Q10B", "Q10C", "Q10D", "Q10E", "Q10F"]
FLAGS = ["DQ_DUP", "DQ_NEARDUP", "DQ_OOR", "DQ_PARTIAL", "DQ_SPEEDER", "DQ_SKIP", "DQ_DATE", "DQ_DRIFT", "DQ_INTVR"]
COUNTY_ADULTS = {1: 830_000, 2: 1_080_000, 3: 3_350_000, 4: 720_000}  # section 5b

#: Section 7.7 counts at n = 2,004 (OOR rows: 48 Q10/Q11 cells + 10 EDUC + 2 COUNTY + 3 AGE + 4 YRS_US).
EXPECTED_FLAG_COUNTS = {
    "DQ_DUP": 12,
    "DQ_NEARDUP": 6,
    "DQ_OOR": 67,
    "DQ_PARTIAL": 100,
    "DQ_SPEEDER": 50,
    "DQ_SKIP": 30,
    "DQ_DATE": 3,
    "DQ_INTVR": 40,
}
#: Section 7.6 table "implied ALL": Q10A 44.2, Q10D 38.5 (printed to one decimal).
TRUTH_Q10A, TRUTH_Q10D, TRUTH_TOL = 0.442, 0.385, 0.0015
#: Base weights (section 7.4 step 1) correct the selection (frames, adults in the household), not
#: the section 7.3 nonresponse, which pulls Q10A about 5 points down unweighted; raking removes
#: most of the rest. So base-weighted Q10A is only required within 5 points of the truth.
BASE_WEIGHTED_TOL = 0.05
#: Shares in the CSVs are recomputed on another machine: allow last-digit differences of libm.
FLOAT_RTOL = 1e-12
SPEEDER_SHARE = 0.4  # section 7.7: DURATION < 0.4 x the language median


@pytest.fixture(scope="module")
def delivery() -> Delivery:
    return simulate_delivery()


@pytest.fixture(scope="module")
def keyed(delivery: Delivery) -> pl.DataFrame:
    """The delivery with its answer key alongside (same row order)."""
    return pl.concat([delivery.data, delivery.answer_key.drop("RESPID")], how="horizontal")


@pytest.fixture(scope="module")
def completes(keyed: pl.DataFrame) -> pl.DataFrame:
    """The completes after removing duplicates, near-duplicate re-interviews and partials."""
    return keyed.filter((pl.col("DQ_DUP") == 0) & (pl.col("DQ_NEARDUP") == 0) & (pl.col("DQ_PARTIAL") == 0))


# --- arguments ------------------------------------------------------------------------------


def test_unknown_wave_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        simulate_delivery(wave="2014")
    assert str(info.value) == (
        "simulate: unknown wave '2014'; the synthetic study defines wave(s) 2012\n  hint: use one of: 2012"
    )


def test_bad_seed_and_n_are_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        simulate_delivery(seed=-1, n=10)
    assert info.value.problems == [
        "seed must be a non-negative integer (got -1)",
        "n must be an integer from 100 to 50000 (got 10)",
    ]


# --- counts (section 7.8: n(complete, deduplicated) = 2,004, 501 per county) ------------------


def test_completes_after_removing_extras(completes: pl.DataFrame) -> None:
    assert completes.height == 2004
    assert completes["STATUS"].unique().to_list() == [1]
    assert completes["RESPID"].n_unique() == 2004
    per_county = dict(completes.group_by("COUNTY").len().iter_rows())
    assert per_county == {1: 501, 2: 501, 3: 501, 4: 501}
    per_stratum = dict(((c, f), k) for c, f, k in completes.group_by("COUNTY", "FRAME").len().iter_rows())
    assert all(per_stratum[(c, 1)] == 250 and per_stratum[(c, 2)] == 251 for c in range(1, 5))


def test_row_count_and_answer_key_alignment(delivery: Delivery) -> None:
    key = delivery.answer_key
    assert delivery.data.height == 2004 + 12 + 6 + 100
    assert key["row"].to_list() == list(range(1, delivery.data.height + 1))
    assert key["RESPID"].to_list() == delivery.data["RESPID"].to_list()
    assert "WEIGHT" not in delivery.data.columns and "WEIGHT_POP" not in delivery.data.columns


def test_answer_key_counts_match_the_injections(delivery: Delivery) -> None:
    counts = {flag: int(delivery.answer_key[flag].sum()) for flag in FLAGS}
    maricopa = int((delivery.data["COUNTY"] == 4).sum())
    assert counts == {**EXPECTED_FLAG_COUNTS, "DQ_DRIFT": maricopa}


def test_counts_scale_with_n() -> None:
    small = simulate_delivery(n=200)
    key = small.answer_key
    kept = small.data.filter((key["DQ_DUP"] == 0) & (key["DQ_NEARDUP"] == 0) & (key["DQ_PARTIAL"] == 0))
    assert dict(kept.group_by("COUNTY").len().iter_rows()) == {1: 50, 2: 50, 3: 50, 4: 50}
    assert {flag: int(key[flag].sum()) for flag in ("DQ_DUP", "DQ_NEARDUP", "DQ_SPEEDER", "DQ_INTVR")} == {
        "DQ_DUP": 1,
        "DQ_NEARDUP": 1,
        "DQ_SPEEDER": 5,
        "DQ_INTVR": 4,
    }


# --- each flag is what a validator finds -------------------------------------------------------


def test_exact_duplicates_are_detectable(keyed: pl.DataFrame, delivery: Delivery) -> None:
    data = delivery.data
    seen: set[tuple] = set()
    found = []
    for row in data.iter_rows():
        found.append(int(row in seen))
        seen.add(row)
    assert found == keyed["DQ_DUP"].to_list()


def test_near_duplicates_share_a_phone_with_a_new_respid(keyed: pl.DataFrame) -> None:
    rows = keyed.filter(pl.col("DQ_DUP") == 0).with_row_index("i")
    repeated = rows.filter(pl.col("PHONE_HASH").is_duplicated())
    assert repeated.height == 12
    for _, pair in repeated.group_by("PHONE_HASH"):
        pair = pair.sort("INTDATE")
        assert pair["RESPID"].n_unique() == 2
        first, second = pair.row(0, named=True), pair.row(1, named=True)
        assert (first["DQ_NEARDUP"], second["DQ_NEARDUP"]) == (0, 1)
        assert 1 <= (second["INTDATE"] - first["INTDATE"]).days <= 5
        for name in ("COUNTY", "FRAME", "LANG", "SEX", "AGE", "EDUC", "BORN", "ORIGIN"):
            assert first[name] == second[name]
        changed = sum(first[name] != second[name] for name in (*BATTERY, "Q11", "Q12", "Q13", "Q15", "INCOME"))
        assert 1 <= changed <= 5


def test_partials_are_status_2_with_blanks_after_the_break(keyed: pl.DataFrame) -> None:
    assert ((keyed["STATUS"] == 2) == (keyed["DQ_PARTIAL"] == 1)).all()
    partials = keyed.filter(pl.col("DQ_PARTIAL") == 1)
    assert partials["INCOME"].is_null().all()  # the last question is never reached
    by_frame = dict(partials.group_by("FRAME").len().iter_rows())
    assert by_frame[2] > by_frame[1]  # more break-offs on the cell frame
    rate = keyed.group_by("LANG").agg(pl.col("DQ_PARTIAL").mean()).sort("LANG")["DQ_PARTIAL"]
    assert rate[1] > rate[0]  # and in Spanish


def test_speeders_are_below_four_tenths_of_the_language_median(keyed: pl.DataFrame) -> None:
    comp = keyed.filter((pl.col("STATUS") == 1) & (pl.col("DQ_DUP") == 0))
    median = pl.col("DURATION").median().over("LANG")
    found = comp.with_columns((pl.col("DURATION") < SPEEDER_SHARE * median).cast(pl.Int8).alias("found"))
    assert found["found"].to_list() == found["DQ_SPEEDER"].to_list()
    speeders = comp.filter(pl.col("DQ_SPEEDER") == 1)
    straight = speeders.select(pl.concat_list(BATTERY).list.n_unique() == 1).to_series().sum()
    assert straight == 30  # 60% of 50


def _out_of_range(data: pl.DataFrame, delivery: Delivery) -> np.ndarray:
    """Rows with a code outside the codebook (reading the Maricopa batch in its own coding)."""
    cb = delivery.codebook
    maricopa = (data["COUNTY"] == 4).to_numpy()
    bad = np.zeros(data.height, dtype=bool)
    for name in cb.valid_ranges:
        values = data[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        if name in BATTERY:
            values = np.where(maricopa & (values == 98), 8, values)
        if name == "EDUC":
            values = np.where(maricopa & (values >= 0) & (values <= 5), values + 1, values)
        bad |= ~cb.is_valid(name, values)
    age, years = data["AGE"].to_numpy(), data["YRS_US"].to_numpy()
    both = (~np.isnan(age.astype(float))) & (age >= 18) & (age <= 97) & (years >= 0) & (years <= 96)
    bad |= both & (years > age)
    return bad


def test_out_of_range_codes_are_exactly_the_injected_ones(keyed: pl.DataFrame, delivery: Delivery) -> None:
    data = keyed.select(delivery.codebook.variables).with_columns(
        pl.col("AGE", "YRS_US").cast(pl.Float64).fill_null(np.nan)
    )
    found = _out_of_range(data, delivery)
    assert found.astype(int).tolist() == keyed["DQ_OOR"].to_list()


def _skip_violations(data: pl.DataFrame) -> pl.Series:
    """Rows breaking a skip rule of the codebook (blank = not asked)."""

    def asked_if(name: str, code: int) -> pl.Expr:
        return (pl.col(name) == code).fill_null(False)

    rules = [
        asked_if("BORN", 3) != pl.col("YRS_US").is_not_null(),
        asked_if("BORN", 3) != pl.col("CITIZEN").is_not_null(),
        asked_if("CITIZEN", 2) != pl.col("LEGAL").is_not_null(),
        asked_if("Q14", 1) != pl.col("Q14A").is_not_null(),
        asked_if("FRAME", 1) != pl.col("HH_ADULTS").is_not_null(),
    ]
    return data.select(pl.any_horizontal(rules)).to_series()


def test_skip_patterns_hold_apart_from_injected_violations(keyed: pl.DataFrame) -> None:
    complete = keyed.filter(pl.col("STATUS") == 1)
    assert _skip_violations(complete).cast(pl.Int8).to_list() == complete["DQ_SKIP"].to_list()
    # A break-off leaves later questions blank, but never fills a question that was skipped.
    partial = keyed.filter(pl.col("STATUS") == 2)
    filled_but_skipped = partial.select(
        ((pl.col("BORN") != 3) & pl.col("CITIZEN").is_not_null())
        | ((pl.col("CITIZEN") != 2) & pl.col("LEGAL").is_not_null())
        | ((pl.col("Q14") != 1) & pl.col("Q14A").is_not_null())
        | ((pl.col("FRAME") == 2) & pl.col("HH_ADULTS").is_not_null())
    ).to_series()
    assert not filled_but_skipped.fill_null(False).any()


def test_dates_fall_in_the_field_window_apart_from_injected_ones(keyed: pl.DataFrame, completes: pl.DataFrame) -> None:
    outside = ~keyed["INTDATE"].is_between(FIELD_START, FIELD_END)
    assert outside.cast(pl.Int8).to_list() == keyed["DQ_DATE"].to_list()
    wrong_dates = set(keyed.filter(pl.col("DQ_DATE") == 1)["INTDATE"].to_list())
    assert wrong_dates <= {dt.date(2012, 11, 16), dt.date(2012, 12, 11)}
    cleaned = completes.filter(pl.col("DQ_DATE") == 0)
    assert cleaned["INTDATE"].is_between(FIELD_START, FIELD_END).all()
    per_day = dict(cleaned.group_by("INTDATE").len().iter_rows())
    weekend = [k for d, k in per_day.items() if d.weekday() >= 5]
    weekday = [k for d, k in per_day.items() if d.weekday() < 5 and d != dt.date(2012, 11, 22)]
    assert per_day[dt.date(2012, 11, 22)] < 0.5 * np.mean(weekday)  # Thanksgiving dip
    assert np.mean(weekend) > np.mean(weekday)  # weekend bump


def test_maricopa_batch_has_drifted_codes(keyed: pl.DataFrame) -> None:
    assert ((keyed["COUNTY"] == 4) == (keyed["DQ_DRIFT"] == 1)).all()
    maricopa = keyed.filter(pl.col("COUNTY") == 4)
    others = keyed.filter(pl.col("COUNTY") != 4)

    def battery_codes(frame: pl.DataFrame) -> set[int]:
        return set(frame.select(pl.concat_list(BATTERY).explode().drop_nulls()).to_series())

    assert 98 in battery_codes(maricopa) and 8 not in battery_codes(maricopa)
    assert 8 in battery_codes(others) and 98 not in battery_codes(others)
    assert 0 in set(maricopa["EDUC"]) and 6 not in set(maricopa["EDUC"])


def test_fabricating_interviewer_is_detectable(keyed: pl.DataFrame) -> None:
    comp = keyed.filter((pl.col("STATUS") == 1) & (pl.col("DQ_DUP") == 0))
    stats = comp.group_by("INTVR").agg(
        pl.len().alias("n"),
        pl.any_horizontal([pl.col(q).is_in([8, 9, 98]) for q in BATTERY]).mean().alias("dk_rate"),
        (pl.concat_str(BATTERY).value_counts(sort=True).first().struct.field("count") / pl.len()).alias("modal_share"),
    )
    suspects = stats.filter((pl.col("n") >= 20) & (pl.col("dk_rate") == 0) & (pl.col("modal_share") >= 0.5))
    assert suspects.height == 1
    fabricator = suspects["INTVR"].item()
    assert (comp["INTVR"] == fabricator).cast(pl.Int8).to_list() == comp["DQ_INTVR"].to_list()


def test_only_flagged_rows_differ_from_the_clean_interviews(keyed: pl.DataFrame, delivery: Delivery) -> None:
    untouched = keyed.filter(pl.all_horizontal([pl.col(f) == 0 for f in FLAGS if f != "DQ_DRIFT"]))
    # Undo the Maricopa batch's coding: then the rows must be exactly the clean interviews.
    maricopa = pl.col("COUNTY") == 4
    undone = untouched.with_columns(
        *[pl.when(maricopa & (pl.col(q) == 98)).then(8).otherwise(pl.col(q)).alias(q) for q in BATTERY],
        pl.when(maricopa & (pl.col("EDUC") <= 5)).then(pl.col("EDUC") + 1).otherwise(pl.col("EDUC")).alias("EDUC"),
    )
    clean = delivery.clean.filter(pl.col("RESPID").is_in(untouched["RESPID"].implode()))
    assert untouched.height == 2004 - 50 - 67 + 2 - 30 - 3 - 40  # minus the problem rows (COUNTY=5 is on partials)
    assert undone.select(delivery.codebook.variables).sort("RESPID").equals(clean.sort("RESPID"))


# --- codes and labels --------------------------------------------------------------------------


def test_clean_interviews_use_only_valid_codes(delivery: Delivery) -> None:
    cb = delivery.codebook
    for name in cb.valid_ranges:
        values = delivery.clean[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
        assert cb.is_valid(name, values).all(), name
    assert (delivery.clean["S1"] == 1).all()


def test_derived_variables_follow_the_codebook(delivery: Delivery) -> None:
    c = delivery.clean
    age = pl.col("AGE")
    agecat = c.select(
        pl.when(age == 99).then(9).when(age >= 65).then(4).when(age >= 45).then(3).when(age >= 30).then(2).otherwise(1)
    ).to_series()
    assert agecat.cast(pl.Int32).to_list() == c["AGECAT"].to_list()
    status4 = c.select(
        pl.when(pl.col("BORN").is_in([1, 2]))
        .then(1)
        .when((pl.col("BORN") == 3) & (pl.col("CITIZEN") == 1))
        .then(2)
        .when((pl.col("CITIZEN") == 2) & pl.col("LEGAL").is_in([1, 2]))
        .then(3)
        .when(pl.col("LEGAL") == 3)
        .then(4)
        .otherwise(9)
    ).to_series()
    assert status4.cast(pl.Int32).to_list() == c["STATUS4"].to_list()
    educ_groups = c.filter(pl.col("EDUC") <= 6)["EDUC"].unique().sort().to_list()
    assert educ_groups == [1, 2, 3, 4, 5, 6]
    assert c.filter(pl.col("BORN") == 2)["ORIGIN"].unique().to_list() == [2]


def test_income_item_nonresponse_is_about_14_percent(delivery: Delivery) -> None:
    share = delivery.clean["INCOME"].is_in([8, 9]).mean()
    assert 0.11 <= share <= 0.17


# --- composition, targets, truth ---------------------------------------------------------------


def test_targets_schema_and_shares(delivery: Delivery) -> None:
    t = delivery.targets
    assert t.columns == [
        "county", "county_label", "variable", "category", "label", "share", "population", "source", "year"
    ]
    sums = t.group_by("county", "variable").agg(pl.col("share").sum())
    assert np.allclose(sums["share"].to_numpy(), 1.0, rtol=0, atol=1e-12)
    categories = dict(t.filter(pl.col("county") == 1).group_by("variable").len().iter_rows())
    assert categories == {"rk_sex_age": 8, "rk_educ": 4, "rk_citizen": 3, "rk_phone": 3}
    assert dict(t.select("county", "population").unique().iter_rows()) == COUNTY_ADULTS
    assert (t["year"] == 2012).all() and t["source"].str.contains(f"seed={DEFAULT_SEED}").all()
    first = t.filter((pl.col("variable") == "rk_sex_age") & (pl.col("category") == 1))["label"][0]
    assert first == "Male 18-29"


def test_truth_matches_the_calibrated_figures(delivery: Delivery) -> None:
    truth = delivery.truth
    overall = dict(truth.filter(pl.col("by") == "").select("variable", "share").rows()[:8])
    assert overall["Q10A"] == pytest.approx(TRUTH_Q10A, abs=TRUTH_TOL)
    assert overall["Q10D"] == pytest.approx(TRUTH_Q10D, abs=TRUTH_TOL)
    assert overall["Q11"] == pytest.approx(0.622, abs=TRUTH_TOL)
    cook = truth.filter((pl.col("variable") == "Q10A") & (pl.col("domain") == "Cook"))["share"].item()
    assert cook == pytest.approx(0.392, abs=TRUTH_TOL)  # section 7.6: 39.2
    by_status = truth.filter((pl.col("variable") == "Q10A") & (pl.col("by") == "STATUS4")).sort("domain_code")["share"]
    assert by_status.to_list() == pytest.approx([0.28, 0.48, 0.52, 0.70], abs=0.01)  # "target agree"
    undocumented = truth.filter((pl.col("variable") == "STATUS4") & (pl.col("by") == "") & (pl.col("levels") == "4"))
    assert undocumented["share"].item() == pytest.approx(0.238, abs=0.002)  # section 7.4 table


def test_unweighted_sample_is_older_more_female_better_educated(completes: pl.DataFrame, delivery: Delivery) -> None:
    # Equal allocation: compare with the counties' target shares averaged with equal weight.
    t = delivery.targets.group_by("variable", "category").agg(pl.col("share").mean())
    target = {(v, c): s for v, c, s in t.iter_rows()}
    male = sum(target[("rk_sex_age", k)] for k in (1, 2, 3, 4))
    old = target[("rk_sex_age", 4)] + target[("rk_sex_age", 8)]
    sample_male = (completes["SEX"] == 1).mean()
    sample_old = (completes["AGECAT"] == 4).mean()
    educ = completes["EDUC"].to_numpy()
    maricopa = completes["COUNTY"].to_numpy() == 4
    educ = np.where(maricopa & (educ <= 5), educ + 1, educ)  # the drifted batch's coding
    assert sample_male < male - 0.03
    assert sample_old > old + 0.03
    assert np.mean(educ >= 5) > target[("rk_educ", 4)] + 0.03
    assert np.mean(educ <= 2) < target[("rk_educ", 1)] - 0.03


def test_base_weights_bring_q10a_near_the_truth(completes: pl.DataFrame, delivery: Delivery) -> None:
    """Section 7.4 step 1, computed here independently of the pipeline's weighting code."""
    n_county = dict(completes.group_by("COUNTY").len().iter_rows())
    base = completes.with_columns(
        w_base=pl.col("COUNTY").replace_strict(COUNTY_ADULTS, return_dtype=pl.Float64)
        / pl.col("COUNTY").replace_strict(n_county, return_dtype=pl.Float64)
        * pl.when(pl.col("FRAME") == 1).then(pl.col("HH_ADULTS").replace(9, 2).clip(upper_bound=4)).otherwise(1)
        * pl.when(pl.col("PHONESTAT") == 3).then(0.5).otherwise(1.0),
        agree=pl.col("Q10A").is_in([1, 2]).cast(pl.Float64),
    )
    weighted = base.select((pl.col("agree") * pl.col("w_base")).sum() / pl.col("w_base").sum()).item()
    unweighted = base["agree"].mean()
    truth = delivery.truth.filter((pl.col("variable") == "Q10A") & (pl.col("by") == ""))["share"].item()
    assert abs(weighted - truth) < BASE_WEIGHTED_TOL
    assert abs(weighted - truth) < abs(unweighted - truth)


# --- files -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def written(delivery: Delivery, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("raw")
    write_delivery(delivery, out)
    return out


def test_write_delivery_layout(written: Path) -> None:
    files = sorted(p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file())
    assert files == [
        "insecure_communities_2012.sav",
        "insecure_communities_2012_answer_key.csv",
        "targets/latino_adults_2012.csv",
        "truth/insecure_communities_2012_truth.csv",
    ]
    assert (written / "insecure_communities_2012.sav").stat().st_size < 400_000


def test_sav_metadata(written: Path, delivery: Delivery) -> None:
    pyreadstat = pytest.importorskip("pyreadstat")
    path = written / "insecure_communities_2012.sav"
    data, meta = pyreadstat.read_sav(str(path), user_missing=True, output_format="polars")
    assert "SYNTHETIC" in meta.file_label
    assert meta.column_names == list(delivery.codebook.variables)
    assert meta.variable_value_labels["Q10A"] == {
        1.0: "Strongly agree",
        2.0: "Somewhat agree",
        3.0: "Somewhat disagree",
        4.0: "Strongly disagree",
        8.0: "Don't know",
        9.0: "Refused",
    }
    missing = {name: sorted(r["lo"] for r in ranges) for name, ranges in meta.missing_ranges.items()}
    dk_ref = [*BATTERY, "Q11", "Q12", "Q13", "Q14", "Q14A", "Q15", "BORN", "CITIZEN", "LEGAL", "EDUC", "INCOME"]
    expected = {name: [8.0, 9.0] for name in dk_ref}
    assert missing == {**expected, "AGE": [99.0], "YRS_US": [98.0, 99.0], "ORIGIN": [98.0, 99.0]}
    assert meta.original_variable_types["INTDATE"].startswith("DATE")
    assert meta.original_variable_types["PHONE_HASH"] == "A16"
    numeric = [n for n in data.columns if n not in ("PHONE_HASH", "INTDATE")]
    assert all(meta.original_variable_types[n] == "F6.0" for n in numeric)
    whole = data.select(pl.all_horizontal([(pl.col(n) == pl.col(n).round(0)).fill_null(True).all() for n in numeric]))
    assert whole.item()
    coded = [n for n in numeric if n not in ("RESPID", "DURATION", "INTVR")]
    assert set(coded) <= set(meta.variable_value_labels)


def _read_sav(path: Path) -> tuple[pl.DataFrame, dict]:
    import pyreadstat

    data, meta = pyreadstat.read_sav(str(path), user_missing=True, output_format="polars")
    info = {
        "labels": meta.column_names_to_labels,
        "value_labels": meta.variable_value_labels,
        "missing": meta.missing_ranges,
        "formats": meta.original_variable_types,
        "measures": meta.variable_measure,
        "file_label": meta.file_label,
        "notes": meta.notes,
    }
    return data, info


def _assert_csv_equal(committed: Path, regenerated: Path) -> None:
    a, b = pl.read_csv(committed, infer_schema_length=None), pl.read_csv(regenerated, infer_schema_length=None)
    assert a.columns == b.columns and a.height == b.height
    for name in a.columns:
        if a[name].dtype == pl.Float64:
            assert np.allclose(a[name].to_numpy(), b[name].to_numpy(), rtol=FLOAT_RTOL, atol=0), name
        else:
            assert a[name].equals(b[name]), name


def test_committed_files_regenerate_from_the_default_seed(written: Path, delivery: Delivery) -> None:
    """raw/ holds the default-seed delivery; regenerating gives the same content (not bytes:
    SPSS headers carry a timestamp)."""
    assert delivery.seed == DEFAULT_SEED
    committed, regenerated = delivery_paths(COMMITTED_RAW, "2012"), delivery_paths(written, "2012")
    old_data, old_meta = _read_sav(committed["sav"])
    new_data, new_meta = _read_sav(regenerated["sav"])
    assert old_meta == new_meta
    assert old_data.equals(new_data)
    for name in ("answer_key", "targets", "truth"):
        _assert_csv_equal(committed[name], regenerated[name])

"""The demo config's cleaning rules against the simulator's answer key (issue 5).

Every injected problem type must be caught with recall >= 0.95, fewer than 0.5% of the clean
completes removed, and 2,004 completes kept, 501 per county, with the counts reconciled.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.config import load_config
from pipeline.stages.clean import FLAGS_COLUMN, REASON_COLUMN, clean
from pipeline.stages.ingest import ingest

ROOT = Path(__file__).resolve().parents[2]
MIN_RECALL = 0.95
MAX_CLEAN_REMOVED = 0.005


@pytest.fixture(scope="module")
def cleaned():
    config = load_config(ROOT / "configs" / "insecure_communities.yaml")
    wave = config.waves[0]
    frame, codebook, _ = ingest(config.resolve(wave.raw), config.ingest, key=b"test-key")
    result = clean(
        frame,
        codebook,
        config.clean_for(wave.id),
        wave_recodes=wave.recodes,
        wave_missing=wave.missing_also,
        field_dates=wave.field_dates,
        drop_columns=list(config.ingest.hash.values()),
    )
    key = pl.read_csv(ROOT / "raw" / "insecure_communities_2012_answer_key.csv").rename({"row": "raw_row"})
    return result, key


def detected(result, key: pl.DataFrame) -> pl.DataFrame:
    """Per raw row: which rule families caught it."""
    q = result.quarantine.select("raw_row", pl.col(REASON_COLUMN).alias("q"))
    f = result.data.select("raw_row", pl.col(FLAGS_COLUMN).alias("f"))
    reasons = result.missing_reasons.group_by("raw_row").agg(pl.col("reason").unique().alias("m"))
    out = key.join(q, on="raw_row", how="left").join(f, on="raw_row", how="left").join(reasons, on="raw_row", how="left")
    return out.with_columns(pl.col("q").fill_null(""), pl.col("f").fill_null(""), pl.col("m").fill_null([]))


RULES = {
    "DQ_DUP": pl.col("q").str.contains(r"(^|;)duplicate"),
    "DQ_NEARDUP": pl.col("q").str.contains("near_duplicate"),
    "DQ_PARTIAL": pl.col("q").str.contains("partial"),
    "DQ_SPEEDER": pl.col("f").str.contains("speeder"),
    "DQ_DATE": pl.col("f").str.contains("outside_field_period"),
    "DQ_INTVR": pl.col("f").str.contains("interviewer"),
    "DQ_SKIP": pl.col("m").list.contains("skip_violation") | pl.col("f").str.contains("skip_missing"),
    "DQ_OOR": pl.col("m").list.contains("out_of_range") | pl.col("m").list.contains("inconsistent") | (pl.col("q") != ""),
}


@pytest.mark.parametrize("flag", sorted(RULES))
def test_every_injected_problem_is_caught(cleaned, flag):
    result, key = cleaned
    d = detected(result, key).filter(pl.col(flag) == 1)
    assert d.height > 0
    recall = d.select(RULES[flag].mean()).item()
    assert recall >= MIN_RECALL, (flag, recall, d.filter(~RULES[flag]).select("raw_row", "DQ_DETAIL").head(5).to_dicts())


def test_vendor_batch_drift_is_recoded(cleaned):
    result, key = cleaned
    drift = key.filter(pl.col("DQ_DRIFT") == 1).get_column("raw_row")
    maricopa = result.data.filter(pl.col("raw_row").is_in(drift.implode()))
    assert maricopa.height == 501
    assert set(maricopa.get_column("EDUC").drop_nulls().unique().to_list()) <= {1, 2, 3, 4, 5, 6, 8, 9}
    for q in ("Q10A", "Q10B", "Q10C", "Q10D", "Q10E", "Q10F"):
        assert (maricopa.get_column(q) == 98).sum() == 0
        assert (maricopa.get_column(q) == 8).sum() > 0  # the batch's don't-knows are don't-knows


def test_few_clean_completes_removed_and_counts_reconcile(cleaned):
    result, key = cleaned
    problems = [c for c in key.columns if c.startswith("DQ_") and c not in ("DQ_DETAIL", "DQ_DRIFT")]
    clean_rows = key.filter(pl.sum_horizontal(problems) == 0).get_column("raw_row")
    removed = result.quarantine.filter(pl.col("raw_row").is_in(clean_rows.implode())).height
    assert removed / clean_rows.len() < MAX_CLEAN_REMOVED
    r = result.report
    assert r["raw_rows"] == r["kept_rows"] + r["quarantined_rows"] == key.height
    assert r["kept_rows"] == 2004
    by = {row["group"]: row["kept_rows"] for row in r["by"]}
    assert by == {"Cook": 501, "Harris": 501, "Los Angeles": 501, "Maricopa": 501, "(missing)": 0}


def test_identifier_hash_does_not_leave_the_clean_stage(cleaned):
    result, _ = cleaned
    for frame in (result.data, result.quarantine):
        assert "phone_key" not in frame.columns and "PHONE_HASH" not in frame.columns
    assert "phone_key" not in result.codebook


def test_missing_reasons_cover_every_null(cleaned):
    result, _ = cleaned
    data = result.data
    nulls = sum(data.get_column(c).null_count() for c in data.columns)
    reasons = result.missing_reasons
    for_nulls = reasons.filter(~pl.col("reason").is_in(["dont_know", "refused", "user_missing"]))
    assert for_nulls.height == nulls  # every null has exactly one reason row
    assert for_nulls.select("raw_row", "variable").is_unique().all()
    assert set(reasons.get_column("reason").unique().to_list()) <= {
        "dont_know", "refused", "user_missing", "out_of_range", "inconsistent", "skip_violation", "skipped", "system_missing"
    }
    # CITIZEN of the U.S.-born was not asked: 'skipped', or 'skip_violation' where it was answered anyway
    us_born = data.filter(pl.col("BORN").is_in([1, 2]) & pl.col("CITIZEN").is_null()).get_column("raw_row")
    cit = reasons.filter((pl.col("variable") == "CITIZEN") & pl.col("raw_row").is_in(us_born.implode()))
    counts = dict(cit.group_by("reason").len().iter_rows())
    assert cit.height == us_born.len() and set(counts) == {"skipped", "skip_violation"}
    assert 0 < counts["skip_violation"] < 20

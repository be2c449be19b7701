"""The clean stage on small frames: each rule, reasons in the codebook, reconciliation."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.config import CleanConfig
from pipeline.errors import ConfigError
from pipeline.io import Codebook, VariableInfo
from pipeline.stages.clean import clean


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ID": [1, 2, 3, 3, 4, 5, 6],
            "STATUS": [1, 1, 1, 1, 2, 1, 1],
            "REGION": [1, 2, 1, 1, 2, None, 4],
            "EDUC": [1, 0, 2, 2, 3, 5, 2],
            "Q": [1, 98, 8, 8, 9, 7, 2],
            "AGE": [30, 17, 99, 99, 40, 150, 65],
        }
    ).with_columns(pl.int_range(1, 8).alias("raw_row"))


def codebook() -> Codebook:
    return Codebook(
        variables={
            "REGION": VariableInfo("REGION", value_labels={1: "North", 2: "South"}),
            "Q": VariableInfo("Q", label="Agree?", value_labels={1: "Yes", 2: "No", 8: "Don't know", 9: "Refused"}, missing_values=(8, 9)),
            "AGE": VariableInfo("AGE", missing_values=(99,)),
        }
    )


def config(**kw) -> CleanConfig:
    base = {
        "drop_partials": {"variable": "STATUS", "complete": [1]},
        "drop_duplicates": {"id": "ID"},
        "missing": {"also": [{"variables": ["Q"], "codes": [98]}]},
        "recodes": [{"variables": "EDUC", "when": "REGION = 2", "map": {0: 1, 1: 2, 2: 3, 3: 4}}],
        "valid": {"labelled": ["REGION", "Q"], "ranges": {"AGE": [18, 97]}},
        "required": ["REGION"],
        "derive": [{"name": "young", "expr": "CASE WHEN AGE BETWEEN 18 AND 29 THEN 1 WHEN AGE BETWEEN 30 AND 97 THEN 0 END", "value_labels": {1: "18-29", 0: "30+"}}],
    }
    base.update(kw)
    return CleanConfig.model_validate(base)


def test_rules_quarantine_with_reasons_and_reconcile():
    res = clean(frame(), codebook(), config())
    assert res.report["raw_rows"] == 7
    assert res.report["kept_rows"] + res.report["quarantined_rows"] == 7
    q = res.quarantine.sort("raw_row")
    assert q.get_column("raw_row").to_list() == [4, 5, 6, 7]
    assert q.get_column("quarantine_reason").to_list() == ["duplicate", "partial", "missing_REGION", "missing_REGION"]
    assert res.report["rules"] == {"partial": 1, "duplicate": 1, "missing_REGION": 2}
    # the quarantine keeps the original values (before recodes and out-of-range fixes)
    assert q.filter(pl.col("raw_row") == 7).get_column("REGION").to_list() == [4]


def test_recode_only_where_condition_holds():
    res = clean(frame(), codebook(), config()).data.sort("raw_row")
    assert res.get_column("EDUC").to_list() == [1, 1, 2]  # row 2 (REGION 2) recoded 0 -> 1; row 1 untouched


def test_missing_reasons_in_codebook_and_codes_kept():
    res = clean(frame(), codebook(), config())
    q = res.codebook.get("Q")
    assert q.missing_values == (8, 9, 98)
    assert q.missing_reasons == {8: "dont_know", 9: "refused", 98: "dont_know"}
    assert q.value_labels[98] == "Don't know"
    assert res.data.sort("raw_row").get_column("Q").to_list() == [1, 98, 8]
    assert res.report["missing_codes"]["Q"] == {"dont_know": 2, "refused": 0, "system_missing": 0}


def test_out_of_range_set_missing_and_counted():
    res = clean(frame(), codebook(), config())
    assert res.report["out_of_range"] == {"REGION": 1, "Q": 1, "AGE": 2}
    data = res.data.sort("raw_row")
    assert data.get_column("AGE").to_list() == [30, None, 99]  # 17 out of range; 99 declared refused kept


def test_derived_variable_with_labels():
    res = clean(frame(), codebook(), config())
    assert res.data.sort("raw_row").get_column("young").to_list() == [0, None, None]
    assert res.codebook.get("young").value_labels == {1: "18-29", 0: "30+"}


def test_unknown_variables_are_one_config_error_naming_each_rule():
    cfg = config(required=["REGOIN"], derive=[{"name": "x", "expr": "AGEE + 1"}])
    with pytest.raises(ConfigError) as info:
        clean(frame(), codebook(), cfg)
    assert info.value.problems == [
        "clean.required: REGOIN is not in the data; did you mean 'REGION'?",
        "clean.derive[0] (x): unknown variable(s) AGEE in 'AGEE + 1'; did you mean 'AGE'?",
    ]


def test_labelled_rule_on_unlabelled_variable_is_config_error():
    with pytest.raises(ConfigError, match="clean.valid.labelled: EDUC has no value labels in the codebook, so no code is valid"):
        clean(frame(), codebook(), config(valid={"labelled": ["EDUC"]}))


def test_exact_duplicate_needs_every_column_equal():
    f = pl.DataFrame({"ID": [1, 1, 1], "Q": [1, 1, 2], "raw_row": [1, 2, 3]})
    res = clean(f, Codebook(), CleanConfig.model_validate({"drop_duplicates": {"id": "ID"}}))
    assert res.quarantine.get_column("raw_row").to_list() == [2]  # row 3 differs in Q: not an exact duplicate


def test_reconciliation_fails_loudly_when_a_row_would_be_lost():
    from pipeline.errors import DataError
    from pipeline.stages.clean import reconcile

    raw = frame()
    with pytest.raises(DataError, match=r"raw 7 != kept 5 \+ quarantined 1; lost raw rows \[7\]"):
        reconcile(raw, raw.slice(0, 5), raw.slice(5, 1))
    with pytest.raises(DataError, match=r"rows both kept and quarantined or repeated \[6\]"):
        reconcile(raw, raw.slice(0, 6), raw.slice(5, 1))


def rows(**cols) -> pl.DataFrame:
    n = len(next(iter(cols.values())))
    return pl.DataFrame(cols).with_columns(pl.int_range(1, n + 1).alias("raw_row"))


def run_rules(f: pl.DataFrame, cb: Codebook | None = None, **cfg):
    return clean(f, cb or Codebook(), CleanConfig.model_validate(cfg))


def test_near_duplicates_keep_the_first_by_date():
    f = rows(ID=[1, 2, 3, 4], KEY=["a", "b", "a", "a"], DAY=[3, 1, 1, 5])
    res = run_rules(f, drop_duplicates={"id": "ID"}, near_duplicates={"key": "KEY", "order_by": ["DAY"]})
    assert res.quarantine.sort("raw_row").get_column("raw_row").to_list() == [1, 4]  # ID 3 (day 1) is the first interview
    assert set(res.quarantine.get_column("quarantine_reason")) == {"near_duplicate"}


def test_check_sets_missing_with_reason_and_original_value():
    f = rows(AGE=[30, 40, None], YRS=[10, 45, 5])
    res = run_rules(f, checks=[{"name": "yrs_le_age", "expr": "YRS <= AGE", "variables": ["YRS"]}])
    assert res.data.get_column("YRS").to_list() == [10, None, 5]  # unknown AGE passes
    r = res.missing_reasons.filter(pl.col("variable") == "YRS").row(0, named=True)
    assert (r["raw_row"], r["reason"], r["value"]) == (2, "inconsistent", "45")
    flagged = run_rules(f, checks=[{"name": "yrs_le_age", "expr": "YRS <= AGE", "action": "flag"}])
    assert flagged.data.get_column("dq_flags").to_list() == ["", "check_yrs_le_age", ""]


def test_skip_logic_violation_skipped_and_asked_but_blank():
    f = rows(BORN=[1, 1, 3, 3], CIT=[None, 1, 2, None])
    res = run_rules(f, skips=[{"name": "abroad", "asked_if": "BORN = 3", "variables": ["CIT"], "require_answer": True}])
    assert res.data.get_column("CIT").to_list() == [None, None, 2, None]
    reasons = dict(res.missing_reasons.filter(pl.col("variable") == "CIT").select("raw_row", "reason").iter_rows())
    assert reasons == {1: "skipped", 2: "skip_violation", 4: "system_missing"}
    assert res.data.get_column("dq_flags").to_list() == ["", "", "", "skip_missing_CIT"]
    q = run_rules(f, skips=[{"name": "abroad", "asked_if": "BORN = 3", "variables": ["CIT"], "action": "quarantine"}])
    assert q.quarantine.get_column("raw_row").to_list() == [2]


def test_speeders_relative_to_the_median_of_their_language():
    f = rows(LANG=[1, 1, 1, 1, 2, 2, 2, 2], DUR=[600, 620, 200, 640, 900, 950, 300, 380])
    res = run_rules(f, speeders={"duration": "DUR", "fraction": 0.4, "by": ["LANG"]})
    # medians 610 (English) and 640 (Spanish): 200 < 0.4 x 610 = 244 is a speeder; 300 and 380 are above 256
    assert res.data.get_column("dq_flags").to_list() == ["", "", "speeder", "", "", "", "", ""]
    q = run_rules(f, speeders={"duration": "DUR", "fraction": 0.7, "by": ["LANG"], "action": "quarantine"})
    assert sorted(q.quarantine.get_column("raw_row").to_list()) == [3, 7, 8]


def test_straightlining_ignores_dont_know():
    cb = Codebook(variables={v: VariableInfo(v, missing_values=(8, 9)) for v in ("A", "B", "C")})
    f = rows(A=[1, 1, 8, 2], B=[1, 1, 8, 2], C=[1, 2, 8, None])
    res = run_rules(f, cb, straightlining={"variables": ["A", "B", "C"]})
    assert res.data.get_column("dq_flags").to_list() == ["straightlining", "", "", ""]


def test_field_period():
    import datetime as dt

    f = rows(DATE=[dt.date(2012, 11, 16), dt.date(2012, 11, 17), dt.date(2012, 12, 10), dt.date(2012, 12, 11)])
    cfg = CleanConfig.model_validate({"field_period": {"variable": "DATE"}})
    res = clean(f, Codebook(), cfg, field_dates=(dt.date(2012, 11, 17), dt.date(2012, 12, 10)))
    assert res.data.get_column("dq_flags").to_list() == ["outside_field_period", "", "", "outside_field_period"]
    with pytest.raises(ConfigError, match="clean.field_period: the wave has no field_dates"):
        clean(f, Codebook(), cfg)


def test_interviewer_report_flags_identical_patterns():
    import numpy as np

    rng = np.random.default_rng(1)
    n = 200
    intvr = np.repeat([1, 2, 3, 4], n // 4)
    a, b = rng.integers(1, 5, n), rng.integers(1, 5, n)
    a[intvr == 3], b[intvr == 3] = 2, 3  # interviewer 3 records one pattern for everybody
    cb = Codebook(variables={v: VariableInfo(v, missing_values=(8,)) for v in ("A", "B")})
    res = run_rules(rows(INTVR=intvr, A=a, B=b), cb, interviewers={"variable": "INTVR", "battery": ["A", "B"], "min_interviews": 10})
    report = res.interviewers.sort("interviewer")
    assert report.get_column("flagged").to_list() == [False, False, True, False]
    assert report.filter(pl.col("interviewer") == 3).get_column("modal_pattern").to_list() == ["23"]
    assert res.data.filter(pl.col("INTVR") == 3).get_column("dq_flags").unique().to_list() == ["interviewer"]
    assert res.report["rule_details"]["interviewer"]["interviewers"] == [3]


def test_report_by_group_counts_reconcile():
    cb = Codebook(variables={"G": VariableInfo("G", value_labels={1: "North", 2: "South"})})
    f = rows(G=[1, 1, 2, 2, 2], S=[1, 2, 1, 1, 2])
    res = run_rules(f, cb, drop_partials={"variable": "S", "complete": [1]}, report_by=["G"])
    by = {r["group"]: (r["raw_rows"], r["kept_rows"], r["quarantined_rows"], r["partial"]) for r in res.report["by"]}
    assert by == {"North": (2, 1, 1, 1), "South": (3, 2, 1, 1)}


def test_unknown_partial_code_is_a_config_error():
    cb = Codebook(variables={"S": VariableInfo("S", value_labels={1: "Complete", 2: "Partial"})})
    with pytest.raises(ConfigError) as info:
        run_rules(rows(S=[1, 2]), cb, drop_partials={"variable": "S", "complete": [7]})
    assert info.value.problems == ["clean.drop_partials.complete: code(s) [7] of S are not labelled codes (labels: {1: 'Complete', 2: 'Partial'})"]


def test_derived_variable_carries_labels_from_its_source():
    cb = Codebook(variables={"Q": VariableInfo("Q", label="Agree?", value_labels={1: "Yes", 2: "No", 8: "Don't know"}, missing_values=(8,))})
    res = run_rules(rows(Q=[1, 2, 8]), cb, derive=[{"name": "Q_copy", "expr": "CASE WHEN Q = 2 THEN 2 ELSE Q END", "labels_from": "Q"}])
    info = res.codebook.get("Q_copy")
    assert (info.label, info.value_labels, info.missing_values) == ("Agree?", {1: "Yes", 2: "No", 8: "Don't know"}, (8,))
    assert info.missing_reasons == {8: "dont_know"}

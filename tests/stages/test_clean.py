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
    assert info.value.problems == ["clean.required: REGOIN is not in the data", "clean.derive[0] (x): unknown variable(s) AGEE in 'AGEE + 1'"]


def test_labelled_rule_on_unlabelled_variable_is_config_error():
    with pytest.raises(ConfigError, match="clean.valid.labelled: EDUC has no value labels in the codebook, so no code is valid"):
        clean(frame(), codebook(), config(valid={"labelled": ["EDUC"]}))


def test_exact_duplicate_needs_every_column_equal():
    f = pl.DataFrame({"ID": [1, 1, 1], "Q": [1, 1, 2], "raw_row": [1, 2, 3]})
    res = clean(f, Codebook(), CleanConfig.model_validate({"drop_duplicates": {"id": "ID"}}))
    assert res.quarantine.get_column("raw_row").to_list() == [2]  # row 3 differs in Q: not an exact duplicate

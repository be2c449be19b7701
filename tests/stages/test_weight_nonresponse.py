"""Nonresponse adjustment by weighting classes in the weight stage: factors, collapsing, reporting (issue 4)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.config import NonresponseConfig, WeightConfig
from pipeline.errors import CalibrationError, DataError
from pipeline.stages.weight import collapse_classes, nonresponse_adjustment, qa_markdown, weight

REL = 1e-12


def label(key):
    return ", ".join(f"{c}={v}" for c, v in zip("AB", key))


def test_a_small_class_joins_the_neighbour_sharing_its_leading_variables():
    keys = [(1, 1), (1, 2), (2, 1), (2, 2)]
    groups, collapses = collapse_classes(keys, [30, 5, 30, 30], [30, 6, 30, 30], [30, 5, 30, 30], min_respondents=20, max_factor=None, label=label)
    assert groups == [[0, 1], [2], [3]]  # (1, 2) goes to (1, 1): same A; (2, 1) shares nothing
    assert collapses == [{"class": "A=1, B=2", "into": "A=1, B=1", "reason": "5 respondent(s), fewer than min_respondents = 20"}]


def test_on_a_tie_the_next_class_and_the_last_class_goes_back():
    keys = [(1, 1), (1, 2), (1, 3)]
    groups, _ = collapse_classes(keys, [30, 5, 30], [30, 5, 30], [30, 5, 30], min_respondents=20, max_factor=None, label=label)
    assert groups == [[0], [1, 2]]
    groups, collapses = collapse_classes(keys, [30, 30, 5], [30, 30, 5], [30, 30, 5], min_respondents=20, max_factor=None, label=label)
    assert groups == [[0], [1, 2]] and collapses[0]["into"] == "A=1, B=2"


def test_collapsing_moves_up_a_variable_when_a_whole_group_is_small():
    keys = [(1, 1), (1, 2), (2, 1), (2, 2)]
    groups, collapses = collapse_classes(keys, [4, 5, 30, 30], [4, 5, 30, 30], [4, 5, 30, 30], min_respondents=20, max_factor=None, label=label)
    assert groups == [[0, 1, 2], [3]]
    assert [c["into"] for c in collapses] == ["A=1, B=2", "A=2, B=1"]
    assert collapses[1]["class"] == "A=1, B=1 + A=1, B=2"


def test_a_large_factor_collapses_too():
    keys = [(1, 1), (1, 2)]
    groups, collapses = collapse_classes(keys, [30, 30], [40, 90], [38, 30], min_respondents=20, max_factor=2.0, label=label)
    assert groups == [[0, 1]]
    assert collapses[0]["reason"] == "adjustment factor 3 above max_factor = 2"


def test_rules_that_cannot_be_met_fail():
    with pytest.raises(CalibrationError) as info:
        collapse_classes([(1, 1), (1, 2)], [3, 4], [10, 10], [3, 4], min_respondents=20, max_factor=None, label=label)
    assert info.value.message == (
        "weight.nonresponse: even a single class of all rows breaks the rules (7 respondent(s), adjustment factor 2.857; "
        "min_respondents = 20, max_factor = None)"
    )


def sample(n: int = 600, seed: int = 8) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    frame = np.where(rng.random(n) < 0.5, 1, 2)
    region = rng.integers(1, 4, n)
    # response depends on the frame: cell (2) responds less; region 3 x frame 2 is a small class
    p = np.where(frame == 1, 0.8, 0.6)
    status = np.where(rng.random(n) < p, 1, 2)
    status[(region == 3) & (frame == 2)] = np.where(np.arange(((region == 3) & (frame == 2)).sum()) < 8, 1, 2)
    return pl.DataFrame(
        {
            "raw_row": np.arange(1, n + 1),
            "REGION": region,
            "FRAME": frame,
            "STATUS": status,
            "SEX": np.where(rng.random(n) < 0.45, 1, 2),
            "D": rng.uniform(1, 3, n),
        }
    )


def targets() -> pl.DataFrame:
    return pl.DataFrame({"variable": ["SEX", "SEX"], "category": [1, 2], "share": [0.49, 0.51], "population": [50_000, 50_000]})


NR = {"respondent": "STATUS = 1", "classes": ["REGION", "FRAME"], "min_respondents": 20, "max_factor": 3.0}


def test_factors_carry_each_class_weight_to_its_respondents():
    f = sample()
    w = f.get_column("D").to_numpy()
    nr = nonresponse_adjustment(f, w, NonresponseConfig(**NR))
    assert nr.collapses == [
        {"class": "REGION=3, FRAME=2", "into": "REGION=3, FRAME=1", "reason": "8 respondent(s), fewer than min_respondents = 20"}
    ]
    assert [c["class"] for c in nr.classes] == [
        "REGION=1, FRAME=1", "REGION=1, FRAME=2", "REGION=2, FRAME=1", "REGION=2, FRAME=2", "REGION=3, FRAME=1 + REGION=3, FRAME=2",
    ]
    adjusted = w * nr.factor
    for k in range(len(nr.classes)):
        rows = nr.class_index == k
        assert adjusted[rows].sum() == pytest.approx(w[rows].sum(), rel=REL)
        assert nr.classes[k]["respondents"] == int((rows & nr.respondent).sum())
    assert (nr.factor[~nr.respondent] == 0).all() and (nr.factor[nr.respondent] > 1).all()


def test_stage_removes_nonrespondents_and_reports_collapses():
    f = sample()
    cfg = WeightConfig.model_validate({"base": {"factors": [{"name": "d", "expr": "D"}]}, "nonresponse": NR, "rake": {"variables": ["SEX"], "tolerance": 1e-10}})
    res = weight(f, targets(), cfg)
    resp = f.filter(pl.col("STATUS") == 1)
    assert res.data.height == resp.height and (res.data.get_column("STATUS") == 1).all()
    assert res.nonrespondents.height == f.height - resp.height
    assert res.nonrespondents.columns == ["raw_row", "REGION", "FRAME", "nonresponse_class", "w_base"]
    nr = res.qa["nonresponse"]
    assert (nr["respondents"], nr["nonrespondents"]) == (resp.height, f.height - resp.height)
    assert len(nr["collapses"]) == 1
    assert [s["step"] for s in res.qa["steps"]] == ["base", "nonresponse", "rake"]
    nonresponse_step = res.qa["steps"][1]
    assert nonresponse_step["sum"] == pytest.approx(f.get_column("D").sum(), rel=REL)  # the sample's weight is kept
    assert res.data.get_column("w_pop").sum() == pytest.approx(50_000, rel=1e-9)
    text = qa_markdown(res.qa, res.margins, "w1")
    assert "## Nonresponse adjustment" in text
    assert "- REGION=3, FRAME=2 into REGION=3, FRAME=1: 8 respondent(s), fewer than min_respondents = 20" in text


def test_base_weights_count_the_nonrespondents():
    f = sample().with_columns(pl.lit(1).alias("G"))
    t = targets().with_columns(pl.lit(1).alias("G"))
    cfg = WeightConfig.model_validate({"base": {"population_by": ["G"]}, "nonresponse": {**NR, "classes": ["G"]}})
    res = weight(f, t, cfg)
    assert res.data.get_column("w_base")[0] == pytest.approx(50_000 / f.height, rel=REL)
    assert res.data.get_column("w_pop").sum() == pytest.approx(50_000, rel=REL)


def test_unknown_response_status_is_an_error():
    f = sample().with_columns(pl.when(pl.col("raw_row").is_in([4, 9])).then(None).otherwise(pl.col("STATUS")).alias("STATUS"))
    with pytest.raises(DataError) as info:
        nonresponse_adjustment(f, np.ones(f.height), NonresponseConfig(**NR))
    assert info.value.message == "weight.nonresponse.respondent: 'STATUS = 1' is unknown (missing) on 2 row(s) (raw rows [4, 9])"


def test_missing_class_variable_is_an_error():
    f = sample().with_columns(pl.when(pl.col("raw_row") == 7).then(None).otherwise(pl.col("FRAME")).alias("FRAME"))
    with pytest.raises(DataError) as info:
        nonresponse_adjustment(f, np.ones(f.height), NonresponseConfig(**NR))
    assert info.value.message == "weight.nonresponse.classes: FRAME is missing on 1 row(s) (raw rows [7])"


def test_respondent_expression_is_parsed_when_the_config_loads(tmp_path):
    from pipeline.config import load_config
    from pipeline.errors import ConfigError

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.csv").write_text("a\n1\n")
    cfg = tmp_path / "study.yaml"
    cfg.write_text(
        "study: s\nwaves: [{id: w1, raw: raw/x.csv}]\n"
        "weight: {nonresponse: {respondent: 'STATUS = = 1', classes: [A]}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert "weight.nonresponse.respondent: cannot parse the expression 'STATUS = = 1'" in str(info.value)

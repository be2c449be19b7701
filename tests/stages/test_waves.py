"""Waves (issue 7): harmonization, incremental reruns, trends with change rows."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import polars as pl
import pytest
from scipy import stats

from pipeline.cli import main
from pipeline.config import HarmonizeConfig, TrendsConfig
from pipeline.errors import DataError
from pipeline.io import Codebook, VariableInfo
from pipeline.stages.harmonize import harmonize
from pipeline.stages.trends import trends

from tinystudy import write_tiny_sav


def cb(**labels) -> Codebook:
    return Codebook(variables={k: VariableInfo(k, value_labels=v) for k, v in labels.items()})


def test_harmonize_lists_presence_and_stops_on_label_drift():
    a = cb(EDUC={1: "Less than HS", 4: "Some college"}, Q15={1: "Yes"})
    b = cb(EDUC={1: "less than HS.", 4: "Associate's degree"}, Q16={1: "Yes"})
    with pytest.raises(DataError) as info:
        harmonize({"2012": a, "2014": b}, HarmonizeConfig())
    assert "EDUC code 4: 'Some college' in wave 2012 but \"Associate's degree\" in wave 2014" in str(info.value)
    assert "harmonize.same_meaning" in str(info.value)
    ok = harmonize({"2012": a, "2014": b}, HarmonizeConfig.model_validate({"same_meaning": [{"variable": "EDUC", "codes": [4]}]}))
    assert ok["only_in"] == {"Q15": ["2012"], "Q16": ["2014"]}
    assert ok["accepted"][0]["other_label"] == "Associate's degree"


def est_frame(wave: str, p: float, se: float, df: float, *, domain: str = "All") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "wave": [wave], "estimate_id": ["x"], "statistic": ["proportion"], "variable": ["Q"], "level": ["Yes"],
            "by": [""], "domain": [domain], "n": [500], "estimate": [p], "se": [se], "ci_low": [p - 0.1], "ci_high": [p + 0.1],
            "ci_method": ["logit"], "conf_level": [0.95], "df": [df], "deff": [1.5], "flag": [""],
        }
    )


def test_change_rows_match_an_independent_computation():
    e1 = pl.concat([est_frame("2012", 0.44, 0.018, 2000), est_frame("2012", 0.30, 0.03, 400, domain="Cook")])
    e2 = est_frame("2014", 0.38, 0.02, 1996)
    out = trends({"2012": e1, "2014": e2}, TrendsConfig(alpha=0.05), order=["2012", "2014"])
    assert out.height == 4  # three wave rows and one change (Cook has no 2014 row)
    ch = out.filter(pl.col("statistic") == "difference").row(0, named=True)
    se = (0.018**2 + 0.02**2) ** 0.5
    t = stats.t.ppf(0.975, 3996)
    assert ch["wave"] == "2014 vs 2012" and ch["wave_from"] == "2012" and ch["wave_to"] == "2014"
    assert ch["estimate"] == pytest.approx(-0.06, abs=1e-15)
    assert ch["se"] == pytest.approx(se, rel=1e-12)
    assert (ch["ci_low"], ch["ci_high"]) == pytest.approx((-0.06 - t * se, -0.06 + t * se), rel=1e-12)
    assert ch["p_value"] == pytest.approx(2 * stats.t.sf(0.06 / se, 3996), rel=1e-9)
    assert ch["flag"] == "significant" and ch["df"] == 3996 and ch["n"] == 1000


TWO_WAVE = """\
study: tiny
waves:
  - id: "w1"
    raw: ../raw/tiny.sav
    targets: ../raw/targets.csv
WAVE2
clean:
  drop_partials: {variable: STATUS, complete: [1]}
  drop_duplicates: {id: RESPID}
  derive:
    - name: rk_sex
      expr: "CASE WHEN SEX IN (1, 2) THEN SEX END"
weight:
  base:
    population_by: [REGION]
  rake:
    by: [REGION]
    variables: [rk_sex]
    tolerance: 1.0e-8
design:
  strata: [REGION]
estimates:
  - id: q1_yes
    proportion: Q1
    levels: [1]
    denominator: all
    by: [[], [REGION]]
"""

WAVE2 = """\
  - id: "w2"
    raw: ../raw/tiny2.sav
    targets: ../raw/targets.csv
    rename: {GENDER: SEX}
"""


def write_wave2(path, *, drift: bool) -> None:
    """The tiny study's next wave: SEX renamed GENDER, more 'Yes', and (optionally) a relabelled code."""
    import pyreadstat

    frame = write_tiny_sav(path, seed=11)
    rng = np.random.default_rng(5)
    q1 = np.where(rng.random(frame.height) < 0.75, 1.0, 2.0)
    frame = frame.with_columns(pl.Series("Q1", q1)).rename({"SEX": "GENDER"})
    pyreadstat.write_sav(
        frame,
        str(path),
        variable_value_labels={
            "REGION": {1: "North", 2: "South"},
            "GENDER": {1: "Male", 2: "Female"},
            "Q1": {1: "Yes", 2: "Not at all" if drift else "No", 8: "Don't know", 9: "Refused"},
            "STATUS": {1: "Complete", 2: "Partial"},
        },
        missing_ranges={"Q1": [8, 9]},
    )


def test_adding_a_wave_runs_only_that_wave_and_the_trends(tiny_project, capsys):
    cfg = tiny_project
    cfg.write_text(TWO_WAVE.replace("WAVE2", ""))
    assert main(["run", str(cfg), "--quiet"]) == 0
    write_wave2(cfg.parent.parent / "raw" / "tiny2.sav", drift=True)
    cfg.write_text(TWO_WAVE.replace("WAVE2", WAVE2))

    # unmapped label drift stops the run, naming the variable, the code and both labels
    assert main(["run", str(cfg), "--quiet"]) == 1
    _, err = capsys.readouterr()
    assert "Q1 code 2: 'No' in wave w1 but 'Not at all' in wave w2" in err

    # mapped through the wave's labels: only w2's stages and the study stages run
    cfg.write_text(TWO_WAVE.replace("WAVE2", WAVE2 + "    labels: {Q1: {1: Yes, 2: No, 8: \"Don't know\", 9: Refused}}\n"))
    assert main(["run", str(cfg), "--quiet"]) == 2  # YAML reads Yes/No as booleans: a clear config error
    _, err = capsys.readouterr()
    assert "waves[1].labels.Q1[1]: Input should be a valid string (found: true); YAML reads an unquoted Yes/No/On/Off" in err
    cfg.write_text(TWO_WAVE.replace("WAVE2", WAVE2 + "    labels: {Q1: {1: 'Yes', 2: 'No', 8: \"Don't know\", 9: Refused}}\n"))
    assert main(["run", str(cfg), "--quiet"]) == 0
    m = json.loads((cfg.parent.parent / "outputs" / "tiny" / "manifest.json").read_text())
    assert {s: e["status"] for s, e in m["waves"]["w1"].items()} == {s: "cached" for s in ("ingest", "clean", "weight", "estimate", "export")}
    assert {s: e["status"] for s, e in m["waves"]["w2"].items()} == {s: "ran" for s in ("ingest", "clean", "weight", "estimate", "export")}
    assert {s: e["status"] for s, e in m["study_stages"].items()} == {"harmonize": "ran", "trends": "ran"}

    t = pl.read_csv(cfg.parent.parent / "outputs" / "tiny" / "trends" / "estimates.csv", schema_overrides={"by": pl.String, "flag": pl.String})
    change = t.filter((pl.col("statistic") == "difference") & (pl.col("domain") == "All")).row(0, named=True)
    w1 = t.filter((pl.col("wave") == "w1") & (pl.col("domain") == "All")).row(0, named=True)
    w2 = t.filter((pl.col("wave") == "w2") & (pl.col("domain") == "All")).row(0, named=True)
    assert change["estimate"] == pytest.approx(w2["estimate"] - w1["estimate"], rel=1e-12)
    assert change["se"] == pytest.approx((w1["se"] ** 2 + w2["se"] ** 2) ** 0.5, rel=1e-12)
    assert change["flag"] == "significant"  # 0.42 -> about 0.75 on ~120 respondents each

    # nothing changed: nothing runs
    assert main(["run", str(cfg)]) == 0
    _, err = capsys.readouterr()
    assert "nothing to do" in err


def test_rename_of_a_missing_column_is_a_config_error(tiny_project, capsys):
    cfg = tiny_project
    write_wave2(cfg.parent.parent / "raw" / "tiny2.sav", drift=False)
    cfg.write_text(TWO_WAVE.replace("WAVE2", WAVE2.replace("GENDER: SEX", "SEXX: SEX")))
    assert main(["run", str(cfg)]) == 2
    _, err = capsys.readouterr()
    assert "waves[1].rename.SEXX: SEXX is not in the file" in err

"""Issue 10, item 5: ``validate`` checks what ``run`` checks, and ``run`` checks it before any stage.

Each config below names a variable or a code that the data (the raw file after the wave's
renames, recodes and ``clean.derive``) does not have. Before the fix ``validate`` said OK (exit 0)
and ``run`` failed only after ingest, clean and weight had written their files. Now both exit 2
with the key path, the wave and the hint in YAML spelling, and ``run`` writes nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipeline.cli import main
from pipeline.errors import DataError, DesignError
from tinystudy import TINY_CONFIG, write_tiny_sav, write_tiny_targets

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "insecure_communities.yaml"

#: a PSU id derived from the respondent id: ids 0..9 in both regions (not nested in REGION)
PSU_DERIVE = """      value_labels: {1: "Male", 2: "Female"}
    - name: PSU
      expr: "RESPID % 10"
"""


def project(tmp_path: Path, *edits: tuple[str, str], targets=None) -> Path:
    """The tiny study with text replacements in its config (each must apply); returns the config."""
    text = textwrap.dedent(TINY_CONFIG)
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    (tmp_path / "configs").mkdir()
    write_tiny_sav(tmp_path / "raw" / "tiny.sav")
    write_tiny_targets(tmp_path / "raw" / "targets.csv")
    if targets is not None:
        path = tmp_path / "raw" / "targets.csv"
        targets(pl.read_csv(path)).write_csv(path)
    cfg = tmp_path / "configs" / "tiny.yaml"
    cfg.write_text(text)
    return cfg


def with_category_3(t: pl.DataFrame) -> pl.DataFrame:
    """rk_sex targets with a third category no respondent has (shares still sum to 1)."""
    t = t.with_columns(pl.when(pl.col("category") == 2).then(0.41).otherwise(pl.col("share")).alias("share"))
    extra = t.filter(pl.col("category") == 1).with_columns(pl.lit(3, dtype=t.schema["category"]).alias("category"), pl.lit(0.10).alias("share"))
    return pl.concat([t, extra])


CASES = {
    "estimates.proportion": (
        [("proportion: Q1\n    levels: [1]", "proportion: QI\n    levels: [1]")],
        ["estimates[0].proportion: QI is not in the data; did you mean 'Q1'? (wave w1)"],
    ),
    "estimates.by": (
        [("by: [[], [REGION]]", "by: [[], [REGOIN]]")],
        ["estimates[0].by: REGOIN is not in the data; did you mean 'REGION'? (wave w1)"],
    ),
    "weight.rake.variables": (
        [("variables: [rk_sex]", "variables: [rk_sx]")],
        ["weight.rake.variables: rk_sx is not in the data; did you mean 'rk_sex'? (wave w1)"],
    ),
    "weight.rake.by": (
        [("  rake:\n    by: [REGION]", "  rake:\n    by: [REGIN]")],
        ["weight.rake.by: REGIN is not in the data; did you mean 'REGION'? (wave w1)"],
    ),
    "estimates.levels": (
        [("levels: [1]", "levels: [3]")],
        ["estimates[0].levels (q1_yes): code(s) 3 are not labelled codes of Q1 (codes: 1 Yes, 2 No, 8 Don't know, 9 Refused) (wave w1)"],
    ),
    "design.nest": (
        [('      value_labels: {1: "Male", 2: "Female"}\n', PSU_DERIVE), ("strata: [REGION]", "strata: [REGION]\n  ids: [PSU]")],
        [
            "design.nest: PSU ids repeat across strata: PSU 0 is in REGION 1 (North) and 2 (South) "
            "(10 ids of PSU are in more than one REGION); R's svydesign stops with \"clusters not nested in strata\"; "
            "if the PSU ids are numbered within each stratum, set design.nest: true (wave w1)"
        ],
    ),
    "design.strata": (
        [("strata: [REGION]", "strata: [REGIO]")],
        ["design.strata: REGIO is not in the data; did you mean 'REGION'? (wave w1)"],
    ),
    "weight.base.factors": (
        [("    population_by: [REGION]\n", "    population_by: [REGION]\n    factors: [{name: f, expr: \"CASE WHEN SEXX = 1 THEN 2 ELSE 1 END\"}]\n")],
        ["weight.base.factors[0].expr (f): SEXX in 'CASE WHEN SEXX = 1 THEN 2 ELSE 1 END' is not in the data; did you mean 'SEX'? (wave w1)"],
    ),
    "weight.trim.by": (
        [("    tolerance: 1.0e-8\n", "    tolerance: 1.0e-8\n  trim: {upper: 5, by: [REGON]}\n")],
        ["weight.trim.by: REGON is not in the data; did you mean 'REGION'? (wave w1)"],
    ),
    "tables.labels": (
        [("  min_n: 5\n", "  min_n: 5\n  labels: {REGON: Region}\n")],
        ["tables.labels: REGON is not in the data; did you mean 'REGION'? (wave w1)"],
    ),
    "export.weights": (
        [("  min_n: 5\n", "  min_n: 5\nexport:\n  weights: [w_final, w_pops]\n")],
        ["export.weights: w_pops is not in the data; did you mean 'w_pop'? (wave w1)"],
    ),
    "waves.recodes.map": (
        [("    targets: ../raw/targets.csv\n", "    targets: ../raw/targets.csv\n    recodes: [{variables: [SEX], map: {7: 1}}]\n")],
        ["waves[0].recodes[0].map: code 7 of SEX is neither in the data nor among its value labels, so the recode changes nothing (wave w1)"],
    ),
}


def check_error(err: str, expected: list[str]) -> None:
    for text in expected:
        assert text in err
    assert "Traceback" not in err
    assert "np." not in err
    assert "nest=True" not in err


@pytest.mark.parametrize("case", list(CASES))
def test_validate_and_run_reject_before_any_stage(tmp_path, capsys, case):
    edits, expected = CASES[case]
    cfg = project(tmp_path, *edits)
    assert main(["validate", str(cfg)]) == 2
    _, err = capsys.readouterr()
    check_error(err, expected)
    assert str(cfg) in err

    assert main(["run", str(cfg)]) == 2
    _, err = capsys.readouterr()
    check_error(err, expected)
    assert "[w1] ingest" not in err  # no stage ran
    assert not (tmp_path / "outputs").exists()  # nothing was written, not even the lock


def test_targets_category_without_respondents(tmp_path, capsys):
    cfg = project(tmp_path, targets=with_category_3)
    expected = [
        "weight.rake.variables: raw/targets.csv gives rk_sex target shares where the data has no respondent "
        "(2 empty cell(s): 3 in REGION 1 (North); 3 in REGION 2 (South)); collapse the category with a neighbouring one "
        "in clean.derive and in raw/targets.csv, or drop it from raw/targets.csv (wave w1)"
    ]
    assert main(["validate", str(cfg)]) == 1  # the targets file does not fit the data: a data error, as in the weight stage
    _, err = capsys.readouterr()
    check_error(err, expected)
    assert main(["run", str(cfg)]) == 1
    _, err = capsys.readouterr()
    check_error(err, expected)
    assert not (tmp_path / "outputs").exists()


def test_data_codes_without_targets(tmp_path, capsys):
    cfg = project(tmp_path, targets=lambda t: t.filter(pl.col("category") == 1).with_columns(pl.lit(1.0).alias("share")))
    assert main(["validate", str(cfg)]) == 1
    _, err = capsys.readouterr()
    check_error(err, ["weight.rake.variables: rk_sex has 2 code(s) in the data that raw/targets.csv gives no target "
                      "(2 (Female) in REGION 1 (North) (34 respondent(s)); 2 (Female) in REGION 2 (South) (38 respondent(s)))"])


def test_every_problem_at_once_from_the_command_line(tmp_path):
    edits = [e for case in ("estimates.proportion", "weight.rake.variables", "design.nest", "tables.labels") for e in CASES[case][0]]
    cfg = project(tmp_path, *edits, ("required: [REGION]", "required: [REGOIN]"))
    res = subprocess.run([sys.executable, "-m", "pipeline", "validate", str(cfg)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    # a clean rule naming an unknown variable stops the in-memory cleaning; the names are still checked
    check_error(res.stderr, [
        "clean.required: REGOIN is not in the data; did you mean 'REGION'? (wave w1)",
        "estimates[0].proportion: QI is not in the data; did you mean 'Q1'? (wave w1)",
        "weight.rake.variables: rk_sx is not in the data; did you mean 'rk_sex'? (wave w1)",
        "tables.labels: REGON is not in the data; did you mean 'REGION'? (wave w1)",
    ])
    assert re.search(r"tiny\.yaml: 4 problem\(s\)", res.stderr)


def test_missing_targets_file_is_a_data_error(tmp_path, capsys):
    cfg = project(tmp_path)
    (tmp_path / "raw" / "targets.csv").unlink()
    assert main(["validate", str(cfg)]) == 1
    _, err = capsys.readouterr()
    assert f"{tmp_path / 'raw' / 'targets.csv'}: targets file not found (config key waves[0].targets)" in err
    assert main(["run", str(cfg)]) == 1
    assert not (tmp_path / "outputs").exists()


def test_the_tiny_study_still_validates_and_runs(tmp_path, capsys):
    cfg = project(tmp_path, ('      value_labels: {1: "Male", 2: "Female"}\n', PSU_DERIVE),
                  ("strata: [REGION]", "strata: [REGION]\n  ids: [PSU]\n  nest: true"))
    assert main(["validate", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "wave w1: 121 rows, 5 columns in tiny.sav (119 kept by the cleaning rules)" in out
    assert not (tmp_path / "outputs").exists()
    assert main(["run", str(cfg), "--quiet"]) == 0


# ------------------------------------------------------------------------------ the demo


@pytest.fixture
def demo_copy(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    shutil.copytree(ROOT / "raw", tmp_path / "raw")
    return tmp_path / "configs" / "insecure_communities.yaml"


def test_demo_config_validates(capsys):
    assert main(["validate", str(DEMO)]) == 0
    out, err = capsys.readouterr()
    assert "wave 2012: 2,122 rows, 35 columns in insecure_communities_2012.sav (2,004 kept by the cleaning rules)" in out
    assert "wave 2014: 2,104 rows, 35 columns in insecure_communities_2014.sav (2,000 kept by the cleaning rules)" in out
    assert "config and raw files OK" in out and err == ""


def test_demo_waves_and_not_asked(demo_copy, capsys):
    cfg = demo_copy
    text = cfg.read_text()
    # Q16 was not asked in 2012 (waves[0].not_asked): its estimate is made in 2014 only, and validates
    q16 = "  - id: q16\n    proportion: Q16\n    levels: [1]\n    by: [[], [STATUS4]]\n"
    cfg.write_text(text.replace("\nmodels:", "\n" + q16 + "\nmodels:", 1))  # the end of estimates: the models follow
    assert main(["validate", str(cfg)]) == 0
    capsys.readouterr()
    # a typo is reported once for both waves; Q15 without waves[1].not_asked is missing in 2014 only
    bad = text.replace("proportion: Q10D", "proportion: Q10DD").replace("    not_asked: [Q15]                                    # dropped in 2014\n", "")
    assert bad.count("Q10DD") == 1 and "not_asked: [Q15]" not in bad
    cfg.write_text(bad)
    assert main(["validate", str(cfg)]) == 2
    _, err = capsys.readouterr()
    check_error(err, [
        "estimates[1].proportion: Q10DD is not in the data; did you mean 'Q10D'? (waves 2012, 2014)",
        "clean.valid.labelled: Q15 is not in the data (wave 2012 has it); if this wave did not ask it, list it in waves[1].not_asked (wave 2014)",
    ])
    assert "(wave 2012)" not in err


def test_demo_label_drift_is_found_by_validate(demo_copy, capsys):
    cfg = demo_copy
    full = cfg.read_text()
    cfg.write_text(re.sub(r"      EDUC: \{.*?\}\n", "", full, count=1, flags=re.S))
    assert main(["validate", str(cfg)]) == 1
    _, err = capsys.readouterr()
    assert "harmonize: EDUC code 4: \"Some college/technical/associate's\" in wave 2012 but \"Associate's degree\" in wave 2014" in err
    assert "np." not in err


def test_unknown_same_meaning_variable(demo_copy, capsys):
    cfg = demo_copy
    cfg.write_text(cfg.read_text().replace("\ntables:\n", "\nharmonize:\n  same_meaning: [{variable: EDUCC, codes: [4]}]\n\ntables:\n", 1))
    assert main(["validate", str(cfg)]) == 2
    _, err = capsys.readouterr()
    assert "harmonize.same_meaning[0].variable: EDUCC is in no wave's data; did you mean 'EDUC'?" in err


# ------------------------------------------------------------------------------ numpy reprs


def test_library_errors_print_no_numpy_repr():
    from pipeline.survey.design import Design
    from pipeline.survey.weighting import rake

    frame = pl.DataFrame({"h": [1, 1, 2, 2], "psu": [1, 2, 1, 2], "w": [1.0, 1, 1, 1]})
    with pytest.raises(DesignError) as info:
        Design.from_frame(frame, weights="w", ids=["psu"], strata="h")
    assert "('psu' = 1 appears in more than one 'h')" in str(info.value) and "np." not in str(info.value)

    sample = pl.DataFrame({"w": [1.0, 1.0, 1.0, 1.0], "x": [1, 2, 1, 2]})
    targets = pl.DataFrame({"variable": ["x", "x"], "category": [1, 2], "target": [2.0, 2.0]})
    reps = np.ones((4, 2))
    reps[1, 1] = -0.5
    with pytest.raises(DataError) as info:
        rake(sample, weight="w", targets=targets, replicates=reps)
    assert "replicate 2: -0.5)" in str(info.value) and "np." not in str(info.value)


def test_run_checks_only_the_waves_it_runs(demo_copy):
    from pipeline.config import load_config
    from pipeline.preflight import preflight

    (demo_copy.parent.parent / "raw" / "insecure_communities_2014.sav").unlink()
    config = load_config(demo_copy)
    assert preflight(config, waves=["2012"]) == [
        "wave 2012: 2,122 rows, 35 columns in insecure_communities_2012.sav (2,004 kept by the cleaning rules)"
    ]
    with pytest.raises(DataError) as info:
        preflight(config)
    assert "insecure_communities_2014.sav: raw file not found (config key waves[1].raw)" in str(info.value)


def test_run_repeats_the_check_only_when_code_config_or_inputs_change(tmp_path, monkeypatch):
    """The pre-flight check reads every wave's raw file; a rerun with the same code, config and
    input bytes skips it (its verdict would be the same), any change makes it run again."""
    import pipeline.preflight

    calls = []
    real = pipeline.preflight.preflight
    monkeypatch.setattr(pipeline.preflight, "preflight", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = project(tmp_path)
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert len(calls) == 1
    cfg.write_text(cfg.read_text().replace("min_n: 5", "min_n: 6"))
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert len(calls) == 2
    raw = tmp_path / "raw" / "targets.csv"
    raw.write_bytes(raw.read_bytes() + b"\n")
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert len(calls) == 3

"""Config loading: validation, every problem at once with key paths, did-you-mean, paths."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline.config import load_config, project_root
from pipeline.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "configs").mkdir(exist_ok=True)
    p = tmp_path / "configs" / "study.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_demo_config_loads():
    config = load_config(ROOT / "configs" / "insecure_communities.yaml")
    assert config.study == "insecure_communities"
    assert [w.id for w in config.waves] == ["2012", "2014"]
    assert config.resolve(config.waves[0].raw) == ROOT / "raw" / "insecure_communities_2012.sav"
    assert config.outputs == ROOT / "outputs" / "insecure_communities"
    ids = [e.id for e in config.estimates]
    assert "contact_police_less_likely" in ids and "afraid_leave_home" in ids


def test_config_is_frozen():
    config = load_config(ROOT / "configs" / "insecure_communities.yaml")
    with pytest.raises(Exception):
        config.study = "other"  # type: ignore[misc]


def test_all_problems_reported_at_once_with_key_paths_and_file(tmp_path):
    p = write(
        tmp_path,
        """\
        study: demo
        waves:
          - id: "1"
            raw: ../raw/a.sav
            targts: ../raw/t.csv
        weight:
          rake:
            variables: [x]
            tolerence: 0.01
        design:
          conf_level: 2
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(p)
    err = info.value
    assert err.exit_code == 2
    assert str(p) in str(err)
    assert err.problems == [
        "waves[0].targts: unknown key; did you mean 'targets'?",
        "weight.rake.tolerence: unknown key; did you mean 'tolerance'?",
        "design.conf_level: Input should be less than 1 (found: 2)",
    ]


def test_missing_required_key_and_wrong_type(tmp_path):
    p = write(tmp_path, "study: demo\nwaves: []\ntables: {min_n: many}\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    problems = info.value.problems
    assert any(x.startswith("waves:") and "at least 1" in x for x in problems)
    assert any(x.startswith("tables.min_n:") and "'many'" in x for x in problems)


def test_unknown_top_level_key_lists_allowed(tmp_path):
    p = write(tmp_path, "study: demo\nwaves: [{id: a, raw: x.sav}]\nestimate: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.problems == ["estimate: unknown key; did you mean 'estimates'?"]


def test_path_outside_project_is_rejected(tmp_path):
    p = write(tmp_path, "study: demo\nwaves: [{id: a, raw: ../../elsewhere/x.sav}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert "waves[0].raw" in info.value.problems[0]
    assert "outside the project" in info.value.problems[0]


def test_bad_expression_is_a_config_error_naming_the_key(tmp_path):
    p = write(
        tmp_path,
        """\
        study: demo
        waves: [{id: a, raw: ../raw/x.sav}]
        clean:
          derive:
            - {name: ok, expr: "A + 1"}
            - {name: bad, expr: "CASE WHEN A = THEN 1 END"}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.problems[0].startswith("clean.derive[1].expr: cannot parse the expression")


def test_yaml_syntax_error_names_line(tmp_path):
    p = write(tmp_path, "study: demo\nwaves: [\n  - id: a\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line \d+, column \d+\)"):
        load_config(p)


def test_duplicate_wave_ids_and_numeric_id(tmp_path):
    p = write(tmp_path, "study: demo\nwaves: [{id: 2012, raw: a.sav}, {id: '2012', raw: b.sav}]\n")
    with pytest.raises(ConfigError, match="ids must be unique"):
        load_config(p)


def test_trim_bounds_checked(tmp_path):
    p = write(tmp_path, "study: demo\nwaves: [{id: a, raw: a.sav}]\nweight: {trim: {lower: 5, upper: 0.2}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.problems == ["weight.trim: upper must be greater than lower (got lower=5.0 and upper=0.2) (found: {lower: 5, upper: 0.2})"]


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("no/such/file.yaml")


def test_project_root(tmp_path):
    assert project_root(tmp_path / "configs" / "a.yaml") == tmp_path.resolve()
    assert project_root(tmp_path / "study" / "a.yaml") == (tmp_path / "study").resolve()


def test_found_values_are_shown_in_yaml_spelling(tmp_path):
    """Issue 10, item 5: what the config holds is quoted as YAML (true, null, {a: 1}), not as a
    Python repr (True, None, {'a': 1})."""
    from pipeline.config import _short

    assert [_short(v) for v in (True, None, "many", {"a": 1, "b": [1, 2]}, 3.5)] == ["true", "null", "'many'", "{a: 1, b: [1, 2]}", "3.5"]

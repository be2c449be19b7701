"""Issue 10, item 10: what the methods statement and the toplines say is true.

The statement said "Weights trimmed at Nonex and 6.0x the median" with only an upper cap, let
calibrated margins (SE 0) pull the range of design effects down to 0.00, named the strata but
not the clustering the SEs use, and said the SEs were R's "after rake()" without saying which
rake; toplines showed calibrated margins as "16-16 ±0.0" as if they were sampling estimates.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import polars as pl
import pytest

from pipeline.config import DesignConfig, PoststratifyConfig, CalibrateConfig, ReplicateConfig, ToplineSpec, TablesConfig, TrimConfig, load_config
from pipeline.exporters.methods import methods_html, methods_markdown, methods_statement
from pipeline.exporters.tables import CALIBRATED, CALIBRATED_NOTE, is_calibrated, prepare_estimates, topline_table
from pipeline.exporters.tidy import table_frame

from exporters.exporter_data import COLUMNS, rows, small_estimates

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_config():
    return load_config(ROOT / "configs" / "insecure_communities.yaml")


def _with(config, *, trim=..., design=None, **weight):
    update = dict(weight)
    if trim is not ...:
        update["trim"] = trim
    out = config.model_copy(update={"weight": config.weight.model_copy(update=update)})
    if design is not None:
        out = out.model_copy(update={"design": config.design.model_copy(update=design)})
    return out


def _statement(config, estimates=None):
    est = small_estimates() if estimates is None else estimates
    return methods_statement(config, config.waves[0], qa=None, clean_report=None, estimates=est)


def _element(statement, head):
    return dict(statement.elements)[head]


# ------------------------------------------------------------------ trimming caps


def test_trimming_with_both_caps(demo_config):
    text = _element(_statement(demo_config), "Weighting")
    assert "Weights trimmed to between 0.2x and 5x the median weight of their COUNTY group" in text
    assert "then raked again" in text


def test_trimming_with_an_upper_cap_only(demo_config):
    config = _with(demo_config, trim=TrimConfig(upper=6.0, by=("COUNTY",)))
    text = _element(_statement(config), "Weighting")
    assert "Weights capped at 6x the median weight of their COUNTY group (no lower cap)" in text
    assert "None" not in text and "Nonex" not in text


def test_trimming_with_a_lower_cap_only(demo_config):
    config = _with(demo_config, trim=TrimConfig(lower=0.3, relative_to="mean", rerake=False))
    text = _element(_statement(config), "Weighting")
    assert "Weights raised to at least 0.3x the mean weight of the sample (no upper cap)" in text
    assert "again" not in text and "None" not in text


def test_trimming_at_absolute_caps(demo_config):
    config = _with(demo_config, trim=TrimConfig(upper=8, relative_to="absolute"))
    assert "Weights capped at 8 (no lower cap)" in _element(_statement(config), "Weighting")


@pytest.mark.parametrize(
    "variant",
    ["demo", "upper_only", "lower_only", "poststratify", "calibrate", "no_methods_section", "replicates"],
)
def test_no_none_anywhere_in_the_methods_statement(demo_config, variant):
    config = {
        "demo": demo_config,
        "upper_only": _with(demo_config, trim=TrimConfig(upper=6.0)),
        "lower_only": _with(demo_config, trim=TrimConfig(lower=0.2)),
        "poststratify": _with(demo_config, rake=None, poststratify=PoststratifyConfig(variable="rk_sex_age", by=("COUNTY",))),
        "calibrate": _with(demo_config, rake=None, calibrate=CalibrateConfig(variables=("rk_sex_age", "rk_educ"), method="logit", bounds=(0.3, 3.0))),
        "no_methods_section": demo_config.model_copy(update={"methods": type(demo_config.methods)()}),
        "replicates": _with(demo_config, design={"variance": "replicate", "replicates": ReplicateConfig(build="bootstrap", replicates=200, seed=1)}),
    }[variant]
    statement = _statement(config)
    for text in (methods_markdown(statement), methods_html(statement)):
        assert "None" not in text


def test_poststratification_and_calibration_are_described_in_words(demo_config):
    post = _element(_statement(_with(demo_config, rake=None, poststratify=PoststratifyConfig(variable="rk_sex_age", by=("COUNTY",)))), "Weighting")
    assert "Post-stratified within COUNTY to population targets on: rk_sex_age." in post
    assert "then post-stratified again" in post and "{" not in post
    cal = _element(_statement(_with(demo_config, rake=None, calibrate=CalibrateConfig(variables=("rk_educ",), method="logit", bounds=(0.3, 3.0)))), "Weighting")
    assert "Calibrated to population targets on: rk_educ (logit distance; g-weights bounded to 0.3-3)." in cal
    assert "{" not in cal


def test_the_demo_methods_statement_has_no_none(demo_project):
    for wave in ("2012", "2014"):
        text = (demo_project / "outputs" / "insecure_communities" / wave / "methods.md").read_text(encoding="utf-8")
        assert "None" not in text
        assert "Weights trimmed to between 0.2x and 5x the median weight of their COUNTY group" in text


# ------------------------------------------------------------------ design effects


def _with_calibrated_margin() -> pl.DataFrame:
    data = rows("q_agree", "Q1", "Agrees", [("", "All", 900, 0.4449, 0.02, "")])
    data += rows("q_often", "Q2", "Often", [("", "All", 880, 0.6125, 0.03, "")])
    data += rows("sex", "rk_sex", "Sex (raking)", [("", "All", 900, 0.49, 0.0, ""), ("REGION", "North", 400, 0.49, 1e-160, "")], level="Male")
    frame = pl.DataFrame(data).select(COLUMNS)
    deff = pl.when(pl.col("estimate_id") == "sex").then(0.0).when(pl.col("estimate_id") == "q_often").then(2.5).otherwise(1.5)
    return prepare_estimates(frame.with_columns(deff.alias("deff")))


def test_design_effect_range_leaves_out_calibrated_margins(demo_config):
    text = _element(_statement(demo_config, _with_calibrated_margin()), "Precision")
    assert "range from 1.50 to 2.50 (1 estimate calibrated to the weighting targets, with no sampling variance, left out)" in text
    assert "0.00" not in text


def test_calibrated_is_no_sampling_variance_strictly_inside_0_and_1():
    assert is_calibrated({"estimate": 0.49, "se": 0.0, "deff": 0.0})
    assert is_calibrated({"estimate": 0.49, "se": 2e-156, "deff": 2e-309})
    assert is_calibrated({"estimate": 0.49, "se": 0.0, "deff": float("nan")})
    assert not is_calibrated({"estimate": 0.0, "se": 0.0, "deff": float("nan")})  # a 0% estimate: its own flag
    assert not is_calibrated({"estimate": 1.0, "se": 0.0, "deff": 0.0})
    assert not is_calibrated({"estimate": 0.45, "se": 0.016, "deff": 2.6})


# ------------------------------------------------------------------ the variance description


def test_variance_description_of_the_demo(demo_config):
    text = _element(_statement(demo_config), "Precision")
    assert "Taylor linearization (as R survey svydesign) on a design with strata COUNTY, each interview its own sampling unit (no clustering)" in text
    assert "no finite population correction" in text and "A stratum with a single PSU stops the run." in text
    assert "raking residuals of the final weights" in text and "(the trimming and the raking before it held fixed)" in text
    assert "after rake() on a design started afresh from the trimmed weights, not after R's chain rake(), trimWeights(), rake()" in text


def test_variance_description_names_the_clusters_when_the_design_has_ids(demo_config):
    config = _with(demo_config, design={"ids": ("PSU", "SSU"), "fpc": ("N_PSU", "N_SSU"), "nest": True, "lonely_psu": "adjust"})
    text = _element(_statement(config), "Precision")
    assert "strata COUNTY, primary sampling units (clusters) PSU, stage-2 units SSU nested in strata and finite population corrections N_PSU, N_SSU" in text
    assert "no clustering" not in text
    assert "A stratum with a single PSU is centred at the sample mean." in text


def test_variance_description_of_replicates_and_of_fixed_weights(demo_config):
    boot = _with(demo_config, design={"variance": "replicate", "replicates": ReplicateConfig(build="bootstrap", replicates=200, seed=1)})
    text = _element(_statement(boot), "Precision")
    assert "from 200 bootstrap replicate weights built from a design with strata COUNTY" in text
    assert "the whole weighting redone in every replicate" in text and "Taylor" not in text
    given = _with(demo_config, design={"variance": "replicate", "replicates": ReplicateConfig(pattern="^REPW", type="JK1")})
    assert "from the delivery's JK1 replicate weights" in _element(_statement(given), "Precision")
    fixed = _with(demo_config, design={"weighting_variance": False})
    text = _element(_statement(fixed), "Precision")
    assert "The weights are treated as fixed" in text and "residuals" not in text


def test_without_trimming_the_ses_are_those_after_one_rake(demo_config):
    text = _element(_statement(_with(demo_config, trim=None)), "Precision")
    assert "so the standard errors account for the raking, as R survey after rake()." in text
    assert "trimWeights" not in text


# ------------------------------------------------------------------ toplines


def _topline():
    return topline_table(_with_calibrated_margin(), ToplineSpec(id="topline", estimates=("sex", "q_agree")), TablesConfig(labels={"REGION": "Region"}))


def test_topline_marks_calibrated_margins_and_shows_no_interval():
    table = _topline()
    sex = [r for r in table.rows if r.cells[1].text in ("All", "North") and r.group == "Sex (raking)"]
    assert [[c.text for c in r.cells[2:]] for r in sex] == [["900", f"49{CALIBRATED}", "–", "–"], ["400", f"49{CALIBRATED}", "–", "–"]]
    agree = next(r for r in table.rows if r.group == "Agrees")
    assert agree.cells[3].text == "44" and "–" not in agree.cells[4].text[:1]
    assert CALIBRATED_NOTE in table.footnotes
    plain = topline_table(small_estimates(), ToplineSpec(id="topline"), TablesConfig())
    assert CALIBRATED_NOTE not in plain.footnotes and not any(CALIBRATED in c.text for r in plain.rows for c in r.cells)


def test_calibrated_mark_in_every_format():
    from pipeline.exporters.html import table_html
    from pipeline.exporters.latex import table_latex
    from pipeline.exporters.markdown import table_markdown
    from pipeline.exporters.xlsx import workbook_bytes

    table = _topline()
    assert "| All | All | 900 | 49¶ | – | – |" in table_markdown(table)
    for text in (table_html(table), table_latex(table)):
        assert "49¶" in text and "Calibrated to the weighting targets" in text
    tidy = table_frame(table, _with_calibrated_margin()).filter(pl.col("estimate_id") == "sex")
    assert tidy.filter(pl.col("field") == "ci").get_column("text").to_list() == ["–", "–"]
    assert tidy.filter(pl.col("field") == "moe").get_column("value").null_count() == 2
    book = zipfile.ZipFile(io.BytesIO(workbook_bytes((table,), estimates=_with_calibrated_margin())))
    sheet = book.read("xl/worksheets/sheet2.xml").decode()
    strings = book.read("xl/sharedStrings.xml").decode()
    styles = book.read("xl/styles.xml").decode()
    assert "Calibrated to the weighting targets" in strings and "0%&quot;¶&quot;" in styles
    # the calibrated rows' intervals are the text "–", not the bounds 0.49-0.49 as numbers
    assert "<v>0.49</v>" in sheet  # the percent cell
    assert sheet.count("<v>0.49</v>") == 2

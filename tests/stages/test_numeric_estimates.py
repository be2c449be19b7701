"""Issue 12, first slice: means, totals, ratios and quantiles from the config through the
estimate stage, the tables, the charts and the reliability flags.

Reference values: R ``survey`` 4.1-1, read from ``../shared/conformance`` (its README: the
design ``strat`` is ``svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data =
apistrat)``, ``clus1`` is ``svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data =
apiclus1)``). Closed-form estimates and SEs agree to 1e-9 relative (the README's tolerance);
the Wald t interval is ``ci_low_t``/``ci_high_t`` (``confint(x, df = degf(design))``);
quantiles are R's exact values (the math rule picks a data value).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from csvstudy import csv_project as _project
from csvstudy import r_row as _r
from pipeline.cli import main

CONFORMANCE = (Path(__file__).parents[2] / ".." / "shared" / "conformance").resolve()
RTOL = 1e-9


def _data(name: str) -> pl.DataFrame:
    return pl.read_csv(CONFORMANCE / "data" / name)


STRAT = """\
study: strat
waves:
  - id: "1"
    raw: RAW
design:
  weights: pw
  strata: [stype]
  fpc: [fpc]
tables:
  banners:
    - {id: banner, columns: [[], [stype]]}
export:
  formats: [csv, markdown, png, svg]
estimates:
  - {id: api00_mean, mean: api00, by: [[], [stype]]}
  - {id: api00_total, total: api00, by: [[], [stype]]}
  - {id: enroll_total, total: enroll}
  - {id: stu_ratio, ratio: {numerator: api.stu, denominator: enroll}}
  - {id: api00_q, quantile: api00, probs: [0.25, 0.5, 0.75]}
  - {id: awards_n, total: awards, levels: ["Yes"], by: [[], [stype]]}
  - {id: sch_wide, proportion: sch.wide, levels: ["Yes"]}
"""


@pytest.fixture(scope="module")
def strat(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("strat")
    cfg = _project(tmp, _data("apistrat.csv"), STRAT, "strat")
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = tmp / "outputs" / "strat" / "1"
    return out, pl.read_csv(out / "estimates.csv")


def _row(est: pl.DataFrame, estimate_id: str, domain: str = "All", level: str | None = None) -> dict:
    rows = est.filter((pl.col("estimate_id") == estimate_id) & (pl.col("domain") == domain))
    if level is not None:
        rows = rows.filter(pl.col("level") == level)
    assert rows.height == 1, (estimate_id, domain, level)
    return rows.row(0, named=True)


def _check_wald(got: dict, r: dict) -> None:
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low_t"), ("ci_high", "ci_high_t"), ("deff", "deff")):
        assert got[ours] == pytest.approx(r[theirs], rel=RTOL), ours
    assert got["df"] == r["df"]


@pytest.mark.parametrize(
    ("estimate_id", "case", "statistic"),
    [
        ("api00_mean", "svymean:api00:strat", "mean"),  # svymean(~api00, strat, deff=TRUE)
        ("api00_total", "svytotal:api00:strat", "total"),  # svytotal(~api00, strat, deff=TRUE)
        ("enroll_total", "svytotal:enroll:strat", "total"),
        ("stu_ratio", "svyratio:api.stu/enroll:strat", "ratio"),  # svyratio(~api.stu, ~enroll, strat, deff=TRUE)
    ],
)
def test_mean_total_ratio_of_the_whole_sample_match_r(strat, estimate_id, case, statistic):
    _, est = strat
    got = _row(est, estimate_id)
    _check_wald(got, _r("estimates.csv", case))
    assert got["statistic"] == statistic and got["level"] == "" and got["ci_method"] == "wald"
    assert got["n"] == 200 and got["flag"] == ""


@pytest.mark.parametrize(("estimate_id", "case"), [("api00_mean", "svyby:svymean:api00:stype:strat"), ("api00_total", "svyby:svytotal:api00:stype:strat")])
@pytest.mark.parametrize("stype", ["E", "H", "M"])
def test_means_and_totals_by_domain_match_r_svyby(strat, estimate_id, case, stype):
    _, est = strat
    got = _row(est, estimate_id, domain=stype)
    r = _r("domains.csv", case, domain=f"stype={stype}")  # svyby(~api00, ~stype, strat, svymean, deff=TRUE)
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low_t"), ("ci_high", "ci_high_t")):
        assert got[ours] == pytest.approx(r[theirs], rel=RTOL), ours
    assert got["by"] == "stype" and got["n"] == _data("apistrat.csv").filter(pl.col("stype") == stype).height


@pytest.mark.parametrize("stype", ["E", "H", "M"])
def test_total_of_a_text_code_is_the_number_with_it_as_r(strat, stype):
    """``total: awards, levels: ["Yes"]``: R ``svyby(~awards, ~stype, strat, svytotal)``, level Yes."""
    _, est = strat
    got = _row(est, "awards_n", domain=stype)
    r = _r("domains.csv", "svyby:svytotal:awards:stype:strat", level="Yes", domain=f"stype={stype}")
    for ours, theirs in (("estimate", "estimate"), ("se", "se"), ("ci_low", "ci_low_t"), ("ci_high", "ci_high_t")):
        assert got[ours] == pytest.approx(r[theirs], rel=RTOL), ours
    assert got["statistic"] == "total" and got["level"] == "Yes"
    yes = _data("apistrat.csv").filter((pl.col("stype") == stype) & (pl.col("awards") == "Yes")).height
    assert got["cell_n"] == yes
    whole = _row(est, "awards_n")
    _check_wald(whole, _r("estimates.csv", "svytotal:awards:strat", level="Yes"))


@pytest.mark.parametrize("prob", [0.25, 0.5, 0.75])
def test_quantiles_match_r_svyquantile(strat, prob):
    """``svyquantile(~api00, strat, quantiles=c(0.25,0.5,0.75), ci=TRUE, qrule="math")``."""
    _, est = strat
    got = _row(est, "api00_q", level=f"p{100 * prob:g}")
    r = _r("quantiles.csv", "svyquantile:api00:math:default(mean):strat", level=f"{prob:g}")
    assert (got["estimate"], got["ci_low"], got["ci_high"]) == (r["estimate"], r["ci_low"], r["ci_high"])
    assert got["se"] == pytest.approx(r["se"], rel=RTOL)
    assert got["statistic"] == "quantile" and got["ci_method"] == "woodruff" and got["df"] == r["df"] and got["deff"] is None


def test_a_proportion_of_a_text_code(strat):
    _, est = strat
    got = _row(est, "sch_wide")
    r = _r("estimates.csv", "svymean:sch.wide:strat", level="Yes")
    assert (got["level"], got["estimate"]) == ("Yes", pytest.approx(r["estimate"], rel=RTOL))


def test_tables_show_each_statistic_in_its_own_format(strat):
    out, est = strat
    top = (out / "tables" / "topline.md").read_text()
    mean = _row(est, "api00_mean")
    assert f"| All | All |  | 200 | {mean['estimate']:.1f} | {mean['ci_low']:.1f}–{mean['ci_high']:.1f} |" in top  # 662.3 | 643.7–680.8
    total = _row(est, "api00_total")
    assert f"| {total['estimate']:,.0f} | {total['ci_low']:,.0f}–{total['ci_high']:,.0f} |" in top  # 4,102,208
    assert "| 0.84 | 0.82–0.85 |" in top  # the ratio, two decimals more than tables.decimals
    assert "Weighted mean (variable api00" in top and "Share answering “”" not in top
    banner = (out / "tables" / "banner.md").read_text()
    assert "| mean | 662.3 |" in banner
    assert "Weighted percentages;" not in banner  # the notes speak of every statistic


def test_banner_letters_compare_means_with_the_design_covariance(strat):
    """E's mean api00 (674.4) exceeds H's (625.8): the difference of two domains of one
    stratified design (independent strata), t = d / sqrt(se_E^2 + se_H^2) on the smaller of
    the two domains' degrees of freedom (H: 49), as for shares."""
    from scipy import stats

    out, est = strat
    cmp = pl.read_csv(out / "estimate" / "comparisons.csv").filter(pl.col("estimate_id") == "api00_mean")
    e, h = _row(est, "api00_mean", "E"), _row(est, "api00_mean", "H")
    pair = cmp.filter((pl.col("domain_a") == "E") & (pl.col("domain_b") == "H")).row(0, named=True)
    se = (e["se"] ** 2 + h["se"] ** 2) ** 0.5  # strata are sampled independently: no covariance
    assert pair["difference"] == pytest.approx(e["estimate"] - h["estimate"], rel=1e-12)
    assert pair["se"] == pytest.approx(se, rel=1e-9)
    assert pair["df"] == 49
    assert pair["p_value"] == pytest.approx(2 * stats.t.sf((e["estimate"] - h["estimate"]) / se, 49), rel=1e-6)
    assert "674.4 B" in (out / "tables" / "banner.md").read_text()
    assert cmp.filter(pl.col("estimate_id") == "api00_q").height == 0


def test_charts_draw_means_on_their_own_scale(strat):
    out, _ = strat
    for est_id in ("api00_mean", "api00_total", "stu_ratio", "api00_q"):
        assert (out / "charts" / f"{est_id}.png").read_bytes()[:4] == b"\x89PNG"
    ratio = (out / "charts" / "stu_ratio.svg").read_text()
    assert "0.84" in ratio and "ratio of totals (weighted)" in ratio and "percent" not in ratio  # not 0-100%
    total = (out / "charts" / "api00_total.svg").read_text()
    assert "4,102,208" in total and "estimated number (weighted)" in total


CLUS1 = """\
study: clus1
waves:
  - id: "1"
    raw: RAW
design:
  weights: pw
  ids: [dnum]
  fpc: [fpc]
estimates:
  - {id: api00_mean, mean: api00}
  - {id: enroll_total, total: enroll}
  - {id: stu_ratio, ratio: {numerator: api.stu, denominator: enroll}}
  - {id: api00_median, quantile: api00}
"""


def test_a_cluster_sample_matches_r_and_flags_by_the_relative_standard_error(tmp_path):
    """``clus1``: 15 districts, 14 df. The total of enroll has an RSE of 27% (not flagged); with
    ``tables.reliability.max_rse: 0.2`` it is flagged ``rse>0.2`` and stays shown."""
    cfg = _project(tmp_path, _data("apiclus1.csv"), CLUS1, "clus1")
    assert main(["run", str(cfg), "--quiet"]) == 0
    est = pl.read_csv(tmp_path / "outputs" / "clus1" / "1" / "estimates.csv")
    for est_id, case in (("api00_mean", "svymean:api00:clus1"), ("enroll_total", "svytotal:enroll:clus1"), ("stu_ratio", "svyratio:api.stu/enroll:clus1")):
        _check_wald(_row(est, est_id), _r("estimates.csv", case))
    median = _row(est, "api00_median")
    r = _r("quantiles.csv", "svyquantile:api00:math:default(mean):clus1", level="0.5")
    assert (median["level"], median["estimate"], median["ci_low"], median["ci_high"]) == ("p50", r["estimate"], r["ci_low"], r["ci_high"])
    assert est.get_column("flag").to_list() == [""] * est.height
    cfg.write_text(cfg.read_text() + "tables:\n  reliability: {max_rse: 0.2}\n")
    assert main(["run", str(cfg), "--quiet"]) == 0
    est = pl.read_csv(tmp_path / "outputs" / "clus1" / "1" / "estimates.csv")
    total = _row(est, "enroll_total")
    assert total["se"] / total["estimate"] > 0.2 and total["flag"] == "rse>0.2"
    assert _row(est, "api00_mean")["flag"] == ""
    top = (tmp_path / "outputs" / "clus1" / "1" / "tables" / "topline.md").read_text()
    assert "¶ Relative standard error above 0.2: statistically unreliable" in top and "| 3,404,940¶ |" in top


def test_flags_apply_disclosure_and_min_n_to_every_statistic():
    from pipeline.config import TablesConfig
    from pipeline.flags import flags

    rows = pl.DataFrame({
        "statistic": ["mean", "total", "quantile", "ratio", "mean"],
        "n": [5, 25, 200, 200, 200], "cell_n": [None, None, None, None, None],
        "estimate": [38.0, 1000.0, 10.0, 0.5, 0.0], "se": [1.0, 10.0, 4.0, 0.1, 0.0], "df": [100.0] * 5,
    }, schema_overrides={"cell_n": pl.Int64})
    assert flags(rows, TablesConfig()).to_list() == ["cell<10", "n<30", "rse>0.3", "", "rse>0.3"]


def test_a_numeric_variable_as_a_proportion_is_refused_with_a_hint_to_mean(tmp_path, capsys):
    config = CLUS1.replace("  - {id: api00_mean, mean: api00}", "  - {id: api00_share, proportion: api00}")
    cfg = _project(tmp_path, _data("apiclus1.csv"), config, "clus1")
    for command in ("validate", "run"):
        assert main([command, str(cfg)]) == 2
        err = capsys.readouterr().err
        assert "estimates[0].proportion (api00_share): api00 is a numeric variable without value labels" in err
        assert "mean: api00" in err and "Traceback" not in err
    assert not (tmp_path / "outputs" / "clus1" / "1" / "estimates.csv").exists()


def test_the_estimate_stage_refuses_it_too():
    from pipeline.config import DesignConfig, EstimateSpec, TablesConfig
    from pipeline.errors import ConfigError
    from pipeline.io import Codebook
    from pipeline.stages.estimate import build_design, estimate_all

    frame = _data("apiclus1.csv")
    design = build_design(frame, DesignConfig(weights="pw", ids=("dnum",), fpc=("fpc",)))
    specs = [EstimateSpec(id="x", proportion="api00"), EstimateSpec(id="y", mean="stype")]
    with pytest.raises(ConfigError) as exc:
        estimate_all(frame, Codebook(), specs, design, DesignConfig(weights="pw"), TablesConfig(), wave="1")
    text = str(exc.value) + " ".join(exc.value.problems)
    assert "ask for its average with mean: api00" in text
    assert "estimates[1].mean (y): stype is text, not numeric; use proportion: stype" in text


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{id: a, mean: x, total: x}", "exactly one of proportion, mean, total, ratio, quantile, difference (found mean and total together)"),
        ("{id: a}", "exactly one of proportion, mean, total, ratio, quantile, difference (found none)"),
        ("{id: a, mean: x, levels: [1]}", "levels applies to proportion and total, not to mean"),
        ("{id: a, mean: x, probs: [0.5]}", "probs applies to quantile, not to mean"),
        ("{id: a, quantile: x, probs: [1.5]}", "less than or equal to 1"),
        ("{id: a, mean: x, ci_method: logit}", "ci_method applies to proportion"),
        ("{id: a, ratio: {numerator: x}}", "denominator"),
    ],
)
def test_config_refuses_an_estimate_without_exactly_one_statistic(tmp_path, capsys, entry, message):
    cfg = _project(tmp_path, _data("apiclus1.csv"), CLUS1.split("estimates:")[0] + f"estimates:\n  - {entry}\n", "clus1")
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_value_formats():
    from pipeline.exporters.values import VALUE_FORMATS

    assert VALUE_FORMATS["mean"].text(38.2149, 0) == "38.2"
    assert VALUE_FORMATS["mean"].text(38.2149, 1) == "38.21"
    assert VALUE_FORMATS["total"].text(1234000.4, 2) == "1,234,000"
    assert VALUE_FORMATS["proportion"].text(0.4449, 0) == "44"
    assert VALUE_FORMATS["total"].margin(1234.4, 0) == "±1,234"
    assert VALUE_FORMATS["proportion"].margin(0.041, 0) == "±4.1"


TWO_WAVES = """\
study: two
waves:
  - id: "1"
    raw: RAW
  - id: "2"
    raw: RAW
design:
  weights: pw
  strata: [stype]
  fpc: [fpc]
estimates:
  - {id: sch_wide, proportion: sch.wide, levels: ["Yes"]}
  - {id: api00_mean, mean: api00}
tables:
  trends:
    - {id: tr}
export:
  formats: [csv, markdown, png]
"""


def test_trend_tables_show_a_mean_s_change_in_its_unit_and_the_chart_one_statistic(tmp_path, capsys):
    data = _data("apistrat.csv")
    cfg = _project(tmp_path, data, TWO_WAVES, "two")
    assert main(["run", str(cfg), "--quiet"]) == 0
    out = tmp_path / "outputs" / "two" / "trends"
    table = (out / "tr.md").read_text()
    assert "Change 1–2 (points for shares)" in table
    assert "| All | 662.3 | 662.3 | 0.0 |" in table  # a change of 0.0 (the mean's unit), not 0 points
    assert (out / "trend_chart.png").read_bytes()[:4] == b"\x89PNG"  # the proportions (the first statistic) only
    cfg.write_text(cfg.read_text().replace("  formats: [csv, markdown, png]", "  formats: [csv, markdown, png]\n  charts: [sch_wide, api00_mean]"))
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "export.charts: the trend chart draws estimates of one statistic on one axis; these are of mean, proportion" in err
    assert "Traceback" not in err


def test_a_mean_change_is_signed_in_its_unit():
    from pipeline.exporters.values import VALUE_FORMATS

    assert VALUE_FORMATS["mean"].change(2.34, 0) == "+2.3"
    assert VALUE_FORMATS["mean"].change(-0.01, 0) == "0.0"  # no sign on a change that rounds to 0
    assert VALUE_FORMATS["proportion"].change(-0.02, 0) == "-2"


def test_an_estimate_s_own_decimals_apply_to_its_tables_and_trends(tmp_path):
    config = TWO_WAVES.replace("  - {id: api00_mean, mean: api00}", "  - {id: api00_mean, mean: api00, decimals: 2}")
    cfg = _project(tmp_path, _data("apistrat.csv"), config, "two")
    assert main(["run", str(cfg), "--quiet"]) == 0
    top = (tmp_path / "outputs" / "two" / "1" / "tables" / "topline.md").read_text()
    assert "| All | All | 200 | 662.29 | 643.73–680.84 | ±18.56 |" in top
    assert "| All | All | 200 | 83 |" in top  # the share keeps tables.decimals
    trend = (tmp_path / "outputs" / "two" / "trends" / "tr.md").read_text()
    assert "| All | 662.29 | 662.29 | 0.00 |" in trend


def test_a_mean_of_a_text_variable_is_refused_by_validate_with_a_hint_to_proportion(tmp_path, capsys):
    config = CLUS1.split("estimates:")[0] + "estimates:\n  - {id: m, mean: stype}\n"
    cfg = _project(tmp_path, _data("apiclus1.csv"), config, "clus1")
    assert main(["validate", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "column stype is text, but estimates[0].mean needs numbers" in err
    assert "ask for the shares of its answers with proportion: stype" in err and "Traceback" not in err


def test_a_replicate_design_gives_r_s_replicate_estimates(tmp_path):
    """``as.svrepdesign(clus1, type = "JK1")`` (``design.replicates.build: JK1`` from ``pw``)."""
    config = CLUS1.replace("  fpc: [fpc]\n", "  fpc: [fpc]\n  variance: replicate\n  replicates: {build: JK1}\n")
    cfg = _project(tmp_path, _data("apiclus1.csv"), config, "clus1")
    assert main(["run", str(cfg), "--quiet"]) == 0
    est = pl.read_csv(tmp_path / "outputs" / "clus1" / "1" / "estimates.csv")
    for est_id, case in (("api00_mean", "svymean:api00:clus1_jk1"), ("enroll_total", "svytotal:enroll:clus1_jk1"),
                         ("stu_ratio", "svyratio:api.stu/enroll:clus1_jk1")):
        got, r = _row(est, est_id), _r("estimates.csv", case)
        for key in ("estimate", "se"):
            assert got[key] == pytest.approx(r[key], rel=RTOL), (est_id, key)
        assert got["ci_low"] == pytest.approx(r["ci_low_t"], rel=RTOL) and got["df"] == r["df"]
    median = _row(est, "api00_median")
    r = _r("quantiles.csv", "svyquantile:api00:math:default(mean):clus1_jk1", level="0.5")
    assert (median["estimate"], median["ci_low"], median["ci_high"]) == (r["estimate"], r["ci_low"], r["ci_high"])
    assert median["se"] == pytest.approx(r["se"], rel=RTOL)

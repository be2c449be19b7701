"""Issue 10, items 3 and 4: weights derived from the fpc, and weights delivered with the data.

Item 3: a design with ``fpc`` and no weights (R's ``apiclus2``:
``svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2)``) ran with weights of 1 (the unweighted
share 0.2143) where R derives the weights from the fpc (0.2487).

Item 4: a delivered weight (``pw``) needed a trick; ``design.weights: pw`` reported a Kish
design effect of 1.000 in the QA, could not build replicates, and given replicate columns
needed a hand-typed fpc-aware ``scale``.

Reference values: R ``survey`` 4.1-1, read from ``../shared/conformance`` (see its README).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from csvstudy import conformance_data as _data
from csvstudy import csv_project as _project
from csvstudy import r_row
from pipeline.cli import main
from pipeline.errors import ArgumentError, ConfigError, DataError
from pipeline.survey import Design, mean

CONFORMANCE = (Path(__file__).parents[2] / ".." / "shared" / "conformance").resolve()
#: Closed-form estimates and SEs: the conformance README's suggested tolerance.
RTOL_CLOSED = 1e-9


def _outputs(cfg: Path, study: str) -> Path:
    return cfg.parent.parent / "outputs" / study / "1"


def _estimate(cfg: Path, study: str, level: str) -> dict:
    est = pl.read_csv(_outputs(cfg, study) / "estimates.csv")
    return est.filter((pl.col("domain") == "All") & (pl.col("level") == level)).row(0, named=True)


SCH_WIDE = """\
estimates:
  - id: sch_wide
    proportion: sch.wide
    by: [[]]
"""


# ------------------------------------------------------------------ item 3: weights from the fpc


def test_fpc_only_two_stage_design_from_the_cli_matches_r(tmp_path, capsys):
    cfg = _project(tmp_path, _data("apiclus2.csv"), textwrap.dedent("""\
        study: clus2
        waves:
          - id: "1"
            raw: RAW
        design:
          ids: [dnum, snum]
          fpc: [fpc1, fpc2]
        """) + SCH_WIDE)
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    got = _estimate(cfg, "clus2", "No")
    r = r_row("estimates.csv", "svymean:sch.wide:clus2", "No")  # svymean(~sch.wide, clus2, deff = TRUE)
    assert got["estimate"] == pytest.approx(0.2487, abs=5e-5)  # not the unweighted 0.2143
    for key in ("estimate", "se", "deff"):
        assert got[key] == pytest.approx(r[key], rel=RTOL_CLOSED), key
    qa = json.loads((_outputs(cfg, "clus2") / "weight" / "qa.json").read_text())
    assert qa["base"]["source"] == "fpc"
    assert qa["population"] == pytest.approx(5128.675, rel=1e-12)  # designs.csv: sum_weights of clus2
    assert "derived from design.fpc" in (_outputs(cfg, "clus2") / "weight" / "qa.md").read_text()


def test_fpc_only_simple_random_sample_from_the_cli_matches_r(tmp_path, capsys):
    cfg = _project(tmp_path, _data("apisrs.csv"), textwrap.dedent("""\
        study: srs
        waves:
          - id: "1"
            raw: RAW
        design:
          fpc: [fpc]
        """) + SCH_WIDE)
    assert main(["run", str(cfg), "--quiet"]) == 0
    got = _estimate(cfg, "srs", "Yes")
    r = r_row("estimates.csv", "svymean:sch.wide:srs", "Yes")  # svydesign(id = ~1, fpc = ~fpc, data = apisrs)
    for key in ("estimate", "se", "deff"):
        assert got[key] == pytest.approx(r[key], rel=RTOL_CLOSED), key


def test_design_from_frame_derives_the_weights_from_the_fpc_as_r():
    api = _data("apiclus2.csv")
    d = Design.from_frame(api, ids=["dnum", "snum"], fpc=["fpc1", "fpc2"])
    r_weights = pl.read_csv(CONFORMANCE / "expected" / "weights" / "clus2.csv").get_column("weight").to_numpy()
    np.testing.assert_array_equal(d.weights, r_weights)  # R: 1 / (n1/N1 * n2/N2), to the last bit
    got = mean(d, "api00").to_frame().row(0, named=True)
    r = r_row("estimates.csv", "svymean:api00:clus2")
    for key in ("estimate", "se", "deff"):
        assert got[key] == pytest.approx(r[key], rel=RTOL_CLOSED), key
    # one stage, no clusters: R's srs = svydesign(id = ~1, fpc = ~fpc), weights N/n
    srs = Design.from_frame(_data("apisrs.csv"), fpc=["fpc"])
    r_srs = pl.read_csv(CONFORMANCE / "expected" / "weights" / "srs.csv").get_column("weight").to_numpy()
    np.testing.assert_array_equal(srs.weights, r_srs)
    # the same fpc given as sampling fractions
    fractions = api.with_columns(
        (pl.col("dnum").n_unique() / pl.col("fpc1")).alias("f1"),
        (pl.col("snum").n_unique().over("dnum") / pl.col("fpc2")).alias("f2"),
    )
    df = Design.from_frame(fractions, ids=["dnum", "snum"], fpc=["f1", "f2"])
    np.testing.assert_allclose(df.weights, r_weights, rtol=1e-14)


def test_weights_that_cannot_be_derived_from_the_fpc_are_refused(tmp_path, capsys):
    # a second stage sampled with replacement (fraction 0: infinite population): R's
    # weights.survey_fpc stops with "Weights not supplied and can't be computed from fpc"
    api = _data("apiclus2.csv").with_columns(pl.lit(20 / 757).alias("f1"), pl.lit(0.0).alias("f2"))
    with pytest.raises(ArgumentError, match="no weights were given and they cannot be derived from fpc: row 1, stage 2"):
        Design.from_frame(api, ids=["dnum", "snum"], fpc=["f1", "f2"])
    cfg = _project(tmp_path, api, textwrap.dedent("""\
        study: clus2wr
        waves:
          - id: "1"
            raw: RAW
        design:
          ids: [dnum, snum]
          fpc: [f1, f2]
        """) + SCH_WIDE)
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "design.fpc: no weights were given and they cannot be derived from fpc: row 1, stage 2 ('f2' = 0)" in err
    assert "weight.base.column" in err and "Traceback" not in err


# ------------------------------------------------------------------ item 4: delivered weights


STRAT = """\
study: strat
waves:
  - id: "1"
    raw: RAW
"""


def _kish(w: np.ndarray) -> float:
    return float(len(w) * (w**2).sum() / w.sum() ** 2)


@pytest.mark.parametrize(
    "weighting",
    [
        "design:\n  weights: pw\n  strata: [stype]\n  fpc: [fpc]\n",  # a final weight used as is
        "weight:\n  base: {column: pw}\ndesign:\n  strata: [stype]\n  fpc: [fpc]\n",  # the weighting starts from it
    ],
    ids=["design.weights", "weight.base.column"],
)
def test_delivered_weight_validates_runs_matches_r_and_its_qa_is_truthful(tmp_path, capsys, weighting):
    cfg = _project(tmp_path, _data("apistrat.csv"), STRAT + weighting + SCH_WIDE)
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    got = _estimate(cfg, "strat", "No")
    r = r_row("estimates.csv", "svymean:sch.wide:strat", "No")  # svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc)
    for key in ("estimate", "se", "deff"):
        assert got[key] == pytest.approx(r[key], rel=RTOL_CLOSED), key
    out = _outputs(cfg, "strat") / "weight"
    qa = json.loads((out / "qa.json").read_text())
    pw = _data("apistrat.csv").get_column("pw").to_numpy()
    assert qa["base"] == {"source": "column", "column": "pw", "factors": []}
    assert qa["kish_deff"] == pytest.approx(_kish(pw), rel=1e-12)  # 1.186, not 1.000
    assert qa["effective_n"] == pytest.approx(200 / _kish(pw), rel=1e-12)
    assert (qa["final"]["min"], qa["final"]["max"]) == pytest.approx((pw.min() * 200 / pw.sum(), pw.max() * 200 / pw.sum()))
    assert qa["population"] == pytest.approx(pw.sum())
    md = (out / "qa.md").read_text()
    assert f"Kish design effect: {_kish(pw):.3f}" in md and "Kish design effect: 1.000" not in md
    assert "the delivered weight `pw`" in md


def test_nhanes_weight_as_the_base_weight_matches_r(tmp_path, capsys):
    cfg = _project(tmp_path, _data("nhanes.csv"), textwrap.dedent("""\
        study: nhanes
        waves:
          - id: "1"
            raw: RAW
        weight:
          base: {column: WTMEC2YR}
        design:
          ids: [SDMVPSU]
          strata: [SDMVSTRA]
          nest: true
        estimates:
          - id: hi_chol
            proportion: HI_CHOL
            levels: [1]
            by: [[]]
        """))
    assert main(["run", str(cfg), "--quiet"]) == 0
    est = pl.read_csv(_outputs(cfg, "nhanes") / "estimates.csv").row(0, named=True)
    r = r_row("estimates.csv", "svymean:HI_CHOL:nhanes")  # svymean(~HI_CHOL, nhanes, na.rm = TRUE, deff = TRUE)
    for key in ("estimate", "se", "deff"):
        assert est[key] == pytest.approx(r[key], rel=RTOL_CLOSED), key


def test_replicates_built_from_a_delivered_weight_match_r(tmp_path, capsys):
    cfg = _project(tmp_path, _data("apiclus1.csv"), textwrap.dedent("""\
        study: clus1
        waves:
          - id: "1"
            raw: RAW
        design:
          weights: pw
          ids: [dnum]
          fpc: [fpc]
          variance: replicate
          replicates: {build: JK1}
        """) + SCH_WIDE)
    assert main(["run", str(cfg), "--quiet"]) == 0
    got = _estimate(cfg, "clus1", "No")
    r = r_row("estimates.csv", "svymean:sch.wide:clus1_jk1", "No")  # as.svrepdesign(clus1, type = "JK1")
    for key in ("estimate", "se"):
        assert got[key] == pytest.approx(r[key], rel=RTOL_CLOSED), key
    meta = json.loads((_outputs(cfg, "clus1") / "weight" / "replicates.json").read_text())
    assert (meta["source"], meta["weights"], meta["n_replicates"]) == ("build", "pw", 15)


def _clus1_with_r_replicates() -> pl.DataFrame:
    reps = pl.read_csv(CONFORMANCE / "expected" / "repweights" / "clus1_jk1.csv")
    return pl.concat([_data("apiclus1.csv"), reps.drop("row", "weight")], how="horizontal")


def _r_scale(design: str) -> float:
    scales = pl.read_csv(CONFORMANCE / "expected" / "replicate_scales.csv").filter(pl.col("design") == design)
    return float((scales.get_column("scale") * scales.get_column("rscale")).unique().item())


@pytest.mark.parametrize("fpc", ["{fpc: 757, fpctype: population}", "{fpc: 0.019815059445178335, fpctype: fraction}"])
def test_given_jk1_replicates_take_an_fpc_aware_scale(tmp_path, capsys, fpc):
    # R's clus1_jk1 replicate weights given as columns: scale (n-1)/n x (1 - n/N) from the fpc,
    # not a hand-typed 0.9148
    cfg = _project(tmp_path, _clus1_with_r_replicates(), textwrap.dedent(f"""\
        study: clus1rep
        waves:
          - id: "1"
            raw: RAW
        design:
          weights: pw
          variance: replicate
          replicates: {{pattern: "^rep_[0-9]+$", type: JK1, {fpc[1:-1]}}}
        """) + SCH_WIDE)
    assert main(["validate", str(cfg)]) == 0
    assert main(["run", str(cfg), "--quiet"]) == 0
    meta = json.loads((_outputs(cfg, "clus1rep") / "weight" / "replicates.json").read_text())
    effective = np.asarray(meta["rscales"]) * meta["scale"]
    np.testing.assert_allclose(effective, _r_scale("clus1_jk1"), rtol=1e-14)
    got = _estimate(cfg, "clus1rep", "No")
    r = r_row("estimates.csv", "svymean:sch.wide:clus1_jk1", "No")
    for key in ("estimate", "se"):
        assert got[key] == pytest.approx(r[key], rel=RTOL_CLOSED), key


def test_replicate_fpc_in_the_library_gives_r_jk1_scale_of_clus2():
    # designs.csv: as.svrepdesign(clus2, type = "JK1") has scale 0.92348 = 39/40 x (1 - 40/757)
    designs = pl.read_csv(CONFORMANCE / "expected" / "designs.csv").filter(pl.col("design") == "clus2_jk1")
    api = _data("apiclus2.csv")
    psu = api.get_column("dnum").to_numpy()
    unq = np.unique(psu)
    reps = (psu[:, None] != unq[None, :]) * len(unq) / (len(unq) - 1.0)
    d = Design.from_replicate_weights(api, replicate_weights=reps, type="JK1", combined_weights=False, scale=39 / 40, fpc=757, fpctype="population")
    np.testing.assert_allclose(d.replicates.scale * d.replicates.rscales, designs.get_column("scale").item(), rtol=1e-14)
    with pytest.raises(ArgumentError, match="fpc is not available for BRR"):
        Design.from_replicate_weights(api, replicate_weights=reps, type="BRR", fpc=0.1, fpctype="fraction")
    with pytest.raises(ArgumentError, match="fpc has 2 values for 40 replicates"):
        Design.from_replicate_weights(api, replicate_weights=reps, type="JK1", fpc=[0.1, 0.2], fpctype="fraction")


def test_missing_or_non_positive_delivered_weights_are_a_data_error(tmp_path, capsys):
    pw = _data("apistrat.csv").get_column("pw").to_list()
    pw[2], pw[6], pw[9] = None, 0.0, -3.0
    data = _data("apistrat.csv").with_columns(pl.Series("pw", pw))
    cfg = _project(tmp_path, data, STRAT + "design:\n  weights: pw\n  strata: [stype]\n" + SCH_WIDE)
    assert main(["run", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (
        "design.weights: the delivered weight pw is missing or not positive on 3 row(s) "
        "(1 missing, 2 zero, negative or infinite; raw rows [3, 7, 10])"
    ) in err
    assert "Traceback" not in err


def test_a_delivered_final_weight_with_weighting_configured_is_a_config_error(tmp_path, capsys):
    cfg = _project(tmp_path, _data("apistrat.csv"), STRAT + "weight:\n  base: {population_by: [stype]}\ndesign:\n  weights: pw\n" + SCH_WIDE)
    assert main(["validate", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "design.weights: pw is a delivered weight, used as the final weight as is, but the weight stage is configured to make its own (weight.base.population_by)" in err
    assert "write weight.base.column: pw and design.weights: w_pop" in err


def test_validate_names_a_delivered_weight_that_is_not_in_the_data(tmp_path, capsys):
    cfg = _project(tmp_path, _data("apistrat.csv"), STRAT + "design:\n  weights: pww\n" + SCH_WIDE)
    assert main(["validate", str(cfg)]) == 2
    assert "design.weights: pww is not in the data; did you mean 'pw'?" in capsys.readouterr().err


def test_base_column_and_population_by_together_are_refused(tmp_path, capsys):
    cfg = _project(tmp_path, _data("apistrat.csv"), STRAT + "weight:\n  base: {column: pw, population_by: [stype]}\n" + SCH_WIDE)
    assert main(["validate", str(cfg)]) == 2
    assert "weight.base: give either column (pw) or population_by (stype), not both" in capsys.readouterr().err


def test_a_weight_stage_library_call_checks_the_delivered_weight():
    from pipeline.config import DesignConfig, WeightConfig
    from pipeline.stages.weight import weight

    f = _data("apistrat.csv").with_columns(pl.int_range(1, 201).alias("raw_row"))
    res = weight(f, None, WeightConfig(), design=DesignConfig(weights="pw", strata=("stype",)))
    np.testing.assert_allclose(res.data.get_column("w_pop").to_numpy(), f.get_column("pw").to_numpy(), rtol=1e-15)
    assert res.qa["kish_deff"] == pytest.approx(_kish(f.get_column("pw").to_numpy()), rel=1e-12)
    with pytest.raises(DataError, match=r"raw rows \[5\]"):
        weight(f.with_columns(pl.when(pl.col("raw_row") == 5).then(0.0).otherwise(pl.col("pw")).alias("pw")), None, WeightConfig(),
               design=DesignConfig(weights="pw"))

"""The estimate STAGE (config -> design -> estimates.csv rows) against R survey 4.1-1.

The engine is checked row by row in tests/conformance; this checks the wiring: a config's
design section (clusters, fpc, strata; or replicate weights as the weight stage hands them
over) and an estimate spec produce the numbers of R's svyciprop / svyby(svyciprop), read from
../shared/conformance/expected/ciprop.csv and domains.csv (R calls quoted in those files).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline.config import DesignConfig, EstimateSpec, TablesConfig
from pipeline.io import Codebook, VariableInfo
from pipeline.stages.estimate import build_design, estimate_all, replicate_design

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"
#: svyciprop logit intervals come from a glm fit: README tolerance 1e-8 relative
REL = 1e-8


def expected(file: str) -> pl.DataFrame:
    path = CONFORMANCE / "expected" / file
    assert path.is_file(), f"conformance reference missing: {path} (../shared/conformance must sit beside the project)"
    return pl.read_csv(path, infer_schema_length=None)


def apiclus1() -> pl.DataFrame:
    data = pl.read_csv(CONFORMANCE / "data" / "apiclus1.csv", infer_schema_length=None)
    return data.with_columns(
        pl.int_range(1, data.height + 1).alias("raw_row"),
        (pl.col("sch.wide") == "Yes").cast(pl.Int64).alias("sch_wide_yes"),
        pl.col("stype").replace_strict({"E": 1, "H": 2, "M": 3}, return_dtype=pl.Int64).alias("stype_code"),
    )


CODEBOOK = Codebook(
    variables={
        "sch_wide_yes": VariableInfo("sch_wide_yes", value_labels={1: "Yes", 0: "No"}),
        "stype_code": VariableInfo("stype_code", value_labels={1: "stype=E", 2: "stype=H", 3: "stype=M"}),
    }
)
SPEC = EstimateSpec(id="sch_wide", proportion="sch_wide_yes", levels=(1,), denominator="valid", by=((), ("stype_code",)))


def check(est: pl.DataFrame, design_name: str) -> int:
    overall = expected("ciprop.csv").filter(pl.col("case") == f"svyciprop:sch_wide_yes:logit:{design_name}")
    domains = expected("domains.csv").filter(
        (pl.col("design") == design_name) & (pl.col("estimator") == "svyciprop") & (pl.col("method") == "logit")
    )
    assert overall.height == 1 and domains.height == 3
    matched = 0
    for ref in [overall.row(0, named=True), *domains.iter_rows(named=True)]:
        dom = ref.get("domain") or "All"
        got = est.filter(pl.col("domain") == dom).row(0, named=True)
        for key in ("estimate", "se", "ci_low", "ci_high"):
            assert got[key] == pytest.approx(ref[key], rel=REL), (design_name, dom, key)
        df = ref["df_domain"] if "df_domain" in ref and ref["df_domain"] is not None else ref["df"]
        assert got["df"] == df, (design_name, dom)
        matched += 1
    return matched


def test_linearization_design_from_config():
    frame = apiclus1()
    cfg = DesignConfig(weights="pw", ids=("dnum",), fpc=("fpc",))
    design = build_design(frame, cfg)
    est = estimate_all(frame, CODEBOOK, [SPEC], design, cfg, TablesConfig(), wave="api")
    assert check(est, "clus1") == 4


def test_replicate_design_as_the_weight_stage_hands_it_over():
    frame = apiclus1()
    reps = pl.read_csv(CONFORMANCE / "expected" / "repweights" / "clus1_jk1.csv")
    design_row = expected("designs.csv").filter(pl.col("design") == "clus1_jk1").row(0, named=True)
    replicates = reps.drop("weight").rename({"row": "raw_row"}).sample(fraction=1.0, shuffle=True, seed=1)  # matched by raw_row, not order
    meta = {"type": "JK1", "scale": design_row["scale"], "rscales": None, "rho": None, "mse": False, "n_replicates": design_row["n_replicates"]}
    cfg = DesignConfig(weights="pw", variance="replicate", replicates={"build": "JK1"})
    design = replicate_design(frame, cfg, replicates, meta)
    est = estimate_all(frame, CODEBOOK, [SPEC], design, cfg, TablesConfig(), wave="api")
    assert check(est, "clus1_jk1") == 4


@pytest.mark.parametrize("statistic", ["F", "Chisq", "Wald"])
def test_association_tests_of_the_stage_are_svychisq(statistic):
    """estimate/association_tests.csv rows equal R's svychisq(~sch.wide+stype, clus1, statistic=...)."""
    from pipeline.stages.estimate import association_tests

    frame = apiclus1()
    cfg = DesignConfig(weights="pw", ids=("dnum",), fpc=("fpc",))
    design = build_design(frame, cfg)
    spec = EstimateSpec(id="sch_wide", proportion="sch_wide_yes", by=((), ("stype_code",)), test=statistic)
    got = association_tests(frame, CODEBOOK, [spec], design, wave="api")
    assert got.height == 1  # one test: the single-variable domain list
    ref = expected("chisq.csv").filter(pl.col("case") == f"svychisq:sch.wide+stype:{statistic}:clus1").row(0, named=True)
    row = got.row(0, named=True)
    for key in ("statistic", "p_value", "ndf"):
        assert row[key] == pytest.approx(ref[key], rel=1e-9), key
    assert row["statistic_name"] == ref["statistic_name"]

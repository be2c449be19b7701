"""``expected/repweights/*.csv`` and ``expected/replicate_scales.csv``: replicate weights R built.

Every replicate design is rebuilt here (``conftest.design``): JK1, JKn, BRR and Fay with
:mod:`pipeline.survey.replicates`, the user-given BRR weights of ``scd_brr_given`` with
``Design.from_replicate_weights(combined_weights=False)``, the weighted replicate designs
with :mod:`pipeline.survey.weighting` redone in every replicate of the rebuilt source
(``rake_clus1_boot``: of R's exported bootstrap weights).
A row of a repweights file matches when its full-sample weight and every analysis
replicate weight agree (relative 1e-9; 1e-6 for raking). Bootstrap draws come from R's
random number generator and are listed as known gaps; their scales are deterministic and
are compared from a bootstrap built here.
"""

from __future__ import annotations

import re

import polars as pl

BOOT = r"clus1_boot|clus1_boot_mse|strat_boot"

REPWEIGHT_GAPS: list[tuple[str, str | None, str]] = [
    (
        rf"({BOOT})",
        None,
        "bootstrap draws come from R's random number generator (set.seed); estimation uses R's exported weights",
    ),
]
SCALE_GAPS: list[tuple[str, str | None, str]] = []


def _design_names(ref) -> list[str]:
    return sorted(p.stem for p in (ref.folder / "expected" / "repweights").glob("*.csv"))


def test_replicate_weights_match_r(ref):
    for name in _design_names(ref):
        expected = pl.read_csv(ref.folder / "expected" / "repweights" / f"{name}.csv")
        reps = [c for c in expected.columns if c.startswith("rep_")]
        expected = expected.with_columns(pl.lit(name).alias("case"), pl.col("row").cast(pl.String).alias("key"))

        def compute(case, rows, name=name, reps=reps):
            if re.fullmatch(BOOT, case):
                raise NotImplementedError(case)
            d = ref.design(case)
            w = d.replicates.weights
            return {
                str(i + 1): {"weight": float(d.weights[i]), **{c: float(w[i, j]) for j, c in enumerate(reps)}}
                for i in range(w.shape[0])
            }

        rtol = 1e-6 if name == "rake_clus1_boot" else ref.RTOL_CLOSED  # raking is iterative (README)
        fields = {"weight": {"rtol": rtol}, **{c: {"rtol": rtol} for c in reps}}
        out = ref.check_rows(
            f"repweights/{name}.csv", expected, compute, key=lambda row: row["key"], fields=fields, gaps=REPWEIGHT_GAPS
        )
        ref.assert_outcome(f"repweights/{name}.csv", out)


def test_replicate_scales_match_r(ref):
    from pipeline.survey import replicates as rp

    expected = ref.read("replicate_scales.csv").rename({"design": "case"})

    def compute(case, rows):
        if re.fullmatch(BOOT, case):
            # scales of R's bootstrap depend only on the PSUs per stratum, not on the draws
            source = "strat" if case == "strat_boot" else "clus1"
            d = rp.bootstrap(ref.design(source), replicates=len(rows), seed=1)
        elif case == "rake_clus1_boot":
            d = rp.bootstrap(ref.design("clus1"), replicates=len(rows), seed=1)
        else:
            d = ref.design(case)
        reps = d.replicates
        return {str(i + 1): {"rscale": float(reps.rscales[i]), "scale": reps.scale} for i in range(reps.n_replicates)}

    out = ref.check_rows(
        "replicate_scales.csv",
        expected,
        compute,
        key=lambda row: str(int(row["replicate"])),
        fields={"rscale": {}, "scale": {}},
        gaps=SCALE_GAPS,
    )
    ref.assert_outcome("replicate_scales.csv", out)

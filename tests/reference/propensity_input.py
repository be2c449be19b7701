"""Writes propensity_input.csv, the eligible sample that propensity.R fits (run from the repository root:
``python tests/reference/propensity_input.py``).

The units: a synthetic delivery that keeps its eligible nonrespondents
(``simulate_delivery(wave="2012", seed=20121117, n=400, nonrespondents=True)``), the completes
(STATUS = 1, ``resp = 1``) and the eligible nonrespondents (STATUS = 3, ``resp = 0``); the
break-offs are left out. ``w_base`` = the county's adults / the county's units, times
min(HH_ADULTS, 4) on the landline frame. ``SEXAGE`` is sex by age group (1-8; an unknown age
counts as 30-44), ``AGE`` the age in years (an unknown age as 40).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.simulate import simulate_delivery


def main() -> None:
    d = simulate_delivery(wave="2012", seed=20121117, n=400, nonrespondents=True)
    pop = (
        d.targets.select(pl.col("county").alias("COUNTY"), "population").unique("COUNTY")
    )
    age_known = pl.col("AGE").is_between(18, 97)
    frame = (
        d.data.filter(pl.col("STATUS").is_in([1, 3]))
        .unique("RESPID", keep="first", maintain_order=True)
        .with_columns(
            resp=(pl.col("STATUS") == 1).cast(pl.Int32),
            SEXAGE=(pl.col("SEX") - 1) * 4
            + pl.when(~age_known).then(2).when(pl.col("AGE") < 30).then(1).when(pl.col("AGE") < 45).then(2)
            .when(pl.col("AGE") < 65).then(3).otherwise(4),
            AGE=pl.when(age_known).then(pl.col("AGE")).otherwise(40),
            hh=pl.when(pl.col("FRAME") == 1).then(pl.min_horizontal(pl.col("HH_ADULTS").fill_null(1).clip(1, 6), pl.lit(4))).otherwise(1),
        )
        .join(pop, on="COUNTY", how="left")
        .with_columns(w_base=pl.col("population") / pl.len().over("COUNTY") * pl.col("hh"))
        .select("RESPID", "COUNTY", "FRAME", "SEXAGE", "AGE", "resp", "w_base")
        .sort("RESPID")
    )
    frame.write_csv(Path(__file__).with_name("propensity_input.csv"), float_precision=17)


if __name__ == "__main__":
    main()

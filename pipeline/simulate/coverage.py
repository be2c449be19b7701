"""The coverage study: do the pipeline's 95% confidence intervals cover the population truth?

Repeated samples are drawn from one synthetic population (``population_seed`` fixed, the
sample seed varying), each is written as a delivery and run through the pipeline's own stage
functions with the study config (ingest, clean, weight, estimate), and every headline
estimate's interval is compared with the population truth. Two kinds of data:

- ``delivered``: the raw delivery with its injected problems, cleaned by the config's rules;
- ``clean``: the same interviews as truly answered, before any problem was injected
  (the estimator's own coverage: weighting plus variance, nothing else).

Design-based inference is conditional on the finite population, hence the fixed population.
The Monte Carlo standard error of a coverage c over R replicates is sqrt(c (1 - c) / R).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

HEADLINES = ("contact_police_less_likely", "afraid_leave_home")


def _replicate(args: tuple[str, str, int, int, tuple[str, ...]]) -> list[dict[str, Any]]:
    import polars as pl

    from pipeline.config import load_config
    from pipeline.simulate import simulate_delivery
    from pipeline.simulate._write import write_sav
    from pipeline.stages.clean import clean
    from pipeline.stages.estimate import build_design, estimate_all
    from pipeline.stages.ingest import ingest
    from pipeline.stages.weight import weight

    config_path, wave_id, seed, population_seed, kinds = args
    config = load_config(config_path)
    wave = config.wave(wave_id)
    d = simulate_delivery(wave=wave_id, seed=seed, population_seed=population_seed)
    specs = [s.model_copy(update={"by": ((),)}) for s in config.estimates_for(wave_id) if s.id in HEADLINES]
    truth_var = {s.id: s.variable for s in specs}
    truth = {r["variable"]: r["share"] for r in d.truth.filter(pl.col("domain") == "All").iter_rows(named=True)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            path = Path(tmp) / f"{kind}.sav"
            write_sav(d.data if kind == "delivered" else d.clean, d.codebook, path)
            frame, codebook, _ = ingest(path, config.ingest, key=b"coverage", rename=wave.rename, labels=wave.labels, not_asked=wave.not_asked)
            result = clean(
                frame,
                codebook,
                config.clean_for(wave_id),
                wave_recodes=wave.recodes if kind == "delivered" else (),  # clean data has no vendor drift
                wave_missing=wave.missing_also,
                field_dates=wave.field_dates,
                drop_columns=list(config.ingest.hash.values()),
            )
            targets = d.targets
            weighted = weight(result.data, targets, config.weight)
            design = build_design(weighted.data, config.design, config.weight)
            est = estimate_all(weighted.data, result.codebook, specs, design, config.design, config.tables, wave=wave_id)
            for r in est.iter_rows(named=True):
                t = truth[truth_var[r["estimate_id"]]]
                rows.append(
                    {
                        "seed": seed, "data": kind, "estimate_id": r["estimate_id"], "estimate": r["estimate"], "se": r["se"],
                        "ci_low": r["ci_low"], "ci_high": r["ci_high"], "truth": t, "covered": r["ci_low"] <= t <= r["ci_high"],
                        "kish_deff": weighted.qa["kish_deff"],
                    }
                )
    return rows


def coverage_study(
    config_path: Path | str,
    *,
    replicates: int = 200,
    first_seed: int = 1,
    wave: str = "2012",
    population_seed: int | None = None,
    kinds: Sequence[str] = ("clean", "delivered"),
    processes: int = 2,
) -> pl.DataFrame:
    """One row per replicate x data kind x headline estimate (estimate, se, CI, truth, covered)."""
    import multiprocessing as mp

    import polars as pl

    from pipeline.simulate._waves import wave_spec

    pop_seed = wave_spec(wave).default_seed if population_seed is None else population_seed
    jobs = [(str(config_path), wave, seed, pop_seed, tuple(kinds)) for seed in range(first_seed, first_seed + replicates)]
    if processes > 1:
        with mp.get_context("spawn").Pool(processes) as pool:
            parts = pool.map(_replicate, jobs, chunksize=max(1, len(jobs) // (4 * processes)))
    else:
        parts = [_replicate(j) for j in jobs]
    return pl.DataFrame([r for part in parts for r in part])


def summarize(results: pl.DataFrame) -> pl.DataFrame:
    """Per data kind and estimate: replicates, bias, empirical SD, RMS SE, coverage and its MC SE."""
    import polars as pl

    err = pl.col("estimate") - pl.col("truth")
    return (
        results.group_by("data", "estimate_id")
        .agg(
            pl.len().alias("replicates"),
            (100 * err.mean()).alias("bias_pts"),
            (100 * err.std()).alias("sd_pts"),
            (100 * pl.col("se").pow(2).mean().sqrt()).alias("rms_se_pts"),
            pl.col("covered").mean().alias("coverage"),
        )
        .with_columns((pl.col("coverage") * (1 - pl.col("coverage")) / pl.col("replicates")).sqrt().alias("coverage_mc_se"))
        .sort("data", "estimate_id")
    )

"""Benchmark of the estimate stage against the engine (issue 12); run on demand, never collected by pytest.

    python tests/benchmarks/bench_estimate_stage.py [--rows 1e5,1e6] [--scenarios stage,engine]
                                                    [--repeat 3] [--skip quantile] [--markdown] [--json FILE]

The issue's "Done when": the estimate stage on 10^6 rows with 20 estimates of mixed statistics
stays within 2x of the engine's own time for the same work.

Synthetic weighted data of ``rows`` rows: 50 strata x 20 PSUs (1,000 PSUs, rows assigned to
PSUs at random and left in random order), a weight per row, a 4-level labelled domain ``dom``
(Int64 1..4, about 1% of rows without a region), six categorical items ``q1..q6`` (Int64 codes
1..5 with value labels, 8 "Don't know" and 9 "Refused" declared missing, about 5% system
missing: skipped by the questionnaire), and four numeric items: ``age`` (18..90, 998/999 don't
know/refused), ``income`` (log-normal, whole numbers, 999999 refused), ``hours`` (0..80, 99 don't
know) and ``hhsize`` (1..8). Items carry a PSU random effect, so design effects are above 1.

The 20 estimates (:data:`ESTIMATES`), each by ``[[], [dom]]`` (40 engine results), mix every
statistic the config has: proportions of chosen codes (``levels``, ``denominator`` all and
valid, one with ``ci_method: wilson``), a proportion of every answer, distributions (all and
valid), means, totals, totals of codes (``total`` with ``levels``), a ratio and quantiles.

Scenarios, each on a Taylor design (strata, PSUs) built beforehand (the build time is printed
separately; ``/ engine`` is a scenario's time over the engine's):

``stage``   :func:`pipeline.stages.estimate.estimate_all` with the Codebook and EstimateSpec
            objects the stage gets (the codebook through ``Codebook.from_json`` as the stage
            reads ``weight/codebook.json``; the specs validated from their YAML dicts as
            :func:`pipeline.config.load_config` does), default ``tables`` (flags on).
``engine``  The engine's own time for the same work: the :mod:`pipeline.survey` calls that give
            the same numbers, written directly: the analysis columns (missing codes set missing
            for ``denominator: valid``, indicators of chosen codes) in one ``with_columns``, then
            per ``by`` one ``proportion(design, [columns], ...)`` per group of proportions that
            share their levels and interval method, ``mean``/``total``/``ratio`` (``to_frame``
            on the design's df, as the stage's Wald intervals) and ``quantile`` per estimate.
            No labels, cell counts or flags: that is the stage's own work.
``svy``     Where the ``svy`` package is importable (``pip install -e .[bench]``; not run above
            ``--svy-max-rows``): the same analysis columns (their time counted, the ``Sample``
            built beforehand), then svy's calls: one ``prop`` per group of proportions
            (``drop_nulls=True``, the same interval methods), one ``mean`` and one ``total`` for
            the lists of numeric variables, ``total`` of each indicator, ``ratio``, ``quantile``;
            overall and ``by="dom"``.

``--skip`` leaves out the estimates of some statistics (``--skip quantile``: the 18 others), to
see the stage's own cost where the engine's is small: the quantiles' Woodruff intervals sort the
data per domain and take most of the engine's time at 10^6 rows.

Each scenario runs in its own subprocess: the data are generated, a first run on 2,000 rows pays
the imports, then the scenario runs ``--repeat`` times (a fresh design each time, so no cache from
an earlier run helps) and the best time is kept: wall-clock ``seconds`` and the process's ``CPU s``
(all its threads; less sensitive than the wall clock to other work on the machine, whose 1-minute
``load`` average at the end of the runs is printed). Peak memory is the process's high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` before each timed run, the first one's kept; ``ru_maxrss``
where that is not available): ``peak MB`` is the whole process (data included), ``+MB`` what the
scenario added on top of the data and design.

Checks: each worker writes its rows to a Parquet file. The driver asserts that the stage's
``n``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df`` and ``deff`` are the engine's, row by
row in the stage's order, to ``|stage - engine| <= 1e-12 |engine|`` (exactly where the engine's
value is 0; nulls in the same places), and that the stage's domain and level labels are the
engine rows' codes under the codebook. svy's estimates and SEs are matched to the engine's by
estimate, domain and level, and the largest relative differences printed (``estimate, se`` of
the other statistics, then of the quantiles): reported, not asserted, as in
``bench_estimation.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

N_STRATA = 50
PSU_PER_STRATUM = 20
SEED = 20261204
ITEMS = [f"q{j}" for j in range(1, 7)]
AGREE = {1: "Strongly agree", 2: "Agree", 3: "Neither", 4: "Disagree", 5: "Strongly disagree", 8: "Don't know", 9: "Refused"}
REGIONS = {1: "Northeast", 2: "Midwest", 3: "South", 4: "West"}
BY = [[], ["dom"]]

#: the 20 estimates, as the YAML's ``estimates:`` list (each gets ``by: [[], [dom]]``)
ESTIMATES: list[dict] = [
    {"id": "q1_agree", "proportion": "q1", "levels": [1, 2], "level_label": "Agree (any)"},
    {"id": "q1_agree_all", "proportion": "q1", "levels": [1, 2], "denominator": "all"},
    {"id": "q2_strong", "proportion": "q2", "levels": [1]},
    {"id": "q3_disagree_all", "proportion": "q3", "levels": [4, 5], "denominator": "all"},
    {"id": "q4_agree", "proportion": "q4", "levels": [1, 2], "ci_method": "wilson"},
    {"id": "q5", "proportion": "q5"},
    {"id": "q6_top3", "proportion": "q6", "levels": [1, 2, 3]},
    {"id": "q1_dist_all", "distribution": "q1", "denominator": "all"},
    {"id": "q2_dist", "distribution": "q2"},
    {"id": "q6_dist_all", "distribution": "q6", "denominator": "all"},
    {"id": "age_mean", "mean": "age"},
    {"id": "income_mean", "mean": "income"},
    {"id": "hours_mean", "mean": "hours"},
    {"id": "income_total", "total": "income"},
    {"id": "hours_total", "total": "hours"},
    {"id": "q3_strong_total", "total": "q3", "levels": [1]},
    {"id": "q4_agree_total_all", "total": "q4", "levels": [1, 2], "denominator": "all"},
    {"id": "income_per_person", "ratio": {"numerator": "income", "denominator": "hhsize"}},
    {"id": "age_quartiles", "quantile": "age", "probs": [0.25, 0.5, 0.75]},
    {"id": "income_median", "quantile": "income"},
]
STATISTIC_KEYS = ("proportion", "distribution", "mean", "total", "ratio", "quantile")
NUMERIC_MISSING = {"age": (998, 999), "income": (999999,), "hours": (99,), "hhsize": ()}


# ------------------------------------------------------------------ data
def make_data(rows: int):
    """The synthetic weighted data (a polars frame, in file order) and its codebook's JSON."""
    import polars as pl

    rng = np.random.default_rng(SEED)
    n_psu = N_STRATA * PSU_PER_STRATUM
    psu = rng.integers(0, n_psu, rows, dtype=np.int64)
    psu_weight = rng.uniform(200.0, 2000.0, n_psu)
    effect = rng.normal(0.0, 0.35, n_psu)[psu]
    columns: dict = {
        "stratum": psu // PSU_PER_STRATUM,
        "psu": psu,
        "w": psu_weight[psu] * rng.uniform(0.8, 1.25, rows),
    }
    dom = rng.integers(1, 5, rows).astype(np.float64)
    dom[rng.random(rows) < 0.01] = np.nan
    columns["dom"] = dom
    for j, name in enumerate(ITEMS):
        latent = rng.normal(0.0, 1.0, rows) + effect + 0.1 * j
        code = np.digitize(latent, [-0.8, -0.1, 0.5, 1.2]) + 1  # 1..5
        u = rng.random(rows)
        code = np.where(u < 0.03, 8, np.where(u < 0.045, 9, code)).astype(np.float64)
        code[rng.random(rows) < 0.05] = np.nan  # system missing: not asked
        columns[name] = code
    age = np.clip(np.round(rng.normal(47 + 5 * effect, 17, rows)), 18, 90)
    u = rng.random(rows)
    columns["age"] = np.where(u < 0.01, 998, np.where(u < 0.02, 999, age))
    income = np.round(np.exp(rng.normal(10.6 + 0.3 * effect, 0.7, rows)))
    columns["income"] = np.where(rng.random(rows) < 0.04, 999999, income)
    hours = np.clip(np.round(rng.normal(38 + 2 * effect, 12, rows)), 0, 80)
    columns["hours"] = np.where(rng.random(rows) < 0.02, 99, hours)
    columns["hhsize"] = rng.integers(1, 9, rows).astype(np.float64)
    frame = pl.DataFrame(columns, nan_to_null=True).with_columns(
        # whole numbers come back from the weight stage's Parquet as Int64 (pipeline.io.read_survey)
        pl.col(c).cast(pl.Int64) for c in ("stratum", "psu", "dom", *ITEMS, "age", "income", "hours", "hhsize")
    )
    variables = [{"name": "dom", "label": "Region", "value_labels": [[k, v] for k, v in REGIONS.items()]}]
    for j, name in enumerate(ITEMS):
        variables.append({
            "name": name, "label": f"Statement {j + 1}", "value_labels": [[k, v] for k, v in AGREE.items()],
            "missing_values": [8, 9], "missing_reasons": [[8, "dont_know"], [9, "refused"]],
        })
    for name, codes in NUMERIC_MISSING.items():
        labels = [[c, "Don't know" if c in (998, 99) else "Refused"] for c in codes]
        variables.append({"name": name, "label": name.capitalize(), "value_labels": labels, "missing_values": list(codes)})
    codebook_json = json.dumps({"file_label": "bench", "source": "synthetic", "variables": variables})
    return frame, codebook_json


def stage_inputs(codebook_json: str):
    """The Codebook, EstimateSpecs, DesignConfig and TablesConfig as the stage gets them."""
    from pipeline.config import DesignConfig, EstimateSpec, TablesConfig
    from pipeline.io import Codebook

    codebook = Codebook.from_json(codebook_json)
    specs = [EstimateSpec.model_validate({**e, "by": BY}) for e in ESTIMATES]
    design_config = DesignConfig(weights="w", strata=("stratum",), ids=("psu",))
    return codebook, specs, design_config, TablesConfig()


def build(frame, design_config):
    from pipeline.stages.estimate import build_design

    return build_design(frame, design_config)


# ------------------------------------------------------------------ the stage and the engine
def run_stage(frame, design, inputs):
    from pipeline.stages.estimate import estimate_all

    codebook, specs, design_config, tables = inputs
    return estimate_all(frame, codebook, specs, design, design_config, tables, wave="w1")


def _statistic(e: dict) -> str:
    key = next(k for k in STATISTIC_KEYS if k in e)
    return "proportion" if key == "distribution" else key


def _variable(e: dict):
    return next(e[k] for k in STATISTIC_KEYS if k in e)


def _analysis_exprs(e: dict, missing: dict):
    """The analysis column(s) of estimate ``e``: (expressions to add, column name(s))."""
    import polars as pl

    stat, var, col = _statistic(e), _variable(e), f"__{e['id']}"
    valid = e.get("denominator", "valid") == "valid"
    if stat in ("proportion", "total") and "levels" in e:
        x = pl.col(var)
        base = x.is_null() | x.is_in(list(missing[var])) if valid else x.is_null()
        return [pl.when(base).then(None).otherwise(x.is_in(e["levels"]).cast(pl.Int64)).alias(col)], col
    if stat == "proportion":
        if not valid:
            return [], var  # every answer, don't know and refused included: the column as it is
        return [pl.when(pl.col(var).is_in(list(missing[var]))).then(None).otherwise(pl.col(var)).alias(col)], col
    names = [var["numerator"], var["denominator"]] if stat == "ratio" else [var]
    cols = [col] if len(names) == 1 else [f"{col}_{k}" for k in range(len(names))]
    exprs = []
    for name, c in zip(names, cols):
        x = pl.col(name)
        exprs.append((pl.when(x.is_in(list(missing[name]))).then(None).otherwise(x) if missing[name] else x).cast(pl.Float64).alias(c))
    return exprs, (cols[0] if len(cols) == 1 else tuple(cols))


def run_engine(frame, design, missing: dict):
    """The same numbers from pipeline.survey directly: {(estimate id, by index): frame}."""
    import polars as pl

    from pipeline.survey import mean, proportion, quantile, ratio, total

    exprs, column = [], {}
    for e in ESTIMATES:
        ex, column[e["id"]] = _analysis_exprs(e, missing)
        exprs += ex
    d = design.with_frame(frame.with_columns(exprs))
    out = {}
    for k, by in enumerate(BY):
        for (chosen, method), members in _proportion_groups().items():
            res = proportion(d, [column[e["id"]] for e in members], by=by, levels=[1] if chosen else None, ci_method=method, na_rm=True)
            parts = res.partition_by("variable", maintain_order=True, include_key=False, as_dict=True)
            for e in members:
                out[e["id"], k] = parts[(column[e["id"]],)]
        for e in ESTIMATES:
            stat, col = _statistic(e), column[e["id"]]
            if stat in ("mean", "total"):
                res = (mean if stat == "mean" else total)(d, col, by=by, na_rm=True, categorical=False).to_frame(0.95, df="design")
            elif stat == "ratio":
                res = ratio(d, col[0], col[1], by=by, na_rm=True).to_frame(0.95, df="design")
            elif stat == "quantile":
                q = quantile(d, col, probs=e.get("probs", [0.5]), by=by, conf_level=0.95, na_rm=True)
                res = q.to_frame().with_columns(pl.lit(None, dtype=pl.Float64).alias("deff"))
            else:
                continue
            out[e["id"], k] = res
    return out


def _proportion_groups() -> dict[tuple, list[dict]]:
    """The proportions that share their levels and interval method: one engine call each."""
    groups: dict[tuple, list[dict]] = {}
    for e in ESTIMATES:
        if _statistic(e) == "proportion":
            groups.setdefault(("levels" in e, e.get("ci_method", "logit")), []).append(e)
    return groups


# ------------------------------------------------------------------ the svy peer
def svy_prepare(frame, missing: dict):
    """svy's Sample over the data with the analysis columns; the columns' time is the work's."""
    import svy

    exprs, column = [], {}
    for e in ESTIMATES:
        ex, column[e["id"]] = _analysis_exprs(e, missing)
        exprs += ex
    t0, c0 = time.perf_counter(), time.process_time()
    work = frame.with_columns(exprs)
    timed = (time.perf_counter() - t0, time.process_time() - c0)
    sample = svy.Sample(work, svy.Design(stratum="stratum", psu="psu", wgt="w"))
    return (sample, column), timed


def run_svy(sample, column: dict):
    """The same estimates with svy (one call per group of proportions, of means, of totals)."""
    est = sample.estimation
    out = {}
    as_list = lambda r: list(r) if isinstance(r, list | tuple) or type(r).__name__ == "EstimateList" else [r]  # noqa: E731
    for k, by in enumerate(BY):
        by_ = by[0] if by else None
        for (_, method), members in _proportion_groups().items():
            res = est.prop([column[e["id"]] for e in members], by=by_, ci_method=method, drop_nulls=True)
            out.update({(e["id"], k): r for e, r in zip(members, as_list(res), strict=True)})
        for stat in ("mean", "total"):
            members = [e for e in ESTIMATES if _statistic(e) == stat and not ("levels" in e and stat == "total")]
            if members:
                res = getattr(est, stat)([column[e["id"]] for e in members], by=by_, drop_nulls=True)
                out.update({(e["id"], k): r for e, r in zip(members, as_list(res), strict=True)})
        for e in ESTIMATES:
            col = column[e["id"]]
            if _statistic(e) == "total" and "levels" in e:
                out[e["id"], k] = est.total(col, by=by_, drop_nulls=True)
            elif _statistic(e) == "ratio":
                out[e["id"], k] = est.ratio(col[0], col[1], by=by_, drop_nulls=True)
            elif _statistic(e) == "quantile":
                out[e["id"], k] = est.quantile(col, p=list(e.get("probs", [0.5])), by=by_, drop_nulls=True)
    return out


def svy_rows(out: dict):
    """svy's estimates and SEs keyed as :func:`engine_rows` (a chosen-codes share: its level 1)."""
    import polars as pl

    parts = []
    for e in ESTIMATES:
        for k, by in enumerate(BY):
            res = out[e["id"], k].to_polars()
            stat = _statistic(e)
            if stat == "quantile":
                level = pl.col("prob").cast(pl.String)
            elif stat == "proportion":
                name = next(c for c in res.columns if c not in ("dom", "est", "se", "lci", "uci", "cv", "df", "n"))
                if "levels" in e:
                    res = res.filter(pl.col(name) == 1)
                level = pl.col(name).cast(pl.Int64).cast(pl.String)
            else:
                level = pl.lit(None, dtype=pl.String)
            dom = pl.col("dom").cast(pl.Int64) if by else pl.lit(None, dtype=pl.Int64)
            parts.append(res.select(
                pl.lit(e["id"]).alias("estimate_id"), pl.lit("*".join(by)).alias("by"), pl.lit(stat).alias("statistic"),
                dom.alias("dom_code"), level.alias("level_code"), pl.col("est").cast(pl.Float64).alias("estimate"),
                pl.col("se").cast(pl.Float64),
            ))
    return pl.concat(parts)


def compare_svy(engine_path: str, svy_path: str) -> dict:
    """The largest relative differences between svy's estimates and SEs and the engine's (quantiles apart)."""
    import polars as pl

    ours, theirs = pl.read_parquet(engine_path), pl.read_parquet(svy_path)
    keys = ["estimate_id", "by", "dom_code", "level_code"]
    both = ours.join(theirs, on=keys, how="inner", suffix="_svy", nulls_equal=True)
    out = {"matched": both.height, "engine_rows": ours.height, "svy_rows": theirs.height}
    for part, rows in (("", both.filter(pl.col("statistic") != "quantile")), ("quantile_", both.filter(pl.col("statistic") == "quantile"))):
        for c in ("estimate", "se"):
            rel = ((pl.col(f"{c}_svy") - pl.col(c)).abs() / pl.col(c).abs()).max()
            out[f"{part}max_rel_diff_{c}"] = rows.select(rel).item() if rows.height else float("nan")
    return out


# ------------------------------------------------------------------ the check
VALUES = ("n", "estimate", "se", "ci_low", "ci_high", "df", "deff")


def stage_rows(est):
    return est.select("estimate_id", "by", "domain", "level", *VALUES)


def engine_rows(out: dict):
    """The engine's results in the stage's row order (estimates, then ``by``), with their codes."""
    import polars as pl

    parts = []
    for e in ESTIMATES:
        for k, by in enumerate(BY):
            res = out[e["id"], k]
            if by:
                res = res.filter(pl.col("dom").is_not_null())  # the stage drops rows of no domain
            dom = res.get_column("dom").cast(pl.Int64) if by else pl.Series("dom", [None] * res.height, dtype=pl.Int64)
            level = res.get_column("level").cast(pl.String) if "level" in res.columns else pl.Series([None] * res.height, dtype=pl.String)
            parts.append(
                res.select(
                    pl.lit(e["id"]).alias("estimate_id"), pl.lit("*".join(by)).alias("by"), pl.lit(_statistic(e)).alias("statistic"),
                    pl.lit(_variable(e) if isinstance(_variable(e), str) else "").alias("variable"),
                    pl.lit("levels" in e).alias("chosen"), *[pl.col(c).cast(pl.Float64) for c in VALUES],
                ).with_columns(dom.alias("dom_code"), level.alias("level_code"))
            )
    return pl.concat(parts)


def check(stage_path: str, engine_path: str, tolerance: float = 1e-12) -> dict:
    """Assert that the stage's rows are the engine's (relative ``tolerance``) and labelled by its codes."""
    import polars as pl

    a, b = pl.read_parquet(stage_path), pl.read_parquet(engine_path)
    assert a.height == b.height, f"the stage has {a.height} rows, the engine {b.height}"
    assert a.get_column("estimate_id").to_list() == b.get_column("estimate_id").to_list(), "rows out of order"
    assert a.get_column("by").to_list() == b.get_column("by").to_list(), "by out of order"
    domains = [REGIONS[c] if c is not None else "All" for c in b.get_column("dom_code").to_list()]
    assert a.get_column("domain").to_list() == domains, "domain labels are not the engine's codes"
    for r, lv, got in zip(b.iter_rows(named=True), b.get_column("level_code").to_list(), a.get_column("level").to_list()):
        if r["statistic"] == "proportion" and not r["chosen"]:
            want = AGREE[int(float(lv))]
        elif r["statistic"] == "quantile":
            want = f"p{100 * float(lv):g}"
        else:
            continue
        assert got == want, f"{r['estimate_id']}: level {got!r}, the engine's code gives {want!r}"
    worst = {}
    for c in VALUES:
        x = a.get_column(c).cast(pl.Float64).to_numpy()
        y = b.get_column(c).to_numpy()
        assert (np.isnan(x) == np.isnan(y)).all(), f"{c}: missing in different rows"
        ok = ~np.isnan(y)
        diff, size = np.abs(x[ok] - y[ok]), np.abs(y[ok])
        rel = np.divide(diff, size, out=diff.copy(), where=size > 0)  # relative (absolute where the engine's value is 0)
        worst[c] = float(rel.max()) if rel.size else 0.0
        assert worst[c] <= tolerance, f"{c}: the stage and the engine differ by {worst[c]:.1e} (relative)"
    return {"rows": a.height, "max_rel_diff": max(worst.values())}


# ------------------------------------------------------------------ memory
def PeakMemory():  # noqa: N802 - the class of bench_estimation.py, shared
    """``bench_estimation.PeakMemory``: the high-water mark of the process's memory over a block."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import bench_estimation

    return bench_estimation.PeakMemory()


# ------------------------------------------------------------------ worker
def worker(rows: int, scenario: str, repeat: int, out_path: str | None, profile: str | None = None) -> dict:
    frame, codebook_json = make_data(rows)
    inputs = stage_inputs(codebook_json)
    missing = {v: NUMERIC_MISSING.get(v, (8, 9)) for v in (*ITEMS, *NUMERIC_MISSING)}

    def prepare(data):
        """(the design, (wall, CPU) seconds of it that belong to the timed work: svy's analysis columns)."""
        if scenario == "svy":
            return svy_prepare(data, missing)
        return build(data, inputs[2]), (0.0, 0.0)

    def once(data, state):
        if scenario == "stage":
            return run_stage(data, state, inputs)
        if scenario == "engine":
            return run_engine(data, state, missing)
        return run_svy(*state)

    out: dict = {"rows": rows, "scenario": scenario}
    if scenario == "svy":
        try:
            import svy
        except ImportError:
            return {**out, "skipped": "svy not installed (pip install -e '.[bench]')"}
        out["svy_version"] = svy.__version__
    small, _ = make_data(2000)  # first calls import modules (scipy.special, ...): paid on small data
    once(small, prepare(small)[0])
    times, cpu_times = [], []
    for i in range(repeat):
        t0 = time.perf_counter()
        state, (timed, timed_cpu) = prepare(frame)
        if i == 0:
            out["design_seconds"] = time.perf_counter() - t0 - timed
        with PeakMemory() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            result = once(frame, state)
            times.append(time.perf_counter() - t0 + timed)
            cpu_times.append(time.process_time() - c0 + timed_cpu)
        if i == 0:
            out["peak_bytes"], out["extra_bytes"] = mem.peak, mem.extra
        del state
    out["seconds"], out["cpu_seconds"] = min(times), min(cpu_times)
    out["all_seconds"], out["all_cpu_seconds"] = times, cpu_times
    out["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if profile:
        import cProfile

        state = prepare(frame)[0]
        cProfile.runctx("once(frame, state)", globals(), {"once": once, "frame": frame, "state": state}, profile)
    if out_path:
        rows_out = {"stage": stage_rows, "engine": engine_rows, "svy": svy_rows}[scenario](result)
        rows_out.write_parquet(out_path)
        out["estimates"] = rows_out.height
    return out


# ------------------------------------------------------------------ driver
def _rows(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def _fmt_rows(n: int) -> str:
    e = int(round(np.log10(n)))
    return f"10^{e}" if 10**e == n else f"{n:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e5,1e6", help="comma-separated row counts")
    parser.add_argument("--scenarios", default="stage,engine,svy", help="comma-separated: stage, engine, svy")
    parser.add_argument("--svy-max-rows", default="1e6", help="largest row count at which svy runs (0: never)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; the best time is kept")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--skip", default="", help="comma-separated statistics to leave out (e.g. quantile)")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--profile", help="(worker) also write a cProfile of one run to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"proportion", "mean", "total", "ratio", "quantile"}
    if unknown:
        parser.error(f"--skip: unknown statistic(s) {', '.join(sorted(unknown))}; expected proportion, mean, total, ratio, quantile")
    ESTIMATES[:] = [e for e in ESTIMATES if _statistic(e) not in skip]

    if args.worker:
        (rows,) = _rows(args.rows)
        result = worker(rows, args.scenarios, args.repeat, args.out, args.profile)
        print("RESULT " + json.dumps(result))
        return 0

    import platform

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}; {len(ESTIMATES)} estimates x {len(BY)} domain lists",
        file=sys.stderr,
    )
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    results = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for rows in _rows(args.rows):
            seconds, paths = {}, {}
            for scenario in scenarios:
                if scenario == "svy" and rows > int(float(args.svy_max_rows)):
                    continue
                paths[scenario] = os.path.join(tmp, f"{rows}_{scenario}.parquet")
                cmd = [
                    sys.executable, __file__, "--worker", "--rows", str(rows), "--scenarios", scenario,
                    "--repeat", str(args.repeat), "--out", paths[scenario], "--skip", args.skip,
                ]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    print(f"{_fmt_rows(rows)} {scenario}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                    failed = True
                    continue
                res = json.loads(lines[-1][len("RESULT "):])
                results.append(res)
                if "skipped" in res:
                    print(f"{_fmt_rows(rows)} {scenario}: {res['skipped']}", file=sys.stderr)
                    continue
                seconds[scenario] = res["seconds"]
            mine = {r["scenario"]: r for r in results if r["rows"] == rows and "skipped" not in r}
            if "engine" in seconds:
                for other in ("stage", "svy"):
                    if other in seconds:
                        mine[other]["ratio"] = seconds[other] / seconds["engine"]
                        mine[other]["cpu_ratio"] = mine[other]["cpu_seconds"] / mine["engine"]["cpu_seconds"]
                if "stage" in seconds:  # asserted: the stage computes the engine's numbers
                    mine["stage"]["check"] = check(paths["stage"], paths["engine"])
                if "svy" in seconds:  # reported, as bench_estimation.py reports svy's
                    mine["svy"]["svy_check"] = compare_svy(paths["engine"], paths["svy"])
            for res in mine.values():
                print(_line(res, markdown=False), file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    print()
    print(_header(args.markdown))
    for res in results:
        if "skipped" not in res:
            print(_line(res, markdown=args.markdown))
    return 1 if failed else 0


_COLUMNS = ("rows", "scenario", "estimates", "seconds", "/ engine", "CPU s", "CPU / engine", "peak MB", "+MB", "design s", "load", "max rel diff")


def _header(markdown: bool) -> str:
    if markdown:
        return "| " + " | ".join(_COLUMNS) + " |\n|" + "|".join(" ---: " if c not in ("rows", "scenario") else " --- " for c in _COLUMNS) + "|"
    return "  ".join(f"{c:>14}" for c in _COLUMNS)


def _line(res: dict, *, markdown: bool) -> str:
    mb = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    check_, svy_check = res.get("check"), res.get("svy_check")
    if check_:
        diff = f"{check_['max_rel_diff']:.0e}"
    elif svy_check:  # estimate, se (quantiles: estimate, se)
        diff = ", ".join(f"{svy_check[f'{p}max_rel_diff_{c}']:.0e}" for p in ("", "quantile_") for c in ("estimate", "se"))
        if svy_check["matched"] != svy_check["engine_rows"]:
            diff += f" ({svy_check['matched']} of {svy_check['engine_rows']} rows matched)"
    else:
        diff = ""
    cells = [
        _fmt_rows(res["rows"]),
        res["scenario"],
        str(res.get("estimates", "")),
        f"{res['seconds']:.3f}",
        f"{res['ratio']:.2f}x" if "ratio" in res else "",
        f"{res['cpu_seconds']:.3f}",
        f"{res['cpu_ratio']:.2f}x" if "cpu_ratio" in res else "",
        mb(res["peak_bytes"]),
        mb(res["extra_bytes"]),
        f"{res['design_seconds']:.3f}",
        f"{res['load_average']:.1f}" if res.get("load_average") is not None else "",
        diff,
    ]
    if markdown:
        return "| " + " | ".join(cells) + " |"
    return "  ".join(f"{c:>14}" for c in cells)


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the estimation engine (issue 3, item 7); run on demand, never collected by pytest.

    python tests/benchmarks/bench_estimation.py [--rows 1e4,1e5,1e6,1e7] [--scenarios a,b,a_loop,b_loop]
                                                [--repeat 3] [--svy-max-rows 1e6] [--markdown]

Synthetic data of ``rows`` rows: 50 strata x 20 PSUs (1,000 PSUs, rows assigned to PSUs at
random and left in random order), a weight per row, a 4-level domain ``dom`` and 10 binary
items ``y1..y10`` (Int8 0/1, with a PSU random effect, so design effects are above 1), plus
80 replicate weights: random-group JK1 (the 1,000 PSUs dealt into 80 groups; replicate ``r``
drops group ``r`` and multiplies the rest by 80/79).

The replicate weights are an ``(rows, 80)`` C-ordered numpy array handed to
``Design.from_replicate_weights``, which keeps that array (made read-only), never a copy.
They are float64 up to 10^6 rows (what the estimate stage reads from Parquet) and float32 at
10^7 rows, where float64 would take 6.4 GB (3.2 GB as float32); the engine reads float32
replicate weights block by block and accumulates in float64.

Scenarios, each on a design built beforehand (the pipeline builds one design per wave and
reuses it for every estimate; the build time is printed separately):

``a``       Taylor linearization (strata, PSUs): the 10 proportions overall and by ``dom``, with
            SE, logit CI, df and deff: ``proportion(design, items)`` and
            ``proportion(design, items, by=["dom"])``.
``b``       The same with the 80 replicate weights (``Design.from_replicate_weights``, JK1).
``a_loop``  Scenario a as one ``proportion`` call per item and ``by`` (20 calls), the way the
            estimate stage calls the engine today.
``b_loop``  Scenario b likewise.

Each scenario runs in its own subprocess: the data are generated, the engine runs ``--repeat``
times (a fresh design each time, so no cache from an earlier run helps) and the best time is
kept. Peak memory is the process's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` before each engine; ``ru_maxrss`` where that is not available):
``peak MB`` is the whole process (data included), ``+MB`` what the scenario added on top of the
data and design.

Where the ``svy`` package is importable (``pip install -e .[bench]``), the same scenarios run
with it in the same process on the same data (``Sample.estimation.prop`` on the list of items,
``ci_method="logit"``, ``method="replication"`` with ``JackknifeWgts(kind="jk1")`` for b) and the
ratio svy / ours is printed, with the largest relative difference of the estimates and SEs as a
check that both computed the same thing. svy is skipped above ``--svy-max-rows`` (at 10^7 rows it
needs about 35 s and 4 GB for scenario a alone here, and for b the replicate columns would be a
second copy in its frame).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

N_STRATA = 50
PSU_PER_STRATUM = 20
N_ITEMS = 10
N_REPLICATES = 80
N_DOMAINS = 4
ITEMS = [f"y{j}" for j in range(1, N_ITEMS + 1)]
SEED = 20240603


# ------------------------------------------------------------------ data
def make_data(rows: int, *, replicate_dtype: str | None = None):
    """The synthetic sample: a polars frame and (optionally) the (rows, 80) replicate weights."""
    import polars as pl

    rng = np.random.default_rng(SEED)
    n_psu = N_STRATA * PSU_PER_STRATUM
    psu = rng.integers(0, n_psu, rows, dtype=np.int32)
    psu_weight = rng.uniform(200.0, 2000.0, n_psu)
    w = psu_weight[psu] * rng.uniform(0.8, 1.25, rows)
    psu_effect = rng.normal(0.0, 0.08, n_psu)
    base = np.linspace(0.1, 0.6, N_ITEMS)
    columns = {
        "stratum": (psu // PSU_PER_STRATUM).astype(np.int32),
        "psu": psu,
        "w": w,
        "dom": rng.integers(0, N_DOMAINS, rows, dtype=np.int8),
    }
    for j, name in enumerate(ITEMS):
        p = np.clip(base[j] + psu_effect[psu], 0.02, 0.98)
        columns[name] = (rng.random(rows) < p).astype(np.int8)
    frame = pl.DataFrame(columns)
    del columns
    reps = None
    if replicate_dtype is not None:
        group = rng.permutation(n_psu) % N_REPLICATES
        factor = np.full((n_psu, N_REPLICATES), N_REPLICATES / (N_REPLICATES - 1))
        factor[np.arange(n_psu), group] = 0.0
        reps = np.empty((rows, N_REPLICATES), dtype=replicate_dtype)
        block = 1 << 16
        for start in range(0, rows, block):
            stop = min(start + block, rows)
            reps[start:stop] = w[start:stop, None] * factor[psu[start:stop]]
    return frame, reps


# ------------------------------------------------------------------ memory
def _status() -> dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM", "VmRSS")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


class PeakMemory:
    """High-water mark of the process's resident memory over a block (bytes)."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
            self.exact = True
        except OSError:
            self.exact = False
        st = _status()
        self.before = st.get("VmRSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc):
        if self.exact:
            self.peak = _status()["VmHWM"]
        else:  # ru_maxrss only grows: the block's peak is visible only above the earlier one
            self.peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, self.maxrss_before)
        self.extra = max(self.peak - self.before, 0)
        return False


# ------------------------------------------------------------------ engines
def ours_design(frame, reps, scenario: str):
    from pipeline.survey import Design

    if scenario.startswith("a"):
        return Design.from_frame(frame, weights="w", ids=["psu"], strata="stratum")
    return Design.from_replicate_weights(frame, replicate_weights=reps, weights="w", type="JK1")


def ours_run(design, scenario: str):
    import polars as pl

    from pipeline.survey import proportion

    if scenario.endswith("_loop"):
        parts = []
        for by in ([], ["dom"]):
            for item in ITEMS:
                res = proportion(design, item, by=by, ci_method="logit")
                parts.append(res.with_columns(pl.lit(item).alias("variable")))
        return parts
    return [proportion(design, ITEMS, by=by, ci_method="logit") for by in ([], ["dom"])]


def svy_sample(frame, reps, scenario: str):
    import polars as pl
    import svy

    if scenario.startswith("a"):
        return svy.Sample(frame, svy.Design(stratum="stratum", psu="psu", wgt="w"))
    rep_frame = frame.hstack(pl.DataFrame(reps, schema=[f"rep{r}" for r in range(1, N_REPLICATES + 1)]))
    design = svy.Design(wgt="w", rep_wgts=svy.JackknifeWgts(prefix="rep", n_reps=N_REPLICATES, kind="jk1"))
    return svy.Sample(rep_frame, design)


def svy_run(sample, scenario: str):
    method = "taylor" if scenario.startswith("a") else "replication"
    if scenario.endswith("_loop"):
        return [
            [sample.estimation.prop(item, by=by, method=method, ci_method="logit")]
            for by in (None, "dom")
            for item in ITEMS
        ]
    return [list(sample.estimation.prop(ITEMS, by=by, method=method, ci_method="logit")) for by in (None, "dom")]


def _ours_table(results) -> dict:
    """(variable, dom, level) -> (estimate, se) from our result frames."""
    import polars as pl

    frame = pl.concat([r if "dom" in r.columns else r.with_columns(pl.lit(None, pl.Int8).alias("dom")) for r in results], how="diagonal_relaxed")
    out = {}
    for row in frame.select("variable", "dom", "level", "estimate", "se").iter_rows():
        out[(row[0], None if row[1] is None else int(row[1]), int(row[2]))] = (row[3], row[4])
    return out


def _svy_table(results) -> dict:
    out = {}
    for group in results:
        for est in group:
            frame = est.to_polars()
            item = next(c for c in frame.columns if c in ITEMS)
            has_dom = "dom" in frame.columns
            for row in frame.iter_rows(named=True):
                out[(item, int(row["dom"]) if has_dom else None, int(row[item]))] = (row["est"], row["se"])
    return out


def _max_rel_diff(a: dict, b: dict) -> tuple[float, float, int]:
    keys = set(a) & set(b)
    de = max((abs(a[k][0] - b[k][0]) / abs(b[k][0]) for k in keys if b[k][0]), default=float("nan"))
    ds = max((abs(a[k][1] - b[k][1]) / abs(b[k][1]) for k in keys if b[k][1]), default=float("nan"))
    return de, ds, len(keys)


# ------------------------------------------------------------------ worker
def worker(rows: int, scenario: str, repeat: int, run_svy: bool) -> dict:
    rep_dtype = None if scenario.startswith("a") else ("float32" if rows >= 10**7 else "float64")
    frame, reps = make_data(rows, replicate_dtype=rep_dtype)
    out: dict = {"rows": rows, "scenario": scenario, "replicate_dtype": rep_dtype}
    # first calls import modules (scipy.special, sparse, ...): pay that on small data, for both engines
    small, small_reps = make_data(2000, replicate_dtype=rep_dtype)
    ours_run(ours_design(small, small_reps, scenario), scenario)

    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        design = ours_design(frame, reps, scenario)
        build = time.perf_counter() - t0
        if i == 0:
            out["design_seconds"] = build
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                ours = ours_run(design, scenario)
                times.append(time.perf_counter() - t0)
            out["peak_bytes"], out["extra_bytes"] = mem.peak, mem.extra
        else:
            t0 = time.perf_counter()
            ours = ours_run(design, scenario)
            times.append(time.perf_counter() - t0)
        del design
    out["seconds"] = min(times)
    out["all_seconds"] = times

    if run_svy:
        try:
            import svy  # noqa: F401
        except ImportError:
            out["svy"] = "not installed"
            return out
        svy_run(svy_sample(small, small_reps, scenario), scenario)
        svy_times = []
        for i in range(repeat):
            sample = svy_sample(frame, reps, scenario)
            if i == 0:
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    theirs = svy_run(sample, scenario)
                    svy_times.append(time.perf_counter() - t0)
                out["svy_peak_bytes"], out["svy_extra_bytes"] = mem.peak, mem.extra
            else:
                t0 = time.perf_counter()
                theirs = svy_run(sample, scenario)
                svy_times.append(time.perf_counter() - t0)
            del sample
        out["svy_seconds"] = min(svy_times)
        out["svy_all_seconds"] = svy_times
        out["svy_version"] = __import__("svy").__version__
        de, ds, k = _max_rel_diff(_ours_table(ours), _svy_table(theirs))
        out["check"] = {"estimates": k, "max_rel_diff_estimate": de, "max_rel_diff_se": ds}
    return out


# ------------------------------------------------------------------ driver
def _rows(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def _fmt_rows(n: int) -> str:
    e = int(round(np.log10(n)))
    return f"10^{e}" if 10**e == n else f"{n:,}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e4,1e5,1e6,1e7", help="comma-separated row counts")
    parser.add_argument("--scenarios", default="a,b,a_loop,b_loop", help="comma-separated: a, b, a_loop, b_loop")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine; the best time is kept")
    parser.add_argument("--svy-max-rows", default="1e6", help="largest row count at which svy runs (0: never)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    svy_max = int(float(args.svy_max_rows))
    if args.worker:
        (rows,) = _rows(args.rows)
        result = worker(rows, args.scenarios, args.repeat, run_svy=rows <= svy_max)
        print("RESULT " + json.dumps(result))
        return 0

    import platform

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}",
        file=sys.stderr,
    )
    results = []
    for rows in _rows(args.rows):
        for scenario in [s.strip() for s in args.scenarios.split(",") if s.strip()]:
            cmd = [
                sys.executable, __file__, "--worker", "--rows", str(rows), "--scenarios", scenario,
                "--repeat", str(args.repeat), "--svy-max-rows", str(svy_max),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{_fmt_rows(rows)} {scenario}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
                continue
            res = json.loads(lines[-1][len("RESULT "):])
            results.append(res)
            print(_line(res, markdown=False), file=sys.stderr, flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    print()
    print(_header(args.markdown))
    for res in results:
        print(_line(res, markdown=args.markdown))
    return 0


_COLUMNS = ("rows", "scenario", "seconds", "peak MB", "+MB", "design s", "svy s", "svy peak MB", "svy / ours", "max rel diff est, se")


def _header(markdown: bool) -> str:
    if markdown:
        return "| " + " | ".join(_COLUMNS) + " |\n|" + "|".join(" ---: " if c not in ("rows", "scenario") else " --- " for c in _COLUMNS) + "|"
    return "  ".join(f"{c:>12}" for c in _COLUMNS)


def _line(res: dict, *, markdown: bool) -> str:
    mb = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    svy_s = res.get("svy_seconds")
    check = res.get("check")
    cells = [
        _fmt_rows(res["rows"]),
        res["scenario"] + (" (f32 reps)" if res.get("replicate_dtype") == "float32" else ""),
        f"{res['seconds']:.3f}",
        mb(res["peak_bytes"]),
        mb(res["extra_bytes"]),
        f"{res['design_seconds']:.3f}",
        f"{svy_s:.2f}" if svy_s is not None else (res.get("svy") or "skipped"),
        mb(res["svy_peak_bytes"]) if svy_s is not None else "",
        f"{svy_s / res['seconds']:.1f}x" if svy_s is not None else "",
        f"{check['max_rel_diff_estimate']:.0e}, {check['max_rel_diff_se']:.0e}" if check else "",
    ]
    if markdown:
        return "| " + " | ".join(cells) + " |"
    return "  ".join(f"{c:>12}" for c in cells)


if __name__ == "__main__":
    sys.exit(main())

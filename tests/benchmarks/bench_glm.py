"""Benchmark of the design-based GLM (issue 13, "Done when"); run on demand, never collected by pytest.

    python tests/benchmarks/bench_glm.py [--rows 1e4,1e5,1e6] [--scenarios taylor,jk1]
                                         [--repeat 3] [--svy-max-rows 1e6] [--markdown] [--json FILE]

The data are those of ``bench_estimation.py`` (its ``make_data``: 50 strata x 20 PSUs, rows
dealt to the 1,000 PSUs at random, a weight per row, the 4-level domain ``dom``, 80 random-group
JK1 replicate weights as a ``(rows, 80)`` float64 array) with, added from a second seeded
generator, ten model terms and a binary response:

* ``x1..x6`` standard normal covariates;
* ``c1`` (3 levels), ``c2`` (4 levels), ``c3`` (3 levels) as Int8 codes 0..k-1, and ``dom``
  (4 levels), all four treated as factors with level 0 as the reference;
* ``yb`` (Int8 0/1) drawn from ``logit P(yb = 1) = -0.5 + x'b + (factor effects) + u_psu`` with
  a PSU random effect ``u ~ N(0, 0.3^2)``, so the design effects are above 1.

The model is ``yb ~ x1 + x2 + x3 + x4 + x5 + x6 + c1 + c2 + c3 + dom``, family quasibinomial:
10 terms, 17 coefficients. Scenarios, each on a design built beforehand (its build time is
printed separately):

``taylor``  ``Design.from_frame(frame, weights="w", ids=["psu"], strata="stratum")``: the
            sandwich variance through the Taylor engine.
``jk1``     ``Design.from_replicate_weights(frame, replicate_weights=reps, weights="w",
            type="JK1")``: the model refitted with each of the 80 replicate weights.

Each scenario runs in its own subprocess (the data generated there), ``glm`` runs ``--repeat``
times and the best time is kept; ``peak MB`` is the process's high-water mark (``VmHWM`` reset
before the first run, see ``bench_estimation.PeakMemory``), ``+MB`` what the fit added on top of
the data and the design.

Where ``svy`` is importable (``pip install -e '.[bench]'``), the same model runs with it in the
same process on the same frame: ``svy.Sample(frame, svy.Design(stratum=, psu=, wgt=))`` or, for
jk1, the frame with the replicate weights as columns ``rep1..rep80`` and
``svy.Design(wgt="w", rep_wgts=svy.JackknifeWgts(prefix="rep", n_reps=80, kind="jk1"))``, then
``sample.glm.fit("yb", x=[..., svy.Cat("c1", ref=0), ...], family="binomial",
method="taylor" | "replication")``. svy's ``method="replication"`` refits the model with each
replicate weight and takes the JK1 spread of the coefficients around the full-sample fit (R's
``svyglm`` on a ``svrepdesign``), so both scenarios compute the same coefficients and SEs; the
largest relative differences are printed as the check, with the ratio svy / ours of the best
times. svy is skipped above ``--svy-max-rows``.

``--write-check DIR`` instead writes, for the first ``--rows``, the data with the replicate
weights (``DIR/data.csv``) and both engines' coefficients and SEs (``DIR/python.csv``);
``Rscript tests/benchmarks/bench_glm_check.R DIR`` then fits the model with R ``survey``
(``svyglm`` on ``svydesign`` and on ``svrepdesign(type = "JK1")``) and prints the largest
relative differences of each engine from R.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

NUMERIC = [f"x{j}" for j in range(1, 7)]
FACTORS = {"c1": 3, "c2": 4, "c3": 3, "dom": 4}
FORMULA = "yb ~ " + " + ".join(NUMERIC + list(FACTORS))
SEED = 20261204
_B_NUMERIC = np.array([0.4, -0.3, 0.2, 0.1, -0.2, 0.05])
_B_FACTORS = {"c1": [0.0, 0.3, -0.2], "c2": [0.0, 0.2, 0.4, -0.3], "c3": [0.0, -0.4, 0.1], "dom": [0.0, 0.1, 0.1, 0.05]}


def _base():
    """``bench_estimation`` (its data generator, peak-memory probe and row formatting)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    import bench_estimation

    return bench_estimation


# ------------------------------------------------------------------ data
def make_data(rows: int, *, replicates: bool):
    """``bench_estimation.make_data`` plus ``x1..x6``, ``c1..c3`` and the binary response ``yb``."""
    import polars as pl

    frame, reps = _base().make_data(rows, replicate_dtype="float64" if replicates else None)
    rng = np.random.default_rng(SEED)
    psu = frame.get_column("psu").to_numpy()
    n_psu = _base().N_STRATA * _base().PSU_PER_STRATUM
    x = rng.standard_normal((rows, len(NUMERIC)))
    eta = -0.5 + x @ _B_NUMERIC + rng.normal(0.0, 0.3, n_psu)[psu]
    cols = {name: x[:, j] for j, name in enumerate(NUMERIC)}
    for name, k in FACTORS.items():
        code = frame.get_column(name).to_numpy() if name in frame.columns else rng.integers(0, k, rows, dtype=np.int8)
        cols[name] = code
        eta += np.asarray(_B_FACTORS[name])[code]
    cols["yb"] = (rng.random(rows) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int8)
    frame = frame.with_columns([pl.Series(k, v) for k, v in cols.items() if k not in frame.columns])
    return frame, reps


# ------------------------------------------------------------------ engines
def ours_design(frame, reps, scenario: str):
    from pipeline.survey import Design

    if scenario == "taylor":
        return Design.from_frame(frame, weights="w", ids=["psu"], strata="stratum")
    return Design.from_replicate_weights(frame, replicate_weights=reps, weights="w", type="JK1")


def ours_run(design):
    from pipeline.survey import glm

    return glm(design, FORMULA, family="quasibinomial", categorical=list(FACTORS))


def svy_sample(frame, reps, scenario: str):
    import polars as pl
    import svy

    if scenario == "taylor":
        return svy.Sample(frame, svy.Design(stratum="stratum", psu="psu", wgt="w"))
    n_rep = reps.shape[1]
    rep_frame = frame.hstack(pl.DataFrame(reps, schema=[f"rep{r}" for r in range(1, n_rep + 1)]))
    return svy.Sample(rep_frame, svy.Design(wgt="w", rep_wgts=svy.JackknifeWgts(prefix="rep", n_reps=n_rep, kind="jk1")))


def svy_run(sample, scenario: str):
    import svy

    x = NUMERIC + [svy.Cat(name, ref=0) for name in FACTORS]
    method = "taylor" if scenario == "taylor" else "replication"
    return sample.glm.fit("yb", x=x, family="binomial", method=method).fitted


def _svy_name(term: str) -> str:
    """Our (R's) coefficient name as svy spells it: ``(Intercept)`` -> ``_intercept_``, ``c12`` -> ``c1_2``."""
    if term == "(Intercept)":
        return "_intercept_"
    if term in NUMERIC:
        return term
    for name in FACTORS:
        if term.startswith(name) and term[len(name):].isdigit():
            return f"{name}_{term[len(name):]}"
    raise KeyError(term)


def compare(fit, theirs) -> dict:
    """Largest relative differences of the coefficients and SEs (svy as the denominator)."""
    by_name = {c.term: (c.est, c.se) for c in theirs.coefs}
    missing = [t for t in fit.terms if _svy_name(t) not in by_name]
    if missing:
        return {"error": f"svy has no coefficient for {missing}"}
    est = np.array([by_name[_svy_name(t)][0] for t in fit.terms])
    se = np.array([by_name[_svy_name(t)][1] for t in fit.terms])
    return {
        "coefficients": len(fit.terms),
        "max_rel_diff_coef": float(np.max(np.abs(fit.coef - est) / np.abs(est))),
        "max_rel_diff_se": float(np.max(np.abs(fit.se - se) / np.abs(se))),
    }


def write_check(rows: int, directory: str) -> None:
    """The data and both engines' coefficients and SEs as CSV, for ``bench_glm_check.R``."""
    import polars as pl

    os.makedirs(directory, exist_ok=True)
    frame, reps = make_data(rows, replicates=True)
    frame.hstack(pl.DataFrame(reps, schema=[f"rep{r}" for r in range(1, reps.shape[1] + 1)])).write_csv(
        os.path.join(directory, "data.csv"))
    out = []
    for scenario in ("taylor", "jk1"):
        fit = ours_run(ours_design(frame, reps, scenario))
        theirs = {c.term: (c.est, c.se) for c in svy_run(svy_sample(frame, reps, scenario), scenario).coefs}
        out += [(scenario, t, c, s, *theirs[_svy_name(t)]) for t, c, s in zip(fit.terms, fit.coef, fit.se)]
    pl.DataFrame(out, schema=["scenario", "term", "ours_coef", "ours_se", "svy_coef", "svy_se"], orient="row").write_csv(
        os.path.join(directory, "python.csv"))


# ------------------------------------------------------------------ worker
def _best(run, repeat: int, memory) -> tuple[float, list[float], object, object]:
    times, result, mem = [], None, None
    for i in range(repeat):
        if i == 0:
            with memory() as mem:
                t0 = time.perf_counter()
                result = run()
                times.append(time.perf_counter() - t0)
        else:
            t0 = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - t0)
    return min(times), times, result, mem


def worker(rows: int, scenario: str, repeat: int, run_svy: bool) -> dict:
    base = _base()
    frame, reps = make_data(rows, replicates=scenario == "jk1")
    out: dict = {"rows": rows, "scenario": scenario}
    # first calls import modules (statsmodels, scipy.stats, ...): pay that on small data, for both engines
    small, small_reps = make_data(2000, replicates=scenario == "jk1")
    ours_run(ours_design(small, small_reps, scenario))

    t0 = time.perf_counter()
    design = ours_design(frame, reps, scenario)
    out["design_seconds"] = time.perf_counter() - t0
    out["seconds"], out["all_seconds"], fit, mem = _best(lambda: ours_run(design), repeat, base.PeakMemory)
    out["peak_bytes"], out["extra_bytes"] = mem.peak, mem.extra
    out["terms"], out["coefficients"] = FORMULA.count("+") + 1, len(fit.terms)
    del design

    if run_svy:
        try:
            import svy
        except ImportError:
            out["svy"] = "not installed"
            return out
        svy_run(svy_sample(small, small_reps, scenario), scenario)
        sample = svy_sample(frame, reps, scenario)
        out["svy_seconds"], out["svy_all_seconds"], theirs, mem = _best(
            lambda: svy_run(sample, scenario), repeat, base.PeakMemory)
        out["svy_peak_bytes"], out["svy_extra_bytes"] = mem.peak, mem.extra
        out["svy_version"] = svy.__version__
        out["check"] = compare(fit, theirs)
    return out


# ------------------------------------------------------------------ driver
def main(argv: list[str] | None = None) -> int:
    base = _base()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1e4,1e5,1e6", help="comma-separated row counts")
    parser.add_argument("--scenarios", default="taylor,jk1", help="comma-separated: taylor, jk1")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine; the best time is kept")
    parser.add_argument("--svy-max-rows", default="1e6", help="largest row count at which svy runs (0: never)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--write-check", metavar="DIR", help="write data and coefficients for bench_glm_check.R")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    svy_max = int(float(args.svy_max_rows))
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in ("taylor", "jk1")]
    if unknown:
        parser.error(f"--scenarios: expected taylor and/or jk1, found {','.join(unknown)}")
    if args.write_check:
        write_check(base._rows(args.rows)[0], args.write_check)
        return 0
    if args.worker:
        (rows,) = base._rows(args.rows)
        result = worker(rows, scenarios[0], args.repeat, run_svy=rows <= svy_max)
        print("RESULT " + json.dumps(result))
        return 0

    import platform

    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}; model {FORMULA} (quasibinomial)",
        file=sys.stderr,
    )
    results = []
    for rows in base._rows(args.rows):
        for scenario in scenarios:
            cmd = [
                sys.executable, os.path.abspath(__file__), "--worker", "--rows", str(rows), "--scenarios", scenario,
                "--repeat", str(args.repeat), "--svy-max-rows", str(svy_max),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(f"{base._fmt_rows(rows)} {scenario}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
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


_COLUMNS = ("rows", "scenario", "seconds", "peak MB", "+MB", "design s", "svy s", "svy peak MB", "svy / ours",
            "max rel diff coef, se")


def _header(markdown: bool) -> str:
    if markdown:
        return "| " + " | ".join(_COLUMNS) + " |\n|" + "|".join(
            " --- " if c in ("rows", "scenario") else " ---: " for c in _COLUMNS) + "|"
    return "  ".join(f"{c:>12}" for c in _COLUMNS)


def _line(res: dict, *, markdown: bool) -> str:
    mb = lambda b: f"{b / 2**20:,.0f}"  # noqa: E731
    svy_s = res.get("svy_seconds")
    check = res.get("check") or {}
    cells = [
        _base()._fmt_rows(res["rows"]),
        res["scenario"],
        f"{res['seconds']:.3f}",
        mb(res["peak_bytes"]),
        mb(res["extra_bytes"]),
        f"{res['design_seconds']:.3f}",
        f"{svy_s:.2f}" if svy_s is not None else (res.get("svy") or "skipped"),
        mb(res["svy_peak_bytes"]) if svy_s is not None else "",
        f"{svy_s / res['seconds']:.1f}x" if svy_s is not None else "",
        check.get("error") or (f"{check['max_rel_diff_coef']:.0e}, {check['max_rel_diff_se']:.0e}" if check else ""),
    ]
    if markdown:
        return "| " + " | ".join(cells) + " |"
    return "  ".join(f"{c:>12}" for c in cells)


if __name__ == "__main__":
    sys.exit(main())

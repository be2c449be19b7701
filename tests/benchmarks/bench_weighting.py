"""Benchmark: raking 10^6 and 10^7 rows on 5 margins (8, 4, 3, 3, 4 categories) to 1e-6.

Run on demand (not collected by pytest)::

    python tests/benchmarks/bench_weighting.py                 # 10^6 and 10^7 rows
    python tests/benchmarks/bench_weighting.py --rows 1e6 --repeat 5

Every scenario (library x rows) runs in a fresh subprocess, so its peak memory is its own. The
data are the same in every process (one seed): correlated categorical margins drawn from one
latent score, unequal (log-normal) base weights, and targets that are the margins of a tilted
weighting of the same sample, so that they are consistent and need several sweeps. Raking stops
when every margin's share is within 1e-6 of its target.

Printed per scenario: rows, seconds (best of ``--repeat``, the call only: data already in
memory), iterations (sweeps), peak memory (numpy allocations traced by ``tracemalloc`` during the
call, and the process's peak resident set), and the largest share error of the weights. When
``svy`` or ``weightipy`` are importable (``pip install -e '.[bench]'``) they run on the same data
and the ratio of their time to ours is printed, with whether their weights agree with ours (and
hit the margins) to 1e-6: every margin share of theirs within 1e-6 of ours and of the target
(the relative difference of the weights themselves is printed too; it is larger, because each
library stops as soon as its margins are within tolerance). weightipy rakes from equal starting
weights only (its ``Rake`` sets every seed weight to 1), so it is compared with our raking from
equal weights.

Targets from issue 4: 10^6 rows in at most 0.05 s, 10^7 rows in at most 0.5 s on the 2-core
project machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

CATEGORIES = (8, 4, 3, 3, 4)
TOLERANCE = 1e-6  # largest |achieved share - target share| accepted
POPULATION = 250_000_000.0
SEED = 20121120
TARGET_SECONDS = {10**6: 0.05, 10**7: 0.5}
LIBRARIES = ("pipeline", "svy", "weightipy")


# ----------------------------------------------------------------------------- the data


def make_data(rows: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """Margins m0..m4 (codes 1..k), base weights and target shares (one array per margin)."""
    rng = np.random.default_rng(SEED)
    z = rng.standard_normal(rows)
    margins = {}
    for i, k in enumerate(CATEGORIES):
        score = 0.6 * z + 0.8 * rng.standard_normal(rows)
        cuts = np.quantile(score[: min(rows, 100_000)], np.linspace(0, 1, k + 1)[1:-1])
        margins[f"m{i}"] = (np.searchsorted(cuts, score) + 1).astype(np.int64)
    base = rng.lognormal(0.0, 0.6, rows) * np.exp(0.3 * z)
    tilt = base * np.exp(-0.5 * z)  # the "population": a weighting the sample does not have
    shares = {name: np.bincount(codes, weights=tilt)[1:] / tilt.sum() for name, codes in margins.items()}
    return margins, base, shares


def share_error(margins: dict[str, np.ndarray], weights: np.ndarray, shares: dict[str, np.ndarray]) -> float:
    total = weights.sum()
    return max(float(np.abs(np.bincount(codes, weights=weights)[1:] / total - shares[name]).max()) for name, codes in margins.items())


def margin_gap(margins: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference between the shares two weightings give any margin category."""
    return max(
        float(np.abs(np.bincount(codes, weights=a)[1:] / a.sum() - np.bincount(codes, weights=b)[1:] / b.sum()).max())
        for codes in margins.values()
    )


# ------------------------------------------------------------------------------- runners


def run_pipeline(margins, base, shares, *, equal_start: bool = False):
    import polars as pl

    from pipeline.survey.weighting import rake

    frame = pl.DataFrame({"w": np.ones_like(base) if equal_start else base, **margins})
    targets = pl.DataFrame(
        {
            "variable": [name for name, s in shares.items() for _ in s],
            "category": [c + 1 for s in shares.values() for c in range(len(s))],
            "target": [float(x) * POPULATION for s in shares.values() for x in s],
        }
    )

    def call():
        res = rake(frame, weight="w", targets=targets, tolerance=TOLERANCE, max_iter=1000)
        return np.asarray(res.weights), res.iterations

    return call


def run_svy(margins, base, shares):
    import polars as pl
    import svy

    frame = pl.DataFrame({"w": base, **margins})
    controls = {name: {c + 1: float(x) * POPULATION for c, x in enumerate(s)} for name, s in shares.items()}

    def call():
        sample = svy.Sample(frame, svy.Design(wgt="w"))
        out = sample.weighting.rake(controls=controls, tol=TOLERANCE, max_iter=1000)
        return out.data.get_column("rk_wgt").to_numpy(), None  # rows in input order

    return call


def run_weightipy(margins, base, shares):
    import pandas as pd
    import weightipy as wp

    frame = pd.DataFrame(margins)
    scheme = {name: {c + 1: float(x) * 100 for c, x in enumerate(s)} for name, s in shares.items()}

    def call():
        # convcrit: stop when a sweep improves the change by less than this fraction (default 0.01)
        rim = wp.scheme_from_dict(scheme, rim_params={"max_iterations": 1000, "convcrit": 1e-9})
        w = wp.weight(frame, rim).to_numpy()
        iterations = rim.groups[next(iter(rim.groups))].get("iterations") if rim.groups else None
        return w * POPULATION / w.sum(), iterations

    return call


RUNNERS = {"pipeline": run_pipeline, "svy": run_svy, "weightipy": run_weightipy}


def child(library: str, rows: int, repeat: int, out: Path) -> None:
    """One scenario in this process: print a JSON line, save the weights to ``out``."""
    margins, base, shares = make_data(rows)
    call = RUNNERS[library](margins, base, shares)
    call()  # warm-up (imports, caches)
    best = float("inf")
    tracemalloc.start()
    for _ in range(repeat):
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        weights, iterations = call()
        best = min(best, time.perf_counter() - t0)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.save(out, weights)
    print(
        json.dumps(
            {
                "library": library,
                "rows": rows,
                "seconds": best,
                "iterations": iterations,
                "traced_mb": traced / 2**20,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "share_error": share_error(margins, weights, shares),
            }
        )
    )


# ------------------------------------------------------------------------------- driver


def available(library: str) -> bool:
    if library == "pipeline":
        return True
    try:
        __import__(library)
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", default=["1e6", "1e7"], help="row counts (default 1e6 1e7)")
    parser.add_argument("--repeat", type=int, default=3, help="timed calls per scenario; the best is kept")
    parser.add_argument("--only", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument("--child", nargs=3, metavar=("LIBRARY", "ROWS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(float(args.child[1])), args.repeat, Path(args.child[2]))
        return 0

    print(f"raking {len(CATEGORIES)} margins ({', '.join(map(str, CATEGORIES))} categories) to {TOLERANCE:g} on the shares; "
          f"{os.cpu_count()} CPU(s); best of {args.repeat}")
    header = f"{'library':<10} {'rows':>10} {'seconds':>9} {'iter':>5} {'traced MB':>10} {'peak RSS MB':>12} {'share error':>12} {'vs pipeline':>12}  weights agree"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for rows_text in args.rows:
            rows = int(float(rows_text))
            results = {}
            for library in args.only:
                if not available(library):
                    print(f"{library:<10} {rows:>10,}   (not installed: pip install -e '.[bench]')")
                    continue
                out = Path(tmp) / f"{library}-{rows}.npy"
                proc = subprocess.run(
                    [sys.executable, __file__, "--repeat", str(args.repeat), "--child", library, str(rows), str(out)],
                    capture_output=True, text=True,
                )
                if proc.returncode != 0:
                    print(f"{library:<10} {rows:>10,}   failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                results[library] = (r, np.load(out))
                ours = results.get("pipeline")
                ratio = agree = ""
                if ours is not None and library != "pipeline":
                    ratio = f"{r['seconds'] / ours[0]['seconds']:.1f}x"
                    reference = ours[1]
                    if library == "weightipy":
                        reference = run_pipeline(*make_data(rows), equal_start=True)()[0]
                    margins, _, shares = make_data(rows)
                    theirs = results[library][1]
                    gap = margin_gap(margins, theirs, reference)
                    diff = float(np.max(np.abs(theirs / theirs.sum() - reference / reference.sum()) / (reference / reference.sum())))
                    ok = gap < TOLERANCE and r["share_error"] < TOLERANCE
                    agree = f"{'yes' if ok else 'NO'} (margins {gap:.1e} apart; weights {diff:.1e} relative)"
                target = TARGET_SECONDS.get(rows)
                note = f"  (target <= {target:g} s: {'met' if r['seconds'] <= target else 'missed'})" if library == "pipeline" and target else ""
                iters = "" if r["iterations"] is None else str(r["iterations"])
                print(
                    f"{library:<10} {rows:>10,} {r['seconds']:>9.3f} {iters:>5} {r['traced_mb']:>10.0f} {r['peak_rss_mb']:>12.0f} "
                    f"{r['share_error']:>12.1e} {ratio:>12}  {agree}{note}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

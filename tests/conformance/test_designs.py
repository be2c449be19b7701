"""``expected/designs.csv``: every design R built, rebuilt here (rows, degf, weights, strata, PSUs).

Linearization and lonely designs from their ``svydesign`` calls, replicate designs with
:mod:`pipeline.survey.replicates` (bootstrap: R's exported weights), weighted designs through :mod:`pipeline.survey.weighting`,
domains with ``Design.subset``. Compared: ``n_rows`` (R ``nrow``), ``degf``,
``sum_weights``, ``n_strata`` and ``n_psu`` (linearization designs).
"""

from __future__ import annotations

import numpy as np

FILE = "designs.csv"

KNOWN_GAPS: list[tuple[str, str | None, str]] = []

_ITERATIVE = {"rake_clus1", "rake_clus1_tight", "cal_raking_clus1", "cal_logit_clus1", "cal_linear_bounded_clus1", "rake_clus1_boot"}


def test_designs_match_r(ref):
    expected = ref.read(FILE).rename({"design": "case"})

    def compute(case, rows):
        try:
            d = ref.design(case)
        except KeyError as exc:
            raise NotImplementedError(case) from exc
        out = {"n_rows": float(d.n_rows), "degf": float(d.degf), "sum_weights": float(d.weights.sum())}
        if not d.is_replicate:
            inset = d.weights != 0
            out["n_strata"] = float(len(np.unique(d.strata[inset, 0])))
            out["n_psu"] = float(len(np.unique(d.clusters[inset, 0])))
        return {"": out}

    def fields(row):
        rtol = 1e-6 if row["case"] in _ITERATIVE else ref.RTOL_CLOSED
        return {"n_rows": {}, "degf": {}, "sum_weights": {"rtol": rtol}, "n_strata": {}, "n_psu": {}}

    out = ref.check_rows(FILE, expected, compute, key=lambda row: "", fields=fields, gaps=KNOWN_GAPS)
    ref.assert_outcome(FILE, out)


def test_conformance_folder_is_present():
    """The suite is read in place from ../shared/conformance; its absence is a failure, never a skip."""
    from pathlib import Path

    folder = (Path(__file__).parents[2] / ".." / "shared" / "conformance").resolve()
    assert (folder / "expected" / "designs.csv").is_file(), (
        f"conformance suite not found at {folder}: it is read in place from ../shared/conformance "
        "next to the project root (DESIGN.md section 7)"
    )

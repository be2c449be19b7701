"""``expected/weighting.csv``: svymean/svytotal on the weighted designs, through the estimators.

The designs are built by ``conftest.weighted_design`` (the weighting engine's
``poststratify``/``rake``/``calibrate``/``trim_weights`` and ``Design.reweight``); the
weighting engine's own checks of these rows live in ``tests/survey/test_weighting_conformance.py``.
Here every column (estimate, SE, both intervals, df, both design effects) goes through the
same row-by-row harness as ``estimates.csv``. Iterative weighting: relative 1e-6 (README).
"""

from __future__ import annotations

FILE = "weighting.csv"

KNOWN_GAPS: list[tuple[str, str | None, str]] = []

_ITERATIVE = {"rake_clus1", "rake_clus1_tight", "cal_raking_clus1", "cal_logit_clus1", "cal_linear_bounded_clus1", "rake_clus1_boot"}


def test_weighting_rows_match_r(ref):
    expected = ref.read(FILE)

    def fields(row):
        rtol = 1e-6 if row["design"] in _ITERATIVE else ref.RTOL_CLOSED
        spec = {"rtol": rtol, "noise": True}
        # the design effect of a zero-in-exact-arithmetic SE (a calibrated total) is noise over noise
        noise_se = row["se"] is not None and row["se"] <= 1e-9 * abs(row["estimate"])
        out = {f: spec for f in ("estimate", "se", "ci_low", "ci_high", "ci_low_t", "ci_high_t")}
        out["df"] = {}
        if not noise_se:
            out["deff"] = spec
            out["deff_replace"] = spec
        return out

    out = ref.check_rows(
        FILE,
        expected,
        ref.estimate_case,
        key=lambda row: ref.level_label(row["level"]),
        fields=fields,
        scale=ref.estimate_scale,
        gaps=KNOWN_GAPS,
    )
    ref.assert_outcome(FILE, out)

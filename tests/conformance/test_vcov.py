"""``expected/vcov.csv``: full covariance matrices of factor results (``vcov(svymean(~f, design))``).

Cases are those of ``estimates.csv``, ``lonely_psu.csv`` and ``weighting.csv`` (weighted designs
built with :mod:`pipeline.survey.weighting` and ``Design.reweight``);
each entry ``cov[level_i, level_j]`` is compared with relative tolerance 1e-9 plus a
noise allowance for covariances that are zero in exact arithmetic
(``NOISE_REL * sqrt(var_i var_j)`` and ``(NOISE_REL * estimate)^2``).
"""

from __future__ import annotations

import math
import re

FILE = "vcov.csv"

KNOWN_GAPS: list[tuple[str, str | None, str]] = []
_ITERATIVE = r"(rake_clus1|rake_clus1_tight|cal_raking_clus1|cal_logit_clus1|cal_linear_bounded_clus1|rake_clus1_boot)"


def test_vcov_matches_r(ref):
    expected = ref.read(FILE)
    # lonely-PSU cases ("lonely=<option>:...") run under the option in their case prefix

    def compute(case, rows):
        got = ref.estimate_case(case, [{"level_i": r["level_i"]} for r in rows])
        out = {}
        for li, vals in got.items():
            for lj in got:
                if ("cov", lj) in vals:
                    out[f"{li}|{lj}"] = {
                        "cov": vals[("cov", lj)],
                        "_scale": math.sqrt(abs(vals[("cov", li)] * got[lj][("cov", lj)]))
                        + ref.NOISE_REL * abs(vals["estimate"] * got[lj]["estimate"]),
                    }
        return out

    out = ref.check_rows(
        FILE,
        expected,
        compute,
        key=lambda row: f"{ref.level_label(row['level_i'])}|{ref.level_label(row['level_j'])}",
        # iterative weighting: README's relative 1e-6; closed forms 1e-9
        fields=lambda row: {"cov": {"noise": True, "rtol": 1e-6 if re.fullmatch(_ITERATIVE, row["design"]) else ref.RTOL_CLOSED}},
        scale=lambda row, got, field: got["_scale"],
        gaps=KNOWN_GAPS,
    )
    ref.assert_outcome(FILE, out)

"""``expected/estimates.csv``: svymean, svytotal and svyratio on every design (R survey 4.1-1).

Each case is the R call in its ``r_call`` column, e.g. ``svymean(~stype, clus1, deff=TRUE)``,
reproduced with :func:`pipeline.survey.estimators.mean` / ``total`` / ``ratio`` on the
design of the same name (``conftest.design``). Compared: estimate, SE, normal and t
intervals, df, ``deff = TRUE`` and ``deff = "replace"``. Tolerances: see ``conftest``.
"""

from __future__ import annotations

FILE = "estimates.csv"

#: (case regex, key regex or None, reason)
KNOWN_GAPS: list[tuple[str, str | None, str]] = []

FIELDS = {
    "estimate": {},
    "se": {"noise": True},
    "ci_low": {"noise": True},
    "ci_high": {"noise": True},
    "ci_low_t": {"noise": True},
    "ci_high_t": {"noise": True},
    "df": {},
    "deff": {"noise": True},
    "deff_replace": {"noise": True},
}


def test_estimates_match_r(ref):
    expected = ref.read(FILE)
    out = ref.check_rows(
        FILE,
        expected,
        ref.estimate_case,
        key=lambda row: ref.level_label(row["level"]),
        fields=FIELDS,
        scale=ref.estimate_scale,
        gaps=KNOWN_GAPS,
    )
    ref.assert_outcome(FILE, out)

"""``expected/lonely_psu.csv``: every ``survey.lonely.psu`` option on designs with a lonely stratum.

``nhanes_lonely`` (stratum 89 keeps one PSU) and ``strat_lonely`` (stratum H keeps one
school) under ``fail``, ``adjust``, ``average``, ``remove`` and ``certainty``: the
design's ``lonely_psu`` option reproduces R's global option. ``fail`` rows are R
errors: we must raise :class:`~pipeline.errors.DesignError` with R's message
("Stratum (89) has only one PSU at stage 1") inside ours.
"""

from __future__ import annotations

FILE = "lonely_psu.csv"

KNOWN_GAPS: list[tuple[str, str | None, str]] = []

FIELDS = {
    "status": {},
    "message": {},
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


def test_lonely_psu_options_match_r(ref):
    expected = ref.read(FILE)
    # R's error rows carry no r_call; take it (na.rm) from the same call under another option
    calls = {r["case"].split(":", 1)[1]: r["r_call"] for r in expected.iter_rows(named=True) if r["r_call"]}

    def key(row):
        return ref.level_label(row.get("level")) if row.get("status") == "ok" else ""

    def compute(case, rows):
        rows = [{**r, "r_call": r["r_call"] or calls.get(case.split(":", 1)[1], "")} for r in rows]
        got = ref.estimate_case(case, rows)
        if rows[0]["status"] == "error":
            first = next(iter(got.values()))
            return {"": first}
        return got

    out = ref.check_rows(FILE, expected, compute, key=key, fields=FIELDS, scale=ref.estimate_scale, gaps=KNOWN_GAPS)
    ref.assert_outcome(FILE, out)

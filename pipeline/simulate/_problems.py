"""The data problems of a real delivery, injected on purpose, and the answer key that lists them.

This module owns section 7.7 of ``studies/insecure_communities.md``: exact duplicates,
near-duplicate re-interviews, partial interviews (break-offs), speeders with straight-lining,
out-of-range codes, skip-pattern violations, a vendor batch delivered in its own codes (2012: the
Maricopa batch's missing and education codes; 2014: the Harris batch's SEX), interview dates
outside the field window, and one fabricating interviewer. It
also puts the rows in delivery order (by interview date, then time of day; the exact duplicates
are re-appended at the end, as a vendor's faulty merge would).

Counts are those of section 7.7 at the reference size of 2,004 completes (wave 2014: its own,
somewhat smaller counts at 2,000) and scale with ``n``.
Decisions where the spec is silent:

- The problem sets on completes are disjoint (a speeder is never also a skip violation, ...), so
  every flag counts exactly the rows it injected. The drifted batch is a property of a whole
  vendor batch (a county) and overlaps everything in that county.
- Duplicates and near-duplicates copy problem-free completes. The later row of a pair is the one
  flagged. Removing the DQ_DUP, DQ_NEARDUP and DQ_PARTIAL rows leaves exactly the ``n``
  completes, allocated to the counties as the wave's design says.
- COUNTY = 5 is injected on partial interviews only: a complete with an unknown county could not
  be weighted, and the acceptance count of section 7.8 (501 completes per county in 2012) must hold.
- Speeders, out-of-range codes, skip violations, wrong dates and the fabricated interviews live on
  the completes, for cleaning to fix, flag or remove.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ._codebook import (
    BATTERY,
    DK,
    DK2,
    QUESTIONNAIRE_2012,
    SYSMIS,
    QuestionnaireSpec,
    derive_agecat,
    derive_status4,
    wave_variables,
)
from ._fieldwork import FieldworkSpec, draw_dates, draw_durations, draw_interviewers
from ._random import permutation

#: The order in which a break-off truncates the interview: everything after S1 (SEX is
#: interviewer-recorded and always present). [E] The study's question order is unknown; the
#: attitude battery comes before the demographics, as in most attitude surveys.
QUESTIONNAIRE_ORDER: tuple[str, ...] = (
    "AGE",
    *BATTERY,
    "Q11",
    "Q12",
    "Q13",
    "Q14",
    "Q14A",
    "Q15",
    "EDUC",
    "BORN",
    "YRS_US",
    "CITIZEN",
    "LEGAL",
    "ORIGIN",
    "PHONESTAT",
    "HH_ADULTS",
    "INCOME",
)

#: Items a near-duplicate re-interview may answer differently, with their substantive codes.
PERTURBABLE_ITEMS: dict[str, tuple[int, ...]] = {
    **{name: (1, 2, 3, 4) for name in BATTERY},
    "Q11": (1, 2, 3, 4),
    "Q12": (1, 2, 3, 4),
    "Q13": (1, 2),
    "Q15": (1, 2),
    "INCOME": (1, 2, 3, 4, 5),
}



def questionnaire_order(questionnaire: QuestionnaireSpec) -> tuple[str, ...]:
    """The wave's interview order (internal names): :data:`QUESTIONNAIRE_ORDER` without the
    dropped items, each added item right after the item it follows."""
    order: list[str] = []
    for name in QUESTIONNAIRE_ORDER:
        if questionnaire.asks(name):
            order.append(name)
        order.extend(item.name for item in questionnaire.added if item.after == name)
    missing = [item.name for item in questionnaire.added if item.name not in order]
    if missing:
        raise ValueError(f"added items {missing} follow no question of the interview")
    return tuple(order)


def perturbable_items(questionnaire: QuestionnaireSpec) -> dict[str, tuple[int, ...]]:
    """The wave's :data:`PERTURBABLE_ITEMS` (added items too), in interview order."""
    labels = wave_variables(questionnaire)
    added = {
        item.name: tuple(c for c in sorted(labels[item.name][1] or {}) if c not in questionnaire.dk_ref(item.name))
        for item in questionnaire.added
    }
    items = {**PERTURBABLE_ITEMS, **added}
    return {name: items[name] for name in questionnaire_order(questionnaire) if name in items}


#: The skip-violation kinds of section 7.7.
SKIP_KINDS: tuple[str, ...] = (
    "us_born_citizenship",  # U.S.-born with CITIZEN/LEGAL filled
    "us_born_years",  # YRS_US filled for BORN = 1
    "q14a_not_victim",  # Q14A answered when Q14 = 2
    "abroad_no_citizen",  # BORN = 3 with CITIZEN blank
    "citizen_legal_no",  # LEGAL = 3 while CITIZEN = 1
)

FLAGS: tuple[str, ...] = (
    "DQ_DUP",
    "DQ_NEARDUP",
    "DQ_OOR",
    "DQ_PARTIAL",
    "DQ_SPEEDER",
    "DQ_SKIP",
    "DQ_DATE",
    "DQ_DRIFT",
    "DQ_INTVR",
)


@dataclass(frozen=True)
class ProblemSpec:
    """Counts and rules of the injected problems (section 7.7), at ``reference_n`` completes."""

    reference_n: int
    duplicates: int
    near_duplicate_pairs: int
    near_duplicate_perturb_share: float
    near_duplicate_days: tuple[int, int]
    partial_screener_seconds: int
    speeders: int
    speeder_duration_share: tuple[float, float]
    straightline_share: float
    oor_battery_cells: int
    oor_battery_items: tuple[str, ...]
    oor_battery_values: tuple[int, ...]
    oor_educ_cells: int
    oor_educ_value: int
    oor_county_cells: int
    oor_county_value: int
    oor_age_values: tuple[int, ...]
    oor_years_over_age: int
    skip_violations: tuple[tuple[str, int], ...]
    date_errors: int
    date_error_values: tuple[dt.date, ...]
    fabricated: int
    fabricated_patterns: tuple[tuple[tuple[int, ...], float], ...]
    drift_county: int
    drift_recodes: tuple[tuple[tuple[str, ...], tuple[tuple[int, int], ...]], ...]
    """The drifted batch's codes: (variables, (code as asked, code as delivered) pairs)."""


PROBLEMS_2012 = ProblemSpec(
    reference_n=2004,
    duplicates=12,  # "12 rows (0.6%)"
    near_duplicate_pairs=6,  # "6 pairs"
    near_duplicate_perturb_share=0.10,  # "about 10% of answers perturbed"
    near_duplicate_days=(1, 5),  # "INTDATE 1-5 days later"
    partial_screener_seconds=60,  # [E] time spent before the first question
    speeders=50,  # "about 50 (2.5%)"
    speeder_duration_share=(0.15, 0.35),  # [E] "DURATION < 0.4 x the language median"
    straightline_share=0.6,  # "60% of them straight-line Q10A-F"
    oor_battery_cells=48,  # [E] split of "about 60" out-of-range cells: 48 + 10 + 2
    oor_battery_items=(*BATTERY, "Q11"),
    oor_battery_values=(0, 5, 6, 7),  # "values 0, 5, 6, 7 on Q10/Q11"
    oor_educ_cells=10,
    oor_educ_value=7,  # "EDUC = 7"
    oor_county_cells=2,
    oor_county_value=5,  # "COUNTY = 5"
    oor_age_values=(17, 0, 999),  # "AGE = 17, 0 or 999 in 3 cases"
    oor_years_over_age=4,  # "YRS_US > AGE in 4 cases"
    skip_violations=(  # "about 30", [E] split over the five listed kinds
        ("us_born_citizenship", 7),
        ("us_born_years", 6),
        ("q14a_not_victim", 7),
        ("abroad_no_citizen", 5),
        ("citizen_legal_no", 5),
    ),
    date_errors=3,
    date_error_values=(dt.date(2012, 11, 16), dt.date(2012, 12, 11)),  # "2012-11-16 or 2012-12-11"
    fabricated=40,  # "1 interviewer, about 40 interviews"
    # [E] "identical Q10 patterns": most fabricated interviews repeat one answer pattern.
    fabricated_patterns=(((2, 2, 3, 3, 2, 3), 0.75), ((2, 2, 2, 3, 3, 3), 0.15), ((1, 2, 2, 3, 3, 3), 0.10)),
    drift_county=4,  # "the whole Maricopa batch"
    drift_recodes=(
        (BATTERY, ((DK, DK2),)),  # "DK stored as 98 (not 8) on Q10A-F"
        (("EDUC",), tuple((code, code - 1) for code in range(1, 7))),  # "EDUC coded 0-5 instead of 1-6"
    ),
)

#: Wave 2014 [E]: the same kinds of problem, somewhat fewer (a vendor that learned from 2012), at
#: the reference size of 2,000 completes. EDUC = 7 is a valid code in 2014, so the keying error is
#: EDUC = 0. The drifted vendor batch is Harris's: SEX exported as a 0/1 dummy (0 male, 1 female).
PROBLEMS_2014 = replace(
    PROBLEMS_2012,
    reference_n=2000,
    duplicates=10,
    near_duplicate_pairs=5,
    speeders=40,
    oor_battery_cells=36,
    oor_educ_cells=8,
    oor_educ_value=0,
    oor_age_values=(17, 999),
    oor_years_over_age=3,
    skip_violations=(
        ("us_born_citizenship", 5),
        ("us_born_years", 5),
        ("q14a_not_victim", 5),
        ("abroad_no_citizen", 4),
        ("citizen_legal_no", 4),
    ),
    date_errors=2,
    date_error_values=(dt.date(2014, 11, 21), dt.date(2014, 12, 16)),
    fabricated=30,
    # One dominant pattern, as in 2012; agreeing with Q10A and Q10D in a quarter of the made-up
    # interviews, near the 2014 truths, so that the fabrication (flagged, not removed, by the demo's
    # cleaning) hardly moves the trend.
    fabricated_patterns=(((3, 2, 3, 3, 2, 3), 0.75), ((2, 2, 3, 2, 3, 3), 0.15), ((2, 3, 2, 2, 3, 3), 0.10)),
    drift_county=2,
    drift_recodes=((("SEX",), ((1, 0), (2, 1))),),
)


def scaled(count: int, n: int, reference_n: int) -> int:
    """A section 7.7 count scaled to ``n`` completes (at least 1 when the count is positive)."""
    if count <= 0:
        return 0
    return max(1, int(np.floor(count * n / reference_n + 0.5)))


@dataclass(frozen=True)
class Injected:
    """The delivery rows after injection, in delivery order.

    Attributes
    ----------
    records : dict of str to numpy.ndarray
        Column arrays (SYSMIS for blanks; ``INTDATE`` as ``datetime64[D]``; ``PHONE_HASH`` str).
    flags : dict of str to numpy.ndarray
        ``int8`` 0/1 per row for each of :data:`FLAGS`.
    detail : list of str
        What was injected in each row (empty for a clean row).
    """

    records: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    detail: list[str]


class _Injector:
    """Mutable working state of one injection run (private; the result is frozen)."""

    def __init__(
        self,
        records: dict[str, np.ndarray],
        complete: np.ndarray,
        rng: np.random.Generator,
        questionnaire: QuestionnaireSpec,
    ) -> None:
        self.q = questionnaire
        self.r = {k: v.copy() for k, v in records.items()}
        self.rows = complete.shape[0]
        self.complete = complete.copy()
        self.rng = rng
        self.used = np.zeros(self.rows, dtype=bool)
        self.order = permutation(rng, self.rows)
        self.flags = {flag: np.zeros(self.rows, dtype=np.int8) for flag in FLAGS}
        self.detail: list[list[str]] = [[] for _ in range(self.rows)]

    def take(self, eligible: np.ndarray, k: int, what: str) -> np.ndarray:
        """``k`` rows, not used by another problem, drawn at random among ``eligible``."""
        free = eligible & ~self.used
        picked = self.order[free[self.order]][:k]
        if picked.shape[0] < k:
            raise RuntimeError(f"simulate: only {picked.shape[0]} rows are eligible for {what}, {k} needed")
        self.used[picked] = True
        return picked

    def note(self, row: int, flag: str, text: str) -> None:
        self.flags[flag][row] = 1
        self.detail[row].append(text)

    def set(self, row: int, name: str, value: int, flag: str, why: str = "") -> None:
        old = self.r[name][row]
        self.r[name][row] = value
        self.note(row, flag, f"{self.q.delivered(name)} {_show(old)}->{_show(value)}{why}")


def _show(value: object) -> str:
    return "blank" if value == SYSMIS else str(value)


def inject_problems(
    records: dict[str, np.ndarray],
    *,
    complete: np.ndarray,
    minute: np.ndarray,
    spec: ProblemSpec,
    fieldwork: FieldworkSpec,
    n: int,
    fabricator: int | None,
    spare_respids: np.ndarray,
    rng: np.random.Generator,
    questionnaire: QuestionnaireSpec = QUESTIONNAIRE_2012,
) -> Injected:
    """Inject the section 7.7 problems into clean interviews and put the rows in delivery order.

    Parameters
    ----------
    records : dict of str to numpy.ndarray
        Clean full interviews: completes and the (not yet truncated) break-offs.
    complete : numpy.ndarray
        ``bool`` per row, False for the break-offs.
    minute : numpy.ndarray
        Time of day of each interview (for the delivery order).
    spec : ProblemSpec
        The wave's problem counts and rules.
    fieldwork : FieldworkSpec
        For the paradata of the re-interviews (dates, durations, interviewers).
    n : int
        Number of completes (the counts of ``spec`` are scaled to it).
    fabricator : int or None
        The fabricating interviewer's ID (None: no interviewer anomaly).
    spare_respids : numpy.ndarray
        Unused RESPIDs for the re-interviews.
    rng : numpy.random.Generator
        The ``"problems"`` stream.
    questionnaire : QuestionnaireSpec, default wave 2012's
        The wave's items and codes (``records`` are already in its codes, with internal names;
        the answer key's details use the wave's names).
    """

    def k(count: int) -> int:
        return scaled(count, n, spec.reference_n)

    inj = _Injector({**records, "_minute": minute.astype(np.int32)}, complete, rng, questionnaire)
    r = inj.r
    comp = inj.complete

    _truncate_partials(inj, spec)

    # Disjoint problem sets, drawn in a fixed order (part of the reproducibility contract).
    dup_sources = inj.take(comp, k(spec.duplicates), "exact duplicates")
    last_day = np.datetime64(fieldwork.field_end) - spec.near_duplicate_days[1]
    near_sources = inj.take(comp & (r["INTDATE"] <= last_day), k(spec.near_duplicate_pairs), "near-duplicates")
    if fabricator is not None:
        _fabricate(inj, spec, inj.take(comp, k(spec.fabricated), "fabricated interviews"), fabricator)
    _speeders(inj, spec, fieldwork, inj.take(comp, k(spec.speeders), "speeders"))
    _out_of_range(inj, spec, k)
    _skip_violations(inj, spec, k)
    for row in inj.take(comp, k(spec.date_errors), "date errors"):
        value = spec.date_error_values[int(np.floor(rng.random() * len(spec.date_error_values)))]
        old = r["INTDATE"][row]
        r["INTDATE"][row] = np.datetime64(value)
        inj.note(row, "DQ_DATE", f"INTDATE {old}->{value}")

    _add_near_duplicates(inj, spec, fieldwork, near_sources, fabricator, spare_respids)

    # The vendor derives AGECAT and STATUS4 from the delivered answers, problems included.
    r["AGECAT"] = derive_agecat(r["AGE"])
    r["STATUS4"] = derive_status4(r["BORN"], r["CITIZEN"], r["LEGAL"])
    _drift(inj, spec)
    return _delivery_order(inj, dup_sources)


def _truncate_partials(inj: _Injector, spec: ProblemSpec) -> None:
    """Break-offs: blank everything after a break position uniform over the items after S1."""
    r = inj.r
    order = questionnaire_order(inj.q)
    partial_rows = np.flatnonzero(~inj.complete)
    items = len(order)
    position = np.floor(inj.rng.random(partial_rows.shape[0]) * items).astype(np.int64)
    for row, pos in zip(partial_rows, position):
        for name in order[pos:]:
            r[name][row] = SYSMIS
        r["STATUS"][row] = 2
        share = pos / items
        r["DURATION"][row] = int(round(spec.partial_screener_seconds + share * r["DURATION"][row]))
        inj.note(row, "DQ_PARTIAL", f"break-off before {inj.q.delivered(order[pos])}")


def _fabricate(inj: _Injector, spec: ProblemSpec, rows: np.ndarray, fabricator: int) -> None:
    """One interviewer's made-up interviews: no DK/Refused, near-identical Q10 patterns."""
    r = inj.r
    patterns, shares = zip(*spec.fabricated_patterns)
    cdf = np.cumsum(shares) / np.sum(shares)
    asked = [*BATTERY, "Q11", "Q12", "Q13", "Q14", "Q14A", "Q15", *(item.name for item in inj.q.added), "INCOME"]
    substitutes = {name: 2 for name in asked if inj.q.asks(name)}
    for row in rows:
        pattern = patterns[min(int(np.searchsorted(cdf, inj.rng.random(), side="right")), len(patterns) - 1)]
        r["INTVR"][row] = fabricator
        for name, value in zip(BATTERY, pattern):
            r[name][row] = value
        for name, value in substitutes.items():
            if r[name][row] in inj.q.dk_ref(name):
                r[name][row] = value
        if r["Q14"][row] != 1:  # keep the skip pattern of the made-up answers consistent
            r["Q14A"][row] = SYSMIS
        inj.note(row, "DQ_INTVR", f"fabricated by INTVR {fabricator}: Q10A-F={''.join(map(str, pattern))}, no DK/Ref")


def _speeders(inj: _Injector, spec: ProblemSpec, fieldwork: FieldworkSpec, rows: np.ndarray) -> None:
    """Interviews rushed through in under 0.4 x the language median; 60% straight-line Q10A-F."""
    r = inj.r
    low, high = spec.speeder_duration_share
    straight = int(np.floor(spec.straightline_share * rows.shape[0] + 0.5))
    for i, row in enumerate(rows):
        median = fieldwork.duration_median_seconds[int(r["LANG"][row]) - 1]
        inj.set(row, "DURATION", int(round(median * (low + (high - low) * inj.rng.random()))), "DQ_SPEEDER")
        if i < straight:
            code = 1 + int(np.floor(inj.rng.random() * 4))
            for name in BATTERY:
                r[name][row] = code
            inj.note(row, "DQ_SPEEDER", f"straight-lined Q10A-F={code}")


def _out_of_range(inj: _Injector, spec: ProblemSpec, k: Callable[[int], int]) -> None:
    """Out-of-range codes: Q10/Q11, EDUC, COUNTY (on partials), AGE, YRS_US > AGE."""
    r, rng, comp = inj.r, inj.rng, inj.complete
    items, values = spec.oor_battery_items, spec.oor_battery_values
    for row in inj.take(comp, k(spec.oor_battery_cells), "out-of-range Q10/Q11 codes"):
        name = items[int(np.floor(rng.random() * len(items)))]
        inj.set(row, name, values[int(np.floor(rng.random() * len(values)))], "DQ_OOR")
    # Not in the drifted batch, whose EDUC codes are shifted: EDUC = 7 must stay unambiguous.
    educ_codes = [c for c in wave_variables(inj.q)["EDUC"][1] or {} if c not in inj.q.dk_ref("EDUC")]
    eligible = comp & (r["COUNTY"] != spec.drift_county) & np.isin(r["EDUC"], educ_codes)
    for row in inj.take(eligible, k(spec.oor_educ_cells), "out-of-range EDUC"):
        inj.set(row, "EDUC", spec.oor_educ_value, "DQ_OOR")
    eligible = ~comp & (r["COUNTY"] != spec.drift_county)
    for row in inj.take(eligible, k(spec.oor_county_cells), "out-of-range COUNTY"):
        inj.set(row, "COUNTY", spec.oor_county_value, "DQ_OOR")
    # AGE: on the U.S.-born, so that YRS_US (blank) cannot also exceed the bad age.
    ages = spec.oor_age_values[: k(len(spec.oor_age_values))]
    eligible = comp & np.isin(r["BORN"], (1, 2)) & (r["AGE"] <= 97)
    for row, value in zip(inj.take(eligible, len(ages), "out-of-range AGE"), ages):
        inj.set(row, "AGE", value, "DQ_OOR")
    eligible = comp & (r["BORN"] == 3) & (r["YRS_US"] >= 0) & (r["YRS_US"] <= 96) & (r["AGE"] <= 85)
    for row in inj.take(eligible, k(spec.oor_years_over_age), "YRS_US > AGE"):
        value = int(r["AGE"][row]) + 1 + int(np.floor(rng.random() * 10))
        inj.set(row, "YRS_US", value, "DQ_OOR", f" (AGE {r['AGE'][row]})")


def _skip_violations(inj: _Injector, spec: ProblemSpec, k: Callable[[int], int]) -> None:
    """The five skip-violation kinds of section 7.7."""
    r, rng, comp = inj.r, inj.rng, inj.complete
    eligible = {
        "us_born_citizenship": comp & (r["BORN"] == 1),
        "us_born_years": comp & (r["BORN"] == 1) & (r["AGE"] <= 96),
        "q14a_not_victim": comp & (r["Q14"] == 2),
        "abroad_no_citizen": comp & (r["BORN"] == 3) & np.isin(r["CITIZEN"], (1, 2)),
        "citizen_legal_no": comp & (r["BORN"] == 3) & (r["CITIZEN"] == 1),
    }
    for kind, count in spec.skip_violations:
        for row in inj.take(eligible[kind], k(count), f"skip violations ({kind})"):
            why = f" (skip: {kind})"
            if kind == "us_born_citizenship":
                if rng.random() < 0.3:
                    inj.set(row, "CITIZEN", 2, "DQ_SKIP", why)
                    inj.set(row, "LEGAL", 1, "DQ_SKIP", why)
                else:
                    inj.set(row, "CITIZEN", 1, "DQ_SKIP", why)
            elif kind == "us_born_years":
                inj.set(row, "YRS_US", int(r["AGE"][row]), "DQ_SKIP", why)
            elif kind == "q14a_not_victim":
                inj.set(row, "Q14A", 1 + int(rng.random() < 0.5), "DQ_SKIP", why)
            elif kind == "abroad_no_citizen":
                inj.set(row, "CITIZEN", SYSMIS, "DQ_SKIP", why)
                if r["LEGAL"][row] != SYSMIS:
                    inj.set(row, "LEGAL", SYSMIS, "DQ_SKIP", why)
            elif kind == "citizen_legal_no":
                inj.set(row, "LEGAL", 3, "DQ_SKIP", why)
            else:  # pragma: no cover - SKIP_KINDS and the spec are edited together
                raise ValueError(f"unknown skip-violation kind {kind!r}")


def _add_near_duplicates(
    inj: _Injector,
    spec: ProblemSpec,
    fieldwork: FieldworkSpec,
    sources: np.ndarray,
    fabricator: int | None,
    spare_respids: np.ndarray,
) -> None:
    """Re-interviews of the same phone: new RESPID, same demographics, ~10% answers changed, later date."""
    r, rng = inj.r, inj.rng
    perturbable = perturbable_items(inj.q)
    m = sources.shape[0]
    if m == 0:
        return
    if spare_respids.shape[0] < m:
        raise RuntimeError("simulate: not enough spare RESPIDs for the near-duplicates")
    low, high = spec.near_duplicate_days
    days = low + np.floor(rng.random(m) * (high - low + 1)).astype(np.int64)
    _, minute = draw_dates(fieldwork, m, rng)
    language = (r["LANG"][sources] - 1).astype(np.int64)
    duration = draw_durations(fieldwork, language, rng)
    interviewer = draw_interviewers(fieldwork, language, rng, exclude=fabricator)
    new = {name: col[sources].copy() for name, col in r.items()}
    new["RESPID"] = spare_respids[:m].astype(new["RESPID"].dtype)
    new["INTDATE"] = r["INTDATE"][sources] + days
    new["_minute"] = minute
    new["DURATION"] = duration
    new["INTVR"] = interviewer
    details: list[list[str]] = []
    for i in range(m):
        changed = [name for name in perturbable if rng.random() < spec.near_duplicate_perturb_share]
        if not changed:
            names = list(perturbable)
            changed = [names[int(np.floor(rng.random() * len(names)))]]
        notes = [f"re-interview of RESPID {r['RESPID'][sources[i]]} (same PHONE_HASH)"]
        for name in changed:
            old = int(new[name][i])
            options = [c for c in perturbable[name] if c != old]
            value = options[int(np.floor(rng.random() * len(options)))]
            new[name][i] = value
            notes.append(f"{name} {_show(old)}->{value}")
        details.append(notes)
    for name in r:
        r[name] = np.concatenate([r[name], new[name]])
    inj.complete = np.concatenate([inj.complete, np.ones(m, dtype=bool)])
    inj.used = np.concatenate([inj.used, np.ones(m, dtype=bool)])
    for flag in FLAGS:
        inj.flags[flag] = np.concatenate([inj.flags[flag], np.zeros(m, dtype=np.int8)])
    inj.flags["DQ_NEARDUP"][-m:] = 1
    inj.detail.extend(details)
    inj.rows += m


def _drift(inj: _Injector, spec: ProblemSpec) -> None:
    """One vendor batch (a county) delivered in its own codes: ``spec.drift_recodes``, every pair
    applied at once (2012 Maricopa: DK stored as 98 on Q10A-F, EDUC coded 0-5 instead of 1-6;
    2014 Harris: SEX 0/1)."""
    r = inj.r
    batch = r["COUNTY"] == spec.drift_county
    for names, pairs in spec.drift_recodes:
        for name in names:
            asked = r[name]
            delivered = asked.copy()
            for old, new in pairs:
                delivered[batch & (asked == old)] = new
            r[name] = delivered.astype(np.int32)
    inj.flags["DQ_DRIFT"][batch] = 1


def _delivery_order(inj: _Injector, dup_sources: np.ndarray) -> Injected:
    """Sort by date then time of day; re-append the exact duplicates at the end."""
    r = inj.r
    order = np.lexsort((r["RESPID"], r["_minute"], r["INTDATE"]))
    # The duplicates are copies of their source rows as delivered, appended in random order.
    dup_order = dup_sources[permutation(inj.rng, dup_sources.shape[0])]
    full = np.concatenate([order, dup_order])
    position = np.empty(inj.rows, dtype=np.int64)
    position[order] = np.arange(inj.rows)
    records = {name: col[full] for name, col in r.items() if not name.startswith("_")}
    flags = {flag: values[full].copy() for flag, values in inj.flags.items()}
    detail = ["; ".join(inj.detail[i]) for i in full]
    first_dup = order.shape[0]
    for j, source in enumerate(dup_order):
        row = first_dup + j
        for flag in FLAGS:
            flags[flag][row] = 0
        flags["DQ_DUP"][row] = 1
        flags["DQ_DRIFT"][row] = inj.flags["DQ_DRIFT"][source]
        detail[row] = f"exact duplicate of row {position[source] + 1} (RESPID {r['RESPID'][source]})"
    return Injected(records=records, flags=flags, detail=detail)

"""The eligible nonrespondents a delivery can keep (``simulate_delivery(nonrespondents=True)``).

The demo delivery holds completes and break-offs only (section 7.3 draws the completes with
probability proportional to the response propensity). This module draws, from its own random
stream (so the default delivery is unchanged), the eligible sampled people who were screened but
not interviewed: within each county x frame stratum, the released sample is the frame's selection
draw, and each released person responds with probability ``RESPONSE_SCALE`` x the section 7.3
propensity (at most 0.4 x 2.25 = 0.9). Given the completes, the nonrespondents are then a draw
proportional to selection x (1 - response probability), as many as the stratum's completes x
(1 - r) / r, with r the stratum's mean response probability under the frame's selection.

A nonrespondent's row carries the disposition ``STATUS = 3`` (eligible, screened, no interview),
a RESPID, PHONE_HASH, the date of the last attempt (INTDATE) and what the frame and the screener
know, from the simulator's truth: COUNTY, FRAME, S1 = 1, SEX, AGE, AGECAT, PHONESTAT and HH_ADULTS
(landline frame). Every other item is blank. The drifted vendor batch codes its nonrespondents as
it codes its interviews (2014 Harris: SEX 0/1; flagged ``DQ_DRIFT`` in the answer key), so the
wave's ``recodes`` apply to them alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._population import CELL_ONLY, DUAL, LANDLINE_ONLY, Population
from ._sample import CELL, LANDLINE, Allocation, Sample, SampleSpec, response_propensity

#: Response probability of a released person = RESPONSE_SCALE x the section 7.3 propensity.
RESPONSE_SCALE = 0.4
#: The disposition code of an eligible nonrespondent.
NONRESPONDENT_STATUS = 3
NONRESPONDENT_LABEL = "Eligible, no interview (refusal or noncontact after the screener)"


@dataclass(frozen=True)
class Nonrespondents:
    """The eligible nonrespondents drawn: population index and frame (0 landline, 1 cell)."""

    person: np.ndarray
    frame: np.ndarray


def draw_nonrespondents(pop: Population, spec: SampleSpec, sample: Sample, allocation: Allocation, rng: np.random.Generator) -> Nonrespondents:
    """Draw the eligible nonrespondents of every county x frame stratum (module docstring)."""
    r = np.minimum(RESPONSE_SCALE * response_propensity(pop, spec), 1.0)
    reached = (np.isin(pop.phone, (LANDLINE_ONLY, DUAL)), np.isin(pop.phone, (CELL_ONLY, DUAL)))
    selection = (1.0 / pop.hh_adults.astype(np.float64), np.ones(pop.size))
    taken = np.zeros(pop.size, dtype=bool)
    taken[sample.person] = True
    people, frames = [], []
    for c in range(allocation.completes.shape[0]):
        in_county = np.flatnonzero(pop.county == c)
        for frame in (LANDLINE, CELL):
            completes = int(allocation.completes[c, frame])
            eligible = in_county[reached[frame][in_county] & ~taken[in_county]]
            sel = selection[frame][eligible]
            mean_r = float((sel * r[eligible]).sum() / sel.sum())
            m = int(np.floor(completes * (1 - mean_r) / mean_r + 0.5))
            weight = sel * (1 - r[eligible])
            keys = -np.log(rng.random(eligible.shape[0])) / weight
            chosen = eligible[np.sort(np.argpartition(keys, m)[:m])] if m > 0 else eligible[:0]
            taken[chosen] = True
            people.append(chosen)
            frames.append(np.full(chosen.shape[0], frame, dtype=np.int8))
    return Nonrespondents(person=np.concatenate(people), frame=np.concatenate(frames))


def nonrespondent_records(
    pop: Population,
    nr: Nonrespondents,
    like: dict[str, np.ndarray],
    *,
    respids: np.ndarray,
    phone_hashes: np.ndarray,
    dates: np.ndarray,
    sysmis: int,
) -> dict[str, np.ndarray]:
    """The nonrespondents' rows, keyed and typed as ``like`` (the delivery's internal records):
    blank (``sysmis``, or None for text) but the frame and screener items (module docstring)."""
    from ._codebook import derive_agecat

    m = nr.person.shape[0]
    out: dict[str, np.ndarray] = {}
    for name, col in like.items():
        if col.dtype == object:
            out[name] = np.full(m, None, dtype=object)
        else:
            out[name] = np.full(m, sysmis, dtype=col.dtype)
    p = nr.person
    known = {
        "RESPID": respids,
        "PHONE_HASH": phone_hashes,
        "COUNTY": pop.county[p] + 1,
        "FRAME": nr.frame + 1,
        "INTDATE": dates,
        "STATUS": np.full(m, NONRESPONDENT_STATUS),
        "S1": np.ones(m),
        "SEX": np.where(pop.male[p] == 1, 1, 2),
        "AGE": pop.age[p],
        "PHONESTAT": pop.phone[p] + 1,
        "HH_ADULTS": np.where(nr.frame == LANDLINE, pop.hh_adults[p], sysmis),
    }
    known["AGECAT"] = derive_agecat(np.asarray(known["AGE"]).astype(np.int32))
    for name, values in known.items():
        if name in out:
            out[name] = np.asarray(values).astype(like[name].dtype)
    return out

"""Fieldwork paradata: interview dates and times, durations, interviewers, IDs and phone hashes.

This module owns the fieldwork parts of section 7.1 of ``studies/insecure_communities.md``
(interview dates spread over the field window with a Thanksgiving dip and a weekend bump;
log-normal interview length by language) and the administrative columns of the section 7.5
codebook: INTDATE, DURATION, INTVR (101-160), RESPID (6-digit, unique) and PHONE_HASH.

The time of day of each interview is drawn too, but only to order the delivery realistically
(by date, then time); it is not a delivered column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, replace

import numpy as np

from ._random import categorical, permutation

#: Field window, section 2 / 7.1.
FIELD_START_2012 = dt.date(2012, 11, 17)
FIELD_END_2012 = dt.date(2012, 12, 10)
#: Section 7.1: "a dip on Thanksgiving (2012-11-22) and more interviews on weekends" ([E] sizes).
HOLIDAYS_2012: tuple[tuple[dt.date, float], ...] = ((dt.date(2012, 11, 22), 0.3),)
WEEKEND_MULTIPLIER_2012 = 1.4

#: Section 7.1: log-normal interview length, median 13 min (English) / 15 min (Spanish), sigma 0.25.
DURATION_MEDIAN_SECONDS_2012: tuple[int, ...] = (13 * 60, 15 * 60)
DURATION_SIGMA_2012 = 0.25
#: [E] Honest interviews are at least exp(-3 sigma) = 0.47 of the median, so the speeder rule
#: (below 0.4 x the language median, section 7.7) flags only the injected speeders.
DURATION_CLIP_SD = 3.0

#: Section 7.5: interviewer IDs 101-160. [E] IDs 101-130 are bilingual and take the Spanish cases.
INTERVIEWER_IDS_2012 = tuple(range(101, 161))
BILINGUAL_INTERVIEWER_IDS_2012 = tuple(range(101, 131))
#: [E] interviewer productivity varies: workload share proportional to exp(0.35 N(0, 1)).
INTERVIEWER_PRODUCTIVITY_SIGMA = 0.35

#: [E] calling hours, minutes after midnight: weekdays 10:00-21:00, weekends 11:00-20:00.
CALLING_HOURS_WEEKDAY = (10 * 60, 21 * 60)
CALLING_HOURS_WEEKEND = (11 * 60, 20 * 60)

#: Area codes by county (Cook, Harris, Los Angeles, Maricopa), for the fake phone numbers.
AREA_CODES_2012: tuple[tuple[int, ...], ...] = (
    (312, 773, 708, 847),
    (713, 281, 832),
    (213, 310, 323, 562, 626, 818),
    (602, 480, 623),
)
#: Salt of the phone hash: the numbers are fake, the hash only has to look like a vendor's.
PHONE_HASH_SALT = "survey-pipeline synthetic phone"
PHONE_HASH_LENGTH = 16
RESPID_RANGE = (100_000, 999_999)


@dataclass(frozen=True)
class FieldworkSpec:
    """The fieldwork parameters of one wave (section 7.1)."""

    field_start: dt.date
    field_end: dt.date
    holidays: tuple[tuple[dt.date, float], ...]
    weekend_multiplier: float
    duration_median_seconds: tuple[int, ...]
    duration_sigma: float
    interviewer_ids: tuple[int, ...]
    bilingual_interviewer_ids: tuple[int, ...]
    area_codes: tuple[tuple[int, ...], ...]


FIELDWORK_2012 = FieldworkSpec(
    field_start=FIELD_START_2012,
    field_end=FIELD_END_2012,
    holidays=HOLIDAYS_2012,
    weekend_multiplier=WEEKEND_MULTIPLIER_2012,
    duration_median_seconds=DURATION_MEDIAN_SECONDS_2012,
    duration_sigma=DURATION_SIGMA_2012,
    interviewer_ids=INTERVIEWER_IDS_2012,
    bilingual_interviewer_ids=BILINGUAL_INTERVIEWER_IDS_2012,
    area_codes=AREA_CODES_2012,
)

#: Wave 2014 [E]: the same 24-day autumn window two years on, opening two days after the 20
#: November 2014 announcement that Secure Communities would end; Thanksgiving was 2014-11-27.
#: Interview lengths, interviewers and area codes as in 2012.
FIELD_START_2014 = dt.date(2014, 11, 22)
FIELD_END_2014 = dt.date(2014, 12, 15)
HOLIDAYS_2014: tuple[tuple[dt.date, float], ...] = ((dt.date(2014, 11, 27), 0.3),)

FIELDWORK_2014 = replace(
    FIELDWORK_2012,
    field_start=FIELD_START_2014,
    field_end=FIELD_END_2014,
    holidays=HOLIDAYS_2014,
)


@dataclass(frozen=True)
class Fieldwork:
    """Paradata of each interview.

    Attributes
    ----------
    date : numpy.ndarray
        ``datetime64[D]`` interview date (INTDATE).
    minute : numpy.ndarray
        ``int32`` minutes after midnight (ordering only, not delivered).
    duration : numpy.ndarray
        ``int32`` length of a full interview in seconds (DURATION).
    interviewer : numpy.ndarray
        ``int32`` INTVR.
    respid : numpy.ndarray
        ``int32`` RESPID, unique.
    phone_hash : numpy.ndarray
        ``str`` PHONE_HASH, unique.
    spare_respids : numpy.ndarray
        Further unused RESPIDs (for re-interviews created by the problem injection).
    fabricator : int or None
        The interviewer ID kept out of the regular assignment for the fabrication anomaly.
    """

    date: np.ndarray
    minute: np.ndarray
    duration: np.ndarray
    interviewer: np.ndarray
    respid: np.ndarray
    phone_hash: np.ndarray
    spare_respids: np.ndarray
    fabricator: int | None


def field_days(spec: FieldworkSpec) -> tuple[np.ndarray, np.ndarray]:
    """The field days and their relative interview volume (section 7.1)."""
    days = np.arange(np.datetime64(spec.field_start), np.datetime64(spec.field_end) + 1)
    weekday = (days.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    weights = np.where(weekday >= 5, spec.weekend_multiplier, 1.0)
    for day, multiplier in spec.holidays:
        weights = np.where(days == np.datetime64(day), weights * multiplier, weights)
    return days, weights


def draw_dates(spec: FieldworkSpec, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Interview dates and times of day (minutes after midnight)."""
    days, weights = field_days(spec)
    date = days[categorical(rng.random(m), weights)]
    weekend = ((date.astype("int64") + 3) % 7) >= 5
    start = np.where(weekend, CALLING_HOURS_WEEKEND[0], CALLING_HOURS_WEEKDAY[0])
    stop = np.where(weekend, CALLING_HOURS_WEEKEND[1], CALLING_HOURS_WEEKDAY[1])
    minute = (start + np.floor(rng.random(m) * (stop - start))).astype(np.int32)
    return date, minute


def draw_durations(spec: FieldworkSpec, language: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Full-interview lengths in seconds: log-normal around the language median (section 7.1).

    Parameters
    ----------
    language : numpy.ndarray
        0 English, 1 Spanish.
    """
    z = np.clip(rng.standard_normal(language.shape[0]), -DURATION_CLIP_SD, DURATION_CLIP_SD)
    median = np.asarray(spec.duration_median_seconds, dtype=np.float64)[language]
    return np.round(median * np.exp(spec.duration_sigma * z)).astype(np.int32)


def draw_interviewers(
    spec: FieldworkSpec, language: np.ndarray, rng: np.random.Generator, *, exclude: int | None
) -> np.ndarray:
    """Interviewer of each interview: Spanish cases go to the bilingual interviewers.

    Workloads are unequal (productivity weights drawn from ``rng``); ``exclude`` is kept out.
    """
    ids = np.asarray(spec.interviewer_ids, dtype=np.int32)
    productivity = np.exp(INTERVIEWER_PRODUCTIVITY_SIGMA * rng.standard_normal(ids.shape[0]))
    if exclude is not None:
        productivity[ids == exclude] = 0.0
    bilingual = np.isin(ids, spec.bilingual_interviewer_ids)
    tables = np.vstack([productivity, np.where(bilingual, productivity, 0.0)])
    return ids[categorical(rng.random(language.shape[0]), tables, language.astype(np.int64))]


def phone_hash(number: str) -> str:
    """The delivery's PHONE_HASH of a dialled number: SHA-256, first 16 hex digits."""
    return hashlib.sha256(f"{PHONE_HASH_SALT}|{number}".encode()).hexdigest()[:PHONE_HASH_LENGTH]


def draw_phone_hashes(spec: FieldworkSpec, county: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A unique hashed fake phone number per interview (area code of the county)."""
    m = county.shape[0]
    area = np.empty(m, dtype=np.int64)
    u = rng.random(m)
    for c, codes in enumerate(spec.area_codes):
        mask = county == c
        area[mask] = np.asarray(codes)[np.minimum(np.floor(u[mask] * len(codes)).astype(np.int64), len(codes) - 1)]
    exchange = rng.integers(200, 1000, size=m)
    line = rng.integers(0, 10_000, size=m)
    # A loop over the ~2,000 interviews (not the population): hashing is per string.
    hashes = [phone_hash(f"+1{a:03d}{x:03d}{n:04d}") for a, x, n in zip(area, exchange, line)]
    seen: set[str] = set()
    for i, h in enumerate(hashes):
        while h in seen:  # a repeated 10-digit number: redial (practically never happens)
            h = phone_hash(f"+1{area[i]:03d}{int(rng.integers(200, 1000)):03d}{int(rng.integers(0, 10_000)):04d}")
        seen.add(h)
        hashes[i] = h
    return np.asarray(hashes, dtype=object)


def assign_fieldwork(
    spec: FieldworkSpec,
    *,
    county: np.ndarray,
    language: np.ndarray,
    spare: int,
    reserve_fabricator: bool,
    rng: np.random.Generator,
) -> Fieldwork:
    """Draw the paradata of every interview.

    Parameters
    ----------
    spec : FieldworkSpec
        The wave's fieldwork parameters.
    county, language : numpy.ndarray
        County index and language (0 English, 1 Spanish) of each interview.
    spare : int
        How many further unused RESPIDs to reserve (re-interviews added later).
    reserve_fabricator : bool
        Keep one bilingual interviewer out of the regular assignment (for the fabrication anomaly).
    rng : numpy.random.Generator
        The ``"fieldwork"`` stream.
    """
    m = county.shape[0]
    bilingual = spec.bilingual_interviewer_ids
    fabricator = int(bilingual[int(np.floor(rng.random() * len(bilingual)))]) if reserve_fabricator else None
    date, minute = draw_dates(spec, m, rng)
    duration = draw_durations(spec, language, rng)
    interviewer = draw_interviewers(spec, language, rng, exclude=fabricator)
    ids = RESPID_RANGE[0] + permutation(rng, RESPID_RANGE[1] - RESPID_RANGE[0] + 1)[: m + spare]
    phones = draw_phone_hashes(spec, county, rng)
    return Fieldwork(
        date=date,
        minute=minute,
        duration=duration,
        interviewer=interviewer,
        respid=ids[:m].astype(np.int32),
        phone_hash=phones,
        spare_respids=ids[m:].astype(np.int32),
        fabricator=fabricator,
    )

"""The synthetic population: every Latino adult of the four counties, one row each.

This module owns the population model of ``studies/insecure_communities.md`` section 7.2 (with the
county sizes and status mixes of section 5b and the language model of section 7.1): county,
immigration status, sex, age, education, telephone status, years in the U.S., country of origin,
place of birth, interview language, adults in the household, and the latent fear ``z`` shared by
the attitude items (section 7.6).

The population is full size (5.98 million adults for wave 2012, 6.21 million for 2014), held as one compact numpy array
per attribute (``int8``; ``float32`` for ``z``), generated vectorised in a couple of seconds and
about 100 MB. Categories are stored as 0-based indices whose codebook code is ``index + 1``
(county, status = STATUS4, age group = AGECAT, education group = rk_educ, phone = PHONESTAT).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ._random import categorical

COUNTY_LABELS: tuple[str, ...] = ("Cook", "Harris", "Los Angeles", "Maricopa")
STATUS_LABELS: tuple[str, ...] = (
    "U.S.-born",
    "Foreign-born citizen",
    "Foreign-born legal non-citizen",
    "Foreign-born undocumented",
)
AGE_GROUP_LABELS: tuple[str, ...] = ("18-29", "30-44", "45-64", "65+")
EDUCATION_LABELS: tuple[str, ...] = (
    "Less than high school",
    "High school graduate",
    "Some college",
    "Bachelor's or more",
)
PHONE_LABELS: tuple[str, ...] = ("Cell only", "Landline only", "Both")

# Index constants used across the simulator.
US_BORN, NATURALIZED, LEGAL_NONCITIZEN, UNDOCUMENTED = 0, 1, 2, 3
CELL_ONLY, LANDLINE_ONLY, DUAL = 0, 1, 2
ENGLISH, SPANISH = 0, 1
BORN_US, BORN_PR, BORN_ABROAD = 1, 2, 3  # codebook codes of BORN
ORIGIN_PUERTO_RICO = 2  # codebook code of ORIGIN

# --- wave 2012 tables -----------------------------------------------------------------------

#: Adults 18+ per county, section 5b.
COUNTY_ADULTS_2012: tuple[int, ...] = (830_000, 1_080_000, 3_350_000, 720_000)

#: Status mix by county (U.S.-born / naturalized / legal non-citizen / undocumented), section 5b.
STATUS_BY_COUNTY_2012: tuple[tuple[float, ...], ...] = (
    (0.47, 0.16, 0.13, 0.24),  # Cook
    (0.46, 0.13, 0.12, 0.29),  # Harris
    (0.46, 0.20, 0.11, 0.23),  # Los Angeles
    (0.58, 0.12, 0.10, 0.20),  # Maricopa
)

#: P(male) by status, section 7.2.
MALE_BY_STATUS_2012: tuple[float, ...] = (0.47, 0.48, 0.53, 0.56)

#: Age group by status (18-29 / 30-44 / 45-64 / 65+), section 7.2.
AGE_GROUP_BY_STATUS_2012: tuple[tuple[float, ...], ...] = (
    (0.40, 0.28, 0.24, 0.08),  # U.S.-born
    (0.10, 0.30, 0.42, 0.18),  # naturalized
    (0.22, 0.38, 0.31, 0.09),  # legal non-citizen
    (0.30, 0.49, 0.19, 0.02),  # undocumented
)

#: Exact age is uniform within the band; 65+ runs 65-92 (section 7.2). Inclusive bounds.
AGE_BOUNDS_2012: tuple[tuple[int, int], ...] = ((18, 29), (30, 44), (45, 64), (65, 92))

#: Education by status (<HS / HS / some college / BA+), section 7.2.
EDUCATION_BY_STATUS_2012: tuple[tuple[float, ...], ...] = (
    (0.20, 0.33, 0.32, 0.15),
    (0.42, 0.24, 0.18, 0.16),
    (0.50, 0.24, 0.15, 0.11),
    (0.62, 0.24, 0.09, 0.05),
)

#: Phone status by age group (cell-only / landline-only / dual = remainder), section 7.2.
PHONE_BY_AGE_GROUP_2012: tuple[tuple[float, ...], ...] = (
    (0.66, 0.02, 0.32),
    (0.58, 0.03, 0.39),
    (0.40, 0.07, 0.53),
    (0.18, 0.20, 0.62),
)

#: Years in the U.S. of the foreign-born: U(low, high), then capped at AGE - 1 (section 7.2).
#: Stored as whole years (floor). U.S.-born: not applicable.
YEARS_IN_US_BY_STATUS_2012: tuple[tuple[int, int] | None, ...] = (None, (10, 50), (3, 30), (1, 22))

#: ORIGIN codes in table order (codebook: 1 Mexico ... 11 Other; 9 is unused).
ORIGIN_CODES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 10, 11)

#: Country of origin or heritage by county, in ORIGIN_CODES order. Section 7.2 fixes Mexico
#: (79 / 75 / 70 / 88 %), Harris' 12% Salvadoran + Honduran, LA's 12% Salvadoran and 6%
#: Guatemalan, and Puerto Ricans mostly in Cook (about 9%; section 5a: 9.6% of Chicago metro
#: Hispanics). The small categories are [E] fill-ins so each row sums to 1.
ORIGIN_BY_COUNTY_2012: tuple[tuple[float, ...], ...] = (
    #  MX     PR     CU     SV     GT     HN     OCA    SA     DR     Oth
    (0.792, 0.090, 0.010, 0.008, 0.021, 0.006, 0.008, 0.030, 0.005, 0.030),  # Cook
    (0.750, 0.010, 0.015, 0.080, 0.020, 0.040, 0.015, 0.030, 0.005, 0.035),  # Harris
    (0.700, 0.005, 0.010, 0.120, 0.060, 0.015, 0.020, 0.030, 0.002, 0.038),  # Los Angeles
    (0.880, 0.010, 0.005, 0.010, 0.015, 0.005, 0.010, 0.020, 0.003, 0.042),  # Maricopa
)

#: Share born on the island among Puerto Rican-heritage adults ([E]; they are U.S.-born, §5b).
PUERTO_RICO_BORN_SHARE_2012 = 0.35

#: P(Spanish interview) by status, section 7.1.
SPANISH_BY_STATUS_2012: tuple[float, ...] = (0.06, 0.55, 0.80, 0.93)

#: Adults in the household (1, 2, 3, 4, 5, 6+) by age group ([E]: person-level mean about 2.6,
#: larger for young adults who live with parents, smaller for the 65+).
HH_ADULTS_BY_AGE_GROUP_2012: tuple[tuple[float, ...], ...] = (
    (0.12, 0.36, 0.22, 0.16, 0.08, 0.06),
    (0.15, 0.42, 0.20, 0.13, 0.06, 0.04),
    (0.20, 0.42, 0.18, 0.11, 0.05, 0.04),
    (0.38, 0.42, 0.10, 0.06, 0.03, 0.01),
)


# --- wave 2014 tables [E] ------------------------------------------------------------------
# The same population two years on. Everything not listed here is the 2012 value. The status mix
# is held at 2012's on purpose: then the population truth of the attitude items moves only by the
# planted change (responses wave 2014) and by the small age/education shift below.

#: Adults 18+ per county: growth 2012-2014 of about +2.4% (Cook), +6.5% (Harris), +2.7% (LA) and
#: +6.3% (Maricopa): faster in the Sun Belt counties, as in the Census population estimates.
COUNTY_ADULTS_2014: tuple[int, ...] = (850_000, 1_150_000, 3_440_000, 765_000)

#: Older: one to four points move from 18-29 to the older bands (fewer new arrivals, the
#: foreign-born age in place; the undocumented most, their inflow having stalled since 2008).
AGE_GROUP_BY_STATUS_2014: tuple[tuple[float, ...], ...] = (
    (0.39, 0.28, 0.24, 0.09),  # U.S.-born
    (0.09, 0.29, 0.43, 0.19),  # naturalized
    (0.20, 0.38, 0.32, 0.10),  # legal non-citizen
    (0.26, 0.50, 0.21, 0.03),  # undocumented
)

#: More educated: two points move out of <HS into the higher groups in every status.
EDUCATION_BY_STATUS_2014: tuple[tuple[float, ...], ...] = (
    (0.18, 0.33, 0.33, 0.16),
    (0.40, 0.24, 0.19, 0.17),
    (0.48, 0.25, 0.16, 0.11),
    (0.60, 0.25, 0.10, 0.05),
)

#: More cell-only (NHIS: Hispanic adults about 52% wireless-only in 2012, about 60% in 2014).
PHONE_BY_AGE_GROUP_2014: tuple[tuple[float, ...], ...] = (
    (0.72, 0.015, 0.265),
    (0.66, 0.02, 0.32),
    (0.48, 0.05, 0.47),
    (0.24, 0.15, 0.61),
)

#: Two more years in the U.S. for the foreign-born (few new arrivals).
YEARS_IN_US_BY_STATUS_2014: tuple[tuple[int, int] | None, ...] = (None, (12, 52), (4, 32), (3, 24))


@dataclass(frozen=True)
class PopulationSpec:
    """The parameters of the population model of one wave (section 7.2 and 5b)."""

    county_adults: tuple[int, ...]
    status_by_county: tuple[tuple[float, ...], ...]
    male_by_status: tuple[float, ...]
    age_group_by_status: tuple[tuple[float, ...], ...]
    age_bounds: tuple[tuple[int, int], ...]
    education_by_status: tuple[tuple[float, ...], ...]
    phone_by_age_group: tuple[tuple[float, ...], ...]
    years_in_us_by_status: tuple[tuple[int, int] | None, ...]
    origin_by_county: tuple[tuple[float, ...], ...]
    puerto_rico_born_share: float
    spanish_by_status: tuple[float, ...]
    hh_adults_by_age_group: tuple[tuple[float, ...], ...]


POPULATION_2012 = PopulationSpec(
    county_adults=COUNTY_ADULTS_2012,
    status_by_county=STATUS_BY_COUNTY_2012,
    male_by_status=MALE_BY_STATUS_2012,
    age_group_by_status=AGE_GROUP_BY_STATUS_2012,
    age_bounds=AGE_BOUNDS_2012,
    education_by_status=EDUCATION_BY_STATUS_2012,
    phone_by_age_group=PHONE_BY_AGE_GROUP_2012,
    years_in_us_by_status=YEARS_IN_US_BY_STATUS_2012,
    origin_by_county=ORIGIN_BY_COUNTY_2012,
    puerto_rico_born_share=PUERTO_RICO_BORN_SHARE_2012,
    spanish_by_status=SPANISH_BY_STATUS_2012,
    hh_adults_by_age_group=HH_ADULTS_BY_AGE_GROUP_2012,
)

POPULATION_2014 = replace(
    POPULATION_2012,
    county_adults=COUNTY_ADULTS_2014,
    age_group_by_status=AGE_GROUP_BY_STATUS_2014,
    education_by_status=EDUCATION_BY_STATUS_2014,
    phone_by_age_group=PHONE_BY_AGE_GROUP_2014,
    years_in_us_by_status=YEARS_IN_US_BY_STATUS_2014,
)


@dataclass(frozen=True)
class Population:
    """The synthetic population, one array element per adult.

    Attributes
    ----------
    county, status, age_group, education, phone, language : numpy.ndarray
        ``int8`` 0-based indices (code = index + 1; language 0 English, 1 Spanish).
    male : numpy.ndarray
        ``int8``, 1 male, 0 female.
    age : numpy.ndarray
        ``int8`` age in years (18-92).
    born : numpy.ndarray
        ``int8`` BORN code: 1 U.S., 2 Puerto Rico, 3 another country.
    years_in_us : numpy.ndarray
        ``int8`` whole years lived in the U.S. (foreign-born); -1 for the U.S.-born.
    origin : numpy.ndarray
        ``int8`` ORIGIN code.
    hh_adults : numpy.ndarray
        ``int8`` adults in the household, 1-6 (6 = 6+).
    fear : numpy.ndarray
        ``float32`` latent fear z ~ N(0, 1), section 7.6.
    """

    county: np.ndarray
    status: np.ndarray
    male: np.ndarray
    age_group: np.ndarray
    age: np.ndarray
    education: np.ndarray
    phone: np.ndarray
    born: np.ndarray
    years_in_us: np.ndarray
    origin: np.ndarray
    language: np.ndarray
    hh_adults: np.ndarray
    fear: np.ndarray

    @property
    def size(self) -> int:
        """Number of adults."""
        return int(self.county.shape[0])


def build_population(spec: PopulationSpec, rng: np.random.Generator) -> Population:
    """Generate the full synthetic population of one wave.

    Parameters
    ----------
    spec : PopulationSpec
        The wave's population model.
    rng : numpy.random.Generator
        The ``"population"`` stream (see :func:`pipeline.simulate._random.stream`).

    Returns
    -------
    Population
        One element per adult, counties in blocks of their exact §5b sizes.
    """
    sizes = np.asarray(spec.county_adults, dtype=np.int64)
    n = int(sizes.sum())
    # The draws below happen in a fixed order: the order is part of the reproducibility contract.
    county = np.repeat(np.arange(len(sizes), dtype=np.int8), sizes)
    status = categorical(rng.random(n), np.asarray(spec.status_by_county), county)
    male = (rng.random(n) < np.asarray(spec.male_by_status)[status]).astype(np.int8)
    age_group = categorical(rng.random(n), np.asarray(spec.age_group_by_status), status)

    bounds = np.asarray(spec.age_bounds, dtype=np.int64)
    low, width = bounds[age_group, 0], bounds[age_group, 1] - bounds[age_group, 0] + 1
    age = (low + np.floor(rng.random(n) * width).astype(np.int64)).astype(np.int8)

    education = categorical(rng.random(n), np.asarray(spec.education_by_status), status)
    phone = categorical(rng.random(n), np.asarray(spec.phone_by_age_group), age_group)

    years_in_us = np.full(n, -1, dtype=np.int8)
    u = rng.random(n)
    for s, span in enumerate(spec.years_in_us_by_status):
        if span is None:
            continue
        mask = status == s
        years = np.floor(span[0] + u[mask] * (span[1] - span[0])).astype(np.int64)
        # Section 7.2: always cap at AGE - 1.
        years_in_us[mask] = np.minimum(years, age[mask].astype(np.int64) - 1).astype(np.int8)

    origin, born = _origin_and_birthplace(spec, county, status, rng.random(n), rng.random(n))
    language = (rng.random(n) < np.asarray(spec.spanish_by_status)[status]).astype(np.int8)
    hh_adults = (categorical(rng.random(n), np.asarray(spec.hh_adults_by_age_group), age_group) + 1).astype(np.int8)
    fear = rng.standard_normal(n).astype(np.float32)
    return Population(
        county=county,
        status=status,
        male=male,
        age_group=age_group,
        age=age,
        education=education,
        phone=phone,
        born=born,
        years_in_us=years_in_us,
        origin=origin,
        language=language,
        hh_adults=hh_adults,
        fear=fear,
    )


def _origin_and_birthplace(
    spec: PopulationSpec,
    county: np.ndarray,
    status: np.ndarray,
    u_origin: np.ndarray,
    u_born: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ORIGIN and BORN so that the county origin margins hold exactly in expectation.

    Puerto Rican heritage is given only to the U.S.-born (Puerto Ricans are citizens by birth),
    with probability share_PR / share_US-born in the county; everyone else draws from the
    county's non-Puerto-Rican distribution. A share of Puerto Ricans were born on the island
    (BORN = 2), the rest on the mainland; the foreign-born have BORN = 3.
    """
    table = np.asarray(spec.origin_by_county, dtype=np.float64)
    pr_col = ORIGIN_CODES.index(ORIGIN_PUERTO_RICO)
    us_born_share = np.asarray(spec.status_by_county, dtype=np.float64)[:, US_BORN]
    p_pr_given_us_born = table[:, pr_col] / us_born_share

    is_us_born = status == US_BORN
    q = p_pr_given_us_born[county]
    is_pr = is_us_born & (u_origin < q)
    # Reuse the uniform above the Puerto Rico cut for the remaining U.S.-born draw.
    u_rest = np.where(is_us_born, (u_origin - q) / (1.0 - q), u_origin)
    non_pr = np.delete(table, pr_col, axis=1)
    non_pr_codes = np.asarray([c for c in ORIGIN_CODES if c != ORIGIN_PUERTO_RICO], dtype=np.int8)
    origin = non_pr_codes[categorical(np.clip(u_rest, 0.0, np.nextafter(1.0, 0.0)), non_pr, county)]
    origin[is_pr] = ORIGIN_PUERTO_RICO

    born = np.full(county.shape, BORN_ABROAD, dtype=np.int8)
    born[is_us_born] = BORN_US
    born[is_pr & (u_born < spec.puerto_rico_born_share)] = BORN_PR
    return origin, born


def population_codes(pop: Population) -> dict[str, np.ndarray]:
    """Raking-variable codes of every adult (the contract names of the targets file).

    Returns
    -------
    dict of str to numpy.ndarray
        ``rk_sex_age`` 1-8 (male 18-29 ... female 65+), ``rk_educ`` 1-4, ``rk_citizen`` 1-3
        (U.S.-born incl. Puerto Rico, foreign-born citizen, foreign-born non-citizen) and
        ``rk_phone`` 1-3 (cell only, landline only, both), all ``int8``.
    """
    return {
        "rk_sex_age": (1 + pop.age_group + 4 * (1 - pop.male)).astype(np.int8),
        "rk_educ": (pop.education + 1).astype(np.int8),
        "rk_citizen": (np.minimum(pop.status, LEGAL_NONCITIZEN) + 1).astype(np.int8),
        "rk_phone": (pop.phone + 1).astype(np.int8),
    }

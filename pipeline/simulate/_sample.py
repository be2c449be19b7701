"""The dual-frame telephone sample: who is reached, who completes, who breaks off.

This module owns sections 7.1, 7.3 and the selection side of 7.4 of
``studies/insecure_communities.md``: strata county x frame with the wave's allocation to counties
(2012: equal, 501 each; 2014: 400 / 500 / 700 / 400) and landline/cell split (2012: 50/50;
2014: 40/60); the landline frame reaches landline-only and dual users and selects one
adult per household (probability proportional to 1 / HH_ADULTS); the cell frame reaches cell-only
and dual users. Within each stratum the completes are drawn without replacement with probability
proportional to the section 7.3 response propensity times the frame selection probability, by
Efraimidis-Spirakis keys (``-log(u) / w``, the ``m`` smallest are taken), which is successive
sampling proportional to ``w``. A person is interviewed at most once: the cell frame draw excludes
people already interviewed on their landline.

The break-offs (partial interviews, section 7.7) are drawn the same way from the people not
interviewed, with more break-offs on the cell frame and in Spanish.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ._population import CELL_ONLY, DUAL, LANDLINE_ONLY, SPANISH, Population

LANDLINE, CELL = 0, 1  # frame index; FRAME code = index + 1

#: Response propensity multipliers, section 7.3. Rows: male, female; columns: age group.
PROPENSITY_SEX_AGE_2012: tuple[tuple[float, ...], ...] = (
    (0.55, 0.80, 0.95, 1.30),  # male 18-29 / 30-44 / 45-64 / 65+
    (0.80, 1.00, 1.15, 1.50),  # female
)
PROPENSITY_EDUCATION_2012: tuple[float, ...] = (0.70, 0.95, 1.10, 1.30)  # <HS / HS / SC / BA+
PROPENSITY_STATUS_2012: tuple[float, ...] = (1.00, 1.05, 0.90, 0.60)  # USb / nat / legal / undoc
PROPENSITY_PHONE_2012: tuple[float, ...] = (0.85, 1.10, 1.10)  # cell-only / landline-only / dual

#: Optional non-ignorable mode (section 7.3): propensity x 0.9 when latent fear > 1 SD. 1.0 = off.
FEAR_PROPENSITY_MULTIPLIER_2012 = 1.0
FEAR_THRESHOLD_SD = 1.0

#: Share of a county's completes taken from the landline frame: 250 of 501 (section 7.1).
LANDLINE_SHARE_2012 = 0.5

#: Break-offs per complete, by frame ([E]: 10 per 250 landline and 15 per 251 cell completes, so
#: about 100 partials in all, "more on the cell frame", section 7.7).
PARTIAL_RATE_BY_FRAME_2012: tuple[float, ...] = (0.04, 0.06)
#: Break-off selection multiplier for Spanish speakers ("more in Spanish", section 7.7) [E].
PARTIAL_SPANISH_MULTIPLIER_2012 = 1.6

#: Wave 2014 [E]: 2,000 completes allocated 400 / 500 / 700 / 400 to Cook / Harris / Los Angeles /
#: Maricopa (closer to proportional than 2012's equal allocation: LA holds 55% of the adults), and
#: 40% landline / 60% cell, as dual-frame designs moved towards cell phones by 2014.
COUNTY_SHARES_2014: tuple[float, ...] = (0.20, 0.25, 0.35, 0.20)
LANDLINE_SHARE_2014 = 0.4
#: [E] slightly fewer break-offs than 2012 (a shorter screener): about 90 at 2,000 completes.
PARTIAL_RATE_BY_FRAME_2014: tuple[float, ...] = (0.035, 0.05)


@dataclass(frozen=True)
class SampleSpec:
    """The parameters of the sample design and nonresponse of one wave (sections 7.1, 7.3)."""

    propensity_sex_age: tuple[tuple[float, ...], ...]
    propensity_education: tuple[float, ...]
    propensity_status: tuple[float, ...]
    propensity_phone: tuple[float, ...]
    fear_propensity_multiplier: float
    landline_share: float
    partial_rate_by_frame: tuple[float, ...]
    partial_spanish_multiplier: float
    county_shares: tuple[float, ...] | None = None
    """Shares of the completes by county; None: equal allocation (wave 2012)."""


SAMPLE_2012 = SampleSpec(
    propensity_sex_age=PROPENSITY_SEX_AGE_2012,
    propensity_education=PROPENSITY_EDUCATION_2012,
    propensity_status=PROPENSITY_STATUS_2012,
    propensity_phone=PROPENSITY_PHONE_2012,
    fear_propensity_multiplier=FEAR_PROPENSITY_MULTIPLIER_2012,
    landline_share=LANDLINE_SHARE_2012,
    partial_rate_by_frame=PARTIAL_RATE_BY_FRAME_2012,
    partial_spanish_multiplier=PARTIAL_SPANISH_MULTIPLIER_2012,
)

SAMPLE_2014 = replace(
    SAMPLE_2012,
    county_shares=COUNTY_SHARES_2014,
    landline_share=LANDLINE_SHARE_2014,
    partial_rate_by_frame=PARTIAL_RATE_BY_FRAME_2014,
)


@dataclass(frozen=True)
class Allocation:
    """Interviews per county x frame stratum.

    Attributes
    ----------
    completes : numpy.ndarray
        ``(counties, 2)`` completes, columns landline, cell.
    partials : numpy.ndarray
        ``(counties, 2)`` break-offs.
    """

    completes: np.ndarray
    partials: np.ndarray


@dataclass(frozen=True)
class Sample:
    """The people interviewed, completes first then partials, each in stratum order.

    Attributes
    ----------
    person : numpy.ndarray
        ``int64`` index into the population.
    frame : numpy.ndarray
        ``int8`` 0 landline, 1 cell.
    complete : numpy.ndarray
        ``bool``, False for a break-off.
    """

    person: np.ndarray
    frame: np.ndarray
    complete: np.ndarray


def allocate(spec: SampleSpec, n: int, counties: int) -> Allocation:
    """Split ``n`` completes over counties, then by frame (section 7.1).

    Equal allocation when ``spec.county_shares`` is None (``n = 2004`` gives 501 per county:
    250 landline and 251 cell), else the shares, rounded by largest remainder (ties to the
    first county), so the counts always add up to ``n``.
    """
    if spec.county_shares is None:
        per_county = np.full(counties, n // counties, dtype=np.int64)
        per_county[: n % counties] += 1
    else:
        shares = np.asarray(spec.county_shares, dtype=np.float64)
        if shares.shape[0] != counties:
            raise ValueError(f"county_shares has {shares.shape[0]} entries for {counties} counties")
        exact = n * shares / shares.sum()
        per_county = np.floor(exact + 1e-9).astype(np.int64)
        remainder = exact - per_county
        for c in np.argsort(-remainder, kind="stable")[: n - int(per_county.sum())]:
            per_county[c] += 1
    landline = np.floor(per_county * spec.landline_share).astype(np.int64)
    completes = np.column_stack([landline, per_county - landline])
    rates = np.asarray(spec.partial_rate_by_frame)
    partials = np.floor(completes * rates[None, :] + 0.5).astype(np.int64)
    return Allocation(completes=completes, partials=partials)


def response_propensity(pop: Population, spec: SampleSpec) -> np.ndarray:
    """The section 7.3 response propensity of every adult (product of the multipliers)."""
    propensity = np.asarray(spec.propensity_sex_age)[1 - pop.male, pop.age_group]
    propensity = propensity * np.asarray(spec.propensity_education)[pop.education]
    propensity *= np.asarray(spec.propensity_status)[pop.status]
    propensity *= np.asarray(spec.propensity_phone)[pop.phone]
    if spec.fear_propensity_multiplier != 1.0:
        propensity[pop.fear > FEAR_THRESHOLD_SD] *= spec.fear_propensity_multiplier
    return propensity


def draw_sample(pop: Population, spec: SampleSpec, allocation: Allocation, rng: np.random.Generator) -> Sample:
    """Draw the completes and break-offs of every county x frame stratum.

    Parameters
    ----------
    pop : Population
        The synthetic population.
    spec : SampleSpec
        The wave's sample design.
    allocation : Allocation
        Interviews per stratum (see :func:`allocate`).
    rng : numpy.random.Generator
        The ``"sample"`` stream.

    Returns
    -------
    Sample
        Completes (county by county, landline then cell) followed by the partials.
    """
    propensity = response_propensity(pop, spec)
    reached = (
        np.isin(pop.phone, (LANDLINE_ONLY, DUAL)),  # landline frame
        np.isin(pop.phone, (CELL_ONLY, DUAL)),  # cell frame
    )
    # Frame selection: one adult per landline household, so 1 / HH_ADULTS; a cell phone is personal.
    selection = (1.0 / pop.hh_adults.astype(np.float64), np.ones(pop.size))
    taken = np.zeros(pop.size, dtype=bool)
    counties = allocation.completes.shape[0]

    parts: list[tuple[np.ndarray, int, bool]] = []
    for kind, counts in (("complete", allocation.completes), ("partial", allocation.partials)):
        for c in range(counties):
            in_county = np.flatnonzero(pop.county == c)
            for frame in (LANDLINE, CELL):
                m = int(counts[c, frame])
                eligible = in_county[reached[frame][in_county] & ~taken[in_county]]
                weight = propensity[eligible] * selection[frame][eligible]
                if kind == "partial":
                    spanish = pop.language[eligible] == SPANISH
                    weight = np.where(spanish, weight * spec.partial_spanish_multiplier, weight)
                # Efraimidis-Spirakis: keys -log(u)/w, the m smallest are a PPS-without-replacement draw.
                keys = -np.log(rng.random(eligible.shape[0])) / weight
                chosen = eligible[np.sort(np.argpartition(keys, m)[:m])] if m > 0 else eligible[:0]
                taken[chosen] = True
                parts.append((chosen, frame, kind == "complete"))

    person = np.concatenate([p for p, _, _ in parts])
    frame = np.concatenate([np.full(p.shape[0], f, dtype=np.int8) for p, f, _ in parts])
    complete = np.concatenate([np.full(p.shape[0], c, dtype=bool) for p, _, c in parts])
    return Sample(person=person, frame=frame, complete=complete)

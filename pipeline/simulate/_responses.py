"""The response model: what each interviewed person answers, and the population truth it implies.

This module owns section 7.6 of ``studies/insecure_communities.md`` (the attitude items Q10A-F,
Q11, Q12: logistic probabilities calibrated on the population, a Gaussian copula on the latent
fear ``z``, item nonresponse drawn first and agreement then drawn with probability p / (1 - r),
strongly/somewhat splits), the other items it lists (Q13, Q14, Q14A, Q15; in 2014 Q16 instead of
Q15), household income with about 14% item nonresponse, and how the demographics of section 7.2
are reported in the interview (EDUC in six categories, seven from 2014; BORN / CITIZEN / LEGAL
with their skip pattern, small DK and refusal rates on the demographics).

Each wave is one :class:`ResponseSpec` (``RESPONSES_2012``, ``RESPONSES_2014``); the 2014 one
differs only where the wave changed: the planted fall of Q10A and Q10D, Q16 for Q15, the EDUC
split. Answers come in 8/9 don't-know/refused codes; the wave's own codes apply later
(:func:`pipeline.simulate._codebook.to_wave_codes`).

``attitude_probability`` and ``nonresponse_rates`` are shared by the interview draw and the
population truth, so the truth is exactly the marginal probability of the response model.
Answers are ``int32`` arrays with :data:`~pipeline.simulate._codebook.SYSMIS` (-1) for a
legitimate skip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ._codebook import DK, DK2, REF, REF2, SYSMIS
from ._population import BORN_ABROAD, NATURALIZED, UNDOCUMENTED, US_BORN, Population


@dataclass(frozen=True)
class AttitudeItem:
    """One item of the section 7.6 intercept table.

    Attributes
    ----------
    name : str
        Variable name.
    intercept_by_status : tuple of float
        a_j[status]: U.S.-born, naturalized, legal non-citizen, undocumented.
    county_effect : tuple of float
        b_j[county]: Cook, Harris, Los Angeles, Maricopa.
    agree_codes : tuple of int
        The codes that make up "agree" (the published share).
    """

    name: str
    intercept_by_status: tuple[float, ...]
    county_effect: tuple[float, ...]
    agree_codes: tuple[int, ...] = (1, 2)


#: Section 7.6 intercepts, calibrated by bisection on the synthetic population (used as printed).
ATTITUDE_ITEMS_2012: tuple[AttitudeItem, ...] = (
    AttitudeItem("Q10A", (-0.926, -0.038, 0.072, 0.775), (-0.25, 0.05, 0.0, 0.18)),
    AttitudeItem("Q10B", (-0.836, -0.007, 0.099, 0.622), (-0.15, 0.05, 0.0, 0.15)),
    AttitudeItem("Q10C", (-0.899, -0.099, -0.035, 0.477), (-0.10, 0.05, 0.0, 0.20)),
    AttitudeItem("Q10D", (-1.143, -0.376, -0.265, 0.489), (-0.15, 0.05, 0.0, 0.15)),
    AttitudeItem("Q10E", (-0.998, -0.384, -0.274, 0.107), (-0.10, 0.0, 0.0, 0.25)),
    AttitudeItem("Q10F", (-1.263, -0.554, -0.438, 0.353), (-0.10, 0.05, 0.0, 0.15)),
    AttitudeItem("Q11", (0.363, 0.103, 0.209, 1.232), (-0.20, 0.05, 0.0, 0.35)),
    AttitudeItem("Q12", (-0.472, 0.029, 0.135, 0.532), (0.0, 0.0, 0.0, 0.05), agree_codes=(2,)),
)

#: Wave 2014's planted attitude change [E]: after the announced end of Secure Communities
#: (20 November 2014) and state and local limits on detainers (California's TRUST Act, 2014), the
#: fear of contacting the police falls. Every status intercept a_j[status] of Q10A and Q10D moves
#: by these logits; all other items keep their 2012 parameters. The shifts were calibrated by
#: bisection on the 2014 population (default seed) so that the population truth falls by
#: PLANTED_CHANGE_2014 (2014 minus 2012, as fractions); they are used as printed. The other items'
#: truths move only with the population's composition (older, better educated): 0.1-0.2 points.
PLANTED_CHANGE_2014: dict[str, float] = {"Q10A": -0.08, "Q10D": -0.07}
INTERCEPT_SHIFT_2014: dict[str, float] = {"Q10A": -0.374, "Q10D": -0.340}


def shift_intercepts(items: tuple[AttitudeItem, ...], shifts: dict[str, float]) -> tuple[AttitudeItem, ...]:
    """The items with ``shifts[name]`` added to every status intercept of the named items."""
    return tuple(
        replace(item, intercept_by_status=tuple(round(a + shifts[item.name], 6) for a in item.intercept_by_status))
        if item.name in shifts
        else item
        for item in items
    )


ATTITUDE_ITEMS_2014 = shift_intercepts(ATTITUDE_ITEMS_2012, INTERCEPT_SHIFT_2014)

#: Shared effects of section 7.6.
EDUCATION_EFFECT_2012: tuple[float, ...] = (0.15, 0.05, -0.05, -0.30)  # <HS / HS / SC / BA+
AGE_EFFECT_2012: tuple[float, ...] = (0.05, 0.05, -0.05, -0.15)  # 18-29 / 30-44 / 45-64 / 65+
MALE_EFFECT_2012 = -0.05
#: Gaussian copula y* = sqrt(0.5) z + sqrt(0.5) e (section 7.6).
COPULA_LOADING_2012 = math.sqrt(0.5)


@dataclass(frozen=True)
class ItemNonresponse:
    """Item nonresponse of the substantive items (section 7.6, step 1).

    DK: ``dk_base`` x ``dk_less_than_hs`` for <HS x ``dk_65_plus`` for 65+; Refused:
    ``ref_base`` x ``ref_undocumented`` for the undocumented on ``ref_undocumented_items``.
    """

    dk_base: float
    dk_less_than_hs: float
    dk_65_plus: float
    ref_base: float
    ref_undocumented: float
    ref_undocumented_items: tuple[str, ...]


ITEM_NONRESPONSE_2012 = ItemNonresponse(
    dk_base=0.03,
    dk_less_than_hs=1.8,
    dk_65_plus=1.5,
    ref_base=0.01,
    ref_undocumented=2.0,
    ref_undocumented_items=("Q10A", "Q10B", "Q10C", "Q10D", "Q10E", "Q10F", "Q11", "Q12", "Q13"),
)

#: Share "strongly" among agree, by status (section 7.6 step 3: .45 U.S.-born, .50 FB legal,
#: .55 undocumented; naturalized and legal non-citizens are both "FB legal").
STRONG_AGREE_BY_STATUS_2012: tuple[float, ...] = (0.45, 0.50, 0.50, 0.55)
#: Share "strongly" among disagree, by status (section 7.6 step 4: .60 / .55 / .50).
STRONG_DISAGREE_BY_STATUS_2012: tuple[float, ...] = (0.60, 0.55, 0.55, 0.50)
#: Q11 [E]: "very often" among very/somewhat uses the strongly-agree shares; "never" among
#: not too often/never is 0.30.
Q11_NEVER_SHARE_2012 = 0.30
#: Q12 [E]: the non-church answers split police / both equally (vol.) / neither (vol.).
Q12_OTHER_ANSWERS_2012: tuple[tuple[int, float], ...] = ((1, 0.80), (3, 0.12), (4, 0.08))


@dataclass(frozen=True)
class OtherItems:
    """The other substantive items of section 7.6 ("Other items [E]") and income."""

    q13_yes_by_status: tuple[float, ...]
    q13_county_multiplier: tuple[float, ...]
    q14_yes: float
    q14a_yes_by_status: tuple[float, ...]
    q15_yes_by_education: tuple[float, ...] | None
    income_by_education: tuple[tuple[float, ...], ...]
    income_dk: float
    income_ref: float
    q16_yes_by_status: tuple[float, ...] | None = None
    q16_county_multiplier: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    """None: the item is not asked (Q15 from 2014 on, Q16 before 2014)."""


OTHER_ITEMS_2012 = OtherItems(
    q13_yes_by_status=(0.08, 0.12, 0.15, 0.22),  # section 7.6
    q13_county_multiplier=(1.0, 1.0, 1.0, 1.5),  # "Maricopa x1.5"
    q14_yes=0.13,  # section 7.6
    q14a_yes_by_status=(0.55, 0.48, 0.40, 0.30),  # ".55 U.S.-born -> .30 undocumented"; [E] between
    q15_yes_by_education=(0.25, 0.28, 0.33, 0.45),  # ".30 overall; higher for BA+" (population mean .30)
    # [E] household income (<20k, 20-40k, 40-60k, 60-100k, 100k+) by education group.
    income_by_education=(
        (0.48, 0.34, 0.11, 0.05, 0.02),
        (0.32, 0.37, 0.18, 0.10, 0.03),
        (0.20, 0.32, 0.23, 0.18, 0.07),
        (0.08, 0.18, 0.22, 0.30, 0.22),
    ),
    income_dk=0.05,  # together ~14% item nonresponse (section 7.5)
    income_ref=0.09,
)

#: Wave 2014 [E]: Q15 is no longer asked; Q16 "In the past 12 months, have you or someone you know
#: been asked about immigration status by local police?" is, with rates below Q13's "ever" (a
#: 12-month window) and the same ordering by status and Maricopa excess.
OTHER_ITEMS_2014 = replace(
    OTHER_ITEMS_2012,
    q15_yes_by_education=None,
    q16_yes_by_status=(0.06, 0.09, 0.11, 0.17),
    q16_county_multiplier=(1.0, 1.0, 1.0, 1.4),
)


@dataclass(frozen=True)
class DemographicReporting:
    """How the section 7.2 attributes are reported in the interview ([E] throughout).

    ``nonresponse`` maps an item to its (DK, Refused) probabilities; LEGAL refusals depend on
    status; CITIZEN refusals are doubled for the undocumented.
    """

    nonresponse: tuple[tuple[str, float, float], ...]
    citizen_ref_undocumented: float
    legal_dk: float
    legal_ref_by_status: tuple[float, ...]
    eighth_grade_share_by_nativity: tuple[float, float]
    postgraduate_share: float
    green_card_share: float
    some_college_codes: tuple[tuple[int, float], ...] = ((4, 1.0),)
    """EDUC codes of the "some college" group with their shares (2012: all code 4)."""


DEMOGRAPHICS_2012 = DemographicReporting(
    nonresponse=(
        ("AGE", 0.0, 0.004),
        ("EDUC", 0.002, 0.004),
        ("BORN", 0.001, 0.003),
        ("YRS_US", 0.015, 0.005),
        ("CITIZEN", 0.003, 0.007),
        ("ORIGIN", 0.003, 0.003),
        ("PHONESTAT", 0.0, 0.003),
        ("HH_ADULTS", 0.0, 0.005),
    ),
    citizen_ref_undocumented=2.0,
    legal_dk=0.01,
    legal_ref_by_status=(0.0, 0.0, 0.02, 0.06),
    eighth_grade_share_by_nativity=(0.20, 0.55),  # among <HS: U.S.-born, foreign-born
    postgraduate_share=0.28,  # among BA+
    green_card_share=0.75,  # among legal non-citizens
)

#: Wave 2014 [E]: the questionnaire splits "some college" into code 4 Associate's degree (about a
#: third, as in the ACS) and the new code 7 Some college/technical, no degree.
DEMOGRAPHICS_2014 = replace(DEMOGRAPHICS_2012, some_college_codes=((4, 0.33), (7, 0.67)))


@dataclass(frozen=True)
class ResponseSpec:
    """The response model of one wave (section 7.6 and the reporting of 7.2)."""

    attitude_items: tuple[AttitudeItem, ...]
    education_effect: tuple[float, ...]
    age_effect: tuple[float, ...]
    male_effect: float
    copula_loading: float
    item_nonresponse: ItemNonresponse
    strong_agree_by_status: tuple[float, ...]
    strong_disagree_by_status: tuple[float, ...]
    q11_never_share: float
    q12_other_answers: tuple[tuple[int, float], ...]
    other_items: OtherItems
    demographics: DemographicReporting

    def item(self, name: str) -> AttitudeItem:
        """The attitude item called ``name``."""
        return next(item for item in self.attitude_items if item.name == name)


RESPONSES_2012 = ResponseSpec(
    attitude_items=ATTITUDE_ITEMS_2012,
    education_effect=EDUCATION_EFFECT_2012,
    age_effect=AGE_EFFECT_2012,
    male_effect=MALE_EFFECT_2012,
    copula_loading=COPULA_LOADING_2012,
    item_nonresponse=ITEM_NONRESPONSE_2012,
    strong_agree_by_status=STRONG_AGREE_BY_STATUS_2012,
    strong_disagree_by_status=STRONG_DISAGREE_BY_STATUS_2012,
    q11_never_share=Q11_NEVER_SHARE_2012,
    q12_other_answers=Q12_OTHER_ANSWERS_2012,
    other_items=OTHER_ITEMS_2012,
    demographics=DEMOGRAPHICS_2012,
)

RESPONSES_2014 = replace(
    RESPONSES_2012,
    attitude_items=ATTITUDE_ITEMS_2014,
    other_items=OTHER_ITEMS_2014,
    demographics=DEMOGRAPHICS_2014,
)


def attitude_probability(
    spec: ResponseSpec,
    item: AttitudeItem,
    *,
    status: np.ndarray,
    county: np.ndarray,
    education: np.ndarray,
    age_group: np.ndarray,
    male: np.ndarray,
) -> np.ndarray:
    """p_ij = logistic(a_j[status] + b_j[county] + edu_eff + age_eff - 0.05 male), section 7.6."""
    from scipy.special import expit

    eta = np.asarray(item.intercept_by_status)[status] + np.asarray(item.county_effect)[county]
    eta += np.asarray(spec.education_effect)[education]
    eta += np.asarray(spec.age_effect)[age_group]
    eta += spec.male_effect * male
    return expit(eta)


def nonresponse_rates(
    spec: ResponseSpec,
    item_name: str,
    *,
    status: np.ndarray,
    education: np.ndarray,
    age_group: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """DK and Refused probabilities of a substantive item (section 7.6, step 1)."""
    nr = spec.item_nonresponse
    dk = np.full(status.shape, nr.dk_base)
    dk = np.where(education == 0, dk * nr.dk_less_than_hs, dk)
    dk = np.where(age_group == 3, dk * nr.dk_65_plus, dk)
    ref = np.full(status.shape, nr.ref_base)
    if item_name in nr.ref_undocumented_items:
        ref = np.where(status == UNDOCUMENTED, ref * nr.ref_undocumented, ref)
    return dk, ref


def agree_probability(spec: ResponseSpec, item: AttitudeItem, **attributes: np.ndarray) -> np.ndarray:
    """The exact marginal probability of an agree code: min(p, 1 - r).

    Agreement is drawn with probability p / (1 - r) among the substantive answers, so its
    marginal is p whenever p <= 1 - r (always, with the section 7.6 parameters); the minimum keeps
    the truth exact if a parameter change ever made p / (1 - r) exceed 1.
    """
    p = attitude_probability(spec, item, **attributes)
    dk, ref = nonresponse_rates(
        spec,
        item.name,
        status=attributes["status"],
        education=attributes["education"],
        age_group=attributes["age_group"],
    )
    return np.minimum(p, 1.0 - dk - ref)


def _nonresponse_codes(
    u: np.ndarray, dk: np.ndarray | float, ref: np.ndarray | float, codes: tuple[int, int]
) -> np.ndarray:
    """SYSMIS where the item is answered, else the DK or Refused code."""
    out = np.full(u.shape, SYSMIS, dtype=np.int32)
    out[u < dk] = codes[0]
    out[(u >= dk) & (u < np.asarray(dk) + np.asarray(ref))] = codes[1]
    return out


def answer_interviews(
    pop: Population, person: np.ndarray, frame: np.ndarray, spec: ResponseSpec, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Draw every answer of a full interview for each interviewed person.

    Parameters
    ----------
    pop : Population
        The synthetic population.
    person : numpy.ndarray
        Population index of each interview.
    frame : numpy.ndarray
        0 landline, 1 cell, for each interview (HH_ADULTS is asked on landlines only).
    spec : ResponseSpec
        The wave's response model.
    rng : numpy.random.Generator
        The ``"responses"`` stream.

    Returns
    -------
    dict of str to numpy.ndarray
        ``int32`` codes per variable (SYSMIS where legitimately skipped): SEX, AGE, EDUC, BORN,
        YRS_US, CITIZEN, LEGAL, ORIGIN, PHONESTAT, HH_ADULTS, INCOME, LANG, Q10A-F, Q11-Q14, Q14A and
        Q15 or Q16 (whichever the wave asks), all in 8/9 don't-know/refused codes and 2012 names.
    """
    from scipy.special import ndtr

    m = person.shape[0]
    status = pop.status[person].astype(np.int64)
    county = pop.county[person].astype(np.int64)
    education = pop.education[person].astype(np.int64)
    age_group = pop.age_group[person].astype(np.int64)
    male = pop.male[person].astype(np.int64)
    fear = pop.fear[person].astype(np.float64)
    attributes = dict(status=status, county=county, education=education, age_group=age_group, male=male)
    out: dict[str, np.ndarray] = {}

    # --- attitude items, section 7.6 (draw order fixed: nonresponse, copula noise, split) ---
    strong_agree = np.asarray(spec.strong_agree_by_status)[status]
    strong_disagree = np.asarray(spec.strong_disagree_by_status)[status]
    for item in spec.attitude_items:
        p = attitude_probability(spec, item, **attributes)
        dk, ref = nonresponse_rates(spec, item.name, status=status, education=education, age_group=age_group)
        u_nr, e, u_split = rng.random(m), rng.standard_normal(m), rng.random(m)
        answer = _nonresponse_codes(u_nr, dk, ref, (DK, REF))
        y_star = spec.copula_loading * fear + math.sqrt(1.0 - spec.copula_loading**2) * e
        agree = ndtr(y_star) < p / (1.0 - dk - ref)
        answered = answer == SYSMIS
        if item.name == "Q12":
            codes, shares = zip(*spec.q12_other_answers)
            cdf = np.cumsum(shares) / np.sum(shares)
            other = np.asarray(codes)[np.minimum(np.searchsorted(cdf, u_split, side="right"), len(codes) - 1)]
            value = np.where(agree, 2, other)
        else:
            never = spec.q11_never_share if item.name == "Q11" else None
            agree_value = np.where(u_split < strong_agree, 1, 2)
            if never is None:
                disagree_value = np.where(u_split < strong_disagree, 4, 3)
            else:
                disagree_value = np.where(u_split < never, 4, 3)
            value = np.where(agree, agree_value, disagree_value)
        answer[answered] = value[answered]
        out[item.name] = answer

    # --- other items, section 7.6 "Other items [E]" ---
    other = spec.other_items
    def yes_no(name: str, p_yes: np.ndarray) -> np.ndarray:
        dk, ref = nonresponse_rates(spec, name, status=status, education=education, age_group=age_group)
        u_nr, u = rng.random(m), rng.random(m)
        answer = _nonresponse_codes(u_nr, dk, ref, (DK, REF))
        answered = answer == SYSMIS
        answer[answered] = np.where(u < p_yes, 1, 2)[answered]
        return answer

    q13_yes = np.asarray(other.q13_yes_by_status)[status] * np.asarray(other.q13_county_multiplier)[county]
    out["Q13"] = yes_no("Q13", q13_yes)
    out["Q14"] = yes_no("Q14", np.full(m, other.q14_yes))
    q14a = yes_no("Q14A", np.asarray(other.q14a_yes_by_status)[status])
    out["Q14A"] = np.where(out["Q14"] == 1, q14a, SYSMIS).astype(np.int32)
    if other.q15_yes_by_education is not None:
        out["Q15"] = yes_no("Q15", np.asarray(other.q15_yes_by_education)[education])
    if other.q16_yes_by_status is not None:
        q16_yes = np.asarray(other.q16_yes_by_status)[status] * np.asarray(other.q16_county_multiplier)[county]
        out["Q16"] = yes_no("Q16", q16_yes)

    u_nr, u = rng.random(m), rng.random(m)
    income = _nonresponse_codes(u_nr, other.income_dk, other.income_ref, (DK, REF))
    table = np.cumsum(np.asarray(other.income_by_education), axis=1)
    table = table / table[:, -1:]
    drawn = np.empty(m, dtype=np.int32)
    for g in range(table.shape[0]):
        mask = education == g
        drawn[mask] = np.minimum(np.searchsorted(table[g], u[mask], side="right"), table.shape[1] - 1) + 1
    income[income == SYSMIS] = drawn[income == SYSMIS]
    out["INCOME"] = income

    out.update(_report_demographics(pop, person, frame, status, education, spec.demographics, rng))
    return out


def _report_demographics(
    pop: Population,
    person: np.ndarray,
    frame: np.ndarray,
    status: np.ndarray,
    education: np.ndarray,
    spec: DemographicReporting,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The demographic answers, with their DK/Refused codes and skip pattern (section 7.5)."""
    m = person.shape[0]
    nonresponse = {name: (dk, ref) for name, dk, ref in spec.nonresponse}
    out: dict[str, np.ndarray] = {}

    def with_nonresponse(
        name: str, value: np.ndarray, codes: tuple[int, int], ref_scale: np.ndarray | float = 1.0
    ) -> np.ndarray:
        dk, ref = nonresponse[name]
        answer = _nonresponse_codes(rng.random(m), dk, ref * np.asarray(ref_scale), codes)
        return np.where(answer == SYSMIS, value, answer).astype(np.int32)

    out["SEX"] = np.where(pop.male[person] == 1, 1, 2).astype(np.int32)
    out["AGE"] = with_nonresponse("AGE", pop.age[person].astype(np.int32), (DK2, REF2))

    # EDUC, six categories from the four groups (codebook 7.5): <HS splits into 8th grade or less /
    # some high school (more 8th grade among the foreign-born), BA+ into bachelor's / postgraduate,
    # and (from 2014) some college into associate's / no degree. One uniform serves all splits.
    u = rng.random(m)
    foreign = (status != US_BORN).astype(np.int64)
    eighth = u < np.asarray(spec.eighth_grade_share_by_nativity)[foreign]
    college_codes, college_shares = zip(*spec.some_college_codes)
    college_cdf = np.cumsum(college_shares) / np.sum(college_shares)
    college = np.asarray(college_codes)[
        np.minimum(np.searchsorted(college_cdf, u, side="right"), len(college_codes) - 1)
    ]
    detail = np.select(
        [education == 0, education == 1, education == 2],
        [np.where(eighth, 1, 2), 3, college],
        default=np.where(u < spec.postgraduate_share, 6, 5),
    )
    out["EDUC"] = with_nonresponse("EDUC", detail.astype(np.int32), (DK, REF))

    born = with_nonresponse("BORN", pop.born[person].astype(np.int32), (DK, REF))
    out["BORN"] = born
    abroad = born == BORN_ABROAD
    years = with_nonresponse("YRS_US", pop.years_in_us[person].astype(np.int32), (DK2, REF2))
    out["YRS_US"] = np.where(abroad, years, SYSMIS).astype(np.int32)

    citizen_true = np.where(status == NATURALIZED, 1, 2)
    ref_scale = np.where(status == UNDOCUMENTED, spec.citizen_ref_undocumented, 1.0)
    citizen = with_nonresponse("CITIZEN", citizen_true.astype(np.int32), (DK, REF), ref_scale)
    out["CITIZEN"] = np.where(abroad, citizen, SYSMIS).astype(np.int32)

    u_card, u_nr = rng.random(m), rng.random(m)
    legal_true = np.where(status == UNDOCUMENTED, 3, np.where(u_card < spec.green_card_share, 1, 2))
    legal = _nonresponse_codes(u_nr, spec.legal_dk, np.asarray(spec.legal_ref_by_status)[status], (DK, REF))
    legal = np.where(legal == SYSMIS, legal_true, legal)
    asked_legal = out["CITIZEN"] == 2
    out["LEGAL"] = np.where(asked_legal, legal, SYSMIS).astype(np.int32)

    out["ORIGIN"] = with_nonresponse("ORIGIN", pop.origin[person].astype(np.int32), (DK2, REF2))
    out["PHONESTAT"] = with_nonresponse("PHONESTAT", (pop.phone[person] + 1).astype(np.int32), (REF, REF))
    hh = with_nonresponse("HH_ADULTS", pop.hh_adults[person].astype(np.int32), (REF, REF))
    out["HH_ADULTS"] = np.where(frame == 0, hh, SYSMIS).astype(np.int32)
    out["LANG"] = (pop.language[person] + 1).astype(np.int32)
    return out

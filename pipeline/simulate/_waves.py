"""The registry of waves: each wave is one parameter set, never a fork of the code.

This module owns the mapping from a wave id (the ``--wave`` value and the config's ``waves[].id``)
to the full parameter set of that wave: population, sample design, response model, fieldwork,
questionnaire (names, codes and labels of the delivery) and injected problems. A new wave is one
more :class:`WaveSpec` entry, built from the 2012 parts with :func:`dataclasses.replace` on what
changed (see the ``*_2014`` values of each module).

Wave 2014 [E], two years after the study: the same four counties' population, grown, a little
older and better educated and more often cell-only; the fear items Q10A and Q10D fall by 8 and 7
points after the announced end of Secure Communities, the other attitudes keep their 2012 model;
2,000 completes allocated 400 / 500 / 700 / 400, 40% landline; field dates 2014-11-22 to
2014-12-15; and a questionnaire that drifted (two renamed variables, the Q10 battery's
don't know / refused as 98 / 99, Q15 dropped, Q16 added, EDUC code 4 relabelled).

The 2014 demo seed was chosen as 2012's was (README "The demo seed"): over seeds
20141122-20141137 the pipeline's weighted 2014 estimates scattered around the truth (Q10A 33.8% to
38.4%, mean 35.9%, truth 36.2%; Q10D 29.0% to 33.3%, mean 31.5%, truth 31.6%), and seed 20141133
gives the realized sample nearest the truth on both (36.0% and 31.3%). In all sixteen the change
from the committed 2012 wave was significant at 5% on Q10A and Q10D (|z| 2.0 to 4.7, the two
waves' standard errors combined); on the unchanged Q10B, Q10C and Q11 it was significant in 0, 2
and 4 of the sixteen (2012's realized Q11 lies 2.2 points above its truth). The data are
otherwise untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ._codebook import QUESTIONNAIRE_2012, QUESTIONNAIRE_2014, QuestionnaireSpec
from ._fieldwork import FIELDWORK_2012, FIELDWORK_2014, FieldworkSpec
from ._population import POPULATION_2012, POPULATION_2014, PopulationSpec
from ._problems import PROBLEMS_2012, PROBLEMS_2014, ProblemSpec
from ._responses import RESPONSES_2012, RESPONSES_2014, ResponseSpec
from ._sample import SAMPLE_2012, SAMPLE_2014, SampleSpec

STUDY_TITLE = "Insecure Communities: Latino Perceptions of Police Involvement in Immigration Enforcement"


@dataclass(frozen=True)
class WaveSpec:
    """Everything that defines one wave of the synthetic study.

    Attributes
    ----------
    wave : str
        Wave id, e.g. ``"2012"``.
    year : int
        Reference year of the population targets.
    reference_n : int
        Completes of the wave's design (2,004 in 2012, as the real study; 2,000 in 2014), the
        default ``n``; ``--n`` scales the design and the problem counts.
    default_seed : int
        The seed of the committed demo files (``simulate --wave ID`` without ``--seed``).
    stream_key : int or None
        Appended to every random stream's entropy (see :func:`pipeline.simulate._random.stream`),
        so that two waves given the same seed still draw independent samples. None for 2012,
        whose committed files were drawn before wave keys existed.
    targets_basis : str
        What the population margins are modeled on (goes into the targets' ``source`` column).
    population, sample, responses, fieldwork, questionnaire, problems
        The per-concern parameter sets.
    """

    wave: str
    year: int
    reference_n: int
    default_seed: int
    stream_key: int | None
    targets_basis: str
    population: PopulationSpec
    sample: SampleSpec
    responses: ResponseSpec
    fieldwork: FieldworkSpec
    questionnaire: QuestionnaireSpec
    problems: ProblemSpec


WAVES: dict[str, WaveSpec] = {
    "2012": WaveSpec(
        wave="2012",
        year=2012,
        reference_n=2004,  # section 2: 2,004 Latinos
        default_seed=20121120,  # README "The demo seed": the realized sample nearest the published figures
        stream_key=None,
        targets_basis="modeled on ACS 2011 / NHIS 2012 margins, see studies/insecure_communities.md section 5b",
        population=POPULATION_2012,
        sample=SAMPLE_2012,
        responses=RESPONSES_2012,
        fieldwork=FIELDWORK_2012,
        questionnaire=QUESTIONNAIRE_2012,
        problems=PROBLEMS_2012,
    ),
    "2014": WaveSpec(
        wave="2014",
        year=2014,
        reference_n=2000,  # [E] 400 / 500 / 700 / 400
        default_seed=20141133,  # the realized sample nearest the 2014 truth (module docstring)
        stream_key=2014,
        targets_basis=(
            "the 2012 margins (studies/insecure_communities.md section 5b) with the [E] 2014 shifts of "
            "pipeline/simulate/_population.py: grown, older, better educated, more cell-only"
        ),
        population=POPULATION_2014,
        sample=SAMPLE_2014,
        responses=RESPONSES_2014,
        fieldwork=FIELDWORK_2014,
        questionnaire=QUESTIONNAIRE_2014,
        problems=PROBLEMS_2014,
    ),
}


def wave_spec(wave: str) -> WaveSpec:
    """The parameter set of ``wave``.

    Raises
    ------
    ConfigError
        If the wave is not defined.
    """
    try:
        return WAVES[str(wave)]
    except KeyError:
        known = ", ".join(sorted(WAVES))
        raise ConfigError(
            f"simulate: unknown wave {wave!r}; the synthetic study defines wave(s) {known}",
            hint=f"use one of: {known}",
        ) from None

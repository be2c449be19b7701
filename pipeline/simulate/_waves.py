"""The registry of waves: each wave is one parameter set, never a fork of the code.

This module owns the mapping from a wave id (the ``--wave`` value and the config's ``waves[].id``)
to the full parameter set of that wave: population, sample design, response model, fieldwork and
injected problems. A new wave (2014 is planned) is one more :class:`WaveSpec` entry, typically
built from the 2012 one with :func:`dataclasses.replace` on the parts that changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ._fieldwork import FIELDWORK_2012, FieldworkSpec
from ._population import POPULATION_2012, PopulationSpec
from ._problems import PROBLEMS_2012, ProblemSpec
from ._responses import RESPONSES_2012, ResponseSpec
from ._sample import SAMPLE_2012, SampleSpec

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
        Completes of the real study (2,004); ``--n`` scales the design and the problem counts.
    population, sample, responses, fieldwork, problems
        The per-concern parameter sets.
    """

    wave: str
    year: int
    reference_n: int
    population: PopulationSpec
    sample: SampleSpec
    responses: ResponseSpec
    fieldwork: FieldworkSpec
    problems: ProblemSpec


WAVES: dict[str, WaveSpec] = {
    "2012": WaveSpec(
        wave="2012",
        year=2012,
        reference_n=2004,  # section 2: 2,004 Latinos
        population=POPULATION_2012,
        sample=SAMPLE_2012,
        responses=RESPONSES_2012,
        fieldwork=FIELDWORK_2012,
        problems=PROBLEMS_2012,
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

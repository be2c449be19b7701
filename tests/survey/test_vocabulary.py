"""One vocabulary (issue 11, item 4): every config word list of a statistic equals its survey/ registry.

Each list of words the config accepts for the statistics (CI methods, lonely-PSU options,
calibration methods, replicate types and builds, replicate fpc types, chi-squared statistics,
trimming centres) is defined once in ``pipeline.survey``; the config's ``Literal`` must name
exactly those words, in the same order, so that a new registry entry is one edit plus its
config word, never a silent mismatch.
"""

from __future__ import annotations

import types
import typing

import pytest

from pipeline import config
from pipeline.survey.design import LONELY_PSU_OPTIONS, REPLICATE_FPC_TYPES, REPLICATE_TYPES, LonelyPsu
from pipeline.survey.intervals import CI_METHODS
from pipeline.survey.replicates import REPLICATE_BUILDS, REPLICATE_METHODS
from pipeline.survey.tables import CHISQ_STATISTICS
from pipeline.survey.trimming import TRIM_CENTRES
from pipeline.survey.variance import LONELY_PSU
from pipeline.survey.weighting import CALIBRATION_METHODS


def literal_values(model: type, field: str) -> tuple[object, ...]:
    """The words of a pydantic field's ``Literal`` annotation (``Literal[...] | None`` too)."""
    annotation = model.model_fields[field].annotation
    literals = []
    stack = [annotation]
    while stack:
        a = stack.pop(0)
        origin = typing.get_origin(a)
        if origin is typing.Literal:
            literals.append(typing.get_args(a))
        elif origin in (typing.Union, types.UnionType):
            stack.extend(x for x in typing.get_args(a) if x is not type(None))
        elif origin is typing.Annotated:
            stack.append(typing.get_args(a)[0])
    assert len(literals) == 1, f"{model.__name__}.{field}: expected one Literal, found {annotation!r}"
    return literals[0]


CASES = {
    "design.lonely_psu": (config.DesignConfig, "lonely_psu", LONELY_PSU_OPTIONS),
    "design.ci_method": (config.DesignConfig, "ci_method", tuple(CI_METHODS)),
    "estimates[].ci_method": (config.EstimateSpec, "ci_method", tuple(CI_METHODS)),
    "estimates[].test": (config.EstimateSpec, "test", (*CHISQ_STATISTICS, "none")),
    "weight.calibrate.method": (config.CalibrateConfig, "method", tuple(CALIBRATION_METHODS)),
    "weight.trim.relative_to": (config.TrimConfig, "relative_to", TRIM_CENTRES),
    "design.replicates.type": (config.ReplicateConfig, "type", REPLICATE_TYPES),
    "design.replicates.build": (config.ReplicateConfig, "build", REPLICATE_BUILDS),
    "design.replicates.fpctype": (config.ReplicateConfig, "fpctype", REPLICATE_FPC_TYPES),
}


@pytest.mark.parametrize("key", list(CASES))
def test_config_literal_is_the_survey_registry(key):
    model, field, registry = CASES[key]
    assert literal_values(model, field) == tuple(registry), key


def test_registries_keyed_by_the_same_words_agree():
    # the lonely-PSU policies are implemented in survey/variance.py, keyed by the words of survey/design.py
    assert set(LONELY_PSU) == set(LONELY_PSU_OPTIONS)
    assert typing.get_args(LonelyPsu) == LONELY_PSU_OPTIONS
    # a replicate build is 'auto' or a builder, and every builder makes one of the given types
    assert REPLICATE_BUILDS == ("auto", *REPLICATE_METHODS)
    assert set(REPLICATE_METHODS) <= set(REPLICATE_TYPES)


def test_literal_values_sees_optional_literals():
    assert literal_values(config.ReplicateConfig, "type") == ("JK1", "JKn", "BRR", "Fay", "bootstrap", "other")
    with pytest.raises(AssertionError, match="expected one Literal"):
        literal_values(config.DesignConfig, "nest")

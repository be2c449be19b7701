"""The config section of the survey-weighted regressions: ``models``.

Owns :class:`ModelSpec` (one design-based GLM: its response, terms, family, reference levels,
subpopulation and presentation) and :data:`FAMILIES` (the config's family names and R's).
Re-exported by :mod:`pipeline.config`; fitted by the estimate stage
(:mod:`pipeline.stages._estimate_models`) with :func:`pipeline.survey.models.glm`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline._config_base import Code, _Model

#: ``models[].family`` -> the GLM family fitted (R ``svyglm``'s: quasi families, so the
#: dispersion is estimated and the binary or count response need not be exactly binomial or
#: Poisson) and the ratio its exponentiated coefficients are
FAMILIES: dict[str, tuple[str, str | None]] = {
    "linear": ("gaussian", None),
    "logistic": ("quasibinomial", "odds ratio"),
    "poisson": ("quasipoisson", "rate ratio"),
}

#: a code of a model's ``levels`` or ``reference``: a number, or a text code
ModelCode = Code | str


class ModelSpec(_Model):
    """A survey-weighted generalized linear model (R ``svyglm``).

    The response is ``response`` (with ``levels``: 1 for those codes, 0 for the other answers,
    as a proportion's indicator; the don't-know and refused codes out of the model with
    ``denominator: valid``, counted as 0 with ``all``), or the left side of ``formula``. The
    terms are ``terms`` (``A:B`` an interaction, ``A*B`` both and their interaction), or the right
    side of ``formula``. Variables whose every value is a labelled code are categorical (treatment
    contrasts against ``reference``, default the lowest code; term names carry the labels); other
    numeric variables are covariates (an age labelled only at 97 "97+" is a covariate). The missing-value codes of every variable (don't know, refused) are missing:
    rows with a missing model variable leave the model (R ``na.omit``) but not the design.
    """

    id: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    title: str | None = None
    response: str | None = None
    terms: tuple[str, ...] = ()
    formula: str | None = None
    """``Y ~ A + B + A:B`` (R's formula syntax: ``+``, ``:``, ``*``, ``- 1``, ``C(X, ref = 3)``),
    instead of ``response`` and ``terms``."""
    levels: tuple[ModelCode, ...] | None = None
    """The response's codes counted as 1 (a binary response for ``family: logistic``)."""
    denominator: Literal["all", "valid"] = "valid"
    family: Literal["linear", "logistic", "poisson"] = "linear"
    reference: Mapping[str, ModelCode] = Field(default_factory=dict)
    """The reference level of a categorical term (``{STATUS4: 1}``); default its lowest code."""
    subpopulation: str | None = None
    """SQL condition of the subpopulation modelled (``COUNTY = 1``); the other rows keep their
    place in the design with zero weight (R ``svyglm(..., subset = )``)."""
    exponentiate: bool | None = None
    """Show ``exp(coefficient)`` and its CI in tables (odds ratios, rate ratios); default: yes for
    logistic and Poisson models."""
    decimals: Annotated[int, Field(ge=0, le=4)] = 2
    """Decimals of coefficients and ratios in the model table."""
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_specification(self) -> ModelSpec:
        if (self.formula is None) == (self.response is None):
            raise ValueError(
                "a model needs either formula: \"Y ~ A + B\" or response: Y with terms: [A, B] "
                f"({'both given' if self.formula is not None else 'neither given'})"
            )
        if self.response is not None and not self.terms:
            raise ValueError(f"response: {self.response} needs terms: [...], the model's predictors (e.g. terms: [STATUS4, COUNTY, AGE])")
        if self.formula is not None and self.terms:
            raise ValueError("terms applies with response; with formula the predictors are its right side: drop terms")
        if self.exponentiate and self.family == "linear":
            raise ValueError("exponentiate applies to logistic and poisson models (odds or rate ratios); a linear model's coefficients are differences")
        if self.family == "logistic" and self.levels is None:
            raise ValueError("a logistic model needs levels: [...], the response's codes counted as 1 (e.g. levels: [1, 2] for agree)")
        return self

    @property
    def show_ratios(self) -> bool:
        """Whether tables show exponentiated coefficients (odds or rate ratios)."""
        return self.family != "linear" if self.exponentiate is None else self.exponentiate

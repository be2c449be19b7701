"""The config sections of the weights and the design: ``weight`` and ``design``.

Owns the models of the weight stage's steps (base weight and its factors, nonresponse classes,
raking, post-stratification, calibration, trimming, weight QA) and of the sampling design used
for the variance (strata, ids, fpc, lonely PSUs, replicate weights, the default CI method and
level). Re-exported by :mod:`pipeline.config`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pipeline._config_base import _Model

# -------------------------------------------------------------------------------- weighting


class WeightFactor(_Model):
    """One multiplicative base-weight factor, an SQL expression (household adults, dual frame)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    expr: str


class BaseWeightConfig(_Model):
    """Base weight = a delivered weight ``column``, or N_h / n_h within ``population_by`` groups,
    or (neither given) the design's ``fpc`` as R's ``svydesign`` derives it; times each factor.

    N_h comes from the targets file's ``population`` column; n_h counts every row of the
    cleaned data in the group, nonrespondents included.
    """

    column: str | None = None
    """A weight delivered with the data (a vendor's design or final weight): the weighting starts from it."""
    population_by: tuple[str, ...] = ()
    factors: tuple[WeightFactor, ...] = ()

    @model_validator(mode="after")
    def _one_source(self) -> BaseWeightConfig:
        if self.column is not None and self.population_by:
            raise ValueError(
                f"give either column ({self.column}) or population_by ({', '.join(self.population_by)}), not both: "
                "each is a base weight (a delivered weight already holds N_h / n_h)"
            )
        return self


class NonresponseConfig(_Model):
    """Nonresponse adjustment, before calibration: by weighting classes or a propensity model.

    The cleaned data must hold the eligible nonrespondents (for example break-offs kept by not
    setting ``clean.drop_partials``): rows where ``respondent`` is false. The nonrespondents leave
    the weighted data (they are written to ``weight/nonrespondents.parquet``).

    ``method: classes`` (the default): within each class (the cross of ``classes``) the
    respondents' weights are multiplied by ``sum(w_base, everyone) / sum(w_base, respondents)``.
    A class with fewer than ``min_respondents`` respondents, or whose factor exceeds
    ``max_factor``, is merged with its neighbour: the adjacent class in the sort order of
    ``classes`` sharing the most leading class variables (the next one on a tie), so the last
    class variable is collapsed first.

    ``method: propensity_classes`` or ``inverse_propensity``: the response propensity is the fit
    of a logistic regression of the respondent indicator on the ``model`` terms, weighted by
    ``w_base`` (R ``glm(family = quasibinomial, weights = w_base)``, the coefficients of
    ``svyglm``). ``propensity_classes`` cuts the propensity at its ``w_base``-weighted quantiles
    into ``n_classes`` classes (quintiles by default) and adjusts within each as ``classes`` does
    (the same ``min_respondents`` and ``max_factor`` merges, with the adjacent class);
    ``inverse_propensity`` multiplies each respondent's weight by ``1 / p``, capped at
    ``max_factor``, then scales the respondents to the whole sample's ``w_base`` total.
    """

    respondent: str
    """SQL expression, true for respondents (``STATUS = 1``); missing is an error."""
    method: Literal["classes", "propensity_classes", "inverse_propensity"] = "classes"
    classes: tuple[str, ...] = ()
    """The class variables of ``method: classes``."""
    model: tuple[str, ...] = ()
    """The propensity model's terms (frame variables known for nonrespondents too): a variable
    with value labels in the cleaned codebook, or a text or true/false column, enters as
    treatment-coded dummies (first category the reference, as R's factors); any other numeric
    column as a covariate."""
    n_classes: Annotated[int, Field(ge=2, le=50)] = 5
    """Propensity classes of ``method: propensity_classes`` (5: quintiles)."""
    min_respondents: Annotated[int, Field(ge=1)] = 20
    max_factor: Annotated[float, Field(gt=1)] | None = 2.0

    @model_validator(mode="after")
    def _method_keys(self) -> NonresponseConfig:
        given = self.model_fields_set
        if self.method == "classes":
            if self.model:
                raise ValueError(
                    f"model ({', '.join(self.model)}) is for method: propensity_classes or inverse_propensity, not classes; "
                    "set method: propensity_classes (or inverse_propensity), or give classes instead of model"
                )
            if not self.classes:
                raise ValueError("method: classes needs classes, e.g. classes: [COUNTY, FRAME] (or set method: propensity_classes with model: [...])")
            if "n_classes" in given:
                raise ValueError(f"n_classes ({self.n_classes}) is for method: propensity_classes; leave it out with method: classes")
            return self
        if self.classes:
            raise ValueError(
                f"classes ({', '.join(self.classes)}) is for method: classes, not {self.method}; "
                f"give the propensity model's terms as model: [{', '.join(self.classes)}]"
            )
        if not self.model:
            raise ValueError(f"method: {self.method} needs model, the propensity model's terms, e.g. model: [COUNTY, FRAME]")
        if len(set(self.model)) != len(self.model):
            raise ValueError(f"model lists a term twice: {', '.join(self.model)}")
        if self.method == "inverse_propensity":
            if "n_classes" in given:
                raise ValueError(f"n_classes ({self.n_classes}) is for method: propensity_classes; leave it out with method: inverse_propensity")
            if "min_respondents" in given:
                raise ValueError("min_respondents is for method: classes or propensity_classes; inverse_propensity has no classes (leave it out)")
        return self

    @property
    def variables(self) -> tuple[str, ...]:
        """The frame variables the adjustment reads: the classes or the model's terms."""
        return self.classes if self.method == "classes" else self.model


class RakeConfig(_Model):
    """Rake to the wave's targets file, separately within ``by`` groups."""

    variables: Annotated[tuple[str, ...], Field(min_length=1)]
    by: tuple[str, ...] = ()
    max_iter: Annotated[int, Field(ge=1)] = 50
    tolerance: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    accept_nonconvergence: bool = False
    impute: Literal["mode", "none"] = "mode"


class PoststratifyConfig(_Model):
    """Post-stratify to the targets of one (possibly pre-crossed) variable within ``by`` groups."""

    variable: str
    by: tuple[str, ...] = ()
    impute: Literal["mode", "none"] = "mode"

    @property
    def variables(self) -> tuple[str, ...]:
        return (self.variable,)


class CalibrateConfig(_Model):
    """General calibration (R survey ``calibrate``) to the targets, within ``by`` groups.

    ``method`` is the distance: ``linear`` (GREG), ``raking`` or ``logit``; ``bounds`` limit the
    g-weights (calibrated / input weight), and ``logit`` needs them.
    """

    variables: Annotated[tuple[str, ...], Field(min_length=1)]
    by: tuple[str, ...] = ()
    method: Literal["linear", "raking", "logit"] = "linear"
    bounds: tuple[float, float] | None = None
    max_iter: Annotated[int, Field(ge=1)] = 50
    epsilon: Annotated[float, Field(gt=0, lt=1)] = 1e-7
    accept_nonconvergence: bool = False
    impute: Literal["mode", "none"] = "mode"

    @model_validator(mode="after")
    def _bounds(self) -> CalibrateConfig:
        if self.bounds is not None and not self.bounds[0] < 1 < self.bounds[1]:
            raise ValueError(f"bounds on the g-weights must satisfy lower < 1 < upper (got {list(self.bounds)})")
        if self.method == "logit" and self.bounds is None:
            raise ValueError("method logit needs bounds on the g-weights, e.g. bounds: [0.3, 3]")
        return self


class TrimConfig(_Model):
    """Cap weights at ``upper`` x and floor them at ``lower`` x the group median (or mean).

    Trimming is done within ``by`` groups (the trimmed amount is spread over the group's other
    rows, as R survey ``trimWeights`` does over the sample). With ``rerake`` the configured
    calibration is redone after trimming; ``cycles`` trim-and-recalibrate cycles run until the
    caps and the margins both hold, and when they do not after the last cycle the stage fails
    unless ``accept_outside_caps``.
    """

    lower: Annotated[float, Field(gt=0)] | None = None
    upper: Annotated[float, Field(gt=0)] | None = None
    relative_to: Literal["median", "mean", "absolute"] = "median"
    by: tuple[str, ...] = ()
    strict: bool = False
    rerake: bool = True
    cycles: Annotated[int, Field(ge=1)] = 1
    accept_outside_caps: bool = False
    replicates: Literal["factors", "own_caps"] = "factors"
    """How replicate weights are trimmed: ``factors`` multiplies each replicate by the full
    sample's trimming factors (trimming treated as fixed, as the Taylor variance treats it);
    ``own_caps`` trims each replicate at caps from its own weights, which clips bootstrap
    multiplicities and understates the variance (the demo's bootstrap SE fell from 0.0184 to
    0.0157 with it)."""

    @model_validator(mode="after")
    def _bounds(self) -> TrimConfig:
        if self.lower is None and self.upper is None:
            raise ValueError("give lower, upper or both")
        if self.lower is not None and self.upper is not None and self.upper <= self.lower:
            raise ValueError(f"upper must be greater than lower (got lower={self.lower} and upper={self.upper})")
        if self.cycles > 1 and not self.rerake:
            raise ValueError(f"cycles: {self.cycles} needs rerake: true (a cycle is trimming then recalibrating)")
        return self


class WeightQA(_Model):
    """Limits that fail the weight stage when exceeded."""

    max_kish_deff: Annotated[float, Field(ge=1)] | None = None
    max_margin_error: Annotated[float, Field(gt=0)] | None = 0.005


#: The calibration sections of ``weight``, at most one of which is given.
CALIBRATION_KEYS = ("rake", "poststratify", "calibrate")


class WeightConfig(_Model):
    base: BaseWeightConfig = BaseWeightConfig()
    nonresponse: NonresponseConfig | None = None
    rake: RakeConfig | None = None
    poststratify: PoststratifyConfig | None = None
    calibrate: CalibrateConfig | None = None
    trim: TrimConfig | None = None
    qa: WeightQA = WeightQA()
    targets_columns: Mapping[str, str] = Field(default_factory=dict)
    """Rename targets-file columns to data columns, e.g. ``{county: COUNTY}``."""

    @model_validator(mode="after")
    def _one_calibration(self) -> WeightConfig:
        given = [k for k in CALIBRATION_KEYS if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one calibration method, not {' and '.join(given)} (each calibrates to the same targets)")
        if self.trim is not None and self.trim.cycles > 1 and not given:
            raise ValueError(f"trim.cycles: {self.trim.cycles} needs a calibration method (rake, poststratify or calibrate) to redo after trimming")
        return self

    @property
    def calibration(self) -> tuple[str, RakeConfig | PoststratifyConfig | CalibrateConfig] | None:
        """The configured calibration step as ``(key, section)``, or None."""
        for key in CALIBRATION_KEYS:
            section = getattr(self, key)
            if section is not None:
                return key, section
        return None


# ------------------------------------------------------------------------ design, estimates

CIMethod = Literal["logit", "likelihood", "asin", "beta", "mean", "xlogit", "wilson", "korn_graubard"]


class ReplicateConfig(_Model):
    """Replicate weights: given in the data (``columns`` or ``pattern``), or built (``build``).

    Given replicate weights follow R's ``svrepdesign``; built ones R's ``as.svrepdesign`` on
    the linearization design of ``design`` (strata, ids, fpc) with the base weights, and the
    weighting (raking, trimming) is redone in every replicate.
    """

    columns: tuple[str, ...] = ()
    pattern: str | None = None
    """A regular expression matching the replicate-weight columns, e.g. ``^REPW[0-9]+$``."""
    type: Literal["JK1", "JKn", "BRR", "Fay", "bootstrap", "other"] | None = None
    build: Literal["auto", "JK1", "JKn", "BRR", "Fay", "bootstrap"] | None = None
    replicates: Annotated[int, Field(ge=2)] | None = None
    """Number of bootstrap replicates (``build: bootstrap``)."""
    seed: int | None = None
    rho: Annotated[float, Field(ge=0, lt=1)] | None = None
    scale: Annotated[float, Field(gt=0)] | None = None
    rscales: tuple[float, ...] | None = None
    fpc: float | tuple[float, ...] | None = None
    """Given replicates' finite population correction (R ``svrepdesign(fpc=)``), read as ``fpctype``
    says; one value for every replicate, or one per replicate."""
    fpctype: Literal["fraction", "correction", "population"] | None = None
    mse: bool = False
    combined_weights: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> ReplicateConfig:
        given = bool(self.columns) or self.pattern is not None
        if given == (self.build is not None):
            raise ValueError("give the replicate weights either as columns/pattern (with type) or as build: <method>, not both")
        if given and self.type is None:
            raise ValueError("given replicate weights need their type: JK1, JKn, BRR, Fay, bootstrap or other")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        if self.seed is not None and self.build != "bootstrap":
            raise ValueError("seed applies to build: bootstrap only")
        if self.build == "bootstrap" and self.seed is None:
            raise ValueError("build: bootstrap needs a seed (e.g. seed: 20121120), so that a rerun draws the same replicates and standard errors")
        if (self.type == "Fay" or self.build == "Fay") and self.rho is None:
            raise ValueError("Fay replicates need rho")
        if self.fpc is not None or self.fpctype is not None:
            if self.build is not None:
                raise ValueError("fpc applies to given replicate columns; built replicates take the design's fpc (design.fpc)")
            if self.fpc is None or self.fpctype is None:
                raise ValueError("fpc and fpctype go together: fpctype says what fpc holds (fraction, correction or population)")
            if self.type in ("BRR", "Fay", "bootstrap"):
                raise ValueError(f"fpc does not apply to {self.type} replicates (as R svrepdesign); leave it out")
            if self.fpctype == "population" and self.type != "JK1":
                raise ValueError(f"fpctype: population is for JK1 replicates (one per sampled PSU), not {self.type}; give the sampling fractions (fpctype: fraction)")
            values = self.fpc if isinstance(self.fpc, tuple) else (self.fpc,)
            if self.fpctype != "population" and any(not 0 <= v <= 1 for v in values):
                raise ValueError(f"fpc with fpctype: {self.fpctype} must be between 0 and 1")
            if self.fpctype == "population" and len(values) != 1:
                raise ValueError("fpc with fpctype: population is one number: the population number of PSUs")
        return self


class DesignConfig(_Model):
    """The sampling design used for variance estimation, and the default CI."""

    weights: str = "w_pop"
    """Population-scaled by default: R's design effect uses N = the sum of the weights. A column of
    the data (a delivered final weight) is used as is, with no weighting configured."""
    strata: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    fpc: tuple[str, ...] = ()
    nest: bool = False
    lonely_psu: Literal["fail", "remove", "adjust", "average", "certainty"] = "fail"
    weighting_variance: bool = True
    """Account for raking in the variance (R survey's raking residuals), not fixed weights."""
    variance: Literal["taylor", "replicate"] = "taylor"
    replicates: ReplicateConfig | None = None
    ci_method: CIMethod = "logit"
    conf_level: Annotated[float, Field(gt=0.5, lt=1)] = 0.95

    @model_validator(mode="after")
    def _variance_source(self) -> DesignConfig:
        if self.variance == "replicate" and self.replicates is None:
            raise ValueError("variance: replicate needs a replicates: section (columns/pattern with type, or build)")
        if self.variance == "taylor" and self.replicates is not None:
            raise ValueError("replicates: is given but variance is taylor; set variance: replicate")
        return self

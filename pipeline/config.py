"""The study config: pydantic models (frozen, unknown keys rejected) and ``load_config``.

One YAML file describes a study: its waves (raw deliveries and targets), and one section per
stage (``ingest``, ``clean``, ``weight``, ``design`` + ``estimates``, ``tables`` + ``export``).
Every problem of a config is reported at once, each with its key path and the file; unknown
keys get a "did you mean". Paths are relative to the config file and must stay inside the
project (see :func:`project_root`). Expressions (derived variables, weight factors, recode
conditions, checks, skips, the respondent flag) are parsed and checked against the expression
language's allow-list at load time by :mod:`pipeline.expressions`, which compiles them to polars
expressions; they are never ``eval``-ed nor handed to an SQL engine.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError

STAGES = ("ingest", "clean", "weight", "estimate", "export")
Stage = Literal["ingest", "clean", "weight", "estimate", "export"]

Code = int


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- waves and ingest


class ExtraMissing(_Model):
    """Missing codes the file does not declare for these variables."""

    variables: tuple[str, ...]
    codes: tuple[Code, ...]


class Recode(_Model):
    """Map codes of some variables, optionally only on rows where ``when`` holds."""

    variables: Annotated[tuple[str, ...], Field(min_length=1)]
    map: Mapping[Code, Code | None]
    when: str | None = None

    @field_validator("variables", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v


class Wave(_Model):
    """One survey wave: its raw delivery and its weighting targets."""

    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    raw: Path
    targets: Path | None = None
    field_dates: tuple[dt.date, dt.date] | None = None
    rename: Mapping[str, str] = Field(default_factory=dict)
    """This wave's variable names -> the study's common names, e.g. ``{PHONE_STATUS: PHONESTAT}``."""
    labels: Mapping[str, Mapping[Code, str]] = Field(default_factory=dict)
    """Value labels that replace the file's for this wave (after renaming), to harmonise wording."""
    recodes: tuple[Recode, ...] = ()
    """This wave's own recodes, applied before the study's (a vendor that coded differently)."""
    missing_also: tuple[ExtraMissing, ...] = ()
    """This wave's own undeclared missing codes (DK stored as 98 instead of 8)."""
    not_asked: tuple[str, ...] = ()
    """Study variables this wave's questionnaire did not have: the rules and estimates that
    name them skip this wave (the harmonization report lists which variables are in which wave)."""

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _dates_in_order(self) -> Wave:
        if self.field_dates and self.field_dates[0] > self.field_dates[1]:
            raise ValueError(f"field_dates must be [first, last] (got {self.field_dates[0]} after {self.field_dates[1]})")
        return self


class IngestConfig(_Model):
    """Which column identifies a respondent and which columns are identifiers to drop."""

    id: str | None = None
    pii: tuple[str, ...] = ()
    hash: Mapping[str, str] = Field(default_factory=dict)
    """PII columns a cleaning rule needs, kept only as a keyed hash (HMAC-SHA256): ``{PHONE_HASH: phone_key}``.

    The key is the environment variable ``SURVEY_PIPELINE_HASH_KEY``, else the key file
    ``key_file``; never in ``outputs/``. The hashed columns are dropped by the clean stage.
    """
    key_file: Path | None = None
    """The key of the ``hash`` columns (relative to the config; default ``keys/<study>.key`` in the
    project, git-ignored), created with a random key on first use; refused inside ``outputs/``."""


# --------------------------------------------------------------------------------- cleaning


class MissingConfig(_Model):
    """Codes that mean don't-know or refused.

    A code is treated as missing for a variable when the file declares it user-missing for
    that variable, or when ``also`` lists it for that variable (a vendor batch that used 98
    where the codebook says 8). Its reason is ``dont_know`` or ``refused`` by these lists.
    """

    dont_know: tuple[Code, ...] = (8, 98)
    refused: tuple[Code, ...] = (9, 99)
    also: tuple[ExtraMissing, ...] = ()


class Derive(_Model):
    """A derived variable: an SQL expression over existing columns, with its labels."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    expr: str
    label: str | None = None
    value_labels: Mapping[Code, str] = Field(default_factory=dict)
    labels_from: str | None = None
    """Carry the value labels and missing codes of this variable (a recoded copy keeps its labels)."""


class PartialRule(_Model):
    """Rows whose ``variable`` is not one of ``complete`` are partial interviews."""

    variable: str
    complete: tuple[Code, ...] = (1,)


class DuplicateRule(_Model):
    """Rows identical in every column to an earlier row (same ``id``) are exact duplicates."""

    id: str


class ValidCodes(_Model):
    """Codes a value must have; anything else is set missing with reason ``out_of_range``.

    ``labelled`` variables must hold a labelled code (or a declared missing code); ``ranges``
    give ``[low, high]`` for numeric variables such as AGE.
    """

    labelled: tuple[str, ...] = ()
    ranges: Mapping[str, tuple[float, float]] = Field(default_factory=dict)


Action = Literal["quarantine", "set_missing", "flag"]


class Check(_Model):
    """A consistency rule: ``expr`` must hold; where it does not, ``action`` applies.

    ``set_missing`` blanks ``variables`` (reason ``inconsistent``); ``flag`` marks the row;
    ``quarantine`` removes it. Rows where ``expr`` is unknown (a value is missing) pass.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    expr: str
    variables: tuple[str, ...] = ()
    action: Action = "set_missing"

    @model_validator(mode="after")
    def _needs_variables(self) -> Check:
        if self.action == "set_missing" and not self.variables:
            raise ValueError("action set_missing needs the variables to set missing")
        return self


class SkipRule(_Model):
    """Skip logic: ``variables`` are asked only where ``asked_if`` holds.

    An answer where the question was not asked is a violation (``action``: set it missing with
    reason ``skip_violation``, flag the row, or quarantine it); a blank where it was not asked is
    a legitimate skip (reason ``skipped``); a blank where it was asked is flagged
    ``skip_missing_<variable>`` when ``require_answer``.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    asked_if: str
    variables: Annotated[tuple[str, ...], Field(min_length=1)]
    action: Action = "set_missing"
    require_answer: bool = False


RowAction = Literal["quarantine", "flag"]


class NearDuplicateRule(_Model):
    """Rows sharing ``key`` (e.g. a hashed phone number) under different ids: keep the first."""

    key: str
    order_by: tuple[str, ...] = ()
    action: RowAction = "quarantine"


class SpeederRule(_Model):
    """Interviews shorter than ``fraction`` x the median ``duration`` (within ``by``)."""

    duration: str
    fraction: Annotated[float, Field(gt=0, lt=1)] = 0.4
    by: tuple[str, ...] = ()
    action: RowAction = "flag"


class StraightLineRule(_Model):
    """A battery answered with one code throughout (don't-know/refused excluded)."""

    variables: Annotated[tuple[str, ...], Field(min_length=3)]
    action: RowAction = "flag"


class FieldPeriodRule(_Model):
    """Interview dates outside the wave's ``field_dates``."""

    variable: str
    action: RowAction = "flag"


class InterviewerRule(_Model):
    """The interviewer report: flag interviewers whose answer patterns are implausible.

    Per interviewer with at least ``min_interviews``: the don't-know/refused rate over
    ``battery`` and the share of their interviews with their single most common battery
    pattern. An interviewer is flagged when the pattern share is at least ``max_pattern_share``,
    or the don't-know/refused rate is at most ``min_dk_rate`` while the other interviewers'
    median rate is above it.
    """

    variable: str
    battery: Annotated[tuple[str, ...], Field(min_length=2)]
    min_interviews: Annotated[int, Field(ge=2)] = 15
    max_pattern_share: Annotated[float, Field(gt=0, le=1)] = 0.3
    min_dk_rate: Annotated[float, Field(ge=0, lt=1)] = 0.0
    action: RowAction = "flag"


class CleanConfig(_Model):
    missing: MissingConfig = MissingConfig()
    valid: ValidCodes = ValidCodes()
    required: tuple[str, ...] = ()
    """Rows with no valid value in one of these (e.g. the stratum) are quarantined."""
    recodes: tuple[Recode, ...] = ()
    derive: tuple[Derive, ...] = ()
    drop_partials: PartialRule | None = None
    drop_duplicates: DuplicateRule | None = None
    near_duplicates: NearDuplicateRule | None = None
    checks: tuple[Check, ...] = ()
    skips: tuple[SkipRule, ...] = ()
    speeders: SpeederRule | None = None
    straightlining: StraightLineRule | None = None
    field_period: FieldPeriodRule | None = None
    interviewers: InterviewerRule | None = None
    report_by: tuple[str, ...] = ()
    """Break the cleaning report's counts down by these variables (e.g. county)."""


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
    """Nonresponse adjustment by weighting classes, before calibration.

    The cleaned data must hold the eligible nonrespondents (for example break-offs kept by not
    setting ``clean.drop_partials``): rows where ``respondent`` is false. Within each class (the
    cross of ``classes``) the respondents' weights are multiplied by
    ``sum(w_base, everyone) / sum(w_base, respondents)``; the nonrespondents then leave the
    weighted data (they are written to ``weight/nonrespondents.parquet``). A class with fewer
    than ``min_respondents`` respondents, or whose factor exceeds ``max_factor``, is merged with
    its neighbour: the adjacent class in the sort order of ``classes`` sharing the most leading
    class variables (the next one on a tie), so the last class variable is collapsed first.
    """

    respondent: str
    """SQL expression, true for respondents (``STATUS = 1``); missing is an error."""
    classes: Annotated[tuple[str, ...], Field(min_length=1)]
    min_respondents: Annotated[int, Field(ge=1)] = 20
    max_factor: Annotated[float, Field(gt=1)] | None = 2.0


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


#: the statistics an estimate can be: each is the config key that names its variable
#: (``proportion: Q10A``), one entry per layer (``pipeline.stages.estimate.STATISTICS``,
#: ``pipeline.exporters.tables.VALUE_FORMATS``, ``pipeline.exporters.charts.CHART_SCALES``,
#: ``pipeline.flags.STATISTIC_RULES``; tests/test_vocabulary.py checks they agree)
STATISTICS = ("proportion",)


class EstimateSpec(_Model):
    """One estimate: the share of ``proportion`` in ``levels`` (or of every level)."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    proportion: str
    levels: tuple[Code, ...] | None = None
    level_label: str | None = None
    denominator: Literal["all", "valid"] = "valid"
    by: tuple[tuple[str, ...], ...] = ((),)
    ci_method: CIMethod | None = None
    title: str | None = None
    test: Literal["F", "Chisq", "Wald", "adjWald", "lincom", "saddlepoint", "none"] = "F"
    """Design-based test of association with each single ``by`` variable (R ``svychisq``;
    ``F``: Rao-Scott second-order, ``Chisq``: first-order), shown under the banners."""

    @property
    def statistic(self) -> str:
        """The statistic estimated: the key of :data:`STATISTICS` the spec sets (``proportion``)."""
        return next(name for name in STATISTICS if getattr(self, name, None) is not None)

    @property
    def variable(self) -> str:
        """The variable the statistic is of (``proportion: Q10A`` -> ``Q10A``)."""
        return getattr(self, self.statistic)


class ReliabilityConfig(_Model):
    """When an estimate is suppressed or flagged: the NCHS Data Presentation Standards for
    Proportions (Parker et al. 2017, Vital Health Stat 2(175)), thresholds as published.

    With ``standard: nchs`` a proportion is suppressed when its effective sample size is below
    ``min_effective_n``, or when its Korn-Graubard CI is ``max_ci_width`` wide or more, or (if
    wider than ``ci_width_ok``) wider than ``max_relative_ci_width`` times the estimate. Shown
    estimates are flagged for review when the degrees of freedom are below ``min_df``, when
    the CI is wider than ``max_relative_ci_width`` times the complement, or at 0% or 100%.
    ``tables.min_n`` (the denominator's sample size) applies under both standards.
    """

    standard: Literal["nchs", "none"] = "nchs"
    min_effective_n: Annotated[float, Field(ge=0)] = 30
    ci_width_ok: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_ci_width: Annotated[float, Field(gt=0, le=1)] = 0.30
    max_relative_ci_width: Annotated[float, Field(gt=0)] = 1.30
    min_df: Annotated[float, Field(ge=0)] = 8

    @model_validator(mode="after")
    def _widths(self) -> ReliabilityConfig:
        if self.ci_width_ok >= self.max_ci_width:
            raise ValueError(f"ci_width_ok must be smaller than max_ci_width (got {self.ci_width_ok} and {self.max_ci_width})")
        return self


class DisclosureConfig(_Model):
    """Suppression for respondents' privacy: cells with fewer than ``min_cell_n`` respondents."""

    min_cell_n: Annotated[int, Field(ge=0)] = 10


class SignificanceConfig(_Model):
    """Tests between banner columns (and between waves in trend tables)."""

    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    method: Literal["design", "independent"] = "design"
    """``design``: the difference's variance from the design's full covariance matrix;
    ``independent``: ``se_a^2 + se_b^2`` from estimates.csv (ignores the covariance)."""
    adjust: Literal["none", "bonferroni", "holm"] = "none"
    """Multiple-comparison adjustment within each row and column group."""


TableId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]


class ToplineSpec(_Model):
    """A topline: question wording, each answer's weighted percent, unweighted n, CI and margin of error."""

    id: TableId
    title: str | None = None
    estimates: tuple[str, ...] = ()
    """Estimate ids, in order (empty: every estimate)."""
    by: tuple[tuple[str, ...], ...] | None = None
    """Which domain lists to show (``[[]]``: the whole sample only); default: every one estimated."""
    decimals: Annotated[int, Field(ge=0, le=4)] | None = None
    notes: tuple[str, ...] = ()


class BannerSpec(_Model):
    """A banner crosstab: estimates down, subgroups across, significance letters between columns."""

    id: TableId
    title: str | None = None
    estimates: tuple[str, ...] = ()
    columns: Annotated[tuple[tuple[str, ...], ...], Field(min_length=1)] = ((),)
    """Column groups as domain lists: ``[[], [COUNTY], [STATUS4]]`` is Total, the counties, the statuses."""
    decimals: Annotated[int, Field(ge=0, le=4)] | None = None
    notes: tuple[str, ...] = ()


class TrendSpec(_Model):
    """A trend table: estimates down, waves across, with the change between the last two waves."""

    id: TableId
    title: str | None = None
    estimates: tuple[str, ...] = ()
    by: tuple[tuple[str, ...], ...] = ((),)
    decimals: Annotated[int, Field(ge=0, le=4)] | None = None
    notes: tuple[str, ...] = ()


class TablesConfig(_Model):
    """Reliability and disclosure rules, significance tests, and the published tables."""

    min_n: Annotated[int, Field(ge=0)] = 30
    decimals: Annotated[int, Field(ge=0, le=4)] = 0
    reliability: ReliabilityConfig = ReliabilityConfig()
    disclosure: DisclosureConfig = DisclosureConfig()
    significance: SignificanceConfig = SignificanceConfig()
    labels: Mapping[str, str] = Field(default_factory=dict)
    """Short names of domain variables for table headers (``{STATUS4: Immigration status}``)."""
    notes: tuple[str, ...] = ()
    """Notes printed under every table."""
    toplines: tuple[ToplineSpec, ...] = (ToplineSpec(id="topline"),)
    banners: tuple[BannerSpec, ...] = ()
    trends: tuple[TrendSpec, ...] = ()

    @model_validator(mode="after")
    def _unique_table_ids(self) -> TablesConfig:
        ids = [t.id for t in (*self.toplines, *self.banners, *self.trends)]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"table ids must be unique across toplines, banners and trends (repeated: {', '.join(repeated)})")
        return self

    def flag_rules(self) -> dict[str, Any]:
        """The part the estimate stage's ``flag`` column depends on (its config fingerprint)."""
        return json.loads(self.model_dump_json(include={"min_n", "reliability", "disclosure"}))

    def comparison_rules(self) -> dict[str, Any]:
        """The part the estimate stage's ``estimate/comparisons.csv`` depends on: which banners
        compare which estimates across which columns (not their titles or notes), and how."""
        return json.loads(self.model_dump_json(include={"significance": True, "banners": {"__all__": {"id", "estimates", "columns"}}}))


ExportFormat = Literal["csv", "markdown", "xlsx", "html", "latex", "sav", "dta", "png", "svg", "methods", "report"]


class ExportConfig(_Model):
    """What the export stage writes (every format is built from estimates.csv)."""

    formats: tuple[ExportFormat, ...] = ("csv", "markdown")
    charts: tuple[str, ...] = ()
    """Estimate ids charted by subgroup (empty: every estimate); charts are written as ``png``/``svg``."""
    weights: tuple[str, ...] = ("w_final", "w_pop")
    """Weight columns kept in the analysis file (``sav``/``dta``); other weights are left out."""


class MethodsConfig(_Model):
    """Study facts for the methods statement (AAPOR Transparency Initiative disclosure elements).

    The rest (dates, sample sizes, weighting variables and target sources, design effect,
    margins of error) is taken from the config, the targets file and the weighting report.
    """

    sponsor: str | None = None
    conducted_by: str | None = None
    population: str | None = None
    frame: str | None = None
    sample_design: str | None = None
    mode: str | None = None
    languages: tuple[str, ...] = ()
    response_rate: str | None = None
    contact: str | None = None
    moe_by: tuple[str, ...] | None = None
    """Key subgroups for the margin-of-error table (default: the banners' column variables)."""
    notes: tuple[str, ...] = ()


class SameMeaning(_Model):
    """Codes of a variable whose labels differ between waves but mean the same."""

    variable: str
    codes: tuple[Code, ...]


class HarmonizeConfig(_Model):
    """Checks across waves: value-label drift is an error unless mapped or accepted here."""

    same_meaning: tuple[SameMeaning, ...] = ()


class TrendsConfig(_Model):
    """Change rows between consecutive waves in ``trends/estimates.csv``."""

    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05


class StudyConfig(_Model):
    """The whole study config."""

    study: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    title: str = ""
    notice: str | None = None
    waves: Annotated[tuple[Wave, ...], Field(min_length=1)]
    ingest: IngestConfig = IngestConfig()
    clean: CleanConfig = CleanConfig()
    weight: WeightConfig = WeightConfig()
    design: DesignConfig = DesignConfig()
    estimates: tuple[EstimateSpec, ...] = ()
    tables: TablesConfig = TablesConfig()
    export: ExportConfig = ExportConfig()
    methods: MethodsConfig = MethodsConfig()
    harmonize: HarmonizeConfig = HarmonizeConfig()
    trends: TrendsConfig = TrendsConfig()

    # where the file lives; set by load_config, not by the YAML
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> StudyConfig:
        for what, ids in (("waves", [w.id for w in self.waves]), ("estimates", [e.id for e in self.estimates])):
            seen = {i for i in ids if ids.count(i) > 1}
            if seen:
                raise ValueError(f"{what}: ids must be unique (repeated: {', '.join(sorted(seen))})")
        return self

    # ---- derived facts
    @property
    def root(self) -> Path:
        assert self.path is not None, "config has no path (use load_config)"
        return project_root(self.path)

    @property
    def outputs(self) -> Path:
        return self.root / "outputs" / self.study

    def wave(self, wave_id: str) -> Wave:
        for w in self.waves:
            if w.id == wave_id:
                return w
        raise ConfigError(
            f"--wave {wave_id}: no such wave in {self.path}",
            hint=f"waves in the config: {', '.join(w.id for w in self.waves)}",
        )

    def resolve(self, p: Path) -> Path:
        assert self.path is not None
        return (self.path.parent / p).resolve()

    def clean_for(self, wave_id: str) -> CleanConfig:
        """The study's cleaning rules as they apply to a wave: ``not_asked`` variables left out."""
        gone = set(self.wave(wave_id).not_asked)
        if not gone:
            return self.clean
        keep = lambda names: tuple(n for n in names if n not in gone)  # noqa: E731
        c = self.clean
        valid = c.valid.model_copy(update={"labelled": keep(c.valid.labelled), "ranges": {k: v for k, v in c.valid.ranges.items() if k not in gone}})
        also = tuple(m.model_copy(update={"variables": keep(m.variables)}) for m in c.missing.also if keep(m.variables))
        recodes = tuple(r.model_copy(update={"variables": keep(r.variables)}) for r in c.recodes if keep(r.variables))
        skips = tuple(r.model_copy(update={"variables": keep(r.variables)}) for r in c.skips if keep(r.variables))
        checks = tuple(r.model_copy(update={"variables": keep(r.variables)}) for r in c.checks if not (set(r.variables) and set(r.variables) <= gone))
        update: dict[str, Any] = {"valid": valid, "missing": c.missing.model_copy(update={"also": also}), "recodes": recodes, "skips": skips, "checks": checks}
        if c.straightlining is not None:
            update["straightlining"] = c.straightlining.model_copy(update={"variables": keep(c.straightlining.variables)})
        if c.interviewers is not None:
            update["interviewers"] = c.interviewers.model_copy(update={"battery": keep(c.interviewers.battery)})
        return c.model_copy(update=update)

    def estimates_for(self, wave_id: str) -> tuple[EstimateSpec, ...]:
        """The estimates a wave can make: those of ``not_asked`` variables left out, and their
        domain lists that name one."""
        gone = set(self.wave(wave_id).not_asked)
        out = []
        for e in self.estimates:
            if e.variable in gone:
                continue
            by = tuple(b for b in e.by if not set(b) & gone)
            out.append(e if by == e.by else e.model_copy(update={"by": by}))
        return tuple(out)


# ------------------------------------------------------------------------------- loading


def project_root(config_path: Path) -> Path:
    """The project folder of a config: the parent of ``configs/``, else the config's folder."""
    folder = config_path.resolve().parent
    return folder.parent if folder.name == "configs" else folder


def load_config(path: Path | str) -> StudyConfig:
    """Read, validate and resolve a study config.

    Raises
    ------
    ConfigError
        Listing every problem at once, each with its key path, and the file.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", hint="give the path of a study YAML, e.g. configs/insecure_communities.yaml")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys (study, waves, ...) at the top level, found {type(raw).__name__}")
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: the config has {exc.error_count()} problem(s):", problems=_describe(exc, raw)) from exc
    config = config.model_copy(update={"path": path.resolve()})
    problems = _check_paths(config) + _check_expressions(config) + _check_tables(config) + _check_weights(config)
    if problems:
        raise ConfigError(f"{path}: the config has {len(problems)} problem(s):", problems=problems)
    return config


def _describe(exc: ValidationError, raw: Any) -> list[str]:
    out = []
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs):
            continue  # a list that is "too short" only because its items failed: those are reported
        key = _key_path(loc)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else (f"; allowed keys: {', '.join(allowed)}" if allowed else "")
            out.append(f"{key}: unknown key{hint}")
            continue
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        found = "" if err["type"] == "missing" else f" (found: {_short(err.get('input'))})"
        if err["type"] == "string_type" and isinstance(err.get("input"), bool):
            found += "; YAML reads an unquoted Yes/No/On/Off as true/false: quote the text ('Yes')"
        out.append(f"{key or '(top level)'}: {msg}{found}")
    return out


def _key_path(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif re.fullmatch(r"(function-after|function-before|function-wrap)\[.*\]|tuple\[.*\]|list\[.*\]|union\[.*\]", str(item)):
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _short(value: Any) -> str:
    """A config value as the YAML would spell it (``true``, ``null``, ``{a: 1}``), shortened."""
    import yaml

    if isinstance(value, str):
        text = "'" + value.replace("'", "''") + "'"  # YAML's single-quoted text
        return text if len(text) <= 60 else text[:57] + "..."
    try:
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6, allow_unicode=True).strip()
        text = text.removesuffix("\n...").removesuffix("...").strip()
    except yaml.YAMLError:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found at ``loc`` (for "did you mean")."""
    model: Any = StudyConfig
    for item in loc:
        if isinstance(item, int):
            continue
        field = getattr(model, "model_fields", {}).get(str(item))
        if field is None:
            return []
        model = _inner_model(field.annotation)
        if model is None:
            return []
    return [name for name in getattr(model, "model_fields", {}) if name != "path"]


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated or origin in (tuple, list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def _check_paths(config: StudyConfig) -> list[str]:
    root = config.root
    problems = []
    for i, w in enumerate(config.waves):
        for key in ("raw", "targets"):
            p = getattr(w, key)
            if p is None:
                continue
            resolved = config.resolve(p)
            if not resolved.is_relative_to(root):
                problems.append(
                    f"waves[{i}].{key}: path {p} resolves to {resolved}, outside the project {root}; "
                    "paths are relative to the config file and must stay inside the project"
                )
    return problems


def _check_expressions(config: StudyConfig) -> list[str]:
    """Every expression of the config parses and stays inside the allow-list (issue 10, item 2)."""
    from pipeline import expressions

    items: list[tuple[str, str]] = []
    items += [(f"clean.derive[{i}].expr", d.expr) for i, d in enumerate(config.clean.derive)]
    items += [(f"clean.recodes[{i}].when", r.when) for i, r in enumerate(config.clean.recodes) if r.when]
    items += [(f"clean.checks[{i}].expr", c.expr) for i, c in enumerate(config.clean.checks)]
    items += [(f"clean.skips[{i}].asked_if", c.asked_if) for i, c in enumerate(config.clean.skips)]
    for w_i, w in enumerate(config.waves):
        items += [(f"waves[{w_i}].recodes[{i}].when", r.when) for i, r in enumerate(w.recodes) if r.when]

    items += [(f"weight.base.factors[{i}].expr", f.expr) for i, f in enumerate(config.weight.base.factors)]
    if config.weight.nonresponse is not None:
        items.append(("weight.nonresponse.respondent", config.weight.nonresponse.respondent))
    return [p for key, text in items if (p := expressions.problem(text, key=key)) is not None]


#: The weights the weight stage makes; any other ``design.weights`` is a column of the data.
STAGE_WEIGHTS = ("w_base", "w_final", "w_pop")


def _check_weights(config: StudyConfig) -> list[str]:
    return delivered_weight_problems(config.weight, config.design)


def delivered_weight_problems(w: WeightConfig, design: DesignConfig) -> list[str]:
    """A delivered final weight (``design.weights`` naming a data column) is used as is: the
    weight stage must not be configured to make another weight the estimates would ignore."""
    target = design.weights
    if target in STAGE_WEIGHTS:
        return []
    base = w.base
    steps = ["base.column"] if base.column is not None and base.column != target else []
    steps += [k for k, given in (("base.population_by", base.population_by), ("base.factors", base.factors)) if given]
    steps += [k for k in ("nonresponse", "rake", "poststratify", "calibrate", "trim") if getattr(w, k) is not None]
    if not steps:
        return []
    return [
        f"design.weights: {target} is a delivered weight, used as the final weight as is, but the weight stage is configured "
        f"to make its own ({', '.join('weight.' + k for k in steps)}), which the estimates would then ignore; "
        f"to weight from {target}, write weight.base.column: {target} and design.weights: w_pop"
    ]


def _check_tables(config: StudyConfig) -> list[str]:
    """Tables and charts name configured estimates; banner columns are estimated domains."""
    known = {e.id: e for e in config.estimates}
    problems = []

    def check_ids(key: str, ids: tuple[str, ...]) -> None:
        for j, est_id in enumerate(ids):
            if est_id not in known:
                close = difflib.get_close_matches(est_id, list(known), n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else f"; estimates: {', '.join(known) or 'none'}"
                problems.append(f"{key}[{j}]: no estimate with id '{est_id}'{hint}")

    for kind in ("toplines", "banners", "trends"):
        for i, spec in enumerate(getattr(config.tables, kind)):
            check_ids(f"tables.{kind}[{i}].estimates", spec.estimates)
    check_ids("export.charts", config.export.charts)
    for i, banner in enumerate(config.tables.banners):
        chosen = [known[e] for e in banner.estimates if e in known] or list(known.values())
        for j, by in enumerate(banner.columns):
            if by and not any(tuple(by) in {tuple(b) for b in e.by} for e in chosen):
                problems.append(
                    f"tables.banners[{i}].columns[{j}]: no estimate of the banner is estimated by {list(by)}; "
                    "add it to the estimates' by lists"
                )
    return problems


def parse_expr(text: str) -> Any:
    """The polars expression of a config expression (see :mod:`pipeline.expressions`)."""
    from pipeline import expressions

    return expressions.to_polars(text)

"""The config sections of the data: ``waves``, ``ingest`` and ``clean``.

Owns the models of a wave (its raw delivery, targets, renames, labels, own recodes and missing
codes), of the ingest section (respondent id, PII to drop or hash) and of the cleaning rules
(missing codes, valid codes, recodes, derived variables, partials, duplicates, checks, skips,
speeders, straight-lining, field period, interviewers). Re-exported by :mod:`pipeline.config`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline._config_base import Code, _Model

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

"""The study config: pydantic models (frozen, unknown keys rejected) and ``load_config``.

One YAML file describes a study: its waves (raw deliveries and targets), and one section per
stage (``ingest``, ``clean``, ``weight``, ``design`` + ``estimates``, ``tables`` + ``export``).
Every problem of a config is reported at once, each with its key path and the file; unknown
keys get a "did you mean". Paths are relative to the config file and must stay inside the
project (see :func:`project_root`). Expressions (derived variables, weight factors, recode
conditions) are parsed by polars' SQL expression parser at load time, never ``eval``-ed.
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


class Wave(_Model):
    """One survey wave: its raw delivery and its weighting targets."""

    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    raw: Path
    targets: Path | None = None
    field_dates: tuple[dt.date, dt.date] | None = None

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


# --------------------------------------------------------------------------------- cleaning


class ExtraMissing(_Model):
    variables: tuple[str, ...]
    codes: tuple[Code, ...]


class MissingConfig(_Model):
    """Codes that mean don't-know or refused.

    A code is treated as missing for a variable when the file declares it user-missing for
    that variable, or when ``also`` lists it for that variable (a vendor batch that used 98
    where the codebook says 8). Its reason is ``dont_know`` or ``refused`` by these lists.
    """

    dont_know: tuple[Code, ...] = (8, 98)
    refused: tuple[Code, ...] = (9, 99)
    also: tuple[ExtraMissing, ...] = ()


class Recode(_Model):
    """Map codes of one variable, optionally only on rows where ``when`` holds."""

    variable: str
    map: Mapping[Code, Code | None]
    when: str | None = None


class Derive(_Model):
    """A derived variable: an SQL expression over existing columns, with its labels."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    expr: str
    label: str | None = None
    value_labels: Mapping[Code, str] = Field(default_factory=dict)


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


class CleanConfig(_Model):
    missing: MissingConfig = MissingConfig()
    valid: ValidCodes = ValidCodes()
    required: tuple[str, ...] = ()
    """Rows with no valid value in one of these (e.g. the stratum) are quarantined."""
    recodes: tuple[Recode, ...] = ()
    derive: tuple[Derive, ...] = ()
    drop_partials: PartialRule | None = None
    drop_duplicates: DuplicateRule | None = None


# -------------------------------------------------------------------------------- weighting


class WeightFactor(_Model):
    """One multiplicative base-weight factor, an SQL expression (household adults, dual frame)."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    expr: str


class BaseWeightConfig(_Model):
    """Base weight = N_h / n_h within ``population_by`` groups, times each factor.

    N_h comes from the targets file's ``population`` column.
    """

    population_by: tuple[str, ...] = ()
    factors: tuple[WeightFactor, ...] = ()


class RakeConfig(_Model):
    """Rake to the wave's targets file, separately within ``by`` groups."""

    variables: Annotated[tuple[str, ...], Field(min_length=1)]
    by: tuple[str, ...] = ()
    max_iter: Annotated[int, Field(ge=1)] = 50
    tolerance: Annotated[float, Field(gt=0, lt=1)] = 1e-3
    accept_nonconvergence: bool = False
    impute: Literal["mode", "none"] = "mode"


class TrimConfig(_Model):
    """Cap weights at ``upper`` x and floor them at ``lower`` x the group median (or mean)."""

    lower: Annotated[float, Field(gt=0)] | None = None
    upper: Annotated[float, Field(gt=0)] | None = None
    relative_to: Literal["median", "mean", "absolute"] = "median"
    by: tuple[str, ...] = ()
    strict: bool = False
    rerake: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> TrimConfig:
        if self.lower is None and self.upper is None:
            raise ValueError("give lower, upper or both")
        if self.lower is not None and self.upper is not None and self.upper <= self.lower:
            raise ValueError(f"upper must be greater than lower (got lower={self.lower} and upper={self.upper})")
        return self


class WeightQA(_Model):
    """Limits that fail the weight stage when exceeded."""

    max_kish_deff: Annotated[float, Field(ge=1)] | None = None
    max_margin_error: Annotated[float, Field(gt=0)] | None = 0.005


class WeightConfig(_Model):
    base: BaseWeightConfig = BaseWeightConfig()
    rake: RakeConfig | None = None
    trim: TrimConfig | None = None
    qa: WeightQA = WeightQA()
    targets_columns: Mapping[str, str] = Field(default_factory=dict)
    """Rename targets-file columns to data columns, e.g. ``{county: COUNTY}``."""


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
        if (self.type == "Fay" or self.build == "Fay") and self.rho is None:
            raise ValueError("Fay replicates need rho")
        return self


class DesignConfig(_Model):
    """The sampling design used for variance estimation, and the default CI."""

    weights: str = "w_pop"
    """Population-scaled by default: R's design effect uses N = the sum of the weights."""
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


class TablesConfig(_Model):
    """Reliability rule and layout of the published tables."""

    min_n: Annotated[int, Field(ge=0)] = 30
    decimals: Annotated[int, Field(ge=0, le=4)] = 0


class ExportConfig(_Model):
    formats: tuple[Literal["csv", "markdown"], ...] = ("csv", "markdown")


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

    def stage_slice(self, stage: str, wave_id: str) -> dict[str, Any]:
        """The part of the config a stage depends on (for its fingerprint)."""
        w = self.wave(wave_id)
        dump = lambda m: json.loads(m.model_dump_json())  # noqa: E731
        if stage == "ingest":
            return {"wave": {"id": w.id, "raw": str(w.raw)}, "ingest": dump(self.ingest)}
        if stage == "clean":
            return {"field_dates": [str(d) for d in w.field_dates] if w.field_dates else None, "clean": dump(self.clean)}
        if stage == "weight":
            replicate = {k: v for k, v in dump(self.design).items() if k in ("weights", "strata", "ids", "fpc", "nest", "variance", "replicates")}
            return {"targets": str(w.targets) if w.targets else None, "weight": dump(self.weight), "design": replicate}
        if stage == "estimate":
            return {"design": dump(self.design), "rake": dump(self.weight.rake) if self.weight.rake else None, "estimates": [dump(e) for e in self.estimates], "tables": dump(self.tables)}
        if stage == "export":
            return {"title": self.title, "notice": self.notice, "tables": dump(self.tables), "export": dump(self.export)}
        raise ValueError(stage)


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
    problems = _check_paths(config) + _check_expressions(config)
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
    text = repr(value)
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
    import polars as pl

    items: list[tuple[str, str]] = []
    items += [(f"clean.derive[{i}].expr", d.expr) for i, d in enumerate(config.clean.derive)]
    items += [(f"clean.recodes[{i}].when", r.when) for i, r in enumerate(config.clean.recodes) if r.when]
    items += [(f"weight.base.factors[{i}].expr", f.expr) for i, f in enumerate(config.weight.base.factors)]
    problems = []
    for key, text in items:
        try:
            pl.sql_expr(text)
        except Exception as exc:  # polars raises SQLInterfaceError / SQLSyntaxError
            problems.append(f"{key}: cannot parse the expression {text!r}: {exc}")
    return problems


def parse_expr(text: str) -> Any:
    """Parse an SQL expression into a polars expression (never ``eval``)."""
    import polars as pl

    return pl.sql_expr(text)

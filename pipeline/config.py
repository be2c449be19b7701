"""The study config: pydantic models (frozen, unknown keys rejected) and ``load_config``.

One YAML file describes a study: its waves (raw deliveries and targets), and one section per
stage (``ingest``, ``clean``, ``weight``, ``design`` + ``estimates``, ``tables`` + ``export``).
Every problem of a config is reported at once, each with its key path and the file; unknown
keys get a "did you mean". Paths are relative to the config file and must stay inside the
project (see :func:`project_root`). Expressions (derived variables, weight factors, recode
conditions, checks, skips, the respondent flag) are parsed and checked against the expression
language's allow-list at load time by :mod:`pipeline.expressions`, which compiles them to polars
expressions; they are never ``eval``-ed nor handed to an SQL engine.

This module owns the entry point: :class:`StudyConfig` (the whole config and its derived
facts), :func:`load_config`, :func:`project_root`, the checks across sections run at load time,
and the description of validation errors (key paths, "did you mean", values as YAML spells
them). The section models live by concern in :mod:`pipeline._config_data` (``waves``,
``ingest``, ``clean``), :mod:`pipeline._config_weight` (``weight``, ``design``) and
:mod:`pipeline._config_output` (``estimates``, ``tables``, ``export``, ``methods``,
``harmonize``, ``trends``), on the base model of :mod:`pipeline._config_base`; every name of
them is re-exported here, so ``from pipeline.config import ...`` is the one import path.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from pipeline._config_base import Code, _Model  # noqa: F401 - re-exported
from pipeline._config_data import (  # noqa: F401 - re-exported
    Action,
    CleanConfig,
    Check,
    Derive,
    DuplicateRule,
    ExtraMissing,
    FieldPeriodRule,
    IngestConfig,
    InterviewerRule,
    MissingConfig,
    NearDuplicateRule,
    PartialRule,
    Recode,
    RowAction,
    SkipRule,
    SpeederRule,
    StraightLineRule,
    ValidCodes,
    Wave,
)
from pipeline._config_models import FAMILIES, ModelSpec  # noqa: F401 - re-exported
from pipeline._config_output import (  # noqa: F401 - re-exported
    STATISTICS,
    BannerSpec,
    CrosstabSpec,
    DisclosureConfig,
    EstimateSpec,
    ExportConfig,
    ExportFormat,
    HarmonizeConfig,
    MethodsConfig,
    ReliabilityConfig,
    SameMeaning,
    SignificanceConfig,
    TableId,
    TablesConfig,
    ToplineSpec,
    TrendsConfig,
    TrendSpec,
)
from pipeline._config_weight import (  # noqa: F401 - re-exported
    CALIBRATION_KEYS,
    BaseWeightConfig,
    CalibrateConfig,
    CIMethod,
    DesignConfig,
    NonresponseConfig,
    PoststratifyConfig,
    RakeConfig,
    ReplicateConfig,
    TrimConfig,
    WeightConfig,
    WeightFactor,
    WeightQA,
)
from pipeline.errors import ConfigError

STAGES = ("ingest", "clean", "weight", "estimate", "export")
Stage = Literal["ingest", "clean", "weight", "estimate", "export"]


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
    models: tuple[ModelSpec, ...] = ()
    tables: TablesConfig = TablesConfig()
    export: ExportConfig = ExportConfig()
    methods: MethodsConfig = MethodsConfig()
    harmonize: HarmonizeConfig = HarmonizeConfig()
    trends: TrendsConfig = TrendsConfig()

    # where the file lives; set by load_config, not by the YAML
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_ids(self) -> StudyConfig:
        for what, ids in (("waves", [w.id for w in self.waves]), ("estimates", [e.id for e in self.estimates]), ("models", [m.id for m in self.models])):
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
        out: dict[str, EstimateSpec] = {}
        for e in self.estimates:
            if e.variable in gone or set(e.variables) & gone:
                continue
            by = tuple(b for b in e.by if not set(b) & gone)
            if e.compared:  # a difference: of the estimates the wave makes, by the domains they have
                if not all(i in out for i in e.compared):
                    continue
                inner = (e.difference.domain,) if e.difference is not None and e.difference.domain else ()
                by = tuple(b for b in by if all((*b, *inner) in out[i].by for i in e.compared))
            out[e.id] = e if by == e.by else e.model_copy(update={"by": by})
        return tuple(out.values())


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
    items += [(f"models[{i}].subpopulation", m.subpopulation) for i, m in enumerate(config.models) if m.subpopulation]
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
    problems += _difference_problems(config.estimates)
    for i, banner in enumerate(config.tables.banners):
        chosen = [known[e] for e in banner.estimates if e in known] or list(known.values())
        for j, by in enumerate(banner.columns):
            if by and not any(tuple(by) in {tuple(b) for b in e.by} for e in chosen):
                problems.append(
                    f"tables.banners[{i}].columns[{j}]: no estimate of the banner is estimated by {list(by)}; "
                    "add it to the estimates' by lists"
                )
    return problems


def _difference_problems(estimates: tuple[EstimateSpec, ...]) -> list[str]:
    """A difference compares configured estimates, each estimated by the difference's domains
    (and, between domains, by its domain variable within them), of statistics that have
    covariances (not quantiles) and, between two estimates, the same statistic with one row each."""
    known = {e.id: e for e in estimates}
    problems = []
    for i, e in enumerate(estimates):
        d = e.difference
        if d is None:
            continue
        key = f"estimates[{i}].difference ({e.id})"
        for name in e.compared:
            other = known.get(name)
            if other is None:
                close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
                problems.append(f"{key}: no estimate with id '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""))
                continue
            if other.statistic in ("difference", "quantile"):
                problems.append(f"{key}: {name} is a {other.statistic}; a difference is of proportions, means, totals or ratios")
                continue
            if not d.between_domains and other.statistic == "proportion" and other.levels is None:
                problems.append(
                    f"{key}: {name} has a row per answer; a difference between two estimates compares one number each: "
                    f"give {name} levels: [...] (or compare its domains with of: {name}, domain: VAR)"
                )
            inner = (d.domain,) if d.domain else ()
            for by in e.by:
                if (*by, *inner) not in other.by:
                    problems.append(f"{key}: {name} is not estimated by {list((*by, *inner))}; add {list((*by, *inner))} to the by of {name}")
        if not d.between_domains and all(n in known for n in e.compared):
            sa, sb = (known[str(n)].statistic for n in (d.a, d.b))
            if sa != sb:
                problems.append(f"{key}: {d.a} is a {sa} and {d.b} a {sb}; a difference between two estimates compares the same statistic")
    return problems


def parse_expr(text: str) -> Any:
    """The polars expression of a config expression (see :mod:`pipeline.expressions`)."""
    from pipeline import expressions

    return expressions.to_polars(text)

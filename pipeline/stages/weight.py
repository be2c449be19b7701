"""Weight: base weights, nonresponse classes, calibration, trimming, final scaling, QA, replicates.

The statistics live in :mod:`pipeline.survey.weighting`; this stage wires them to the config and
the targets file, and turns their errors into errors that name the file and the config key:

1. base weight ``w_base`` = a weight delivered with the data (``weight.base.column``, or a
   ``design.weights`` column used as the final weight as is), or N_h / n_h within
   ``weight.base.population_by`` groups (N_h from the targets file's ``population`` column), or
   else the weights R's ``svydesign`` derives from ``design.fpc`` (1 if there is none), times
   each ``weight.base.factors`` expression (household adults, dual-frame compositing, ...);
2. nonresponse adjustment by weighting classes (``weight.nonresponse``): within each class the
   respondents carry the base weight of the class's nonrespondents; small classes (or classes
   whose factor is too large) are merged with a neighbour, and every merge is reported. The
   nonrespondents then leave the weighted data (``weight/nonrespondents.parquet``);
3. missing calibration variables are imputed (``impute: mode``: the most common category in the
   respondent's group) and the imputations counted;
4. calibration to the targets' shares times the group's population, by the one configured
   method: ``weight.rake`` (iterative proportional fitting), ``weight.poststratify`` or
   ``weight.calibrate`` (linear/GREG, raking or logit distance, bounds on the g-weights), each
   within its ``by`` groups (:data:`CALIBRATION_STEPS`, keyed by the config section);
5. trimming at ``trim.lower``/``trim.upper`` x the group median (or mean, or absolute) within
   ``trim.by`` groups, then the calibration again, for up to ``trim.cycles`` cycles until the
   caps and the margins both hold (else a :class:`~pipeline.errors.CalibrationError`, unless
   ``trim.accept_outside_caps``);
6. ``w_final`` scaled to the sample size, ``w_pop`` to the population;
7. QA: the achieved margins against the targets (with the targets' ``source`` and ``year``),
   Kish design effect, effective n, margin of error; limits in ``weight.qa`` fail the stage.

Files written (under ``outputs/<study>/<wave>/``): ``weight/data.parquet`` (the respondents with
``w_base``, ``w_uncalibrated`` when a calibration is configured, ``w_final``, ``w_pop``),
``weight/codebook.json``, ``weight/weights.csv``, ``weight/margins.csv``, ``weight/qa.json``,
``weight/qa.md``; ``weight/nonrespondents.parquet`` with ``weight.nonresponse``; and the
replicate weights below when ``design.variance`` is ``replicate``.

Replicate weights (contract with the estimate stage)
----------------------------------------------------
When ``design.variance == "replicate"`` the stage always writes two files:

``weight/replicates.parquet``
    Columns ``raw_row`` (Int64) then ``rep_1`` .. ``rep_R`` (Float64); one row per row of
    ``weight/data.parquet``, in the same order, matched on ``raw_row``. The values are *final*
    analysis replicate weights (R's ``weights(design, "analysis")``, sampling weights included,
    i.e. ``combined_weights = TRUE``) on the scale of ``design.weights``: for ``w_pop`` they
    are on the population scale like ``w_pop``, for ``w_final`` on the sample-size scale (the
    replicate columns are multiplied by the same constant as the full-sample weight). A zero
    is a row out of that replicate (a deleted PSU). ``design.weights: w_base`` is allowed only
    when no weighting is configured (the replicate base weights are then final); a column the
    stage does not make (a delivered final weight, which is then ``w_base``) is allowed only with
    no weighting configured: its replicates, built from it or given, pass through unchanged.
``weight/replicates.json``
    ``{"type": "JK1"|"JKn"|"BRR"|"Fay"|"bootstrap"|"other", "scale": float, "rscales": [R
    floats], "rho": float|null, "mse": bool, "n_replicates": R}``, plus ``source`` (``build``
    or ``given``), ``weights`` (the ``design.weights`` column they match) and ``steps`` (the
    weighting steps redone in every replicate). ``scale``, ``rscales``, ``rho`` and ``mse``
    are the arguments of R's ``svrepdesign`` for these weights.

``design.replicates.build``: replicate base weights come from the linearization design
(``design.strata``, ``ids``, ``fpc``, ``nest``, ``lonely_psu``) with ``w_base``, through
:func:`pipeline.survey.replicates.as_replicate_design` (R ``as.svrepdesign``); then the whole
weighting is redone in every replicate: nonresponse factors per class, the calibration (the
engine's ``replicates=``, as R's ``rake``/``postStratify``/``calibrate`` on a replicate design),
trimming with caps recomputed from each replicate's own weights (rows out of the replicate stay
at zero) and the recalibration, for as many cycles as the full sample. Given replicate columns
(``columns``/``pattern``) are the starting replicate weights (multiplied by ``w_base`` when
``combined_weights: false``) and go through the same weighting; with no weighting configured
they pass through.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.config import STAGE_WEIGHTS, delivered_weight_problems
from pipeline.errors import ArgumentError, CalibrationError, ConfigError, DataError, TargetsError, translate_argument_error
from pipeline.stages import StageContext, StageOutput

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from pipeline.config import (
        CalibrateConfig,
        DesignConfig,
        NonresponseConfig,
        PoststratifyConfig,
        RakeConfig,
        TrimConfig,
        WeightConfig,
    )
    from pipeline.survey.weighting import WeightingResult

#: A weight counts as inside a trimming cap when within this relative distance of it.
CAP_RTOL = 1e-6
#: Column of the weights the last calibration step started from (needed for GREG residuals).
UNCALIBRATED = "w_uncalibrated"


@dataclass(frozen=True)
class WeightStageResult:
    """What :func:`weight` makes.

    Attributes
    ----------
    data : polars.DataFrame
        The respondents with ``w_base``, ``w_uncalibrated`` (when calibrated), ``w_final``, ``w_pop``.
    margins : polars.DataFrame
        Targets against unweighted, base-weighted and final shares (empty without calibration).
    qa : dict
        The QA report (JSON-ready).
    nonrespondents : polars.DataFrame or None
        The rows removed as nonrespondents, with their class and base weight.
    replicates : polars.DataFrame or None
        ``raw_row, rep_1 .. rep_R``: final replicate weights on the scale of ``design.weights``.
    replicates_meta : dict or None
        ``type, scale, rscales, rho, mse, n_replicates`` (+ ``source, weights, steps``).
    """

    data: pl.DataFrame
    margins: pl.DataFrame
    qa: dict[str, Any]
    nonrespondents: pl.DataFrame | None = None
    replicates: pl.DataFrame | None = None
    replicates_meta: dict[str, Any] | None = None


@contextmanager
def _context(where: str, *, hint: str | None = None) -> Iterator[None]:
    """Prefix an engine error with the file and config key it comes from (keeping its class)."""
    try:
        yield
    except (TargetsError, CalibrationError, DataError) as exc:
        raise type(exc)(f"{where}: {exc.message}", hint=hint or exc.hint) from exc
    except ArgumentError as exc:  # an option the statistics do not support: a config problem
        raise translate_argument_error(exc, where, prefix="design") from exc


def _raw_rows(frame: pl.DataFrame, mask: np.ndarray, limit: int = 5) -> list[int]:
    """The ``raw_row`` of the first rows in ``mask`` (1-based positions without that column)."""
    import numpy as np

    positions = np.flatnonzero(mask)[:limit]
    if "raw_row" in frame.columns:
        return frame.get_column("raw_row").gather(positions).to_list()
    return (positions + 1).tolist()


# ----------------------------------------------------------------------------- base weights


def base_weight_source(config: WeightConfig, design: DesignConfig | None = None) -> tuple[str, str | None]:
    """Where ``w_base`` starts from, as ``(kind, config key or column)``.

    ``column``: a delivered weight (``weight.base.column``, or ``design.weights`` naming a data
    column: a final weight used as is); ``population_by``: N_h / n_h; ``fpc``: derived from
    ``design.fpc`` as R's ``svydesign`` does with neither weights nor probs; ``equal``: all 1
    (R's "No weights or probabilities supplied, assuming equal probability").
    """
    if config.base.column is not None:
        return "column", config.base.column
    if design is not None and design.weights not in STAGE_WEIGHTS:
        return "column", design.weights
    if config.base.population_by:
        return "population_by", None
    if design is not None and design.fpc:
        return "fpc", None
    return "equal", None


def delivered_weight(frame: pl.DataFrame, column: str, key: str) -> np.ndarray:
    """A weight delivered with the data: numeric, present and positive on every row.

    Raises ConfigError when ``column`` is not in the data or not numeric, DataError (naming the
    column and the raw rows) when it is missing or not positive on some rows.
    """
    import numpy as np
    import polars as pl

    if column not in frame.columns:
        raise ConfigError(
            f"{key}: {column} is not a column of the cleaned data",
            hint=f"name the delivered weight's column, or use one the weight stage makes ({', '.join(STAGE_WEIGHTS)})",
        )
    s = frame.get_column(column)
    if not s.dtype.is_numeric():
        raise ConfigError(f"{key}: {column} holds {s.dtype} values; a weight must be a number", hint=f"cast {column} in clean.derive")
    values = s.cast(pl.Float64)
    bad = (values.is_null() | values.is_nan() | (values <= 0) | values.is_infinite()).fill_null(True).to_numpy()
    if bad.any():
        missing = int((values.is_null() | values.is_nan()).sum())
        raise DataError(
            f"{key}: the delivered weight {column} is missing or not positive on {int(bad.sum())} row(s) "
            f"({missing} missing, {int(bad.sum()) - missing} zero, negative or infinite; raw rows {_raw_rows(frame, bad)})",
            hint=f"every respondent needs a positive {column}; drop those rows in cleaning (clean.required: [{column}]) or ask the vendor",
        )
    return values.to_numpy().astype(np.float64)


def fpc_weights(frame: pl.DataFrame, design: DesignConfig) -> np.ndarray:
    """Sampling weights derived from ``design.fpc`` as R's ``svydesign`` (no weights, no probs):
    ``1 / prod_s(n_s / N_s)`` over the stages of ``design.ids``, n_s / N_s the stage's sampling
    fraction in the row's stratum."""
    from pipeline.survey.design import Design

    missing = [c for c in (*design.strata, *design.ids, *design.fpc) if c not in frame.columns]
    if missing:
        raise ConfigError(f"design: variable(s) {', '.join(missing)} are not in the cleaned data", hint="check design.strata, design.ids and design.fpc")
    try:
        lin = Design.from_frame(
            frame, ids=list(design.ids), strata=list(design.strata) or None, fpc=list(design.fpc),
            nest=design.nest, lonely_psu=design.lonely_psu,
        )
    except ArgumentError as exc:
        raise ConfigError(
            f"design.fpc: {exc.message.removeprefix('design: ')}",
            hint="declare the sampling weight (weight.base.column: <column>), or give every stage a finite population in design.fpc",
        ) from exc
    except DataError as exc:
        raise type(exc)(f"design.fpc: the base weights come from the fpc, but {exc.message.removeprefix('design: ')}", hint=exc.hint) from exc
    return lin.weights.copy()


def base_weights(
    frame: pl.DataFrame, targets: pl.DataFrame | None, config: WeightConfig, *, design: DesignConfig | None = None,
    targets_name: str = "the targets file",
) -> np.ndarray:
    """``w_base``: the starting weight (:func:`base_weight_source`) times the configured factors."""
    import numpy as np
    import polars as pl

    from pipeline.config import parse_expr

    by = list(config.base.population_by)
    w = np.ones(frame.height)
    source, column = base_weight_source(config, design)
    if source == "column":
        w = delivered_weight(frame, column, "weight.base.column" if config.base.column is not None else "design.weights")
    elif source == "fpc":
        w = fpc_weights(frame, design)
    if by:
        if targets is None or "population" not in targets.columns:
            raise ConfigError(
                "weight.base.population_by needs a targets file with a 'population' column",
                hint="add 'targets:' to the wave, or remove weight.base.population_by",
            )
        _check_group_columns(frame, targets, by, targets_name, "weight.base.population_by")
        pops = targets.select([*by, "population"]).unique()
        dup = pops.group_by(by).len().filter(pl.col("len") > 1)
        if dup.height:
            raise TargetsError(f"targets: more than one population value for group(s) {dup.select(by).rows()} of {by}")
        counts = frame.group_by(by).len(name="n_h")
        joined = frame.select(by).with_row_index("_i").join(counts, on=by, how="left").join(pops, on=by, how="left").sort("_i")
        missing = joined.filter(pl.col("population").is_null())
        if missing.height:
            groups = sorted(set(missing.select(by).rows()))
            raise TargetsError(
                f"targets: no population for group(s) {groups} of {', '.join(by)}",
                hint="every group in the data needs a population total in the targets file",
            )
        _check_populations(joined.select([*by, "population"]).unique(maintain_order=True), by, targets_name, "weight.base.population_by")
        w = (joined.get_column("population") / joined.get_column("n_h")).to_numpy().astype(float)
    for i, factor in enumerate(config.base.factors):
        values = frame.select(parse_expr(factor.expr).cast(pl.Float64).alias("f")).get_column("f")
        bad = values.is_null() | (values <= 0)
        if bad.any():
            rows = frame.filter(bad).get_column("raw_row").head(5).to_list() if "raw_row" in frame.columns else []
            raise DataError(
                f"weight.base.factors[{i}] ({factor.name}): {int(bad.sum())} row(s) get a missing or non-positive factor "
                f"from {factor.expr!r} (raw rows {rows})",
                hint="make the expression return a positive number for every row, e.g. with COALESCE",
            )
        w = w * values.to_numpy()
    return w


def _kind(dtype: Any) -> str:
    return "numbers" if dtype.is_numeric() else "text" if str(dtype) == "String" else f"values of type {dtype}"


def _check_group_columns(frame: pl.DataFrame, targets: pl.DataFrame, by: Sequence[str], targets_name: str, key: str) -> None:
    """The group columns are in the targets file and coded as in the data (numbers or text in both)."""
    missing = [c for c in by if c not in targets.columns]
    if missing:
        raise TargetsError(
            f"{targets_name}: {key} column(s) {', '.join(missing)} are not in the targets file; found {', '.join(targets.columns)}",
            hint="name the group columns as in the data, or rename them with weight.targets_columns",
        )
    for c in by:
        t, d = targets.schema[c], frame.schema[c]
        if t != d and not (t.is_numeric() and d.is_numeric()):
            sample = frame.get_column(c).drop_nulls().head(1).to_list()
            raise TargetsError(
                f"{targets_name}: {key} column {c} holds {_kind(t)} in the targets file but {_kind(d)} in the data"
                + (f" (first value {sample[0]})" if sample else ""),
                hint=f"code {c} the same way in the delivery and in the targets file",
            )


def _check_populations(pops: pl.DataFrame, by: Sequence[str], targets_name: str, key: str) -> None:
    """A group with respondents needs a positive population: name the targets file and the group."""
    import polars as pl

    p = pl.col("population").cast(pl.Float64)
    bad = pops.filter(p.is_null() | ~p.is_finite() | (p <= 0))
    if bad.height:
        row = bad.row(0, named=True)
        group = ", ".join(f"{c} = {row[c]}" for c in by) if by else "the whole population"
        raise TargetsError(
            f"{targets_name} ({key}): the population of group {group} is {row['population']}, but the group has respondents; "
            f"expected a positive number of people ({bad.height} group(s) like this)",
            hint=f"correct the 'population' column of {targets_name} for {group}, or leave the group's respondents out of the wave",
        )


def impute_mode(frame: pl.DataFrame, variables: list[str], by: list[str]) -> tuple[pl.DataFrame, dict[str, int]]:
    """Fill nulls of each variable with its most common value within ``by`` (ties: smallest)."""
    import polars as pl

    counts: dict[str, int] = {}
    for v in variables:
        n = int(frame.get_column(v).null_count())
        counts[v] = n
        if n == 0:
            continue
        keys = by or []
        mode = (
            frame.filter(pl.col(v).is_not_null())
            .group_by([*keys, v])
            .len()
            .sort([*keys, "len", v], descending=[*([False] * len(keys)), True, False])
            .group_by(keys or pl.lit(1), maintain_order=True)
            .first()
        )
        if keys:
            frame = frame.join(mode.select([*keys, pl.col(v).alias("_mode")]), on=keys, how="left")
        else:
            frame = frame.with_columns(pl.lit(mode.get_column(v)[0]).alias("_mode"))
        frame = frame.with_columns(pl.col(v).fill_null(pl.col("_mode"))).drop("_mode")
    return frame, counts


# ---------------------------------------------------------------------------- nonresponse


@dataclass(frozen=True)
class NonresponseAdjustment:
    """Weighting-class nonresponse adjustment of one sample.

    Attributes
    ----------
    respondent : ndarray of bool, shape (n,)
    class_index : ndarray of int, shape (n,)
        Final (collapsed) class of every row, ``0 .. n_classes - 1``.
    factor : ndarray, shape (n,)
        Adjustment factor of every respondent (0 for nonrespondents).
    classes : list of dict
        Per final class: ``class`` (label), ``cells`` (the original classes merged into it),
        ``respondents``, ``nonrespondents``, ``factor``.
    collapses : list of dict
        Every merge, in order: ``class``, ``into``, ``reason``.
    """

    respondent: np.ndarray
    class_index: np.ndarray
    factor: np.ndarray
    classes: list[dict[str, Any]]
    collapses: list[dict[str, Any]]


def _common_prefix(a: tuple[Any, ...], b: tuple[Any, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def collapse_classes(
    keys: Sequence[tuple[Any, ...]],
    respondents: Sequence[float],
    w_all: Sequence[float],
    w_respondents: Sequence[float],
    *,
    min_respondents: int,
    max_factor: float | None,
    label: Callable[[tuple[Any, ...]], str],
) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """Merge weighting classes until every class meets the rules.

    ``keys`` are the classes' values of the class variables, sorted. Repeatedly, the first class
    (in that order) with fewer than ``min_respondents`` respondents, or with a factor
    ``w_all / w_respondents`` above ``max_factor``, is merged with the adjacent class that shares
    more leading class variables with it (the next one on a tie; the previous one for the last).

    Returns
    -------
    groups : list of list of int
        The final classes as lists of indices into ``keys`` (contiguous, in order).
    collapses : list of dict
        ``{"class", "into", "reason"}`` for every merge.

    Raises
    ------
    CalibrationError
        When even one class holding everything breaks a rule.
    """
    groups = [[i] for i in range(len(keys))]

    def stats(g: list[int]) -> tuple[float, float]:
        r = sum(respondents[i] for i in g)
        wr = sum(w_respondents[i] for i in g)
        f = math.inf if wr <= 0 else sum(w_all[i] for i in g) / wr
        return r, f

    def name(g: list[int]) -> str:
        return " + ".join(label(keys[i]) for i in g)

    collapses: list[dict[str, Any]] = []
    while True:
        failing = None
        for j, g in enumerate(groups):
            r, f = stats(g)
            if r < min_respondents:
                failing, reason = j, f"{int(r)} respondent(s), fewer than min_respondents = {min_respondents}"
                break
            if max_factor is not None and f > max_factor:
                failing, reason = j, f"adjustment factor {f:.4g} above max_factor = {max_factor:g}"
                break
        if failing is None:
            return groups, collapses
        if len(groups) == 1:
            r, f = stats(groups[0])
            raise CalibrationError(
                f"weight.nonresponse: even a single class of all rows breaks the rules ({int(r)} respondent(s), "
                f"adjustment factor {f:.4g}; min_respondents = {min_respondents}, max_factor = {max_factor})",
                hint="lower weight.nonresponse.min_respondents or raise weight.nonresponse.max_factor",
            )
        j = failing
        candidates = []
        if j + 1 < len(groups):
            candidates.append((_common_prefix(keys[groups[j][-1]], keys[groups[j + 1][0]]), 1, j + 1))
        if j > 0:
            candidates.append((_common_prefix(keys[groups[j - 1][-1]], keys[groups[j][0]]), 0, j - 1))
        _, _, k = max(candidates)  # longest shared prefix; on a tie the next class (flag 1)
        collapses.append({"class": name(groups[j]), "into": name(groups[k]), "reason": reason})
        lo, hi = min(j, k), max(j, k)
        groups[lo:hi + 1] = [groups[lo] + groups[hi]]


def nonresponse_adjustment(frame: pl.DataFrame, w_base: np.ndarray, config: NonresponseConfig) -> NonresponseAdjustment:
    """Weighting-class nonresponse adjustment with collapsing (see :func:`collapse_classes`)."""
    import numpy as np
    import polars as pl

    from pipeline.config import parse_expr

    classes = list(config.classes)
    missing_cols = [c for c in classes if c not in frame.columns]
    if missing_cols:
        raise ConfigError(
            f"weight.nonresponse.classes: variable(s) {', '.join(missing_cols)} are not in the cleaned data",
            hint="class variables come from the sample frame (known for nonrespondents too)",
        )
    try:
        flag = frame.select(parse_expr(config.respondent).alias("_r")).get_column("_r")
    except Exception as exc:  # polars raises several error types for bad columns/types
        raise ConfigError(f"weight.nonresponse.respondent: cannot evaluate {config.respondent!r} on the cleaned data: {exc}") from exc
    if flag.dtype != pl.Boolean:
        raise ConfigError(
            f"weight.nonresponse.respondent: {config.respondent!r} gives {flag.dtype} values; expected true/false",
            hint="write a condition, e.g. 'STATUS = 1'",
        )
    if flag.null_count():
        mask = flag.is_null().to_numpy()
        raise DataError(
            f"weight.nonresponse.respondent: {config.respondent!r} is unknown (missing) on {int(mask.sum())} row(s) "
            f"(raw rows {_raw_rows(frame, mask)})",
            hint="every row must be a respondent or a nonrespondent; handle missing values with COALESCE",
        )
    for c in classes:
        nulls = frame.get_column(c).is_null()
        if nulls.any():
            raise DataError(
                f"weight.nonresponse.classes: {c} is missing on {int(nulls.sum())} row(s) (raw rows {_raw_rows(frame, nulls.to_numpy())})",
                hint="class variables must be known for every row, respondents and nonrespondents",
            )
    respondent = flag.to_numpy().astype(bool)
    cells = (
        frame.select(classes)
        .with_columns(pl.Series("_r", respondent), pl.Series("_w", w_base))
        .group_by(classes)
        .agg(
            pl.col("_r").sum().alias("respondents"),
            (~pl.col("_r")).sum().alias("nonrespondents"),
            pl.col("_w").sum().alias("w_all"),
            pl.col("_w").filter(pl.col("_r")).sum().alias("w_respondents"),
        )
        .sort(classes)
    )
    keys = cells.select(classes).rows()

    def label(key: tuple[Any, ...]) -> str:
        return ", ".join(f"{c}={v}" for c, v in zip(classes, key))

    groups, collapses = collapse_classes(
        keys,
        cells.get_column("respondents").to_list(),
        cells.get_column("w_all").to_list(),
        cells.get_column("w_respondents").to_list(),
        min_respondents=config.min_respondents,
        max_factor=config.max_factor,
        label=label,
    )
    cell_class = np.empty(len(keys), dtype=np.int64)
    for k, g in enumerate(groups):
        cell_class[g] = k
    cell_of_row = (
        frame.select(classes).with_row_index("_i")
        .join(cells.select(classes).with_row_index("_cell"), on=classes, how="left")
        .sort("_i").get_column("_cell").to_numpy().astype(np.int64)
    )
    class_index = cell_class[cell_of_row]
    n_classes = len(groups)
    w_all = np.bincount(class_index, weights=w_base, minlength=n_classes)
    w_resp = np.bincount(class_index, weights=np.where(respondent, w_base, 0.0), minlength=n_classes)
    class_factor = w_all / w_resp
    report = []
    for k, g in enumerate(groups):
        in_class = class_index == k
        report.append(
            {
                "class": " + ".join(label(keys[i]) for i in g),
                "cells": [dict(zip(classes, keys[i])) for i in g],
                "respondents": int((in_class & respondent).sum()),
                "nonrespondents": int((in_class & ~respondent).sum()),
                "factor": float(class_factor[k]),
            }
        )
    factor = np.where(respondent, class_factor[class_index], 0.0)
    return NonresponseAdjustment(respondent=respondent, class_index=class_index, factor=factor, classes=report, collapses=collapses)


def _nonresponse_replicates(reps: np.ndarray, nr: NonresponseAdjustment) -> tuple[np.ndarray, int]:
    """Redo the class factors in every replicate; returns the respondents' rows and the number of
    (class, replicate) pairs with no respondent weight (their weight cannot be carried)."""
    import numpy as np

    out = np.zeros_like(reps)
    lost = 0
    for k in range(len(nr.classes)):
        rows = nr.class_index == k
        resp = rows & nr.respondent
        total = reps[rows].sum(axis=0)
        carried = reps[resp].sum(axis=0)
        empty = carried <= 0
        lost += int((empty & (total > 0)).sum())
        factor = np.where(empty, 1.0, total / np.where(empty, 1.0, carried))
        out[resp] = reps[resp] * factor
    return out[nr.respondent], lost


# ------------------------------------------------------------------------------- calibration

def _rake_step(frame: pl.DataFrame, *, weight: str, totals: pl.DataFrame, section: RakeConfig, replicates: np.ndarray | None) -> WeightingResult:
    from pipeline.survey.weighting import rake

    return rake(
        frame, weight=weight, targets=totals, by=list(section.by), max_iter=section.max_iter,
        tolerance=section.tolerance, accept_nonconvergence=section.accept_nonconvergence, replicates=replicates,
    )


def _poststratify_step(frame: pl.DataFrame, *, weight: str, totals: pl.DataFrame, section: PoststratifyConfig, replicates: np.ndarray | None) -> WeightingResult:
    from pipeline.survey.weighting import poststratify

    return poststratify(frame, weight=weight, targets=totals, by=list(section.by), replicates=replicates)


def _calibrate_step(frame: pl.DataFrame, *, weight: str, totals: pl.DataFrame, section: CalibrateConfig, replicates: np.ndarray | None) -> WeightingResult:
    from pipeline.survey.weighting import calibrate

    bounds = section.bounds if section.bounds is not None else (-math.inf, math.inf)
    return calibrate(
        frame, weight=weight, targets=totals, by=list(section.by), method=section.method, bounds=bounds,
        max_iter=section.max_iter, epsilon=section.epsilon, accept_nonconvergence=section.accept_nonconvergence,
        replicates=replicates,
    )


#: The calibration steps, keyed by their ``weight`` config section (the config vocabulary).
CALIBRATION_STEPS: dict[str, Callable[..., WeightingResult]] = {
    "rake": _rake_step,
    "poststratify": _poststratify_step,
    "calibrate": _calibrate_step,
}

#: Name of the calibration step redone after trimming, by config section.
_RECALIBRATE = {"rake": "rerake", "poststratify": "repoststratify", "calibrate": "recalibrate"}


def _step_name(key: str, section: Any) -> str:
    return f"calibrate:{section.method}" if key == "calibrate" else key


def _nonconvergence_hint(key: str) -> str:
    if key == "calibrate":
        return (
            "widen weight.calibrate.bounds, collapse sparse categories, raise weight.calibrate.max_iter, "
            "or set weight.calibrate.accept_nonconvergence: true to keep these weights"
        )
    return (
        f"raise weight.{key}.max_iter, collapse sparse categories, check that the targets are consistent, "
        f"or set weight.{key}.accept_nonconvergence: true to keep these weights"
    )


def _run_calibration(
    key: str, section: Any, frame: pl.DataFrame, w: np.ndarray, totals: pl.DataFrame, reps: np.ndarray | None, *, where: str, targets_name: str
) -> WeightingResult:
    import polars as pl

    step = CALIBRATION_STEPS[key]
    work = frame.with_columns(pl.Series("_w", w))
    try:
        return step(work, weight="_w", totals=totals, section=section, replicates=reps)
    except CalibrationError as exc:
        if "did not converge" in exc.message:
            raise CalibrationError(f"{where}: {exc.message}", hint=_nonconvergence_hint(key)) from exc
        if exc.message.startswith("empty cell"):
            raise CalibrationError(f"{targets_name} ({where}): {exc.message}", hint=exc.hint) from exc
        raise CalibrationError(f"{where}: {exc.message}", hint=exc.hint) from exc
    except TargetsError as exc:
        raise TargetsError(f"{targets_name} ({where}): {exc.message}", hint=exc.hint) from exc
    except DataError as exc:
        raise DataError(f"{where}: {exc.message}", hint=exc.hint) from exc


def _targets_for(targets: pl.DataFrame | None, key: str, section: Any, frame: pl.DataFrame, targets_name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The shares of the section's variables and their population totals (engine format)."""
    import polars as pl

    from pipeline.survey.weighting import targets_from_shares

    if targets is None:
        raise ConfigError(f"weight.{key} needs the wave's 'targets' file", hint="add 'targets: <file>' to the wave")
    by, variables = list(section.by), list(section.variables)
    missing_cols = [c for c in [*by, *variables] if c not in frame.columns]
    if missing_cols:
        raise ConfigError(f"weight.{key}: variable(s) {', '.join(missing_cols)} are not in the cleaned data", hint="derive them in clean.derive")
    for col in ("share", "population"):
        if col not in targets.columns:
            raise TargetsError(f"{targets_name}: weight.{key} needs a '{col}' column in the targets file; found {targets.columns}")
    missing_by = [c for c in by if c not in targets.columns]
    if missing_by:
        raise TargetsError(
            f"{targets_name}: weight.{key}.by column(s) {', '.join(missing_by)} are not in the targets file; found {targets.columns}",
            hint="name the group columns as in the data, or rename them with weight.targets_columns",
        )
    present = set(targets.get_column("variable").cast(pl.String).to_list())
    absent = [v for v in variables if v not in present]
    if absent:
        raise TargetsError(
            f"{targets_name}: no rows for weight.{key} variable(s) {', '.join(absent)}",
            hint=f"add them to the targets file or remove them from weight.{key}",
        )
    shares = targets.filter(pl.col("variable").is_in(variables)).with_columns(pl.col("category").cast(pl.Int64))
    pops = shares.select([*by, "population"]).unique(maintain_order=True)
    if by and all(pops.schema[b] == frame.schema[b] for b in by):
        pops = pops.join(frame.select(by).unique(), on=by, how="semi")  # groups without respondents are reported elsewhere
    _check_populations(pops, by, targets_name, f"weight.{key}")
    with _context(f"{targets_name} (weight.{key})"):
        totals = targets_from_shares(shares, by=by, share="share", population="population")
    return shares, totals


def targets_provenance(targets: pl.DataFrame, variables: Sequence[str], *, file: str) -> dict[str, Any]:
    """The targets' ``source`` and ``year`` per variable (null where the file has no such column)."""
    import polars as pl

    cols = [c for c in ("source", "year") if c in targets.columns]
    rows = targets.filter(pl.col("variable").is_in(list(variables)))
    sources = []
    for v in variables:
        sub = rows.filter(pl.col("variable") == v)
        entry: dict[str, Any] = {"variable": v}
        for c in ("source", "year"):
            values = sorted({str(x) for x in sub.get_column(c).drop_nulls().to_list()}) if c in cols else []
            entry[c] = "; ".join(values) if values else None
        sources.append(entry)
    return {"file": file, "sources": sources}


def achieved_margins(frame: pl.DataFrame, targets: pl.DataFrame, variables: list[str], by: list[str], weights: dict[str, str]) -> pl.DataFrame:
    """Target share against unweighted and weighted shares, per group, variable and category."""
    import numpy as np
    import polars as pl

    def sums(keys: list[str]) -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
        # weighted sums by np.bincount, in row order: the same bytes every run (a polars
        # group_by sum adds in an order that can vary between runs with the threads)
        cells = frame.select(keys).unique().sort(keys, nulls_last=True).with_row_index("_cell")
        code = frame.select(keys).join(cells, on=keys, how="left", nulls_equal=True, maintain_order="left").get_column("_cell").to_numpy()
        out = {"n": np.bincount(code, minlength=cells.height)}
        for name, w in weights.items():
            out[name] = np.bincount(code, weights=frame.get_column(w).to_numpy().astype(np.float64), minlength=cells.height)
        return cells.drop("_cell"), out

    parts = []
    for v in variables:
        cells, cell_sums = sums([*by, v])
        if by:
            groups, group_sums = sums(by)
            at = cells.select(by).join(groups.with_row_index("_g"), on=by, how="left", nulls_equal=True, maintain_order="left").get_column("_g").to_numpy()
        else:
            group_sums = {k: np.array([x.sum()]) for k, x in cell_sums.items()}
            at = np.zeros(cells.height, dtype=np.int64)
        g = cells.rename({v: "category"}).with_columns(
            pl.lit(v).alias("variable"),
            pl.Series("n", cell_sums["n"], dtype=pl.Int64),
            pl.Series("unweighted_share", cell_sums["n"] / group_sums["n"][at]),
            *[pl.Series(f"{k}_share", cell_sums[k] / group_sums[k][at]) for k in weights],
        )
        parts.append(g.select([*by, "variable", pl.col("category").cast(pl.Int64), "n", "unweighted_share", *[f"{k}_share" for k in weights]]))
    got = pl.concat(parts)
    t = targets.filter(pl.col("variable").is_in(variables)).select(
        [*by, "variable", pl.col("category").cast(pl.Int64), "share", *(["label"] if "label" in targets.columns else [])]
    )
    out = t.join(got, on=[*by, "variable", "category"], how="full", coalesce=True).rename({"share": "target_share"})
    # a target category no respondent has (share 0, dropped by the weighting): n 0 and shares 0
    absent = pl.col("n").is_null() & pl.col("target_share").is_not_null()
    out = out.with_columns(
        [pl.when(absent).then(0).otherwise(pl.col("n")).alias("n")]
        + [pl.when(absent).then(0.0).otherwise(pl.col(c)).alias(c) for c in ("unweighted_share", *[f"{k}_share" for k in weights])]
    )
    last = list(weights)[-1]
    return out.with_columns((pl.col(f"{last}_share") - pl.col("target_share")).alias("error")).sort([*by, "variable", "category"])


# ---------------------------------------------------------------------------------- trimming


def _group_codes(frame: pl.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Dense group code of every row and a label per group."""
    import numpy as np
    import polars as pl

    if not by:
        return np.zeros(frame.height, dtype=np.int64), ["the whole sample"]
    keys = frame.select(list(by))
    codes = keys.select(pl.struct(list(by)).rank("dense")).to_series().to_numpy().astype(np.int64) - 1
    labels = [""] * (int(codes.max()) + 1)
    for row, code in zip(keys.rows(), codes):
        if not labels[code]:
            labels[code] = "group " + ", ".join(f"{c}={v}" for c, v in zip(by, row))
    return codes, labels


def _centre(values: np.ndarray, relative_to: str) -> float:
    import numpy as np

    if relative_to == "median":
        return float(np.median(values))
    if relative_to == "mean":
        return float(np.mean(values))
    return 1.0


def trim_caps(w: np.ndarray, groups: np.ndarray, trim: TrimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-row lower and upper caps: ``lower``/``upper`` x the group's median (mean, or 1)."""
    import numpy as np

    lo = np.full(w.size, -np.inf)
    hi = np.full(w.size, np.inf)
    for g in range(int(groups.max()) + 1):
        rows = groups == g
        c = _centre(w[rows], trim.relative_to)
        if trim.lower is not None:
            lo[rows] = trim.lower * c
        if trim.upper is not None:
            hi[rows] = trim.upper * c
    return lo, hi


def _outside_caps(w: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return (w > hi * (1 + CAP_RTOL)) | (w < lo * (1 - CAP_RTOL))


def _trim_sample(w: np.ndarray, groups: np.ndarray, labels: list[str], trim: TrimConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Trim within each group with the engine's ``trim_weights`` (R ``trimWeights``)."""
    import numpy as np

    from pipeline.survey.weighting import trim_weights

    lo, hi = trim_caps(w, groups, trim)
    out = w.copy()
    counts = {"n_trimmed": 0, "n_trimmed_lower": 0, "n_trimmed_upper": 0, "redistributed": 0.0, "passes": 0}
    for g in range(len(labels)):
        rows = np.flatnonzero(groups == g)
        with _context(f"weight.trim ({labels[g]})"):
            res = trim_weights(w[rows], lower=lo[rows], upper=hi[rows], strict=trim.strict)
        out[rows] = res.weights
        counts["n_trimmed"] += res.n_trimmed
        counts["n_trimmed_lower"] += res.n_trimmed_lower
        counts["n_trimmed_upper"] += res.n_trimmed_upper
        counts["redistributed"] += float(res.redistributed)
        counts["passes"] = max(counts["passes"], res.iterations)
    return out, counts


def trim_replicates(reps: np.ndarray, groups: np.ndarray, trim: TrimConfig, *, max_iter: int = 100) -> np.ndarray:
    """Trim every replicate column as :func:`pipeline.survey.weighting.trim_weights` trims a sample.

    Within each group, the caps come from the replicate's own weights (its median, mean, or
    absolute) over the rows in the replicate (weight > 0); rows out of the replicate stay at zero.
    The trimmed amount is spread in equal parts over the group's other rows of the replicate
    (R ``trimWeights``); with ``strict`` this repeats until every weight is inside.
    """
    import numpy as np

    out = np.array(reps, dtype=np.float64, copy=True)
    for g in range(int(groups.max()) + 1):
        rows = np.flatnonzero(groups == g)
        block = out[rows]
        pos = block > 0
        masked = np.where(pos, block, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a replicate without rows in the group: no caps
            if trim.relative_to == "median":
                centre = np.nanmedian(masked, axis=0)
            elif trim.relative_to == "mean":
                centre = np.nanmean(masked, axis=0)
            else:
                centre = np.ones(block.shape[1])
        lo = np.full(block.shape[1], -np.inf) if trim.lower is None else trim.lower * centre
        hi = np.full(block.shape[1], np.inf) if trim.upper is None else trim.upper * centre
        for _ in range(max_iter):
            outside = pos & ((block < lo) | (block > hi))
            inside = pos & ~outside
            n_inside = inside.sum(axis=0)
            act = outside.any(axis=0) & (n_inside > 0)
            if not act.any():
                break
            clipped = np.where(pos, np.clip(block, lo, hi), 0.0)
            excess = (block - clipped).sum(axis=0)
            share = np.where(act, excess / np.maximum(n_inside, 1), 0.0)
            block = np.where(act, clipped + inside * share, block)
            if not trim.strict:
                break
        out[rows] = block
    return out


# ------------------------------------------------------------------------------- replicates


@dataclass(frozen=True)
class ReplicateStart:
    """Replicate base weights and the constants of their variance formula."""

    weights: np.ndarray
    type: str
    scale: float
    rscales: np.ndarray
    rho: float | None
    mse: bool
    source: str
    given: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


def replicate_base_weights(frame: pl.DataFrame, w_base: np.ndarray, design: DesignConfig) -> ReplicateStart:
    """Replicate base weights: built from the linearization design with ``w_base`` (R
    ``as.svrepdesign``), or the given replicate columns (R ``svrepdesign``)."""
    import re

    import numpy as np
    import polars as pl

    from pipeline.survey.design import Design
    from pipeline.survey.replicates import as_replicate_design

    rc = design.replicates
    assert rc is not None  # DesignConfig requires it with variance: replicate
    work = frame.with_columns(pl.Series("w_base", w_base))
    if rc.build is not None:
        missing = [c for c in (*design.strata, *design.ids, *design.fpc) if c not in frame.columns]
        if missing:
            raise ConfigError(f"design.replicates.build: design variable(s) {', '.join(missing)} are not in the cleaned data")
        options: dict[str, Any] = {"mse": rc.mse}
        kind = rc.build
        if kind == "Fay":
            options["rho"] = rc.rho
        if kind == "bootstrap":
            options["replicates"] = rc.replicates or 50
            options["seed"] = rc.seed
        with _context(f"design.replicates.build: {kind}"):
            lin = Design.from_frame(
                work, weights="w_base", ids=list(design.ids), strata=list(design.strata) or None,
                fpc=list(design.fpc), nest=design.nest, lonely_psu=design.lonely_psu,
            )
            built = as_replicate_design(lin, kind, **options)
        reps = built.replicates
        assert reps is not None
        return ReplicateStart(
            weights=np.array(reps.weights), type=reps.type,
            scale=float(rc.scale) if rc.scale is not None else reps.scale,
            rscales=np.asarray(rc.rscales, dtype=np.float64) if rc.rscales is not None else np.array(reps.rscales),
            rho=reps.rho, mse=reps.mse, source="build",
        )
    columns = list(rc.columns)
    if rc.pattern is not None:
        rx = re.compile(rc.pattern)
        columns += [c for c in frame.columns if rx.search(c) and c not in columns]
    if not columns:
        raise ConfigError(f"design.replicates.pattern: {rc.pattern!r} matches no column of the cleaned data")
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise ConfigError(f"design.replicates.columns: {', '.join(absent)} are not in the cleaned data")
    with _context("design.replicates"):
        try:
            given = Design.from_replicate_weights(
                work, replicate_weights=columns, weights="w_base", type=rc.type or "other",
                combined_weights=rc.combined_weights, scale=rc.scale, rscales=rc.rscales, rho=rc.rho, mse=rc.mse,
                fpc=rc.fpc, fpctype=rc.fpctype,
            )
        except ArgumentError as exc:
            raise ConfigError(f"design.replicates: {exc.message.removeprefix('design: ')} ({len(columns)} replicate columns)", hint=exc.hint) from exc
    reps = given.replicates
    assert reps is not None
    return ReplicateStart(
        weights=np.array(reps.weights), type=reps.type, scale=reps.scale, rscales=np.array(reps.rscales),
        rho=reps.rho, mse=reps.mse, source="given", given=True, notes={"columns": columns},
    )


# ------------------------------------------------------------------------------ the stage


def _weighting_configured(config: WeightConfig) -> bool:
    return config.nonresponse is not None or config.calibration is not None or config.trim is not None


def weight(
    frame: pl.DataFrame,
    targets: pl.DataFrame | None,
    config: WeightConfig,
    *,
    design: DesignConfig | None = None,
    targets_name: str = "targets",
) -> WeightStageResult:
    """Compute ``w_base``, ``w_final`` and ``w_pop`` (and replicate weights) for one wave's cleaned data.

    Parameters
    ----------
    frame : polars.DataFrame
        The cleaned data (respondents, and nonrespondents when ``weight.nonresponse`` is set).
    targets : polars.DataFrame or None
        The wave's targets file as read (``variable, category, share, population``, group
        columns, ``label``, ``source``, ``year``).
    config : WeightConfig
    design : DesignConfig, optional
        With ``variance: replicate`` the replicate weights are made too.
    targets_name : str
        How error messages name the targets file.
    """
    import numpy as np
    import polars as pl

    from pipeline.survey.weighting import weight_diagnostics

    if targets is not None and config.targets_columns:
        targets = targets.rename({k: v for k, v in config.targets_columns.items() if k in targets.columns})
    if design is not None and (problems := delivered_weight_problems(config, design)):
        raise ConfigError(problems[0])
    w_base_all = base_weights(frame, targets, config, design=design, targets_name=targets_name)
    source, column = base_weight_source(config, design)
    qa: dict[str, Any] = {"steps": [], "base": {"source": source, "column": column, "factors": [f.name for f in config.base.factors]}}
    qa["steps"].append({"step": "base", **weight_diagnostics(w_base_all).to_dict()})

    want_reps = design is not None and design.variance == "replicate"
    start = replicate_base_weights(frame, w_base_all, design) if want_reps else None
    reps = None if start is None else start.weights
    rep_steps: list[str] = []
    rep_notes: dict[str, Any] = {}

    # ---- nonresponse classes
    nonrespondents = None
    if config.nonresponse is not None:
        nr = nonresponse_adjustment(frame, w_base_all, config.nonresponse)
        resp = nr.respondent
        if not resp.any():
            raise DataError(f"weight.nonresponse.respondent: {config.nonresponse.respondent!r} is true on no row; nothing is left to weight")
        keep = list(dict.fromkeys(["raw_row", *config.nonresponse.classes])) if "raw_row" in frame.columns else list(config.nonresponse.classes)
        nonrespondents = (
            frame.filter(pl.Series(~resp)).select([c for c in keep if c in frame.columns])
            .with_columns(pl.Series("nonresponse_class", nr.class_index[~resp] + 1), pl.Series("w_base", w_base_all[~resp]))
        )
        w = (w_base_all * nr.factor)[resp]
        if reps is not None:
            reps, lost = _nonresponse_replicates(reps, nr)
            rep_steps.append("nonresponse")
            rep_notes["nonresponse_classes_without_respondents"] = lost
        frame = frame.filter(pl.Series(resp))
        w_base = w_base_all[resp]
        qa["nonresponse"] = {
            "respondent": config.nonresponse.respondent,
            "respondents": int(resp.sum()),
            "nonrespondents": int((~resp).sum()),
            "classes": nr.classes,
            "collapses": nr.collapses,
        }
        qa["steps"].append({"step": "nonresponse", **weight_diagnostics(w).to_dict()})
    else:
        w_base = w_base_all
        w = w_base_all.copy()
    frame = frame.with_columns(pl.Series("w_base", w_base))

    # ---- calibration, trimming, recalibration
    calibration = config.calibration
    iterations, converged = 0, True
    imputed: dict[str, int] = {}
    shares = None
    w_uncalibrated = None
    trim_report: dict[str, Any] | None = None
    if calibration is not None:
        key, section = calibration
        shares, totals = _targets_for(targets, key, section, frame, targets_name)
        qa["targets"] = targets_provenance(shares, list(section.variables), file=targets_name)
        if section.impute == "mode":
            frame, imputed = impute_mode(frame, list(section.variables), list(section.by))
        where = f"weight.{key}"
        w_uncalibrated = w
        result = _run_calibration(key, section, frame, w, totals, reps, where=where, targets_name=targets_name)
        w, iterations, converged = np.array(result.weights), result.iterations, result.converged
        if reps is not None:
            reps = np.array(result.replicate_weights)
            rep_steps.append(key)
        qa["steps"].append(_calibration_entry(_step_name(key, section), result))
    if config.trim is not None:
        trim = config.trim
        if missing := [c for c in trim.by if c not in frame.columns]:
            raise ConfigError(f"weight.trim.by: variable(s) {', '.join(missing)} are not in the cleaned data")
        groups, labels = _group_codes(frame, trim.by)
        recalibrate = calibration is not None and trim.rerake
        outside = 0
        cycles_run = 0
        for cycle in range(1, trim.cycles + 1):
            cycles_run = cycle
            trimmed, counts = _trim_sample(w, groups, labels, trim)
            qa["steps"].append({"step": "trim", "cycle": cycle, **counts, **weight_diagnostics(trimmed).to_dict()})
            if reps is not None:
                if trim.replicates == "factors":  # the full sample's trimming, held fixed
                    with np.errstate(invalid="ignore", divide="ignore"):
                        factor = np.where(w > 0, trimmed / w, 1.0)
                    reps = reps * factor[:, None]
                else:
                    reps = trim_replicates(reps, groups, trim)
                rep_steps.append("trim")
            if not recalibrate:
                w = trimmed
                break
            key, section = calibration  # type: ignore[misc]
            w_uncalibrated = trimmed
            result = _run_calibration(key, section, frame, trimmed, totals, reps, where=f"weight.{key} after weight.trim (cycle {cycle})", targets_name=targets_name)
            w = np.array(result.weights)
            iterations += result.iterations
            converged = converged and result.converged
            if reps is not None:
                reps = np.array(result.replicate_weights)
                rep_steps.append(_RECALIBRATE[key])
            lo, hi = trim_caps(w, groups, trim)
            outside = int(_outside_caps(w, lo, hi).sum())
            qa["steps"].append({**_calibration_entry(_RECALIBRATE[key], result), "cycle": cycle, "outside_caps": outside})
            if outside == 0:
                break
        trim_report = {"cycles": cycles_run, "max_cycles": trim.cycles, "outside_caps": outside, "caps_hold": outside == 0 or not recalibrate}
        if recalibrate and outside and not trim.accept_outside_caps:
            lo, hi = trim_caps(w, groups, trim)
            ratio = np.maximum(w / hi, lo / w)
            worst = int(np.argmax(ratio))
            side = "upper" if w[worst] > hi[worst] else "lower"
            raise CalibrationError(
                f"weight.trim: after {cycles_run} trim-and-{_RECALIBRATE[calibration[0]]} cycle(s), "  # type: ignore[index]
                f"{outside} weight(s) are still outside the caps (worst {ratio[worst]:.3g}x the {side} cap, in {labels[groups[worst]]}); "
                f"the caps and the {calibration[0]} margins do not both hold",  # type: ignore[index]
                hint="raise weight.trim.cycles, loosen the caps, collapse sparse categories, use weight.calibrate with "
                "method: logit and bounds, or set weight.trim.accept_outside_caps: true to keep the last cycle's weights",
            )

    # ---- final scaling
    n = frame.height
    total_pop = float(w.sum())
    w_final = w * n / total_pop
    w_pop = w * total_pop / w.sum()
    extra = [pl.Series(UNCALIBRATED, w_uncalibrated)] if w_uncalibrated is not None else []
    frame = frame.with_columns(*extra, pl.Series("w_final", w_final), pl.Series("w_pop", w_pop))
    diag = weight_diagnostics(w_final).to_dict()
    margins = None
    max_err = 0.0
    if calibration is not None and shares is not None:
        key, section = calibration
        margins = achieved_margins(frame, shares, list(section.variables), list(section.by), {"base": "w_base", "final": "w_final"})
        max_err = float(margins.get_column("error").abs().max())
    qa.update(
        {
            "n": n,
            "population": total_pop,
            "method": None if calibration is None else _step_name(calibration[0], calibration[1]),
            "kish_deff": diag["kish_deff"],
            "effective_n": diag["effective_n"],
            "moe_95": diag["moe"],
            "iterations": iterations,
            "converged": converged,
            "max_margin_error": max_err,
            "imputed": imputed,
            "final": diag,
        }
    )
    if trim_report is not None:
        qa["trim"] = trim_report

    # ---- replicate weights on the scale of design.weights
    rep_frame = rep_meta = None
    if start is not None and reps is not None and design is not None:
        rep_frame, rep_meta = _final_replicates(frame, reps, start, design, w, configured=_weighting_configured(config), steps=rep_steps)
        rep_meta.update(rep_notes)
        qa["replicates"] = {k: v for k, v in rep_meta.items() if k != "rscales"}

    limits = config.qa
    if limits.max_kish_deff is not None and qa["kish_deff"] > limits.max_kish_deff:
        raise CalibrationError(
            f"weight QA: Kish design effect {qa['kish_deff']:.3f} exceeds weight.qa.max_kish_deff = {limits.max_kish_deff}",
            hint="tighten trimming or collapse raking categories, or raise the limit if the design effect is expected",
        )
    if limits.max_margin_error is not None and max_err > limits.max_margin_error:
        raise CalibrationError(
            f"weight QA: the final weights miss a calibration target by {max_err:.4f} (limit weight.qa.max_margin_error = {limits.max_margin_error})",
            hint="see weight/margins.csv; trimming without recalibrating, or non-convergence, leaves margins off",
        )
    if margins is None:
        margins = pl.DataFrame()
    return WeightStageResult(
        data=frame, margins=margins, qa=qa, nonrespondents=nonrespondents, replicates=rep_frame, replicates_meta=rep_meta
    )


def _calibration_entry(step: str, result: WeightingResult) -> dict[str, Any]:
    return {
        "step": step,
        "iterations": result.iterations,
        "converged": result.converged,
        "max_margin_error": result.max_margin_error,
        **result.diagnostics().to_dict(),
    }


def _final_replicates(
    frame: pl.DataFrame, reps: np.ndarray, start: ReplicateStart, design: DesignConfig, w: np.ndarray, *, configured: bool, steps: list[str]
) -> tuple[pl.DataFrame, dict[str, Any]]:
    import numpy as np
    import polars as pl

    target = design.weights
    if target in ("w_final", "w_pop"):
        scale = float(frame.get_column(target).sum() / w.sum())
        final = reps * scale
    elif target == "w_base" and not configured:
        final = reps  # no weighting: the base weights are the final weights
    elif target == "w_base":
        raise ConfigError(
            "design.weights: w_base with design.variance: replicate, but the weight stage adjusts the base weights "
            "(nonresponse, calibration or trimming); its replicate weights follow the final weights",
            hint="use w_pop (or w_final) as the analysis weight",
        )
    elif not configured:
        # a delivered final weight (it is w_base): its replicates, built from it or given, as they are
        final = reps
    else:
        raise ConfigError(
            f"design.weights: {target} is not a weight the weight stage makes, so its replicate weights cannot be "
            "redone by the weight stage",
            hint="use w_pop (or w_final), or give the delivered replicate columns with no weighting configured",
        )
    raw_row = frame.get_column("raw_row").cast(pl.Int64) if "raw_row" in frame.columns else pl.Series("raw_row", np.arange(1, frame.height + 1), dtype=pl.Int64)
    cols = {f"rep_{j + 1}": final[:, j] for j in range(final.shape[1])}
    out = pl.DataFrame({"raw_row": raw_row, **cols})
    meta = {
        "type": start.type,
        "scale": float(start.scale),
        "rscales": [float(x) for x in start.rscales],
        "rho": None if start.rho is None else float(start.rho),
        "mse": bool(start.mse),
        "n_replicates": int(final.shape[1]),
        "source": start.source,
        "weights": target,
        "steps": list(dict.fromkeys(steps)) if configured else [],
        **start.notes,
    }
    return out, meta


# --------------------------------------------------------------------------- variance


def variance_adjustment(frame: pl.DataFrame, weights: Any, config: WeightConfig) -> Any:
    """The variance adjustment of the configured calibration, rebuilt from the final weights.

    Taylor linearization after calibration uses the calibration's residuals (R survey
    ``svyrecvar`` with ``design$postStrata``). The final weights satisfy the calibration
    constraints, so the adjustment of the last calibration step can be rebuilt from them:

    - ``rake``: R's raking residuals (:class:`~pipeline.survey.weighting.RakingAdjustment`),
      each margin keyed by group x category, with the final weights as the weights after each
      margin's step in the last sweep (equal at convergence);
    - ``poststratify``: :class:`~pipeline.survey.weighting.PostStratAdjustment` over group x
      category (its residuals depend on the old weights only through their ratio to the new
      ones, constant within a post-stratum, so the final weights stand for both);
    - ``calibrate`` (any distance): :class:`~pipeline.survey.weighting.GregAdjustment`, the
      projection on the indicators of every category within each group in the metric of the
      weights the last calibration started from (the ``w_uncalibrated`` column the stage
      writes), with ``g = weights / w_uncalibrated``.

    Every adjustment is invariant to the scale of ``weights`` (``w_final`` or ``w_pop``).
    Nonresponse classes and trimming are treated as fixed, as R treats ``trimWeights``; the
    calibration before a trimming cycle is not residualized again (R would append both raking
    records; the final one carries the constraints the estimates satisfy).

    Parameters
    ----------
    frame : polars.DataFrame
        The weighted data (``weight/data.parquet``), with the calibration variables and ``by``
        columns (and ``w_uncalibrated`` for ``calibrate``).
    weights : array-like, shape (n,)
        The analysis weights.
    config : WeightConfig

    Returns
    -------
    Adjustment or None
        None when no calibration is configured.
    """
    import numpy as np
    import polars as pl

    from pipeline.survey.weighting import GregAdjustment, PostStratAdjustment, RakingAdjustment

    calibration = config.calibration
    if calibration is None:
        return None
    key, section = calibration
    by, variables = list(section.by), list(section.variables)
    missing = [c for c in [*by, *variables] if c not in frame.columns]
    if missing:
        raise DataError(f"weight.{key}: variable(s) {', '.join(missing)} are not in the weighted data", hint="rerun the weight stage (--from weight)")
    w = np.asarray(weights, dtype=np.float64)

    def keys(v: str) -> np.ndarray:
        return frame.select(pl.struct([*by, v]).rank("dense")).to_series().to_numpy().astype(np.int64) - 1

    if key == "rake":
        return RakingAdjustment(index=tuple(keys(v) for v in variables), weights=tuple(w for _ in variables))
    if key == "poststratify":
        return PostStratAdjustment(index=keys(variables[0]), weights=w, old_weights=w)
    if UNCALIBRATED not in frame.columns:
        raise DataError(f"weight.calibrate: the weighted data has no {UNCALIBRATED} column", hint="rerun the weight stage (--from weight)")
    d = frame.get_column(UNCALIBRATED).cast(pl.Float64).to_numpy()
    sqrt_d = np.sqrt(d)
    groups, _ = _group_codes(frame, by)
    codes = {v: frame.get_column(v).to_numpy() for v in variables}
    blocks = []
    for g in range(int(groups.max()) + 1):
        rows = np.flatnonzero(groups == g)
        cols = [(codes[v][rows] == c).astype(np.float64) for v in variables for c in np.unique(codes[v][rows])]
        x = np.stack(cols, axis=1) * sqrt_d[rows][:, None]
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        basis = u[:, s > _QR_RTOL * s[0]]  # rank-revealing, as R's qr() (tol 1e-7) in calibrate()
        blocks.append((None if not by else rows, basis))
    g_weights = w / d
    return GregAdjustment(blocks=tuple(blocks), w=g_weights * sqrt_d)


#: Relative rank tolerance of the calibration projection (R's qr() default tol = 1e-7).
_QR_RTOL = 1e-7


# ------------------------------------------------------------------------------- reports


def _with_weight_labels(codebook: Any, *, uncalibrated: bool, base: dict[str, Any] | None = None) -> Any:
    from pipeline.io import VariableInfo

    labels = {
        "w_base": "base weight (design x household adults x dual-frame factors)" if base is None or base["source"] == "population_by"
        else f"base weight: {_base_text(base).replace('`', '')}",
        "w_final": "final weight, scaled to the sample size",
        "w_pop": "final weight, scaled to the population",
    }
    if uncalibrated:
        labels[UNCALIBRATED] = "weight the last calibration started from (base x nonresponse, trimmed)"
    for name, label in labels.items():
        codebook = codebook.with_variable(VariableInfo(name=name, label=label))
    return codebook


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, spec)


def _base_text(base: dict[str, Any]) -> str:
    text = {
        "column": f"the delivered weight `{base['column']}`",
        "population_by": "N_h / n_h within weight.base.population_by",
        "fpc": "derived from design.fpc (1 / product of the stages' sampling fractions n/N, as R svydesign)",
        "equal": "equal (no weight.base.column, population_by or design.fpc)",
    }[base["source"]]
    return text + (f", times {', '.join(base['factors'])}" if base.get("factors") else "")


def qa_markdown(qa: dict[str, Any], margins: pl.DataFrame, wave: str) -> str:
    import polars as pl

    lines = [
        f"# Weighting QA, wave {wave}",
        "",
        f"- respondents: {qa['n']:,}; population: {qa['population']:,.0f}",
        *([f"- base weight: {_base_text(qa['base'])}"] if "base" in qa else []),
        f"- Kish design effect: {qa['kish_deff']:.3f}; effective n: {qa['effective_n']:,.0f}; margin of error (95%, p = 0.5): ±{100 * qa['moe_95']:.1f} points",
        f"- calibration: {qa.get('method') or 'none'}; iterations: {qa['iterations']}; converged: {qa['converged']}; largest margin error: {qa['max_margin_error']:.2e}",
        f"- imputed for calibration: {', '.join(f'{k} {v}' for k, v in qa['imputed'].items()) or 'none'}",
    ]
    if "trim" in qa:
        t = qa["trim"]
        lines.append(
            f"- trimming: {t['cycles']} of at most {t['max_cycles']} cycle(s); weights outside the caps after the last "
            f"recalibration: {t['outside_caps']}{'' if t['caps_hold'] else ' (accepted: weight.trim.accept_outside_caps)'}"
        )
    if "replicates" in qa:
        r = qa["replicates"]
        lines.append(f"- replicate weights: {r['n_replicates']} {r['type']} ({r['source']}); weighting redone in each: {', '.join(r['steps']) or 'none'}")
    if "targets" in qa:
        lines += ["", "## Targets", "", f"File: `{qa['targets']['file']}`", "", "| variable | source | year |", "|---|---|---|"]
        for s in qa["targets"]["sources"]:
            lines.append(f"| {s['variable']} | {s['source'] or 'not given'} | {s['year'] or 'not given'} |")
    if "nonresponse" in qa:
        nr = qa["nonresponse"]
        lines += [
            "",
            "## Nonresponse adjustment",
            "",
            f"Respondents ({nr['respondent']}): {nr['respondents']:,}; nonrespondents: {nr['nonrespondents']:,}.",
            "",
            "| class | respondents | nonrespondents | factor |",
            "|---|---:|---:|---:|",
        ]
        lines += [f"| {c['class']} | {c['respondents']} | {c['nonrespondents']} | {c['factor']:.4f} |" for c in nr["classes"]]
        if nr["collapses"]:
            lines += ["", "Collapsed classes, in order:", ""]
            lines += [f"- {c['class']} into {c['into']}: {c['reason']}" for c in nr["collapses"]]
    lines += [
        "",
        "## Steps",
        "",
        "| step | cycle | min | max | max/min | CV | Kish deff | effective n | outside caps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in qa["steps"]:
        lines.append(
            f"| {s['step']} | {s.get('cycle', '')} | {s['min']:.3g} | {s['max']:.3g} | {s['ratio']:.1f} | {s['cv']:.3f} | "
            f"{s['kish_deff']:.3f} | {s['effective_n']:.0f} | {_fmt(s.get('outside_caps'), 'd')} |"
        )
    if margins.height:
        lines += ["", "## Margins: targets against unweighted, base-weighted and final shares (%)", ""]
        shares = ("target_share", "unweighted_share", "base_share", "final_share")
        head = [c for c in margins.columns if c not in (*shares, "error")]
        lines.append("| " + " | ".join([*head, "target", "unweighted", "base", "final"]) + " |")
        lines.append("|" + "---|" * len(head) + "---:|" * 4)
        for row in margins.iter_rows(named=True):
            cells = ["" if row[c] is None else str(row[c]) for c in head]
            cells += [_fmt(None if row[c] is None else 100 * row[c], ".1f") for c in shares]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(ctx: StageContext) -> StageOutput:
    import polars as pl

    frame = ctx.read_frame("clean/data.parquet")
    codebook = ctx.read_codebook("clean/codebook.json")
    targets = None
    targets_name = "targets"
    if ctx.wave.targets is not None:
        path = ctx.config.resolve(ctx.wave.targets)
        try:
            targets_name = str(path.relative_to(ctx.config.root))
        except ValueError:
            targets_name = str(path)
        try:
            targets = pl.read_csv(path, infer_schema_length=None)
        except Exception as exc:
            raise DataError(f"{path}: cannot read the targets file ({exc})") from exc
        need = {"variable", "category", "share"}
        if not need <= set(targets.columns):
            raise TargetsError(f"{path}: the targets file needs columns {sorted(need)}; found {targets.columns}")
    result = weight(frame, targets, ctx.config.weight, design=ctx.config.design, targets_name=targets_name)
    ids = ["raw_row"] + ([ctx.config.ingest.id] if ctx.config.ingest.id else [])
    files: dict[str, Any] = {
        "weight/data.parquet": result.data,
        "weight/codebook.json": _with_weight_labels(codebook, uncalibrated=UNCALIBRATED in result.data.columns, base=result.qa.get("base")).to_json(),
        "weight/weights.csv": result.data.select([c for c in ids if c in result.data.columns] + ["w_base", "w_final", "w_pop"]),
        "weight/margins.csv": result.margins,
        "weight/qa.json": result.qa,
        "weight/qa.md": qa_markdown(result.qa, result.margins, ctx.wave.id),
    }
    if result.nonrespondents is not None:
        files["weight/nonrespondents.parquet"] = result.nonrespondents
    if result.replicates is not None:
        files["weight/replicates.parquet"] = result.replicates
        files["weight/replicates.json"] = result.replicates_meta
    diagnostics = {k: result.qa[k] for k in ("kish_deff", "effective_n", "iterations", "converged", "max_margin_error", "moe_95", "method")}
    if "trim" in result.qa:
        diagnostics["trim_cycles"] = result.qa["trim"]["cycles"]
        diagnostics["outside_caps"] = result.qa["trim"]["outside_caps"]
    if "nonresponse" in result.qa:
        diagnostics["nonrespondents"] = result.qa["nonresponse"]["nonrespondents"]
        diagnostics["nonresponse_collapses"] = len(result.qa["nonresponse"]["collapses"])
    if result.replicates_meta is not None:
        diagnostics["replicates"] = result.replicates_meta["n_replicates"]
    return StageOutput(files=files, diagnostics=diagnostics, rows=result.data.height)

"""Weight: base weights, nonresponse classes, calibration, trimming, final scaling, QA, replicates.

The statistics live in :mod:`pipeline.survey` (:mod:`~pipeline.survey.weighting`,
:mod:`~pipeline.survey.nonresponse`, :mod:`~pipeline.survey.trimming`,
:mod:`~pipeline.survey.adjustments`); this stage maps the config onto their arguments, runs the
steps in order (:func:`weight`), and turns their errors into errors that name the file and the
config key. Base weights and the QA report are in :mod:`pipeline.stages._weight_base`, the
replicate weights' start and files in :mod:`pipeline.stages._weight_replicates`:

1. base weight ``w_base`` = a weight delivered with the data (``weight.base.column``, or a
   ``design.weights`` column used as the final weight as is), or N_h / n_h within
   ``weight.base.population_by`` groups (N_h from the targets file's ``population`` column), or
   else the weights R's ``svydesign`` derives from ``design.fpc`` (1 if there is none), times
   each ``weight.base.factors`` expression (household adults, dual-frame compositing, ...);
2. nonresponse adjustment (``weight.nonresponse``, :mod:`pipeline.stages._weight_nonresponse`):
   by weighting classes (``method: classes``): within each class the respondents carry the base
   weight of the class's nonrespondents; small classes (or classes whose factor is too large)
   are merged with a neighbour, and every merge is reported; or by a response-propensity model
   (:mod:`~pipeline.survey.propensity`): a ``w_base``-weighted logistic regression on
   ``weight.nonresponse.model``, then classes at the weighted quantiles of the propensity
   (``propensity_classes``) or the capped inverse propensity scaled to the sample's total
   (``inverse_propensity``). The nonrespondents then leave the weighted data
   (``weight/nonrespondents.parquet``, with their class or propensity);
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
weighting is redone in every replicate: nonresponse factors per class (or the propensity model
refitted with the replicate's weights, its cut points and factors redone), the calibration (the
engine's ``replicates=``, as R's ``rake``/``postStratify``/``calibrate`` on a replicate design),
trimming with caps recomputed from each replicate's own weights (rows out of the replicate stay
at zero) and the recalibration, for as many cycles as the full sample. Given replicate columns
(``columns``/``pattern``) are the starting replicate weights (multiplied by ``w_base`` when
``combined_weights: false``) and go through the same weighting; with no weighting configured
they pass through.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config import STAGE_WEIGHTS, delivered_weight_problems  # noqa: F401 - STAGE_WEIGHTS re-exported
from pipeline.errors import CalibrationError, ConfigError, DataError, TargetsError
from pipeline.stages import Reads, StageContext, StageOutput
from pipeline.stages._weight_base import (  # noqa: F401 - re-exported: the stage's functions tests and the estimate stage use
    UNCALIBRATED,
    base_weight_source,
    base_weights,
    check_populations,
    impute_mode,
    keyed_errors,
    qa_markdown,
    raw_rows,
    achieved_margins,
    targets_provenance,
    with_weight_labels as _with_weight_labels,
)
from pipeline.stages._common import variance_adjustment  # noqa: F401 - re-exported for the tests of the weight stage
from pipeline.stages._weight_nonresponse import (  # noqa: F401 - collapse_classes re-exported for the tests
    collapse_classes,
    model_terms,
    nonresponse_adjustment,
    nonresponse_replicates,
    nonresponse_step,
    propensity_adjustment,
)
from pipeline.stages._weight_replicates import final_replicates, replicate_base_weights

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from pipeline.config import (
        CalibrateConfig,
        DesignConfig,
        PoststratifyConfig,
        RakeConfig,
        TrimConfig,
        WeightConfig,
    )
    from pipeline.survey.weighting import WeightingResult



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
    check_populations(pops, by, targets_name, f"weight.{key}")
    with keyed_errors(f"{targets_name} (weight.{key})"):
        totals = targets_from_shares(shares, by=by, share="share", population="population")
    return shares, totals


# ---------------------------------------------------------------------------------- trimming


def _trim_options(trim: TrimConfig) -> dict[str, Any]:
    """``weight.trim`` as the arguments of :mod:`pipeline.survey.trimming`."""
    return {"lower": trim.lower, "upper": trim.upper, "relative_to": trim.relative_to}


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
    categorical: Collection[str] | None = None,
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
    categorical : collection of str, optional
        The variables with value labels (the codebook's): the categorical terms of a propensity
        model (``weight.nonresponse.model``); text and true/false columns are categorical anyway.
    """
    import numpy as np
    import polars as pl

    from pipeline.survey.trimming import group_codes, outside_caps, trim_caps, trim_groups, trim_replicates
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

    # ---- nonresponse: weighting classes or a propensity model
    nonrespondents = None
    if (nrc := config.nonresponse) is not None:
        x = None
        if nrc.method == "classes":
            nr = nonresponse_adjustment(frame, w_base_all, nrc)
        else:
            nr, x = propensity_adjustment(frame, w_base_all, nrc, categorical=categorical)
        resp = nr.respondent
        if not resp.any():
            raise DataError(f"weight.nonresponse.respondent: {nrc.respondent!r} is true on no row; nothing is left to weight")
        keep = list(dict.fromkeys(["raw_row", *nrc.variables])) if "raw_row" in frame.columns else list(nrc.variables)
        nonrespondents = frame.filter(pl.Series(~resp)).select([c for c in keep if c in frame.columns])
        if nr.class_index is not None:
            nonrespondents = nonrespondents.with_columns(pl.Series("nonresponse_class", nr.class_index[~resp] + 1))
        if x is not None:
            nonrespondents = nonrespondents.with_columns(pl.Series("propensity", nr.model.p[~resp]))
        nonrespondents = nonrespondents.with_columns(pl.Series("w_base", w_base_all[~resp]))
        w = (w_base_all * nr.factor)[resp]
        if reps is not None:
            reps, lost = nonresponse_replicates(reps, nr, x)
            rep_steps.append("nonresponse")
            rep_notes["nonresponse_classes_without_respondents"] = lost
        frame = frame.filter(pl.Series(resp))
        w_base = w_base_all[resp]
        qa["nonresponse"] = nonresponse_step(nrc, nr, model_terms(frame, nrc, categorical) if x is not None else ())
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
        groups, labels = group_codes(frame, trim.by)
        recalibrate = calibration is not None and trim.rerake
        outside = 0
        cycles_run = 0
        for cycle in range(1, trim.cycles + 1):
            cycles_run = cycle
            trimmed, counts = trim_groups(
                w, groups, n_groups=len(labels), **_trim_options(trim), strict=trim.strict,
                context=lambda g: keyed_errors(f"weight.trim ({labels[g]})"),
            )
            qa["steps"].append({"step": "trim", "cycle": cycle, **counts, **weight_diagnostics(trimmed).to_dict()})
            if reps is not None:
                if trim.replicates == "factors":  # the full sample's trimming, held fixed
                    with np.errstate(invalid="ignore", divide="ignore"):
                        factor = np.where(w > 0, trimmed / w, 1.0)
                    reps = reps * factor[:, None]
                else:
                    reps = trim_replicates(reps, groups, **_trim_options(trim), strict=trim.strict)
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
            lo, hi = trim_caps(w, groups, **_trim_options(trim))
            outside = int(outside_caps(w, lo, hi).sum())
            qa["steps"].append({**_calibration_entry(_RECALIBRATE[key], result), "cycle": cycle, "outside_caps": outside})
            if outside == 0:
                break
        trim_report = {"cycles": cycles_run, "max_cycles": trim.cycles, "outside_caps": outside, "caps_hold": outside == 0 or not recalibrate}
        if recalibrate and outside and not trim.accept_outside_caps:
            lo, hi = trim_caps(w, groups, **_trim_options(trim))
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
        rep_frame, rep_meta = final_replicates(frame, reps, start, design, w, configured=_weighting_configured(config), steps=rep_steps)
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


# --------------------------------------------------------------------------- variance


READS = Reads(
    config=("weight", "design.weights", "design.strata", "design.ids", "design.fpc", "design.nest", "design.lonely_psu",
            "design.variance", "design.replicates", "ingest.id", "waves[].id"),
    upstream=("clean/data.parquet", "clean/codebook.json"),
    files=("waves[].targets",),
)
"""The weighting settings, the design keys the replicate weights follow, the targets file, and clean's data."""


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
    labelled = [name for name, info in codebook.variables.items() if info.value_labels]
    result = weight(frame, targets, ctx.config.weight, design=ctx.config.design, targets_name=targets_name, categorical=labelled)
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

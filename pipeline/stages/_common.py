"""Helpers that more than one stage uses (so that no stage imports another): the name of the
weight the last calibration started from, and the rebuild of the calibration's variance
adjustment from the final weights (the weight stage checks it, the estimate stage uses it), and
the design of the config's ``design`` section over the weighted data (:func:`build_design`,
:func:`replicate_design`: the estimate stage's, and the export stage's for the codebook's
frequencies; :mod:`pipeline.stages.estimate` re-exports them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, DataError

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import DesignConfig, WeightConfig

#: the weighted data's column of the weights the last calibration started from (for GREG residuals)
UNCALIBRATED = "w_uncalibrated"


def variance_adjustment(frame: pl.DataFrame, weights: Any, config: WeightConfig) -> Any:
    """The variance adjustment of the configured calibration, rebuilt from the final weights
    (:func:`pipeline.survey.adjustments.calibration_adjustment`; None without calibration).

    Nonresponse classes and trimming are treated as fixed, as R treats ``trimWeights``; the
    calibration before a trimming cycle is not residualized again (R would append both raking
    records; the final one carries the constraints the estimates satisfy).
    """
    import polars as pl

    from pipeline.survey.adjustments import calibration_adjustment

    calibration = config.calibration
    if calibration is None:
        return None
    key, section = calibration
    by, variables = list(section.by), list(section.variables)
    missing = [c for c in [*by, *variables] if c not in frame.columns]
    if missing:
        raise DataError(f"weight.{key}: variable(s) {', '.join(missing)} are not in the weighted data", hint="rerun the weight stage (--from weight)")
    uncalibrated = None
    if key == "calibrate":
        if UNCALIBRATED not in frame.columns:
            raise DataError(f"weight.calibrate: the weighted data has no {UNCALIBRATED} column", hint="rerun the weight stage (--from weight)")
        uncalibrated = frame.get_column(UNCALIBRATED).cast(pl.Float64).to_numpy()
    return calibration_adjustment(frame, weights, method=key, by=by, variables=variables, uncalibrated=uncalibrated)


def build_design(frame: pl.DataFrame, config: DesignConfig, weighting: WeightConfig | None = None) -> Any:
    """The linearization design of the config's ``design`` section.

    With the weight stage's config and ``design.weighting_variance``, the design remembers the
    weighting (:func:`variance_adjustment`: raking, post-stratification
    or calibration residuals), so Taylor linearization accounts for it as R survey does.
    """
    from pipeline.survey.design import Design

    missing = [c for c in (config.weights, *config.strata, *config.ids, *config.fpc) if c not in frame.columns]
    if missing:
        raise ConfigError(f"design: variable(s) {', '.join(missing)} are not in the weighted data")
    design = Design.from_frame(
        frame,
        weights=config.weights,
        ids=list(config.ids),
        strata=list(config.strata) or None,
        fpc=list(config.fpc),
        nest=config.nest,
        lonely_psu=config.lonely_psu,
    )
    if weighting is not None and config.weighting_variance:
        w = frame.get_column(config.weights).to_numpy()
        adjustment = variance_adjustment(frame, w, weighting)
        if adjustment is not None:
            design = design.reweight(w, adjustment)
    return design


def replicate_design(frame: pl.DataFrame, config: DesignConfig, replicates: pl.DataFrame, meta: dict[str, Any]) -> Any:
    """A replicate design from the weight stage's ``weight/replicates.parquet`` and ``.json``.

    The replicate weights are final (the weighting was redone in every replicate) and on the
    scale of ``design.weights``; rows are matched by ``raw_row``.
    """
    import polars as pl

    from pipeline.errors import DataError
    from pipeline.survey.design import Design

    if config.weights not in frame.columns:
        raise ConfigError(f"design.weights: {config.weights} is not in the weighted data")
    rep_cols = [c for c in replicates.columns if c != "raw_row"]
    joined = frame.select("raw_row").join(replicates, on="raw_row", how="left", maintain_order="left")
    if joined.select(pl.any_horizontal(pl.col(rep_cols).is_null())).to_series().any():
        raise DataError("weight/replicates.parquet does not cover every row of weight/data.parquet", hint="rerun the weight stage (--from weight)")
    rscales = meta.get("rscales")
    return Design.from_replicate_weights(
        frame,
        replicate_weights=joined.select(rep_cols).to_numpy(),
        weights=config.weights,
        type=meta["type"],
        combined_weights=True,
        scale=meta.get("scale"),
        rscales=None if rscales is None else list(rscales),
        rho=meta.get("rho"),
        mse=bool(meta.get("mse", False)),
    )

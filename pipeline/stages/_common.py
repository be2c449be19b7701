"""Helpers that more than one stage uses (so that no stage imports another): the name of the
weight the last calibration started from, and the rebuild of the calibration's variance
adjustment from the final weights (the weight stage checks it, the estimate stage uses it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.errors import DataError

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import WeightConfig

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

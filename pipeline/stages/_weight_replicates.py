"""The weight stage's replicate weights (a private module of :mod:`pipeline.stages.weight`).

Owns the replicate base weights (:func:`replicate_base_weights`: built from the linearization
design with ``w_base`` through :func:`pipeline.survey.replicates.as_replicate_design`, or the
given replicate columns) and the final replicate files' contents (:func:`final_replicates`:
``weight/replicates.parquet`` on the scale of ``design.weights`` and ``weight/replicates.json``).
The weighting redone in every replicate is in :func:`pipeline.stages.weight.weight`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import ArgumentError, ConfigError
from pipeline.stages._weight_base import keyed_errors

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from pipeline.config import DesignConfig


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
        with keyed_errors(f"design.replicates.build: {kind}"):
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
    with keyed_errors("design.replicates"):
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


def final_replicates(
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

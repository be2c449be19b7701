"""How a :class:`~pipeline.survey.design.Design` is built (a private module of :mod:`pipeline.survey.design`).

Owns the construction of a design's arrays from a frame, as R's ``svydesign``
(:func:`taylor_fields`: weights or probabilities or weights derived from ``fpc``, cluster and
stratum codes per stage, nesting, sample and population sizes) and ``svrepdesign``
(:func:`replicate_fields`: replicate weights, ``scale``/``rscales`` by type, replicate ``fpc``),
the :class:`ReplicateWeights` they make, the lonely-PSU vocabulary
(:data:`LONELY_PSU_OPTIONS`) and the small coding helpers they share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError, DesignError

__all__ = [
    "LONELY_PSU_OPTIONS",
    "REPLICATE_FPC_TYPES",
    "REPLICATE_TYPES",
    "LonelyPsu",
    "ReplicateWeights",
    "check_lonely",
    "factorize",
    "readonly",
    "replicate_fields",
    "rows_key",
    "taylor_fields",
]

LonelyPsu = Literal["fail", "remove", "adjust", "average", "certainty"]
#: The values of R's ``options(survey.lonely.psu = ...)``; see :mod:`pipeline.survey.variance`.
LONELY_PSU_OPTIONS: tuple[str, ...] = ("fail", "remove", "adjust", "average", "certainty")


@dataclass(frozen=True, eq=False)
class ReplicateWeights:
    """Replicate weights and the constants of their variance formula.

    ``v = scale * sum_r rscales[r] * (theta_r - c) ** 2`` with ``c`` the mean of
    the replicate estimates over replicates with ``rscales > 0`` (``mse=False``)
    or the full-sample estimate (``mse=True``), as R's ``svrVar``.

    Attributes
    ----------
    weights : numpy.ndarray
        ``(n, R)`` analysis replicate weights (already multiplied by the
        sampling weights, R's ``weights(design, "analysis")``), float64 or
        float32, in C or Fortran order: the array the design was given, never
        a copy (estimators read it in row blocks and accumulate in float64).
    scale : float
        Overall multiplier.
    rscales : numpy.ndarray
        ``(R,)`` per-replicate multipliers.
    mse : bool
        Centre on the full-sample estimate instead of the replicate mean.
    type : str
        ``JK1``, ``JKn``, ``BRR``, ``Fay``, ``bootstrap`` or ``other``.
    rho : float or None
        Fay's rho (``type='Fay'``).
    """

    weights: np.ndarray
    scale: float
    rscales: np.ndarray
    mse: bool = False
    type: str = "other"
    rho: float | None = None

    @property
    def n_replicates(self) -> int:
        """Number of replicates ``R``."""
        return int(self.weights.shape[1])


def readonly(a: np.ndarray, *, any_order: bool = False) -> np.ndarray:
    """``a`` made read-only (the design owns it from now on).

    Copied only when it is not C-contiguous, unless ``any_order``: replicate
    weights are kept in the layout they came in (polars gives Fortran order),
    because an ``(n, R)`` copy can be gigabytes.
    """
    if not any_order:
        a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def value_codes(values: np.ndarray) -> np.ndarray:
    """Integer codes ``0..k-1`` of the distinct values, in sorted order (``np.unique``'s inverse).

    Integers of small range are coded by offset and ``np.bincount`` (no sort).
    """
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind in "iu" and len(values):
        lo, hi = int(values.min()), int(values.max())
        if hi - lo < max(4 * len(values), 1 << 16):
            offsets = np.subtract(values, lo, dtype=np.int64)
            seen = np.bincount(offsets, minlength=hi - lo + 1) > 0
            lookup = np.cumsum(seen) - 1
            return lookup[offsets]
    _, inv = np.unique(values, return_inverse=True)
    return inv.reshape(-1).astype(np.int64, copy=False)


def pair_codes(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``first * k + second`` for codes ``second < k``: orders pairs as ``np.unique(..., axis=0)`` does."""
    return first.astype(np.int64) * (int(second.max()) + 1 if len(second) else 1) + second


def distinct_codes(codes: np.ndarray) -> np.ndarray:
    """Sorted distinct values of non-negative integer ``codes`` (``np.unique``), by bincount when the range is small."""
    top = int(codes.max()) + 1 if len(codes) else 0
    if top <= max(4 * len(codes), 1 << 16):
        return np.flatnonzero(np.bincount(codes, minlength=top))
    return np.unique(codes)


def factorize(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Integer codes ``0..k-1`` of the distinct combinations of ``columns`` (row-wise).

    The codes follow the lexicographic order of the combinations, as
    ``np.unique(np.column_stack(codes), axis=0)`` (which sorts rows of a
    structured array: seconds at 10^7 rows); pairs are combined one column at
    a time as ``code * k + next`` and recoded, so codes never overflow.
    """
    codes = value_codes(columns[0])
    for col in columns[1:]:
        codes = value_codes(pair_codes(codes, value_codes(col)))
    return codes


def design_column_of(frame: pl.DataFrame, name: str, role: str) -> pl.Series:
    if name not in frame.columns:
        raise DesignError(
            f"design: the {role} column {name!r} is not in the data",
            hint=f"columns are: {', '.join(frame.columns[:20])}{' ...' if frame.width > 20 else ''}",
        )
    s = frame.get_column(name)
    missing = s.is_null()
    if s.dtype.is_float():
        missing = missing | s.is_nan()
    n_missing = int(missing.sum())
    if n_missing:
        rows = (np.flatnonzero(missing.to_numpy()) + 1)[:5].tolist()
        raise DesignError(
            f"design: the {role} column {name!r} has {n_missing} missing value(s) "
            f"(rows {', '.join(map(str, rows))}{' ...' if n_missing > 5 else ''}); "
            "expected a value on every row",
            hint="drop or impute those rows before building the design",
        )
    return s


def numeric_column(frame: pl.DataFrame, name: str, role: str) -> np.ndarray:
    s = design_column_of(frame, name, role)
    if not s.dtype.is_numeric():
        raise DesignError(
            f"design: the {role} column {name!r} must be numeric; found dtype {s.dtype}",
            hint=f"cast {name!r} to a number before building the design",
        )
    return s.cast(pl.Float64).to_numpy().astype(np.float64, copy=False)


def as_tuple(x: str | Sequence[str] | None) -> tuple[str, ...]:
    if x is None:
        return ()
    if isinstance(x, str):
        return (x,)
    return tuple(x)


def rows_key(rows: np.ndarray) -> tuple:
    """Cache key of a set of rows (a digest of the boolean mask)."""
    return ("replicate_degf", rows.shape[0], hashlib.blake2b(np.packbits(rows).tobytes(), digest_size=16).digest())


#: Types of given replicate weights (R ``svrepdesign(type = ...)``; ``design.replicates.type``).
REPLICATE_TYPES: tuple[str, ...] = ("JK1", "JKn", "BRR", "Fay", "bootstrap", "other")
#: Meanings of a replicate ``fpc`` (R ``svrepdesign(fpctype = ...)``, plus ``population`` for JK1).
REPLICATE_FPC_TYPES: tuple[str, ...] = ("fraction", "correction", "population")


def replicate_fpc_factor(fpc, fpctype, rep_type: str, n_rep: int) -> np.ndarray:
    """Per-replicate factor ``1 - f`` of R ``svrepdesign(fpc=, fpctype=)`` (rscales are multiplied by it)."""
    if fpctype not in REPLICATE_FPC_TYPES:
        raise ArgumentError(
            f"design: fpc needs fpctype 'fraction', 'correction' or 'population' (got {fpctype!r})",
            hint="fraction: the replicates' sampling fraction n/N; correction: 1 - n/N; population: N (JK1)",
        )
    if rep_type in ("BRR", "Fay"):
        raise ArgumentError(f"design: fpc is not available for {rep_type} replicates (as R svrepdesign)", hint="leave fpc out")
    if rep_type == "bootstrap":
        raise ArgumentError("design: bootstrap replicates need no separate fpc (as R svrepdesign)", hint="leave fpc out")
    values = np.asarray(fpc, dtype=np.float64).reshape(-1)
    if values.size not in (1, n_rep):
        raise ArgumentError(
            f"design: fpc has {values.size} values for {n_rep} replicates",
            hint="give one value for every replicate, or a single value for all",
        )
    if not np.isfinite(values).all():
        raise ArgumentError("design: fpc must be finite numbers", hint="check the fpc values")
    values = np.broadcast_to(values, (n_rep,))
    if fpctype == "population":
        if rep_type != "JK1":
            raise ArgumentError(
                f"design: fpctype 'population' is for JK1 replicates (one per PSU); these are {rep_type}",
                hint="give each replicate's sampling fraction with fpctype 'fraction'",
            )
        if (values < n_rep).any():
            raise ArgumentError(
                f"design: fpc gives a population of {float(values.min()):g} PSUs, fewer than the {n_rep} sampled "
                "(one JK1 replicate per sampled PSU)",
                hint="fpc with fpctype 'population' is the number of PSUs in the population",
            )
        return 1.0 - n_rep / values
    if (values < 0).any() or (values > 1).any():
        bad = float(values[(values < 0) | (values > 1)][0])
        raise ArgumentError(
            f"design: fpc with fpctype {fpctype!r} must be between 0 and 1 (found {bad:g})",
            hint="a sampling fraction n/N (fraction) or 1 - n/N (correction)",
        )
    return 1.0 - values if fpctype == "fraction" else values.copy()


def check_lonely(option: str) -> None:
    if option not in LONELY_PSU_OPTIONS:
        raise ArgumentError(
            f"design: unknown lonely_psu option {option!r}",
            hint=f"expected one of {', '.join(LONELY_PSU_OPTIONS)} (as R's survey.lonely.psu)",
        )


def taylor_fields(
    frame: pl.DataFrame,
    *,
    weights: str | None,
    probs: str | None,
    ids: Sequence[str],
    strata: str | Sequence[str] | None,
    fpc: Sequence[str],
    nest: bool,
    lonely_psu: str,
) -> dict[str, Any]:
    """The fields of a Taylor-linearization :class:`~pipeline.survey.design.Design` (see ``Design.from_frame``)."""
    check_lonely(lonely_psu)
    if weights is not None and probs is not None:
        raise ArgumentError(
            "design: give either weights or probs, not both "
            f"(got weights={weights!r} and probs={probs!r})",
            hint="probabilities are 1 / weights; keep the one your data were delivered with",
        )
    n = frame.height
    if n == 0:
        raise DesignError("design: the data have no rows", hint="check the filters applied before estimation")
    ids = tuple(ids)
    strata_cols = as_tuple(strata)
    fpc = tuple(fpc)
    n_stages = max(len(ids), 1)
    if fpc and len(fpc) != n_stages:
        raise DesignError(
            f"design: fpc has {len(fpc)} column(s) ({', '.join(fpc)}) but the design has "
            f"{n_stages} stage(s) of clusters ({', '.join(ids) or 'one row per PSU'})",
            hint="give one fpc column per stage (use a column of inf for a stage sampled with replacement)",
        )
    if len(strata_cols) > n_stages:
        raise DesignError(
            f"design: {len(strata_cols)} strata columns for {n_stages} stage(s)",
            hint="give at most one strata column per stage",
        )

    # clusters, stage by stage; later stages nested in earlier ones (R: interaction(ids[, 1:i]))
    raw_ids = [np.arange(n)] if not ids else [design_column_of(frame, c, "ids").to_numpy() for c in ids]
    raw_strata = [design_column_of(frame, c, "strata").to_numpy() for c in strata_cols]
    stratum_codes = [factorize([s]) for s in raw_strata] or [np.zeros(n, dtype=np.int64)]
    id_codes = [factorize([c]) for c in raw_ids]
    nested_ids = []
    for s in range(n_stages):
        nested_ids.append(factorize(id_codes[: s + 1]))
    if int(nested_ids[0].max()) == 0 and not (nest and strata_cols):
        raise DesignError(
            "design: the design has a single primary sampling unit"
            + (f" (every row has the same {ids[0]!r})" if ids else ""),
            hint="variances need at least two PSUs; check the ids column",
        )
    if nest and strata_cols:
        ns = len(stratum_codes)
        nested_ids = [
            factorize(stratum_codes[: min(s + 1, ns)] + [nested_ids[s]]) for s in range(n_stages)
        ]
    elif strata_cols:
        # R's check.strata: a first-stage cluster must lie in a single stratum
        n_strata = int(stratum_codes[0].max()) + 1
        pairs = distinct_codes(pair_codes(nested_ids[0], stratum_codes[0]))
        counts = np.bincount(pairs // n_strata)
        if (counts > 1).any():
            bad = int(np.flatnonzero(counts > 1)[0])
            label = np.asarray(raw_ids[0][np.flatnonzero(nested_ids[0] == bad)[0]]).tolist()  # a Python value: no np.int64(...) in the message
            raise DesignError(
                f"design: clusters are not nested in strata at the first stage "
                f"({ids[0]!r} = {label!r} appears in more than one {strata_cols[0]!r})",
                hint="if cluster ids are only unique within strata, build the design with nest=True",
            )
    clusters = np.column_stack(nested_ids)
    # strata of stage s > 1: the stage-s stratum crossed with the stage-(s-1) cluster (R svydesign)
    ns = len(stratum_codes)
    strata_by_stage = [stratum_codes[0]]
    for s in range(1, n_stages):
        strata_by_stage.append(factorize([stratum_codes[min(s, ns - 1)], nested_ids[s - 1]]))
    strata_arr = np.column_stack(strata_by_stage)

    # number of sampled units per stratum and stage (R as.fpc: sampsize)
    n_psu = np.empty((n, n_stages), dtype=np.float64)
    for s in range(n_stages):
        n_clusters = int(clusters[:, s].max()) + 1
        pairs = distinct_codes(pair_codes(strata_arr[:, s], clusters[:, s]))
        per_stratum = np.bincount(pairs // n_clusters, minlength=int(strata_arr[:, s].max()) + 1)
        n_psu[:, s] = per_stratum[strata_arr[:, s]]

    popsize = None
    if fpc:
        values = np.column_stack([numeric_column(frame, c, "fpc") for c in fpc])
        if (values < 0).any():
            raise DesignError(
                f"design: fpc has negative values (columns {', '.join(fpc)})",
                hint="fpc holds population counts (>= 1) or sampling fractions (0..1)",
            )
        is_count = bool((values > 1).any())
        if is_count and not bool((values >= 1).all()):
            r, c = np.argwhere(values < 1)[0]
            raise DesignError(
                f"design: fpc mixes population counts and sampling fractions "
                f"(row {r + 1}, column {fpc[c]!r} = {values[r, c]:g}, while other values exceed 1)",
                hint="give all fpc columns as counts (>= 1) or all as fractions (<= 1)",
            )
        with np.errstate(divide="ignore"):
            popsize = values.astype(np.float64) if is_count else n_psu / values
        too_big = popsize < n_psu
        if too_big.any():
            r, c = np.argwhere(too_big)[0]
            raise DesignError(
                f"design: fpc implies more than 100% sampling: row {r + 1}, stage {c + 1} "
                f"({fpc[c]!r}): population {popsize[r, c]:g} but {int(n_psu[r, c])} units sampled",
                hint="fpc must be the number of units in the population stratum (or the sampling fraction)",
            )

    if weights is not None:
        w = numeric_column(frame, weights, "weights")
    elif probs is not None:
        p = numeric_column(frame, probs, "probs")
        if (p <= 0).any():
            raise DesignError(
                f"design: probs column {probs!r} has values <= 0",
                hint="selection probabilities must be in (0, 1]",
            )
        w = 1.0 / p
    elif popsize is not None:
        # R svydesign.default: probs <- 1/weights(fpc, final = FALSE), i.e. n/N per stage,
        # prob = their product over stages, weight = 1/prob (written so, to R's last bit).
        # weights.survey_fpc refuses when a stage's population exceeds 1e12 (inf: a stage
        # sampled with replacement): such weights cannot be derived.
        unknown = popsize > 1e12
        if unknown.any():
            r, c = np.argwhere(unknown)[0]
            raise ArgumentError(
                f"design: no weights were given and they cannot be derived from fpc: row {r + 1}, stage {c + 1} "
                f"({fpc[c]!r} = {values[r, c]:g}) gives a population of {popsize[r, c]:g} units "
                "(a stage sampled with replacement has no finite population)",
                hint="give the sampling weights (weights=) or probabilities (probs=); fpc then only corrects the variance",
            )
        w = 1.0 / np.prod(1.0 / (popsize / n_psu), axis=1)
    else:
        w = np.ones(n, dtype=np.float64)
    if (w < 0).any() or not np.isfinite(w).all():
        r = int(np.flatnonzero((w < 0) | ~np.isfinite(w))[0])
        raise DesignError(
            f"design: weights must be finite and non-negative; row {r + 1} has {float(w[r])!r}",
            hint="check the weights column",
        )

    spec = {
        "weights": weights,
        "probs": probs,
        "ids": ids,
        "strata": strata_cols,
        "fpc": fpc,
        "nest": nest,
    }
    return dict(
        frame=frame,
        weights=readonly(w.astype(np.float64, copy=False)),
        clusters=readonly(clusters.astype(np.int64, copy=False)),
        strata=readonly(strata_arr.astype(np.int64, copy=False)),
        n_psu=readonly(n_psu),
        popsize=None if popsize is None else readonly(popsize),
        has_strata=bool(strata_cols),
        lonely_psu=lonely_psu,
        in_design=readonly(np.ones(n, dtype=bool)),
        spec=spec,
    )


def replicate_fields(
    frame: pl.DataFrame,
    *,
    replicate_weights: Sequence[str] | np.ndarray,
    weights: str | np.ndarray | None,
    type: str,
    combined_weights: bool,
    scale: float | None,
    rscales: float | Sequence[float] | np.ndarray | None,
    rho: float | None,
    mse: bool,
    fpc: float | Sequence[float] | np.ndarray | None,
    fpctype: str | None,
) -> dict[str, Any]:
    """The fields of a replicate :class:`~pipeline.survey.design.Design` (see ``Design.from_replicate_weights``)."""
    n = frame.height
    if isinstance(replicate_weights, np.ndarray):
        rep = replicate_weights
        if rep.dtype not in (np.float64, np.float32):
            rep = rep.astype(np.float64)
        if rep.ndim != 2 or rep.shape[0] != n:
            raise DesignError(
                f"design: replicate weights must be an (n, R) array with n = {n} rows; got shape {rep.shape}",
                hint="one column per replicate, one row per data row",
            )
        rep_names: tuple[str, ...] = ()
    else:
        rep_names = tuple(replicate_weights)
        if not rep_names:
            raise DesignError("design: no replicate-weight columns given", hint="list the replicate columns")
        rep = np.column_stack([numeric_column(frame, c, "replicate weights") for c in rep_names])
    n_rep = rep.shape[1]
    if isinstance(weights, np.ndarray):
        w = np.asarray(weights, dtype=np.float64)
    elif weights is not None:
        w = numeric_column(frame, weights, "weights")
    else:
        w = np.ones(n, dtype=np.float64)
    if type not in REPLICATE_TYPES:
        raise ArgumentError(
            f"design: unknown replicate type {type!r}",
            hint=f"expected one of {', '.join(REPLICATE_TYPES)}",
        )
    if type == "Fay" and rho is None:
        raise ArgumentError("design: type='Fay' needs rho", hint="give Fay's rho, e.g. rho=0.5")
    analysis = rep if combined_weights else rep * w[:, None]
    if type == "BRR":
        scale = 1.0 / n_rep
    elif type == "Fay":
        scale = 1.0 / (n_rep * (1.0 - float(rho)) ** 2)
    elif type == "bootstrap" and scale is None:
        scale = 1.0 / (n_rep - 1)
    elif type == "JK1" and scale is None:
        scale = (n_rep - 1) / n_rep
    elif type == "JKn" and rscales is None:
        if combined_weights:
            raise ArgumentError(
                "design: JKn replicate weights need rscales when they are combined weights",
                hint="give rscales = (n_h - 1) / n_h for each replicate",
            )
        rscales = 1.0 / rep.max(axis=0).astype(np.float64)
    if scale is None:
        scale = 1.0
    if rscales is None:
        rs = np.ones(n_rep)
    else:
        rs = np.broadcast_to(np.asarray(rscales, dtype=np.float64), (n_rep,)).copy()
    if fpc is not None:
        rs = rs * replicate_fpc_factor(fpc, fpctype, type, n_rep)
    elif fpctype is not None:
        raise ArgumentError(f"design: fpctype={fpctype!r} given without fpc", hint="give fpc= with fpctype=, or neither")
    reps = ReplicateWeights(
        weights=readonly(analysis, any_order=True),
        scale=float(scale),
        rscales=readonly(rs),
        mse=bool(mse),
        type=type,
        rho=rho,
    )
    ones = np.zeros((n, 1), dtype=np.int64)
    return dict(
        frame=frame,
        weights=readonly(w),
        clusters=readonly(np.arange(n, dtype=np.int64)[:, None]),
        strata=readonly(ones),
        n_psu=readonly(np.full((n, 1), float(n))),
        popsize=None,
        has_strata=False,
        lonely_psu="fail",
        in_design=readonly(np.ones(n, dtype=bool)),
        replicates=reps,
        spec={"weights": weights if isinstance(weights, str) else None, "replicate_weights": rep_names},
    )

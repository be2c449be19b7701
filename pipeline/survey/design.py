"""Survey designs: the one object every estimator takes.

This module owns :class:`Design`, an immutable description of how a sample was
drawn (weights, strata and clusters by stage, finite population corrections,
lonely-PSU policy) or of the replicate weights that stand for it, plus the hook
through which weighting steps make the variance account for themselves
(:class:`VarianceAdjustment`).

The conventions are those of R ``survey`` 4.1-1 (``svydesign``,
``svrepdesign``): clusters are given per stage, later-stage clusters are nested
in earlier ones, ``nest=True`` makes cluster ids unique within strata, and the
finite population correction may be given per stage as population counts or as
sampling fractions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError, DesignError

__all__ = [
    "LONELY_PSU_OPTIONS",
    "Design",
    "LonelyPsu",
    "ReplicateWeights",
    "VarianceAdjustment",
]

LonelyPsu = Literal["fail", "remove", "adjust", "average", "certainty"]
#: The values of R's ``options(survey.lonely.psu = ...)``; see :mod:`pipeline.survey.variance`.
LONELY_PSU_OPTIONS: tuple[str, ...] = ("fail", "remove", "adjust", "average", "certainty")


@runtime_checkable
class VarianceAdjustment(Protocol):
    """What a weighting step leaves behind so that Taylor variances account for it.

    Post-stratification, raking and calibration make the weights depend on the
    sample. R ``survey`` accounts for that in ``svyrecvar``: before the
    multistage variance is computed, the matrix ``x`` of weighted
    estimating-function values is replaced by its residuals from the
    weighting model (``qr.resid(qr, x / w) * w`` for calibration, the
    post-stratum mean removed for post-stratification, repeated margin
    sweeps for raking). An adjustment object is that step.

    Methods
    -------
    residualize(x)
        ``x`` is an ``(n, k)`` float array: for each of ``k`` statistics, the
        estimating-function (influence) value of every row of the design,
        **already multiplied by the row's current analysis weight** (exactly
        the ``x`` that R's ``svyrecvar`` receives; zero for rows outside a
        domain). Return an array of the same shape holding the residuals
        (also weighted). The object carries whatever it needs (design matrix,
        g-weights, post-strata); it must not modify ``x`` in place.

    Notes
    -----
    :meth:`Design.reweight` stores adjustments in order; the Taylor variance
    applies them in that order (the first weighting step first), as
    ``svyrecvar`` walks ``design$postStrata``.
    """

    def residualize(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        ...


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


def _readonly(a: np.ndarray, *, any_order: bool = False) -> np.ndarray:
    """``a`` made read-only (the design owns it from now on).

    Copied only when it is not C-contiguous, unless ``any_order``: replicate
    weights are kept in the layout they came in (polars gives Fortran order),
    because an ``(n, R)`` copy can be gigabytes.
    """
    if not any_order:
        a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


def _codes(values: np.ndarray) -> np.ndarray:
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


def _pair_codes(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """``first * k + second`` for codes ``second < k``: orders pairs as ``np.unique(..., axis=0)`` does."""
    return first.astype(np.int64) * (int(second.max()) + 1 if len(second) else 1) + second


def _distinct(codes: np.ndarray) -> np.ndarray:
    """Sorted distinct values of non-negative integer ``codes`` (``np.unique``), by bincount when the range is small."""
    top = int(codes.max()) + 1 if len(codes) else 0
    if top <= max(4 * len(codes), 1 << 16):
        return np.flatnonzero(np.bincount(codes, minlength=top))
    return np.unique(codes)


def _factorize(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Integer codes ``0..k-1`` of the distinct combinations of ``columns`` (row-wise).

    The codes follow the lexicographic order of the combinations, as
    ``np.unique(np.column_stack(codes), axis=0)`` (which sorts rows of a
    structured array: seconds at 10^7 rows); pairs are combined one column at
    a time as ``code * k + next`` and recoded, so codes never overflow.
    """
    codes = _codes(columns[0])
    for col in columns[1:]:
        codes = _codes(_pair_codes(codes, _codes(col)))
    return codes


def _column(frame: pl.DataFrame, name: str, role: str) -> pl.Series:
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


def _numeric(frame: pl.DataFrame, name: str, role: str) -> np.ndarray:
    s = _column(frame, name, role)
    if not s.dtype.is_numeric():
        raise DesignError(
            f"design: the {role} column {name!r} must be numeric; found dtype {s.dtype}",
            hint=f"cast {name!r} to a number before building the design",
        )
    return s.cast(pl.Float64).to_numpy().astype(np.float64, copy=False)


def _as_tuple(x: str | Sequence[str] | None) -> tuple[str, ...]:
    if x is None:
        return ()
    if isinstance(x, str):
        return (x,)
    return tuple(x)


@dataclass(frozen=True, eq=False)
class Design:
    """An immutable survey design: data, weights and sampling structure.

    Build one with :meth:`from_frame` (Taylor linearization) or
    :meth:`from_replicate_weights` (replicate weights); weighting steps return
    new designs through :meth:`reweight`; domains are designs with zero weights
    outside the domain (:meth:`subset`), never designs with rows dropped.

    Attributes
    ----------
    frame : polars.DataFrame
        The data, one row per sampled unit, in file order.
    weights : numpy.ndarray
        ``(n,)`` analysis weights (zero outside a domain).
    clusters : numpy.ndarray
        ``(n, stages)`` integer cluster codes; stage ``s`` codes are unique
        within the whole design (nested in stratum and earlier clusters).
    strata : numpy.ndarray
        ``(n, stages)`` integer stratum codes of each stage.
    n_psu : numpy.ndarray
        ``(n, stages)`` number of sampled units in the row's stratum at each
        stage (fixed when the design is built, as R's ``fpc$sampsize``).
    popsize : numpy.ndarray or None
        ``(n, stages)`` population number of units in the row's stratum at
        each stage (``inf`` for a stage sampled with replacement); ``None``
        when no finite population correction was given.
    has_strata : bool
        Whether strata were declared.
    lonely_psu : {'fail', 'remove', 'adjust', 'average', 'certainty'}
        Policy for strata with a single PSU, as ``survey.lonely.psu``.
    in_design : numpy.ndarray
        ``(n,)`` bool, rows that belong to this (sub)design. A domain made by
        :meth:`subset` keeps every row (with zero weight) but remembers which
        rows are its own, because R counts them for ``nrow()`` and for the
        ``average`` lonely-PSU rule.
    adjustments : tuple of VarianceAdjustment
        Weighting steps to residualize for, in the order they were applied.
    replicates : ReplicateWeights or None
        Replicate weights; when set, variances come from them.
    spec : dict
        The column names the design was built from (for messages).
    """

    frame: pl.DataFrame
    weights: np.ndarray
    clusters: np.ndarray
    strata: np.ndarray
    n_psu: np.ndarray
    popsize: np.ndarray | None
    has_strata: bool
    lonely_psu: LonelyPsu
    in_design: np.ndarray
    adjustments: tuple[VarianceAdjustment, ...] = ()
    replicates: ReplicateWeights | None = None
    spec: dict = field(default_factory=dict)
    # Values derived from the weights and the sampling structure alone (the
    # Taylor stages, degrees of freedom): computed on first use. A design made
    # by ``replace`` starts empty; with_frame and with_lonely_psu share it,
    # since they change neither weights nor structure.
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _cached(self, key, compute):
        """``self._cache[key]``, computed by ``compute()`` on first use."""
        try:
            return self._cache[key]
        except KeyError:
            value = self._cache[key] = compute()
            return value

    def _sharing_cache(self, other: Design) -> Design:
        object.__setattr__(other, "_cache", self._cache)
        return other

    # ------------------------------------------------------------------ build
    @classmethod
    def from_frame(
        cls,
        frame: pl.DataFrame,
        *,
        weights: str | None = None,
        probs: str | None = None,
        ids: Sequence[str] = (),
        strata: str | Sequence[str] | None = None,
        fpc: Sequence[str] = (),
        nest: bool = False,
        lonely_psu: LonelyPsu = "fail",
    ) -> Design:
        """Build a Taylor-linearization design, as R's ``svydesign``.

        Parameters
        ----------
        frame : polars.DataFrame
            One row per sampled unit.
        weights : str, optional
            Column of sampling weights. Give at most one of ``weights`` and
            ``probs``; with neither, weights come from ``fpc`` as R's
            ``svydesign`` derives them (``1 / prod(n_s / N_s)`` over the stages
            ``s``, ``n_s / N_s`` the stage's sampling fraction in the row's
            stratum), or are all 1 without ``fpc``.
        probs : str, optional
            Column of selection probabilities (weights are their inverses).
        ids : sequence of str
            Cluster column of each stage, first stage first (R's
            ``id = ~psu + ssu``). Empty: every row is its own PSU (``id = ~1``).
        strata : str or sequence of str, optional
            Stratum column (a sequence gives the strata of successive stages).
        fpc : sequence of str
            Finite population correction of each stage: either population
            counts (all values >= 1) or sampling fractions (all values <= 1).
            Empty: sampling with replacement at the first stage (later stages
            then do not contribute, R's default).
        nest : bool
            Cluster ids are only unique within strata (R's ``nest=TRUE``).
        lonely_psu : {'fail', 'remove', 'adjust', 'average', 'certainty'}
            What to do with strata holding a single PSU (see
            :data:`pipeline.survey.variance.LONELY_PSU`).

        Returns
        -------
        Design

        Raises
        ------
        DesignError
            Missing design columns, clusters not nested in strata without
            ``nest=True``, a single PSU, fpc mixing counts and fractions or
            implying more than 100 % sampling.
        ArgumentError
            An unknown ``lonely_psu`` option, both ``weights`` and ``probs``, or
            neither with an ``fpc`` from which the weights cannot be derived (a
            stage with an infinite population, as R's ``weights.survey_fpc``).

        Examples
        --------
        >>> import polars as pl
        >>> df = pl.DataFrame({"h": [1, 1, 2, 2], "psu": [1, 2, 1, 2], "w": [2.0, 2, 3, 3], "y": [1, 0, 1, 1]})
        >>> d = Design.from_frame(df, weights="w", ids=["psu"], strata="h", nest=True)
        >>> d.degf
        2
        """
        _check_lonely(lonely_psu)
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
        strata_cols = _as_tuple(strata)
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
        raw_ids = [np.arange(n)] if not ids else [_column(frame, c, "ids").to_numpy() for c in ids]
        raw_strata = [_column(frame, c, "strata").to_numpy() for c in strata_cols]
        stratum_codes = [_factorize([s]) for s in raw_strata] or [np.zeros(n, dtype=np.int64)]
        id_codes = [_factorize([c]) for c in raw_ids]
        nested_ids = []
        for s in range(n_stages):
            nested_ids.append(_factorize(id_codes[: s + 1]))
        if int(nested_ids[0].max()) == 0 and not (nest and strata_cols):
            raise DesignError(
                "design: the design has a single primary sampling unit"
                + (f" (every row has the same {ids[0]!r})" if ids else ""),
                hint="variances need at least two PSUs; check the ids column",
            )
        if nest and strata_cols:
            ns = len(stratum_codes)
            nested_ids = [
                _factorize(stratum_codes[: min(s + 1, ns)] + [nested_ids[s]]) for s in range(n_stages)
            ]
        elif strata_cols:
            # R's check.strata: a first-stage cluster must lie in a single stratum
            n_strata = int(stratum_codes[0].max()) + 1
            pairs = _distinct(_pair_codes(nested_ids[0], stratum_codes[0]))
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
            strata_by_stage.append(_factorize([stratum_codes[min(s, ns - 1)], nested_ids[s - 1]]))
        strata_arr = np.column_stack(strata_by_stage)

        # number of sampled units per stratum and stage (R as.fpc: sampsize)
        n_psu = np.empty((n, n_stages), dtype=np.float64)
        for s in range(n_stages):
            n_clusters = int(clusters[:, s].max()) + 1
            pairs = _distinct(_pair_codes(strata_arr[:, s], clusters[:, s]))
            per_stratum = np.bincount(pairs // n_clusters, minlength=int(strata_arr[:, s].max()) + 1)
            n_psu[:, s] = per_stratum[strata_arr[:, s]]

        popsize = None
        if fpc:
            values = np.column_stack([_numeric(frame, c, "fpc") for c in fpc])
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
            w = _numeric(frame, weights, "weights")
        elif probs is not None:
            p = _numeric(frame, probs, "probs")
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
        return cls(
            frame=frame,
            weights=_readonly(w.astype(np.float64, copy=False)),
            clusters=_readonly(clusters.astype(np.int64, copy=False)),
            strata=_readonly(strata_arr.astype(np.int64, copy=False)),
            n_psu=_readonly(n_psu),
            popsize=None if popsize is None else _readonly(popsize),
            has_strata=bool(strata_cols),
            lonely_psu=lonely_psu,
            in_design=_readonly(np.ones(n, dtype=bool)),
            spec=spec,
        )

    @classmethod
    def from_replicate_weights(
        cls,
        frame: pl.DataFrame,
        *,
        replicate_weights: Sequence[str] | np.ndarray,
        weights: str | np.ndarray | None = None,
        type: Literal["JK1", "JKn", "BRR", "Fay", "bootstrap", "other"] = "other",
        combined_weights: bool = True,
        scale: float | None = None,
        rscales: float | Sequence[float] | np.ndarray | None = None,
        rho: float | None = None,
        mse: bool = False,
        fpc: float | Sequence[float] | np.ndarray | None = None,
        fpctype: Literal["fraction", "correction", "population"] | None = None,
    ) -> Design:
        """Build a design from given replicate weights, as R's ``svrepdesign``.

        Parameters
        ----------
        frame : polars.DataFrame
            The data.
        replicate_weights : sequence of str or numpy.ndarray
            Replicate-weight columns of ``frame`` (or an ``(n, R)`` array).
        weights : str or numpy.ndarray, optional
            Full-sample sampling weights; all 1 when omitted.
        type : {'JK1', 'JKn', 'BRR', 'Fay', 'bootstrap', 'other'}
            Replication method; sets the default ``scale``/``rscales`` as
            ``svrepdesign``: BRR ``1/R``; Fay ``1/(R (1-rho)^2)``; bootstrap
            ``1/(R-1)``; JK1 ``(R-1)/R``; other 1.
        combined_weights : bool
            The replicate weights already include the sampling weights
            (R's default). ``False``: they are multipliers of the sampling
            weights (e.g. 0/2 for BRR).
        scale, rscales : optional
            Override the defaults (``rscales`` a scalar or one per replicate).
            JKn needs ``rscales`` (``(n_h - 1)/n_h`` per replicate).
        rho : float, optional
            Fay's rho (required for ``type='Fay'``).
        mse : bool
            Centre the variance on the full-sample estimate.
        fpc : float or sequence of float, optional
            Finite population correction of each replicate (a scalar is used
            for every replicate), as R's ``svrepdesign(fpc=, fpctype=)``: the
            ``rscales`` are multiplied by ``1 - fpc`` (``fpctype='fraction'``,
            the sampling fraction of the replicate's PSUs) or by ``fpc``
            (``'correction'``). ``'population'`` (JK1 only; not in R) gives the
            population number of PSUs ``N``, the sample number ``n`` being the
            number of replicates (one per deleted PSU, as R's ``jk1weights``):
            the factor is ``1 - n/N``, so ``scale * rscales`` is
            ``as.svrepdesign``'s JK1 scale ``(n-1)/n * (1 - n/N)``. Not for
            BRR, Fay (no fpc) or bootstrap (R: not needed).
        fpctype : {'fraction', 'correction', 'population'}
            Required with ``fpc`` (R too requires it).

        Returns
        -------
        Design
        """
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
            rep = np.column_stack([_numeric(frame, c, "replicate weights") for c in rep_names])
        n_rep = rep.shape[1]
        if isinstance(weights, np.ndarray):
            w = np.asarray(weights, dtype=np.float64)
        elif weights is not None:
            w = _numeric(frame, weights, "weights")
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
            rs = rs * _replicate_fpc_factor(fpc, fpctype, type, n_rep)
        elif fpctype is not None:
            raise ArgumentError(f"design: fpctype={fpctype!r} given without fpc", hint="give fpc= with fpctype=, or neither")
        reps = ReplicateWeights(
            weights=_readonly(analysis, any_order=True),
            scale=float(scale),
            rscales=_readonly(rs),
            mse=bool(mse),
            type=type,
            rho=rho,
        )
        ones = np.zeros((n, 1), dtype=np.int64)
        return cls(
            frame=frame,
            weights=_readonly(w),
            clusters=_readonly(np.arange(n, dtype=np.int64)[:, None]),
            strata=_readonly(ones),
            n_psu=_readonly(np.full((n, 1), float(n))),
            popsize=None,
            has_strata=False,
            lonely_psu="fail",
            in_design=_readonly(np.ones(n, dtype=bool)),
            replicates=reps,
            spec={"weights": weights if isinstance(weights, str) else None, "replicate_weights": rep_names},
        )

    # --------------------------------------------------------------- queries
    @property
    def n_rows(self) -> int:
        """Rows of this (sub)design (R's ``nrow(design)``)."""
        return int(self.in_design.sum())

    @property
    def is_replicate(self) -> bool:
        """Whether variances come from replicate weights."""
        return self.replicates is not None

    @property
    def n_stages(self) -> int:
        """Number of sampling stages (columns of :attr:`clusters`)."""
        return int(self.clusters.shape[1])

    @property
    def degf(self) -> int:
        """Design degrees of freedom, R's ``degf(design)``.

        Linearization: number of first-stage PSUs minus number of strata,
        counting only PSUs and strata with a non-zero weight. Replicate:
        the rank of the analysis replicate weights (rows of this design,
        R's ``qr(..., tol = 1e-5)``) minus 1. Computed once per design.
        """
        return self._cached("degf", lambda: self.domain_degf(None))

    def domain_degf(self, mask: np.ndarray | None) -> int:
        """Degrees of freedom of the domain ``mask`` (R: ``degf(subset(design, mask))``).

        Parameters
        ----------
        mask : numpy.ndarray or None
            ``(n,)`` bool; ``None`` means the whole (sub)design.
        """
        rows = self.in_design if mask is None else (self.in_design & np.asarray(mask, dtype=bool))
        if self.replicates is not None:
            return self._replicate_degf(rows)
        if mask is None and self._cached("all_in_design", lambda: bool(self.in_design.all())) and self._cached(
            "all_weights_nonzero", lambda: bool((self.weights != 0).all())
        ):
            # every row counts: the design's PSUs and strata (codes are 0..k-1, PSUs nested in strata)
            return int(self.clusters[:, 0].max()) + 1 - (int(self.strata[:, 0].max()) + 1)
        # PSUs and strata with a row of non-zero weight, counted by bincount on their codes
        inset = (rows & (self.weights != 0)).astype(np.float64)
        n_psu = np.count_nonzero(np.bincount(self.clusters[:, 0], weights=inset))
        n_strata = np.count_nonzero(np.bincount(self.strata[:, 0], weights=inset))
        return int(n_psu - n_strata)

    def _replicate_degf(self, rows: np.ndarray, col_sumsq: np.ndarray | None = None) -> int:
        """Rank of the replicate weights of ``rows`` minus 1, cached per set of rows.

        ``col_sumsq``: the column sums of squares of those rows, when the caller
        has them (see :func:`pipeline.survey._linalg.replicate_rank`).
        """
        from pipeline.survey._linalg import replicate_rank

        rows = self.in_design & rows
        return self._cached(
            _rows_key(rows), lambda: replicate_rank(self.replicates.weights, rows, tol=1e-5, col_sumsq=col_sumsq) - 1
        )

    def _replicate_degf_known(self, rows: np.ndarray) -> bool:
        """Whether :meth:`_replicate_degf` of ``rows`` is already cached."""
        return _rows_key(self.in_design & rows) in self._cache

    # ------------------------------------------------------------ transforms
    def subset(self, mask: np.ndarray) -> Design:
        """The domain ``mask`` as a design: weights set to zero outside it.

        Every row is kept, so strata and PSUs without domain rows still count
        as sampled (R's domain estimation). ``nrow`` and ``degf`` of the result
        are those of R's ``subset(design, mask)``.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.weights.shape:
            raise DesignError(
                f"design.subset: mask has shape {mask.shape}, expected ({self.weights.shape[0]},)",
                hint="one boolean per row of the design",
            )
        keep = self.in_design & mask
        reps = self.replicates
        if reps is not None:
            reps = replace(reps, weights=_readonly(np.where(keep[:, None], reps.weights, 0.0)))
        return replace(
            self,
            weights=_readonly(np.where(keep, self.weights, 0.0)),
            in_design=_readonly(keep),
            replicates=reps,
        )

    def reweight(
        self,
        weights: np.ndarray,
        adjustment: VarianceAdjustment | None = None,
        *,
        replicate_weights: np.ndarray | None = None,
    ) -> Design:
        """A new design with new analysis weights, remembering the weighting step.

        Parameters
        ----------
        weights : numpy.ndarray
            ``(n,)`` new analysis weights (non-negative, finite).
        adjustment : VarianceAdjustment, optional
            Residualizer applied to the weighted influence values before the
            Taylor variance (calibration, post-stratification, raking). ``None``
            treats the new weights as fixed (e.g. trimming).
        replicate_weights : numpy.ndarray, optional
            ``(n, R)`` re-weighted analysis replicate weights (the weighting
            redone in every replicate); required for replicate designs.

        Returns
        -------
        Design
        """
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != self.weights.shape:
            raise DesignError(
                f"design.reweight: got {w.shape[0] if w.ndim else 0} weights for {self.weights.shape[0]} rows",
                hint="give one weight per row of the design, in row order",
            )
        if not np.isfinite(w).all() or (w < 0).any():
            r = int(np.flatnonzero(~np.isfinite(w) | (w < 0))[0])
            raise DesignError(
                f"design.reweight: weights must be finite and non-negative; row {r + 1} has {float(w[r])!r}",
                hint="check the weighting step that produced these weights",
            )
        reps = self.replicates
        if reps is not None:
            if replicate_weights is None:
                raise DesignError(
                    "design.reweight: a replicate design needs the re-weighted replicate weights",
                    hint="redo the weighting in every replicate and pass replicate_weights=",
                )
            rw = np.asarray(replicate_weights)
            if rw.dtype not in (np.float64, np.float32):
                rw = rw.astype(np.float64)
            if rw.shape != reps.weights.shape:
                raise DesignError(
                    f"design.reweight: replicate_weights has shape {rw.shape}, expected {reps.weights.shape}",
                    hint="one column per replicate, one row per data row",
                )
            reps = replace(reps, weights=_readonly(rw, any_order=True))
        elif replicate_weights is not None:
            raise DesignError(
                "design.reweight: replicate_weights given for a linearization design",
                hint="pass an adjustment instead; replicate weights belong to replicate designs",
            )
        adjustments = self.adjustments + ((adjustment,) if adjustment is not None else ())
        return replace(self, weights=_readonly(w), adjustments=adjustments, replicates=reps)

    def with_lonely_psu(self, lonely_psu: LonelyPsu) -> Design:
        """The same design under another lonely-PSU policy."""
        _check_lonely(lonely_psu)
        return self._sharing_cache(replace(self, lonely_psu=lonely_psu))

    def with_frame(self, frame: pl.DataFrame) -> Design:
        """The same design over a frame with extra or recoded columns (same rows, same order)."""
        if frame.height != self.frame.height:
            raise DesignError(
                f"design.with_frame: the new frame has {frame.height} rows, the design {self.frame.height}",
                hint="add columns with with_columns(); never filter rows of a design's frame",
            )
        return self._sharing_cache(replace(self, frame=frame))

    def __repr__(self) -> str:
        kind = f"replicate ({self.replicates.type}, {self.replicates.n_replicates} replicates)" if self.replicates else "linearization"
        parts = [f"Design({kind}", f"rows={self.n_rows}", f"degf={self.degf}"]
        if not self.replicates:
            parts.append(f"stages={self.n_stages}")
            if self.has_strata:
                parts.append(f"strata={len(np.unique(self.strata[:, 0]))}")
            parts.append(f"fpc={'yes' if self.popsize is not None else 'no'}")
            parts.append(f"lonely_psu={self.lonely_psu!r}")
        if self.adjustments:
            parts.append(f"adjustments={len(self.adjustments)}")
        return ", ".join(parts) + ")"


def _rows_key(rows: np.ndarray) -> tuple:
    """Cache key of a set of rows (a digest of the boolean mask)."""
    return ("replicate_degf", rows.shape[0], hashlib.blake2b(np.packbits(rows).tobytes(), digest_size=16).digest())


REPLICATE_TYPES: tuple[str, ...] = ("JK1", "JKn", "BRR", "Fay", "bootstrap", "other")


def _replicate_fpc_factor(fpc, fpctype, rep_type: str, n_rep: int) -> np.ndarray:
    """Per-replicate factor ``1 - f`` of R ``svrepdesign(fpc=, fpctype=)`` (rscales are multiplied by it)."""
    if fpctype not in ("fraction", "correction", "population"):
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


def _check_lonely(option: str) -> None:
    if option not in LONELY_PSU_OPTIONS:
        raise ArgumentError(
            f"design: unknown lonely_psu option {option!r}",
            hint=f"expected one of {', '.join(LONELY_PSU_OPTIONS)} (as R's survey.lonely.psu)",
        )

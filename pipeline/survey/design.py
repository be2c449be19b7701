"""Survey designs: the one object every estimator takes.

This module owns :class:`Design`, an immutable description of how a sample was
drawn (weights, strata and clusters by stage, finite population corrections,
lonely-PSU policy) or of the replicate weights that stand for it, plus the hook
through which weighting steps make the variance account for themselves
(:class:`VarianceAdjustment`). How its arrays are built from a frame (R's ``svydesign`` and
``svrepdesign`` rules) is :mod:`pipeline.survey._design_build`.

The conventions are those of R ``survey`` 4.1-1 (``svydesign``,
``svrepdesign``): clusters are given per stage, later-stage clusters are nested
in earlier ones, ``nest=True`` makes cluster ids unique within strata, and the
finite population correction may be given per stage as population counts or as
sampling fractions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import polars as pl

from pipeline.errors import DesignError
from pipeline.survey._design_build import (
    LONELY_PSU_OPTIONS,
    REPLICATE_FPC_TYPES,
    REPLICATE_TYPES,
    LonelyPsu,
    ReplicateWeights,
    check_lonely,
    readonly,
    replicate_fields,
    rows_key,
    taylor_fields,
)

__all__ = [
    "LONELY_PSU_OPTIONS",
    "REPLICATE_FPC_TYPES",
    "REPLICATE_TYPES",
    "Design",
    "LonelyPsu",
    "ReplicateWeights",
    "VarianceAdjustment",
]



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
        return cls(**taylor_fields(
            frame, weights=weights, probs=probs, ids=ids, strata=strata, fpc=fpc, nest=nest, lonely_psu=lonely_psu,
        ))

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
        return cls(**replicate_fields(
            frame, replicate_weights=replicate_weights, weights=weights, type=type, combined_weights=combined_weights,
            scale=scale, rscales=rscales, rho=rho, mse=mse, fpc=fpc, fpctype=fpctype,
        ))

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
            rows_key(rows), lambda: replicate_rank(self.replicates.weights, rows, tol=1e-5, col_sumsq=col_sumsq) - 1
        )

    def _replicate_degf_known(self, rows: np.ndarray) -> bool:
        """Whether :meth:`_replicate_degf` of ``rows`` is already cached."""
        return rows_key(self.in_design & rows) in self._cache

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
            reps = replace(reps, weights=readonly(np.where(keep[:, None], reps.weights, 0.0)))
        return replace(
            self,
            weights=readonly(np.where(keep, self.weights, 0.0)),
            in_design=readonly(keep),
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
            reps = replace(reps, weights=readonly(rw, any_order=True))
        elif replicate_weights is not None:
            raise DesignError(
                "design.reweight: replicate_weights given for a linearization design",
                hint="pass an adjustment instead; replicate weights belong to replicate designs",
            )
        adjustments = self.adjustments + ((adjustment,) if adjustment is not None else ())
        return replace(self, weights=readonly(w), adjustments=adjustments, replicates=reps)

    def with_lonely_psu(self, lonely_psu: LonelyPsu) -> Design:
        """The same design under another lonely-PSU policy."""
        check_lonely(lonely_psu)
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

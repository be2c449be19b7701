"""The result type of the design-based estimators: :class:`Estimates`.

Owns :class:`Estimates` (estimates with their full covariance, design effects, degrees of
freedom; contrasts, confidence intervals and the tidy frame) and the ``deff`` argument type
:data:`Deff`. Made by :mod:`pipeline.survey._domains` and returned by
:mod:`pipeline.survey.estimators`; kept apart so that both can import it without a circle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError

__all__ = ["Deff", "Estimates", "key_label"]

Deff = bool | Literal["replace"]


# ------------------------------------------------------------------ results
@dataclass(frozen=True, eq=False)
class Estimates:
    """Estimates with their covariance matrix: what every estimator returns.

    One entry per domain x level (``keys``), domains slowest.

    Attributes
    ----------
    statistic : {'total', 'mean', 'proportion', 'ratio', 'contrast'}
        What was estimated (R: svytotal, svymean, svymean of a factor, svyratio).
    variable : str
        The analysis variable (``num/den`` for ratios).
    by : tuple of str
        Domain variables (empty: the whole sample).
    keys : polars.DataFrame
        One row per estimate: the ``by`` columns (original dtypes) and ``level``
        (category for categorical variables, null otherwise).
    estimate : numpy.ndarray
        ``(K,)`` point estimates.
    vcov : numpy.ndarray
        ``(K, K)`` covariance matrix, across levels and domains.
    n : numpy.ndarray
        ``(K,)`` rows of the domain with a value of the variable.
    n_rows : numpy.ndarray
        ``(K,)`` rows of the domain design (R ``nrow``).
    df : numpy.ndarray
        ``(K,)`` domain degrees of freedom.
    design_df : int
        Degrees of freedom of the whole design (R ``degf(design)``).
    deff : numpy.ndarray
        ``(K,)`` design effects (NaN when not requested).
    deff_kind : bool or 'replace'
        Which design effect ``deff`` holds.
    """

    statistic: str
    variable: str
    by: tuple[str, ...]
    keys: pl.DataFrame
    estimate: np.ndarray
    vcov: np.ndarray
    n: np.ndarray
    n_rows: np.ndarray
    df: np.ndarray
    design_df: int
    deff: np.ndarray
    deff_kind: Deff = True
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.estimate.shape[0])

    @property
    def se(self) -> np.ndarray:
        """Standard errors, ``sqrt(diag(vcov))``."""
        return np.sqrt(np.maximum(np.diag(self.vcov), 0.0))

    def confint(self, conf_level: float = 0.95, df: Literal["domain", "design"] | float = "domain") -> np.ndarray:
        """Wald intervals ``estimate -/+ q * se``.

        Parameters
        ----------
        conf_level : float
            Confidence level.
        df : {'domain', 'design'} or float
            Degrees of freedom of the t quantile: the domain's, the whole
            design's (R ``confint(x, df = degf(design))``), or a number
            (``float('inf')`` for R's default normal interval).

        Returns
        -------
        numpy.ndarray
            ``(K, 2)`` lower and upper bounds.
        """
        from pipeline.survey.intervals import t_quantile

        dfs = self._df_array(df)
        q = t_quantile(conf_level, dfs)
        se = self.se
        return np.column_stack([self.estimate - q * se, self.estimate + q * se])

    def _df_array(self, df: Literal["domain", "design"] | float) -> np.ndarray:
        if isinstance(df, str):
            if df == "domain":
                return self.df.astype(np.float64)
            if df == "design":
                return np.full(len(self), float(self.design_df))
            raise ArgumentError(f"unknown df {df!r}", hint="use 'domain', 'design' or a number")
        return np.full(len(self), float(df))

    def to_frame(self, conf_level: float = 0.95, df: Literal["domain", "design"] | float = "domain") -> pl.DataFrame:
        """Tidy frame: ``by`` columns, ``level``, ``n``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``, ``deff``.

        Intervals are Wald intervals with a t quantile (see :meth:`confint`).
        """
        ci = self.confint(conf_level, df)
        return self.keys.with_columns(
            pl.Series("n", self.n, dtype=pl.Int64),
            pl.Series("estimate", self.estimate, dtype=pl.Float64),
            pl.Series("se", self.se, dtype=pl.Float64),
            pl.Series("ci_low", ci[:, 0], dtype=pl.Float64),
            pl.Series("ci_high", ci[:, 1], dtype=pl.Float64),
            pl.Series("df", self._df_array(df), dtype=pl.Float64),
            pl.Series("deff", self.deff, dtype=pl.Float64),
        )

    def index(self, **key: Any) -> int:
        """Position of the estimate whose ``by`` values (and ``level``) equal ``key``.

        Examples
        --------
        ``res.index(stype="E", level="Yes")``
        """
        unknown = set(key) - set(self.keys.columns)
        if unknown:
            raise ArgumentError(
                f"unknown key column(s) {', '.join(sorted(unknown))}",
                hint=f"keys are {', '.join(self.keys.columns)}",
            )
        hit = np.ones(len(self), dtype=bool)
        for col, value in key.items():
            hit &= (self.keys.get_column(col) == value).fill_null(False).to_numpy()
        found = np.flatnonzero(hit)
        if len(found) != 1:
            raise ArgumentError(
                f"{len(found)} estimates match {key!r}; expected exactly one",
                hint="give every by column (and level for categorical variables)",
            )
        return int(found[0])

    def contrast(self, coefficients: np.ndarray | Sequence[float], *, labels: Sequence[str] | None = None) -> Estimates:
        """Linear combinations ``L @ estimate`` with covariance ``L V L'`` (R ``svycontrast``).

        Parameters
        ----------
        coefficients : array_like
            ``(K,)`` or ``(m, K)`` contrast coefficients.
        labels : sequence of str, optional
            Names of the ``m`` contrasts (the ``level`` column of the result).

        Returns
        -------
        Estimates
            ``statistic='contrast'``; ``df`` is the smallest domain df involved.
        """
        L = np.atleast_2d(np.asarray(coefficients, dtype=np.float64))
        if L.shape[1] != len(self):
            raise ArgumentError(
                f"contrast: {L.shape[1]} coefficients for {len(self)} estimates",
                hint="one coefficient per estimate, in the order of .keys",
            )
        m = L.shape[0]
        labels = list(labels) if labels is not None else [f"contrast_{i + 1}" for i in range(m)]
        involved = L != 0
        df = np.array([self.df[row].min() if row.any() else self.design_df for row in involved], dtype=np.float64)
        nn = np.array([self.n[row].sum() if row.any() else 0 for row in involved], dtype=np.int64)
        return Estimates(
            statistic="contrast",
            variable=self.variable,
            by=(),
            keys=pl.DataFrame({"level": labels}),
            estimate=L @ self.estimate,
            vcov=L @ self.vcov @ L.T,
            n=nn,
            n_rows=nn,
            df=df,
            design_df=self.design_df,
            deff=np.full(m, np.nan),
            deff_kind=False,
        )

    def difference(self, first: Mapping[str, Any], second: Mapping[str, Any]) -> Estimates:
        """``estimate[first] - estimate[second]`` with its standard error from the covariance.

        Examples
        --------
        ``res.difference({"stype": "E"}, {"stype": "H"})``
        """
        i, j = self.index(**first), self.index(**second)
        L = np.zeros(len(self))
        L[i] += 1.0
        L[j] -= 1.0
        label = f"{key_label(first)} - {key_label(second)}"
        out = self.contrast(L, labels=[label])
        return out


def key_label(key: Mapping[str, Any]) -> str:
    return "*".join(f"{k}={v}" for k, v in key.items())

"""Design-based estimators: totals, means, proportions and ratios, overall and by domains.

This module owns the public estimators (:func:`total`, :func:`mean`, :func:`proportions`,
:func:`ratio`) and :func:`proportion`, the estimate stage's entry point; their result type
:class:`Estimates` (contrasts, intervals, tidy frames) lives in :mod:`pipeline.survey.results`
and the domain engine they share with :mod:`pipeline.survey.tables` in
:mod:`pipeline.survey._domains`; quantiles are :mod:`pipeline.survey.quantiles`.
Every statistic here is a ratio of weighted totals ``A / B`` (a total has no
denominator; a mean is ``sum w y / sum w``; the proportion of a level is the
mean of its indicator), so one code path gives the estimates, their full
covariance matrix (between levels *and* between domains) and design effects:

* Taylor linearization: influence values ``w_i (a_i - R b_i) / B`` go to
  :func:`pipeline.survey.variance.taylor_vcov` (R ``svymean``/``svyratio``);
* replicate designs: the statistic is recomputed with every replicate's
  weights and :func:`pipeline.survey.variance.replicate_vcov` applies.

Domains are estimated by zero weights outside the domain (R ``svyby``),
never by dropping rows. ``na_rm=True`` treats rows with a missing value as
outside the domain (R ``na.rm = TRUE``): the design (strata, PSUs, ``degf``)
stays that of the whole sample. Rows with a missing ``by`` value belong to no
domain (R drops them from ``svyby``).

Conventions follow R ``survey`` 4.1-1 (see ``conformance/README.md``):

``deff=True``
    ``var / var_srs`` with ``var_srs = svyvar(u) / n * (1 - n/N)`` on the
    domain rows (``N`` the sum of their weights, ``n`` the rows with a non-zero
    weight, or all rows for replicate designs); totals multiply ``var_srs``
    by ``N^2``, ratios by ``(N / B)^2``. ``deff="replace"`` omits ``(1 - n/N)``.
    Weights that sum to less than the sample size give NaN (R's ``svymean``
    warns and returns NA); weights summing to exactly ``n`` give ``inf``.
``df``
    The domain's design degrees of freedom (R ``degf`` of the domain subset,
    as ``svyby(..., svyciprop)`` uses); :attr:`Estimates.design_df` holds the
    whole design's.

Where this module deliberately differs from R survey 4.1-1:

* ``nrow()`` of a domain of a *calibrated* design (used by the ``beta``
  interval's df adjustment) is the number of domain rows here; R keeps the
  out-of-domain rows of calibrated designs and counts them.
* Interval bounds are kept inside [0, 1] (see :mod:`pipeline.survey.intervals`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError
from pipeline.survey._domains import (
    check_missing,
    design_column,
    domain_matrix,
    domains_of,
    estimate_coded,
    is_categorical,
    level_estimate,
    level_estimates,
    missing_mask,
    numeric_coded,
    numeric_estimate,
    numeric_values,
)
from pipeline.survey.design import Design
from pipeline.survey.quantiles import QRULES, QUANTILE_INTERVALS, Quantiles, quantile
from pipeline.survey.results import Deff, Estimates

__all__ = [
    "QRULES",
    "QUANTILE_INTERVALS",
    "Quantiles",
    "quantile",
    "Deff",
    "Estimates",
    "mean",
    "proportion",
    "proportions",
    "ratio",
    "total",
]


def total(
    design: Design,
    variable: str,
    *,
    by: Sequence[str] = (),
    na_rm: bool = False,
    deff: Deff = True,
    categorical: bool | None = None,
) -> Estimates:
    """Population total of ``variable`` (R ``svytotal``), overall or by domains.

    Parameters
    ----------
    design : Design
        The survey design.
    variable : str
        Column to total. Categorical (string, categorical, enum) columns give
        the estimated population count of every level, as R on a factor.
    by : sequence of str
        Domain variables; one estimate per observed combination.
    na_rm : bool
        Treat rows with a missing value as outside the domain. ``False``
        raises :class:`~pipeline.errors.DataError` when values are missing.
    deff : bool or 'replace'
        Design effect to compute (see the module docstring).
    categorical : bool, optional
        Force the categorical (per-level) or numeric treatment.

    Returns
    -------
    Estimates
    """
    s = design_column(design, variable)
    if is_categorical(s, categorical):
        return level_estimate(design, variable, by=by, levels=None, na_rm=na_rm, deff=deff, statistic="total")
    return numeric_estimate(design, variable, by=by, na_rm=na_rm, deff=deff, statistic="total")


def mean(
    design: Design,
    variable: str,
    *,
    by: Sequence[str] = (),
    na_rm: bool = False,
    deff: Deff = True,
    categorical: bool | None = None,
) -> Estimates:
    """Population mean of ``variable`` (R ``svymean``), overall or by domains.

    Categorical variables give the proportion of every level (as R
    ``svymean`` on a factor; see :func:`proportions`). Parameters as
    :func:`total`.

    Examples
    --------
    >>> import polars as pl
    >>> df = pl.DataFrame({"psu": [1, 2, 3, 4], "w": [1.0, 1, 2, 2], "y": [1.0, 2, 3, 4]})
    >>> d = Design.from_frame(df, weights="w", ids=["psu"])
    >>> round(float(mean(d, "y").estimate[0]), 4)
    2.8333
    """
    s = design_column(design, variable)
    if is_categorical(s, categorical):
        return level_estimate(design, variable, by=by, levels=None, na_rm=na_rm, deff=deff, statistic="proportion")
    return numeric_estimate(design, variable, by=by, na_rm=na_rm, deff=deff, statistic="mean")


def proportions(
    design: Design,
    variable: str,
    *,
    by: Sequence[str] = (),
    levels: Sequence[Any] | None = None,
    na_rm: bool = False,
    deff: Deff = True,
) -> Estimates:
    """Share of every level of ``variable`` (R ``svymean`` on a factor), overall or by domains.

    Parameters
    ----------
    levels : sequence, optional
        Levels to report (default: every observed level, sorted; enum
        columns in their category order). The shares are always of all
        non-missing values, whatever ``levels`` keeps; a level absent from a
        domain has estimate 0.

    Other parameters as :func:`total`. Numeric columns are treated as
    categorical codes.
    """
    return level_estimate(design, variable, by=by, levels=levels, na_rm=na_rm, deff=deff, statistic="proportion")


def ratio(
    design: Design,
    numerator: str,
    denominator: str,
    *,
    by: Sequence[str] = (),
    na_rm: bool = False,
    deff: Deff = True,
) -> Estimates:
    """Ratio of population totals ``numerator / denominator`` (R ``svyratio``).

    With ``na_rm`` rows missing either variable are outside the domain.
    """
    sa, sb = design_column(design, numerator), design_column(design, denominator)
    ya, yb = numeric_values(sa, numerator), numeric_values(sb, denominator)
    miss = check_missing(design, sa, numerator, na_rm, extra=missing_mask(sb))
    dom = domains_of(design, by)
    coded = numeric_coded(design, f"{numerator}/{denominator}", dom, miss, ya, "ratio", yb=yb)
    return estimate_coded(design, dom, [coded], "ratio", by, deff)[0]


# ---------------------------------------------------------- pipeline entry
def proportion(
    design: Design,
    variable: str | Sequence[str],
    *,
    by: Sequence[str] = (),
    levels: Sequence | None = None,
    ci_method: str = "logit",
    conf_level: float = 0.95,
    na_rm: bool = True,
    df: float | None = None,
) -> pl.DataFrame:
    """Proportions of the levels of ``variable`` with confidence intervals, by domains.

    The function the estimate stage calls: R ``svyby(~I(x == level), ~by,
    design, svyciprop, method = ci_method)`` for every level, with the
    estimates and design effects of ``svymean`` on the factor.

    Parameters
    ----------
    design : Design
        The survey design.
    variable : str or sequence of str
        Categorical column (numeric codes are treated as categories). Several
        columns are estimated together, sharing the domain coding and, on a
        replicate design, one pass over the replicate weights (one call for
        ten items costs about what two single calls do); the result then
        starts with a ``variable`` column and stacks the variables in order.
    by : sequence of str
        Domain variables (empty: the whole sample). Rows with a missing
        ``by`` value belong to no domain.
    levels : sequence, optional
        Levels to report; ``None`` means every observed level. Shares are of
        all non-missing values; a listed level absent from a domain gets a row
        with estimate 0.
    ci_method : {'logit', 'likelihood', 'asin', 'beta', 'mean', 'xlogit', 'korn_graubard', 'wilson'}
        Interval method (:data:`pipeline.survey.intervals.CI_METHODS`).
    conf_level : float
        Confidence level.
    na_rm : bool
        Rows with a missing value are outside the domain (default, as the
        stage needs); ``False`` raises when values are missing.
    df : float, optional
        Degrees of freedom of the intervals instead of each domain's
        ``degf`` (R ``svyciprop(df = )``; ``float('inf')`` for normal
        quantiles). ``beta`` ignores it, as R does.

    Returns
    -------
    polars.DataFrame
        One row per domain x level; columns: each ``by`` column (original
        dtype; after ``variable`` when several were given), ``level``, ``n``
        (rows of the domain with a value),
        ``estimate`` (fraction), ``se``, ``ci_low``, ``ci_high``, ``df`` (the
        domain's degrees of freedom, as ``svyby`` gives ``svyciprop``), ``deff``.
    """
    from pipeline.survey.intervals import CI_METHODS, ProportionInputs, proportion_ci

    if ci_method not in CI_METHODS:
        raise ArgumentError(f"unknown ci_method {ci_method!r}", hint=f"expected one of {', '.join(CI_METHODS)}")
    several = not isinstance(variable, str)
    variables = list(variable) if several else [variable]
    if not variables:
        raise ArgumentError("proportion: no variables given", hint="give a column name or a list of them")
    results = level_estimates(design, variables, by=by, levels=levels, na_rm=na_rm, deff=True, statistic="proportion")
    # the interval methods work element by element: one call for all variables
    est = np.concatenate([res.estimate for res in results])
    dfs = np.concatenate([res.df for res in results])
    ci_df = dfs if df is None else np.full(len(est), float(df))
    dispersion = glm_start = logit_var = None
    if ci_method == "logit" and design.is_replicate:
        from pipeline.survey.intervals import replicate_logit_variance

        reps = design.replicates
        logit_var = replicate_logit_variance(
            np.hstack([res.extra["replicates"] for res in results]), est, scale=reps.scale, rscales=reps.rscales, mse=reps.mse
        )
    if ci_method == "likelihood" and not design.is_replicate:
        glm_start = np.vstack([_glm_start(design, v, by, res, na_rm) for v, res in zip(variables, results)])
        # survey's Pearson residuals carry sqrt(prior / rescaled weight): with missing values
        # that ratio is sum(prior) / n over the fit's rows
        n_obs = np.concatenate([res.n for res in results])
        dispersion = np.concatenate([_pearson_dispersion(design, res, na_rm) for res in results]) * glm_start[:, 3] / n_obs
    inputs = ProportionInputs(
        estimate=est,
        variance=np.concatenate([np.diag(res.vcov) for res in results]),
        df=ci_df,
        design_df=dfs,
        n_rows=np.concatenate([res.n_rows for res in results]).astype(np.float64),
        n_obs=np.concatenate([res.n for res in results]).astype(np.float64),
        dispersion=dispersion,
        glm_start=glm_start,
        logit_variance=logit_var,
        replicate=design.is_replicate,
    )
    low, high = proportion_ci(inputs, ci_method, conf_level)
    keys = results[0].keys if not several else pl.concat([res.keys for res in results], how="vertical_relaxed")
    frame = keys.with_columns(
        pl.Series("n", np.concatenate([res.n for res in results]), dtype=pl.Int64),
        pl.Series("estimate", est, dtype=pl.Float64),
        pl.Series("se", np.concatenate([res.se for res in results]), dtype=pl.Float64),
        pl.Series("ci_low", low, dtype=pl.Float64),
        pl.Series("ci_high", high, dtype=pl.Float64),
        pl.Series("df", ci_df, dtype=pl.Float64),
        pl.Series("deff", np.concatenate([res.deff for res in results]), dtype=pl.Float64),
    )
    if several:
        names = np.repeat(np.array(variables, dtype=object), [len(res) for res in results])
        frame = frame.select(pl.Series("variable", names, dtype=pl.String), pl.all())
    return frame


def _pearson_dispersion(design: Design, res: Estimates, na_rm: bool) -> np.ndarray:
    """Design-based variance of the Pearson residuals of ``svyglm(I(x == level) ~ 1, quasibinomial)``.

    R ``summary.svyglm``: ``svyvar(resid(fit, "pearson"), design)`` with
    survey's residuals ``(y - p) sqrt(prior / w) / sqrt(p (1 - p))``, ``w`` the
    weights rescaled over the fit's rows. Without missing values
    ``prior = w`` and their weighted variance with R's ``n/(n-1)`` factor is
    exactly ``n/(n - 1)``, ``n`` the rows of the fit with a non-zero weight
    (the caller multiplies by ``sum(prior) / n`` otherwise).
    """
    nz = res.extra["n_nonzero"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return nz / (nz - 1)


def _glm_start(design: Design, variable: str, by: Sequence[str], res: Estimates, na_rm: bool) -> np.ndarray:
    """Starting sums of R's IRLS for each domain x level fit (see :func:`intervals.glm_start_sums`)."""
    from pipeline.survey.intervals import glm_start_sums

    s = design_column(design, variable)
    miss = missing_mask(s)
    dom = domains_of(design, by)
    dm = domain_matrix(dom)
    rows_d = dm & ~miss[:, None] & design.in_design[:, None]
    values = s.cast(pl.String) if isinstance(s.dtype, pl.Enum | pl.Categorical) else s
    levels = res.keys.get_column("level").to_list()
    n_lv = len(res) // max(dm.shape[1], 1)
    rows = np.repeat(rows_d, n_lv, axis=1)
    y = np.column_stack([(values == lv).fill_null(False).to_numpy() for lv in levels]).astype(np.float64)
    # svyglm rescales the weights to mean 1 over the (domain) design's rows, missing values included
    dom = np.repeat(dm & design.in_design[:, None], n_lv, axis=1)
    wd = np.where(dom, design.weights[:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        prior = np.where(rows, design.weights[:, None], 0.0) * dom.sum(axis=0) / wd.sum(axis=0)
    return glm_start_sums(y, prior, rows)

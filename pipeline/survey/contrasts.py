"""Several estimates made together, with the covariance between them, for the differences
between two of them (R ``svycontrast``).

A difference between two *domains* of one estimate needs nothing new: the domain estimates of
:mod:`pipeline.survey.estimators` carry their full covariance matrix (R ``svyby(...,
covmat = TRUE)``) and :meth:`~pipeline.survey.results.Estimates.difference` applies
``L V L'``. A difference between two *variables* on the same respondents (Q10A minus Q10D)
needs the covariance between them: :func:`joint` estimates the variables in one pass, each on
its own rows (a missing value takes the row out of that variable's base only), so each estimate
is the one the variable gets alone and their covariance comes from the sum over PSUs of the
products of their influence values. Where no row misses either variable this is R
``svymean(~a + b)``; otherwise it is R ``svyratio`` of the zero-filled values over their
observed indicators with ``covmat = TRUE`` (R's ``svymean(~a + b, na.rm = TRUE)`` would drop
every row missing either, and change both estimates).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError
from pipeline.survey._domains import (
    Columns,
    check_missing,
    compute,
    design_column,
    domains_of,
    missing_mask,
    numeric_coded,
    numeric_values,
)
from pipeline.survey.design import Design
from pipeline.survey.results import Estimates

__all__ = ["joint"]


def joint(
    design: Design,
    variables: Sequence[str | tuple[str, str]],
    *,
    statistic: Literal["mean", "total", "ratio"] = "mean",
    by: Sequence[str] = (),
    na_rm: bool = False,
) -> Estimates:
    """Means (totals, ratios) of several numeric variables, estimated together with the
    covariance between them, overall or by domains.

    Parameters
    ----------
    design : Design
    variables : sequence of str, or of (numerator, denominator) for ratios
        The variables (a 0/1 indicator gives a proportion as its mean).
    statistic : {'mean', 'total', 'ratio'}
    by : sequence of str
        Domain variables (zero weights outside each domain, as R ``svyby``).
    na_rm : bool
        Each variable's missing values take the row out of that variable's base (``False``
        raises :class:`~pipeline.errors.DataError` when values are missing).

    Returns
    -------
    Estimates
        ``keys``: ``item`` (the variable's position in ``variables``), the ``by`` columns;
        variable-major (every domain of the first variable, then of the second).

    Examples
    --------
    >>> df = pl.DataFrame({"psu": [1, 2, 3, 4], "w": [1.0, 1, 2, 2], "y": [1.0, 2, 3, 4], "x": [2.0, 2, 3, 5]})
    >>> d = Design.from_frame(df, weights="w", ids=["psu"])
    >>> both = joint(d, ["y", "x"])
    >>> diff = both.contrast([1, -1])
    >>> round(float(diff.estimate[0]), 4), round(float(both.estimate[0] - both.estimate[1]), 4)
    (-0.5, -0.5)
    """
    if statistic not in ("mean", "total", "ratio"):
        raise ArgumentError(f"joint: statistic must be mean, total or ratio, got {statistic!r}")
    if len(variables) < 1:
        raise ArgumentError("joint: give at least one variable")
    dom = domains_of(design, by)
    parts: list[Columns] = []
    names = []
    for v in variables:
        if statistic == "ratio":
            if not (isinstance(v, tuple) and len(v) == 2):
                raise ArgumentError(f"joint: a ratio is a (numerator, denominator) pair, got {v!r}")
            sa, sb = design_column(design, v[0]), design_column(design, v[1])
            miss = check_missing(design, sa, v[0], na_rm, extra=missing_mask(sb))
            coded = numeric_coded(design, f"{v[0]}/{v[1]}", dom, miss, numeric_values(sa, v[0]), "ratio", yb=numeric_values(sb, v[1]))
        else:
            if not isinstance(v, str):
                raise ArgumentError(f"joint: a {statistic} is of one variable, got {v!r}")
            s = design_column(design, v)
            coded = numeric_coded(design, v, dom, check_missing(design, s, v, na_rm), numeric_values(s, v), statistic)
        parts.append(coded.dense())
        names.append(coded.variable)
    cols = Columns(
        a=np.hstack([c.a for c in parts]),
        b=None if statistic == "total" else np.hstack([c.b for c in parts]),
        rows=np.hstack([c.rows for c in parts]),
        domain_of=np.concatenate([c.domain_of for c in parts]),
        n=np.concatenate([c.n for c in parts]),
        dom_rows=parts[0].dom_rows,
    )
    n_dom = parts[0].a.shape[1]
    item = pl.Series("item", np.repeat(np.arange(len(parts)), n_dom), dtype=pl.Int64)
    if dom.count:
        keys = pl.concat([dom.keys] * len(parts)).select(item, pl.all())
    else:
        keys = pl.DataFrame([item])
    return compute(design, cols, statistic, " + ".join(names), tuple(by), keys, deff=False)

"""Reliability and disclosure flags of estimates (the ``flag`` column of estimates.csv).

The estimate stage calls :func:`flags` on its tidy rows; every table suppresses or footnotes
what the flags say (:meth:`pipeline.config.TablesConfig.flag_rules`, :data:`RULES`).

The rules, in the order they are applied (the first suppression rule that applies is the
row's only flag; a shown estimate may carry several review flags, joined by ``"; "``):

``cell<10``
    Disclosure: fewer than ``tables.disclosure.min_cell_n`` respondents in the cell, counted
    as statistical agencies count a cell: the unweighted respondents who have the level (the
    share's numerator, ``cell_n`` of estimates.csv), not the base. "2 of 216 refused" is a cell
    of 2 and is suppressed. A cell of 0 identifies nobody and is not suppressed for disclosure
    (a 0% estimate gets the NCHS review flag ``estimate=0``). A row without a level count
    (``cell_n`` null: a statistic without levels) takes its base ``n`` as its cell.
``n<30``
    Fewer than ``tables.min_n`` respondents in the denominator (the base ``n``): suppressed.

Then, with ``tables.reliability.standard: nchs``, the NCHS Data Presentation Standards for
Proportions (Parker JD, Talih M, Malec DJ, et al. Vital Health Stat 2(175), 2017; the decision
sequence of its Figure 1, as implemented by NCHS's surveytable R package), on the Korn-Graubard
95% interval (Korn & Graubard 1998; :func:`pipeline.survey.intervals.proportion_ci` with
``method="korn_graubard"``, degrees-of-freedom adjusted, effective sample size capped at n):

``n_eff<30``
    Effective sample size ``min(n, p(1-p)/var(p))`` below 30: suppressed.
``ci_width>=0.3``
    Absolute CI width of 30 points or more: suppressed.
``rel_ci_width>1.3``
    CI width above 5 points and more than 130% of the estimate: suppressed.
``complement_rel_ci_width>1.3``
    Shown, but the CI width is more than 130% of the complement ``1 - p``: review.
``df<8``
    Shown, fewer than 8 degrees of freedom: review.
``estimate=0``, ``estimate=1``
    Shown, an estimate of 0% or 100%: review (its effective sample size is taken as n and
    its CI width as 0, as the standard does).

The thresholds come from the config; the codes carry the configured values. One more code is
written by the trends stage (:mod:`pipeline.stages.trends`) on change rows between waves:
``component=suppressed`` (the change of a suppressed estimate is suppressed too).

Which rules apply depends on the row's ``statistic`` (:data:`STATISTIC_RULES`): the NCHS
standard above is for proportions. Means, totals, ratios and quantiles follow the NCHS rule for
statistics other than proportions, on the relative standard error (a quantile's SE is R's,
``(ci_high - ci_low) / (2 t)``, from its Woodruff interval):

``ci=open``
    Shown, but the confidence interval has an open end (R gives no bound: a quantile whose
    interval reaches past the data, ``ci_low`` or ``ci_high`` NaN): review, whatever the statistic.
``rse>0.3``
    Shown, but the relative standard error ``se / |estimate|`` is above
    ``tables.reliability.max_rse`` (30%; an estimate of 0 has an infinite RSE): flagged for
    review ("statistically unreliable").

A difference (``statistic: difference``) is suppressed when either estimate it compares is
(``component=suppressed``, :mod:`pipeline.stages._estimate_differences`); its RSE is not a measure of its
reliability (a difference near 0 has a large one), so it has no review rule.

Disclosure and ``min_n`` apply to every statistic (their cell is the base ``n``: the
respondents contributing); a statistic without an entry gets ``min_n`` and disclosure only.
:func:`is_calibrated` says which rows are margins the weighting fixed to their targets (no
sampling variance: not compared, not given an interval in toplines).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import TablesConfig

#: the NCHS standard is defined on 95% Korn-Graubard intervals, whatever the tables show
NCHS_CONF_LEVEL = 0.95

#: statistic (estimates.csv ``statistic``) -> the reliability standard its rows follow under
#: ``tables.reliability.standard: nchs``; other statistics get ``min_n`` and disclosure only
STATISTIC_RULES: dict[str, str] = {
    "proportion": "nchs_proportions",
    "mean": "relative_standard_error",
    "total": "relative_standard_error",
    "ratio": "relative_standard_error",
    "quantile": "relative_standard_error",
    "difference": "components",
}

#: a design effect below this (variance a millionth of simple random sampling's) is the weighting's
#: own margin, not sampling error: R survey gives these an SE of 0 up to rounding
CALIBRATED_MAX_DEFF = 1e-6
#: without a design effect: an SE below this (a fraction) marks a calibrated margin
CALIBRATED_MAX_SE = 1e-9


@dataclass(frozen=True)
class FlagRule:
    """What a flag code means in a table.

    Attributes
    ----------
    name : str
        The code's rule name (``n_eff``, ``ci_width``, ...).
    action : {'suppress', 'review'}
        Suppressed estimates are not shown; reviewed ones are shown with a footnote.
    symbol : str
        The mark tables put on the cell (``*`` for every suppression).
    """

    name: str
    action: Literal["suppress", "review"]
    symbol: str
    text: str

    def describe(self, threshold: str) -> str:
        return self.text.format(t=threshold)


#: rule name -> its meaning; the name is the part of a flag code before the comparison
RULES: dict[str, FlagRule] = {
    "cell": FlagRule("cell", "suppress", "*", "fewer than {t} respondents in the cell (suppressed to protect respondents' privacy)"),
    "n": FlagRule("n", "suppress", "*", "fewer than {t} respondents in the base"),
    "n_eff": FlagRule("n_eff", "suppress", "*", "effective sample size below {t} (NCHS standard)"),
    "ci_width": FlagRule("ci_width", "suppress", "*", "Korn-Graubard 95% confidence interval {t} or more wide (NCHS standard)"),
    "rel_ci_width": FlagRule(
        "rel_ci_width", "suppress", "*", "Korn-Graubard 95% confidence interval wider than {t} times the estimate (NCHS standard)"
    ),
    "complement_rel_ci_width": FlagRule(
        "complement_rel_ci_width", "review", "‡", "confidence interval wider than {t} times the complement (100% minus the estimate): flagged for statistical review (NCHS standard)"
    ),
    "df": FlagRule("df", "review", "†", "fewer than {t} degrees of freedom: flagged for statistical review (NCHS standard)"),
    "estimate": FlagRule("estimate", "review", "§", "an estimate of 0% or 100%: flagged for statistical review (NCHS standard)"),
    "rse": FlagRule("rse", "review", "¶", "relative standard error above {t}: statistically unreliable, flagged for review (NCHS standard)"),
    "ci": FlagRule("ci", "review", "‖", "the confidence interval has an open end (R gives no bound there: the data end inside it): flagged for review"),
    # change rows of trend estimates (pipeline.stages.trends)
    "component": FlagRule("component", "suppress", "*", "a change involving a suppressed estimate"),
}

_CODE = re.compile(r"^([a-z_]+)(<|>=|>|=)(.+)$")


def parse_flag(flag: str | None) -> list[tuple[FlagRule, str]]:
    """The rules of a ``flag`` value, each with its threshold text.

    Examples
    --------
    >>> [(r.name, t) for r, t in parse_flag("df<8; estimate=1")]
    [('df', '8'), ('estimate', '1')]
    """
    out = []
    for code in (flag or "").split(";"):
        code = code.strip()
        if not code:
            continue
        m = _CODE.match(code)
        rule = RULES.get(m.group(1)) if m else None
        if rule is None:
            # an unknown code (another tool's rule): shown, and footnoted with its text
            out.append((FlagRule(code, "review", "†", code), ""))
            continue
        threshold = m.group(3)
        if rule.name == "ci_width":
            threshold = f"{100 * float(threshold):g} points"
        out.append((rule, threshold))
    return out


def is_suppressed(flag: str | None) -> bool:
    """Whether a ``flag`` value suppresses the estimate."""
    return any(rule.action == "suppress" for rule, _ in parse_flag(flag))


def flags(rows: pl.DataFrame, tables: TablesConfig) -> pl.Series:
    """One flag per row: empty, or the rules that apply (see the module docstring).

    Parameters
    ----------
    rows : polars.DataFrame
        Tidy estimates with ``n``, ``cell_n``, ``estimate``, ``se`` and ``df`` (proportions as
        fractions).
    tables : TablesConfig
        ``min_n``, ``disclosure.min_cell_n`` and the ``reliability`` thresholds.

    Returns
    -------
    polars.Series
        ``flag``, as strings.
    """
    import numpy as np
    import polars as pl

    from pipeline.survey.intervals import ProportionInputs, proportion_ci

    k = rows.height
    if k == 0:
        return pl.Series("flag", [], dtype=pl.String)
    n = rows.get_column("n").cast(pl.Float64).to_numpy()
    if "cell_n" not in rows.columns:
        raise ValueError("flags: the rows need a 'cell_n' column (respondents with the level) for the disclosure rule tables.disclosure.min_cell_n")
    cell = rows.get_column("cell_n").cast(pl.Float64).fill_null(float("nan")).to_numpy()
    cell = np.where(np.isnan(cell), n, cell)
    p = rows.get_column("estimate").cast(pl.Float64).to_numpy()
    se = rows.get_column("se").cast(pl.Float64).fill_null(float("nan")).to_numpy()
    df = rows.get_column("df").cast(pl.Float64).fill_null(float("inf")).to_numpy() if "df" in rows.columns else np.full(k, np.inf)
    out = [""] * k
    done = np.zeros(k, dtype=bool)

    def suppress(mask: np.ndarray, code: str) -> None:
        for i in np.flatnonzero(mask & ~done):
            out[i] = code
        done[:] |= mask

    suppress((cell > 0) & (cell < tables.disclosure.min_cell_n), f"cell<{tables.disclosure.min_cell_n}")
    suppress(n < tables.min_n, f"n<{tables.min_n}")
    rel = tables.reliability
    if rel.standard == "none":
        return pl.Series("flag", out, dtype=pl.String)

    var = se**2
    boundary = (p <= 0) | (p >= 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Parker et al. (2017): n_eff = p(1-p)/var(p), capped at n; n at 0% and 100%
        n_eff = np.where(boundary | ~(var > 0), n, np.minimum(n, p * (1 - p) / var))
    low, high = proportion_ci(ProportionInputs.simple(p, var, df=df, n=n), "korn_graubard", NCHS_CONF_LEVEL)
    width = np.where(boundary, 0.0, high - low)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(p > 0, width / p, np.inf)
        complement = np.where(p < 1, width / (1 - p), np.inf)
    # the standard is for proportions (STATISTIC_RULES); other statistics get min_n and disclosure only
    nchs = [s for s, rule in STATISTIC_RULES.items() if rule == "nchs_proportions"]
    prop = rows.get_column("statistic").is_in(nchs).to_numpy() if "statistic" in rows.columns else np.ones(k, dtype=bool)
    suppress(prop & (n_eff < rel.min_effective_n), f"n_eff<{rel.min_effective_n:g}")
    fine = ~prop | (width <= rel.ci_width_ok)
    suppress(~fine & (width >= rel.max_ci_width), f"ci_width>={rel.max_ci_width:g}")
    suppress(~fine & (relative > rel.max_relative_ci_width), f"rel_ci_width>{rel.max_relative_ci_width:g}")

    shown = ~done & prop
    reviews: list[tuple[np.ndarray, str]] = [
        (shown & ~fine & (complement > rel.max_relative_ci_width), f"complement_rel_ci_width>{rel.max_relative_ci_width:g}"),
        (shown & (df < rel.min_df), f"df<{rel.min_df:g}"),
        (shown & (p <= 0), "estimate=0"),
        (shown & (p >= 1), "estimate=1"),
    ]
    rse_rule = [s for s, rule in STATISTIC_RULES.items() if rule == "relative_standard_error"]
    by_rse = rows.get_column("statistic").is_in(rse_rule).to_numpy() if "statistic" in rows.columns else np.zeros(k, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        rse = np.where(p != 0, se / np.abs(p), np.inf)
    reviews.append((~done & by_rse & (rse > rel.max_rse), f"rse>{rel.max_rse:g}"))
    if "ci_low" in rows.columns and "ci_high" in rows.columns:
        low = rows.get_column("ci_low").cast(pl.Float64).fill_null(float("nan")).to_numpy()
        high = rows.get_column("ci_high").cast(pl.Float64).fill_null(float("nan")).to_numpy()
        reviews.append((~done & np.isfinite(p) & (np.isnan(low) | np.isnan(high)), "ci=open"))
    for mask, code in reviews:
        for i in np.flatnonzero(mask):
            out[i] = f"{out[i]}; {code}" if out[i] else code
    return pl.Series("flag", out, dtype=pl.String)


def is_calibrated(row: Mapping[str, Any]) -> bool:
    """Whether an estimates.csv row is a margin the weighting calibrated to its target.

    Its share strictly between 0 and 1 has no sampling variance: a design effect below
    :data:`CALIBRATED_MAX_DEFF` (or, without one, an SE below :data:`CALIBRATED_MAX_SE`). A 0%
    or 100% estimate has an SE of 0 too, but is not calibrated (its own flag says so).

    Examples
    --------
    >>> is_calibrated({"estimate": 0.52, "se": 0.0, "deff": 0.0}), is_calibrated({"estimate": 0.52, "se": 0.02, "deff": 1.9})
    (True, False)
    """
    import math

    p, se, deff = row.get("estimate"), row.get("se"), row.get("deff")
    if p is None or se is None or not 0 < p < 1 or (isinstance(se, float) and math.isnan(se)):
        return False
    if deff is not None and not (isinstance(deff, float) and math.isnan(deff)):
        return deff < CALIBRATED_MAX_DEFF
    return se < CALIBRATED_MAX_SE

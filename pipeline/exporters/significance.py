"""Significance tests between banner columns, and the letters they put in the cells.

Two columns of one column group (two counties, two statuses) are compared for each row of the
banner with a two-sided t test of the difference of their proportions, ``d / se(d)`` on the
smaller of the two domains' degrees of freedom (as R ``svycontrast`` on ``svyby`` results).

``method='design'``
    ``se(d)`` from the design's full covariance matrix of the domain estimates
    (:meth:`pipeline.survey.estimators.Estimates.contrast`): the domains are estimated by
    zero weights in one design, so their covariance (and the raking's) is accounted for.
    The export stage provides it through :class:`DomainCovariance`.
``method='independent'``
    ``se(d) = sqrt(se_a^2 + se_b^2)`` from ``estimates.csv`` alone: the covariance between
    the two domains is ignored (exact for domains in different strata, an approximation
    otherwise).

Comparisons with a suppressed estimate are not made. ``adjust`` corrects the p-values for the
several comparisons within each row and column group (Bonferroni or Holm).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pipeline.errors import DataError
from pipeline.stages._reliability import is_suppressed

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from pipeline.config import EstimateSpec
    from pipeline.io import Codebook

__all__ = ["COMPARISON_COLUMNS", "DomainCovariance", "compare_columns", "letters_for", "letters_note"]

#: columns of the comparisons frame (tables/comparisons.csv)
COMPARISON_COLUMNS = (
    "estimate_id", "level", "by", "domain_a", "domain_b", "row_a", "row_b", "estimate_a", "estimate_b",
    "difference", "se", "df", "t", "p_value", "p_adjusted", "significant", "method",
)

#: largest difference between a recomputed estimate and estimates.csv before the files disagree
MATCH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class DomainEstimates:
    """Proportions of one estimate's level(s) in the domains of one ``by``, with their covariance."""

    level: list[str]
    domain: list[str]
    estimate: np.ndarray
    vcov: np.ndarray
    df: np.ndarray


class DomainCovariance:
    """Recomputes an estimate by domains with the full covariance matrix (the ``design`` method).

    Parameters
    ----------
    frame : polars.DataFrame
        The weighted data (``weight/data.parquet``).
    codebook : Codebook
    design : Design
        The design the estimate stage used (``pipeline.stages.estimate.build_design`` or
        ``replicate_design``).
    specs : sequence of EstimateSpec
    """

    def __init__(self, frame: pl.DataFrame, codebook: Codebook, design: Any, specs: Sequence[EstimateSpec]) -> None:
        self.frame = frame
        self.codebook = codebook
        self.design = design
        self.specs = {s.id: s for s in specs}

    def __call__(self, estimate_id: str, by: Sequence[str]) -> DomainEstimates:
        import numpy as np

        from pipeline.stages.estimate import _indicator_frame
        from pipeline.survey.estimators import proportions

        spec = self.specs[estimate_id]
        work, col, levels = _indicator_frame(self.frame, spec, self.codebook)
        res = proportions(self.design.with_frame(work), col, by=list(by), levels=levels or None, na_rm=True, deff=False)
        keys = res.keys
        var = spec.proportion
        if spec.levels is not None:
            text = spec.level_label or " or ".join(self.codebook.label_of(var, c) for c in spec.levels)
            level = [text] * keys.height
        else:
            level = [self.codebook.label_of(var, c) for c in keys.get_column("level").to_list()]
        if by:
            domain = ["*".join(self.codebook.label_of(b, r[b]) for b in by) for r in keys.iter_rows(named=True)]
        else:
            domain = ["All"] * keys.height
        return DomainEstimates(level, domain, np.asarray(res.estimate), np.asarray(res.vcov), np.asarray(res.df, dtype=np.float64))


def compare_columns(
    estimates: pl.DataFrame,
    estimate_ids: Sequence[str],
    column_groups: Sequence[Sequence[str]],
    *,
    method: Literal["design", "independent"] = "design",
    covariance: Callable[[str, Sequence[str]], DomainEstimates] | None = None,
    alpha: float = 0.05,
    adjust: Literal["none", "bonferroni", "holm"] = "none",
) -> pl.DataFrame:
    """Pairwise tests between the domains of each column group, for every row of the banner.

    Parameters
    ----------
    estimates : polars.DataFrame
        ``estimates.csv`` (:func:`pipeline.exporters.tables.read_estimates`).
    estimate_ids : sequence of str
        The banner's estimates.
    column_groups : sequence of sequence of str
        The banner's domain lists; the whole sample (``[]``) is not compared.
    method : {'design', 'independent'}
    covariance : callable, optional
        ``(estimate_id, by) -> DomainEstimates``; needed by ``method='design'``.
    alpha : float
        Significance level (after ``adjust``).
    adjust : {'none', 'bonferroni', 'holm'}

    Returns
    -------
    polars.DataFrame
        :data:`COMPARISON_COLUMNS`; ``difference = estimate_a - estimate_b``.

    Raises
    ------
    DataError
        The recomputed estimates do not match ``estimates.csv`` (stale artifacts).
    """
    import numpy as np
    import polars as pl
    from scipy import stats

    from pipeline.exporters.tables import is_calibrated, prepare_estimates

    if method == "design" and covariance is None:
        raise ValueError("method='design' needs the covariance provider")
    est = prepare_estimates(estimates)
    records: list[dict[str, Any]] = []
    for est_id in estimate_ids:
        for by in column_groups:
            if not by:
                continue
            key = "*".join(by)
            rows = est.filter((pl.col("estimate_id") == est_id) & (pl.col("by") == key))
            if rows.height < 2:
                continue
            dom = covariance(est_id, by) if method == "design" and covariance is not None else None
            position = {}
            if dom is not None:
                position = {(lv, d): i for i, (lv, d) in enumerate(zip(dom.level, dom.domain, strict=True))}
            for level in rows.get_column("level").unique(maintain_order=True).to_list():
                part = [r for r in rows.iter_rows(named=True) if r["level"] == level and not is_suppressed(r["flag"])]
                family = []
                for i in range(len(part)):
                    for j in range(i + 1, len(part)):
                        a, b = part[i], part[j]
                        if is_calibrated(a) and is_calibrated(b):
                            continue  # both fixed by the weighting to their targets: nothing to test
                        d = a["estimate"] - b["estimate"]
                        if dom is not None:
                            ia, ib = position.get((level, a["domain"])), position.get((level, b["domain"]))
                            if ia is None or ib is None:
                                raise DataError(f"{est_id} by {key}: no recomputed estimate for {level!r} in {a['domain']!r} or {b['domain']!r}",
                                                hint="rerun the estimate stage: survey-pipeline run CONFIG --from estimate")
                            for idx, r in ((ia, a), (ib, b)):
                                if abs(dom.estimate[idx] - r["estimate"]) > MATCH_TOLERANCE:
                                    raise DataError(
                                        f"{est_id} in {r['domain']}: estimates.csv says {r['estimate']!r}, the weighted data give {float(dom.estimate[idx])!r}",
                                        hint="estimates.csv is older than weight/data.parquet; rerun: survey-pipeline run CONFIG --from estimate",
                                    )
                            var = dom.vcov[ia, ia] + dom.vcov[ib, ib] - 2 * dom.vcov[ia, ib]
                            df = float(min(dom.df[ia], dom.df[ib]))
                        else:
                            var = a["se"] ** 2 + b["se"] ** 2
                            df = float(min(a["df"], b["df"]))
                        se = float(np.sqrt(max(var, 0.0)))
                        t = d / se if se > 0 else (0.0 if d == 0 else float(np.copysign(np.inf, d)))
                        p = float(2 * stats.t.sf(abs(t), df)) if np.isfinite(df) else float(2 * stats.norm.sf(abs(t)))
                        family.append(
                            {
                                "estimate_id": est_id, "level": level, "by": key, "domain_a": a["domain"], "domain_b": b["domain"],
                                "row_a": a["_row"], "row_b": b["_row"], "estimate_a": a["estimate"], "estimate_b": b["estimate"],
                                "difference": d, "se": se, "df": df, "t": t, "p_value": p, "method": method,
                            }
                        )
                for rec, p_adj in zip(family, _adjust([f["p_value"] for f in family], adjust), strict=True):
                    rec["p_adjusted"] = p_adj
                    rec["significant"] = bool(p_adj < alpha)
                records += family
    schema = {
        "estimate_id": pl.String, "level": pl.String, "by": pl.String, "domain_a": pl.String, "domain_b": pl.String,
        "row_a": pl.Int64, "row_b": pl.Int64, "estimate_a": pl.Float64, "estimate_b": pl.Float64, "difference": pl.Float64,
        "se": pl.Float64, "df": pl.Float64, "t": pl.Float64, "p_value": pl.Float64, "p_adjusted": pl.Float64,
        "significant": pl.Boolean, "method": pl.String,
    }
    return pl.DataFrame(records, schema=schema).select(COMPARISON_COLUMNS)


def _adjust(p: list[float], how: str) -> list[float]:
    m = len(p)
    if how == "none" or m <= 1:
        return list(p)
    if how == "bonferroni":
        return [min(1.0, x * m) for x in p]
    # Holm (1979) step-down, as R p.adjust(method = "holm")
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def letters_for(comparisons: pl.DataFrame, letter_of: Mapping[tuple[str, str], str]) -> dict[tuple[str, str, str, str], str]:
    """``(estimate_id, level, by, domain) -> letters`` of the columns that cell significantly exceeds.

    Letters are in column order.
    """
    got: dict[tuple[str, str, str, str], list[str]] = {}
    for c in comparisons.filter(comparisons.get_column("significant")).iter_rows(named=True):
        higher, lower = (c["domain_a"], c["domain_b"]) if c["difference"] > 0 else (c["domain_b"], c["domain_a"])
        letter = letter_of.get((c["by"], lower))
        if letter:
            got.setdefault((c["estimate_id"], c["level"], c["by"], higher), []).append(letter)
    order = {v: i for i, v in enumerate(letter_of.values())}
    return {k: "".join(sorted(v, key=lambda x: order.get(x, 0))) for k, v in got.items()}


def letters_note(method: str, alpha: float, adjust: str) -> str:
    """The note under a banner explaining its letters."""
    how = {
        "design": "design-based t test of the difference, its variance from the full covariance of the two estimates",
        "independent": "t test of the difference treating the two estimates as independent, ignoring their covariance",
    }[method]
    adj = {"none": "", "bonferroni": ", Bonferroni-adjusted", "holm": ", Holm-adjusted"}[adjust]
    return (
        "Letters: the column's percentage is significantly higher than that of the column with the letter, "
        f"within the same group of columns ({how}; two-sided, alpha = {alpha:g}{adj}). Suppressed estimates are not compared."
    )

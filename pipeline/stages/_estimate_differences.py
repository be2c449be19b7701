"""Differences of the estimate stage (``estimates[].difference``): ``a`` minus ``b``, between two
domains of one estimate or between two estimates on the same respondents, as estimates.csv rows
with ``statistic: difference``.

The standard error comes from the full covariance of the two estimates in the stage's design
(R ``svycontrast``): two domains of one estimate are estimated together by zero weights
(R ``svyby(..., covmat = TRUE)``), two estimates by :func:`pipeline.survey.contrasts.joint`
(each on its own base, as estimates.csv has them). The interval is the Wald t interval on the
design's degrees of freedom and the p-value its two-sided t test (R ``confint(svycontrast(...),
df = degf(design))``), whatever the interval of the estimates compared.

Each side is an estimates.csv row of the same run (config checks make sure the compared
estimates are estimated by the difference's domains); a recomputed side that does not match it is
an error (stale artifacts), and a difference with a suppressed side is suppressed too
(``component=suppressed``, as the trend stage's changes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import EstimateSpec, TablesConfig
    from pipeline.io import Codebook


@dataclass(frozen=True)
class Statistics:
    """What the estimate stage knows of its statistics (:mod:`pipeline.stages.estimate`, which
    calls this module): ``registry`` its ``STATISTICS`` (each one's analysis column and domain
    estimates with covariance), ``level_text`` its ``level`` column, ``columns`` the estimates.csv
    columns before :data:`DIFFERENCE_COLUMNS`."""

    registry: Mapping[str, Any]
    level_text: Callable[[EstimateSpec, Codebook, Any], str]
    columns: Sequence[str]

#: statistics a difference can be of, and the statistic of :func:`pipeline.survey.contrasts.joint`
#: that estimates two of them together (a proportion is the mean of its 0/1 indicator)
JOINT_STATISTIC = {"proportion": "mean", "mean": "mean", "total": "total", "ratio": "ratio"}

#: the estimates.csv columns a difference adds: the statistic compared, both sides, the p-value
DIFFERENCE_COLUMNS = ("difference_of", "difference_a", "difference_b", "p_value")

#: largest difference between a recomputed side and its estimates.csv row
MATCH_TOLERANCE = 1e-9


def difference_rows(
    estimates: pl.DataFrame,
    frame: pl.DataFrame,
    codebook: Codebook,
    specs: Sequence[EstimateSpec],
    design: Any,
    tables: TablesConfig,
    statistics: Statistics,
    *,
    wave: str,
    conf_level: float,
) -> pl.DataFrame:
    """The estimates.csv rows of every difference in ``specs``, compared with the rows of
    ``estimates`` (the other estimates of the same run), in the order of the specs.

    Returns
    -------
    polars.DataFrame
        The estimates.csv columns (``ci_method`` ``wald``), ``n`` the respondents in either side's
        base, then :data:`DIFFERENCE_COLUMNS`.
    """
    import polars as pl

    by_id = {s.id: s for s in specs}
    records: list[dict[str, Any]] = []
    for spec in specs:
        if spec.difference is None:
            continue
        for by in spec.by:
            if spec.difference.between_domains:
                records += _domain_difference(estimates, frame, codebook, spec, by_id[spec.difference.of], list(by), design, statistics)
            else:
                a, b = (by_id[str(x)] for x in (spec.difference.a, spec.difference.b))
                records += _item_difference(estimates, frame, codebook, spec, a, b, list(by), design, statistics)
    names = (*statistics.columns, *DIFFERENCE_COLUMNS)
    if not records:
        return _empty(names)
    out = _finish(pl.DataFrame(records), wave=wave, conf_level=conf_level, tables=tables)
    return out.select(names)


def _empty(names: Sequence[str]) -> pl.DataFrame:
    import polars as pl

    return pl.DataFrame(schema={c: pl.String for c in names})


def _side(estimates: pl.DataFrame, estimate_id: str, by: Sequence[str], domain: str, level: str) -> dict[str, Any] | None:
    """The estimates.csv row of one side, or None (a domain with no respondent has none)."""
    import polars as pl

    rows = estimates.filter(
        (pl.col("estimate_id") == estimate_id) & (pl.col("by") == "*".join(by)) & (pl.col("domain") == domain) & (pl.col("level") == level)
    )
    return rows.row(0, named=True) if rows.height else None


def _checked(side: dict[str, Any], value: float) -> None:
    from pipeline.errors import DataError

    if abs(float(value) - float(side["estimate"])) > MATCH_TOLERANCE * max(1.0, abs(float(side["estimate"]))):
        raise DataError(
            f"{side['estimate_id']} in {side['domain']}: estimates.csv says {side['estimate']!r}, the weighted data give {float(value)!r}",
            hint="estimates.csv is older than weight/data.parquet; rerun: survey-pipeline run CONFIG --from estimate",
        )


def _labels(codebook: Codebook, by: Sequence[str], values: Sequence[Any]) -> str:
    return "*".join(codebook.label_of(b, v) for b, v in zip(by, values, strict=True)) if by else "All"


def _record(spec: EstimateSpec, by: Sequence[str], domain: str, level: str, variable: str, of: str,
            sides: tuple[dict[str, Any], dict[str, Any]], names: tuple[str, str], n: int, estimate: float, var: float, df: float,
            title: str) -> dict[str, Any]:
    from pipeline.flags import is_suppressed

    suppressed = any(is_suppressed(s["flag"]) for s in sides)
    return {
        "estimate_id": spec.id, "variable": variable, "level": level, "by": "*".join(by), "domain": domain, "n": n,
        "estimate": estimate, "var": var, "df": df, "component": suppressed, "difference_of": of,
        "difference_a": names[0], "difference_b": names[1], "title": spec.title or title,
    }


def _domain_difference(
    estimates: pl.DataFrame, frame: pl.DataFrame, codebook: Codebook, spec: EstimateSpec, base: EstimateSpec, by: list[str], design: Any,
    statistics: Statistics,
) -> list[dict[str, Any]]:
    """``a`` minus ``b`` of the domain variable, within each domain of ``by`` (and each level)."""
    import numpy as np

    level_text = statistics.level_text
    d = spec.difference
    assert d is not None and d.domain is not None
    statistic = statistics.registry[base.statistic]
    work, col, levels = statistic.analysis_column(frame, base, codebook)
    res = statistic.domains(design.with_frame(work), col, [*by, d.domain], levels)
    keys = res.keys
    dom_values = keys.get_column(d.domain).to_list()
    has_level = base.statistic == "proportion" and base.levels is None and "level" in keys.columns
    outer = [tuple(r) for r in keys.select(by).iter_rows()] if by else [()] * keys.height
    level_of = keys.get_column("level").to_list() if has_level else [None] * keys.height
    position = {(o, lv, v): i for i, (o, lv, v) in enumerate(zip(outer, level_of, dom_values, strict=True))}
    a_label, b_label = codebook.label_of(d.domain, d.a), codebook.label_of(d.domain, d.b)
    out = []
    for o, lv in dict.fromkeys(zip(outer, level_of, strict=True)):
        ia, ib = position.get((o, lv, d.a)), position.get((o, lv, d.b))
        level = level_text(base, codebook, lv)
        domain = _labels(codebook, by, o)
        sides = [_side(estimates, base.id, [*by, d.domain], _labels(codebook, [*by, d.domain], [*o, code]), level) for code in (d.a, d.b)]
        if ia is None or ib is None or sides[0] is None or sides[1] is None:
            continue  # a side with no respondent in this domain: nothing to compare
        _checked(sides[0], res.estimate[ia])
        _checked(sides[1], res.estimate[ib])
        L = np.zeros(len(res))
        L[ia], L[ib] = 1.0, -1.0
        n = int(sides[0]["n"]) + int(sides[1]["n"])
        out.append(_record(spec, by, domain, level, base.variable, base.statistic, (sides[0], sides[1]), (a_label, b_label), n,
                           float(L @ res.estimate), float(L @ res.vcov @ L), float(res.design_df),
                           f"{sides[0]['title']}: {a_label} minus {b_label}"))
    return out


def _item_difference(
    estimates: pl.DataFrame, frame: pl.DataFrame, codebook: Codebook, spec: EstimateSpec, a: EstimateSpec, b: EstimateSpec,
    by: list[str], design: Any, statistics: Statistics,
) -> list[dict[str, Any]]:
    """Estimate ``a`` minus estimate ``b`` (the same statistic, one row each) in each domain of ``by``."""
    import numpy as np

    from pipeline.survey.contrasts import joint

    level_text = statistics.level_text
    work = frame
    cols = []
    for s in (a, b):
        work, col, _ = statistics.registry[s.statistic].analysis_column(work, s, codebook)
        cols.append(col)
    res = joint(design.with_frame(work), cols, statistic=JOINT_STATISTIC[a.statistic], by=by, na_rm=True)  # type: ignore[arg-type]
    keys = res.keys
    item = keys.get_column("item").to_numpy()
    outer = [tuple(r) for r in keys.select(by).iter_rows()] if by else [()] * keys.height
    position = {(int(k), o): i for i, (k, o) in enumerate(zip(item, outer, strict=True))}
    base = _either_base(work, cols, by, design.in_design)
    out = []
    for o in dict.fromkeys(outer):
        ia, ib = position[(0, o)], position[(1, o)]
        domain = _labels(codebook, by, o)
        sides = [_side(estimates, s.id, by, domain, level_text(s, codebook, None)) for s in (a, b)]
        if sides[0] is None or sides[1] is None:
            continue
        _checked(sides[0], res.estimate[ia])
        _checked(sides[1], res.estimate[ib])
        L = np.zeros(len(res))
        L[ia], L[ib] = 1.0, -1.0
        n = int(base.get(o, 0))
        out.append(_record(spec, by, domain, "", f"{a.variable}-{b.variable}", a.statistic, (sides[0], sides[1]), (a.id, b.id), n,
                           float(L @ res.estimate), float(L @ res.vcov @ L), float(res.design_df),
                           f"{sides[0]['title']} minus {sides[1]['title']}"))
    return out


def _either_base(work: pl.DataFrame, cols: list[Any], by: list[str], in_design: Any) -> dict[tuple[Any, ...], int]:
    """Respondents of each domain in the base of either estimate (a value in any of its columns)."""
    import numpy as np
    import polars as pl

    flat = [c for col in cols for c in (col if isinstance(col, tuple) else (col,))]
    per_item = [pl.all_horizontal([pl.col(c).is_not_null() for c in (col if isinstance(col, tuple) else (col,))]) for col in cols]
    base = work.select([*by, *flat]).with_columns(pl.Series("_in", np.asarray(in_design, dtype=bool))).filter(
        pl.col("_in") & pl.any_horizontal(per_item)
    )
    if not by:
        return {(): base.height}
    base = base.filter(pl.all_horizontal([pl.col(b).is_not_null() for b in by]))
    counts = base.group_by(by).len(name="n")
    return {tuple(r[:-1]): int(r[-1]) for r in counts.iter_rows()}


def _finish(rows: pl.DataFrame, *, wave: str, conf_level: float, tables: TablesConfig) -> pl.DataFrame:
    """Standard errors, t intervals, p-values and flags of the difference rows."""
    import numpy as np
    import polars as pl
    from scipy import stats

    from pipeline.flags import flags

    est = rows.get_column("estimate").to_numpy()
    se = np.sqrt(np.maximum(rows.get_column("var").to_numpy(), 0.0))
    df = rows.get_column("df").to_numpy()
    q = stats.t.ppf(1 - (1 - conf_level) / 2, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 0, est / se, np.where(est == 0, 0.0, np.copysign(np.inf, est)))
    p = 2 * stats.t.sf(np.abs(t), df)
    out = rows.with_columns(
        pl.lit(wave).alias("wave"),
        pl.lit("difference").alias("statistic"),
        pl.Series("se", se),
        pl.Series("ci_low", est - q * se),
        pl.Series("ci_high", est + q * se),
        pl.lit("wald").alias("ci_method"),
        pl.lit(conf_level).alias("conf_level"),
        pl.lit(None, dtype=pl.Float64).alias("deff"),
        pl.lit("").alias("denominator"),
        pl.lit(None, dtype=pl.Int64).alias("cell_n"),
        pl.Series("p_value", p),
        pl.col("n").cast(pl.Int64),
    )
    flag = flags(out.with_columns(pl.lit("").alias("flag")), tables)
    return out.with_columns(pl.when(pl.col("component")).then(pl.lit("component=suppressed")).otherwise(flag).alias("flag"))

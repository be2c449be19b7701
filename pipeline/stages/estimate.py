"""Estimate: every configured estimate, overall and by domains, into tidy ``estimates.csv``.

The design (weights, strata, clusters, fpc, lonely-PSU policy) comes from the config's
``design`` section; the statistics from :mod:`pipeline.survey`. Domains are estimated by zero
weights inside the full design, never by dropping rows.

Denominators. For ``denominator: all`` the don't-know and refused answers stay in the base
(they count as "not in the levels"), as the published figures of the demo study do; for
``denominator: valid`` they are left out. Rows with no answer at all (system missing: skipped
by the questionnaire's logic, or set missing as out of range) are never in the base. Each row's
``denominator`` column says which base it used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.flags import flags
from pipeline.stages import Reads, StageContext, StageOutput
from pipeline.stages._common import build_design, replicate_design

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from pipeline.config import DesignConfig, EstimateSpec, StudyConfig, TablesConfig, WeightConfig
    from pipeline.io import Codebook

#: estimates.csv columns, in the order of the DESIGN.md section 5 contract; more may follow.
COLUMNS = (
    "wave", "estimate_id", "statistic", "variable", "level", "by", "domain", "n",
    "estimate", "se", "ci_low", "ci_high", "ci_method", "conf_level", "df", "deff", "flag",
)
EXTRA_COLUMNS = ("denominator", "title", "cell_n")


@contextmanager
def _argument_errors(key: str, prefix: str = "") -> Iterator[None]:
    """survey/'s argument errors as config errors naming the key (``design.lonely_psu: ...``)."""
    from pipeline.errors import ArgumentError, translate_argument_error

    try:
        yield
    except ArgumentError as exc:
        raise translate_argument_error(exc, key, prefix=prefix) from exc


@dataclass(frozen=True)
class Statistic:
    """How the estimate stage computes one statistic of the config (``estimates[].<name>: VAR``).

    Attributes
    ----------
    name : str
        The config key naming the variable and the ``statistic`` column of estimates.csv.
    analysis_column : callable
        ``(frame, spec, codebook) -> (frame, column, levels)``: the frame with the column the
        statistic is computed on (the spec's denominator applied; a ratio's two columns as a
        tuple), and the levels to report (a quantile's probabilities).
    tidy : callable
        ``(design, column, by, levels, ci_method, conf_level) -> polars.DataFrame``: the
        statistic overall or by domains, one row per domain (x level), with ``n``, ``estimate``,
        ``se``, ``ci_low``, ``ci_high``, ``df``, ``deff``.
    domains : callable
        ``(design, column, by, levels) -> Estimates``: the same estimates with their full
        covariance matrix (for the banners' comparisons, :func:`banner_comparisons`); None
        for a statistic banners show without significance letters (quantiles).
    """

    name: str
    analysis_column: Callable[[pl.DataFrame, EstimateSpec, Codebook], tuple[pl.DataFrame, str, list[Any]]]
    tidy: Callable[..., pl.DataFrame]
    domains: Callable[..., Any] | None


def _proportion_tidy(design: Any, col: str, by: list[str], levels: list[Any], ci_method: str, conf_level: float) -> pl.DataFrame:
    from pipeline.survey.estimators import proportion

    return proportion(design, col, by=by, levels=levels or None, ci_method=ci_method, conf_level=conf_level, na_rm=True)


def _proportion_domains(design: Any, col: str, by: list[str], levels: list[Any]) -> Any:
    from pipeline.survey.estimators import proportions

    return proportions(design, col, by=by, levels=levels or None, na_rm=True, deff=False)


def _indicator_frame(frame: pl.DataFrame, spec: EstimateSpec, codebook: Codebook) -> tuple[pl.DataFrame, str, list[Any]]:
    """Add the analysis column for a spec; return (frame, column, levels to report)."""
    import polars as pl

    var = spec.variable
    info = codebook.get(var)
    missing = sorted(info.missing_values, key=str)
    col = f"__{spec.id}"
    x = pl.col(var)
    if spec.levels is not None:
        in_levels = x.is_in(list(spec.levels))
        if spec.denominator == "all":
            expr = pl.when(x.is_null()).then(None).otherwise(in_levels.cast(pl.Int64))
        else:
            expr = pl.when(x.is_null() | x.is_in(missing)).then(None).otherwise(in_levels.cast(pl.Int64))
        return frame.with_columns(expr.alias(col)), col, [1]
    expr = x if spec.denominator == "all" else pl.when(x.is_in(missing)).then(None).otherwise(x)
    return frame.with_columns(expr.alias(col)), col, []


def _numeric_frame(frame: pl.DataFrame, spec: EstimateSpec, codebook: Codebook) -> tuple[pl.DataFrame, str | tuple[str, ...], list[Any]]:
    """The numeric analysis column(s) of a mean, total, ratio or quantile: the variable with its
    missing-value codes (don't know, refused) set missing, so they leave the base.

    A ``total`` with ``levels`` is the total of the indicator of those codes (the number of
    people with them; the spec's ``denominator`` applies as for a proportion). A ``ratio``
    gives two columns (numerator, denominator); a quantile's levels are its probabilities.
    """
    import polars as pl

    if spec.statistic == "total" and spec.levels is not None:
        return _indicator_frame(frame, spec, codebook)
    cols = []
    exprs = []
    for k, var in enumerate(spec.variables):
        col = f"__{spec.id}" if len(spec.variables) == 1 else f"__{spec.id}_{k}"
        missing = sorted(codebook.get(var).missing_values, key=str)
        x = pl.col(var)
        exprs.append((pl.when(x.is_in(missing)).then(None).otherwise(x) if missing else x).cast(pl.Float64).alias(col))
        cols.append(col)
    levels = list(spec.quantile_probs) if spec.statistic == "quantile" else []
    return frame.with_columns(exprs), (cols[0] if len(cols) == 1 else tuple(cols)), levels


def _wald(kind: str) -> tuple[Callable[..., pl.DataFrame], Callable[..., Any]]:
    """The tidy rows and the domain estimates (with covariance) of a mean, total or ratio: Wald
    t intervals on the whole design's degrees of freedom (R ``confint(svymean(...), df = degf(design))``)."""

    def domains(design: Any, col: str | tuple[str, ...], by: list[str], levels: list[Any]) -> Any:
        from pipeline.survey import estimators

        if kind == "ratio":
            return estimators.ratio(design, col[0], col[1], by=by, na_rm=True)
        return getattr(estimators, kind)(design, col, by=by, na_rm=True, categorical=False)

    def tidy(design: Any, col: str | tuple[str, ...], by: list[str], levels: list[Any], ci_method: str, conf_level: float) -> pl.DataFrame:
        return domains(design, col, by, levels).to_frame(conf_level, df="design")

    return tidy, domains


def _quantile_tidy(design: Any, col: str, by: list[str], levels: list[Any], ci_method: str, conf_level: float) -> pl.DataFrame:
    """R ``svyquantile(..., qrule = "math")`` with its default (Woodruff) interval and ``se``."""
    import polars as pl

    from pipeline.survey.quantiles import quantile

    res = quantile(design, col, probs=levels, by=by, conf_level=conf_level, na_rm=True)
    return res.to_frame().with_columns(pl.lit(None, dtype=pl.Float64).alias("deff"))


_mean_tidy, _mean_domains = _wald("mean")
_total_tidy, _total_domains = _wald("total")
_ratio_tidy, _ratio_domains = _wald("ratio")

#: statistic name -> how it is computed; :data:`pipeline.config.STATISTICS` names the same keys.
#: Quantiles have no covariance between domains here: banners show them without letters.
STATISTICS: dict[str, Statistic] = {
    "proportion": Statistic("proportion", _indicator_frame, _proportion_tidy, _proportion_domains),
    "mean": Statistic("mean", _numeric_frame, _mean_tidy, _mean_domains),
    "total": Statistic("total", _numeric_frame, _total_tidy, _total_domains),
    "ratio": Statistic("ratio", _numeric_frame, _ratio_tidy, _ratio_domains),
    "quantile": Statistic("quantile", _numeric_frame, _quantile_tidy, None),
}

#: the ``ci_method`` column of the statistics whose interval is not a proportion's
CI_NAMES = {"mean": "wald", "total": "wald", "ratio": "wald", "quantile": "woodruff"}


def level_text(spec: EstimateSpec, codebook: Codebook, level: Any) -> str:
    """The ``level`` of an estimates.csv row: the answer's label (a proportion), the chosen
    codes' label (``levels``), ``p50`` (a quantile's probability, in percent), or empty (a
    mean, a total of a numeric variable, a ratio)."""
    if spec.levels is not None:
        return spec.level_label or " or ".join(codebook.label_of(spec.variable, c) for c in spec.levels)
    if spec.statistic == "proportion":
        return codebook.label_of(spec.variable, level)
    if spec.statistic == "quantile":
        return f"p{100 * float(level):g}"
    return ""


def statistic_problems(i: int, spec: EstimateSpec, frame: pl.DataFrame, codebook: Codebook) -> list[str]:
    """What is wrong with the variable(s) of ``estimates[i]`` for its statistic (also checked by
    ``validate``: :mod:`pipeline.preflight`)."""
    import polars as pl

    problems = []
    key = f"estimates[{i}].{spec.key}"
    for var in spec.variables:
        if var not in frame.columns:
            continue
        numeric = frame.schema[var].is_numeric()
        labelled = bool(codebook.get(var).value_labels)
        if spec.statistic == "proportion" and spec.levels is None and numeric and not labelled:
            problems.append(
                f"{key} ({spec.id}): {var} is a numeric variable without value labels: a proportion of every distinct value is not an estimate; "
                f"ask for its average with mean: {var} (or the share of some codes with levels: [...])"
            )
        if spec.statistic in ("mean", "ratio", "quantile") or (spec.statistic == "total" and spec.levels is None):
            if not numeric:
                dtype = "text" if frame.schema[var] == pl.String else str(frame.schema[var])
                problems.append(f"{key} ({spec.id}): {var} is {dtype}, not numeric; use proportion: {var} for the shares of its answers")
    return problems


def estimate_all(
    frame: pl.DataFrame,
    codebook: Codebook,
    specs: Sequence[EstimateSpec],
    design: Any,
    design_config: DesignConfig,
    tables: TablesConfig,
    *,
    wave: str,
) -> pl.DataFrame:
    """Tidy estimates (DESIGN.md section 5 schema) for every spec and domain list.

    ``design`` is built once over ``frame`` (:func:`build_design` or :func:`replicate_design`);
    each spec adds its analysis column to the design's frame.
    """
    import polars as pl

    problems = []
    for i, spec in enumerate(specs):
        problems += [f"estimates[{i}].{spec.key}: {v} is not in the weighted data" for v in spec.variables if v not in frame.columns]
        for by in spec.by:
            problems += [f"estimates[{i}].by: {b} is not in the weighted data" for b in by if b not in frame.columns]
        problems += statistic_problems(i, spec, frame, codebook)
        labels = codebook.get(spec.variables[0]).value_labels
        unknown = [c for c in spec.levels or () if labels and c not in labels]
        if unknown:
            problems.append(
                f"estimates[{i}].levels ({spec.id}): code(s) {unknown} are not labelled codes of {spec.variable} "
                f"(codes: {', '.join(f'{k} {v}' for k, v in labels.items())})"
            )
    if problems:
        raise ConfigError(f"estimates: {len(problems)} problem(s):", problems=problems)

    rows: list[pl.DataFrame] = []
    for i, spec in enumerate(specs):
        with _argument_errors(f"estimates[{i}] ({spec.id})"):
            statistic = STATISTICS[spec.statistic]
            work, col, levels = statistic.analysis_column(frame, spec, codebook)
            spec_design = design.with_frame(work)
            method = spec.ci_method or design_config.ci_method
            for by in spec.by:
                res = statistic.tidy(spec_design, col, list(by), levels, method, design_config.conf_level)
                if by:
                    res = res.filter(pl.all_horizontal([pl.col(b).is_not_null() for b in by]))
                if spec.statistic == "proportion":
                    res = _with_cell_counts(res, work, col, list(by), spec_design.in_design)
                elif spec.levels is not None:  # a total of codes: the people who have them
                    res = _with_cell_counts(res.with_columns(pl.lit(1).alias("level")), work, col, list(by), spec_design.in_design).drop("level")
                else:  # the respondents contributing: the base n (pipeline.flags)
                    res = res.with_columns(pl.lit(None, dtype=pl.Int64).alias("cell_n"))
                method = CI_NAMES.get(spec.statistic, method)
                rows.append(_tidy(res, spec, list(by), codebook, wave=wave, method=method, conf_level=design_config.conf_level, tables=tables))
    if not rows:
        return pl.DataFrame(schema={c: pl.String for c in (*COLUMNS, *EXTRA_COLUMNS)})
    return pl.concat(rows, how="vertical_relaxed")


def _with_cell_counts(res: pl.DataFrame, work: pl.DataFrame, col: str, by: list[str], in_design: Any) -> pl.DataFrame:
    """``cell_n``: the unweighted respondents of each domain x level row who have the level (the
    numerator of the share, counted as ``n`` counts its base), for the disclosure rule."""
    import numpy as np
    import polars as pl

    base = (
        work.select([*by, pl.col(col).alias("level")])
        .with_columns(pl.Series("_in", np.asarray(in_design, dtype=bool)))
        .filter(pl.col("_in") & pl.col("level").is_not_null())
        .drop("_in")
    )
    if by:
        base = base.filter(pl.all_horizontal([pl.col(b).is_not_null() for b in by]))
    counts = base.group_by([*by, "level"]).len(name="cell_n").with_columns(pl.col("level").cast(res.schema["level"]))
    out = res.join(counts, on=[*by, "level"], how="left", maintain_order="left")
    return out.with_columns(pl.col("cell_n").fill_null(0).cast(pl.Int64))


def _tidy(
    res: pl.DataFrame,
    spec: EstimateSpec,
    by: list[str],
    codebook: Codebook,
    *,
    wave: str,
    method: str,
    conf_level: float,
    tables: TablesConfig,
) -> pl.DataFrame:
    import polars as pl

    var = spec.variable
    if spec.levels is not None or spec.statistic not in ("proportion", "quantile"):
        level = pl.lit(level_text(spec, codebook, None))
    else:
        level = pl.col("level").map_elements(lambda c: level_text(spec, codebook, c), return_dtype=pl.String)
    if by:
        domain = pl.concat_str(
            [pl.col(b).map_elements(lambda c, b=b: codebook.label_of(b, c), return_dtype=pl.String) for b in by], separator="*"
        )
    else:
        domain = pl.lit("All")
    out = res.select(
        pl.lit(wave).alias("wave"),
        pl.lit(spec.id).alias("estimate_id"),
        pl.lit(spec.statistic).alias("statistic"),
        pl.lit(var).alias("variable"),
        level.alias("level"),
        pl.lit("*".join(by)).alias("by"),
        domain.alias("domain"),
        pl.col("n").cast(pl.Int64),
        pl.col("estimate").cast(pl.Float64),
        pl.col("se").cast(pl.Float64),
        pl.col("ci_low").cast(pl.Float64),
        pl.col("ci_high").cast(pl.Float64),
        pl.lit(method).alias("ci_method"),
        pl.lit(conf_level).alias("conf_level"),
        pl.col("df").cast(pl.Float64),
        pl.col("deff").cast(pl.Float64),
        pl.lit("").alias("flag"),
        pl.lit(spec.denominator).alias("denominator"),
        pl.lit(spec.title or codebook.get(var).label or var).alias("title"),
        pl.col("cell_n"),
    )
    return out.with_columns(flags(out, tables))


TEST_COLUMNS = (
    "wave", "estimate_id", "variable", "by", "statistic_type", "statistic_name", "statistic", "ndf", "ddf", "p_value", "method", "design_df",
    "skipped",
)


def association_tests(frame: pl.DataFrame, codebook: Codebook, specs: Sequence[EstimateSpec], design: Any, *, wave: str) -> pl.DataFrame:
    """R ``svychisq`` of each estimate's variable (as estimated: its levels, or the combined
    level against the rest, with the estimate's denominator) with each single ``by`` variable.

    A test that cannot be computed (a variable with one level in the base: an answer nobody
    gave, a domain variable with one value) is not an error: its row has no statistic and says
    why in ``skipped`` (empty for the tests made), and the estimates are written all the same.
    """
    import polars as pl

    from pipeline.errors import DataError
    from pipeline.survey.tables import chisq_test

    rows = []
    for spec in specs:
        if spec.test == "none" or spec.statistic != "proportion":  # a test of association is of a categorical variable
            continue
        work, col, _ = STATISTICS[spec.statistic].analysis_column(frame, spec, codebook)
        spec_design = design.with_frame(work)
        for by in spec.by:
            if len(by) != 1:
                continue
            row: dict[str, Any] = {"wave": wave, "estimate_id": spec.id, "variable": spec.variable, "by": by[0]}
            reason = _untestable(work, col, spec, by[0], codebook)
            if reason is None:
                try:
                    t = chisq_test(spec_design, col, by[0], statistic=spec.test)
                except DataError as exc:  # e.g. no variance: reported, not fatal to the other estimates
                    reason = exc.message
            if reason is not None:
                rows.append({**row, "skipped": reason})
                continue
            rows.append(
                {
                    **row,
                    "statistic_type": t.statistic_type, "statistic_name": t.statistic_name, "statistic": t.statistic,
                    "ndf": t.ndf, "ddf": t.ddf, "p_value": t.p_value, "method": t.method, "design_df": t.design_df, "skipped": "",
                }
            )
    schema = {c: pl.String for c in TEST_COLUMNS} | {c: pl.Float64 for c in ("statistic", "ndf", "ddf", "p_value", "design_df")}
    return pl.DataFrame(rows, schema=schema)


def _untestable(work: pl.DataFrame, col: str, spec: EstimateSpec, by: str, codebook: Codebook) -> str | None:
    """Why the test of ``col`` with ``by`` cannot be made (fewer than 2 levels in its base), or None."""
    import polars as pl

    base = work.filter(pl.col(col).is_not_null() & pl.col(by).is_not_null())
    for name, shown in ((col, spec.variable), (by, by)):
        values = sorted(base.get_column(name).unique().to_list(), key=str)
        if len(values) >= 2:
            continue
        if name == col and spec.levels is not None:
            chosen = spec.level_label or " or ".join(codebook.label_of(spec.variable, c) for c in spec.levels)
            found = f"every respondent in the base {'chose' if values == [1] else 'did not choose'} {chosen}"
        elif values:
            found = f"every respondent in the base has {shown} = {codebook.label_of(name if name == by else spec.variable, values[0])}"
        else:
            found = f"no respondent has a value of {shown}"
        return f"not tested: a test of association needs at least 2 levels of {shown}; {found}"
    return None


# ------------------------------------------------------------------------------ banner comparisons

#: largest difference between a recomputed estimate and the tidy estimates before they disagree
MATCH_TOLERANCE = 1e-9


@dataclass(frozen=True)
class DomainEstimates:
    """One estimate's level(s) in the domains of one ``by``, with their covariance."""

    level: list[str]
    domain: list[str]
    estimate: np.ndarray
    vcov: np.ndarray
    df: np.ndarray


class DomainCovariance:
    """An estimate by domains with the full covariance matrix, from the stage's design (the
    banners' ``design`` method of comparison).

    Parameters
    ----------
    frame : polars.DataFrame
        The weighted data (``weight/data.parquet``).
    codebook : Codebook
    design : Design
        The design of the estimates (:func:`build_design` or :func:`replicate_design`).
    specs : sequence of EstimateSpec
    """

    def __init__(self, frame: pl.DataFrame, codebook: Codebook, design: Any, specs: Sequence[EstimateSpec]) -> None:
        self.frame = frame
        self.codebook = codebook
        self.design = design
        self.specs = {s.id: s for s in specs}

    def __call__(self, estimate_id: str, by: Sequence[str]) -> DomainEstimates:
        import numpy as np

        spec = self.specs[estimate_id]
        statistic = STATISTICS[spec.statistic]
        work, col, levels = statistic.analysis_column(self.frame, spec, self.codebook)
        res = statistic.domains(self.design.with_frame(work), col, list(by), levels)
        keys = res.keys
        if spec.levels is not None or spec.statistic != "proportion":
            level = [level_text(spec, self.codebook, None)] * keys.height
        else:
            level = [level_text(spec, self.codebook, c) for c in keys.get_column("level").to_list()]
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
    method: str = "design",
    covariance: Callable[[str, Sequence[str]], DomainEstimates] | None = None,
    alpha: float = 0.05,
    adjust: str = "none",
) -> pl.DataFrame:
    """Pairwise tests between the domains of each column group, for every row of a banner.

    Two columns of one column group (two counties, two statuses) are compared for each level
    of each estimate (:func:`pipeline.survey.comparisons.pairwise_differences`: ``d / se(d)``
    on the smaller of the two domains' degrees of freedom, p-values adjusted within the row
    and column group). ``method='design'`` takes ``se(d)`` from the full covariance matrix of
    the domain estimates (``covariance``, :class:`DomainCovariance`: the domains are estimated
    by zero weights in one design, so their covariance and the raking's are accounted for);
    ``method='independent'`` from ``se_a^2 + se_b^2`` of the tidy estimates alone. Suppressed
    estimates (:func:`pipeline.flags.is_suppressed`) and pairs of two margins calibrated to
    their targets (:func:`pipeline.flags.is_calibrated`) are not compared; the whole sample
    (``[]``) is not a column group.

    Returns
    -------
    polars.DataFrame
        :data:`pipeline.exporters.significance.COMPARISON_COLUMNS`; ``difference = estimate_a
        - estimate_b``; ``row_a``, ``row_b`` the estimates.csv rows compared.

    Raises
    ------
    DataError
        The recomputed estimates do not match the tidy estimates (stale artifacts).
    """
    import numpy as np
    import polars as pl

    from pipeline.errors import DataError
    from pipeline.exporters.estimates import prepare_estimates
    from pipeline.exporters.significance import comparison_schema
    from pipeline.flags import is_calibrated, is_suppressed
    from pipeline.survey.comparisons import pairwise_differences

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
                pairs = [
                    (i, j) for i in range(len(part)) for j in range(i + 1, len(part))
                    if not (is_calibrated(part[i]) and is_calibrated(part[j]))  # both fixed by the weighting: nothing to test
                ]
                if not pairs:
                    continue
                if dom is not None:
                    at = [position.get((level, r["domain"])) for r in part]
                    for i, j in pairs:
                        if at[i] is None or at[j] is None:
                            raise DataError(f"{est_id} by {key}: no recomputed estimate for {level!r} in {part[i]['domain']!r} or {part[j]['domain']!r}",
                                            hint="rerun the estimate stage: survey-pipeline run CONFIG --from estimate")
                        for k in (i, j):
                            if abs(dom.estimate[at[k]] - part[k]["estimate"]) > MATCH_TOLERANCE:
                                raise DataError(
                                    f"{est_id} in {part[k]['domain']}: estimates.csv says {part[k]['estimate']!r}, the weighted data give {float(dom.estimate[at[k]])!r}",
                                    hint="estimates.csv is older than weight/data.parquet; rerun: survey-pipeline run CONFIG --from estimate",
                                )
                    idx = [a if a is not None else 0 for a in at]
                    vcov, df = dom.vcov[np.ix_(idx, idx)], dom.df[idx]
                else:
                    vcov = np.diag(np.array([r["se"] for r in part], dtype=np.float64) ** 2)
                    df = np.array([r["df"] for r in part], dtype=np.float64)
                tests = pairwise_differences([r["estimate"] for r in part], vcov, df, [pairs], alpha=alpha, adjust=adjust)
                for t in tests.iter_rows(named=True):
                    a, b = part[t["a"]], part[t["b"]]
                    records.append({
                        "estimate_id": est_id, "level": level, "by": key, "domain_a": a["domain"], "domain_b": b["domain"],
                        "row_a": a["_row"], "row_b": b["_row"], "estimate_a": a["estimate"], "estimate_b": b["estimate"],
                        **{c: t[c] for c in ("difference", "se", "df", "t", "p_value", "p_adjusted", "significant")}, "method": method,
                    })
    schema = {c: dtype for c, dtype in comparison_schema().items() if c != "table"}
    return pl.DataFrame(records, schema=schema)


def banner_comparisons(
    estimates: pl.DataFrame, frame: pl.DataFrame, codebook: Codebook, specs: Sequence[EstimateSpec], design: Any, tables: TablesConfig
) -> pl.DataFrame:
    """The tests behind the letters of every banner of ``tables.banners`` (``estimate/comparisons.csv``).

    ``tables.significance`` says how (``method``, ``alpha``, ``adjust``); with ``method:
    design`` the covariance comes from ``design``, the design of ``estimates``. One row per
    pair, with the banner's id in ``table``.
    """
    import polars as pl

    from pipeline.exporters.significance import comparison_schema

    sig = tables.significance
    covariance = DomainCovariance(frame, codebook, design, specs) if sig.method == "design" else None
    out = []
    by_id = {s.id: s for s in specs}
    for spec in tables.banners:
        ids = list(spec.estimates) or estimates.get_column("estimate_id").unique(maintain_order=True).to_list()
        # a statistic without domain covariances (quantiles) is shown without letters
        ids = [i for i in ids if i not in by_id or STATISTICS[by_id[i].statistic].domains is not None]
        cmp = compare_columns(estimates, ids, spec.columns, method=sig.method, covariance=covariance, alpha=sig.alpha, adjust=sig.adjust)
        out.append(cmp.with_columns(pl.lit(spec.id).alias("table")))
    return pl.concat(out) if out else pl.DataFrame(schema=comparison_schema())


READS = Reads(
    config=("design", "weight", "estimates", "models", "waves[].id", "waves[].not_asked", "tables.min_n", "tables.reliability", "tables.disclosure",
            "tables.banners[].id", "tables.banners[].estimates", "tables.banners[].columns", "tables.significance", "tables.crosstabs"),
    upstream=("weight/data.parquet", "weight/codebook.json", "weight/replicates.json", "weight/replicates.parquet"),
)
"""The design, the estimates the wave can make, the flag rules, and the weighted data."""


def run(ctx: StageContext) -> StageOutput:
    import polars as pl

    from pipeline.io import Codebook
    from pipeline.stages._estimate_crosstabs import crosstab_frame, crosstab_plans, crosstab_test_frame
    from pipeline.stages._estimate_differences import Statistics, difference_rows
    from pipeline.stages._estimate_models import fit_models, models_for

    frame = ctx.read_frame("weight/data.parquet")
    codebook = Codebook.from_json(ctx.path("weight/codebook.json").read_text(encoding="utf-8"))
    config: StudyConfig = ctx.config
    with _argument_errors("design", prefix="design"):
        if config.design.variance == "replicate":
            meta = json.loads(ctx.path("weight/replicates.json").read_text(encoding="utf-8"))
            design = replicate_design(frame, config.design, ctx.read_frame("weight/replicates.parquet"), meta)
        else:
            design = build_design(frame, config.design, config.weight)
    made = config.estimates_for(ctx.wave.id)
    specs = [s for s in made if s.difference is None]
    est = estimate_all(frame, codebook, specs, design, config.design, config.tables, wave=ctx.wave.id)
    tests = association_tests(frame, codebook, specs, design, wave=ctx.wave.id)
    comparisons = banner_comparisons(est, frame, codebook, specs, design, config.tables)
    registry = Statistics(STATISTICS, level_text, (*COLUMNS, *EXTRA_COLUMNS))
    differences = difference_rows(est, frame, codebook, made, design, config.tables, registry, wave=ctx.wave.id, conf_level=config.design.conf_level)
    if differences.height:
        est = pl.concat([est, differences], how="diagonal_relaxed")
    plans = crosstab_plans(frame, codebook, config.tables, ctx.wave)  # tables.crosstabs: each a distribution on its table's base
    crosstabs = crosstab_frame(
        [(p, estimate_all(p.frame, codebook, [p.estimate], p.design_of(design), config.design, config.tables, wave=ctx.wave.id)) for p in plans],
        (*COLUMNS, *EXTRA_COLUMNS),
    )
    models, model_tests, model_margins = fit_models(frame, codebook, models_for(config.models, ctx.wave), design, wave=ctx.wave.id, conf_level=config.design.conf_level)
    crosstab_tests = crosstab_test_frame(
        [(p, association_tests(p.frame, codebook, [p.estimate], p.design_of(design), wave=ctx.wave.id)) for p in plans], TEST_COLUMNS
    )
    return StageOutput(
        files={
            "estimates.csv": est, "estimate/association_tests.csv": tests, "estimate/comparisons.csv": comparisons,
            "estimate/crosstabs.csv": crosstabs, "estimate/crosstab_tests.csv": crosstab_tests, "estimate/codebook.json": codebook.to_json(),
            "models.csv": models, "estimate/model_tests.csv": model_tests, "estimate/model_margins.csv": model_margins,
        },
        diagnostics={
            "estimates": est.height,
            "flagged": int((est.get_column("flag") != "").sum()) if est.height else 0,
            "tests_skipped": int((tests.get_column("skipped") != "").sum()),
        },
        rows=est.height,
    )

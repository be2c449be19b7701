"""Model tables (``models``): a survey-weighted regression as a publication
:class:`~pipeline.exporters.tables.Table`, from the estimate stage's ``models.csv`` and
``estimate/model_tests.csv``.

One row per coefficient, grouped by term: a categorical term has a heading row with its Wald
test (R ``regTermTest``), its reference level (``1.00`` for a ratio, ``0`` for a coefficient,
marked "reference"), then each other level; a numeric covariate is one row. The columns are
the odds or rate ratio (logistic and Poisson models with ``exponentiate``; else the
coefficient), its confidence interval and the p-value of its t test; a mark ``*`` when p <
0.05. The notes give the model (family, response, n, residual degrees of freedom) and the
variance method.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipeline.exporters.tables import Cell, Column, Row, Table, variable_label
from pipeline.exporters.values import NOT_ESTIMATED

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import ModelSpec, TablesConfig
    from pipeline.io import Codebook

__all__ = ["model_table", "p_text"]

#: the variance note of a model table, by the design's variance method
VARIANCE_NOTES = {
    "taylor": "Design-based standard errors by Taylor linearization of the estimating equations (R svyglm), "
              "accounting for the strata, clusters and the weighting's calibration",
    "replicate": "Design-based standard errors from the replicate weights, the model refitted in every replicate (R svyglm on a replicate design)",
}

#: the heading of the predictive margins' column, by family
MARGIN_HEADERS = {"linear": "Predicted mean", "logistic": "Predicted %", "poisson": "Predicted count"}

FAMILY_TEXT = {"linear": "Linear regression", "logistic": "Logistic regression", "poisson": "Poisson (log-linear) regression"}


def p_text(p: float | None) -> str:
    """A p-value as a model table prints it.

    >>> p_text(0.0004), p_text(0.0312), p_text(0.5)
    ('<0.001', '0.031', '0.50')
    """
    if p is None or p != p:
        return NOT_ESTIMATED
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}" if p < 0.1 else f"{p:.2f}"


def _number(x: float | None, decimals: int) -> str:
    return NOT_ESTIMATED if x is None or x != x else f"{x:.{decimals}f}"


def model_table(
    models: pl.DataFrame,
    tests: pl.DataFrame | None,
    spec: ModelSpec,
    tables: TablesConfig,
    *,
    margins: pl.DataFrame | None = None,
    codebook: Codebook | None = None,
    variance: str = "taylor",
    title: str = "",
    wave: str = "",
    notice: str | None = None,
) -> Table:
    """The table of one model (its rows of ``models.csv``; its term tests of ``model_tests.csv``;
    with ``margins``, its rows of ``model_margins.csv``: a column of each level's predictive margin)."""
    import polars as pl

    rows_ = models.filter(pl.col("model_id") == spec.id).to_dicts()
    term_tests: Mapping[str, dict[str, Any]] = {}
    if tests is not None and tests.height:
        term_tests = {r["term"]: r for r in tests.filter(pl.col("model_id") == spec.id).iter_rows(named=True)}
    ratios = spec.show_ratios and bool(rows_) and rows_[0].get("ratio_name")
    value_name = str(rows_[0]["ratio_name"]).capitalize() if ratios else "Coefficient"
    d = spec.decimals
    conf = rows_[0]["conf_level"] if rows_ else 0.95
    margin_of: dict[tuple[str, str], float] = {}
    if margins is not None and margins.height:
        margin_of = {(r["variable"], str(r["label"])): r["estimate"] for r in margins.filter(pl.col("model_id") == spec.id).iter_rows(named=True)}
    columns = (
        Column("term", "Term", numeric=False, kind="label"),
        Column("estimate", value_name),
        Column("ci", f"{100 * conf:g}% CI"),  # text, not the two-cell interval of the estimates
        Column("p", "p"),
        *([Column("margin", MARGIN_HEADERS[spec.family])] if margin_of else []),
    )
    blank: tuple[Cell, ...] = (Cell(""),) if margin_of else ()

    def margin(variable: str, label: str) -> tuple[Cell, ...]:
        if not margin_of:
            return ()
        x = margin_of.get((variable, label))
        if x is None:
            return (Cell(""),)
        return (Cell(f"{100 * x:.0f}%" if spec.family == "logistic" else _number(x, d), field="margin"),)

    group = str(spec.title or (rows_[0]["title"] if rows_ else spec.id))
    out: list[Row] = []
    seen: set[str] = set()
    for r in rows_:
        variable = r["variable"] or ""
        if not variable:  # the intercept: a baseline odds (or mean) rather than a ratio
            if ratios:
                continue
            out.append(_coefficient_row(r, "Intercept", d, ratios, group, blank))
            continue
        name = ":".join(variable_label(v, codebook, tables.labels) for v in variable.split(":"))
        if r["level"]:
            if variable not in seen:
                seen.add(variable)
                test = term_tests.get(variable)
                head = f"{name}" + (f" (Wald F = {test['statistic']:.2f}, p {_p_phrase(test['p_value'])})" if test else "")
                out.append(Row((Cell(head), Cell(""), Cell(""), Cell(""), *blank), group))
                if r["reference"]:
                    ref = "1.00" if ratios else _number(0.0, d)
                    out.append(Row((Cell(f"  {r['reference']} (reference)"), Cell(ref), Cell(NOT_ESTIMATED), Cell(""),
                                    *margin(variable, r["reference"])), group))
            out.append(_coefficient_row(r, f"  {r['level']}", d, ratios, group, margin(variable, r["level"])))
        else:
            out.append(_coefficient_row(r, name, d, ratios, group, blank))
    first = rows_[0] if rows_ else {}
    response = f"{spec.response or (spec.formula or '').split('~')[0].strip()}"
    coded = ""
    if spec.levels:
        names = [codebook.label_of(response, c) if codebook is not None and response in codebook else str(c) for c in spec.levels]
        coded = f" (1: {' or '.join(names)}; 0: the other answers" + ("" if spec.denominator == "valid" else ", don't know and refused included") + ")"
    what = (f"{FAMILY_TEXT[spec.family]} of {variable_label(response, codebook, tables.labels)}{coded}"
            + (f", in the subpopulation {spec.subpopulation}" if spec.subpopulation else "")
            + f"; n = {int(first.get('n') or 0):,}, {_df_phrase(first.get('df'))}.")
    notes = [
        f"{VARIANCE_NOTES.get(variance, VARIANCE_NOTES['taylor'])}; t tests and {100 * conf:g}% intervals on the model's residual degrees of freedom.",
        ("Odds ratios" if spec.family == "logistic" else "Rate ratios") + " are exp(coefficient); their intervals exp() of the coefficient's."
        if ratios else "Coefficients are differences in the response per unit (or against the reference level).",
        "* p < 0.05.",
        *([f"{MARGIN_HEADERS[spec.family]}: the predictive margin of each level (R svypredmeans): the weighted average of every "
           "respondent's prediction with the term set to that level, the other terms as observed."] if margin_of else []),
        "Source: models.csv (the coefficients), estimate/model_tests.csv (the tests of each term) and estimate/model_margins.csv (the margins).",
        *spec.notes, *tables.notes,
    ]
    if notice:
        notes.append(notice)
    heading = group
    return Table(
        id=spec.id,
        kind="model",
        title=f"{title}: {heading}" if title else heading,
        subtitle=(f"Wave {wave}; " if wave else "") + FAMILY_TEXT[spec.family].lower(),
        columns=columns,
        rows=tuple(out),
        groups={group: what},
        notes=tuple(notes),
        footnotes=(),
        decimals=d,
    )


def _coefficient_row(r: Mapping[str, Any], label: str, d: int, ratios: bool, group: str, extra: tuple[Cell, ...] = ()) -> Row:
    est, lo, hi = (r["ratio"], r["ratio_ci_low"], r["ratio_ci_high"]) if ratios else (r["estimate"], r["ci_low"], r["ci_high"])
    mark = "*" if r["p_value"] is not None and r["p_value"] < 0.05 else ""
    return Row(
        # text cells: the workbook writes them as shown (its number formats are the estimates')
        (Cell(label), Cell(_number(est, d) + mark, field="estimate"), Cell(f"{_number(lo, d)}–{_number(hi, d)}", field="ci"),
         Cell(p_text(r["p_value"]), field="p"), *extra),
        group,
    )


def _p_phrase(p: float) -> str:
    text = p_text(p)
    return text.replace("<", "< ") if text.startswith("<") else f"= {text}"


def _df_phrase(df: Any) -> str:
    if df is None or df != df:
        return "residual degrees of freedom not defined"
    return f"{float(df):g} residual degrees of freedom"

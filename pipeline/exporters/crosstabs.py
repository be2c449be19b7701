"""Crosstab tables (``tables.crosstabs``) as :class:`~pipeline.exporters.tables.Table` data, from
the estimate stage's ``estimate/crosstabs.csv`` and ``estimate/crosstab_tests.csv``.

A crosstab of ``rows`` by ``columns``: one table row per level of ``rows``, one column per level
of ``columns``. With column percentages each column's shares sum to 100 and a Total column gives
the whole table's shares; the last row is each column's unweighted n (its base). With row
percentages each row's shares sum to 100, a Total row gives the whole table's, and the last
column is each row's unweighted n. Every estimate row is followed by a row of its confidence
intervals. Cells are shown as in banners (``44``, with the review marks of their flags;
suppressed ``*``: :mod:`pipeline.flags`); every cell's ``source`` is its row of
``estimate/crosstabs.csv`` (not of estimates.csv: the tidy CSV names those rows). The test of
association (R ``svychisq``) is a note under the table: ``Rao-Scott F = 14.17 on 1.9 and 371
df, p < 0.001``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipeline.exporters.estimates import prepare_estimates
from pipeline.exporters.tables import (
    Cell,
    Column,
    Row,
    Table,
    _count_cell,
    _interval_cell,
    _percent_cell,
    footnotes,
    standard_notes,
    variable_label,
)
from pipeline.exporters.values import NOT_ESTIMATED

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import CrosstabSpec, TablesConfig
    from pipeline.io import Codebook

__all__ = ["crosstab_table", "crosstab_test_note"]

#: the key of the whole table's shares (the Total column or row) among the domains
_TOTAL = None

#: how a note names each test of ``tables.crosstabs[].test`` (R svychisq's ``statistic``)
TEST_NAMES = {
    "F": "Rao-Scott F",
    "Chisq": "Pearson X² (Rao-Scott first-order correction)",
    "Wald": "Design-based Wald F",
    "adjWald": "Adjusted Wald F",
    "lincom": "Pearson X² (its exact asymptotic distribution)",
    "saddlepoint": "Pearson X² (saddlepoint approximation)",
}

_BASES = {
    "valid": "respondents with an answer to both questions, don't know and refused left out",
    "all": "respondents with an answer to both questions, don't know and refused included",
}


def _df_text(x: float) -> str:
    """Degrees of freedom as a note shows them: ``2``, ``1.9``, ``371``."""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def crosstab_test_note(test: Mapping[str, Any] | None, rows_name: str, columns_name: str) -> str:
    """The note of a crosstab's test (a row of ``estimate/crosstab_tests.csv``); empty without one.

    Examples
    --------
    >>> crosstab_test_note({"statistic_type": "F", "statistic_name": "F", "statistic": 3.2149, "ndf": 2.91,
    ...            "ddf": 115.2, "p_value": 0.0213, "skipped": ""}, "Awards", "School type")
    'Test of association of Awards and School type (design-based, as R svychisq): Rao-Scott F = 3.21 on 2.9 and 115 df, p = 0.021.'
    """
    if not test:
        return ""
    head = f"Test of association of {rows_name} and {columns_name} (design-based, as R svychisq): "
    if test.get("skipped"):
        return head + f"{test['skipped']}."
    name = TEST_NAMES.get(test["statistic_type"], test["statistic_type"])
    if test["statistic_name"] == "F":
        stat = f"{name} = {test['statistic']:.2f} on {_df_text(test['ndf'])} and {_df_text(test['ddf'])} df"
    elif test["statistic_type"] == "Chisq":
        stat = f"{name} = {test['statistic']:.2f} on {_df_text(test['ndf'])} df"
    else:
        stat = f"{name} = {test['statistic']:.2f}"
    return head + f"{stat}, {_p_text(test['p_value'])}."


def crosstab_table(
    crosstabs: pl.DataFrame,
    spec: CrosstabSpec,
    tables: TablesConfig,
    *,
    test: Mapping[str, Any] | None = None,
    tests: Mapping[str, Mapping[str, Any]] | None = None,
    codebook: Codebook | None = None,
    title: str = "",
    wave: str = "",
    notice: str | None = None,
) -> Table:
    """The table of one crosstab.

    Parameters
    ----------
    crosstabs : polars.DataFrame
        ``estimate/crosstabs.csv`` (every crosstab's rows; those of ``spec.id`` are shown).
    spec : CrosstabSpec
    tables : TablesConfig
        ``decimals``, ``labels`` (the variables' names in headers) and ``notes``.
    test : mapping, optional
        The crosstab's row of ``estimate/crosstab_tests.csv``.
    tests : mapping, optional
        With ``by``: each panel's row of ``estimate/crosstab_tests.csv``, by its ``panel``.

    Examples
    --------
    >>> import polars as pl
    >>> from pipeline.config import CrosstabSpec, TablesConfig
    >>> rows = pl.DataFrame({"estimate_id": ["x"] * 4, "statistic": ["proportion"] * 4, "variable": ["Q"] * 4,
    ...     "level": ["Yes", "No"] * 2, "by": ["", "", "G", "G"], "domain": ["All", "All", "a", "a"], "n": [50, 50, 20, 20],
    ...     "estimate": [0.6, 0.4, 0.7, 0.3], "ci_low": [0.5, 0.3, 0.5, 0.1], "ci_high": [0.7, 0.5, 0.9, 0.5],
    ...     "ci_method": ["logit"] * 4, "conf_level": [0.95] * 4, "flag": ["", "", "n<30", "n<30"], "title": ["Q by G"] * 4})
    >>> t = crosstab_table(rows, CrosstabSpec(id="x", rows="Q", columns="G"), TablesConfig())
    >>> [c.label for c in t.columns], [[c.text for c in r.cells] for r in t.rows]
    (['Q', 'a', 'Total'], [['Yes', '*', '60'], ['95% CI', '*', '50–70'], ['No', '*', '40'], ['95% CI', '*', '30–50'], ['Unweighted n', '20', '50']])
    """
    import polars as pl

    est = prepare_estimates(crosstabs).filter(pl.col("estimate_id") == spec.id)
    if "panel" not in est.columns:
        est = est.with_columns(pl.lit("").alias("panel"))
    est = est.with_columns(pl.col("panel").cast(pl.String).fill_null(""))
    decimals = spec.decimals if spec.decimals is not None else tables.decimals
    records = list(est.iter_rows(named=True))
    panels = list(dict.fromkeys(r["panel"] for r in records)) or [""]
    all_tests = {"": test} if test is not None else {}
    all_tests.update(tests or {})
    levels = list(dict.fromkeys(r["level"] for r in records))
    domains: list[str | None] = [*dict.fromkeys(r["domain"] for r in records if r["by"]), _TOTAL]
    by_column = spec.percent == "column"
    row_keys, col_keys = (levels, domains) if by_column else (domains, levels)

    def name(key: str | None) -> str:
        return "Total" if key is None else key

    rows_name = variable_label(spec.rows, codebook, tables.labels)
    columns_name = variable_label(spec.columns, codebook, tables.labels)
    panel_name = " × ".join(variable_label(b, codebook, tables.labels) for b in spec.by)
    conf = est.get_column("conf_level").unique().to_list() if est.height else [0.95]
    ci_label = f"{100 * conf[0]:g}% CI" if len(conf) == 1 else "CI"
    columns = [Column("answer", rows_name, numeric=False, kind="label")]
    columns += [Column("total" if k is None else f"{spec.columns}={k}", name(k), None if k is None else columns_name) for k in col_keys]
    if not by_column:
        columns.append(Column("n", "Unweighted n", kind="count"))
    heading = str(spec.title or (records[0].get("title") if records else None) or spec.id)
    base = _BASES.get(str(records[0].get("denominator") or "") if records else "", "")
    if by_column:
        what = f"Column percentages: the shares of each answer of {rows_name} (variable {spec.rows}) within each {columns_name} (variable {spec.columns}); Total: the whole table"
    else:
        what = f"Row percentages: the shares of each answer of {columns_name} (variable {spec.columns}) within each {rows_name} (variable {spec.rows}); Total: the whole table"
    out: list[Row] = []
    groups: dict[str, str] = {}
    notes: list[str] = []
    for panel in panels:
        index = {(r["level"], r["domain"] if r["by"] else _TOTAL): r for r in records if r["panel"] == panel}
        group = f"{panel_name}: {panel.replace('*', ', ')}" if panel else heading
        out += _panel_rows(index, row_keys, col_keys, by_column, decimals, ci_label, group, name)
        groups[group] = what + (f" (base: {base}" + (f"; within {panel.replace('*', ', ')}" if panel else "") + ")." if base else ".")
        note = crosstab_test_note(all_tests.get(panel), rows_name, columns_name)
        if note:
            notes.append(f"{panel.replace('*', ', ')}: {note}" if panel else note)
    extra = [*notes, "Source: estimate/crosstabs.csv (the cells) and estimate/crosstab_tests.csv (the test)."]
    if spec.by:
        extra.insert(0, f"One panel per {panel_name}: the crosstab within each, domains by zero weights in the whole sample's design.")
    if any(c.text == NOT_ESTIMATED for r in out for c in r.cells):
        extra.append(f"{NOT_ESTIMATED} not estimated.")
    return Table(
        id=spec.id,
        kind="crosstab",
        title=f"{title}: {heading}" if title else heading,
        subtitle=(f"Wave {wave}; " if wave else "") + f"{spec.percent} percentages",
        columns=tuple(columns),
        rows=tuple(out),
        groups=groups,
        notes=standard_notes(est, notice=notice, extra=[*extra, *spec.notes, *tables.notes]),
        footnotes=footnotes(c.flag for r in out for c in r.cells if r.kind == "estimate"),
        decimals=decimals,
    )


def _panel_rows(index: Mapping[Any, dict[str, Any]], row_keys: list[Any], col_keys: list[Any], by_column: bool, decimals: int,
                ci_label: str, group: str, name: Any) -> list[Row]:
    """One panel's rows: each answer's shares and intervals, and the unweighted n."""

    def at(rk: Any, ck: Any) -> dict[str, Any] | None:
        return index.get((rk, ck) if by_column else (ck, rk))

    out: list[Row] = []
    for rk in row_keys:
        found = [at(rk, ck) for ck in col_keys]
        shares = [Cell(NOT_ESTIMATED) if r is None else _percent_cell(r, decimals) for r in found]
        intervals = [Cell(NOT_ESTIMATED) if r is None else _interval_cell(r, decimals) for r in found]
        first = next((r for r in found if r is not None), None)
        n = [] if by_column else [Cell(NOT_ESTIMATED) if first is None else _count_cell(first)]
        out.append(Row((Cell(name(rk)), *shares, *n), group))
        out.append(Row((Cell(ci_label), *intervals, *([Cell("")] if n else [])), group))
    if by_column:
        bases = [next((at(rk, ck) for rk in row_keys if at(rk, ck) is not None), None) for ck in col_keys]
        out.append(Row((Cell("Unweighted n"), *(Cell(NOT_ESTIMATED) if r is None else _count_cell(r) for r in bases)), group, kind="base"))
    return out

"""The estimate stage's crosstabs (``tables.crosstabs``): each table's base, its cells as
estimates, and its test of association, for ``estimate/crosstabs.csv`` and
``estimate/crosstab_tests.csv``.

A crosstab of ``rows`` by ``columns`` is estimated as the ``distribution`` of its percentaged
variable (``rows`` for ``percent: column``, ``columns`` for ``percent: row``) over the domains
``[[], [other variable]]``: domains by zero weights inside the full design, proportion
intervals by ``design.ci_method``, ``cell_n`` and flags as every proportion of estimates.csv
(:func:`pipeline.stages.estimate.estimate_all` computes them from the plans this module
makes). The whole table's shares (``by`` empty, the Total column or row) are of the same base
as the cells: the respondents with a value of both variables.

The base. With ``denominator: valid`` the codebook's missing-value codes (don't know, refused:
``VariableInfo.missing_values``) of either variable are left out of the table; with ``all``
they are levels of it (rows or columns of their own). A respondent without a value of either
variable (system missing) is in no cell. The test (R ``svychisq``, ``test``) is of the same table:
``svychisq(~rows + columns, design)`` on the base's rows, the other rows in the design with zero
weight. R's test is symmetric in its two variables, so the row of ``crosstab_tests.csv`` names
the percentaged variable as ``variable`` and the other as ``by``, as the cells do.

This module imports nothing from ``estimate.py`` (which runs it: an import back would be an
import circle); it makes the plans and shapes what the stage computes from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import CrosstabSpec, EstimateSpec, TablesConfig, Wave
    from pipeline.io import Codebook

#: the columns estimate/crosstabs.csv has after the columns of estimates.csv: the percentages'
#: kind, and the panel (``tables.crosstabs[].by``: its variables joined by ``*`` and the domain's
#: labels; empty without ``by``); crosstab_tests.csv has the panel columns too
PERCENT_COLUMN = "percent"
PANEL_COLUMNS = ("panel_by", "panel")


@dataclass(frozen=True)
class CrosstabPlan:
    """One crosstab, ready for the estimate stage.

    Attributes
    ----------
    index : int
        Its position in ``tables.crosstabs`` (for messages: ``tables.crosstabs[i]``).
    spec : CrosstabSpec
    estimate : EstimateSpec
        The distribution of the percentaged variable by ``[[], [the other]]``, with the
        crosstab's id, denominator, title and test.
    frame : polars.DataFrame
        The weighted data with both variables limited to the table's base (codes outside it set
        missing); same rows, same order.
    """

    index: int
    spec: CrosstabSpec
    estimate: EstimateSpec
    frame: pl.DataFrame
    panel: str = ""
    """The domain of ``by`` the plan is within (its labels joined by ``*``; empty without ``by``)."""
    mask: Any = None
    """With ``by``: the panel's rows (a boolean array); the stage estimates the panel in the
    design's subset (R ``subset(design, ...)``: zero weights outside, the domain's degrees of
    freedom), as R's ``svyby``, ``svyciprop`` and ``svychisq`` on that subset."""

    def design_of(self, design: Any) -> Any:
        """The design the plan is estimated in: the whole one, or the panel's subset."""
        return design if self.mask is None else design.subset(self.mask)


def crosstabs_for(tables: TablesConfig, wave: Wave) -> list[tuple[int, CrosstabSpec]]:
    """The crosstabs a wave makes, with their positions: those of a ``not_asked`` variable left out."""
    gone = set(wave.not_asked)
    return [(i, c) for i, c in enumerate(tables.crosstabs) if not {c.rows, c.columns, *c.by} & gone]


def crosstab_problems(i: int, spec: CrosstabSpec, frame: pl.DataFrame, codebook: Codebook, *, missing: bool = True) -> list[str]:
    """What is wrong with the variables of ``tables.crosstabs[i]`` (also checked by ``validate``,
    :mod:`pipeline.preflight`, which names missing variables itself: ``missing=False``)."""
    problems = []
    if missing:
        problems += [f"tables.crosstabs[{i}].by ({spec.id}): {b} is not in the weighted data" for b in spec.by if b not in frame.columns]
    for key in ("rows", "columns"):
        var = getattr(spec, key)
        where = f"tables.crosstabs[{i}].{key} ({spec.id})"
        if var not in frame.columns:
            if missing:
                problems.append(f"{where}: {var} is not in the weighted data")
            continue
        if frame.schema[var].is_numeric() and not codebook.get(var).value_labels:
            problems.append(
                f"{where}: {var} is a numeric variable without value labels: its distinct values are not the levels of a table; "
                f"crosstab a categorical variable, or label its codes (waves[].labels: {{{var}: {{1: ..., 2: ...}}}})"
            )
    return problems


def crosstab_plans(frame: pl.DataFrame, codebook: Codebook, tables: TablesConfig, wave: Wave) -> list[CrosstabPlan]:
    """The plans of the wave's crosstabs, after checking every one (one error listing all problems).

    Raises
    ------
    ConfigError
        A variable is not in the weighted data, or is numeric without value labels.
    """
    import polars as pl

    from pipeline.config import EstimateSpec

    chosen = crosstabs_for(tables, wave)
    problems = [p for i, spec in chosen for p in crosstab_problems(i, spec, frame, codebook)]
    if problems:
        raise ConfigError(f"tables.crosstabs: {len(problems)} problem(s):", problems=problems)
    plans = []
    for i, spec in chosen:
        outside = {v: _outside_base(v, spec.denominator, codebook) for v in (spec.rows, spec.columns)}
        other = {spec.rows: spec.columns, spec.columns: spec.rows}
        limited = [
            pl.when(outside[v] | outside[other[v]]).then(None).otherwise(pl.col(v)).alias(v)
            for v in (spec.rows, spec.columns)
        ]
        title = spec.title or f"{_name(spec.rows, codebook)} by {_name(spec.columns, codebook)}"
        estimate = EstimateSpec(
            id=spec.id, distribution=spec.percentaged, by=((), (spec.within,)), denominator=spec.denominator, title=title, test=spec.test,
        )
        table = frame.with_columns(limited)
        if not spec.by:
            plans.append(CrosstabPlan(i, spec, estimate, table))
            continue
        # a panel per domain of by: the table's variables set missing outside it (zero weights)
        combos = frame.select(spec.by).drop_nulls().unique().sort(spec.by).iter_rows()
        for combo in combos:
            inside = pl.all_horizontal([pl.col(b) == v for b, v in zip(spec.by, combo, strict=True)])
            panel = table.with_columns(pl.when(inside).then(pl.col(v)).otherwise(None).alias(v) for v in (spec.rows, spec.columns))
            label = "*".join(codebook.label_of(b, v) for b, v in zip(spec.by, combo, strict=True))
            mask = frame.select(inside.fill_null(False)).to_series().to_numpy()
            plans.append(CrosstabPlan(i, spec, estimate, panel, label, mask))
    return plans


def _outside_base(var: str, denominator: str, codebook: Codebook) -> pl.Expr:
    """Rows of ``var`` outside a table's base: no value, or (``valid``) a missing-value code."""
    import polars as pl

    x = pl.col(var)
    missing = sorted(codebook.get(var).missing_values, key=str)
    if denominator == "all" or not missing:
        return x.is_null()
    return x.is_null() | x.is_in(missing)


def _name(var: str, codebook: Codebook) -> str:
    return str(codebook.get(var).label) if var in codebook and codebook.get(var).label else var


def crosstab_frame(parts: Sequence[tuple[CrosstabPlan, pl.DataFrame]], columns: Sequence[str]) -> pl.DataFrame:
    """``estimate/crosstabs.csv``: every crosstab's estimate rows (``columns``: those of
    estimates.csv) with the ``percent`` they are (``column`` or ``row``)."""
    import polars as pl

    frames = [rows.with_columns(pl.lit(plan.spec.percent).alias(PERCENT_COLUMN), *_panel(plan)) for plan, rows in parts if rows.height]
    if not frames:
        return pl.DataFrame(schema={c: pl.String for c in (*columns, PERCENT_COLUMN, *PANEL_COLUMNS)})
    return pl.concat(frames, how="vertical_relaxed").select(*columns, PERCENT_COLUMN, *PANEL_COLUMNS)


def _panel(plan: CrosstabPlan) -> list[pl.Expr]:
    import polars as pl

    return [pl.lit("*".join(plan.spec.by)).alias("panel_by"), pl.lit(plan.panel).alias("panel")]


def crosstab_test_frame(parts: Sequence[tuple[CrosstabPlan, pl.DataFrame]], columns: Sequence[str]) -> pl.DataFrame:
    """``estimate/crosstab_tests.csv``: every crosstab's test (``columns``: those of
    association_tests.csv), one per panel."""
    import polars as pl

    frames = [rows.with_columns(*_panel(plan)) for plan, rows in parts if rows.height]
    if not frames:
        return pl.DataFrame(schema={c: pl.String for c in (*columns, *PANEL_COLUMNS)})
    return pl.concat(frames, how="vertical_relaxed").select(*columns, *PANEL_COLUMNS)

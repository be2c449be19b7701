"""Input checks and encoding shared by the weighting methods.

This module owns the conversion of target shares into totals (:func:`targets_from_shares`),
the translation of a polars frame (base weight, grouping
columns, weighting variables) and a tidy target table (``*by, variable,
category, target``) into dense integer codes and numpy arrays, and every
error a user can cause on the way. The numerical methods in
:mod:`pipeline.survey.weighting` work only on the encoded arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.errors import CalibrationError, DataError, TargetsError

# Totals of two weighting variables inside one group must agree to this
# relative tolerance (targets built from shares that sum to 1 within 1e-6
# differ by a few 1e-6 at most).
TOTALS_RTOL = 1e-5

# How many offending rows an error message lists.
_SHOW_ROWS = 5

TARGET_COLUMNS = ("variable", "category", "target")

# Shares of one variable in one group must sum to 1 within this tolerance.
SHARES_ATOL = 1e-6


@dataclass(frozen=True)
class Groups:
    """The ``by`` grouping of the data rows.

    Attributes
    ----------
    columns : tuple of str
        The grouping columns (empty: one group, the whole sample).
    codes : numpy.ndarray
        Dense group code of every row, ``0 .. n_groups - 1`` in sorted key order.
    keys : tuple of tuple
        The grouping values of each group, as Python values.
    """

    columns: tuple[str, ...]
    codes: np.ndarray
    keys: tuple[tuple[Any, ...], ...]

    @property
    def n_groups(self) -> int:
        return len(self.keys)

    def label(self, g: int) -> str:
        """Human-readable name of group ``g`` for error messages."""
        if not self.columns:
            return "the whole sample"
        return "group " + ", ".join(f"{c}={v!r}" for c, v in zip(self.columns, self.keys[g]))


@dataclass(frozen=True)
class Margin:
    """One weighting variable, encoded.

    Attributes
    ----------
    variable : str
        Column name in the data.
    kind : {'categorical', 'numeric'}
        Categorical variables have one target per category and group;
        numeric ones (calibration only) one target total per group.
    codes : numpy.ndarray or None
        Categorical: dense code of every row into ``categories``.
    categories : tuple
        Categorical: the distinct data values, sorted (Python values).
    values : numpy.ndarray or None
        Numeric: the row values as float64.
    targets : numpy.ndarray
        Categorical: ``(n_groups, n_categories)`` population totals (0 where a
        category is absent from a group in both data and targets).
        Numeric: ``(n_groups, 1)`` population totals.
    target_rows : tuple
        For the margins report: ``(group, category_index or -1, category
        value as given in the targets)`` for every target row kept, in
        target-table order.
    """

    variable: str
    kind: Literal["categorical", "numeric"]
    codes: np.ndarray | None
    categories: tuple[Any, ...]
    values: np.ndarray | None
    targets: np.ndarray
    target_rows: tuple[tuple[int, int, Any], ...]


@dataclass(frozen=True)
class Problem:
    """Everything a weighting method needs, checked and encoded."""

    n: int
    base: np.ndarray
    groups: Groups
    margins: tuple[Margin, ...]
    weight: str
    by: tuple[str, ...]
    by_dtypes: tuple[pl.DataType, ...]
    category_dtype: pl.DataType


def _rows_list(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)[:_SHOW_ROWS] + 1
    text = ", ".join(str(int(r)) for r in rows)
    if mask.sum() > _SHOW_ROWS:
        text += ", ..."
    return text


def _fmt(values: Sequence[Any], limit: int = 12) -> str:
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    if len(values) > limit:
        shown += f", ... ({len(values)} in all)"
    return "[" + shown + "]"


def check_weight_array(weights: np.ndarray, *, what: str = "weights") -> np.ndarray:
    """Return ``weights`` as float64, raising DataError on nulls, non-finite or non-positive values."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise DataError(f"{what} must be one-dimensional; found an array of shape {w.shape}")
    bad = ~np.isfinite(w)
    if bad.any():
        raise DataError(
            f"{what}: {int(bad.sum())} missing or non-finite value(s) (rows {_rows_list(bad)}, 1-based); "
            "expected a finite positive weight on every row",
            hint="drop or impute these rows before weighting",
        )
    bad = w <= 0
    if bad.any():
        raise DataError(
            f"{what}: {int(bad.sum())} non-positive value(s) (rows {_rows_list(bad)}, 1-based; "
            f"smallest {w.min():g}); expected every base weight > 0",
            hint="rows with zero weight carry no information for weighting: remove them first",
        )
    return w


def _check_columns(frame: pl.DataFrame, columns: Sequence[str], *, role: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{role} column(s) {_fmt(missing)} not found in the data; found columns {_fmt(frame.columns, 20)}",
            hint="check the column names in the weighting config",
        )


def _check_no_nulls(frame: pl.DataFrame, columns: Sequence[str], *, role: str) -> None:
    for c in columns:
        s = frame.get_column(c)
        if s.null_count() or (s.dtype.is_float() and s.is_nan().any()):
            mask = s.is_null().to_numpy()
            if s.dtype.is_float():
                mask = mask | s.is_nan().fill_null(False).to_numpy()
            raise DataError(
                f"{role} '{c}' has {int(mask.sum())} missing value(s) (rows {_rows_list(mask)}, 1-based); "
                "expected a value on every row",
                hint=f"impute '{c}' or give the missing rows their own category before weighting",
            )


# Codes spanning at most this many values (or twice the rows) are encoded by counting, in
# linear time, instead of by sorting (np.unique): the usual case of survey codes.
_COUNTING_SPAN = 1 << 16


def _dense_by_counting(keys: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense rank of non-negative integer ``keys`` < ``span``, the distinct keys (sorted) and
    their counts.

    The same result as ``np.unique(keys, return_inverse=True, return_counts=True)`` (up to
    dtype), by counting.
    """
    counts = np.bincount(keys, minlength=span)
    present = counts > 0
    first = int(np.argmax(present))
    if present[first:].all():
        # the usual case, codes 1..k all present: the rank is a shift (no gather over the rows)
        dense = keys - first if first else keys
    else:
        dense = (np.cumsum(present, dtype=np.int64) - 1)[keys]
    return dense, np.flatnonzero(present), counts[present]


def encode_column(values: np.ndarray) -> tuple[np.ndarray, tuple[Any, ...]]:
    """Dense codes of ``values`` and the sorted distinct values as Python objects."""
    codes, categories, _ = encode_column_counts(values)
    return codes, categories


def encode_column_counts(values: np.ndarray) -> tuple[np.ndarray, tuple[Any, ...], np.ndarray | None]:
    """:func:`encode_column` and, when it came for free, the count of every distinct value."""
    v = np.asarray(values)
    if v.size and v.dtype.kind in "iuf":
        ints = v if v.dtype.kind in "iu" else None
        if ints is None:
            with np.errstate(invalid="ignore"):
                as_int = v.astype(np.int64)
            if np.array_equal(as_int, v):  # integral floats, as SPSS codes are (NaN is never equal)
                ints = as_int
        if ints is not None:
            lo, hi = int(ints.min()), int(ints.max())
            if hi - lo < max(_COUNTING_SPAN, 2 * v.size) and hi < 2**62:
                keys = ints if lo >= 0 and ints.dtype == np.int64 else ints.astype(np.int64) - lo
                offset = 0 if keys is ints else lo
                codes, distinct, counts = _dense_by_counting(keys, (hi if offset == 0 else hi - lo) + 1)
                return codes, tuple((distinct + offset).astype(v.dtype).tolist()), counts
    uniq, inverse = np.unique(v, return_inverse=True)
    return inverse.astype(np.int64, copy=False).reshape(-1), tuple(uniq.tolist()), None


def combine_codes(codes: Sequence[np.ndarray], sizes: Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense code of the combination of several code columns.

    Returns the dense code per row (in sorted order of the combination) and
    the ``(n_combinations, len(codes))`` table of component codes.
    """
    inverse, table, _ = combine_codes_counts(codes, sizes, n)
    return inverse, table


def combine_codes_counts(codes: Sequence[np.ndarray], sizes: Sequence[int], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`combine_codes` and the number of rows of every combination."""
    if not codes:
        return np.zeros(n, dtype=np.int64), np.zeros((1, 0), dtype=np.int64), np.array([n], dtype=np.int64)
    dims = tuple(int(s) for s in sizes)
    span = float(np.prod([float(s) for s in dims]))
    if span < max(_COUNTING_SPAN, 2 * n):
        # row-major flat index (np.ravel_multi_index without its checks), then dense by counting
        flat = np.array(codes[0], dtype=np.int64, copy=True)
        for c, size in zip(codes[1:], dims[1:]):
            flat *= size
            flat += c
        inverse, uniq, counts = _dense_by_counting(flat, int(span))
        table = np.stack(np.unravel_index(uniq, dims), axis=1)
        return inverse, table.astype(np.int64), counts
    if span < 2.0**62:
        flat = np.ravel_multi_index(tuple(codes), dims)
        uniq, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        table = np.stack(np.unravel_index(uniq, dims), axis=1)
        return inverse.reshape(-1).astype(np.int64), table.astype(np.int64), counts
    stacked = np.stack(codes, axis=1)
    table, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1).astype(np.int64), table.astype(np.int64), counts


def _encode_groups(frame: pl.DataFrame, by: tuple[str, ...]) -> Groups:
    n = frame.height
    if not by:
        return Groups(columns=(), codes=np.zeros(n, dtype=np.int64), keys=((),))
    codes, cats = [], []
    for c in by:
        code, cat = encode_column(frame.get_column(c).to_numpy())
        codes.append(code)
        cats.append(cat)
    dense, table = combine_codes(codes, [len(c) for c in cats], n)
    keys = tuple(tuple(cats[j][table[g, j]] for j in range(len(by))) for g in range(table.shape[0]))
    return Groups(columns=by, codes=dense, keys=keys)


def _cast_like(series: pl.Series, dtype: pl.DataType, *, what: str) -> list[Any]:
    try:
        return series.cast(dtype, strict=True).to_list()
    except Exception as exc:  # polars raises several exception types for failed casts
        raise TargetsError(
            f"targets: {what} values {_fmt(series.unique(maintain_order=True).to_list())} cannot be "
            f"matched to the data column of type {dtype}",
            hint="give target categories as the codes used in the data",
        ) from exc


def prepare(
    frame: pl.DataFrame,
    *,
    weight: str,
    targets: pl.DataFrame,
    by: Sequence[str],
    method: str,
    allow_numeric: bool = False,
    single_variable: bool = False,
) -> Problem:
    """Check the inputs of a weighting method and encode them.

    Parameters
    ----------
    frame : polars.DataFrame
        The sample: base weight, ``by`` columns and weighting variables.
    weight : str
        Base weight column.
    targets : polars.DataFrame
        Tidy targets ``*by, variable, category, target`` (population totals).
    by : sequence of str
        Grouping columns; weighting is done separately within each group.
    method : str
        Name of the calling method, for messages.
    allow_numeric : bool
        Accept numeric variables (rows whose ``category`` is null): calibration.
    single_variable : bool
        Require exactly one variable: post-stratification.

    Raises
    ------
    DataError
        Missing columns, nulls, non-positive weights.
    TargetsError
        Malformed targets, data categories or groups without targets.
    CalibrationError
        A target category (or group) without any data row: an empty cell.
    """
    if not isinstance(frame, pl.DataFrame):
        raise DataError(f"{method}: expected the sample as a polars DataFrame; found {type(frame).__name__}")
    if not isinstance(targets, pl.DataFrame):
        raise TargetsError(f"{method}: expected targets as a polars DataFrame; found {type(targets).__name__}")
    by = (by,) if isinstance(by, str) else tuple(by)
    need = (*by, *TARGET_COLUMNS)
    missing = [c for c in need if c not in targets.columns]
    if missing:
        raise TargetsError(
            f"targets: column(s) {_fmt(missing)} missing; expected columns {_fmt(list(need))}, "
            f"found {_fmt(targets.columns)}",
            hint="targets are tidy: one row per group, variable and category, with the population total in 'target'",
        )
    if targets.height == 0:
        raise TargetsError(f"targets: the table is empty; {method} needs at least one target row")
    if frame.height == 0:
        raise DataError(f"{method}: the data has no rows")

    _check_columns(frame, [weight], role="weight")
    _check_columns(frame, by, role="by")
    variables = targets.get_column("variable").unique(maintain_order=True).to_list()
    if None in variables:
        mask = targets.get_column("variable").is_null().to_numpy()
        raise TargetsError(f"targets: 'variable' is missing on target rows {_rows_list(mask)} (1-based)")
    variables = [str(v) for v in variables]
    if single_variable and len(variables) != 1:
        raise TargetsError(
            f"{method}: targets name {len(variables)} variables {_fmt(variables)}; expected exactly one",
            hint="post-stratify on one (crossed) variable, or use rake/calibrate for several margins",
        )
    absent = [v for v in variables if v not in frame.columns]
    if absent:
        raise TargetsError(
            f"targets name variable(s) {_fmt(absent)} that are not columns of the data; "
            f"found columns {_fmt(frame.columns, 20)}",
            hint="check the variable names in the targets file",
        )

    for col in (*by, "target"):
        s = targets.get_column(col)
        if s.null_count():
            mask = s.is_null().to_numpy()
            raise TargetsError(
                f"targets: '{col}' is missing on {int(mask.sum())} row(s) (target rows {_rows_list(mask)}, 1-based)"
            )
    tvals = targets.get_column("target")
    if not tvals.dtype.is_numeric():
        raise TargetsError(f"targets: 'target' must be numeric population totals; found type {tvals.dtype}")
    tarr = tvals.cast(pl.Float64).to_numpy()
    bad = ~np.isfinite(tarr) | (tarr < 0)
    if bad.any():
        raise TargetsError(
            f"targets: {int(bad.sum())} target(s) negative or not finite (target rows {_rows_list(bad)}, 1-based); "
            "expected population totals >= 0"
        )

    _check_no_nulls(frame, by, role="by column")
    _check_no_nulls(frame, variables, role="weighting variable")
    _check_no_nulls(frame, [weight], role="base weight")
    base = check_weight_array(frame.get_column(weight).cast(pl.Float64).to_numpy(), what=f"base weight '{weight}'")

    groups = _encode_groups(frame, by)
    group_index = {k: g for g, k in enumerate(groups.keys)}

    # group of every target row, in the data's types
    if by:
        cast_by = [_cast_like(targets.get_column(c), frame.schema[c], what=f"by column '{c}'") for c in by]
        target_keys = list(zip(*cast_by))
    else:
        target_keys = [()] * targets.height
    target_groups = np.array([group_index.get(k, -1) for k in target_keys], dtype=np.int64)
    if (target_groups < 0).any():
        i = int(np.flatnonzero(target_groups < 0)[0])
        key = target_keys[i]
        label = ", ".join(f"{c}={v!r}" for c, v in zip(by, key))
        raise TargetsError(
            f"targets have rows for group {label}, but the data has no rows in that group; "
            f"groups in the data: {_fmt([groups.label(g) for g in range(groups.n_groups)], 8)}",
            hint="drop the group from the targets or check the group codes",
        )
    have_targets = np.zeros(groups.n_groups, dtype=bool)
    have_targets[target_groups] = True
    if not have_targets.all():
        g = int(np.flatnonzero(~have_targets)[0])
        raise TargetsError(
            f"{groups.label(g)} has {int((groups.codes == g).sum())} row(s) in the data but no targets "
            f"({int((~have_targets).sum())} group(s) without targets)",
            hint="add targets for every group in the data, or drop its rows before weighting",
        )

    var_col = targets.get_column("variable").cast(pl.String).to_numpy()
    cat_series = targets.get_column("category")
    margins: list[Margin] = []
    for v in variables:
        rows = np.flatnonzero(var_col == v)
        cats_given = cat_series.gather(rows)
        null_cat = cats_given.is_null().to_numpy()
        if null_cat.all():
            if not allow_numeric:
                raise TargetsError(
                    f"targets for variable '{v}' have no categories; {method} needs one target per category",
                    hint="numeric totals are for calibrate()",
                )
            margins.append(_numeric_margin(frame, v, rows, target_groups, tarr, groups))
            continue
        if null_cat.any():
            mask = np.zeros(targets.height, dtype=bool)
            mask[rows[null_cat]] = True
            raise TargetsError(
                f"targets for variable '{v}' mix rows with and without a category "
                f"(target rows without one: {_rows_list(mask)}, 1-based)",
                hint="give every category of a categorical variable, or one total without category for a numeric one",
            )
        margins.append(
            _categorical_margin(frame, v, rows, cats_given, target_groups, tarr, groups)
        )

    _check_totals_agree(margins, groups)
    return Problem(
        n=frame.height,
        base=base,
        groups=groups,
        margins=tuple(margins),
        weight=weight,
        by=by,
        by_dtypes=tuple(frame.schema[c] for c in by),
        category_dtype=cat_series.dtype,
    )


def _numeric_margin(
    frame: pl.DataFrame, v: str, rows: np.ndarray, target_groups: np.ndarray, tarr: np.ndarray, groups: Groups
) -> Margin:
    s = frame.get_column(v)
    if not s.dtype.is_numeric():
        raise TargetsError(
            f"targets give variable '{v}' one total without category (a numeric variable), "
            f"but the data column has type {s.dtype}",
            hint="give one target per category for a categorical variable",
        )
    tg = target_groups[rows]
    counts = np.bincount(tg, minlength=groups.n_groups)
    if (counts > 1).any():
        g = int(np.flatnonzero(counts > 1)[0])
        raise TargetsError(f"targets: variable '{v}' has {int(counts[g])} totals in {groups.label(g)}; expected one")
    if (counts == 0).any():
        g = int(np.flatnonzero(counts == 0)[0])
        raise TargetsError(f"targets: no total for variable '{v}' in {groups.label(g)}")
    t = np.zeros((groups.n_groups, 1))
    t[tg, 0] = tarr[rows]
    return Margin(
        variable=v,
        kind="numeric",
        codes=None,
        categories=(),
        values=s.cast(pl.Float64).to_numpy(),
        targets=t,
        target_rows=tuple((int(g), -1, None) for g in tg),
    )


def _categorical_margin(
    frame: pl.DataFrame,
    v: str,
    rows: np.ndarray,
    cats_given: pl.Series,
    target_groups: np.ndarray,
    tarr: np.ndarray,
    groups: Groups,
) -> Margin:
    col = frame.get_column(v)
    codes, categories, counts = encode_column_counts(col.to_numpy())
    k = len(categories)
    cat_index = {c: i for i, c in enumerate(categories)}
    cats_data_type = _cast_like(cats_given, col.dtype, what=f"category of variable '{v}'")
    given = cats_given.to_list()
    tg = target_groups[rows]

    if groups.n_groups == 1 and counts is not None:
        data_counts = counts.reshape(1, k)
    else:
        data_counts = np.bincount(groups.codes * k + codes, minlength=groups.n_groups * k).reshape(groups.n_groups, k)
    t = np.zeros((groups.n_groups, k))
    have = np.zeros((groups.n_groups, k), dtype=bool)
    kept: list[tuple[int, int, Any]] = []
    seen: set[tuple[int, Any]] = set()
    for r, g, c_data, c_given in zip(rows, tg, cats_data_type, given):
        g = int(g)
        if (g, c_data) in seen:
            raise TargetsError(
                f"targets: variable '{v}' category {c_given!r} appears more than once in {groups.label(g)}",
                hint="give one target row per group, variable and category",
            )
        seen.add((g, c_data))
        j = cat_index.get(c_data)
        value = float(tarr[r])
        if j is None or data_counts[g, j] == 0:
            if value == 0.0:
                continue  # absent from data and population: nothing to match (as R drops it)
            raise CalibrationError(
                f"empty cell: variable '{v}' category {c_given!r} in {groups.label(g)} has a target of "
                f"{value:g} but no rows in the data",
                hint="collapse this category with a neighbouring one (in data and targets), "
                "or drop it from the targets",
            )
        if value == 0.0:
            raise TargetsError(
                f"targets: variable '{v}' category {c_given!r} in {groups.label(g)} has a target of 0 but "
                f"{int(data_counts[g, j])} row(s) in the data; a category with respondents needs a positive share "
                "(weights must stay positive)",
                hint="correct the category's share in the targets file, or merge the category with a neighbour "
                "in the data (clean.derive) and in the targets; a share of 0 is only for a category no respondent has",
            )
        t[g, j] = value
        have[g, j] = True
        kept.append((g, j, c_given))

    untargeted = (data_counts > 0) & ~have
    if untargeted.any():
        g, j = (int(x) for x in np.argwhere(untargeted)[0])
        has_any = have[g].any()
        if not has_any:
            raise TargetsError(
                f"targets: no targets for variable '{v}' in {groups.label(g)} "
                f"({int(data_counts[g].sum())} row(s) in the data)",
                hint=f"add the categories of '{v}' for this group to the targets",
            )
        expected = [categories[i] for i in np.flatnonzero(have[g])]
        raise TargetsError(
            f"variable '{v}' category {categories[j]!r} has {int(data_counts[g, j])} row(s) in {groups.label(g)} "
            f"but no target; target categories there are {_fmt(expected)}",
            hint="recode the category in cleaning, or add its population total to the targets",
        )
    return Margin(
        variable=v,
        kind="categorical",
        codes=codes,
        categories=categories,
        values=None,
        targets=t,
        target_rows=tuple(kept),
    )


def _check_totals_agree(margins: Sequence[Margin], groups: Groups) -> None:
    cats = [m for m in margins if m.kind == "categorical"]
    if len(cats) < 2:
        return
    totals = np.stack([m.targets.sum(axis=1) for m in cats], axis=1)  # (G, n_vars)
    ref = totals[:, :1]
    rel = np.abs(totals - ref) / np.maximum(np.abs(ref), 1e-300)
    if (rel > TOTALS_RTOL).any():
        g, j = (int(x) for x in np.argwhere(rel > TOTALS_RTOL)[0])
        raise TargetsError(
            f"targets in {groups.label(g)}: variable '{cats[j].variable}' sums to {totals[g, j]:.10g} but "
            f"'{cats[0].variable}' sums to {totals[g, 0]:.10g}; every variable's targets must add up to the "
            f"same population total (relative tolerance {TOTALS_RTOL:g})",
            hint="build totals from shares with targets_from_shares() and one population per group",
        )


def group_codes(frame: pl.DataFrame, by: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Dense group code (``0 .. G - 1``, in sorted order of the groups) of every row, and a label per group."""
    if not by:
        return np.zeros(frame.height, dtype=np.int64), ["the whole sample"]
    keys = frame.select(list(by))
    codes = keys.select(pl.struct(list(by)).rank("dense")).to_series().to_numpy().astype(np.int64) - 1
    labels = [""] * (int(codes.max()) + 1)
    for row, code in zip(keys.rows(), codes):
        if not labels[code]:
            labels[code] = "group " + ", ".join(f"{c}={v}" for c, v in zip(by, row))
    return codes, labels


def targets_from_shares(
    shares: pl.DataFrame,
    *,
    by: Sequence[str] = (),
    share: str = "share",
    population: str = "population",
) -> pl.DataFrame:
    """Convert target shares into population totals.

    Parameters
    ----------
    shares : polars.DataFrame
        Columns ``*by, variable, category, <share>, <population>``: the share
        of every category within its group and variable, and the group's
        population (repeated on every row of the group).
    by : sequence of str
        Grouping columns.
    share, population : str
        Names of the share and population columns.

    Returns
    -------
    polars.DataFrame
        ``*by, variable, category, target`` with ``target = share * population``.

    Raises
    ------
    TargetsError
        Missing columns or values, negative shares, a population that differs
        within a group, or shares of a variable in a group that do not sum to
        1 within 1e-6.

    Examples
    --------
    >>> shares = pl.DataFrame({"variable": ["sex", "sex"], "category": [1, 2],
    ...                        "share": [0.48, 0.52], "population": [1000.0, 1000.0]})
    >>> targets_from_shares(shares)["target"].to_list()
    [480.0, 520.0]
    """
    by = [by] if isinstance(by, str) else list(by)
    need = [*by, "variable", "category", share, population]
    missing = [c for c in need if c not in shares.columns]
    if missing:
        raise TargetsError(
            f"target shares: column(s) {missing} missing; expected {need}, found {shares.columns}",
            hint=f"name the share and population columns with share= and population= (now {share!r}, {population!r})",
        )
    for c in [*by, "variable", share, population]:
        nulls = shares.get_column(c).null_count()
        if nulls:
            raise TargetsError(f"target shares: column '{c}' has {nulls} missing value(s)")
    s = shares.get_column(share).cast(pl.Float64)
    if (s < 0).any() or not s.is_finite().all():
        raise TargetsError(f"target shares: '{share}' must be finite shares between 0 and 1; found {s.min()} .. {s.max()}")
    p = shares.get_column(population).cast(pl.Float64)
    if (p <= 0).any() or not p.is_finite().all():
        raise TargetsError(f"target shares: '{population}' must be a positive population size; found {p.min()} .. {p.max()}")

    def label(row: Mapping[str, Any]) -> str:
        return ", ".join(f"{c}={row[c]!r}" for c in by) if by else "the whole population"

    if by:
        pops = shares.group_by(by).agg(
            pl.col(population).cast(pl.Float64).min().alias("lo"), pl.col(population).cast(pl.Float64).max().alias("hi")
        )
        bad = pops.filter(pl.col("hi") - pl.col("lo") > 1e-9 * pl.col("hi"))
    else:
        bad = pl.DataFrame({"lo": [p.min()], "hi": [p.max()]}).filter(pl.col("hi") - pl.col("lo") > 1e-9 * pl.col("hi"))
    if bad.height:
        row = bad.row(0, named=True)
        raise TargetsError(
            f"target shares: the population differs within {label(row)} ({row['lo']:g} to {row['hi']:g}); "
            "expected one population per group",
        )
    sums = shares.group_by([*by, "variable"], maintain_order=True).agg(pl.col(share).cast(pl.Float64).sum().alias("_sum"))
    off = sums.filter((pl.col("_sum") - 1.0).abs() > SHARES_ATOL)
    if off.height:
        row = off.row(0, named=True)
        raise TargetsError(
            f"target shares of variable '{row['variable']}' in {label(row)} sum to {row['_sum']:.9g}; "
            f"expected 1 (within {SHARES_ATOL:g})",
            hint="check for a missing or duplicated category, or shares given in percent",
        )
    return shares.select(
        *by,
        pl.col("variable"),
        pl.col("category"),
        (pl.col(share).cast(pl.Float64) * pl.col(population).cast(pl.Float64)).alias("target"),
    )

"""R-style model formulas, parsed safely and turned into model matrices on polars frames.

The grammar is the part of R's formula language a survey regression needs, and nothing
that evaluates code (no patsy: config formulas must never reach an engine that runs code)::

    formula  := response "~" rhs
    rhs      := term (("+" | "-") term)*
    term     := factor (("*" | ":") factor)*      a*b = a + b + a:b
    factor   := NAME | "`" any text "`" | "C(" NAME ["," "ref" "=" value] ")" | "(" rhs ")"
                | "1" | "0"                        "- 1" / "+ 0": no intercept

Numeric columns are covariates; polars String, Enum, Categorical and Boolean columns, columns
named in ``categorical=`` and ``C(x)`` terms are factors coded by treatment contrasts with R's
column names (``stypeH``, ``stypeH:ell``, ``race2``). The reference level is the first level
(Enum: the category order, as an R factor from the codebook; otherwise sorted) unless
``C(x, ref = v)`` or ``refs={"x": v}`` names another. Terms are ordered as R's ``terms()``
does (by order of interaction, then as written); a factor inside an interaction is coded by
contrasts when the term without it is in the model and by indicators otherwise (R's rule).

>>> f = parse("api00 ~ stype * ell - 1 + C(race, ref = 2)")
>>> f.response, f.intercept, [":".join(t) for t in f.terms]
('api00', False, ['stype', 'ell', 'race', 'stype:ell'])
>>> f.refs
{'race': 2}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError, DataError

__all__ = ["Factor", "Formula", "ModelMatrix", "model_matrix", "parse"]

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_.][A-Za-z0-9_.]*)|`(?P<quoted>[^`]+)`|(?P<num>-?\d+(?:\.\d+)?)"
                    r"|\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<op>[~+\-*:(),=]))")


@dataclass(frozen=True)
class Formula:
    """A parsed formula: response, terms (tuples of variable names), intercept, ``C()`` factors."""

    text: str
    response: str
    terms: tuple[tuple[str, ...], ...]
    intercept: bool
    factors: frozenset[str] = frozenset()
    refs: dict[str, Any] = field(default_factory=dict)

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable the formula uses, response first."""
        out = [self.response]
        for t in self.terms:
            out += [v for v in t if v not in out]
        return tuple(out)


def _error(text: str, pos: int, what: str) -> ArgumentError:
    return ArgumentError(
        f"formula: {what} at position {pos + 1} of {text!r}",
        hint="write it as R does, e.g. 'api00 ~ ell + meals + stype' or 'y ~ a * b + C(x, ref = 3) - 1'",
    )


def _tokens(text: str) -> list[tuple[str, Any, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise _error(text, pos + len(text[pos:]) - len(text[pos:].lstrip()), f"unexpected character {text[pos:].lstrip()[0]!r}")
        start = m.start(m.lastgroup)
        if m.group("name") is not None:
            out.append(("name", m.group("name"), start))
        elif m.group("quoted") is not None:
            out.append(("name", m.group("quoted"), start))
        elif m.group("num") is not None:
            num = float(m.group("num"))
            out.append(("num", int(num) if num.is_integer() else num, start))
        elif m.group("dq") is not None or m.group("sq") is not None:
            out.append(("str", m.group("dq") if m.group("dq") is not None else m.group("sq"), start))
        else:
            out.append(("op", m.group("op"), start))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.factors: set[str] = set()
        self.refs: dict[str, Any] = {}
        self.order: list[str] = []

    def peek(self, value: str | None = None) -> bool:
        if self.i >= len(self.toks):
            return False
        tok = self.toks[self.i]
        return value is None or (tok[0] == "op" and tok[1] == value)

    def take(self, value: str | None = None) -> tuple[str, Any, int]:
        if self.i >= len(self.toks):
            raise _error(self.text, len(self.text), f"formula ends early (expected {value or 'a term'!r})")
        tok = self.toks[self.i]
        if value is not None and not (tok[0] == "op" and tok[1] == value):
            raise _error(self.text, tok[2], f"expected {value!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def var(self, name: str) -> frozenset:
        if name not in self.order:
            self.order.append(name)
        return frozenset([name])

    def rhs(self) -> tuple[list[frozenset], bool | None]:
        """Terms (sets of variables; the empty set is the intercept) and the intercept flag."""
        terms: list[frozenset] = []
        intercept: bool | None = None
        sign = "+"
        while True:
            got, icpt = self.term()
            if icpt is not None:
                intercept = icpt if sign == "+" else (not icpt)
            elif sign == "+":
                terms += [t for t in got if t not in terms]
            else:
                terms = [t for t in terms if t not in got]
            if self.peek("+") or self.peek("-"):
                sign = self.take()[1]
                continue
            return terms, intercept

    def term(self) -> tuple[list[frozenset], bool | None]:
        tok = self.toks[self.i] if self.i < len(self.toks) else None
        if tok is not None and tok[0] == "num":
            self.i += 1
            if tok[1] not in (0, 1):
                raise _error(self.text, tok[2], f"a number ({tok[1]}) can only be 0 or 1 (the intercept)")
            return [], tok[1] == 1
        out = self.factor()
        while self.peek("*") or self.peek(":"):
            op = self.take()[1]
            right = self.factor()
            inter = [a | b for a in out for b in right]
            if op == "*":
                out = out + [t for t in right if t not in out] + [t for t in inter if t not in out and t not in right]
            else:
                out = inter
        return out, None

    def factor(self) -> list[frozenset]:
        tok = self.take()
        if tok[0] == "op" and tok[1] == "(":
            terms, icpt = self.rhs()
            if icpt is not None:
                raise _error(self.text, tok[2], "0 or 1 inside parentheses")
            self.take(")")
            return terms
        if tok[0] != "name":
            raise _error(self.text, tok[2], f"expected a column name, found {tok[1]!r}")
        if tok[1] == "C" and self.peek("("):
            self.take("(")
            name_tok = self.take()
            if name_tok[0] != "name":
                raise _error(self.text, name_tok[2], f"C() takes a column name, found {name_tok[1]!r}")
            self.factors.add(name_tok[1])
            if self.peek(","):
                self.take(",")
                key = self.take()
                if key[1] != "ref":
                    raise _error(self.text, key[2], f"C() accepts only 'ref = <level>', found {key[1]!r}")
                self.take("=")
                value = self.take()
                if value[0] not in ("num", "str", "name"):
                    raise _error(self.text, value[2], f"expected a level after 'ref =', found {value[1]!r}")
                self.refs[name_tok[1]] = value[1]
            self.take(")")
            return [self.var(name_tok[1])]
        if self.peek("("):
            raise _error(self.text, tok[2], f"function {tok[1]}() is not supported (only C())")
        return [self.var(tok[1])]


def parse(text: str) -> Formula:
    """Parse an R-style formula (see the module docstring); errors name the position."""
    if not isinstance(text, str) or "~" not in text:
        raise ArgumentError(
            f"formula: expected 'response ~ terms', found {text!r}",
            hint="write the response, a tilde and the terms, e.g. 'api00 ~ ell + meals'",
        )
    p = _Parser(text)
    resp = p.take()
    if resp[0] != "name":
        raise _error(text, resp[2], f"the response must be a column name, found {resp[1]!r}")
    p.take("~")
    terms, intercept = p.rhs()
    if p.i < len(p.toks):
        tok = p.toks[p.i]
        raise _error(text, tok[2], f"unexpected {tok[1]!r}")
    if resp[1] in p.order:
        raise _error(text, resp[2], f"the response {resp[1]!r} is also a term")
    rank = {v: i for i, v in enumerate(p.order)}
    ordered = sorted((t for t in terms if t), key=len)  # stable: by order, then as written
    return Formula(
        text=text,
        response=resp[1],
        terms=tuple(tuple(sorted(t, key=rank.__getitem__)) for t in ordered),
        intercept=True if intercept is None else intercept,
        factors=frozenset(p.factors),
        refs=dict(p.refs),
    )


# ------------------------------------------------------------------ model matrix
@dataclass(frozen=True)
class Factor:
    """A categorical variable: its levels (reference first), their names in terms and labels."""

    name: str
    levels: tuple[Any, ...]
    names: tuple[str, ...]
    labels: tuple[str, ...]

    def codes(self, values: pl.Series) -> np.ndarray:
        """Level index of every value (-1: not a level or missing)."""
        # vectorised (a Python loop over the rows took seconds at 10^6): each distinct value once
        uniq = values.unique()
        lookup = {v: i for i, v in enumerate(self.levels)}
        codes = pl.Series([lookup.get(v, -1) for v in uniq.to_list()], dtype=pl.Int64)
        return values.replace_strict(uniq, codes, default=-1, return_dtype=pl.Int64).fill_null(-1).to_numpy()


@dataclass(frozen=True)
class ModelMatrix:
    """The model matrix of a formula on a frame (rows with a missing model variable dropped).

    ``x`` and ``y`` hold every row of the frame (dropped rows: zeros); ``used`` marks the rows
    kept (R's ``na.omit``); ``assign[j]`` is the term of column ``j`` (0: intercept, ``i``:
    ``formula.terms[i - 1]``, R's ``attr(, "assign")``).
    """

    formula: Formula
    columns: tuple[str, ...]
    labels: tuple[str, ...]
    assign: tuple[int, ...]
    x: np.ndarray
    y: np.ndarray
    used: np.ndarray
    factors: dict[str, Factor]
    coding: tuple[tuple[bool, ...], ...]  # per term, per variable: contrasts (True) or indicators

    def term_index(self, label: str) -> int:
        """The term number (1-based) of ``label`` (``a:b`` in any order)."""
        want = frozenset(label.split(":"))
        for i, t in enumerate(self.formula.terms, start=1):
            if frozenset(t) == want:
                return i
        raise ArgumentError(
            f"terms: {label!r} is not a term of {self.formula.text!r}",
            hint=f"use one of {', '.join(':'.join(t) for t in self.formula.terms)}",
        )

    def new_rows(self, newdata: pl.DataFrame) -> np.ndarray:
        """The model matrix of ``newdata`` with this fit's levels and coding (R ``predict``)."""
        for v in self.formula.variables[1:]:
            if v not in newdata.columns:
                raise ArgumentError(f"newdata: column {v!r} of the formula is missing", hint=f"add a column {v!r}")
        x, _, ok = _build(self, newdata)
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise DataError(
                f"newdata: row {row + 1} has a missing value or a level the model was not fitted with",
                hint="give every variable a value; factor levels: "
                + "; ".join(f"{f.name}: {', '.join(f.names)}" for f in self.factors.values()),
            )
        return x


def _is_factor_dtype(dtype: pl.DataType) -> bool:
    return dtype == pl.String or dtype == pl.Boolean or isinstance(dtype, (pl.Enum, pl.Categorical))


def _level_name(v: Any) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _missing(s: pl.Series) -> np.ndarray:
    miss = s.is_null().to_numpy()
    if s.dtype.is_float():
        miss = miss | s.is_nan().fill_null(True).to_numpy()
    return miss


def _make_factor(name: str, s: pl.Series, used: np.ndarray, ref: Any, labels: Mapping[Any, str] | None) -> Factor:
    if isinstance(s.dtype, pl.Enum):
        present = set(s.filter(pl.Series(used)).cast(pl.String).to_list())
        levels = [c for c in s.dtype.categories.to_list() if c in present]
        s = s.cast(pl.String)
    else:
        if isinstance(s.dtype, pl.Categorical):
            s = s.cast(pl.String)
        levels = sorted(set(s.filter(pl.Series(used)).to_list()))
    if ref is not None:
        match = [lv for lv in levels if lv == ref or _level_name(lv) == _level_name(ref)]
        if not match:
            raise ArgumentError(
                f"refs: reference level {ref!r} of {name!r} is not among its levels",
                hint=f"choose one of {', '.join(_level_name(v) for v in levels)}",
            )
        levels.remove(match[0])
        levels.insert(0, match[0])
    labels = labels or {}
    names = tuple(_level_name(v) for v in levels)
    return Factor(
        name=name,
        levels=tuple(levels),
        names=names,
        labels=tuple(str(labels.get(v, labels.get(n, n))) for v, n in zip(levels, names)),
    )


def model_matrix(
    formula: str | Formula,
    frame: pl.DataFrame,
    *,
    categorical: Sequence[str] = (),
    refs: Mapping[str, Any] | None = None,
    labels: Mapping[str, Mapping[Any, str]] | None = None,
    rows: np.ndarray | None = None,
) -> ModelMatrix:
    """The model matrix of ``formula`` on ``frame`` (treatment contrasts, R's column names).

    ``rows`` (bool) limits the rows whose levels define the factors and that can be used
    (a domain); ``labels`` maps a variable to ``{level: label}`` for readable term labels.
    The response is returned as float: numeric and Boolean as they are, a two-level factor as
    the indicator of its second level (R's binomial response: the first level is failure).

    >>> df = pl.DataFrame({"y": [1.0, 2, 3, 4, 5], "g": ["b", "a", "b", "c", None], "x": [1.0, 0, 2, 1, 3]})
    >>> mm = model_matrix("y ~ g * x", df)
    >>> mm.columns, mm.used.tolist()
    (('(Intercept)', 'gb', 'gc', 'x', 'gb:x', 'gc:x'), [True, True, True, True, False])
    """
    f = parse(formula) if isinstance(formula, str) else formula
    refs = {**f.refs, **dict(refs or {})}
    missing = [v for v in f.variables if v not in frame.columns]
    if missing:
        raise ArgumentError(
            f"formula: column {missing[0]!r} is not in the data",
            hint=f"check the spelling in {f.text!r}; columns: {', '.join(frame.columns[:30])}",
        )
    for name in list(categorical) + list(refs):
        if name not in f.variables[1:]:
            raise ArgumentError(
                f"categorical: {name!r} is not a term variable of {f.text!r}",
                hint=f"use one of {', '.join(f.variables[1:])}",
            )
    used = np.ones(frame.height, dtype=bool) if rows is None else np.asarray(rows, dtype=bool).copy()
    for v in f.variables:
        used &= ~_missing(frame.get_column(v))
    if not used.any():
        raise DataError(
            f"formula: no row has a value for every variable of {f.text!r}",
            hint="check the variables for missing values (rows with any missing value are dropped)",
        )
    factors: dict[str, Factor] = {}
    for v in f.variables[1:]:
        s = frame.get_column(v)
        if _is_factor_dtype(s.dtype) or v in categorical or v in f.factors or v in refs:
            factors[v] = _make_factor(v, s, used, refs.get(v), (labels or {}).get(v))
        elif not s.dtype.is_numeric():
            raise DataError(f"formula: column {v!r} has type {s.dtype}, neither numeric nor categorical",
                            hint=f"convert {v!r} to numbers or strings")
    coding = _coding(f, factors)
    proto = ModelMatrix(f, (), (), (), np.empty((0, 0)), np.empty(0), used, factors, coding)
    x, (columns, col_labels, assign), ok = _build(proto, frame, names=True)
    used &= ok
    y = _response(f.response, frame.get_column(f.response), used)
    return ModelMatrix(f, tuple(columns), tuple(col_labels), tuple(assign), x, y, used, factors, coding)


def _coding(f: Formula, factors: Mapping[str, Factor]) -> tuple[tuple[bool, ...], ...]:
    present = {frozenset()} if f.intercept else set()
    all_terms = {frozenset(t) for t in f.terms}
    out = []
    for t in f.terms:
        flags = []
        for v in t:
            rest = frozenset(t) - {v}
            contrast = v not in factors or rest in present or (rest and rest in all_terms)
            if not contrast and not rest:
                present.add(frozenset())  # the first factor without intercept takes all levels
            flags.append(bool(contrast))
        out.append(tuple(flags))
    return tuple(out)


def _build(mm: ModelMatrix, frame: pl.DataFrame, *, names: bool = False):
    n = frame.height
    ok = np.ones(n, dtype=bool)
    cols: list[np.ndarray] = []
    columns: list[str] = []
    col_labels: list[str] = []
    assign: list[int] = []
    if mm.formula.intercept:
        cols.append(np.ones(n))
        columns.append("(Intercept)")
        col_labels.append("(Intercept)")
        assign.append(0)
    for ti, (term, flags) in enumerate(zip(mm.formula.terms, mm.coding), start=1):
        parts: list[tuple[str, str, np.ndarray]] = [("", "", np.ones(n))]
        for v, contrast in zip(term, flags):
            s = frame.get_column(v)
            if v in mm.factors:
                fac = mm.factors[v]
                codes = fac.codes(s.cast(pl.String) if isinstance(s.dtype, (pl.Enum, pl.Categorical)) else s)
                ok &= codes >= 0
                pieces = [(f"{v}{fac.names[k]}", f"{v}: {fac.labels[k]}", (codes == k).astype(np.float64))
                          for k in range(1 if contrast else 0, len(fac.levels))]
            else:
                vals = s.cast(pl.Float64).to_numpy()
                ok &= np.isfinite(vals)
                pieces = [(v, v, np.nan_to_num(vals, nan=0.0, posinf=0.0, neginf=0.0))]
            # R: the first variable varies fastest
            parts = [(f"{a}:{b}" if a else b, f"{al} × {bl}" if al else bl, ca * cb) for b, bl, cb in pieces for a, al, ca in parts]
        for name, label, col in parts:
            cols.append(col)
            columns.append(name)
            col_labels.append(label)
            assign.append(ti)
    x = np.column_stack(cols) if cols else np.zeros((n, 0))
    x[~ok] = 0.0
    if names:
        return x, (columns, col_labels, assign), ok
    return x, None, ok


def _response(name: str, s: pl.Series, used: np.ndarray) -> np.ndarray:
    if s.dtype == pl.Boolean:
        y = s.cast(pl.Float64).fill_null(0.0).to_numpy()
    elif s.dtype.is_numeric():
        y = s.cast(pl.Float64).fill_null(math.nan).to_numpy()
    elif _is_factor_dtype(s.dtype):
        ordered = s.dtype.categories.to_list() if isinstance(s.dtype, pl.Enum) else None
        vals = s.cast(pl.String)
        levels = [lv for lv in (ordered or sorted(set(vals.filter(pl.Series(used)).to_list())))
                  if lv in set(vals.filter(pl.Series(used)).to_list())]
        if len(levels) != 2:
            raise DataError(
                f"formula: the response {name!r} has {len(levels)} levels ({', '.join(map(str, levels[:6]))}); "
                "a categorical response needs exactly 2",
                hint=f"recode {name!r} to two levels or to 0/1",
            )
        y = (vals == levels[1]).cast(pl.Float64).fill_null(0.0).to_numpy()
    else:
        raise DataError(f"formula: the response {name!r} has type {s.dtype}", hint=f"convert {name!r} to numbers")
    return np.where(used, np.nan_to_num(y, nan=0.0), 0.0)

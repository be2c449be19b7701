"""The config's expression language: parse, check against an allow-list, compile to polars.

Config expressions (``clean.derive[].expr``, ``clean.recodes[].when``, ``waves[].recodes[].when``,
``clean.checks[].expr``, ``clean.skips[].asked_if``, ``weight.base.factors[].expr``,
``weight.nonresponse.respondent``) are a small subset of SQL's scalar expressions. The text is
parsed by sqlglot into a syntax tree, every node of the tree is checked against the allow-list
below, and the tree is compiled node by node into a polars expression. No text is ever handed to
an SQL engine (polars SQL, DuckDB), so an expression cannot read a file or run a query: a
subquery, a table function (``read_csv``, ``read_parquet``, ...), ``*``, ``self``, a ``;`` or an
unknown function is a :class:`~pipeline.errors.ConfigError` naming the construct (issue 10, item 2).

Allowed: column names (``EDUC``, ``"my var"``), numbers, ``'text'``, ``TRUE``, ``FALSE``,
``NULL``; ``+ - * / %`` and unary ``-``; ``= <> != < <= > >=``; ``AND``, ``OR``, ``NOT``;
``CASE WHEN c THEN v [WHEN ...] [ELSE v] END`` and ``CASE x WHEN a THEN v ... END``;
``x [NOT] IN (value, ...)`` over literal values; ``x [NOT] BETWEEN a AND b``;
``x IS [NOT] NULL``; parentheses; ``CAST(x AS type)`` to a numeric type of :data:`CAST_TYPES`;
and the functions of :data:`FUNCTIONS`.

Semantics are those polars SQL gave these expressions before, for the allowed subset:

- SQL's three-valued logic: a comparison, ``IN`` or ``BETWEEN`` with a missing (NULL) value is
  missing; ``FALSE AND NULL`` is false and ``TRUE OR NULL`` true; ``CASE`` takes a branch only
  where its condition is true, so a missing condition falls through to ``ELSE``, and a ``CASE``
  without ``ELSE`` is missing there. ``x IN (1, NULL)`` is true or missing, never false.
- ``/`` is true division (``7 / 2`` is 3.5), also for integers; dividing by zero gives
  infinity (NaN for ``0 / 0``), as polars does.
- ``%`` is the remainder with the sign of the dividend (``-7 % 2`` is -1, SQL's ``MOD``); an
  integer remainder by zero is missing, a float one NaN.
- A number with a decimal point or an exponent is a 64-bit float (polars SQL read ``0.5`` as a
  Decimal: the values are the same, the type is now Float64); an integer is polars' integer
  literal (Int32 when it fits).
- ``LEAST``/``GREATEST`` ignore missing arguments (missing only when all are); ``COALESCE`` is
  the first argument that is not missing; ``ROUND(x[, n])`` rounds halves to even, to ``n``
  (a non-negative whole number) decimals; ``LN``, ``LOG10``, ``LOG2`` are logarithms (NaN for a
  negative argument); ``POWER(x, y)`` is ``x`` to the power ``y``; ``CAST`` fails on a value it
  cannot convert. ``LOG`` is refused: its base and argument order differ between SQL dialects.
- ``AND``, ``OR``, ``NOT`` and ``WHEN`` take conditions; a number there counts as true when it
  is not zero (polars' cast to Boolean).
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl


# --------------------------------------------------------------------------- the allow-list

#: The functions an expression may call, as written (aliases included) -> the sqlglot node class
#: each parses to. A name is checked as written (sqlglot also reads NVL, IFNULL as COALESCE and
#: LOG10(x) as LOG(10, x)); the node classes are checked by the tree walk.
FUNCTIONS: dict[str, str] = {
    "ABS": "Abs",
    "CEIL": "Ceil",
    "CEILING": "Ceil",
    "COALESCE": "Coalesce",
    "EXP": "Exp",
    "FLOOR": "Floor",
    "GREATEST": "Greatest",
    "LEAST": "Least",
    "LN": "Ln",
    "LOG10": "Log",
    "LOG2": "Log",
    "POW": "Pow",
    "POWER": "Pow",
    "ROUND": "Round",
    "SQRT": "Sqrt",
}

#: ``CAST(x AS <type>)``: the SQL type names and the polars type each gives (as polars SQL).
#: sqlglot reads ``REAL`` as ``FLOAT`` and ``INTEGER`` as ``INT``.
CAST_TYPES: dict[str, str] = {
    "DOUBLE": "Float64",
    "FLOAT": "Float64",
    "BIGINT": "Int64",
    "INT": "Int32",
    "SMALLINT": "Int16",
    "TINYINT": "Int8",
}

#: Words that may stand before "(" without being a function call.
_SYNTAX_WORDS = frozenset({"AND", "OR", "NOT", "IN", "CASE", "WHEN", "THEN", "ELSE", "BETWEEN", "CAST", "IS", "AS"})

#: Functions refused by name with a reason (sqlglot reads them as an allowed node).
_REFUSED_FUNCTIONS = {
    "LOG": "LOG's base and argument order differ between SQL dialects: write LN(x), LOG10(x) or LOG2(x)",
}

ALLOWED = (
    "column names, numbers, 'text', TRUE, FALSE, NULL; + - * / % and unary -; = <> != < <= > >=; "
    "AND, OR, NOT; CASE [x] WHEN ... THEN ... [ELSE ...] END; x [NOT] IN (value, ...); "
    "x [NOT] BETWEEN a AND b; x IS [NOT] NULL; parentheses; "
    f"CAST(x AS {' | '.join(['DOUBLE', 'FLOAT', 'REAL', 'BIGINT', 'INTEGER', 'INT', 'SMALLINT', 'TINYINT'])}); "
    f"the functions {', '.join(sorted(FUNCTIONS))}"
)
"""The allow-list in words, for error messages and the README."""


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class Expression:
    """A checked config expression: its text, the columns it reads, and its compiled form.

    Build one with :func:`parse`; :meth:`to_polars` gives the polars expression.
    """

    text: str
    columns: tuple[str, ...]
    _tree: Any = field(repr=False, compare=False)

    def to_polars(self) -> pl.Expr:
        """The polars expression computing this expression on a frame."""
        return _compile(self._tree)


def parse(text: str, *, key: str = "expression") -> Expression:
    """Parse and check one config expression.

    Parameters
    ----------
    text : str
        The expression as written in the config, e.g. ``"CASE WHEN AGE < 30 THEN 1 END"``.
    key : str
        The config key it comes from (``clean.derive[0].expr``), for the error message.

    Raises
    ------
    ConfigError
        When the text is not a single expression of the allowed language: the message names
        the key, the expression, the offending constructs and the allow-list.

    Examples
    --------
    >>> parse("LEAST(COALESCE(HH_ADULTS, 1), 4)").columns
    ('HH_ADULTS',)
    """
    tree, problem = _analyse(text)
    if problem is not None:
        raise ConfigError(f"{key}: {problem}", hint=_hint(problem))
    return Expression(text=text, columns=_columns(tree), _tree=tree)


def problem(text: str, *, key: str) -> str | None:
    """The problem line for ``text`` at ``key`` (``"key: ..."``), or None when it is allowed."""
    found = _analyse(text)[1]
    return None if found is None else f"{key}: {found}"


def to_polars(text: str, *, key: str = "expression") -> pl.Expr:
    """Parse, check and compile ``text`` into a polars expression (see :func:`parse`)."""
    return parse(text, key=key).to_polars()


def columns(text: str, *, key: str = "expression") -> tuple[str, ...]:
    """The column names ``text`` reads, in order of first appearance."""
    return parse(text, key=key).columns


# --------------------------------------------------------------------------- parse and check


@functools.lru_cache(maxsize=512)
def _analyse(text: str) -> tuple[Any, str | None]:
    """(tree, None) for an allowed expression, else (None, what is wrong)."""
    import sqlglot
    from sqlglot.errors import ParseError, TokenError
    from sqlglot.tokens import TokenType

    if not isinstance(text, str) or not text.strip():
        return None, f"the expression {text!r} is empty; write a condition or a value, e.g. 'AGE >= 18'"
    try:
        tokens = sqlglot.tokenize(text)
    except TokenError as exc:
        return None, f"cannot parse the expression {text!r}: {_first_line(str(exc))}"
    constructs: list[str] = []
    if any(tok.token_type == TokenType.SEMICOLON for tok in tokens):
        constructs.append("';' (one expression only, not statements)")
    for name in _called_names(tokens, TokenType):
        upper = name.upper()
        if upper in _REFUSED_FUNCTIONS:
            constructs.append(f"the function {name}() ({_REFUSED_FUNCTIONS[upper]})")
        elif upper not in FUNCTIONS:
            close = difflib.get_close_matches(upper, list(FUNCTIONS), n=1, cutoff=0.75)
            constructs.append(f"the function {name}()" + (f" (did you mean {close[0]}?)" if close else ""))
    try:
        trees = sqlglot.parse(text)
    except ParseError as exc:
        if constructs:
            return None, _refusal(text, constructs)
        return None, f"cannot parse the expression {text!r}: {_parse_error(exc)}"
    except RecursionError:
        return None, f"cannot parse the expression {text!r}: it is nested too deeply"
    trees = [t for t in trees if t is not None]
    if not trees:
        return None, f"the expression {text!r} is empty; write a condition or a value, e.g. 'AGE >= 18'"
    try:
        for tree in trees:
            _check(tree, constructs)
        if not constructs:
            _compile(trees[0])  # so that a config that loads compiles in its stages
    except RecursionError:
        return None, f"cannot parse the expression {text!r}: it is nested too deeply"
    except Exception as exc:  # polars refusing a literal (InvalidOperationError for 10**40, ...)
        return None, f"cannot compile the expression {text!r}: {_first_line(str(exc))}"
    constructs = _unique(constructs)
    if constructs:
        return None, _refusal(text, constructs)
    return trees[0], None


def _unique(constructs: list[str]) -> list[str]:
    """The constructs without repeats (a function is named by the token scan and the tree walk)."""
    seen: dict[str, str] = {}
    for c in constructs:
        m = re.match(r"the function (\w+)\(\)", c)
        seen.setdefault(m.group(1).lower() if m else c.lower(), c)
    return list(seen.values())


def _refusal(text: str, constructs: list[str]) -> str:
    return (
        f"the expression {text!r} uses {'; '.join(constructs)}, which config expressions "
        f"do not allow (they compute values from the row's columns; they cannot read files or run queries). "
        f"Allowed: {ALLOWED}"
    )


def _hint(problem_text: str) -> str | None:
    if problem_text.startswith("cannot parse"):
        return "write an SQL condition or value, e.g. \"CASE WHEN AGE < 30 THEN 1 ELSE 2 END\""
    return None


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "invalid syntax"


def _parse_error(exc: Exception) -> str:
    """sqlglot's first error in the user's terms (no terminal colour codes, no class names)."""
    errors = getattr(exc, "errors", None) or []
    if not errors:
        return re.sub(r"\x1b\[[0-9;]*m", "", _first_line(str(exc)))
    err = errors[0]
    description = str(err.get("description") or "invalid syntax")
    if "Required keyword" in description or "<class" in description:
        description = "an operand is missing"
    near = f" at {err['highlight']!r}" if err.get("highlight") else ""
    where = f" (line {err['line']}, column {err['col']})" if err.get("line") else ""
    return f"{description}{near}{where}"


def _called_names(tokens: list[Any], token_type: Any) -> list[str]:
    """The names written right before '(' that are not syntax words: the functions called."""
    out = []
    for i, (tok, nxt) in enumerate(zip(tokens, tokens[1:])):
        if nxt.token_type != token_type.L_PAREN or (i and tokens[i - 1].text.upper() == "AS"):
            continue  # not a call, or a CAST's type: DECIMAL(10, 2)
        word = tok.text
        if tok.token_type in (token_type.VAR, token_type.IDENTIFIER) or re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", word):
            if word.upper() not in _SYNTAX_WORDS:
                out.append(word)
    return out


def _is_expression(value: Any) -> bool:
    from sqlglot import exp

    return isinstance(value, exp.Expression) or (isinstance(value, list) and any(isinstance(v, exp.Expression) for v in value))


def _check(node: Any, constructs: list[str]) -> None:
    """Walk ``node``; append a description of every construct outside the allow-list."""
    from sqlglot import exp

    kind = type(node)
    children = _CHILDREN.get(kind.__name__) if getattr(exp, kind.__name__, None) is kind else None
    if children is None:
        constructs.append(_describe(node))
        return
    for key, value in node.args.items():
        if value is None or (isinstance(value, list) and not value) or not _is_expression(value):
            continue
        if key not in children:
            items = value if isinstance(value, list) else [value]
            constructs.extend(_describe(v, parent=node, key=key) for v in items if isinstance(v, exp.Expression))
    # node-specific rules
    if kind is exp.Column:
        if node.args.get("table") is not None:
            return  # reported as a disallowed 'table' part above
        ident = node.this
        if not isinstance(ident, exp.Identifier):
            constructs.append(_describe(node))
            return
        if not ident.args.get("quoted") and ident.name.lower() == "self":
            constructs.append("self (polars' name for the whole table, not a column)")
        return
    if kind is exp.Literal:
        if not node.is_string and _number(node.this) is None:
            constructs.append(f"the number {node.this}")
        return
    if kind is exp.Is and not isinstance(node.expression, exp.Null):
        constructs.append(f"IS {_snippet(node.expression)} (only IS NULL and IS NOT NULL)")
        return
    if kind is exp.In:
        items = node.expressions
        if not items and node.args.get("query") is None and node.args.get("field") is None:
            constructs.append("IN with an empty list")
        for item in items:
            if not _is_literal(item):
                constructs.append(f"IN with a list item that is not a value ({_snippet(item)})")
        _check(node.this, constructs)
        return
    if kind is exp.Cast:
        to = node.args.get("to")
        name = _type_name(to)
        if name not in CAST_TYPES or (to is not None and to.expressions):
            constructs.append(f"CAST to {_snippet(to) if to is not None else '?'} (only to {', '.join(CAST_TYPES)})")
        _check(node.this, constructs)
        return
    if kind is exp.Case:
        for branch in node.args.get("ifs") or []:
            if type(branch) is not exp.If or branch.args.get("false") is not None:
                constructs.append(_describe(branch))
                continue
            _check(branch.this, constructs)
            _check(branch.args.get("true"), constructs)
        for key in ("this", "default"):
            if node.args.get(key) is not None:
                _check(node.args[key], constructs)
        return
    if kind is exp.Round and node.args.get("decimals") is not None:
        decimals = node.args["decimals"]
        if not (isinstance(decimals, exp.Literal) and not decimals.is_string and re.fullmatch(r"\d+", decimals.this)):
            constructs.append(f"ROUND with {_snippet(decimals)} decimals (a whole number >= 0, e.g. ROUND(x, 1))")
    if kind is exp.Log:
        base = node.this
        if node.expression is None or _literal_value(base) not in (2, 10):
            constructs.append(f"the function LOG() ({_REFUSED_FUNCTIONS['LOG']})")
            return
        _check(node.expression, constructs)
        return
    for key in children:
        value = node.args.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, exp.Expression):
                _check(item, constructs)


#: Allowed sqlglot node classes (by name) -> the argument keys holding their operands.
#: Case, In, Cast, Log and Column are checked by hand in :func:`_check`.
_BINARY = ("this", "expression")
_CHILDREN: dict[str, tuple[str, ...]] = {
    "Column": ("this",),
    "Literal": (),
    "Null": (),
    "Boolean": (),
    "Paren": ("this",),
    "Neg": ("this",),
    "Not": ("this",),
    "And": _BINARY,
    "Or": _BINARY,
    "EQ": _BINARY,
    "NEQ": _BINARY,
    "GT": _BINARY,
    "GTE": _BINARY,
    "LT": _BINARY,
    "LTE": _BINARY,
    "Add": _BINARY,
    "Sub": _BINARY,
    "Mul": _BINARY,
    "Div": _BINARY,
    "Mod": _BINARY,
    "Is": _BINARY,
    "In": ("this", "expressions"),
    "Between": ("this", "low", "high"),
    "Case": ("this", "ifs", "default"),
    "Cast": ("this", "to"),
    "Abs": ("this",),
    "Ceil": ("this",),
    "Floor": ("this",),
    "Exp": ("this",),
    "Sqrt": ("this",),
    "Ln": ("this",),
    "Log": ("this", "expression"),
    "Pow": ("this", "expression"),
    "Round": ("this", "decimals"),
    "Least": ("this", "expressions"),
    "Greatest": ("this", "expressions"),
    "Coalesce": ("this", "expressions"),
}


def _describe(node: Any, *, parent: Any = None, key: str | None = None) -> str:
    """Name a refused construct in the user's terms (never any data: nothing was run)."""
    from sqlglot import exp

    if isinstance(parent, exp.In) and key == "field":
        return f"IN without a parenthesised list of values ({_snippet(parent)})"
    if isinstance(node, (exp.Select, exp.Subquery, exp.Union, exp.Exists)) or isinstance(node, getattr(exp, "Query", ())):
        return "a subquery (SELECT ...)"
    if isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star)):
        return "* (all columns)"
    if isinstance(parent, exp.Column):
        return f"the qualified column {_snippet(parent)} (write the column name alone)"
    if isinstance(node, exp.Anonymous):
        return f"the function {node.name}()"
    if isinstance(node, exp.If):
        return "the function IF() (write CASE WHEN ... THEN ... ELSE ... END)"
    if isinstance(node, exp.Func) and not isinstance(node, (exp.Case, exp.Cast)):
        return f"the function {node.sql_name()}()" + (f" with {key}" if parent is not None and key else "")
    if parent is not None and key:
        return f"{_snippet(node)} as the {key} of {_snippet(parent)}"
    return _snippet(node)


def _snippet(node: Any) -> str:
    try:
        text = node.sql()
    except Exception:  # sqlglot cannot always print a fragment alone; its class name will do
        text = type(node).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _number(text: str) -> int | float | None:
    if re.fullmatch(r"[0-9]+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return None


def _is_literal(node: Any) -> bool:
    from sqlglot import exp

    if isinstance(node, exp.Paren):
        return _is_literal(node.this)
    if isinstance(node, exp.Neg):
        return isinstance(node.this, exp.Literal) and not node.this.is_string and _number(node.this.this) is not None
    if isinstance(node, exp.Literal):
        return node.is_string or _number(node.this) is not None
    return isinstance(node, (exp.Null, exp.Boolean))


def _literal_value(node: Any) -> Any:
    from sqlglot import exp

    if isinstance(node, exp.Literal) and not node.is_string:
        return _number(node.this)
    return None


def _type_name(to: Any) -> str | None:
    from sqlglot import exp

    if not isinstance(to, exp.DataType):
        return None
    kind = to.this
    return getattr(kind, "name", None) or getattr(kind, "value", None)


def _columns(tree: Any) -> tuple[str, ...]:
    from sqlglot import exp

    return tuple(dict.fromkeys(col.name for col in tree.find_all(exp.Column, bfs=False)))


# --------------------------------------------------------------------------- compile


def _compile(node: Any) -> pl.Expr:
    """The polars expression of a checked tree (see the module docstring for the semantics)."""
    import polars as pl
    from sqlglot import exp

    rec = _compile
    tables = _tables()
    kind = type(node)
    if kind is exp.Column:
        return pl.col(node.name)
    if kind is exp.Literal:
        return pl.lit(node.this) if node.is_string else pl.lit(_number(node.this))
    if kind is exp.Null:
        return pl.lit(None)
    if kind is exp.Boolean:
        return pl.lit(bool(node.this))
    if kind is exp.Paren:
        return rec(node.this)
    if kind is exp.Neg:
        inner = node.this
        if isinstance(inner, exp.Literal) and not inner.is_string:
            return pl.lit(-_number(inner.this))  # type: ignore[operator]
        return pl.lit(0) - rec(inner)  # as polars SQL: 0 - x
    if kind is exp.Not:
        return _condition(rec(node.this)).not_()
    if kind in tables["logical"]:
        return tables["logical"][kind](_condition(rec(node.this)), _condition(rec(node.expression)))
    if kind in tables["operators"]:
        return tables["operators"][kind](rec(node.this), rec(node.expression))
    if kind is exp.Mod:
        # SQL's remainder takes the dividend's sign (-7 % 2 = -1); polars' % is Python's modulo.
        left, right = rec(node.this), rec(node.expression)
        return left.sign() * (left.abs() % right.abs())
    if kind is exp.Is:
        return rec(node.this).is_null()
    if kind is exp.In:
        subject = rec(node.this)
        # an OR (Kleene) of equalities is SQL's IN exactly: true on a match, missing when the
        # subject or a list item is missing and nothing matched, false otherwise; and it compares
        # an integer column with float items as '=' does
        matches = [subject == rec(item) for item in node.expressions]
        return matches[0] if len(matches) == 1 else pl.any_horizontal(matches)
    if kind is exp.Between:
        subject = rec(node.this)
        return (subject >= rec(node.args["low"])) & (subject <= rec(node.args["high"]))
    if kind is exp.Case:
        subject = rec(node.this) if node.args.get("this") is not None else None
        out = rec(node.args["default"]) if node.args.get("default") is not None else pl.lit(None)
        for branch in reversed(node.args["ifs"]):
            cond = rec(branch.this)
            cond = (subject == cond) if subject is not None else _condition(cond)
            out = pl.when(cond).then(rec(branch.args["true"])).otherwise(out)
        return out
    if kind is exp.Cast:
        return rec(node.this).cast(getattr(pl, CAST_TYPES[_type_name(node.args["to"])]), strict=True)
    if kind is exp.Log:
        return rec(node.expression).log(float(_literal_value(node.this)))
    if kind is exp.Round:
        decimals = int(node.args["decimals"].this) if node.args.get("decimals") is not None else 0
        return rec(node.this).round(decimals, mode="half_to_even")
    if kind is exp.Pow:
        return rec(node.this).pow(rec(node.expression))
    if kind in tables["unary"]:
        return tables["unary"][kind](rec(node.this))
    if kind in tables["variadic"]:
        args = [rec(node.this), *(rec(e) for e in node.expressions)]
        return tables["variadic"][kind](args)
    raise ConfigError(f"cannot compile {type(node).__name__} in a config expression")  # unreachable after _check


def _condition(expr: pl.Expr) -> pl.Expr:
    """A condition operand as Boolean (polars SQL's strict cast: a number is true unless 0)."""
    import polars as pl

    return expr.cast(pl.Boolean, strict=True)


@functools.cache
def _tables() -> dict[str, dict[Any, Any]]:
    """Dispatch tables keyed by sqlglot node classes (built on first use: heavy imports)."""
    import polars as pl
    from sqlglot import exp

    return {
        "logical": {exp.And: operator.and_, exp.Or: operator.or_},
        "operators": {
            exp.EQ: operator.eq,
            exp.NEQ: operator.ne,
            exp.GT: operator.gt,
            exp.GTE: operator.ge,
            exp.LT: operator.lt,
            exp.LTE: operator.le,
            exp.Add: operator.add,
            exp.Sub: operator.sub,
            exp.Mul: operator.mul,
            exp.Div: operator.truediv,  # true division, as polars SQL: 7 / 2 = 3.5
        },
        "unary": {
            exp.Abs: lambda x: x.abs(),
            exp.Ceil: lambda x: x.ceil(),
            exp.Floor: lambda x: x.floor(),
            exp.Exp: lambda x: x.exp(),
            exp.Sqrt: lambda x: x.sqrt(),
            exp.Ln: lambda x: x.log(),
        },
        "variadic": {exp.Least: pl.min_horizontal, exp.Greatest: pl.max_horizontal, exp.Coalesce: pl.coalesce},
    }

"""Publication tables as data: toplines, banners and trend tables built from ``estimates.csv``
(crosstabs: :mod:`pipeline.exporters.crosstabs`).

A :class:`Table` is what every format renders (Markdown, HTML and LaTeX through great_tables,
Excel, tidy CSV): columns, rows of :class:`Cell`, row groups (one per question), notes and
footnotes. Each numeric cell remembers the row of ``estimates.csv`` it comes from (``source``,
the row's 0-based position) and which field (``estimate``, ``n``, ``ci``, ``moe``,
``difference``): every number in every table is a rounding of that row.

Flags (:mod:`pipeline.flags`) are applied here: a suppressed estimate shows
``*`` (its percent, interval and margin of error are withheld; its unweighted n is shown), a
flagged one carries its footnote symbol; the footnotes explain every flag a table shows. In
toplines, a margin the weighting calibrated to its target (no sampling variance:
:func:`pipeline.flags.is_calibrated`) carries ``¶`` and shows no interval or margin of error,
with a footnote saying why. The tables read estimates through :mod:`pipeline.exporters.estimates`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pipeline.exporters.estimates import is_change, prepare_estimates, read_estimates
from pipeline.exporters.values import NOT_ESTIMATED, count_text, percent_text, points_text, value_format
from pipeline.flags import is_calibrated, is_suppressed, parse_flag

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import BannerSpec, TablesConfig, ToplineSpec, TrendSpec
    from pipeline.io import Codebook

__all__ = [
    "Cell",
    "Column",
    "Row",
    "Table",
    "banner_table",
    "is_calibrated",
    "percent_text",
    "points_text",
    "prepare_estimates",
    "read_estimates",
    "topline_table",
    "trend_table",
]

SUPPRESSED = "*"
#: the mark of an estimate calibrated to the weighting targets (toplines)
CALIBRATED = "¶"
CALIBRATED_NOTE = (
    f"{CALIBRATED} Calibrated to the weighting targets: the weighted share equals its population target by "
    "construction (design-based standard error 0), so no confidence interval or margin of error is shown."
)

Field_ = Literal["estimate", "n", "ci", "moe", "difference"]


@dataclass(frozen=True)
class Cell:
    """One table cell.

    Attributes
    ----------
    text : str
        What the table shows (rounded, with marks and significance letters).
    value : float or None
        The number shown, unrounded: a fraction for percents, a count for n, the half-width
        for a margin of error (None for labels and intervals).
    source : int or None
        0-based row of ``estimates.csv`` the number comes from.
    field : str or None
        ``estimate``, ``n``, ``ci``, ``moe`` or ``difference``.
    flag : str
        The source row's flag.
    letters : str
        Significance letters (banners and trend tables).
    calibrated : bool
        The source row is a margin calibrated to the weighting targets (:func:`is_calibrated`):
        marked, with no interval or margin of error.
    """

    text: str
    value: float | None = None
    source: int | None = None
    field: str | None = None
    flag: str = ""
    letters: str = ""
    calibrated: bool = False

    @property
    def suppressed(self) -> bool:
        return self.text == SUPPRESSED


@dataclass(frozen=True)
class Column:
    """A column: ``key`` (stable id), ``label``, spanner ``group``, significance ``letter``."""

    key: str
    label: str
    group: str | None = None
    letter: str | None = None
    numeric: bool = True
    kind: Literal["label", "percent", "count", "interval", "points"] = "percent"


@dataclass(frozen=True)
class Row:
    """A row: its cells (one per column), its row group (the question) and its kind."""

    cells: tuple[Cell, ...]
    group: str = ""
    kind: Literal["estimate", "base"] = "estimate"


@dataclass(frozen=True)
class Table:
    """A publication table, ready for any format."""

    id: str
    kind: Literal["topline", "banner", "trend", "crosstab", "model"]
    title: str
    subtitle: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    groups: Mapping[str, str] = field(default_factory=dict)
    """Row group label -> its description (question wording and base)."""
    notes: tuple[str, ...] = ()
    footnotes: tuple[str, ...] = ()
    decimals: int = 0

    @property
    def stub(self) -> Column:
        return self.columns[0]

    def column_groups(self) -> list[tuple[str | None, list[Column]]]:
        """Consecutive columns sharing a spanner group."""
        out: list[tuple[str | None, list[Column]]] = []
        for c in self.columns:
            if out and out[-1][0] == c.group:
                out[-1][1].append(c)
            else:
                out.append((c.group, [c]))
        return out

    def row_groups(self) -> list[tuple[str, list[Row]]]:
        out: list[tuple[str, list[Row]]] = []
        for r in self.rows:
            if out and out[-1][0] == r.group:
                out[-1][1].append(r)
            else:
                out.append((r.group, [r]))
        return out


# ------------------------------------------------------------------------------ formatting


def margin_of_error(row: Mapping[str, Any]) -> float:
    """Half the width of the row's confidence interval (the tables' margin of error)."""
    return (row["ci_high"] - row["ci_low"]) / 2


def marks(flag: str) -> str:
    """The footnote symbols of a shown estimate's review flags."""
    return "".join(dict.fromkeys(rule.symbol for rule, _ in parse_flag(flag) if rule.action == "review"))


def footnotes(flags: Iterable[str]) -> tuple[str, ...]:
    """One footnote per kind of mark the flags put in a table, explaining every rule."""
    suppress: dict[str, None] = {}
    review: dict[str, list[str]] = {}
    for flag in flags:
        for rule, threshold in parse_flag(flag):
            text = rule.describe(threshold)
            if rule.action == "suppress":
                suppress[text] = None
            else:
                review.setdefault(rule.symbol, [])
                if text not in review[rule.symbol]:
                    review[rule.symbol].append(text)
    out = []
    if suppress:
        out.append(f"{SUPPRESSED} Suppressed: " + "; ".join(suppress) + ".")
    for symbol, texts in review.items():
        out.append(f"{symbol} " + "; ".join(t[0].upper() + t[1:] for t in texts) + ".")
    return tuple(out)


def _percent_cell(row: Mapping[str, Any], decimals: int, letters: str = "") -> Cell:
    flag = row.get("flag") or ""
    if is_suppressed(flag):
        return Cell(SUPPRESSED, None, row["_row"], "estimate", flag)
    text = value_format(row).text(row["estimate"], decimals) + marks(flag) + (f" {letters}" if letters else "")
    return Cell(text, row["estimate"], row["_row"], "estimate", flag, letters)


def _count_cell(row: Mapping[str, Any]) -> Cell:
    return Cell(count_text(row["n"]), float(row["n"]), row["_row"], "n", row.get("flag") or "")


def _interval_cell(row: Mapping[str, Any], decimals: int) -> Cell:
    flag = row.get("flag") or ""
    if is_suppressed(flag):
        return Cell(SUPPRESSED, None, row["_row"], "ci", flag)
    return Cell(value_format(row).interval(row["ci_low"], row["ci_high"], decimals), None, row["_row"], "ci", flag)


def _moe_cell(row: Mapping[str, Any], decimals: int) -> Cell:
    flag = row.get("flag") or ""
    if is_suppressed(flag):
        return Cell(SUPPRESSED, None, row["_row"], "moe", flag)
    moe = margin_of_error(row)
    value = moe if moe == moe else None  # an interval with an open end has no margin of error
    return Cell(value_format(row).margin(moe, decimals), value, row["_row"], "moe", flag)


def _formats(est: pl.DataFrame) -> list[Any]:
    """The value formats of a table's rows, one per statistic (a difference per statistic compared)."""
    keys = [c for c in ("statistic", "difference_of") if c in est.columns]
    if "statistic" not in keys:
        return [value_format({})]
    rows = est.select(keys).unique(maintain_order=True).iter_rows(named=True)
    return [value_format(r) for r in rows if r["statistic"] is not None] or [value_format({})]


def _unit(est: pl.DataFrame) -> str:
    """What a table's values are (``percent``), from the statistics of its rows (:data:`VALUE_FORMATS`)."""
    return ", ".join(dict.fromkeys(f.unit for f in _formats(est)))


def _header(est: pl.DataFrame) -> str:
    """The value column's heading: ``%`` for shares, ``mean``, ``number``, ... (``estimate`` when mixed)."""
    headers = list(dict.fromkeys(f.header for f in _formats(est)))
    return headers[0] if len(headers) == 1 else "estimate"


def _label(text: str) -> Cell:
    return Cell(text)


# ------------------------------------------------------------------------------ shared pieces


def variable_label(name: str, codebook: Codebook | None, labels: Mapping[str, str]) -> str:
    """A domain variable's name in tables: ``tables.labels``, else its codebook label, else the name."""
    if name in labels:
        return labels[name]
    if codebook is not None and name in codebook and codebook.get(name).label:
        return str(codebook.get(name).label)
    return name


def by_label(by: str, codebook: Codebook | None, labels: Mapping[str, str]) -> str:
    if not by:
        return "All"
    return " × ".join(variable_label(b, codebook, labels) for b in by.split("*"))


def domain_label(domain: str) -> str:
    return domain.replace("*", ", ")


def _select(est: pl.DataFrame, ids: Sequence[str]) -> list[str]:
    present = est.get_column("estimate_id").unique(maintain_order=True).to_list()
    return [i for i in ids if i in present] if ids else present


def _question(rows: pl.DataFrame, codebook: Codebook | None) -> tuple[str, str]:
    """(row group label, description: wording and base) of one estimate's rows."""
    first = rows.row(0, named=True)
    title = first.get("title") or first["estimate_id"]
    wording = None
    if codebook is not None and first["variable"] in codebook:
        wording = codebook.get(first["variable"]).label
    base = first.get("denominator")
    base_text = {
        "all": "all respondents asked, don't know and refused included",
        "valid": "respondents who gave an answer (don't know and refused left out)",
    }.get(base or "", "")
    missing = missing_labels(codebook, first["variable"])
    if base_text and missing is not None:  # the study's own words for its missing codes ("No lab result")
        base_text = ("all respondents asked, " + (f"{missing} included" if missing else "every answer included") if base == "all"
                     else "respondents who gave an answer" + (f" ({missing} left out)" if missing else ""))
    several = rows.get_column("level").n_unique() > 1
    fmt = value_format(first)
    if fmt.statistic == "proportion":
        share = "Shares of each answer" if several else f"Share answering “{first['level']}”"
    elif first.get("level") and fmt.statistic == "total":
        share = f"{fmt.description} answering “{first['level']}”"
    elif fmt.statistic == "difference" and first.get("difference_a"):
        sides = "“" + str(first["difference_a"]) + "” minus “" + str(first["difference_b"]) + "”"
        share = fmt.description.replace("(a minus b)", sides)
        if rows.height == 1 and first.get("p_value") is not None:
            share += f", {p_value_text(first['p_value'])}"
    else:
        share = fmt.description
    parts = [f"{share} (variable {first['variable']}" + (f"; base: {base_text})" if base_text else ")") + "."]
    if wording and wording != title:
        parts.insert(0, f"“{wording}”")
    return str(title), " ".join(parts)


def p_value_text(p: float) -> str:
    """``p = 0.03``, ``p < 0.001``: a p-value as tables print it.

    >>> p_value_text(0.0312), p_value_text(3.8e-16)
    ('p = 0.031', 'p < 0.001')
    """
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def missing_labels(codebook: Codebook | None, variable: str) -> str | None:
    """The labels of a variable's missing-value codes, as a base text names them (``Don't know
    and Refused``; ``No lab result``); empty when it has none; None without its codebook entry.

    >>> from pipeline.io import Codebook, VariableInfo
    >>> cb = Codebook(variables={"Q": VariableInfo("Q", value_labels={1: "Yes", 8: "Don't know", 9: "Refused"}, missing_values=(8, 9))})
    >>> missing_labels(cb, "Q"), missing_labels(cb, "X")
    ("don't know and refused", None)
    """
    if codebook is None or variable not in codebook:
        return None
    info = codebook.get(variable)
    names = list(dict.fromkeys(_in_sentence(codebook.label_of(variable, c)) for c in sorted(info.missing_values, key=str)))
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 2 else " and ".join(names)


def _in_sentence(label: str) -> str:
    """A label inside a sentence: its first letter lower case, unless it starts an acronym (``NA``)."""
    return label[:1].lower() + label[1:] if label[:2] != label[:2].upper() else label


def _unique(group: str, est_id: str, groups: Mapping[str, str]) -> str:
    """A row group label not used yet in the table (two estimates may share a title)."""
    return f"{group} ({est_id})" if group in groups else group


def standard_notes(est: pl.DataFrame, *, notice: str | None, extra: Sequence[str] = ()) -> tuple[str, ...]:
    """Notes every table carries: weighting, the interval method, the data notice."""
    methods = ", ".join(est.get_column("ci_method").unique(maintain_order=True).to_list()) if est.height else "logit"
    levels = ", ".join(f"{100 * c:g}%" for c in est.get_column("conf_level").unique(maintain_order=True).to_list()) if est.height else "95%"
    shares_only = "statistic" not in est.columns or est.get_column("statistic").drop_nulls().is_in(["proportion"]).all()
    notes = [
        "Weighted percentages; n is the unweighted number of respondents in the base." if shares_only else
        "Weighted estimates (shares in percent, means, numbers, ratios and quantiles in the variable's unit); n is the unweighted number of respondents in the base.",
        f"{levels} confidence intervals ({methods} method) from design-based standard errors; "
        + ("margin of error (±): half the width of the confidence interval, in percentage points." if shares_only else
           "margin of error (±): half the width of the confidence interval (percentage points for shares)."),
    ]
    notes += [n for n in extra if n]
    if notice:
        notes.append(notice)
    return tuple(notes)


# ------------------------------------------------------------------------------ topline


def topline_table(
    estimates: pl.DataFrame,
    spec: ToplineSpec,
    tables: TablesConfig,
    *,
    codebook: Codebook | None = None,
    title: str = "",
    wave: str = "",
    notice: str | None = None,
) -> Table:
    """A topline: per question, each answer's weighted percent, unweighted n, CI and margin of error.

    Rows are the whole sample first, then each domain (as estimated, or as ``spec.by`` limits).

    Examples
    --------
    >>> import polars as pl
    >>> from pipeline.config import TablesConfig, ToplineSpec
    >>> est = pl.DataFrame({"wave": ["1"], "estimate_id": ["q"], "statistic": ["proportion"], "variable": ["Q"],
    ...     "level": ["Yes"], "by": [""], "domain": ["All"], "n": [1998], "estimate": [0.4449], "se": [0.018],
    ...     "ci_low": [0.41], "ci_high": [0.48], "ci_method": ["logit"], "conf_level": [0.95], "df": [1994.0],
    ...     "deff": [2.9], "flag": [""], "title": ["Less likely to contact police"]})
    >>> t = topline_table(est, ToplineSpec(id="topline"), TablesConfig())
    >>> [c.label for c in t.columns]
    ['group', 'domain', 'n', '%', '95% CI', '±']
    """
    import polars as pl

    est = prepare_estimates(estimates)
    decimals = spec.decimals if spec.decimals is not None else tables.decimals
    ids = _select(est, spec.estimates)
    est = est.filter(pl.col("estimate_id").is_in(ids))
    if spec.by is not None:
        est = est.filter(pl.col("by").is_in(["*".join(b) for b in spec.by]))
    several = est.group_by("estimate_id", "by", "domain").len().get_column("len").max() or 0
    several = several > 1
    conf = est.get_column("conf_level").unique().to_list() if est.height else [0.95]
    ci_label = (f"{100 * conf[0]:g}% CI" if len(conf) == 1 else "CI")
    columns = [
        Column("group", "group", numeric=False, kind="label"),
        Column("domain", "domain", numeric=False, kind="label"),
        *([Column("answer", "answer", numeric=False, kind="label")] if several else []),
        Column("n", "n", kind="count"),
        Column("percent", _header(est), kind="percent"),
        Column("ci", ci_label, kind="interval"),
        Column("moe", "±", kind="points"),
    ]
    rows: list[Row] = []
    groups: dict[str, str] = {}
    order = {i: k for k, i in enumerate(ids)}
    est = est.with_columns(pl.col("estimate_id").replace_strict(order, return_dtype=pl.Int64).alias("_order"))
    for est_id in ids:
        part = est.filter(pl.col("estimate_id") == est_id)
        if part.height == 0:
            continue
        group, description = _question(part, codebook)
        group = _unique(group, est_id, groups)
        groups[group] = description
        for r in part.sort("_order", "_row").iter_rows(named=True):
            cells = [
                _label(by_label(r["by"], codebook, tables.labels)),
                _label(domain_label(r["domain"])),
                *([_label(r["level"])] if several else []),
                _count_cell(r),
                *(_calibrated_cells(r, decimals) if is_calibrated(r) and not is_suppressed(r.get("flag") or "") else (
                    _percent_cell(r, decimals), _interval_cell(r, decimals), _moe_cell(r, decimals))),
            ]
            rows.append(Row(tuple(cells), group))
    heading = spec.title or "Topline"
    return Table(
        id=spec.id,
        kind="topline",
        title=f"{title}: {heading}" if title else heading,
        subtitle=f"Wave {wave}" if wave else "",
        columns=tuple(columns),
        rows=tuple(rows),
        groups=groups,
        notes=standard_notes(est, notice=notice, extra=[*spec.notes, *tables.notes]),
        footnotes=footnotes(c.flag for r in rows for c in r.cells)
        + ((CALIBRATED_NOTE,) if any(c.calibrated for r in rows for c in r.cells) else ()),
        decimals=decimals,
    )


def _calibrated_cells(row: Mapping[str, Any], decimals: int) -> tuple[Cell, Cell, Cell]:
    """Percent (marked), interval and margin of error of a calibrated margin: no interval shown."""
    flag = row.get("flag") or ""
    return (
        Cell(value_format(row).text(row["estimate"], decimals) + marks(flag) + CALIBRATED, row["estimate"], row["_row"], "estimate", flag, calibrated=True),
        Cell(NOT_ESTIMATED, None, row["_row"], "ci", flag, calibrated=True),
        Cell(NOT_ESTIMATED, None, row["_row"], "moe", flag, calibrated=True),
    )


# ------------------------------------------------------------------------------ banner


def column_letters(count: int) -> list[str]:
    """``A``, ``B``, ..., ``Z``, ``AA``, ``AB``, ... (banner column letters)."""
    out = []
    for i in range(count):
        s, k = "", i
        while True:
            s = chr(ord("A") + k % 26) + s
            k = k // 26 - 1
            if k < 0:
                break
        out.append(s)
    return out


def banner_columns(estimates: pl.DataFrame, spec: BannerSpec) -> list[tuple[str, str]]:
    """The banner's (by, domain) columns in order: each column group's domains as first estimated."""
    import polars as pl

    est = prepare_estimates(estimates)
    ids = _select(est, spec.estimates)
    est = est.filter(pl.col("estimate_id").is_in(ids))
    out: list[tuple[str, str]] = []
    for by in spec.columns:
        key = "*".join(by)
        domains = est.filter(pl.col("by") == key).get_column("domain").unique(maintain_order=True).to_list()
        out += [(key, d) for d in domains]
    return out


def banner_table(
    estimates: pl.DataFrame,
    spec: BannerSpec,
    tables: TablesConfig,
    *,
    comparisons: pl.DataFrame | None = None,
    codebook: Codebook | None = None,
    title: str = "",
    wave: str = "",
    notice: str | None = None,
    letters_note: str = "",
    association: pl.DataFrame | None = None,
) -> Table:
    """A banner crosstab: questions down, subgroups across, significance letters between columns.

    Parameters
    ----------
    comparisons : polars.DataFrame, optional
        Pairwise tests (:func:`pipeline.exporters.significance.compare_columns`); a cell shows
        the letters of the columns of its group whose percentage it significantly exceeds.
    letters_note : str
        How the tests were done (a note under the table).
    association : polars.DataFrame, optional
        The estimate stage's tests of association (``estimate/association_tests.csv``, R
        ``svychisq``): one note per column variable lists each question's test.
    """
    import polars as pl

    from pipeline.exporters.significance import letters_for

    est = prepare_estimates(estimates)
    decimals = spec.decimals if spec.decimals is not None else tables.decimals
    ids = _select(est, spec.estimates)
    est = est.filter(pl.col("estimate_id").is_in(ids))
    cols = banner_columns(est, spec)
    lettered = [c for c in cols if c[0]]
    letter_of = dict(zip(lettered, column_letters(len(lettered)), strict=True))
    columns = [Column("answer", "", numeric=False, kind="label")]
    for by, domain in cols:
        group = by_label(by, codebook, tables.labels) if by else None
        label = "Total" if not by else domain_label(domain)
        letter = letter_of.get((by, domain))
        columns.append(Column(f"{by}={domain}" if by else "total", label, group, letter))
    letters = letters_for(comparisons, letter_of) if comparisons is not None else {}
    index = {(r["estimate_id"], r["level"], r["by"], r["domain"]): r for r in est.iter_rows(named=True)}
    rows: list[Row] = []
    groups: dict[str, str] = {}
    for est_id in ids:
        part = est.filter(pl.col("estimate_id") == est_id)
        group, description = _question(part, codebook)
        group = _unique(group, est_id, groups)
        groups[group] = description
        levels = part.get_column("level").unique(maintain_order=True).to_list()
        for level in levels:
            cells = [_label(level or value_format(part.row(0, named=True)).header)]
            for by, domain in cols:
                r = index.get((est_id, level, by, domain))
                if r is None:
                    cells.append(Cell(NOT_ESTIMATED))
                    continue
                cells.append(_percent_cell(r, decimals, letters.get((est_id, level, by, domain), "")))
            rows.append(Row(tuple(cells), group))
        base = [_label("Unweighted n")]
        for by, domain in cols:
            r = next((index[(est_id, lv, by, domain)] for lv in levels if (est_id, lv, by, domain) in index), None)
            base.append(Cell(NOT_ESTIMATED) if r is None else _count_cell(r))
        rows.append(Row(tuple(base), group, kind="base"))
    heading = spec.title or "Banner"
    extra = [letters_note] if letters_note and letter_of else []
    extra += association_notes(association, ids, [c[0] for c in cols], codebook, tables)
    if any(c.text == NOT_ESTIMATED for r in rows for c in r.cells):
        extra.append(f"{NOT_ESTIMATED} not estimated for this subgroup.")
    return Table(
        id=spec.id,
        kind="banner",
        title=f"{title}: {heading}" if title else heading,
        subtitle=f"Wave {wave}; {_unit(est)}" if wave else _unit(est).capitalize(),
        columns=tuple(columns),
        rows=tuple(rows),
        groups=groups,
        notes=standard_notes(est, notice=notice, extra=[*extra, *spec.notes, *tables.notes]),
        footnotes=footnotes(c.flag for r in rows for c in r.cells if r.kind == "estimate"),
        decimals=decimals,
    )


def association_notes(
    association: pl.DataFrame | None, ids: Sequence[str], bys: Sequence[str], codebook: Codebook | None, tables: TablesConfig
) -> list[str]:
    """One note per column variable: each question's design-based test of association."""
    import polars as pl

    if association is None or association.height == 0:
        return []
    notes = []
    for by in dict.fromkeys(b for b in bys if b and "*" not in b):
        part = association.filter((pl.col("by") == by) & pl.col("estimate_id").is_in(list(ids)))
        if part.height == 0:
            continue
        kinds = part.get_column("statistic_type").drop_nulls().unique().to_list()
        name = "Rao-Scott second-order F" if kinds == ["F"] else "Rao-Scott first-order chi-squared" if kinds == ["Chisq"] else "design-based"
        tests = []
        for r in part.iter_rows(named=True):
            if r.get("skipped"):  # a test that could not be computed, with the reason
                tests.append(f"{r['estimate_id']} {r['skipped']}")
                continue
            if r["statistic_name"] == "F":
                stat = f"F({r['ndf']:.2f}, {r['ddf']:.1f}) = {r['statistic']:.2f}"
            else:
                stat = f"X² = {r['statistic']:.2f}"
            tests.append(f"{r['estimate_id']} {stat}, p = {r['p_value']:.3g}")
        notes.append(f"Association with {by_label(by, codebook, tables.labels)} ({name} test, as R svychisq): " + "; ".join(tests) + ".")
    return notes


# ------------------------------------------------------------------------------ trend


def trend_table(
    trends: pl.DataFrame,
    spec: TrendSpec,
    tables: TablesConfig,
    *,
    codebook: Codebook | None = None,
    title: str = "",
    notice: str | None = None,
    alpha: float = 0.05,
) -> Table:
    """A trend table: estimates down, waves across, and the change between the last two waves.

    ``trends`` is the layout of ``trends/estimates.csv`` (and of
    :func:`pipeline.stages.trends.trends`): every wave's rows, plus ``statistic ==
    'difference'`` rows from ``wave_from`` to ``wave_to`` with a ``p_value``. A wave's cell shows
    the letter of the previous wave when it is significantly higher (at ``alpha``); a change
    involving a suppressed estimate is suppressed.
    """
    import polars as pl

    est = prepare_estimates(trends)
    decimals = spec.decimals if spec.decimals is not None else tables.decimals
    level_rows = est.filter(~is_change(est))
    changes = est.filter(is_change(est))
    if changes.height:
        changes = changes.with_columns(pl.col("wave_from").cast(pl.String), pl.col("wave_to").cast(pl.String))
    waves = level_rows.get_column("wave").unique(maintain_order=True).to_list()
    letter_of = dict(zip(waves, column_letters(len(waves)), strict=True))
    ids = _select(level_rows, spec.estimates)
    keys = ["*".join(b) for b in spec.by]
    level_rows = level_rows.filter(pl.col("estimate_id").is_in(ids) & pl.col("by").is_in(keys))
    last, prev = (waves[-1], waves[-2]) if len(waves) >= 2 else (None, None)
    columns = [Column("domain", "", numeric=False, kind="label")]
    columns += [Column(f"wave={w}", w, "Wave", letter_of[w]) for w in waves]
    if last is not None:
        shares = level_rows.get_column("statistic").drop_nulls().is_in(["proportion"]).all() if "statistic" in level_rows.columns else True
        columns.append(Column("change", f"Change {prev}–{last} ({'points' if shares else 'points for shares'})", None, None, kind="points"))
    index = {(r["estimate_id"], r["level"], r["by"], r["domain"], r["wave"]): r for r in level_rows.iter_rows(named=True)}

    def withheld(c: Mapping[str, Any]) -> bool:
        ends = (index.get((c["estimate_id"], c["level"], c["by"], c["domain"], w)) for w in (c["wave_from"], c["wave_to"]))
        return is_suppressed(c["flag"]) or any(e is None or is_suppressed(e["flag"]) for e in ends)

    letters: dict[tuple[str, str, str, str, str], str] = {}
    for c in changes.iter_rows(named=True):
        if c.get("p_value") is None or not c["p_value"] < alpha or withheld(c):
            continue
        higher, lower = (c["wave_to"], c["wave_from"]) if c["estimate"] > 0 else (c["wave_from"], c["wave_to"])
        key = (c["estimate_id"], c["level"], c["by"], c["domain"], higher)
        letters[key] = letters.get(key, "") + letter_of.get(lower, "")
    change_index = {(r["estimate_id"], r["level"], r["by"], r["domain"], r["wave_to"], r["wave_from"]): r for r in changes.iter_rows(named=True)}
    rows: list[Row] = []
    groups: dict[str, str] = {}
    for est_id in ids:
        part = level_rows.filter(pl.col("estimate_id") == est_id)
        if part.height == 0:
            continue
        group, description = _question(part, codebook)
        group = _unique(group, est_id, groups)
        groups[group] = description
        several = part.get_column("level").n_unique() > 1
        seen: list[tuple[str, str, str]] = []
        for r in part.iter_rows(named=True):
            k = (r["level"], r["by"], r["domain"])
            if k not in seen:
                seen.append(k)
        for level, by, domain in seen:
            name = domain_label(domain) if by else "All"
            cells = [_label(f"{level}: {name}" if several else name)]
            for w in waves:
                r = index.get((est_id, level, by, domain, w))
                cells.append(Cell(NOT_ESTIMATED) if r is None else _percent_cell(r, decimals, letters.get((est_id, level, by, domain, w), "")))
            if last is not None:
                c = change_index.get((est_id, level, by, domain, last, prev))
                if c is None:
                    cells.append(Cell(NOT_ESTIMATED))
                elif withheld(c):
                    cells.append(Cell(SUPPRESSED, None, c["_row"], "difference", c["flag"]))
                else:
                    end = index.get((est_id, level, by, domain, last)) or {}
                    cells.append(Cell(value_format(end).change(c["estimate"], decimals), c["estimate"], c["_row"], "difference", c["flag"]))
            rows.append(Row(tuple(cells), group))
    heading = spec.title or "Trends"
    extra = [
        f"Letters: the wave's percentage is significantly higher than that of the previous wave with the letter "
        f"(two-sided t test at alpha = {alpha:g} of the difference between independent samples)."
    ] if len(waves) > 1 else ["One wave so far: changes appear when the study has a second wave."]
    return Table(
        id=spec.id,
        kind="trend",
        title=f"{title}: {heading}" if title else heading,
        subtitle=f"Waves {', '.join(waves)}; {_unit(level_rows)}",
        columns=tuple(columns),
        rows=tuple(rows),
        groups=groups,
        notes=standard_notes(level_rows, notice=notice, extra=[*extra, *spec.notes, *tables.notes]),
        footnotes=footnotes(c.flag for r in rows for c in r.cells if c.field != "difference"),
        decimals=decimals,
    )

"""The codebook of a wave with weighted frequencies (export format ``codebook``): every variable
of the weighted respondents with its label, type, value labels, unweighted counts, design-based
weighted percentages or summary statistics, and its missing values by reason.

:func:`codebook_frame` computes one tidy frame (one row per code, summary statistic or missing
reason of each variable); :func:`codebook_markdown`, :func:`codebook_xlsx` and
:func:`codebook_html` present it (``codebook/codebook.md``, ``codebook/codebook.xlsx`` with an
"Index" sheet, the report's collapsible section); ``codebook/codebook.csv`` is the frame itself.

Types: ``categorical`` (a text column with at most :data:`MAX_TEXT_LEVELS` distinct answers, a
boolean, or a number column whose every valid value has a value label), ``numeric`` (any other
number column), ``text`` (other text, dates: counts and missing values only, since a frequency
of free text or dates identifies respondents and its cells would all be suppressed), and
``identifier`` (``ingest.id``: counts and missing values only).

The numbers, on the design of the config (the caller builds it):

- categorical: each code's unweighted ``n`` and its weighted share of the valid answers (the
  codebook's missing-value codes, don't know and refused, set missing) with the design's interval
  (``design.ci_method``): R ``svyciprop(~I(x == code), design, method = ...)``, the estimate of
  ``svymean(~factor(x), design, na.rm = TRUE)``; all categorical variables in one
  :func:`pipeline.survey.estimators.proportion` call per column type;
- numeric: ``n``, the weighted mean with its Wald t interval on the design's degrees of freedom
  (R ``confint(svymean(~x, design, na.rm = TRUE), df = degf(design))``), the quartiles by R's
  default rule (``svyquantile(..., qrule = "math")``), the minimum and maximum;
- missing, by reason: ``dont_know``, ``refused`` (and ``user_missing``) count the rows holding the
  codebook's missing codes of that reason; ``skipped``, ``out_of_range``, ``system_missing`` (and
  the clean stage's ``inconsistent``, ``skip_violation``) count the rows of
  ``clean/missing_reasons.parquet`` with that reason among the weighted respondents. The five
  reasons of the issue are always listed, the others when they occur.

Disclosure, as in the tables (:mod:`pipeline.flags`): a code held by 1 to ``min_cell_n - 1``
respondents has its percent and interval suppressed (``*``, flag ``cell<10``); a numeric
variable with 1 to ``min_cell_n - 1`` valid answers has all its statistics suppressed. The
unweighted counts are shown, as the tables show the n of a suppressed cell.
"""

from __future__ import annotations

import html as _html
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

__all__ = ["CODEBOOK_COLUMNS", "MAX_TEXT_LEVELS", "REASONS", "codebook_frame", "codebook_html", "codebook_markdown", "codebook_xlsx"]

#: a text column with more distinct answers than this is free text (no frequencies)
MAX_TEXT_LEVELS = 50

#: the missing-value reasons, in the order shown, with their wording; the first five are always listed
REASONS: dict[str, str] = {
    "dont_know": "Don't know",
    "refused": "Refused",
    "skipped": "Skipped",
    "out_of_range": "Out of range",
    "system_missing": "System missing",
    "user_missing": "Other missing code",
    "inconsistent": "Inconsistent",
    "skip_violation": "Skip violation",
}
_ALWAYS = ("dont_know", "refused", "skipped", "out_of_range", "system_missing")
_CODE_REASONS = ("dont_know", "refused", "user_missing")  # counted from the codes in the data

#: the codebook frame's columns
CODEBOOK_COLUMNS = ("variable", "label", "type", "section", "code", "value", "n", "estimate", "se", "ci_low", "ci_high", "ci_method", "flag")

_STATS = (("mean", None), ("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("min", None), ("max", None))


def _kind(s: pl.Series, value_labels: Mapping[Any, str], missing: Sequence[Any]) -> str:
    import polars as pl

    if s.dtype == pl.Boolean:
        return "categorical"
    if s.dtype in (pl.String, pl.Categorical) or isinstance(s.dtype, pl.Enum):
        return "categorical" if s.drop_nulls().n_unique() <= MAX_TEXT_LEVELS else "text"
    if not s.dtype.is_numeric():
        return "text"
    valid = s.drop_nulls().filter(~s.drop_nulls().is_in(list(missing))) if missing else s.drop_nulls()
    labelled = [k for k in value_labels if k not in missing]
    if labelled and valid.len() and valid.is_in(labelled).all():
        return "categorical"
    return "numeric"


def _valid_expr(name: str, kind: str, missing: Sequence[Any], dtype: Any) -> pl.Expr:
    import polars as pl

    x = pl.col(name)
    if missing and dtype.is_numeric():
        x = pl.when(x.is_in([m for m in missing if not isinstance(m, str)])).then(None).otherwise(x)
    elif missing:
        x = pl.when(x.cast(pl.String).is_in([str(m) for m in missing])).then(None).otherwise(x)
    if kind == "numeric":
        return x.cast(pl.Float64)
    if dtype.is_integer() or dtype.is_float():
        return x.cast(pl.Float64 if dtype.is_float() else pl.Int64)
    return x.cast(pl.String)


def codebook_frame(
    frame: pl.DataFrame,
    codebook: Any,
    design: Any,
    *,
    reasons: pl.DataFrame | None,
    exclude: Iterable[str] = (),
    ci_method: str = "logit",
    conf_level: float = 0.95,
    min_cell_n: int = 10,
    labels: Mapping[str, str] | None = None,
    identifiers: Iterable[str] = (),
) -> pl.DataFrame:
    """The codebook with weighted frequencies, one row per code / statistic / missing reason.

    Parameters
    ----------
    frame : polars.DataFrame
        The weighted respondents (``weight/data.parquet``; ``raw_row`` matches ``reasons``).
    codebook : pipeline.io.Codebook
    design : pipeline.survey.design.Design
        Built over ``frame`` (linearization or replicate).
    reasons : polars.DataFrame, optional
        ``clean/missing_reasons.parquet`` (``raw_row``, ``variable``, ``reason``).
    exclude : iterable of str
        Columns left out (PII, hashed identifiers, technical columns).
    ci_method, conf_level : str, float
        The proportions' interval (``design.ci_method``, ``design.conf_level``).
    min_cell_n : int
        ``tables.disclosure.min_cell_n``.
    labels : mapping, optional
        Labels of variables the codebook has none for (``tables.labels``).
    identifiers : iterable of str
        The respondent identifier (``ingest.id``): type ``identifier``, counts and missing values
        only (its mean is meaningless, its minimum and maximum are respondents' ids).

    Returns
    -------
    polars.DataFrame
        :data:`CODEBOOK_COLUMNS`: ``section`` is ``value`` (a code: ``code``, its label in
        ``value``, ``n``, the share of the valid answers as a fraction in ``estimate``, ``se``,
        ``ci_low``, ``ci_high``), ``summary`` (``value`` names the statistic: ``n``, ``mean``
        with its interval, ``p25``, ``median``, ``p75``, ``min``, ``max``) or ``missing``
        (``code`` the reason, ``value`` its wording and codes, ``n`` the rows); ``flag`` is
        ``cell<N`` on suppressed rows (their ``estimate``, ``se`` and bounds are null).
    """
    import polars as pl

    from pipeline.survey.estimators import mean, proportion
    from pipeline.survey.quantiles import quantile

    gone = set(exclude)
    names = [c for c in frame.columns if c not in gone]
    infos = {n: codebook.get(n) for n in names}
    kinds: dict[str, str] = {}
    work_cols: list[pl.Expr] = []
    ids = set(identifiers)
    for i, name in enumerate(names):
        info = infos[name]
        missing = sorted(set(info.missing_values) | set(info.missing_reasons), key=str)
        kinds[name] = "identifier" if name in ids else _kind(frame.get_column(name), info.value_labels, missing)
        if kinds[name] not in ("text", "identifier"):
            work_cols.append(_valid_expr(name, kinds[name], missing, frame.schema[name]).alias(f"__cb{i}"))
    col_of = {n: f"__cb{i}" for i, n in enumerate(names)}
    work = frame.with_columns(work_cols)
    d = design.with_frame(work)
    in_design = pl.Series(d.in_design)

    blocks: dict[str, list[pl.DataFrame]] = {n: [] for n in names}
    cats = [n for n in names if kinds[n] == "categorical" and work.get_column(col_of[n]).filter(in_design).drop_nulls().len()]
    by_type: dict[str, list[str]] = {}
    for n in cats:
        by_type.setdefault(str(work.schema[col_of[n]]), []).append(n)
    for group in by_type.values():  # one grouped pass per column type
        res = proportion(d, [col_of[n] for n in group], ci_method=ci_method, conf_level=conf_level, na_rm=True)
        counts = pl.concat(
            [work.filter(in_design).group_by(col_of[n]).len("cell").rename({col_of[n]: "level"}).with_columns(pl.lit(col_of[n]).alias("variable"))
             for n in group],
            how="vertical_relaxed",
        )
        res = res.join(counts, on=["variable", "level"], how="left").with_columns(pl.col("cell").fill_null(0))
        for n in group:
            blocks[n].append(_value_rows(res.filter(pl.col("variable") == col_of[n]), infos[n], ci_method, min_cell_n))
    for n in names:
        if kinds[n] == "categorical" and n not in cats:
            blocks[n].append(_value_rows(None, infos[n], ci_method, min_cell_n))
        if kinds[n] == "numeric":
            col = col_of[n]
            values = work.get_column(col).filter(in_design).drop_nulls()
            if values.len() and 0 < values.len() < min_cell_n:
                stats = {"n": (values.len(), None, None, None)}
            elif values.len():
                m = mean(d, col, na_rm=True, categorical=False)
                (low, high), = m.confint(conf_level, df="design")
                q = quantile(d, col, probs=[0.25, 0.5, 0.75], na_rm=True, conf_level=conf_level)
                stats = {"n": (values.len(), None, None, None), "mean": (float(m.estimate[0]), float(m.se[0]), float(low), float(high)),
                         "p25": (float(q.estimate[0]), None, None, None), "median": (float(q.estimate[1]), None, None, None),
                         "p75": (float(q.estimate[2]), None, None, None), "min": (float(values.min()), None, None, None),
                         "max": (float(values.max()), None, None, None)}
            else:
                stats = {"n": (0, None, None, None)}
            blocks[n].append(_summary_rows(stats, values.len(), min_cell_n))
        if kinds[n] in ("text", "identifier"):
            blocks[n].append(_summary_rows({"n": (frame.get_column(n).filter(in_design).drop_nulls().len(), None, None, None)}, 0, min_cell_n))

    blocks_missing = _missing_rows(frame.filter(in_design), names, infos, reasons)
    out = []
    for n in names:
        parts = [*blocks[n], blocks_missing[n]]
        body = pl.concat([p for p in parts if p.height], how="diagonal_relaxed") if any(p.height for p in parts) else None
        if body is None:
            continue
        out.append(
            body.with_columns(pl.lit(n).alias("variable"), pl.lit(infos[n].label or (labels or {}).get(n, "")).alias("label"), pl.lit(kinds[n]).alias("type"))
        )
    schema = {"variable": pl.String, "label": pl.String, "type": pl.String, "section": pl.String, "code": pl.String, "value": pl.String,
              "n": pl.Int64, "estimate": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "ci_method": pl.String,
              "flag": pl.String}
    if not out:
        return pl.DataFrame(schema=schema)
    return pl.concat(out, how="diagonal_relaxed").select([pl.col(c).cast(t) for c, t in schema.items()])


def _code_text(code: Any) -> str:
    if isinstance(code, float) and code.is_integer():
        return str(int(code))
    return str(code)


def _value_rows(res: pl.DataFrame | None, info: Any, ci_method: str, min_cell_n: int) -> pl.DataFrame:
    """The rows of a categorical variable's codes: the observed ones and its unobserved labelled codes (n 0)."""
    import polars as pl

    missing = set(info.missing_values) | set(info.missing_reasons)
    rows: list[dict[str, Any]] = []
    seen = set()
    for r in (res.sort("level").iter_rows(named=True) if res is not None else ()):
        code = _code_text(r["level"])
        seen.add(code)
        cell = int(r["cell"])
        hidden = 0 < cell < min_cell_n
        rows.append({"section": "value", "code": code, "value": _label(info, r["level"]), "n": cell,
                     "estimate": None if hidden else r["estimate"], "se": None if hidden else r["se"],
                     "ci_low": None if hidden else r["ci_low"], "ci_high": None if hidden else r["ci_high"],
                     "ci_method": ci_method, "flag": f"cell<{min_cell_n}" if hidden else ""})
    for k, v in info.value_labels.items():
        if k not in missing and _code_text(k) not in seen:
            rows.append({"section": "value", "code": _code_text(k), "value": v, "n": 0, "estimate": 0.0 if res is not None else None,
                         "ci_method": ci_method, "flag": ""})
    return pl.DataFrame(rows, schema_overrides={"estimate": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}) if rows else pl.DataFrame()


def _label(info: Any, level: Any) -> str:
    labels = info.value_labels
    if level in labels:
        return labels[level]
    if isinstance(level, float) and level.is_integer() and int(level) in labels:
        return labels[int(level)]
    return ""


def _summary_rows(stats: Mapping[str, tuple[Any, Any, Any, Any]], n: int, min_cell_n: int) -> pl.DataFrame:
    import polars as pl

    hidden = 0 < n < min_cell_n
    rows = [{"section": "summary", "code": "", "value": "n", "n": stats["n"][0], "flag": ""}]
    for name, _ in _STATS:
        if name in stats:
            est, se, low, high = stats[name]
            rows.append({"section": "summary", "code": "", "value": name, "n": n, "estimate": est, "se": se, "ci_low": low, "ci_high": high,
                         "ci_method": "wald" if name == "mean" else None, "flag": ""})
        elif hidden:
            rows.append({"section": "summary", "code": "", "value": name, "n": n, "flag": f"cell<{min_cell_n}"})
    return pl.DataFrame(rows, schema_overrides={"estimate": pl.Float64, "se": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                                                "ci_method": pl.String})


def _missing_rows(frame: pl.DataFrame, names: Sequence[str], infos: Mapping[str, Any], reasons: pl.DataFrame | None) -> dict[str, pl.DataFrame]:
    """Per variable, the missing rows by reason: codes counted in the data, the rest from the clean stage's table."""
    import polars as pl

    from_clean: dict[tuple[str, str], int] = {}
    if reasons is not None and reasons.height:
        kept = reasons.filter(pl.col("raw_row").is_in(frame.get_column("raw_row").implode()) & ~pl.col("reason").is_in(list(_CODE_REASONS)))
        from_clean = {(v, r): int(c) for v, r, c in kept.group_by("variable", "reason").len().iter_rows()}
    # the codes' counts: one pass over the data for every variable with missing codes
    exprs, keys = [], []
    for n in names:
        for code, reason in infos[n].missing_reasons.items():
            if reason in _CODE_REASONS:
                x = pl.col(n)
                hit = (x == code) if frame.schema[n].is_numeric() and not isinstance(code, str) else (x.cast(pl.String) == str(code))
                exprs.append(hit.fill_null(False).sum().alias(f"__m{len(keys)}"))
                keys.append((n, reason, code))
    counted: dict[tuple[str, str], tuple[int, list[str]]] = {}
    if exprs:
        sums = frame.select(exprs).row(0)
        for (n, reason, code), c in zip(keys, sums, strict=True):
            total, codes = counted.get((n, reason), (0, []))
            counted[(n, reason)] = (total + int(c), [*codes, _code_text(code)])
    out = {}
    for n in names:
        rows = []
        for reason, wording in REASONS.items():
            if reason in _CODE_REASONS:
                count, codes = counted.get((n, reason), (0, []))
                text = f"{wording} ({', '.join(codes)})" if codes else wording
            else:
                count, text = from_clean.get((n, reason), 0), wording
            if count or reason in _ALWAYS:
                rows.append({"section": "missing", "code": reason, "value": text, "n": count, "flag": ""})
        out[n] = pl.DataFrame(rows)
    return out


# ------------------------------------------------------------------ presentation
def _pct(x: Any, decimals: int) -> str:
    return "" if x is None else f"{100 * x:.{decimals}f}"


def _num(x: Any, decimals: int) -> str:
    if x is None:
        return ""
    return f"{x:,.{decimals}f}" if x != int(x) or decimals else f"{int(x):,}"


def _variables(frame: pl.DataFrame) -> list[tuple[str, str, str, list[dict[str, Any]]]]:
    out: dict[str, tuple[str, str, str, list[dict[str, Any]]]] = {}
    for r in frame.iter_rows(named=True):
        if r["variable"] not in out:
            out[r["variable"]] = (r["variable"], r["label"], r["type"], [])
        out[r["variable"]][3].append(r)
    return list(out.values())


def _block_rows(rows: list[dict[str, Any]], decimals: int) -> tuple[list[str], list[list[str]]]:
    """A variable's block as text cells: (header, rows), the same for every presentation."""
    head = ["code", "label", "n", "% or value", "CI low", "CI high"]
    body = []
    for r in rows:
        if r["section"] == "value":
            shown = r["flag"] == ""
            body.append([r["code"], r["value"], f"{r['n']:,}", _pct(r["estimate"], decimals) if shown else "*",
                         _pct(r["ci_low"], decimals) if shown else "*", _pct(r["ci_high"], decimals) if shown else "*"])
        elif r["section"] == "summary":
            shown = r["flag"] == ""
            value = f"{r['n']:,}" if r["value"] == "n" else (_num(r["estimate"], decimals + 1) if shown else "*")
            body.append(["", r["value"], f"{r['n']:,}" if r["value"] == "n" else "", value if r["value"] != "n" else "",
                         _num(r["ci_low"], decimals + 1) if shown else "*", _num(r["ci_high"], decimals + 1) if shown else "*"])
        else:
            body.append([r["code"], r["value"], f"{r['n']:,}", "", "", ""])
    return head, body


def _about(ci_method: str, conf_level: float, min_cell_n: int) -> str:
    return (f"Unweighted n; weighted percent of the valid answers with its {conf_level:.0%} interval ({ci_method}); numeric variables: "
            f"weighted mean ({conf_level:.0%} Wald interval), quartiles (R's default rule), minimum and maximum; missing values by "
            f"reason. * suppressed: fewer than {min_cell_n} respondents (tables.disclosure.min_cell_n).")


def codebook_markdown(frame: pl.DataFrame, *, title: str, wave: str, notice: str | None = None, decimals: int = 1,
                      ci_method: str = "logit", conf_level: float = 0.95, min_cell_n: int = 10) -> str:
    """``codebook/codebook.md``: an index, then one section per variable."""
    lines = [f"# {title}: codebook, wave {wave}", ""]
    if notice:
        lines += [f"**{notice}**", ""]
    lines += [_about(ci_method, conf_level, min_cell_n), "", "| variable | label | type |", "|---|---|---|"]
    variables = _variables(frame)
    lines += [f"| [{v}](#{_anchor(v)}) | {_md(label)} | {kind} |" for v, label, kind, _ in variables]
    for v, label, kind, rows in variables:
        head, body = _block_rows(rows, decimals)
        lines += ["", f"## {v}", "", f"{_md(label)} ({kind})" if label else f"({kind})", "",
                  "| " + " | ".join(head) + " |", "|---|---|---:|---:|---:|---:|", *["| " + " | ".join(_md(c) for c in b) + " |" for b in body]]
    return "\n".join(lines) + "\n"


def _anchor(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading (GitHub's rule).

    >>> _anchor("sch.wide"), _anchor("Q10A")
    ('schwide', 'q10a')
    """
    return re.sub(r"[^a-z0-9_ -]", "", heading.lower()).replace(" ", "-")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def codebook_html(frame: pl.DataFrame, *, decimals: int = 1, ci_method: str = "logit", conf_level: float = 0.95, min_cell_n: int = 10) -> str:
    """The report's codebook section: one collapsible ``<details>`` per variable."""
    esc = _html.escape
    out = ['<section id="codebook"><h2>Codebook</h2>', f"<p>{esc(_about(ci_method, conf_level, min_cell_n))}</p>"]
    for v, label, kind, rows in _variables(frame):
        head, body = _block_rows(rows, decimals)
        out.append(f'<details id="codebook-{esc(v)}"><summary><strong>{esc(v)}</strong> {esc(label)} <em>({esc(kind)})</em></summary>')
        out.append("<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead><tbody>")
        out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in b) + "</tr>" for b in body]
        out.append("</tbody></table></details>")
    out.append("</section>")
    return "\n".join(out)


def codebook_xlsx(frame: pl.DataFrame, *, title: str, wave: str, notice: str | None = None, decimals: int = 1, created: Any = None,
                  ci_method: str = "logit", conf_level: float = 0.95, min_cell_n: int = 10) -> bytes:
    """``codebook/codebook.xlsx``: an "Index" sheet (one row per variable, linking to its block) and a
    "Codebook" sheet with one row block per variable; numbers stay numbers (percents as fractions
    with a percent format), suppressed cells are the text ``*``."""
    import xlsxwriter

    from pipeline.exporters import file_timestamp

    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False})
    wb.set_properties({"title": f"{title}: codebook", "comments": "Generated by survey-pipeline", "created": created or file_timestamp()})
    bold = wb.add_format({"bold": True})
    pct = wb.add_format({"num_format": "0" + ("." + "0" * decimals if decimals else "") + "%"})
    num = wb.add_format({"num_format": "#,##0." + "0" * (decimals + 1)})
    count = wb.add_format({"num_format": "#,##0"})
    link = wb.add_format({"font_color": "blue", "underline": 1})
    index = wb.add_worksheet("Index")
    sheet = wb.add_worksheet("Codebook")
    index.write(0, 0, f"{title}: codebook, wave {wave}", bold)
    index.write(1, 0, notice or "")
    index.write(2, 0, _about(ci_method, conf_level, min_cell_n))
    index.write_row(4, 0, ["variable", "label", "type", "row"], bold)
    index.set_column(0, 0, 18)
    index.set_column(1, 1, 60)
    sheet.set_column(0, 0, 16)
    sheet.set_column(1, 1, 40)
    sheet.set_column(2, 6, 11)
    row = 0
    for i, (v, label, kind, rows) in enumerate(_variables(frame)):
        index.write_url(5 + i, 0, f"internal:'Codebook'!A{row + 1}", link, string=v)
        index.write(5 + i, 1, label)
        index.write(5 + i, 2, kind)
        index.write_number(5 + i, 3, row + 1)
        sheet.write(row, 0, v, bold)
        sheet.write(row, 1, f"{label} ({kind})" if label else f"({kind})", bold)
        sheet.write_row(row + 1, 0, ["section", "code", "label", "n", "estimate", "CI low", "CI high"], bold)
        row += 2
        for r in rows:
            sheet.write(row, 0, r["section"])
            sheet.write(row, 1, r["code"])
            sheet.write(row, 2, r["value"])
            sheet.write_number(row, 3, r["n"], count)
            fmt = pct if r["section"] == "value" else num
            for k, key in enumerate(("estimate", "ci_low", "ci_high")):
                if r["flag"]:
                    sheet.write(row, 4 + k, "*")
                elif r[key] is not None and not (r["section"] == "summary" and r["value"] == "n"):
                    sheet.write_number(row, 4 + k, r[key], fmt)
            row += 1
        row += 1
    wb.close()
    return buf.getvalue()

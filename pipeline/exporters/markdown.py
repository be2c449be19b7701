"""Markdown rendering of a :class:`~pipeline.exporters.tables.Table` (GitHub pipe tables).

One section per row group (the question: its title, wording and base), each with the table's
header; banner column groups are written into the header (``County: Cook (A)``). Notes and
footnotes follow the last section.
"""

from __future__ import annotations

from pipeline.exporters.tables import Column, Table

__all__ = ["table_markdown"]


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _header(col: Column) -> str:
    label = col.label
    if col.letter:
        label = f"{label} ({col.letter})"
    if col.group:
        label = f"{col.group}: {label}"
    return _escape(label)


def table_markdown(table: Table) -> str:
    """The table as Markdown text.

    Examples
    --------
    ``t`` is the topline of :func:`pipeline.exporters.tables.topline_table`'s example:

    >>> import polars as pl
    >>> from pipeline.config import TablesConfig, ToplineSpec
    >>> from pipeline.exporters.tables import topline_table
    >>> est = pl.DataFrame({"wave": ["1"], "estimate_id": ["q"], "statistic": ["proportion"], "variable": ["Q"],
    ...     "level": ["Yes"], "by": [""], "domain": ["All"], "n": [1998], "estimate": [0.4449], "se": [0.018],
    ...     "ci_low": [0.41], "ci_high": [0.48], "ci_method": ["logit"], "conf_level": [0.95], "df": [1994.0],
    ...     "deff": [2.9], "flag": [""], "title": ["Less likely to contact police"]})
    >>> t = topline_table(est, ToplineSpec(id="topline"), TablesConfig())
    >>> print(table_markdown(t))  # doctest: +ELLIPSIS
    # Topline
    ...
    | All | All | 1,998 | 44 | 41–48 | ±3.5 |
    ...
    """
    lines = [f"# {_escape(table.title)}", ""]
    if table.subtitle:
        lines += [table.subtitle, ""]
    head = "| " + " | ".join(_header(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---:" if c.numeric else "---" for c in table.columns) + "|"
    for group, rows in table.row_groups():
        if group:
            lines += [f"## {_escape(group)}", ""]
            description = table.groups.get(group)
            if description:
                lines += [description, ""]
        lines += [head, rule]
        for row in rows:
            cells = [_escape(c.text) for c in row.cells]
            if row.kind == "base":
                cells = [f"*{cells[0]}*", *cells[1:]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if table.footnotes or table.notes:
        lines += ["---", ""]
    for f in table.footnotes:
        lines += [_escape(f).replace("*", "\\*", 1) if f.startswith("*") else _escape(f), ""]  # not a list item
    for n in table.notes:
        lines += [_escape(n), ""]
    return "\n".join(lines).rstrip() + "\n"

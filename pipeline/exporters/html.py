"""HTML (and, through :mod:`pipeline.exporters.latex`, LaTeX) tables with great_tables.

:func:`to_gt` turns a :class:`~pipeline.exporters.tables.Table` into a great_tables ``GT``:
the stub is the table's first label column, row groups are the questions, banner column
groups become spanners, notes and footnotes become source notes. Cell texts are the table's
own (rounded once, in :mod:`pipeline.exporters.tables`), so every format shows the same digits.
The HTML is self-contained (inline CSS, no web fonts, no scripts) and its element ids are
derived from the table id, so the output is deterministic.
"""

from __future__ import annotations

import html as _html
import re
from typing import Any

from pipeline.exporters.tables import Table

__all__ = ["table_html", "table_html_fragment", "to_gt"]


def _column_id(i: int) -> str:
    return f"c{i}"


def to_gt(table: Table, *, with_descriptions: bool = True) -> Any:
    """A great_tables ``GT`` of the table (import of great_tables happens here)."""
    import polars as pl
    from great_tables import GT

    label_cols = [i for i, c in enumerate(table.columns) if not c.numeric]
    stub = label_cols[0] if label_cols else None
    data: dict[str, list[str]] = {_column_id(i): [r.cells[i].text for r in table.rows] for i in range(len(table.columns))}
    groups = [r.group for r in table.rows]
    has_groups = any(groups)
    if has_groups:
        labels = {}
        for g in dict.fromkeys(groups):
            desc = table.groups.get(g) if with_descriptions else None
            labels[g] = f"{g} — {desc}" if desc else g
        data["_group"] = [labels[g] for g in groups]
    frame = pl.DataFrame(data, schema={k: pl.String for k in data})
    gt = GT(
        frame,
        rowname_col=_column_id(stub) if stub is not None else None,
        groupname_col="_group" if has_groups else None,
        id=f"tbl-{table.id}",
    )
    gt = gt.tab_header(title=table.title, subtitle=table.subtitle or None)
    gt = gt.cols_label(**{_column_id(i): _label(c) for i, c in enumerate(table.columns)})
    if stub is not None and table.columns[stub].label:
        gt = gt.tab_stubhead(label=table.columns[stub].label)
    for group, cols in table.column_groups():
        if group:
            ids = [_column_id(table.columns.index(c)) for c in cols]
            gt = gt.tab_spanner(label=group, columns=ids, id=f"sp-{re.sub(r'[^A-Za-z0-9]+', '-', group)}")
    numeric = [_column_id(i) for i, c in enumerate(table.columns) if c.numeric]
    if numeric:
        gt = gt.cols_align(align="right", columns=numeric)
    for note in (*table.footnotes, *table.notes):
        gt = gt.tab_source_note(note)
    return gt


def _label(col: Any) -> str:
    return f"{col.label} ({col.letter})" if col.letter else col.label


def table_html_fragment(table: Table) -> str:
    """The table's HTML (a ``<div>`` with its scoped ``<style>``), for embedding in a page."""
    return to_gt(table).as_raw_html()


def table_html(table: Table, *, lang: str = "en") -> str:
    """A standalone HTML page holding the table."""
    title = _html.escape(table.title)
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n</head>\n<body>\n'
        f"{table_html_fragment(table)}\n</body>\n</html>\n"
    )

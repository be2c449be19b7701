"""The registry of export formats: every word of ``export.formats``, the files it writes and
the function that renders them (:data:`FORMATS`).

Both the wave export stage (``tables/``, ``analysis/``, ``charts/``, ``methods.md``,
``report.html``) and the trends stage (``trends/``) render tables through
:func:`render_tables`, so a new table format is one module (its render function) and one entry
here: ``kind='table'`` renders each table to ``<folder>/<id><suffix>``; ``kind='workbook'`` all
tables to one ``<folder>/<suffix>`` file (``tables.xlsx``,
``tables.docx``). The other kinds are the export stage's:
``analysis`` (the weighted respondents, ``analysis/<study>_<wave><suffix>``), ``chart``
(``charts/<estimate id><suffix>``, and ``trends/trend_chart<suffix>``), ``document``
(``methods.md``, ``report.html``, ``codebook/``: the codebook writes ``codebook.md``, ``.xlsx`` and
``.csv``, its render returns them as ``{path: content}``). ``tests/test_vocabulary.py`` checks that the config's
``export.formats`` words are exactly these.

Each render function imports its heavy library only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import datetime as dt

    import polars as pl

    from pipeline.exporters.tables import Table

__all__ = ["FORMATS", "Format", "render_tables"]


@dataclass(frozen=True)
class Format:
    """One word of ``export.formats``.

    Attributes
    ----------
    name : str
        The config's word (``markdown``).
    kind : {'table', 'workbook', 'analysis', 'chart', 'document'}
        What it renders (see the module docstring).
    suffix : str
        The file name's ending (``.md``), or the whole name for one-file formats (``tables.xlsx``,
        ``methods.md``).
    render : callable
        ``table``: ``(table, estimates) -> str | bytes | DataFrame``; ``workbook``: ``(tables,
        estimates, *, title, wave, notice, created, methods_markdown) -> bytes`` (the Word
        document ends with the methods statement's Markdown, when given); ``analysis``: ``(data, *,
        timestamp) -> bytes``; ``chart``: ``(figure) -> bytes``; ``document``: the
        document's own function (:func:`pipeline.exporters.methods.methods_markdown`,
        :func:`pipeline.exporters.report.report_html`).
    """

    name: str
    kind: Literal["table", "workbook", "analysis", "chart", "document"]
    suffix: str
    render: Callable[..., Any]

    def files(self, names: Iterable[str] = (), folder: str = "") -> list[str]:
        """The files this format writes for ``names`` (table ids, estimate ids, ``<study>_<wave>``).

        Examples
        --------
        >>> FORMATS["markdown"].files(["topline", "banner"], "tables")
        ['tables/topline.md', 'tables/banner.md']
        >>> FORMATS["xlsx"].files(["topline", "banner"], "trends")
        ['trends/tables.xlsx']
        """
        prefix = f"{folder}/" if folder else ""
        if self.kind in ("workbook", "document"):
            return [f"{prefix}{self.suffix}"]
        return [f"{prefix}{n}{self.suffix}" for n in names]


def _csv(table: Table, estimates: pl.DataFrame | None) -> pl.DataFrame:
    from pipeline.exporters.tidy import table_frame

    return table_frame(table, estimates)


def _markdown(table: Table, estimates: pl.DataFrame | None) -> str:
    from pipeline.exporters.markdown import table_markdown

    return table_markdown(table)


def _html(table: Table, estimates: pl.DataFrame | None) -> str:
    from pipeline.exporters.html import table_html

    return table_html(table)


def _latex(table: Table, estimates: pl.DataFrame | None) -> str:
    from pipeline.exporters.latex import table_latex

    return table_latex(table)


def _xlsx(tables: Sequence[Table], estimates: pl.DataFrame | None, *, methods_markdown: str | None = None, **meta: Any) -> bytes:
    from pipeline.exporters.xlsx import workbook_bytes

    return workbook_bytes(tuple(tables), estimates=estimates, **meta)  # the methods statement is not a sheet


def _docx(tables: Sequence[Table], estimates: pl.DataFrame | None, **meta: Any) -> bytes:
    from pipeline.exporters.docx import document_bytes

    return document_bytes(tuple(tables), **meta)


def _sav(data: Any, *, timestamp: dt.datetime | None = None) -> bytes:
    from pipeline.exporters.spss import sav_bytes

    return sav_bytes(data, timestamp=timestamp)


def _dta(data: Any, *, timestamp: dt.datetime | None = None) -> bytes:
    from pipeline.exporters.spss import dta_bytes

    return dta_bytes(data, timestamp=timestamp)


def _png(figure: Any) -> bytes:
    from pipeline.exporters.charts import figure_bytes

    return figure_bytes(figure, "png")


def _svg(figure: Any) -> bytes:
    from pipeline.exporters.charts import figure_bytes

    return figure_bytes(figure, "svg")


def _methods(statement: Any) -> str:
    from pipeline.exporters.methods import methods_markdown

    return methods_markdown(statement)


def _codebook(frame: pl.DataFrame, **meta: Any) -> dict[str, Any]:
    """The codebook's files (:mod:`pipeline.exporters.codebook`): ``{path: content}``."""
    from pipeline.exporters.codebook import codebook_markdown, codebook_xlsx

    return {"codebook/codebook.md": codebook_markdown(frame, **{k: v for k, v in meta.items() if k != "created"}),
            "codebook/codebook.xlsx": codebook_xlsx(frame, **meta), "codebook/codebook.csv": frame}


def _report(**parts: Any) -> str:
    from pipeline.exporters.report import report_html

    return report_html(**parts)


#: every export format, in the order files are rendered
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("csv", "table", ".csv", _csv),
        Format("markdown", "table", ".md", _markdown),
        Format("html", "table", ".html", _html),
        Format("latex", "table", ".tex", _latex),
        Format("xlsx", "workbook", "tables.xlsx", _xlsx),
        Format("docx", "workbook", "tables.docx", _docx),
        Format("sav", "analysis", ".sav", _sav),
        Format("dta", "analysis", ".dta", _dta),
        Format("png", "chart", ".png", _png),
        Format("svg", "chart", ".svg", _svg),
        Format("methods", "document", "methods.md", _methods),
        Format("report", "document", "report.html", _report),
        Format("codebook", "document", "codebook/codebook.md", _codebook),
    )
}


def render_tables(
    tables: Sequence[Table],
    formats: Iterable[str],
    folder: str,
    estimates: pl.DataFrame | None,
    *,
    title: str = "",
    wave: str = "",
    notice: str | None = None,
    created: dt.datetime | None = None,
    sources: Mapping[str, pl.DataFrame] | None = None,
    methods_markdown: str | None = None,
) -> dict[str, Any]:
    """Every table in every table and workbook format of ``formats``: ``{relative path: content}``.

    Per-table formats come table by table (each table's files in the registry's order), then
    the workbooks. ``estimates`` are the rows the tables' cells point to (``_row``); ``sources``
    (table id -> rows) names other rows for some tables (a crosstab's cells are rows of
    ``estimate/crosstabs.csv``); ``methods_markdown`` is the methods statement, which the Word
    document (``docx``) ends with.
    """
    chosen = [f for f in FORMATS.values() if f.name in set(formats)]
    files: dict[str, Any] = {}
    for t in tables:
        for f in chosen:
            if f.kind == "table":
                files[f"{folder}/{t.id}{f.suffix}"] = f.render(t, (sources or {}).get(t.id, estimates))
    for f in chosen:
        if f.kind == "workbook":
            files[f"{folder}/{f.suffix}"] = f.render(
                tables, estimates, title=title, wave=wave, notice=notice, created=created, methods_markdown=methods_markdown
            )
    return files

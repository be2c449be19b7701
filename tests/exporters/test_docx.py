"""The Word document of the tables (pipeline.exporters.docx): real Word tables read back with
python-docx, repeated header rows, merged spanners, the methods statement's Markdown, deterministic
bytes. The demo's document is traced to estimates.csv and opened in LibreOffice in
tests/stages/test_export_demo.py."""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from pipeline.config import BannerSpec, TablesConfig, ToplineSpec
from pipeline.exporters.docx import document_bytes, markdown_blocks
from pipeline.exporters.tables import banner_table, topline_table
from pipeline.stages.estimate import compare_columns

TABLES = TablesConfig(labels={"REGION": "Region"})
METHODS = """# Methods statement

> **SYNTHETIC DATA.**

**Sponsor.** No sponsor, *simulated* interviews.

- first point
- second point

## Margin of sampling error by subgroup

| group | subgroup | n | margin of error (±) |
|---|---|---:|---:|
| All | All | 900 | 3.9 |
"""


@pytest.fixture
def tables(estimates):
    topline = topline_table(estimates, ToplineSpec(id="topline"), TABLES, title="Study", wave="1", notice="SYNTHETIC")
    spec = BannerSpec(id="b", columns=((), ("REGION",)))
    cmp = compare_columns(estimates, ["q_agree", "q_often"], spec.columns, method="independent")
    banner = banner_table(estimates, spec, TABLES, comparisons=cmp, wave="1", letters_note="letters")
    return topline, banner


def _read(data: bytes):
    import docx

    return docx.Document(io.BytesIO(data))


def _is_header(row) -> bool:
    from docx.oxml.ns import qn

    return row._tr.trPr is not None and row._tr.trPr.find(qn("w:tblHeader")) is not None


def test_tables_are_word_tables_with_the_cells_of_the_model(tables):
    import datetime as dt

    from docx.enum.text import WD_ALIGN_PARAGRAPH

    topline, banner = tables
    doc = _read(document_bytes(tables, title="Study", wave="1", notice="SYNTHETIC", methods_markdown=METHODS, created=dt.datetime(2012, 11, 30)))
    wt_top, wt_banner, wt_methods = doc.tables
    assert [_is_header(r) for r in wt_top.rows] == [True] + [False] * (len(wt_top.rows) - 1)
    assert [c.text for c in wt_top.rows[0].cells] == [c.label for c in topline.columns]
    body = [[c.text for c in r.cells] for r in wt_top.rows[1:] if len({id(c._tc) for c in r.cells}) > 1]
    assert body == [[c.text for c in r.cells] for r in topline.rows]  # every cell, marks and suppression included
    groups = [r.cells[0] for r in wt_top.rows if len({id(c._tc) for c in r.cells}) == 1]
    assert [g.paragraphs[0].text for g in groups] == [g for g, _ in topline.row_groups()]
    assert all(g.paragraphs[0].runs[0].bold for g in groups)
    # banner: the spanner row (Region over its three columns), then the labels with their letters
    assert [_is_header(r) for r in wt_banner.rows[:3]] == [True, True, False]
    assert [c.text for c in wt_banner.rows[0].cells] == ["", "", "Region", "Region", "Region"]
    assert wt_banner.rows[0].cells[2]._tc is wt_banner.rows[0].cells[4]._tc
    assert [c.text for c in wt_banner.rows[1].cells] == ["", "Total", "North (A)", "South (B)", "East (C)"]
    first = next(r for r in wt_banner.rows[2:] if len({id(c._tc) for c in r.cells}) > 1)
    assert [c.text for c in first.cells] == ["Agree", "44", "31", "55† A", "*"]
    assert [c.paragraphs[0].alignment for c in first.cells] == [None] + [WD_ALIGN_PARAGRAPH.RIGHT] * 4
    text = [p.text for p in doc.paragraphs]
    for note in (*topline.footnotes, *banner.notes):
        assert note in text
    assert "Sponsor. No sponsor, simulated interviews." in text and "first point" in text
    heads = [p.text for p in doc.paragraphs if p.style.name.startswith("Heading")]
    assert heads[-2:] == ["Methods statement", "Margin of sampling error by subgroup"]
    assert [[c.text for c in r.cells] for r in wt_methods.rows] == [["group", "subgroup", "n", "margin of error (±)"], ["All", "All", "900", "3.9"]]
    assert _is_header(wt_methods.rows[0]) and doc.core_properties.created.replace(tzinfo=None) == dt.datetime(2012, 11, 30)


def test_same_tables_give_the_same_bytes(tables):
    """Later than the ZIP format's two-second resolution, the bytes are the same (no clock in them)."""
    first = document_bytes(tables, title="Study", wave="1", methods_markdown=METHODS)
    time.sleep(2.1)
    assert document_bytes(tables, title="Study", wave="1", methods_markdown=METHODS) == first
    assert {i.date_time for i in zipfile.ZipFile(io.BytesIO(first)).infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert document_bytes(tables, title="Other", wave="1") != first


def test_markdown_blocks_of_the_methods_statement():
    assert markdown_blocks(METHODS) == [
        ("heading", (1, "Methods statement")),
        ("quote", "**SYNTHETIC DATA.**"),
        ("paragraph", "**Sponsor.** No sponsor, *simulated* interviews."),
        ("bullet", "first point"),
        ("bullet", "second point"),
        ("heading", (2, "Margin of sampling error by subgroup")),
        ("table", (["group", "subgroup", "n", "margin of error (±)"], [["All", "All", "900", "3.9"]], [False, False, True, True])),
    ]

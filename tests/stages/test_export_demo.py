"""The export stage on the demo study: every output is there, and every number in the Markdown,
HTML, Excel and Word tables traces back to one row of estimates.csv; the analysis files read back; the
report renders in headless Chromium with the headline numbers and no console errors; LibreOffice
converts the Word document to PDF."""

from __future__ import annotations

import html.parser
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest


ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
#: LibreOffice (Debian's libreoffice-writer-nogui, installed by .ci/run) opens the Word document
SOFFICE = shutil.which("soffice")
HEADLINES = ("contact_police_less_likely", "afraid_leave_home")
#: xlsxwriter writes numbers with 16 significant digits (Excel keeps 15): the last bit may differ
EXCEL_REL_TOL = 1e-14


@pytest.fixture(scope="module")
def wave_dir(demo_project) -> Path:
    return demo_project / "outputs" / "insecure_communities" / "2012"


@pytest.fixture(scope="module")
def estimates(wave_dir) -> pl.DataFrame:
    from pipeline.exporters.tables import read_estimates

    return read_estimates(wave_dir / "estimates.csv")


def test_every_output_is_written(wave_dir):
    expected = [
        "tables/topline.csv", "tables/topline.md", "tables/topline.html", "tables/topline.tex",
        "tables/banner.csv", "tables/banner.md", "tables/banner.html", "tables/banner.tex",
        "tables/comparisons.csv", "tables/tables.xlsx", "tables/tables.docx",
        "analysis/insecure_communities_2012.sav", "analysis/insecure_communities_2012.dta",
        *[f"charts/{c}.{x}" for c in (*HEADLINES, "weighting") for x in ("png", "svg")],
        "methods.md", "report.html",
    ]
    missing = [f for f in expected if not (wave_dir / f).is_file()]
    assert missing == []
    assert (wave_dir / "charts" / "weighting.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (wave_dir / "charts" / "afraid_leave_home.svg").read_text().lstrip().startswith("<?xml")


# ------------------------------------------------------------------ tracing numbers to estimates.csv


def pct(x: float) -> str:
    return f"{100 * x:.0f}"  # the demo's tables.decimals is 0


def number(x: float, src: dict, *, signed: bool = False) -> str:
    """A value as the demo's tables show its statistic (tables.decimals 0), computed here
    independently: shares and differences of shares in percent, means and quantiles with one
    decimal, totals whole with thousands separators."""
    statistic = src["statistic"]
    if statistic in ("proportion", "difference"):  # the demo's differences are of shares
        text = f"{100 * x:{'+' if signed and statistic == 'difference' else ''}.0f}"
    elif statistic == "total":
        text = f"{x:,.0f}"
    else:
        text = f"{x:,.1f}"
    return text


def expected_text(field: str, src: dict) -> str:
    """What a cell shows for a field of an estimates.csv row, computed here independently."""
    if field == "n":
        return f"{src['n']:,}"
    if field == "ci":
        return f"{number(src['ci_low'], src)}–{number(src['ci_high'], src)}"
    if field == "moe":
        half = (src["ci_high"] - src["ci_low"]) / 2
        if src["statistic"] in ("proportion", "difference"):
            return f"±{100 * half:.1f}"
        return f"±{half:,.0f}" if src["statistic"] == "total" else f"±{half:,.1f}"
    return number(src["estimate"], src, signed=True)


def check_cell(text: str, field: str, src: dict) -> None:
    if text == "*":
        from pipeline.flags import is_suppressed

        assert is_suppressed(src["flag"]) and field != "n", (text, field, src)
        return
    if field == "estimate":
        value = re.match(r"^[+-]?[\d,]+(\.\d+)?", text).group(0)  # then footnote marks and significance letters
        assert value == expected_text(field, src), (text, src)
    else:
        assert text == expected_text(field, src), (text, field, src)


def provenance(wave_dir: Path, table: str) -> list[list[dict]]:
    """The tidy table's cells, grouped by table row: which estimates.csv row and field each shows."""
    f = pl.read_csv(wave_dir / "tables" / f"{table}.csv", infer_schema_length=None, schema_overrides={"by": pl.String, "flag": pl.String})
    return [part.sort("column").to_dicts() for _, part in f.group_by("row", maintain_order=True)]


def check_rows(rendered: list[list[str]], wave_dir: Path, table: str, estimates: pl.DataFrame, n_labels: int) -> int:
    cells = provenance(wave_dir, table)
    assert len(rendered) == len(cells), table
    by_row = {r["_row"]: r for r in estimates.iter_rows(named=True)}
    checked = 0
    for shown, prov in zip(rendered, cells, strict=True):
        columns = pl.DataFrame(prov).get_column("column").to_list()
        numeric = shown[n_labels:]
        assert len(numeric) == len(prov)
        order = {c["column"]: c for c in prov}
        for key, text in zip(_column_order(wave_dir, table, columns), numeric, strict=True):
            c = order[key]
            if c["source_row"] is None:
                assert text == "–"
                continue
            src = by_row[c["source_row"]]
            if table == "topline":  # the row's labels name the estimate's domain
                assert shown[1] == src["domain"].replace("*", ", ")
            else:
                assert c["column_label"] in ("Total", src["domain"].replace("*", ", "))
            check_cell(text, c["field"], src)
            checked += 1
    return checked


def _column_order(wave_dir: Path, table: str, columns: list[str]) -> list[str]:
    f = pl.read_csv(wave_dir / "tables" / f"{table}.csv", infer_schema_length=None)
    return f.filter(pl.col("row") == 0).get_column("column").to_list()


def markdown_rows(text: str) -> list[list[str]]:
    out, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("| ") or (i + 1 < len(lines) and lines[i + 1].startswith("|---")):
            continue
        out.append([c.strip().strip("*") or c.strip() for c in line.strip("|").split(" | ")])
    return out


class _Rows(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._body = False
        self._group = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tbody":
            self._body = True
        elif tag == "tr" and self._body:
            self._group = "gt_group_heading_row" in (a.get("class") or "")
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._body = False
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            if not self._group:
                self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def html_rows(text: str) -> list[list[str]]:
    p = _Rows()
    p.feed(text)
    return p.rows


@pytest.mark.parametrize("table,n_labels", [("topline", 3), ("banner", 1)])
def test_markdown_numbers_trace_to_estimates(wave_dir, estimates, table, n_labels):
    rows = markdown_rows((wave_dir / "tables" / f"{table}.md").read_text(encoding="utf-8"))
    assert check_rows(rows, wave_dir, table, estimates, n_labels) > 30


@pytest.mark.parametrize("table,n_labels", [("topline", 3), ("banner", 1)])
def test_html_numbers_trace_to_estimates(wave_dir, estimates, table, n_labels):
    rows = html_rows((wave_dir / "tables" / f"{table}.html").read_text(encoding="utf-8"))
    assert check_rows(rows, wave_dir, table, estimates, n_labels) > 30


def test_topline_shows_each_row_once_with_its_question(wave_dir, estimates):
    text = (wave_dir / "tables" / "topline.md").read_text(encoding="utf-8")
    for est_id in HEADLINES:
        row = estimates.filter((pl.col("estimate_id") == est_id) & (pl.col("domain") == "All")).row(0, named=True)
        assert f"| All | All | {row['level']} | {row['n']:,} | {pct(row['estimate'])} | {pct(row['ci_low'])}–{pct(row['ci_high'])} |" in text
        assert row["title"] in text
    assert "I am less likely to contact police officers" in text  # the question wording
    assert "SYNTHETIC DATA" in text
    suppressed = estimates.filter(pl.col("flag").str.contains("n_eff<30"))
    assert suppressed.height >= 5 and "\\* Suppressed: effective sample size below 30 (NCHS standard)" in text


def test_banner_letters_come_from_the_design_based_tests(wave_dir):
    cmp = pl.read_csv(wave_dir / "tables" / "comparisons.csv")
    assert set(cmp.get_column("method").to_list()) == {"design"}
    assert cmp.filter(pl.col("significant")).height > 10
    undocumented = cmp.filter((pl.col("estimate_id") == "contact_police_less_likely") & (pl.col("domain_a") == "U.S.-born") & (pl.col("domain_b") == "Foreign-born undocumented"))
    assert undocumented.row(0, named=True)["significant"]
    text = (wave_dir / "tables" / "banner.md").read_text(encoding="utf-8")
    assert "design-based t test of the difference" in text
    manifest = json.loads((wave_dir.parent / "manifest.json").read_text())
    diag = manifest["waves"]["2012"]["export"]["diagnostics"]
    assert diag["significance_method"] == "design" and diag["suppressed_cells"] > 0


# ------------------------------------------------------------------ Excel


def test_workbook_sheets_formats_and_numbers(wave_dir, estimates):
    import openpyxl

    wb = openpyxl.load_workbook(wave_dir / "tables" / "tables.xlsx")
    assert wb.sheetnames == ["About", "topline", "banner", "q10a_by_status", "contact_police_model", "afraid_leave_home_model"]
    values = {(r["_row"], f): r[f] for r in estimates.iter_rows(named=True) for f in ("estimate", "ci_low", "ci_high", "n")}
    numbers = set(values.values()) | {(r["ci_high"] - r["ci_low"]) / 2 for r in estimates.iter_rows(named=True)}
    for name in ("topline", "banner"):
        ws = wb[name]
        assert ws.freeze_panes is not None and ws.freeze_panes != "A1"
        checked = 0
        for row in ws.iter_rows(min_row=4):
            for c in row:
                if isinstance(c.value, (int, float)) and not isinstance(c.value, bool):
                    assert any(math.isclose(c.value, x, rel_tol=EXCEL_REL_TOL) for x in numbers), (name, c.coordinate, c.value)
                    checked += 1
        assert checked > 40
    topline = wb["topline"]
    header = next(r for r in topline.iter_rows(min_row=1, max_row=8) if r[0].value == "group")
    cols = {c.value: c.column for c in header}
    pct_col = cols["estimate"]  # "%" when every row is a share
    first = next(r for r in topline.iter_rows(min_row=header[0].row + 1) if r[0].value == "All" and isinstance(r[pct_col - 1].value, float))
    cell = first[pct_col - 1]
    overall = estimates.filter((pl.col("estimate_id") == "contact_police_less_likely") & (pl.col("domain") == "All")).row(0, named=True)
    assert cell.value == pytest.approx(overall["estimate"], rel=EXCEL_REL_TOL) and cell.number_format.startswith("0%")
    assert first[cols["n"] - 1].value == overall["n"] and first[cols["n"] - 1].number_format == "#,##0"
    assert first[cols["95% CI low"] - 1].value == pytest.approx(overall["ci_low"], rel=EXCEL_REL_TOL)
    assert first[cols["95% CI high"] - 1].value == pytest.approx(overall["ci_high"], rel=EXCEL_REL_TOL)
    banner = wb["banner"]
    lettered = [c for r in banner.iter_rows() for c in r if isinstance(c.value, float) and '" ' in (c.number_format or "")]
    assert lettered, "significance letters are part of the number format"
    assert any("SYNTHETIC DATA" in str(c.value) for r in wb["About"].iter_rows() for c in r)


# ------------------------------------------------------------------ analysis files


@pytest.mark.parametrize("suffix", [".sav", ".dta"])
def test_analysis_file_reads_back_with_labels_and_weights(wave_dir, suffix):
    import pyreadstat

    path = wave_dir / "analysis" / f"insecure_communities_2012{suffix}"
    reader = pyreadstat.read_sav if suffix == ".sav" else pyreadstat.read_dta
    frame, meta = reader(str(path), output_format="polars", **({"user_missing": True} if suffix == ".sav" else {}))
    weighted = pl.read_parquet(wave_dir / "weight" / "data.parquet")
    assert frame.height == weighted.height
    # only the weights of export.weights: not w_base, nor the weight before calibration (issue 14, item 5)
    from pipeline.exporters.spss import WEIGHT_COLUMNS
    from pipeline.stages._common import UNCALIBRATED

    assert UNCALIBRATED in WEIGHT_COLUMNS and "w_uncalibrated" in weighted.columns
    assert sorted(c for c in frame.columns if c.startswith("w_")) == ["w_final", "w_pop"] and "raw_row" not in frame.columns
    assert "PHONE_HASH" not in frame.columns
    assert frame.get_column("w_final").sum() == pytest.approx(weighted.height)
    assert frame.get_column("w_pop").to_list() == pytest.approx(weighted.get_column("w_pop").to_list())
    assert meta.column_names_to_labels["COUNTY"] == "County of residence"
    assert meta.column_names_to_labels["Q10A"].startswith("Q10A. I am less likely to contact police")
    assert meta.variable_value_labels["COUNTY"] == {1: "Cook", 2: "Harris", 3: "Los Angeles", 4: "Maricopa"}
    assert meta.variable_value_labels["Q10A"][1] == "Strongly agree"
    if suffix == ".sav":
        assert {r["lo"] for r in meta.missing_ranges["Q10A"]} >= {8.0, 9.0}
        assert any("SYNTHETIC" in n for n in meta.notes)


# ------------------------------------------------------------------ methods and report


def test_methods_statement_has_the_aapor_elements(wave_dir):
    text = (wave_dir / "methods.md").read_text(encoding="utf-8")
    for element in ("Sponsor", "Conducted by", "Population", "Dates of data collection", "Sampling frame", "Sample design",
                    "Mode and languages", "Sample size", "Weighting", "Precision", "Response rate", "Contact"):
        assert f"**{element}.**" in text, element
    assert "17 November 2012 to 10 December 2012" in text and "English, Spanish" in text
    assert "Kish): 2." in text and "Margin of sampling error" in text
    assert "| County | Cook |" in text and "| Immigration status | Foreign-born undocumented |" in text
    assert "SYNTHETIC DATA" in text and "not stated" not in text


def test_report_is_self_contained(wave_dir):
    text = (wave_dir / "report.html").read_text(encoding="utf-8")
    assert "<script" not in text and "@import" not in text
    assert not re.search(r'(?:src|href)="https?://', text)
    assert text.count("<svg") == 3 and "Weighting check" in text and "Cleaning summary" in text


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_in_headless_chromium(wave_dir, estimates, tmp_path):
    url = (wave_dir / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for est_id in HEADLINES:
        row = estimates.filter((pl.col("estimate_id") == est_id) & (pl.col("domain") == "All")).row(0, named=True)
        assert f">{pct(row['estimate'])}<" in dom.stdout and f"{pct(row['ci_low'])}–{pct(row['ci_high'])}" in dom.stdout
    assert "SYNTHETIC DATA" in dom.stdout
    run = subprocess.run([str(CHROMIUM), *flags, f"--screenshot={shot}", "--window-size=1280,2000", url],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    for log in (dom.stderr, run.stderr):
        assert "Uncaught" not in log
        assert not re.search(r"console error|CONSOLE\(\d+\)", log, re.I), log[-2000:]


# ------------------------------------------------------------------ the Word document (issue 14, item 3)


def _header_row(row) -> bool:
    return row._tr.trPr is not None and row._tr.trPr.find(qn("w:tblHeader")) is not None


def qn(tag: str) -> str:
    from docx.oxml.ns import qn as _qn

    return _qn(tag)


def word_rows(wt) -> list[list[str]]:
    """A Word table's body rows as texts: its repeated header rows and the bold full-width rows of
    the row groups (one cell merged across the table) left out."""
    out = []
    for row in wt.rows:
        if _header_row(row) or len({id(c._tc) for c in row.cells}) == 1:
            continue
        out.append([c.text for c in row.cells])
    return out


@pytest.fixture(scope="module")
def word(wave_dir):
    import docx

    return docx.Document(str(wave_dir / "tables" / "tables.docx"))


@pytest.mark.parametrize("index,table,n_labels", [(0, "topline", 3), (1, "banner", 1)])
def test_word_numbers_trace_to_estimates(word, wave_dir, estimates, index, table, n_labels):
    """Every number of the document's topline and banner, read back with python-docx, is the rounding
    of the estimates.csv row its tidy ``tables/<id>.csv`` cell names (computed here independently)."""
    assert check_rows(word_rows(word.tables[index]), wave_dir, table, estimates, n_labels) > 30


def test_word_tables_have_repeated_headers_spanners_and_right_aligned_numbers(word, wave_dir):
    from docx.enum.text import WD_ALIGN_PARAGRAPH

    topline, banner, crosstab = word.tables[:3]
    for wt in (topline, banner, crosstab):
        assert _header_row(wt.rows[0])
    assert [_header_row(r) for r in banner.rows[:3]] == [True, True, False]  # spanners, then labels
    spanners = banner.rows[0]._tr.findall(qn("w:tc"))
    spans = [int(tc.tcPr.find(qn("w:gridSpan")).get(qn("w:val"))) if tc.tcPr is not None and tc.tcPr.find(qn("w:gridSpan")) is not None else 1
             for tc in spanners]
    assert [tc.xpath("string(.)") for tc in spanners] == ["", "County", "Immigration status"] and spans == [2, 4, 5]
    labels = [c.text for c in banner.rows[1].cells]
    assert "Cook (A)" in labels and labels[0] == ""
    lettered = [t for r in word_rows(banner) for t in r[1:] if re.fullmatch(r"[\d.,]+ [A-I]+", t)]
    md = (wave_dir / "tables" / "banner.md").read_text(encoding="utf-8")
    assert lettered and all(f"| {t} |" in md for t in lettered)  # the letters of the other formats
    body = word_rows(topline)[0]
    cells = next(r for r in topline.rows if not _header_row(r) and len({id(c._tc) for c in r.cells}) > 1).cells
    assert [c.paragraphs[0].alignment for c in cells[3:]] == [WD_ALIGN_PARAGRAPH.RIGHT] * 4 and body[3].replace(",", "").isdigit()
    assert cells[0].paragraphs[0].alignment is None
    groups = [r for r in topline.rows if len({id(c._tc) for c in r.cells}) == 1]
    assert groups and all(p.runs[0].bold for p in (r.cells[0].paragraphs[0] for r in groups))
    text = "\n".join(p.text for p in word.paragraphs)
    assert "SYNTHETIC DATA" in text and "Suppressed:" in text and "Methods" in text and "Margin of sampling error by subgroup" in text
    assert word.core_properties.created.year == 2012  # the field period's end, not the clock


def test_word_document_is_byte_identical_on_rerun(demo_project, wave_dir):
    """The export and trends stages rerun (more than the ZIP format's two-second resolution later)
    write the same bytes: the core properties and the ZIP entries carry the field period's end."""
    import time

    from pipeline.cli import main

    paths = [wave_dir / "tables" / "tables.docx", wave_dir.parent / "trends" / "tables.docx"]
    before = [p.read_bytes() for p in paths]
    time.sleep(2.1)
    cfg = str(demo_project / "configs" / "insecure_communities.yaml")
    assert main(["run", cfg, "--only", "export", "--wave", "2012", "--quiet"]) == 0
    assert main(["run", cfg, "--only", "trends", "--quiet"]) == 0
    assert [p.read_bytes() for p in paths] == before


def test_ci_has_libreoffice():
    """CI (``.ci/run`` sets ``CI=true`` and installs libreoffice-writer-nogui) must run the LibreOffice test."""
    if os.environ.get("CI") != "true":
        pytest.skip("not CI: the LibreOffice test runs where soffice is installed")
    assert SOFFICE is not None, "soffice is missing on CI: .ci/run installs libreoffice-writer-nogui"


def _pdf_pages(data: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?![A-Za-z])", data))


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice (soffice) is not installed: .ci/run installs libreoffice-writer-nogui")
def test_word_document_opens_in_libreoffice(wave_dir, estimates, tmp_path):
    """A real reader opens the document: LibreOffice headless converts it to PDF, whose pages and text
    (pdftotext, where poppler-utils is installed) hold the tables, the headline numbers and the methods."""
    profile = (tmp_path / "profile").as_uri()
    run = subprocess.run(
        [SOFFICE, f"-env:UserInstallation={profile}", "--headless", "--norestore", "--convert-to", "pdf", "--outdir", str(tmp_path),
         str(wave_dir / "tables" / "tables.docx")],
        capture_output=True, text=True, timeout=300,
    )
    pdf = tmp_path / "tables.pdf"
    assert run.returncode == 0 and pdf.is_file(), run.stdout[-2000:] + run.stderr[-2000:]
    data = pdf.read_bytes()
    assert data[:5] == b"%PDF-" and len(data) > 30_000
    assert 6 <= _pdf_pages(data) <= 30  # title page, three tables over several landscape pages, the methods
    if shutil.which("pdftotext") is None:
        return
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for est_id in HEADLINES:
        row = estimates.filter((pl.col("estimate_id") == est_id) & (pl.col("domain") == "All")).row(0, named=True)
        assert re.search(rf"\b{row['n']:,}\s+{pct(row['estimate'])}\s+{pct(row['ci_low'])}–{pct(row['ci_high'])}\b", text), est_id
    lettered = re.findall(r"\| (\d+ [A-I]+) \|", (wave_dir / "tables" / "banner.md").read_text(encoding="utf-8"))
    assert lettered
    for phrase in ("SYNTHETIC DATA", "Topline", "Attitudes by county and immigration status", "Margin of sampling error by subgroup", *lettered):
        assert phrase in " ".join(text.split()), phrase

"""One self-contained HTML report per study and wave.

The page holds, in order: the notice, the headline charts, the methods statement, every table,
the weighting check (summary, steps, chart) and the cleaning summary. Everything is inline:
CSS in a ``<style>``, charts as inline SVG (their element ids prefixed per chart so that
several charts can share the page), no scripts, no web fonts, no links to other sites. It
opens offline and prints.
"""

from __future__ import annotations

import datetime as dt
import html as _html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Chart", "inline_svg", "report_html"]

CSS = """
:root { --ink: #1d1d1d; --muted: #5f5f5f; --rule: #d9d9d9; --accent: #1f4e79; --warn: #9c0006; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink);
       margin: 0; line-height: 1.45; background: #fff; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; }
header.top { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 16px; }
h1 { font-size: 1.7rem; margin: 0 0 4px; }
h2 { font-size: 1.3rem; margin: 36px 0 10px; border-bottom: 1px solid var(--rule); padding-bottom: 4px; }
h3 { font-size: 1.05rem; margin: 22px 0 8px; }
.meta { color: var(--muted); font-size: 0.9rem; }
.notice { border: 2px solid var(--warn); color: var(--warn); background: #fff5f5; padding: 10px 14px; border-radius: 4px; }
nav ol { columns: 2; font-size: 0.92rem; padding-left: 20px; }
nav a { color: var(--accent); }
figure { margin: 16px 0 24px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 8px 24px; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); font-size: 0.85rem; }
dl { display: grid; grid-template-columns: 220px 1fr; gap: 6px 16px; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; }
table.plain { border-collapse: collapse; margin: 8px 0 16px; font-size: 0.9rem; }
table.plain th, table.plain td { border-bottom: 1px solid var(--rule); padding: 3px 10px; text-align: left; }
table.plain td.num, table.plain th.num { text-align: right; font-variant-numeric: tabular-nums; }
.table-block { margin: 20px 0 32px; overflow-x: auto; }
.kpis { display: flex; flex-wrap: wrap; gap: 12px; margin: 8px 0 16px; }
.kpi { border: 1px solid var(--rule); border-radius: 4px; padding: 8px 12px; min-width: 150px; }
.kpi .v { font-size: 1.35rem; font-weight: 600; }
.kpi .k { color: var(--muted); font-size: 0.8rem; }
footer { margin-top: 48px; color: var(--muted); font-size: 0.8rem; }
@media print { nav { display: none; } main { padding: 0; } h2 { break-after: avoid; } figure, .table-block { break-inside: avoid; } }
"""


@dataclass(frozen=True)
class Chart:
    """A chart for the report: an SVG document and its caption."""

    id: str
    title: str
    svg: str
    caption: str = ""


def inline_svg(svg: str, prefix: str) -> str:
    """An SVG document made embeddable: no XML prolog or doctype, element ids prefixed."""
    svg = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}-{m.group(1)})", svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'(?<![:\w])href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)
    return svg.strip()


def _esc(x: Any) -> str:
    return _html.escape(str(x))


def _kpi(value: str, key: str) -> str:
    return f'<div class="kpi"><div class="v">{_esc(value)}</div><div class="k">{_esc(key)}</div></div>'


def _pct(share: float | None) -> str:
    """A share as a percent with one decimal; a dash where there is none (a category without target or respondents)."""
    return "–" if share is None else f"{100 * share:.1f}"


def _weighting_section(qa: Mapping[str, Any] | None, margins: Any, chart: Chart | None) -> str:
    out = ['<section id="weighting"><h2>Weighting check</h2>']
    if not qa:
        out.append("<p>No weighting report.</p></section>")
        return "\n".join(out)
    out.append('<div class="kpis">')
    out.append(_kpi(f"{qa.get('n', 0):,}", "respondents"))
    if "kish_deff" in qa:
        out.append(_kpi(f"{qa['kish_deff']:.2f}", "Kish design effect"))
        out.append(_kpi(f"{qa['effective_n']:,.0f}", "effective sample size"))
        out.append(_kpi(f"±{100 * qa['moe_95']:.1f}", "margin of error, 95% (points)"))
    if "max_margin_error" in qa:
        out.append(_kpi(f"{qa['max_margin_error']:.1e}", "largest miss of a target"))
    if "converged" in qa:
        out.append(_kpi("yes" if qa["converged"] else "NO", f"converged ({qa.get('iterations', '?')} iterations)"))
    out.append("</div>")
    steps = qa.get("steps") or []
    if steps:
        out.append("<h3>Weights at each step</h3>")
        out.append('<table class="plain"><thead><tr><th>step</th><th class="num">min</th><th class="num">max</th>'
                   '<th class="num">max/min</th><th class="num">CV</th><th class="num">Kish deff</th><th class="num">effective n</th></tr></thead><tbody>')
        for s in steps:
            cells = [s.get("step", "")]
            for key, fmt in (("min", "{:.3g}"), ("max", "{:.3g}"), ("ratio", "{:.1f}"), ("cv", "{:.3f}"), ("kish_deff", "{:.3f}"), ("effective_n", "{:,.0f}")):
                v = s.get(key)
                cells.append(fmt.format(v) if isinstance(v, (int, float)) else "")
            out.append("<tr>" + f"<td>{_esc(cells[0])}</td>" + "".join(f'<td class="num">{_esc(c)}</td>' for c in cells[1:]) + "</tr>")
        out.append("</tbody></table>")
    imputed = qa.get("imputed") or {}
    if imputed:
        out.append("<p>Missing raking variables imputed (most common category of the group): "
                   + _esc(", ".join(f"{k} {v}" for k, v in imputed.items())) + ".</p>")
    if chart is not None:
        out.append(_figure(chart))
    if margins is not None and getattr(margins, "height", 0) and {"target_share", "unweighted_share", "final_share"} <= set(margins.columns):
        import polars as pl

        keys = [c for c in margins.columns if c not in ("variable", "category", "label", "target_share", "n", "unweighted_share", "base_share", "final_share", "error")]
        gap = (pl.col("unweighted_share") - pl.col("target_share")).abs()
        top = margins.with_columns(gap.alias("_gap")).sort("_gap", descending=True).head(8)
        out.append("<h3>Largest corrections made by the weights</h3>")
        out.append("<p>The raking margins where the unweighted sample was furthest from its target (all margins: weight/margins.csv).</p>")
        head = "".join(f"<th>{_esc(k)}</th>" for k in keys)
        out.append(f'<table class="plain"><thead><tr>{head}<th>variable</th><th>category</th><th class="num">target %</th>'
                   '<th class="num">unweighted %</th><th class="num">weighted %</th></tr></thead><tbody>')
        for r in top.iter_rows(named=True):
            name = r.get("label") or r["category"]
            group = "".join(f"<td>{_esc(r[k])}</td>" for k in keys)
            out.append(f"<tr>{group}<td>{_esc(r['variable'])}</td><td>{_esc(name)}</td><td class=\"num\">{_pct(r['target_share'])}</td>"
                       f"<td class=\"num\">{_pct(r['unweighted_share'])}</td><td class=\"num\">{_pct(r['final_share'])}</td></tr>")
        out.append("</tbody></table>")
    out.append("</section>")
    return "\n".join(out)


def _cleaning_section(report: Mapping[str, Any] | None) -> str:
    out = ['<section id="cleaning"><h2>Cleaning summary</h2>']
    if not report:
        out.append("<p>No cleaning report.</p></section>")
        return "\n".join(out)
    out.append('<div class="kpis">')
    for key, label in (("raw_rows", "records delivered"), ("kept_rows", "kept"), ("quarantined_rows", "quarantined")):
        if key in report:
            out.append(_kpi(f"{report[key]:,}", label))
    out.append("</div>")
    if {"raw_rows", "kept_rows", "quarantined_rows"} <= set(report):
        ok = report["raw_rows"] == report["kept_rows"] + report["quarantined_rows"]
        out.append(f"<p>Delivered = kept + quarantined: {'checked' if ok else 'DOES NOT RECONCILE'}.</p>")
    from pipeline.exporters.methods import rule_actions

    actions = rule_actions(report)
    if actions:
        out.append("<h3>Rules that applied</h3>")
        out.append('<table class="plain"><thead><tr><th>rule</th><th>what it found</th><th>action</th><th class="num">rows</th></tr></thead><tbody>')
        for action, items in actions.items():
            out += [f'<tr><td>{_esc(name)}</td><td>{_esc(kind)}</td><td>{_esc(action.replace("_", " "))}</td><td class="num">{rows:,}</td></tr>'
                    for name, kind, rows in items]
        out.append("</tbody></table>")
    oor = {k: v for k, v in (report.get("out_of_range") or {}).items() if isinstance(v, (int, float)) and v}
    if oor:
        out.append("<h3>Out-of-range answers set missing, by variable</h3>")
        out.append('<table class="plain"><thead><tr><th>variable</th><th class="num">answers</th></tr></thead><tbody>')
        out += [f'<tr><td>{_esc(k)}</td><td class="num">{v:,}</td></tr>' for k, v in oor.items()]
        out.append("</tbody></table>")
    out.append("</section>")
    return "\n".join(out)


def _figure(chart: Chart) -> str:
    caption = f"<figcaption>{_esc(chart.caption)}</figcaption>" if chart.caption else ""
    return f'<figure id="fig-{_esc(chart.id)}" aria-label="{_esc(chart.title)}">{inline_svg(chart.svg, chart.id)}{caption}</figure>'


def report_html(
    *,
    title: str,
    wave: str,
    notice: str | None,
    tables: Sequence[tuple[str, str, str]],
    charts: Sequence[Chart] = (),
    weighting_chart: Chart | None = None,
    methods: str = "",
    qa: Mapping[str, Any] | None = None,
    margins: Any = None,
    clean_report: Mapping[str, Any] | None = None,
    files: Sequence[str] = (),
    generated: dt.date | None = None,
    codebook: str = "",
) -> str:
    """The report page.

    Parameters
    ----------
    tables : sequence of (id, title, HTML fragment)
        The tables' great_tables HTML (:func:`pipeline.exporters.html.table_html_fragment`).
    charts : sequence of Chart
        Headline charts, shown first.
    methods : str
        The methods statement's HTML (:func:`pipeline.exporters.methods.methods_html`).
    files : sequence of str
        The wave's other outputs, listed (relative links) at the end.
    codebook : str
        The codebook's section (:func:`pipeline.exporters.codebook.codebook_html`: one collapsible
        ``<details>`` per variable), after the cleaning summary; empty: none.
    """
    nav = ['<nav><ol>']
    if charts:
        nav.append('<li><a href="#findings">Headline estimates</a></li>')
    if methods:
        nav.append('<li><a href="#methods">Methods statement</a></li>')
    for tid, ttitle, _ in tables:
        nav.append(f'<li><a href="#table-{_esc(tid)}">{_esc(ttitle)}</a></li>')
    nav += ['<li><a href="#weighting">Weighting check</a></li>', '<li><a href="#cleaning">Cleaning summary</a></li>']
    if codebook:
        nav.append('<li><a href="#codebook">Codebook</a></li>')
    if files:
        nav.append('<li><a href="#files">Files</a></li>')
    nav.append("</ol></nav>")
    body = [f"<header class=\"top\"><h1>{_esc(title)}</h1><div class=\"meta\">Wave {_esc(wave)}"
            + (f" · report of {generated:%d %B %Y}" if generated else "") + " · every number comes from estimates.csv</div></header>"]
    if notice:
        body.append(f'<p class="notice" role="note"><strong>{_esc(notice)}</strong></p>')
    body += nav
    if charts:
        body.append('<section id="findings"><h2>Headline estimates</h2><div class="charts">')
        body += [_figure(c) for c in charts]
        body.append("</div></section>")
    if methods:
        body.append(methods)
    if tables:
        body.append('<section id="tables"><h2>Tables</h2>')
        for tid, _, fragment in tables:
            body.append(f'<div class="table-block" id="table-{_esc(tid)}">{fragment}</div>')
        body.append("</section>")
    body.append(_weighting_section(qa, margins, weighting_chart))
    body.append(_cleaning_section(clean_report))
    if codebook:
        body.append(codebook)
    if files:
        body.append('<section id="files"><h2>Files</h2><ul>')
        body += [f'<li><a href="{_esc(f)}">{_esc(f)}</a></li>' for f in files]
        body.append("</ul></section>")
    body.append("<footer>Generated by survey-pipeline. Weighted estimates with design-based confidence intervals.</footer>")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}: wave {_esc(wave)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        + "\n".join(body)
        + "\n</main>\n</body>\n</html>\n"
    )

"""The methods statement: the AAPOR Transparency Initiative's disclosure elements for a wave.

AAPOR Code of Professional Ethics and Practices (2021), section III.A, items the Transparency
Initiative asks members to disclose with every release: who sponsored and who conducted the
survey; the population; the dates; the sampling frame and its coverage; the sample design and
how respondents were selected; the mode and languages; the sample size; the question wording
(in the tables); the weighting (variables and the sources of the targets); the precision
(design effect and margin of error, overall and for key subgroups); response rates; how the
data were cleaned; and a contact. Study facts come from the config's ``methods`` section; the
rest from the config, the targets file and the cleaning and weighting reports of the wave.

The margins of error here are those of a 50% estimate at 95% confidence with the Kish design
effect of the final weights (``1.96 * sqrt(deff * 0.25 / n)``, as the weighting report); the
tables give each estimate's own interval.
"""

from __future__ import annotations

import html as _html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import StudyConfig, Wave
    from pipeline.io import Codebook

__all__ = ["MethodsStatement", "methods_html", "methods_markdown", "methods_statement", "rule_actions", "subgroup_moe"]

MISSING = "not stated (add it to the config's methods section)"


@dataclass(frozen=True)
class MethodsStatement:
    """The statement as data: headed elements, the margin-of-error table, the notice."""

    title: str
    elements: tuple[tuple[str, str], ...]
    moe: tuple[dict[str, Any], ...] = ()
    notice: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def subgroup_moe(frame: pl.DataFrame, weights: str, groups: Sequence[str], codebook: Codebook | None, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """n, Kish design effect and 95% margin of error (p = 0.5) overall and in each subgroup."""
    import numpy as np
    import polars as pl

    from pipeline.exporters.tables import variable_label

    def row(group: str, name: str, w: np.ndarray) -> dict[str, Any]:
        n = w.size
        deff = float(n * (w**2).sum() / w.sum() ** 2) if n else float("nan")
        moe = 1.96 * float(np.sqrt(deff * 0.25 / n)) if n else float("nan")
        return {"group": group, "subgroup": name, "n": n, "kish_deff": deff, "moe": moe}

    out = [row("All", "All", frame.get_column(weights).to_numpy().astype(float))]
    for g in groups:
        if g not in frame.columns:
            continue
        title = variable_label(g, codebook, labels)
        for code in frame.get_column(g).drop_nulls().unique().sort().to_list():
            w = frame.filter(pl.col(g) == code).get_column(weights).to_numpy().astype(float)
            name = codebook.label_of(g, code) if codebook is not None else str(code)
            out.append(row(title, name, w))
    return out


def methods_statement(
    config: StudyConfig,
    wave: Wave,
    *,
    qa: Mapping[str, Any] | None,
    clean_report: Mapping[str, Any] | None,
    estimates: pl.DataFrame,
    frame: pl.DataFrame | None = None,
    codebook: Codebook | None = None,
    target_sources: Mapping[str, str] | None = None,
) -> MethodsStatement:
    """Gather the statement's elements for one wave.

    Parameters
    ----------
    qa, clean_report : mapping
        ``weight/qa.json`` and ``clean/report.json``.
    estimates : polars.DataFrame
        ``estimates.csv`` (the design effects and intervals of the estimates).
    frame : polars.DataFrame, optional
        The weighted data, for the subgroups' margins of error.
    target_sources : mapping, optional
        Raking variable -> the source of its targets (the targets file's ``source``/``year``).
    """
    m = config.methods
    labels = config.tables.labels
    el: list[tuple[str, str]] = []
    el.append(("Sponsor", m.sponsor or MISSING))
    el.append(("Conducted by", m.conducted_by or MISSING))
    el.append(("Population", m.population or MISSING))
    if wave.field_dates:
        first, last = wave.field_dates
        el.append(("Dates of data collection", f"{first:%d %B %Y} to {last:%d %B %Y}"))
    else:
        el.append(("Dates of data collection", MISSING))
    el.append(("Sampling frame", m.frame or MISSING))
    el.append(("Sample design", m.sample_design or MISSING))
    mode = m.mode or MISSING
    if m.languages:
        mode += f"; interviews in {', '.join(m.languages)}"
    el.append(("Mode and languages", mode))
    if clean_report:
        removed = rule_actions(clean_report).get("quarantine", [])
        size = (
            f"{clean_report.get('kept_rows', 0):,} completed interviews analysed, of {clean_report.get('raw_rows', 0):,} records delivered; "
            f"{clean_report.get('quarantined_rows', 0):,} removed in cleaning"
            + (" (" + ", ".join(f"{kind}: {rows:,}" for _, kind, rows in removed) + ")" if removed else "")
            + "."
        )
    elif qa:
        size = f"{qa.get('n', 0):,} completed interviews."
    else:
        size = MISSING
    el.append(("Sample size", size))
    el.append(("Question wording", "The full wording of every item reported is given with its table."))
    el.append(("Weighting", _weighting_text(config, qa, codebook, target_sources)))
    el.append(("Precision", _precision_text(config, qa, estimates)))
    el.append(("Response rate", m.response_rate or MISSING))
    if clean_report:
        el.append(("Data cleaning", _cleaning_text(clean_report)))
    el.append(("Reliability and disclosure", _reliability_text(config)))
    el.append(("Contact", m.contact or MISSING))
    moe: list[dict[str, Any]] = []
    if frame is not None and "w_final" in frame.columns:
        groups = list(m.moe_by) if m.moe_by is not None else _banner_variables(config)
        moe = subgroup_moe(frame, "w_final", groups, codebook, labels)
    title = f"Methods statement: {config.title or config.study}, wave {wave.id}"
    return MethodsStatement(title=title, elements=tuple(el), moe=tuple(moe), notice=config.notice, notes=tuple(m.notes))


def _banner_variables(config: StudyConfig) -> list[str]:
    out: list[str] = []
    specs = config.tables.banners
    lists = [by for b in specs for by in b.columns] if specs else [by for e in config.estimates for by in e.by]
    for by in lists:
        if len(by) == 1 and by[0] not in out:
            out.append(by[0])
    return out


def _weighting_text(config: StudyConfig, qa: Mapping[str, Any] | None, codebook: Codebook | None, sources: Mapping[str, str] | None) -> str:
    w = config.weight
    parts = []
    base = []
    if w.base.population_by:
        base.append(f"population / sample size within {', '.join(w.base.population_by)}")
    base += [f.name.replace("_", " ") for f in w.base.factors]
    if base:
        parts.append("Base weights: " + "; ".join(base) + ".")
    rake = w.rake
    if rake is not None:
        names = [f"{(codebook.get(v).label if codebook is not None and v in codebook and codebook.get(v).label else v)}" for v in rake.variables]
        within = f" within {', '.join(rake.by)}" if rake.by else ""
        parts.append(f"Raked{within} to population targets on: {'; '.join(names)}.")
    for key in ("poststratify", "calibrate"):
        step = getattr(w, key, None)
        if step is not None:
            parts.append(f"{key.capitalize()}: {step.model_dump(exclude_none=True)}.")
    if w.trim is not None:
        t = w.trim
        parts.append(f"Weights trimmed at {t.lower}x and {t.upper}x the {t.relative_to} of their group" + (" and raked again." if t.rerake else "."))
    if sources:
        distinct = dict.fromkeys(sources.values())
        parts.append("Target sources: " + "; ".join(distinct) + ".")
    if qa and qa.get("converged") is not None:
        parts.append(f"Raking converged: {'yes' if qa.get('converged') else 'no'} (largest margin error {qa.get('max_margin_error', float('nan')):.1e}).")
    return " ".join(parts) if parts else "Unweighted."


def _precision_text(config: StudyConfig, qa: Mapping[str, Any] | None, estimates: pl.DataFrame) -> str:
    parts = []
    if qa and "kish_deff" in qa:
        parts.append(
            f"Design effect due to weighting (Kish): {qa['kish_deff']:.2f}; effective sample size {qa['effective_n']:,.0f}. "
            f"Margin of sampling error for the full sample: ±{100 * qa['moe_95']:.1f} percentage points at the 95% level of confidence, "
            "including the design effect (for a 50% estimate; smaller for other percentages)."
        )
    if estimates.height and "deff" in estimates.columns:
        overall = estimates.filter(estimates.get_column("by") == "")
        d = overall.get_column("deff").drop_nulls()
        if d.len():
            parts.append(f"Design effects of the whole-sample estimates reported range from {d.min():.2f} to {d.max():.2f}.")
    d = config.design
    variance = "replicate weights" if d.variance == "replicate" else "Taylor linearization" + (" accounting for the weighting" if d.weighting_variance else "")
    strata = f", strata {', '.join(d.strata)}" if d.strata else ""
    parts.append(
        f"Standard errors are design-based ({variance}{strata}); confidence intervals use the {d.ci_method} method "
        f"at {100 * d.conf_level:g}%. Margins of error for subgroups are below."
    )
    return " ".join(parts)


def rule_actions(report: Mapping[str, Any]) -> dict[str, list[tuple[str, str, int]]]:
    """The cleaning rules that applied, by action: ``{action: [(rule, what it found, rows)]}``.

    Reads ``rule_details`` (each rule's ``kind``, ``action`` and ``rows``) when the report has
    them, else ``rules`` (counts of quarantined rows by reason).
    """
    out: dict[str, list[tuple[str, str, int]]] = {}
    details = report.get("rule_details")
    if isinstance(details, Mapping) and details:
        for name, d in details.items():
            rows = d.get("rows", 0) if isinstance(d, Mapping) else 0
            if isinstance(rows, int) and rows:
                out.setdefault(str(d.get("action", "quarantine")), []).append((name, str(d.get("kind") or name.replace("_", " ")), rows))
        return out
    for name, rows in (report.get("rules") or {}).items():
        if isinstance(rows, int) and rows:
            out.setdefault("quarantine", []).append((name, name.replace("_", " "), rows))
    return out


def _cleaning_text(report: Mapping[str, Any]) -> str:
    actions = rule_actions(report)
    words = {
        "quarantine": "Records removed (kept in a quarantine file with their reasons)",
        "set_missing": "Answers set missing (rows affected)",
        "flag": "Interviews flagged for review and kept",
    }
    parts = []
    for action, label in words.items():
        items = actions.get(action, [])
        parts.append(f"{label}: " + (", ".join(f"{kind} {rows:,}" for _, kind, rows in items) if items else "none") + ".")
    oor = report.get("out_of_range") or {}
    n_oor = sum(v for v in oor.values() if isinstance(v, int))
    if n_oor:
        parts.append(f"{n_oor:,} out-of-range answers were set missing.")
    parts.append("Don't know and refused answers keep their codes; each estimate states its base.")
    return " ".join(parts)


def _reliability_text(config: StudyConfig) -> str:
    t = config.tables
    r = t.reliability
    text = f"Estimates with fewer than {t.min_n} respondents in the base are suppressed"
    if r.standard == "nchs":
        text += (
            f", and so are those failing the NCHS Data Presentation Standards for Proportions (2017): effective sample size below "
            f"{r.min_effective_n:g}, Korn-Graubard confidence interval {100 * r.max_ci_width:g} points wide or more, or (above "
            f"{100 * r.ci_width_ok:g} points) wider than {100 * r.max_relative_ci_width:g}% of the estimate; estimates with fewer than "
            f"{r.min_df:g} degrees of freedom are flagged for review"
        )
    text += f". Cells with fewer than {t.disclosure.min_cell_n} respondents are suppressed to protect respondents' privacy."
    return text


def methods_markdown(statement: MethodsStatement) -> str:
    """The statement as Markdown."""
    lines = [f"# {statement.title}", ""]
    if statement.notice:
        lines += [f"> **{statement.notice}**", ""]
    for head, text in statement.elements:
        lines += [f"**{head}.** {text}", ""]
    if statement.moe:
        lines += ["## Margin of sampling error by subgroup", "", "95% confidence, for a 50% estimate, with the design effect of the weights.", ""]
        lines += ["| group | subgroup | n | design effect | margin of error (±) |", "|---|---|---:|---:|---:|"]
        for r in statement.moe:
            lines.append(f"| {r['group']} | {r['subgroup']} | {r['n']:,} | {r['kish_deff']:.2f} | {100 * r['moe']:.1f} |")
        lines.append("")
    for n in statement.notes:
        lines += [n, ""]
    return "\n".join(lines).rstrip() + "\n"


def methods_html(statement: MethodsStatement) -> str:
    """The statement as an HTML fragment (a ``<section>``)."""
    e = _html.escape
    out = ['<section id="methods" class="methods">', f"<h2>{e(statement.title)}</h2>"]
    if statement.notice:
        out.append(f'<p class="notice"><strong>{e(statement.notice)}</strong></p>')
    out.append("<dl>")
    for head, text in statement.elements:
        out.append(f"<dt>{e(head)}</dt><dd>{e(text)}</dd>")
    out.append("</dl>")
    if statement.moe:
        out.append("<h3>Margin of sampling error by subgroup</h3>")
        out.append("<p>95% confidence, for a 50% estimate, with the design effect of the weights.</p>")
        out.append('<table class="plain"><thead><tr><th>group</th><th>subgroup</th><th>n</th><th>design effect</th><th>margin of error (±)</th></tr></thead><tbody>')
        for r in statement.moe:
            out.append(
                f"<tr><td>{e(str(r['group']))}</td><td>{e(str(r['subgroup']))}</td><td class=\"num\">{r['n']:,}</td>"
                f"<td class=\"num\">{r['kish_deff']:.2f}</td><td class=\"num\">{100 * r['moe']:.1f}</td></tr>"
            )
        out.append("</tbody></table>")
    for n in statement.notes:
        out.append(f"<p>{e(n)}</p>")
    out.append("</section>")
    return "\n".join(out)

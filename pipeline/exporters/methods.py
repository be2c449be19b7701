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


def _label_of(v: str, codebook: Codebook | None) -> str:
    return str(codebook.get(v).label) if codebook is not None and v in codebook and codebook.get(v).label else v


#: calibration key -> (what it did, the noun of its convergence)
_CALIBRATED = {"rake": ("Raked", "Raking"), "poststratify": ("Post-stratified", "Post-stratification"), "calibrate": ("Calibrated", "Calibration")}
#: calibrate.method -> its distance in words
_DISTANCES = {"linear": "linear distance (GREG)", "raking": "raking distance", "logit": "logit distance"}


def _weighting_text(config: StudyConfig, qa: Mapping[str, Any] | None, codebook: Codebook | None, sources: Mapping[str, str] | None) -> str:
    w = config.weight
    parts = []
    base = []
    if w.base.population_by:
        base.append(f"population / sample size within {', '.join(w.base.population_by)}")
    base += [f.name.replace("_", " ") for f in w.base.factors]
    if base:
        parts.append("Base weights: " + "; ".join(base) + ".")
    calibration = w.calibration
    if calibration is not None:
        key, step = calibration
        did, _ = _CALIBRATED[key]
        within = f" within {', '.join(step.by)}" if step.by else ""
        names = "; ".join(_label_of(v, codebook) for v in step.variables)
        how = ""
        if key == "calibrate":
            how = f" ({_DISTANCES[step.method]}" + (f"; g-weights bounded to {step.bounds[0]:g}-{step.bounds[1]:g}" if step.bounds else "") + ")"
        parts.append(f"{did}{within} to population targets on: {names}{how}.")
    if w.trim is not None:
        parts.append(_trim_text(w.trim, calibration[0] if calibration is not None else None))
    if sources:
        distinct = dict.fromkeys(sources.values())
        parts.append("Target sources: " + "; ".join(distinct) + ".")
    if calibration is not None and qa and qa.get("converged") is not None and calibration[0] != "poststratify":
        error = qa.get("max_margin_error")
        parts.append(
            f"{_CALIBRATED[calibration[0]][1]} converged: {'yes' if qa.get('converged') else 'no'}"
            + (f" (largest margin error {error:.1e})." if isinstance(error, (int, float)) else ".")
        )
    return " ".join(parts) if parts else "Unweighted."


def _trim_text(t: Any, calibration: str | None) -> str:
    """The trimming in words, for a lower cap, an upper cap or both (never "None")."""
    if t.relative_to == "absolute":
        of = ""  # the caps are weights
    else:
        of = f"x the {t.relative_to} weight " + (f"of their {', '.join(t.by)} group" if t.by else "of the sample")
    if t.lower is not None and t.upper is not None:
        text = f"Weights trimmed to between {t.lower:g}{'x' if of else ''} and {t.upper:g}{of}"
    elif t.upper is not None:
        text = f"Weights capped at {t.upper:g}{of} (no lower cap)"
    else:
        text = f"Weights raised to at least {t.lower:g}{of} (no upper cap)"
    text += ", the trimmed amount spread over the other weights" + (" of the group" if t.by else "")
    if t.strict:
        text += ", repeated until every weight is within the caps"
    if t.rerake and calibration is not None:
        again = {"rake": "raked", "poststratify": "post-stratified", "calibrate": "calibrated"}[calibration]
        text += f"; then {again} again" + (f" (at most {t.cycles} trimming cycles)" if t.cycles > 1 else "")
    return text + "."


def _precision_text(config: StudyConfig, qa: Mapping[str, Any] | None, estimates: pl.DataFrame) -> str:
    from pipeline.flags import is_calibrated

    parts = []
    if qa and "kish_deff" in qa:
        parts.append(
            f"Design effect due to weighting (Kish): {qa['kish_deff']:.2f}; effective sample size {qa['effective_n']:,.0f}. "
            f"Margin of sampling error for the full sample: ±{100 * qa['moe_95']:.1f} percentage points at the 95% level of confidence, "
            "including the design effect (for a 50% estimate; smaller for other percentages)."
        )
    if estimates.height and "deff" in estimates.columns:
        overall = [r for r in estimates.filter(estimates.get_column("by") == "").iter_rows(named=True) if r.get("deff") is not None]
        calibrated = [r for r in overall if is_calibrated(r)]
        d = [r["deff"] for r in overall if not is_calibrated(r) and r["deff"] == r["deff"]]
        left_out = (
            f" ({len(calibrated)} estimate{'s' if len(calibrated) != 1 else ''} calibrated to the weighting targets, "
            "with no sampling variance, left out)" if calibrated else ""
        )
        if d:
            parts.append(f"Design effects of the whole-sample estimates reported range from {min(d):.2f} to {max(d):.2f}{left_out}.")
        elif calibrated:
            parts.append("Every whole-sample estimate reported is calibrated to the weighting targets (no sampling variance).")
    parts.append(_variance_text(config))
    d = config.design
    parts.append(f"Confidence intervals use the {d.ci_method} method at {100 * d.conf_level:g}%. Margins of error for subgroups are below.")
    return " ".join(parts)


#: design.lonely_psu -> what R survey's survey.lonely.psu option does with a single-PSU stratum
_LONELY_PSU = {
    "fail": "a stratum with a single PSU stops the run",
    "remove": "a stratum with a single PSU adds nothing to the variance",
    "adjust": "a stratum with a single PSU is centred at the sample mean",
    "average": "a stratum with a single PSU gets the average variance of the other strata",
    "certainty": "a stratum with a single PSU is taken with certainty (no variance)",
}


def _variance_text(config: StudyConfig) -> str:
    """How the standard errors were computed, from the config: the design the SEs use."""
    d = config.design
    if d.variance == "replicate" and d.replicates is not None:
        r = d.replicates
        if r.build is not None:
            count = f"{r.replicates} " if r.replicates else ""
            text = (
                f"Standard errors are design-based, from {count}{r.build} replicate weights built from a design with "
                f"{_design_words(d)}, the whole weighting redone in every replicate"
            )
        else:
            text = f"Standard errors are design-based, from the delivery's {r.type} replicate weights (as R survey svrepdesign)"
        return text + (", as mean squared errors about the full-sample estimate" if r.mse else "") + "."
    text = f"Standard errors are design-based: Taylor linearization (as R survey svydesign) on a design with {_design_words(d)}."
    if d.strata:
        text += f" {_LONELY_PSU[d.lonely_psu][0].upper()}{_LONELY_PSU[d.lonely_psu][1:]}."
    calibration = config.weight.calibration
    if calibration is not None and d.weighting_variance:
        key = calibration[0]
        residuals = {"rake": "raking", "poststratify": "post-stratification", "calibrate": "GREG calibration"}[key]
        call = {"rake": "rake()", "poststratify": "postStratify()", "calibrate": "calibrate()"}[key]
        text += f" The linearization uses the {residuals} residuals of the final weights, so the standard errors account for the {_CALIBRATED[key][1].lower()}"
        trim = config.weight.trim
        fixed = (["the nonresponse adjustment"] if config.weight.nonresponse is not None else []) + (["the trimming"] if trim is not None else [])
        if trim is not None and trim.rerake:
            fixed.append(f"the {residuals} before it")
        if fixed:
            text += f" ({', '.join(fixed[:-1]) + ' and ' + fixed[-1] if len(fixed) > 1 else fixed[0]} held fixed)"
        if trim is not None and trim.rerake:
            text += (
                f": R survey's standard errors after {call} on a design started afresh from the trimmed weights, not after R's chain "
                f"{call}, trimWeights(), {call}, which keeps both calibration records ("
                + ("up to 2% different)" if key == "rake" else "different)")
            )
        else:
            text += f", as R survey after {call}"
        text += "."
    elif calibration is not None:
        text += " The weights are treated as fixed (the calibration is not accounted for)."
    return text


def _design_words(d: Any) -> str:
    words = [f"strata {', '.join(d.strata)}" if d.strata else "no strata"]
    if d.ids:
        stages = [f"primary sampling units (clusters) {d.ids[0]}"] + [f"stage-{k + 2} units {v}" for k, v in enumerate(d.ids[1:])]
        words.append(", ".join(stages) + (" nested in strata" if d.nest else ""))
    else:
        words.append("each interview its own sampling unit (no clustering)")
    words.append("finite population corrections " + ", ".join(d.fpc) if d.fpc else "no finite population correction (sampling with replacement)")
    return ", ".join(words[:-1]) + " and " + words[-1]


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

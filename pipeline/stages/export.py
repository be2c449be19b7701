"""Export: publication outputs of a wave, built from the tidy ``estimates.csv``.

``estimates.csv`` is the single source of every number in the tables and charts. The stage
builds the configured tables (:mod:`pipeline.exporters.tables`: toplines, banners with
significance letters) and writes what ``export.formats`` asks for, under the wave's folder
(tables across waves are the study-level trends stage's, under ``trends/``, so that adding a
wave never reruns an earlier wave's export):

- ``csv``: ``tables/<id>.csv`` (each table as tidy data, one row per cell, with the
  estimates.csv row it shows), ``tables/comparisons.csv`` (the banners' pairwise tests, the
  source of their letters);
- ``markdown``, ``html``, ``latex``: ``tables/<id>.md``, ``.html``, ``.tex`` (great_tables);
- ``xlsx``: ``tables/tables.xlsx``, one sheet per table;
- ``docx``: ``tables/tables.docx``, a Word document of every table, then the methods statement;
- ``sav``, ``dta``: ``analysis/<study>_<wave>.sav``, ``.dta``, the weighted respondents with labels;
- ``png``, ``svg``: ``charts/<estimate id>.*`` (by subgroup) and ``charts/weighting.*`` (targets);
- ``methods``: ``methods.md``, the AAPOR Transparency Initiative statement;
- ``report``: ``report.html``, one self-contained page (charts, methods, tables, weighting, cleaning);
- ``codebook``: ``codebook/codebook.md``, ``.xlsx``, ``.csv`` (and a collapsible section of the
  report): every variable with weighted frequencies (:mod:`pipeline.exporters.codebook`). It is the
  one output that needs a design: built here from the weighted data as the estimate stage builds
  it (:func:`pipeline.stages._common.build_design`, ``replicate_design``), with the clean stage's
  ``missing_reasons.parquet`` for the missing values by reason.

Besides ``estimates.csv`` it reads the estimate stage's codebook (question wording, labels),
its ``estimate/comparisons.csv`` (the banners' tests, made in the estimate stage's design pass:
this stage builds no design) and ``association_tests.csv``, the crosstabs' cells and tests
(``estimate/crosstabs.csv``, ``estimate/crosstab_tests.csv``: ``tables/<id>.*`` in every table
format, as banners), and, for the analysis file, the methods statement and the report, the
weight stage's data, ``qa.json`` and ``margins.csv`` and the clean stage's ``report.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.stages import Reads, StageContext, StageOutput

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import StudyConfig, Wave
    from pipeline.exporters.tables import Table
    from pipeline.io import Codebook


@dataclass(frozen=True)
class Publication:
    """The tables of a wave, the tests behind their letters, and the rows the cells of tables not
    drawn from estimates.csv point to (``sources``: table id -> rows; crosstabs)."""

    tables: tuple[Table, ...]
    comparisons: pl.DataFrame
    sources: Mapping[str, pl.DataFrame] = field(default_factory=dict)


def build_tables(
    estimates: pl.DataFrame,
    config: StudyConfig,
    *,
    wave: str,
    codebook: Codebook | None = None,
    comparisons: pl.DataFrame | None = None,
    association: pl.DataFrame | None = None,
    crosstabs: pl.DataFrame | None = None,
    crosstab_tests: pl.DataFrame | None = None,
    models: pl.DataFrame | None = None,
    model_tests: pl.DataFrame | None = None,
    model_margins: pl.DataFrame | None = None,
) -> Publication:
    """Every configured table of a wave.

    Parameters
    ----------
    estimates : polars.DataFrame
        The wave's ``estimates.csv`` (:func:`pipeline.exporters.tables.read_estimates`).
    config : StudyConfig
    wave : str
    codebook : Codebook, optional
        Question wording and variable labels.
    comparisons : polars.DataFrame, optional
        The estimate stage's ``estimate/comparisons.csv``
        (:func:`pipeline.exporters.significance.read_comparisons`): the tests behind the
        banners' letters, made as ``tables.significance`` says; without it the banners have no letters.
    association : polars.DataFrame, optional
        ``estimate/association_tests.csv`` (the banners' notes).
    crosstabs, crosstab_tests : polars.DataFrame, optional
        ``estimate/crosstabs.csv`` and ``estimate/crosstab_tests.csv``: a table per crosstab of
        ``tables.crosstabs`` the wave made (:func:`pipeline.exporters.crosstabs.crosstab_table`).
    models, model_tests, model_margins : polars.DataFrame, optional
        ``models.csv``, ``estimate/model_tests.csv`` and ``estimate/model_margins.csv``: a table
        per model the wave fitted (:func:`pipeline.exporters.models.model_table`).
    """
    import polars as pl

    from pipeline.exporters.significance import COMPARISON_COLUMNS, comparison_schema, letters_note
    from pipeline.exporters.tables import banner_table, topline_table

    t = config.tables
    sig = t.significance
    common = {"codebook": codebook, "title": config.title, "notice": config.notice}
    out: list[Table] = [topline_table(estimates, spec, t, wave=wave, **common) for spec in t.toplines]
    frame = comparisons if comparisons is not None else pl.DataFrame(schema=comparison_schema())
    for spec in t.banners:
        cmp = frame.filter(pl.col("table") == spec.id).select(COMPARISON_COLUMNS)
        out.append(
            banner_table(
                estimates, spec, t, comparisons=cmp, wave=wave, letters_note=letters_note(sig.method, sig.alpha, sig.adjust),
                association=association, **common,
            )
        )
    sources: dict[str, pl.DataFrame] = {}
    if t.crosstabs and crosstabs is not None and crosstabs.height:
        from pipeline.exporters.crosstabs import crosstab_table
        from pipeline.exporters.estimates import prepare_estimates

        crosstabs = prepare_estimates(crosstabs)
        made = set(crosstabs.get_column("estimate_id").to_list())
        for spec in (c for c in t.crosstabs if c.id in made):  # a crosstab of a variable not asked in the wave is not made
            tests = crosstab_tests.filter(pl.col("estimate_id") == spec.id) if crosstab_tests is not None and crosstab_tests.height else None
            by_panel = {str(r.get("panel") or ""): r for r in tests.iter_rows(named=True)} if tests is not None else {}
            out.append(crosstab_table(crosstabs, spec, t, tests=by_panel, wave=wave, **common))
            sources[spec.id] = crosstabs
    if config.models and models is not None and models.height:
        from pipeline.exporters.models import model_table

        fitted = set(models.get_column("model_id").to_list())
        for mspec in (m for m in config.models if m.id in fitted):  # a model of a variable not asked in the wave is not fitted
            out.append(model_table(models, model_tests, mspec, t, margins=model_margins, variance=config.design.variance, wave=wave, **common))
            sources[mspec.id] = None  # type: ignore[assignment]  # its cells are text, drawn from models.csv
    return Publication(tuple(out), frame, sources)


#: the columns of weight/margins.csv that are not a raking group's key
_MARGIN_VALUES = ("variable", "category", "label", "target_share", "n", "unweighted_share", "base_share", "final_share", "error")


def _labelled_groups(margins: pl.DataFrame, codebook: Codebook) -> pl.DataFrame:
    """weight/margins.csv with its raking groups (``rake.by``: a county's code) as their labels,
    as the report and the weighting chart show them."""
    import polars as pl

    keys = [c for c in margins.columns if c not in _MARGIN_VALUES and c in codebook and codebook.get(c).value_labels]
    return margins.with_columns(
        pl.col(k).map_elements(lambda v, k=k: codebook.label_of(k, v), return_dtype=pl.String) for k in keys
    )


def _read_json(ctx: StageContext, relative: str) -> dict[str, Any] | None:
    p = ctx.path(relative)
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def _target_sources(config: StudyConfig, wave: Wave) -> dict[str, str]:
    import polars as pl

    if wave.targets is None:
        return {}
    path = config.resolve(wave.targets)
    try:
        t = pl.read_csv(path, infer_schema_length=None)
    except Exception:  # the weight stage already read it; a problem there is reported there
        return {}
    if "source" not in t.columns or "variable" not in t.columns:
        return {}
    year = pl.col("year").cast(pl.String) if "year" in t.columns else pl.lit(None, dtype=pl.String)
    rows = t.select("variable", pl.col("source").cast(pl.String), year.alias("year")).unique(maintain_order=True)
    return {r["variable"]: r["source"] + (f" ({r['year']})" if r["year"] and r["year"] not in r["source"] else "") for r in rows.iter_rows(named=True)}


def _pii_columns(config: StudyConfig) -> list[str]:
    hashed = getattr(config.ingest, "hash", None) or {}
    return [*config.ingest.pii, *hashed.keys(), *hashed.values()]


READS = Reads(
    config=("study", "title", "notice", "tables", "export", "methods", "design", "weight", "estimates", "models", "ingest.pii", "ingest.hash", "ingest.id",
            "waves[].id", "waves[].field_dates"),
    upstream=("estimates.csv", "models.csv", "estimate/", "weight/", "clean/report.json", "clean/missing_reasons.parquet"),
    files=("waves[].targets",),
)
"""The tables, formats and methods facts, and every earlier stage's artifacts it presents (the targets
file for the methods statement's sources)."""


def run(ctx: StageContext) -> StageOutput:
    import polars as pl

    from pipeline.exporters import file_timestamp
    from pipeline.exporters.formats import FORMATS, render_tables
    from pipeline.exporters.significance import COMPARISON_COLUMNS, read_comparisons
    from pipeline.exporters.tables import read_estimates
    from pipeline.exporters.values import with_decimals
    from pipeline.io import Codebook

    config, wave = ctx.config, ctx.wave
    formats = set(config.export.formats)
    est = with_decimals(read_estimates(ctx.path("estimates.csv")), {e.id: e.decimals for e in config.estimates if e.decimals is not None})
    cb_path = ctx.path("estimate/codebook.json")
    codebook = Codebook.from_json(cb_path.read_text(encoding="utf-8")) if cb_path.is_file() else None

    need_data = bool({"sav", "dta", "methods", "report", "codebook", "docx"} & formats)
    frame = ctx.read_frame("weight/data.parquet") if need_data and ctx.path("weight/data.parquet").is_file() else None
    comparisons = read_comparisons(ctx.path("estimate/comparisons.csv"), est) if config.tables.banners else None
    tests_path = ctx.path("estimate/association_tests.csv")
    association = ctx.read_frame("estimate/association_tests.csv") if tests_path.is_file() and tests_path.stat().st_size > 0 else None
    crosstabs = crosstab_tests = None
    if config.tables.crosstabs and ctx.path("estimate/crosstabs.csv").is_file():
        crosstabs = read_estimates(ctx.path("estimate/crosstabs.csv"))
        crosstab_tests = pl.read_csv(ctx.path("estimate/crosstab_tests.csv"), infer_schema_length=None,
                                     schema_overrides={"skipped": pl.String, "panel": pl.String})
    models = model_tests = model_margins = None
    if config.models and ctx.path("models.csv").is_file():
        models = pl.read_csv(ctx.path("models.csv"), infer_schema_length=None,
                             schema_overrides={c: pl.String for c in ("variable", "level", "reference", "ratio_name", "label", "term")})
        model_tests = pl.read_csv(ctx.path("estimate/model_tests.csv"), infer_schema_length=None)
        margins_path = ctx.path("estimate/model_margins.csv")
        model_margins = pl.read_csv(margins_path, infer_schema_length=None, schema_overrides={"level": pl.String, "label": pl.String}) if margins_path.is_file() else None
    pub = build_tables(
        est, config, wave=wave.id, codebook=codebook, comparisons=comparisons, association=association, crosstabs=crosstabs, crosstab_tests=crosstab_tests,
        models=models, model_tests=model_tests, model_margins=model_margins,
    )

    qa = _read_json(ctx, "weight/qa.json")
    clean_report = _read_json(ctx, "clean/report.json")
    statement = None
    if {"methods", "report", "docx"} & formats:  # the Word document ends with the methods statement
        from pipeline.exporters.methods import methods_markdown, methods_statement

        statement = methods_statement(
            config, wave, qa=qa, clean_report=clean_report, estimates=est, frame=frame, codebook=codebook,
            target_sources=_target_sources(config, wave),
        )
    files: dict[str, Any] = render_tables(
        pub.tables, formats, "tables", est, title=config.title or config.study, wave=wave.id, notice=config.notice, created=file_timestamp([wave]),
        sources=pub.sources, methods_markdown=methods_markdown(statement) if statement is not None else None,
    )
    if "csv" in formats and config.tables.banners:
        files["tables/comparisons.csv"] = pub.comparisons.select(*COMPARISON_COLUMNS, "table")
    fragments: dict[str, str] = {}
    if "report" in formats:
        from pipeline.exporters.html import table_html_fragment

        fragments = {t.id: table_html_fragment(t) for t in pub.tables}
    if {"sav", "dta"} & formats and frame is not None:
        from pipeline.exporters.spss import analysis_file

        wb = ctx.path("weight/codebook.json")
        data_codebook = Codebook.from_json(wb.read_text(encoding="utf-8")) if wb.is_file() else (codebook or Codebook())
        label = f"{config.study} wave {wave.id}" + (" (SYNTHETIC)" if config.notice and "SYNTHETIC" in config.notice.upper() else "")
        data = analysis_file(frame, data_codebook, weights=config.export.weights, drop=_pii_columns(config), file_label=label, note=config.notice or "")
        for fmt in (f for f in FORMATS.values() if f.kind == "analysis" and f.name in formats):
            (path,) = fmt.files([f"{config.study}_{wave.id}"], "analysis")
            files[path] = fmt.render(data, timestamp=file_timestamp([wave]))

    margins = ctx.read_frame("weight/margins.csv") if ctx.path("weight/margins.csv").is_file() and ctx.path("weight/margins.csv").stat().st_size > 1 else None
    if margins is not None and codebook is not None:
        margins = _labelled_groups(margins, codebook)
    charts: list[Any] = []
    weighting = None
    if {"png", "svg", "report"} & formats:
        charts, weighting = _charts(config, est, codebook, margins, files, formats)
    if statement is not None and "methods" in formats:
        files["methods.md"] = FORMATS["methods"].render(statement)
    codebook_section = _codebook(ctx, frame, files) if "codebook" in formats and frame is not None else ""
    if "report" in formats:
        from pipeline.exporters.methods import methods_html

        listed = sorted(f for f in files if f != "report.html")
        files["report.html"] = FORMATS["report"].render(
            title=config.title or config.study,
            wave=wave.id,
            notice=config.notice,
            tables=[(t.id, t.title.removeprefix(f"{config.title}: ") if config.title else t.title, fragments[t.id]) for t in pub.tables],
            charts=charts,
            weighting_chart=weighting,
            methods=methods_html(statement) if statement is not None else "",
            qa=qa,
            margins=margins,
            clean_report=clean_report,
            files=listed,
            codebook=codebook_section,
        )
    suppressed = sum(1 for t in pub.tables for r in t.rows for c in r.cells if c.suppressed)
    diagnostics = {
        "tables": len(pub.tables),
        "files": len(files),
        "suppressed_cells": suppressed,
        "significant_comparisons": int(pub.comparisons.get_column("significant").sum()) if pub.comparisons.height else 0,
        "significance_method": config.tables.significance.method if config.tables.banners else None,
    }
    return StageOutput(files=files, diagnostics=diagnostics, rows=est.height)


#: the weight stage's technical columns, never in the codebook (besides the design's and export's weights)
CODEBOOK_TECHNICAL = ("raw_row", "dq_flags", "w_base", "w_uncalibrated")


def _codebook(ctx: StageContext, frame: pl.DataFrame, files: dict[str, Any]) -> str:
    """The codebook's files into ``files``; returns the report's section (HTML).

    Left out: PII and hashed identifiers (:func:`_pii_columns`), the technical columns
    (:data:`CODEBOOK_TECHNICAL`, the raking cells ``rk_*``), the population sizes ``design.fpc`` and the weights (``design.weights``,
    ``export.weights``)."""
    from pipeline.exporters import file_timestamp
    from pipeline.exporters.codebook import codebook_frame, codebook_html
    from pipeline.exporters.formats import FORMATS
    from pipeline.io import Codebook
    from pipeline.stages._common import build_design, replicate_design

    config = ctx.config
    cb = ctx.path("weight/codebook.json")
    data_codebook = Codebook.from_json(cb.read_text(encoding="utf-8")) if cb.is_file() else Codebook()
    if config.design.variance == "replicate":
        meta = json.loads(ctx.path("weight/replicates.json").read_text(encoding="utf-8"))
        design = replicate_design(frame, config.design, ctx.read_frame("weight/replicates.parquet"), meta)
    else:
        design = build_design(frame, config.design, config.weight)
    reasons = ctx.read_frame("clean/missing_reasons.parquet") if ctx.path("clean/missing_reasons.parquet").is_file() else None
    exclude = {*_pii_columns(config), *CODEBOOK_TECHNICAL, config.design.weights, *config.design.fpc, *config.export.weights,
               *(c for c in frame.columns if c.startswith("rk_"))}
    d, t = config.design, config.tables
    meta = {"ci_method": d.ci_method, "conf_level": d.conf_level, "min_cell_n": t.disclosure.min_cell_n}
    table = codebook_frame(frame, data_codebook, design, reasons=reasons, exclude=exclude, labels=t.labels,
                           identifiers=[config.ingest.id] if config.ingest.id else [], **meta)
    decimals = t.decimals
    files.update(FORMATS["codebook"].render(table, title=config.title or config.study, wave=ctx.wave.id, notice=config.notice,
                                            decimals=decimals, created=file_timestamp([ctx.wave]), **meta))
    return codebook_html(table, decimals=decimals, **meta)


def _charts(
    config: StudyConfig, est: pl.DataFrame, codebook: Codebook | None, margins: pl.DataFrame | None, files: dict[str, Any], formats: set[str]
) -> tuple[list[Any], Any]:
    import polars as pl

    from pipeline.exporters.charts import chart_scale, estimate_chart, weighting_chart
    from pipeline.exporters.formats import FORMATS
    from pipeline.exporters.report import Chart

    ids = list(config.export.charts) or est.get_column("estimate_id").unique(maintain_order=True).to_list()
    decimals = config.tables.decimals
    charts = []
    for est_id in ids:
        fig = estimate_chart(est, est_id, labels=config.tables.labels, codebook=codebook, decimals=decimals, notice=config.notice)
        svg = _chart_files(fig, f"charts/{est_id}", files, formats)
        charts.append(Chart(est_id, est_id, svg.decode("utf-8"), chart_scale(est.filter(pl.col("estimate_id") == est_id).row(0, named=True)).caption))
    weighting = None
    if margins is not None and margins.height and "target_share" in margins.columns:
        by = list(config.weight.rake.by) if config.weight.rake is not None else []
        fig = weighting_chart(margins, codebook=codebook, group_columns=by, notice=config.notice)
        svg = _chart_files(fig, "charts/weighting", files, formats)
        weighting = Chart("weighting", "weighting", svg.decode("utf-8"), "Red ticks: targets; open circles: unweighted sample; dots: final weights.")
    return charts, weighting



def _chart_files(fig: Any, stem: str, files: dict[str, Any], formats: set[str]) -> bytes:
    """Write the chart in the chart formats of ``formats``; return its SVG (the report inlines it)."""
    from pipeline.exporters.formats import FORMATS

    svg = FORMATS["svg"].render(fig)
    for fmt in (f for f in FORMATS.values() if f.kind == "chart" and f.name in formats):
        files[f"{stem}{fmt.suffix}"] = svg if fmt.name == "svg" else fmt.render(fig)
    return svg

"""Issue 14, item 5: the finished look of the outputs, found by reading them (each fix tested here
or next to the output it touches)."""

from __future__ import annotations

from csvstudy import conformance_data, csv_project
from pipeline.cli import main

STRAT = """\
study: strat
waves:
  - id: "1"
    raw: RAW
design:
  weights: pw
  strata: [stype]
  fpc: [fpc]
export:
  formats: [csv, markdown]
estimates:
  - {id: api00_mean, mean: api00}
"""


def test_the_clean_report_has_no_empty_out_of_range_table(tmp_path):
    cfg = csv_project(tmp_path, conformance_data("apistrat.csv"), STRAT, "strat")
    assert main(["run", str(cfg), "--quiet"]) == 0
    report = (tmp_path / "outputs" / "strat" / "1" / "clean" / "report.md").read_text(encoding="utf-8")
    section = report.split("## Values set missing as out of range", 1)[1].split("##", 1)[0]
    assert "None: every value is within the valid codes and ranges." in section and "| variable | values |" not in section


def test_the_base_text_names_the_study_s_own_missing_codes(tmp_path):
    """A study whose missing code means "No lab result" says so, not "don't know and refused"."""
    import polars as pl

    data = conformance_data("apistrat.csv").with_columns(
        pl.when(pl.col("snum") % 7 == 0).then(pl.lit(8)).otherwise(pl.when(pl.col("sch.wide") == "Yes").then(1).otherwise(2)).alias("LAB")
    )
    config = STRAT.replace("  - {id: api00_mean, mean: api00}", "  - {id: lab, proportion: LAB, levels: [1]}")
    config += "  - {id: lab_all, proportion: LAB, levels: [1], denominator: all}\n"
    config = config.replace("    raw: RAW\n", '    raw: RAW\n    labels: {LAB: {1: "High", 2: "Normal", 8: "No lab result"}}\n'
                            "    missing_also: [{variables: [LAB], codes: [8]}]\n")
    cfg = csv_project(tmp_path, data, config, "strat")
    assert main(["run", str(cfg), "--quiet"]) == 0, (tmp_path / "configs" / "strat.yaml").read_text()
    topline = (tmp_path / "outputs" / "strat" / "1" / "tables" / "topline.md").read_text(encoding="utf-8")
    assert "base: respondents who gave an answer (no lab result left out)" in topline
    assert "base: all respondents asked, no lab result included" in topline
    assert "don't know" not in topline


def _margins(groups: bool):
    import polars as pl

    rows = []
    for g in ([1, 2] if groups else [None]):
        for v, cats in (("SEX", [1, 2]), ("AGE", [1, 2, 3])):
            for c in cats:
                rows.append({"variable": v, "category": c, "label": f"{v} {c}", "target_share": 0.3 + 0.05 * c,
                             "unweighted_share": 0.62 if c == 1 else 0.2, "final_share": 0.3 + 0.05 * c, **({"G": g} if groups else {})})
    return pl.DataFrame(rows)


def test_the_weighting_chart_keeps_its_title_legend_and_points_in_view():
    """The weighting chart of a rake with no groups had its title cut, its legend over the data
    and its points clipped at the right edge; with groups the legend covered the last panel.
    Looked at too: the demo's charts/weighting.png (legend above the panels) and a one-panel chart."""
    from pipeline.exporters.charts import weighting_chart

    for groups in (False, True):
        fig = weighting_chart(_margins(groups), group_columns=["G"] if groups else [], notice="SYNTHETIC DATA. " * 12)
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        figure_box = fig.bbox
        title = fig._suptitle.get_window_extent(renderer)
        assert title.x1 <= figure_box.x1 and "weighted shares" in fig._suptitle.get_text()  # the whole title, inside the figure
        legend = fig.legends[0].get_window_extent(renderer)
        assert legend.x1 <= figure_box.x1
        for ax in fig.axes:
            assert not legend.overlaps(ax.get_window_extent(renderer)), "the legend covers a panel"
            xmax = ax.get_xlim()[1]
            for coll in ax.collections:
                xs = coll.get_offsets()[:, 0]
                assert (xs < xmax).all(), "a point sits on the right edge"

"""Snapshot tests: the rendered Markdown, HTML and LaTeX of a small banner and topline are pinned.

A rendering change shows up as a diff against tests/exporters/snapshots/. To accept an intended
change, rerun with SURVEY_PIPELINE_UPDATE_SNAPSHOTS=1 and review the diff of the snapshot files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.config import BannerSpec, TablesConfig, ToplineSpec
from pipeline.exporters.html import table_html
from pipeline.exporters.latex import table_latex
from pipeline.exporters.markdown import table_markdown
from pipeline.exporters.significance import letters_note
from pipeline.exporters.tables import banner_table, topline_table
from pipeline.stages.estimate import compare_columns

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("SURVEY_PIPELINE_UPDATE_SNAPSHOTS") == "1"
TABLES = TablesConfig(labels={"REGION": "Region"})


def small_tables(estimates):
    topline = topline_table(estimates, ToplineSpec(id="topline", estimates=("q_agree",)), TABLES, title="Small study", wave="1", notice="SYNTHETIC DATA.")
    spec = BannerSpec(id="banner", title="By region", columns=((), ("REGION",)))
    cmp = compare_columns(estimates, ["q_agree", "q_often"], spec.columns, method="independent")
    banner = banner_table(estimates, spec, TABLES, comparisons=cmp, title="Small study", wave="1", notice="SYNTHETIC DATA.",
                          letters_note=letters_note("independent", 0.05, "none"))
    return {"topline": topline, "banner": banner}


RENDERERS = {"md": table_markdown, "html": table_html, "tex": table_latex}


@pytest.mark.parametrize("kind", ["topline", "banner"])
@pytest.mark.parametrize("suffix", sorted(RENDERERS))
def test_rendering_matches_snapshot(estimates, kind, suffix):
    text = RENDERERS[suffix](small_tables(estimates)[kind])
    path = SNAPSHOTS / f"{kind}.{suffix}"
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"no snapshot {path.name}; create it with SURVEY_PIPELINE_UPDATE_SNAPSHOTS=1 and review it")
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def test_html_is_self_contained_and_deterministic(estimates):
    a = table_html(small_tables(estimates)["banner"])
    b = table_html(small_tables(estimates)["banner"])
    assert a == b
    assert 'id="tbl-banner"' in a
    for external in ("http://", "https://", "<script", "@import"):
        assert external not in a

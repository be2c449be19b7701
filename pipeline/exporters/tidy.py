"""A table as tidy data: one row per cell with the estimates.csv row it shows (``tables/<id>.csv``),
so that every number in a table traces back to its estimate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.exporters.estimates import prepare_estimates

if TYPE_CHECKING:
    import polars as pl

    from pipeline.exporters.tables import Table


def table_frame(table: Table, estimates: pl.DataFrame | None = None) -> pl.DataFrame:
    """The table as tidy data: one row per cell, with the estimates.csv row it comes from.

    Columns: ``table``, ``row``, ``row_group``, ``row_label``, ``column``, ``column_group``,
    ``column_label``, ``text``, ``value``, ``field``, ``source_row`` and, with ``estimates``,
    that row's ``wave``, ``estimate_id``, ``level``, ``by``, ``domain`` and ``flag``.
    """
    import polars as pl

    records = []
    for i, row in enumerate(table.rows):
        label = row.cells[0].text
        for col, cell in zip(table.columns, row.cells, strict=True):
            if not col.numeric:
                continue
            records.append(
                {
                    "table": table.id,
                    "row": i,
                    "row_group": row.group,
                    "row_label": label if table.kind != "topline" else " / ".join(c.text for c, k in zip(row.cells, table.columns, strict=True) if not k.numeric),
                    "column": col.key,
                    "column_group": col.group or "",
                    "column_label": col.label,
                    "text": cell.text,
                    "value": cell.value,
                    "field": cell.field or "",
                    "source_row": cell.source,
                }
            )
    schema = {
        "table": pl.String, "row": pl.Int64, "row_group": pl.String, "row_label": pl.String, "column": pl.String,
        "column_group": pl.String, "column_label": pl.String, "text": pl.String, "value": pl.Float64,
        "field": pl.String, "source_row": pl.Int64,
    }
    frame = pl.DataFrame(records, schema=schema)
    if estimates is not None and frame.height:
        keys = prepare_estimates(estimates).select(
            pl.col("_row").alias("source_row"), "wave", "estimate_id", "level", "by", "domain", "flag"
        )
        frame = frame.join(keys, on="source_row", how="left", maintain_order="left")
    return frame

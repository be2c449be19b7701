"""Publication outputs from the tidy artifacts (``estimates.csv`` is the single source of every
number): this package only presents; it computes no statistic, builds no design and imports no
stage.

One module per concern, each importing its heavy library (great_tables, xlsxwriter,
matplotlib, pyreadstat) only inside the functions that use it:

* :mod:`~pipeline.exporters.estimates` — reading estimates (:func:`read_estimates`), the lowest module;
* :mod:`~pipeline.exporters.values` — how cells show each statistic (:data:`VALUE_FORMATS`);
* :mod:`~pipeline.exporters.tables` — :class:`Table` (cells that remember their estimates.csv
  row), :func:`topline_table`, :func:`banner_table`, :func:`trend_table`; :mod:`~pipeline.exporters.tidy` — :func:`table_frame`;
* :mod:`~pipeline.exporters.significance` — the estimate stage's ``estimate/comparisons.csv``
  (schema, :func:`read_comparisons`) and the letters it puts in banner cells;
* :mod:`~pipeline.exporters.formats` — the registry of ``export.formats`` (:data:`FORMATS`) and
  :func:`render_tables`, used by the export and trends stages;
* :mod:`~pipeline.exporters.markdown`, :mod:`~pipeline.exporters.html`,
  :mod:`~pipeline.exporters.latex`, :mod:`~pipeline.exporters.xlsx` — the table formats;
* :mod:`~pipeline.exporters.spss` — the analysis file (``.sav``, ``.dta``) with labels and weights;
* :mod:`~pipeline.exporters.charts` — estimates by subgroup, across waves, and the weighting check (PNG, SVG);
* :mod:`~pipeline.exporters.methods` — the AAPOR Transparency Initiative methods statement;
* :mod:`~pipeline.exporters.report` — one self-contained HTML report per wave.

The export stage (:mod:`pipeline.stages.export`) and the trends stage wire them to the config;
flags (suppression, review marks) come from :mod:`pipeline.flags`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

#: the creation time of files without field dates (the ZIP format's earliest date)
FILE_EPOCH = dt.datetime(1980, 1, 1)


def file_timestamp(waves: Iterable[Any] = ()) -> dt.datetime:
    """The creation time written into the files whose formats carry one (``.sav``, ``.dta``, ``.xlsx``).

    The end of the latest field period among ``waves`` (``waves[].field_dates``), at midnight,
    else :data:`FILE_EPOCH`: never the clock, so that the same inputs give the same bytes (the
    manifest records when the run happened).
    """
    ends = [w.field_dates[1] for w in waves if getattr(w, "field_dates", None)]
    if not ends:
        return FILE_EPOCH
    last = max(ends)
    return dt.datetime(last.year, last.month, last.day)

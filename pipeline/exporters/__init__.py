"""Publication outputs from the tidy ``estimates.csv`` (the single source of every number).

One module per concern, each importing its heavy library (great_tables, xlsxwriter,
matplotlib, pyreadstat) only inside the functions that use it:

* :mod:`~pipeline.exporters.tables` — :class:`Table` (cells that remember their estimates.csv
  row), :func:`topline_table`, :func:`banner_table`, :func:`trend_table`, :func:`table_frame`;
* :mod:`~pipeline.exporters.significance` — pairwise tests between banner columns
  (:func:`compare_columns`, design-based through :class:`DomainCovariance`) and their letters;
* :mod:`~pipeline.exporters.trends` — :func:`trend_estimates`: waves stacked, change rows;
* :mod:`~pipeline.exporters.markdown`, :mod:`~pipeline.exporters.html`,
  :mod:`~pipeline.exporters.latex`, :mod:`~pipeline.exporters.xlsx` — the table formats;
* :mod:`~pipeline.exporters.spss` — the analysis file (``.sav``, ``.dta``) with labels and weights;
* :mod:`~pipeline.exporters.charts` — estimates by subgroup and the weighting check (PNG, SVG);
* :mod:`~pipeline.exporters.methods` — the AAPOR Transparency Initiative methods statement;
* :mod:`~pipeline.exporters.report` — one self-contained HTML report per wave.

The export stage (:mod:`pipeline.stages.export`) wires them to the config.
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

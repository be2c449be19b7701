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

"""Design-based survey statistics that agree with R ``survey`` 4.1-1.

No files and no config objects here: polars/numpy in, frozen results out.

* :mod:`~pipeline.survey.design` — :class:`Design` (Taylor or replicate) and the
  :class:`VarianceAdjustment` hook used by weighting steps;
* :mod:`~pipeline.survey.variance` — Taylor linearization (``svyrecvar``),
  replicate variance (``svrVar``), lonely-PSU policies (:data:`LONELY_PSU`);
* :mod:`~pipeline.survey.estimators` — :func:`total`, :func:`mean`,
  :func:`proportions`, :func:`ratio` (overall and by domains, with covariance,
  design effects and contrasts), :func:`quantile`, and :func:`proportion`,
  the estimate stage's entry point;
* :mod:`~pipeline.survey.intervals` — CI methods for proportions (:data:`CI_METHODS`);
* :mod:`~pipeline.survey.replicates` — building replicate weights;
* :mod:`~pipeline.survey.tables` — cross-tabulations and Rao-Scott tests;
* :mod:`~pipeline.survey.weighting` — raking, calibration, trimming.
"""

from __future__ import annotations

from pipeline.survey.design import LONELY_PSU_OPTIONS, Design, ReplicateWeights, VarianceAdjustment
from pipeline.survey.estimators import (
    QRULES,
    Estimates,
    Quantiles,
    mean,
    proportion,
    proportions,
    quantile,
    ratio,
    total,
)
from pipeline.survey.intervals import CI_METHODS, ProportionInputs, proportion_ci
from pipeline.survey.replicates import REPLICATE_METHODS, as_replicate_design
from pipeline.survey.tables import CHISQ_STATISTICS, ChisqTest, chisq_test, crosstab
from pipeline.survey.variance import LONELY_PSU

__all__ = [
    "CHISQ_STATISTICS",
    "CI_METHODS",
    "LONELY_PSU",
    "LONELY_PSU_OPTIONS",
    "QRULES",
    "REPLICATE_METHODS",
    "ChisqTest",
    "Design",
    "Estimates",
    "ProportionInputs",
    "Quantiles",
    "ReplicateWeights",
    "VarianceAdjustment",
    "as_replicate_design",
    "chisq_test",
    "crosstab",
    "mean",
    "proportion",
    "proportion_ci",
    "proportions",
    "quantile",
    "ratio",
    "total",
]

"""Design-based survey statistics that agree with R ``survey`` 4.1-1.

No files and no config objects here: polars/numpy in, frozen results out. Nothing here imports
the config, the stages, the exporters or the runner; an unsupported argument raises
:class:`~pipeline.errors.ArgumentError` (a ``ValueError``), which the stages translate into a
``ConfigError`` naming the config key. The words the config accepts for these statistics are
defined here once (:data:`CI_METHODS`, :data:`LONELY_PSU_OPTIONS`, :data:`CALIBRATION_METHODS`,
:data:`REPLICATE_TYPES`, :data:`REPLICATE_BUILDS`, :data:`CHISQ_STATISTICS`, :data:`TRIM_CENTRES`).

* :mod:`~pipeline.survey.design` — :class:`Design` (Taylor or replicate) and the
  :class:`VarianceAdjustment` hook used by weighting steps; built by
  :mod:`~pipeline.survey._design_build` (R ``svydesign``/``svrepdesign``);
* :mod:`~pipeline.survey.variance` — Taylor linearization (``svyrecvar``),
  replicate variance (``svrVar``), lonely-PSU policies (:data:`LONELY_PSU`);
* :mod:`~pipeline.survey.estimators` — :func:`total`, :func:`mean`,
  :func:`proportions`, :func:`ratio` (overall and by domains, with covariance,
  design effects and contrasts), and :func:`proportion`, the estimate stage's entry point;
  their result :class:`Estimates` is :mod:`~pipeline.survey.results`, the domain engine
  they share with the tables :mod:`~pipeline.survey._domains` (fast path
  :mod:`~pipeline.survey._grouped`);
* :mod:`~pipeline.survey.quantiles` — :func:`quantile` and its intervals (:data:`QRULES`);
* :mod:`~pipeline.survey.intervals` — CI methods for proportions (:data:`CI_METHODS`);
* :mod:`~pipeline.survey.replicates` — building replicate weights (:data:`REPLICATE_METHODS`);
* :mod:`~pipeline.survey.models` — :func:`glm`, design-based GLMs as R ``svyglm`` (coefficient
  table, ``regTermTest``, predictions, predictive margins: :class:`ModelFit`), on the safe
  R-style formulas of :mod:`~pipeline.survey.formula` (statsmodels imported only when fitting);
* :mod:`~pipeline.survey.tables` — cross-tabulations and Rao-Scott tests (:data:`CHISQ_STATISTICS`);
* :mod:`~pipeline.survey.weighting` — post-stratification, raking, calibration
  (:data:`CALIBRATION_METHODS`; engines in ``_weighting_prep``, ``_weighting_ipf``,
  ``_weighting_grake``, results in ``_weighting_result``);
* :mod:`~pipeline.survey.adjustments` — the variance adjustments of weighting steps and their
  rebuild from final weights (:func:`~pipeline.survey.adjustments.calibration_adjustment`);
* :mod:`~pipeline.survey.trimming` — trimming a sample, within groups, and replicate weights;
* :mod:`~pipeline.survey.nonresponse` — weighting-class nonresponse adjustment and collapsing;
* :mod:`~pipeline.survey.changes` — differences between independent samples (waves);
* :mod:`~pipeline.survey._linalg` — shared numerics (R's ``qr`` rank, the calibration
  projection, ``uniroot``).
"""

from __future__ import annotations

from pipeline.survey.design import LONELY_PSU_OPTIONS, REPLICATE_TYPES, Design, ReplicateWeights, VarianceAdjustment
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
from pipeline.survey.models import FAMILIES, ModelFit, glm
from pipeline.survey.replicates import REPLICATE_BUILDS, REPLICATE_METHODS, as_replicate_design
from pipeline.survey.tables import CHISQ_STATISTICS, ChisqTest, chisq_test, crosstab
from pipeline.survey.trimming import TRIM_CENTRES
from pipeline.survey.variance import LONELY_PSU
from pipeline.survey.weighting import CALIBRATION_METHODS

__all__ = [
    "CALIBRATION_METHODS",
    "CHISQ_STATISTICS",
    "CI_METHODS",
    "FAMILIES",
    "LONELY_PSU",
    "LONELY_PSU_OPTIONS",
    "QRULES",
    "REPLICATE_BUILDS",
    "REPLICATE_METHODS",
    "REPLICATE_TYPES",
    "TRIM_CENTRES",
    "ChisqTest",
    "Design",
    "Estimates",
    "ModelFit",
    "ProportionInputs",
    "Quantiles",
    "ReplicateWeights",
    "VarianceAdjustment",
    "as_replicate_design",
    "chisq_test",
    "crosstab",
    "glm",
    "mean",
    "proportion",
    "proportion_ci",
    "proportions",
    "quantile",
    "ratio",
    "total",
]

"""The config sections of the results: ``estimates``, ``tables``, ``export``, ``methods``,
``harmonize`` and ``trends``.

Owns the models of an estimate (and :data:`STATISTICS`, the statistics an estimate can be), of
the tables (reliability and disclosure rules, significance tests, toplines, banners, trend
tables, crosstabs), of the export formats, of the methods statement's study facts, and of the checks and
change rows across waves. Re-exported by :mod:`pipeline.config`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from pipeline._config_base import Code, _Model
from pipeline._config_weight import CIMethod

#: the statistics an estimate can be: each is the config key that names its variable
#: (``proportion: Q10A``), one entry per layer (``pipeline.stages.estimate.STATISTICS``,
#: ``pipeline.exporters.tables.VALUE_FORMATS``, ``pipeline.exporters.charts.CHART_SCALES``,
#: ``pipeline.flags.STATISTIC_RULES``; tests/test_vocabulary.py checks they agree). A
#: ``difference`` is computed from other estimates (``pipeline.stages._estimate_differences``).
STATISTICS = ("proportion", "mean", "total", "ratio", "quantile", "difference")

#: a code of ``estimates[].levels``: a number, or a text for variables coded in text (``"Yes"``)
LevelCode = Code | str

#: the design-based tests of association an estimate or a crosstab can ask for: R ``svychisq``'s
#: ``statistic`` names (:data:`pipeline.survey.tables.CHISQ_STATISTICS`), or ``none``
TestName = Literal["F", "Chisq", "Wald", "adjWald", "lincom", "saddlepoint", "none"]


class RatioSpec(_Model):
    """``estimates[].ratio``: the ratio of the population totals of two numeric variables."""

    numerator: str
    denominator: str


class DifferenceSpec(_Model):
    """``estimates[].difference``: ``a`` minus ``b``, with its design-based SE from the full
    covariance (R ``svycontrast``), a CI and a p-value.

    Between two domains of one estimate (``of`` an estimate id, ``domain`` the variable whose
    codes ``a`` and ``b`` are: undocumented minus U.S.-born), or between two estimates on the
    same respondents (``a`` and ``b`` estimate ids, no ``of``: Q10A minus Q10D).
    """

    of: str | None = None
    """The estimate whose domains are compared (a domain difference)."""
    domain: str | None = None
    """The domain variable of a domain difference; ``a`` and ``b`` are its codes."""
    a: LevelCode
    b: LevelCode

    @model_validator(mode="after")
    def _kind(self) -> DifferenceSpec:
        if (self.of is None) != (self.domain is None):
            raise ValueError(
                "a difference between domains needs both of (the estimate) and domain (the variable whose codes a and b are), "
                "e.g. {of: less_likely, domain: STATUS4, a: 3, b: 1}; between two estimates give only a and b (estimate ids)"
            )
        if self.of is None and not (isinstance(self.a, str) and isinstance(self.b, str)):
            raise ValueError(f"a difference between two estimates names them by id (a: ID, b: ID), got a: {self.a!r}, b: {self.b!r}; "
                             "for two domains of one estimate add of: ID and domain: VAR")
        if self.a == self.b:
            raise ValueError(f"a and b are the same ({self.a!r}): a difference compares two different {'codes' if self.of else 'estimates'}")
        return self

    @property
    def between_domains(self) -> bool:
        return self.of is not None


class EstimateSpec(_Model):
    """One estimate: the share of ``proportion`` in ``levels`` (or of every level), the ``mean``
    or ``total`` of a numeric variable (``total`` with ``levels``: the number of people with
    those codes), the ``ratio`` of two totals, or the ``quantile`` (``probs``) of a numeric
    variable. Exactly one statistic per estimate. ``distribution: VAR`` asks for the whole
    distribution of a categorical variable: one ``proportion`` row per answer (its rows are
    proportions, so :attr:`statistic` is ``proportion``), ``levels`` refused."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    proportion: str | None = None
    distribution: str | None = None
    """The whole distribution of this categorical variable: a ``proportion`` row per answer
    (with ``denominator: all`` the don't-know and refused answers too); the shares of each
    domain sum to 1."""
    mean: str | None = None
    total: str | None = None
    ratio: RatioSpec | None = None
    quantile: str | None = None
    difference: DifferenceSpec | None = None
    """``a`` minus ``b``: two domains of one estimate, or two estimates (:class:`DifferenceSpec`)."""
    probs: Annotated[tuple[Annotated[float, Field(ge=0, le=1)], ...], Field(min_length=1)] | None = None
    """Probabilities of a ``quantile`` (default ``[0.5]``, the median)."""
    levels: tuple[LevelCode, ...] | None = None
    decimals: Annotated[int, Field(ge=0, le=4)] | None = None
    """Decimals of this estimate in every table and chart (default: the table's ``decimals``,
    plus one for means and quantiles, two for ratios; totals are whole numbers)."""
    level_label: str | None = None
    denominator: Literal["all", "valid"] = "valid"
    by: tuple[tuple[str, ...], ...] = ((),)
    ci_method: CIMethod | None = None
    title: str | None = None
    test: TestName = "F"
    """Design-based test of association with each single ``by`` variable (R ``svychisq``;
    ``F``: Rao-Scott second-order, ``Chisq``: first-order), shown under the banners."""

    @model_validator(mode="after")
    def _one_statistic(self) -> EstimateSpec:
        keys = (*STATISTICS, "distribution")
        given = [name for name in keys if getattr(self, name) is not None]
        if len(given) != 1:
            found = f"{' and '.join(given)} together" if given else "none"
            raise ValueError(
                f"an estimate needs exactly one of {', '.join(STATISTICS)} (found {found}), or distribution: VAR for the share of every answer; e.g. mean: AGE"
            )
        if self.distribution is not None and self.levels is not None:
            raise ValueError(
                f"levels does not apply to distribution (a distribution has a row per answer of {self.distribution}); "
                f"for the share of some codes use proportion: {self.distribution} with levels: [...]"
            )
        statistic = "proportion" if given[0] == "distribution" else given[0]
        if statistic == "difference":
            extra = [k for k in ("levels", "level_label", "decimals", "probs", "ci_method") if getattr(self, k) is not None]
            if extra or self.denominator != "valid" or self.test != "F":
                extra += [k for k in ("denominator", "test") if getattr(self, k) != type(self).model_fields[k].default]
                raise ValueError(
                    f"{', '.join(extra)} do(es) not apply to a difference: it takes them from the estimates it compares; drop {extra[0]}"
                )
        if self.levels is not None and statistic not in ("proportion", "total"):
            raise ValueError(f"levels applies to proportion and total, not to {statistic}; drop levels or use proportion: VAR")
        if self.ci_method is not None and statistic != "proportion":
            raise ValueError(f"ci_method applies to proportion; a {statistic} has its own interval (README: Estimates); drop ci_method")
        if self.probs is not None and statistic != "quantile":
            raise ValueError(f"probs applies to quantile, not to {statistic}; e.g. quantile: AGE with probs: [0.5]")
        return self

    @property
    def statistic(self) -> str:
        """The statistic estimated: the key of :data:`STATISTICS` the spec sets (``proportion``;
        ``proportion`` for a ``distribution``, whose rows are the shares of every answer)."""
        if getattr(self, "distribution", None) is not None:
            return "proportion"
        return next(name for name in STATISTICS if getattr(self, name, None) is not None)

    @property
    def variable(self) -> str:
        """The variable the statistic is of (``proportion: Q10A`` -> ``Q10A``; a ratio's
        ``numerator/denominator``)."""
        value = self._statistic_value()
        if isinstance(value, DifferenceSpec):
            return f"{value.of} by {value.domain}" if value.between_domains else f"{value.a} - {value.b}"
        return f"{value.numerator}/{value.denominator}" if isinstance(value, RatioSpec) else value

    @property
    def variables(self) -> tuple[str, ...]:
        """The data columns the statistic reads (a ratio's numerator and denominator; a
        difference's domain variable: it reads its estimates' columns through them)."""
        value = self._statistic_value()
        if isinstance(value, DifferenceSpec):
            return (value.domain,) if value.domain is not None else ()
        return (value.numerator, value.denominator) if isinstance(value, RatioSpec) else (value,)

    @property
    def compared(self) -> tuple[str, ...]:
        """The ids of the estimates a difference is computed from (empty for other statistics)."""
        d = self.difference
        if d is None:
            return ()
        return (d.of,) if d.of is not None else (str(d.a), str(d.b))

    @property
    def key(self) -> str:
        """The config key naming the variable (``distribution`` or the statistic), for messages."""
        return "distribution" if self.distribution is not None else self.statistic

    def _statistic_value(self) -> Any:
        """The value of the statistic's key (``distribution: Q10A`` -> ``Q10A``)."""
        return self.distribution if self.distribution is not None else getattr(self, self.statistic)

    @property
    def quantile_probs(self) -> tuple[float, ...]:
        """The probabilities of a quantile (``probs``, default the median)."""
        return self.probs if self.probs is not None else (0.5,)


class ReliabilityConfig(_Model):
    """When an estimate is suppressed or flagged: the NCHS Data Presentation Standards for
    Proportions (Parker et al. 2017, Vital Health Stat 2(175)), thresholds as published.

    With ``standard: nchs`` a proportion is suppressed when its effective sample size is below
    ``min_effective_n``, or when its Korn-Graubard CI is ``max_ci_width`` wide or more, or (if
    wider than ``ci_width_ok``) wider than ``max_relative_ci_width`` times the estimate. Shown
    estimates are flagged for review when the degrees of freedom are below ``min_df``, when
    the CI is wider than ``max_relative_ci_width`` times the complement, or at 0% or 100%.
    ``tables.min_n`` (the denominator's sample size) applies under both standards. Means,
    totals, ratios and quantiles are flagged for review when their relative standard error is
    above ``max_rse``.
    """

    standard: Literal["nchs", "none"] = "nchs"
    min_effective_n: Annotated[float, Field(ge=0)] = 30
    ci_width_ok: Annotated[float, Field(ge=0, le=1)] = 0.05
    max_ci_width: Annotated[float, Field(gt=0, le=1)] = 0.30
    max_relative_ci_width: Annotated[float, Field(gt=0)] = 1.30
    min_df: Annotated[float, Field(ge=0)] = 8
    max_rse: Annotated[float, Field(gt=0)] = 0.30
    """Means, totals, ratios and quantiles: a relative standard error above this is flagged
    for review (NCHS: RSE above 30%)."""

    @model_validator(mode="after")
    def _widths(self) -> ReliabilityConfig:
        if self.ci_width_ok >= self.max_ci_width:
            raise ValueError(f"ci_width_ok must be smaller than max_ci_width (got {self.ci_width_ok} and {self.max_ci_width})")
        return self


class DisclosureConfig(_Model):
    """Suppression for respondents' privacy: cells with fewer than ``min_cell_n`` respondents."""

    min_cell_n: Annotated[int, Field(ge=0)] = 10


class SignificanceConfig(_Model):
    """Tests between banner columns (and between waves in trend tables)."""

    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    method: Literal["design", "independent"] = "design"
    """``design``: the difference's variance from the design's full covariance matrix;
    ``independent``: ``se_a^2 + se_b^2`` from estimates.csv (ignores the covariance)."""
    adjust: Literal["none", "bonferroni", "holm", "hochberg", "hommel", "BH", "BY"] = "none"
    """Multiple-comparison adjustment within each row and column group, as R ``p.adjust``:
    family-wise error (``bonferroni``, ``holm``, ``hochberg``, ``hommel``) or false discovery rate
    (``BH``: Benjamini-Hochberg, ``BY``: Benjamini-Yekutieli)."""


TableId = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$")]


class ToplineSpec(_Model):
    """A topline: question wording, each answer's weighted percent, unweighted n, CI and margin of error."""

    id: TableId
    title: str | None = None
    estimates: tuple[str, ...] = ()
    """Estimate ids, in order (empty: every estimate)."""
    by: tuple[tuple[str, ...], ...] | None = None
    """Which domain lists to show (``[[]]``: the whole sample only); default: every one estimated."""
    decimals: Annotated[int, Field(ge=0, le=4)] | None = None
    notes: tuple[str, ...] = ()


class BannerSpec(_Model):
    """A banner crosstab: estimates down, subgroups across, significance letters between columns."""

    id: TableId
    title: str | None = None
    estimates: tuple[str, ...] = ()
    columns: Annotated[tuple[tuple[str, ...], ...], Field(min_length=1)] = ((),)
    """Column groups as domain lists: ``[[], [COUNTY], [STATUS4]]`` is Total, the counties, the statuses."""
    decimals: Annotated[int, Field(ge=0, le=4)] | None = None
    notes: tuple[str, ...] = ()


class TrendSpec(_Model):
    """A trend table: estimates down, waves across, with the change between the last two waves."""

    id: TableId
    title: str | None = None
    estimates: tuple[str, ...] = ()
    by: tuple[tuple[str, ...], ...] = ((),)
    decimals: Annotated[int, Field(ge=0, le=4)] | None = None
    notes: tuple[str, ...] = ()


class CrosstabSpec(_Model):
    """A crosstab of two categorical variables: the shares of one within each level of the other
    (``percent: column``: the shares of each ``rows`` level within each ``columns`` level, plus a
    Total column; ``row``: the shares of each ``columns`` level within each ``rows`` level, plus a
    Total row), each with its CI, and the design-based test of association (R ``svychisq``).

    Both variables are limited to the table's base: with ``denominator: valid`` the don't-know
    and refused codes of either variable are left out, with ``all`` they are levels of the table;
    a respondent without a value of either variable is in no cell (and not in the Total).
    """

    id: TableId
    rows: str
    """The variable down the table (its levels are the table's rows)."""
    columns: str
    """The variable across the table (its levels are the table's columns)."""
    percent: Literal["column", "row"] = "column"
    denominator: Literal["valid", "all"] = "valid"
    test: TestName = "F"
    """R ``svychisq``'s ``statistic`` (``F``: Rao-Scott second-order; ``none``: no test)."""
    by: tuple[str, ...] = ()
    """The crosstab within each domain of these variables (``[COUNTY]``: a panel per county, each
    with its own Total and test; domains by zero weights in the full design)."""
    title: str | None = None
    decimals: Annotated[int, Field(ge=0, le=4)] | None = None
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _two_variables(self) -> CrosstabSpec:
        if self.rows == self.columns:
            raise ValueError(f"rows and columns are both {self.rows}; a crosstab needs two different variables")
        both = sorted({self.rows, self.columns} & set(self.by))
        if both:
            raise ValueError(f"by names {', '.join(both)}, a variable of the table itself; by takes other variables (the panels' domains)")
        return self

    @property
    def percentaged(self) -> str:
        """The variable whose shares the cells are (``rows`` for column percentages)."""
        return self.rows if self.percent == "column" else self.columns

    @property
    def within(self) -> str:
        """The variable whose levels the shares are taken within (``columns`` for column percentages)."""
        return self.columns if self.percent == "column" else self.rows


class TablesConfig(_Model):
    """Reliability and disclosure rules, significance tests, and the published tables."""

    min_n: Annotated[int, Field(ge=0)] = 30
    decimals: Annotated[int, Field(ge=0, le=4)] = 0
    reliability: ReliabilityConfig = ReliabilityConfig()
    disclosure: DisclosureConfig = DisclosureConfig()
    significance: SignificanceConfig = SignificanceConfig()
    labels: Mapping[str, str] = Field(default_factory=dict)
    """Short names of domain variables for table headers (``{STATUS4: Immigration status}``)."""
    notes: tuple[str, ...] = ()
    """Notes printed under every table."""
    toplines: tuple[ToplineSpec, ...] = (ToplineSpec(id="topline"),)
    banners: tuple[BannerSpec, ...] = ()
    trends: tuple[TrendSpec, ...] = ()
    crosstabs: tuple[CrosstabSpec, ...] = ()
    """Crosstabs of two variables with row or column percentages and their test of association."""

    @model_validator(mode="after")
    def _unique_table_ids(self) -> TablesConfig:
        ids = [t.id for t in (*self.toplines, *self.banners, *self.trends, *self.crosstabs)]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"table ids must be unique across toplines, banners, trends and crosstabs (repeated: {', '.join(repeated)})")
        return self

    def flag_rules(self) -> dict[str, Any]:
        """The part the estimate stage's ``flag`` column depends on (its config fingerprint)."""
        return json.loads(self.model_dump_json(include={"min_n", "reliability", "disclosure"}))

    def comparison_rules(self) -> dict[str, Any]:
        """The part the estimate stage's ``estimate/comparisons.csv`` depends on: which banners
        compare which estimates across which columns (not their titles or notes), and how."""
        return json.loads(self.model_dump_json(include={"significance": True, "banners": {"__all__": {"id", "estimates", "columns"}}}))


ExportFormat = Literal["csv", "markdown", "xlsx", "docx", "html", "latex", "sav", "dta", "png", "svg", "methods", "report", "codebook"]


class ExportConfig(_Model):
    """What the export stage writes (every format is built from estimates.csv)."""

    formats: tuple[ExportFormat, ...] = ("csv", "markdown")
    charts: tuple[str, ...] = ()
    """Estimate ids charted by subgroup (empty: every estimate); charts are written as ``png``/``svg``."""
    weights: tuple[str, ...] = ("w_final", "w_pop")
    """Weight columns kept in the analysis file (``sav``/``dta``); other weights are left out."""


class MethodsConfig(_Model):
    """Study facts for the methods statement (AAPOR Transparency Initiative disclosure elements).

    The rest (dates, sample sizes, weighting variables and target sources, design effect,
    margins of error) is taken from the config, the targets file and the weighting report.
    """

    sponsor: str | None = None
    conducted_by: str | None = None
    population: str | None = None
    frame: str | None = None
    sample_design: str | None = None
    mode: str | None = None
    languages: tuple[str, ...] = ()
    response_rate: str | None = None
    contact: str | None = None
    moe_by: tuple[str, ...] | None = None
    """Key subgroups for the margin-of-error table (default: the banners' column variables)."""
    notes: tuple[str, ...] = ()


class SameMeaning(_Model):
    """Codes of a variable whose labels differ between waves but mean the same."""

    variable: str
    codes: tuple[Code, ...]


class HarmonizeConfig(_Model):
    """Checks across waves: value-label drift is an error unless mapped or accepted here."""

    same_meaning: tuple[SameMeaning, ...] = ()


class TrendsConfig(_Model):
    """Change rows between consecutive waves in ``trends/estimates.csv``."""

    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.05

"""What the population looks like: the raking targets and the population truth.

This module owns the two population-level outputs of the simulator:

- the **raking targets** (section 7.4 of ``studies/insecure_communities.md``; the margins of
  section 5b realised by the synthetic population): one row per county x raking variable x
  category, with the contract names ``rk_sex_age``, ``rk_educ``, ``rk_citizen`` and ``rk_phone``
  shared with the clean and weight stages;
- the **population truth**: for each attitude item the population share giving an agree code
  (DK/Refused counted in the base, as the published figures were), computed exactly as the mean
  over all adults of the response model's marginal probability, overall, by county and by
  status; plus the population shares of the raking variables, STATUS4 and LANG.

Shares are exact realised margins (counts / population), so the targets describe the very
population the sample was drawn from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ._population import (
    AGE_GROUP_LABELS,
    COUNTY_LABELS,
    EDUCATION_LABELS,
    PHONE_LABELS,
    STATUS_LABELS,
    Population,
    population_codes,
)
from ._responses import ResponseSpec, agree_probability

#: Raking variables (contract with the clean/weight stages): name -> category labels, codes 1..K.
RAKING_VARIABLES: dict[str, tuple[str, ...]] = {
    "rk_sex_age": tuple(f"{sex} {age}" for sex in ("Male", "Female") for age in AGE_GROUP_LABELS),
    "rk_educ": EDUCATION_LABELS,
    "rk_citizen": ("U.S.-born (incl. Puerto Rico)", "Foreign-born citizen", "Foreign-born non-citizen"),
    "rk_phone": PHONE_LABELS,
}

TARGET_COLUMNS: tuple[str, ...] = (
    "county",
    "county_label",
    "variable",
    "category",
    "label",
    "share",
    "population",
    "source",
    "year",
)
TRUTH_COLUMNS: tuple[str, ...] = (
    "variable",
    "levels",
    "label",
    "by",
    "domain_code",
    "domain",
    "share",
    "population",
    "definition",
)

_ITEM_DEFINITION = (
    "mean over all adults of min(p_ij, 1 - r_ij), the response model's marginal probability of an "
    "agree code (DK/Refused in the base); section 7.6"
)
_MARGIN_DEFINITION = "population share (count / adults in the domain)"


def raking_targets(pop: Population, *, year: int, source: str) -> pl.DataFrame:
    """The raking targets of every county (tidy: one row per county x variable x category).

    Parameters
    ----------
    pop : Population
        The synthetic population.
    year : int
        Reference year of the targets.
    source : str
        Provenance text for the ``source`` column.

    Returns
    -------
    polars.DataFrame
        Columns :data:`TARGET_COLUMNS`; shares of a variable within a county sum to 1.
    """
    codes = population_codes(pop)
    counties = len(COUNTY_LABELS)
    sizes = np.bincount(pop.county, minlength=counties)
    rows: list[dict[str, object]] = []
    for c in range(counties):
        mask = pop.county == c
        for variable, labels in RAKING_VARIABLES.items():
            counts = np.bincount(codes[variable][mask], minlength=len(labels) + 1)[1:]
            for j, label in enumerate(labels):
                rows.append(
                    {
                        "county": c + 1,
                        "county_label": COUNTY_LABELS[c],
                        "variable": variable,
                        "category": j + 1,
                        "label": label,
                        "share": float(counts[j]) / float(sizes[c]),
                        "population": int(sizes[c]),
                        "source": source,
                        "year": year,
                    }
                )
    return pl.DataFrame(rows, schema=_target_schema())


def _target_schema() -> dict[str, pl.DataType]:
    return {
        "county": pl.Int64,
        "county_label": pl.String,
        "variable": pl.String,
        "category": pl.Int64,
        "label": pl.String,
        "share": pl.Float64,
        "population": pl.Int64,
        "source": pl.String,
        "year": pl.Int64,
    }


@dataclass(frozen=True)
class _Cells:
    """The distinct response-model cells of the population and their sizes."""

    attributes: dict[str, np.ndarray]
    count: np.ndarray


def _response_cells(pop: Population) -> _Cells:
    """Population counts by status x county x education x age group x sex (the p_ij inputs)."""
    dims = {"status": 4, "county": 4, "education": 4, "age_group": 4, "male": 2}
    index = np.zeros(pop.size, dtype=np.int64)
    for name, size in dims.items():
        index = index * size + getattr(pop, name)
    count = np.bincount(index, minlength=int(np.prod(list(dims.values())))).astype(np.float64)
    codes = np.arange(count.shape[0])
    attributes: dict[str, np.ndarray] = {}
    for name, size in reversed(dims.items()):
        attributes[name] = codes % size
        codes = codes // size
    return _Cells(attributes=attributes, count=count)


def population_truth(pop: Population, spec: ResponseSpec) -> pl.DataFrame:
    """Population truths of the attitude items and the population margins.

    Parameters
    ----------
    pop : Population
        The synthetic population.
    spec : ResponseSpec
        The response model whose marginal probabilities define the item truths.

    Returns
    -------
    polars.DataFrame
        Columns :data:`TRUTH_COLUMNS`. ``by`` is ``""`` (whole population, domain ``All``),
        ``COUNTY`` or ``STATUS4``; ``levels`` lists the codes counted (``"1,2"``).
    """
    counties, statuses = len(COUNTY_LABELS), len(STATUS_LABELS)
    county_sizes = np.bincount(pop.county, minlength=counties)
    status_sizes = np.bincount(pop.status, minlength=statuses)
    total = int(county_sizes.sum())
    rows: list[dict[str, object]] = []

    def add(
        variable: str,
        levels: str,
        label: str,
        by: str,
        code: int | None,
        domain: str,
        share: float,
        size: int,
        definition: str,
    ) -> None:
        rows.append(
            {
                "variable": variable,
                "levels": levels,
                "label": label,
                "by": by,
                "domain_code": code,
                "domain": domain,
                "share": share,
                "population": size,
                "definition": definition,
            }
        )

    # p_ij depends on the person only through (status, county, education, age group, sex), so the
    # population mean of p_ij is the cell-count-weighted mean over those 4x4x4x4x2 cells: exact,
    # and a 512-term sum instead of a 6-million-term one.
    cells = _response_cells(pop)
    for item in spec.attitude_items:
        q = agree_probability(spec, item, **cells.attributes)
        levels = ",".join(map(str, item.agree_codes))
        label = f"codes {levels}"
        by_county = np.bincount(cells.attributes["county"], weights=cells.count * q, minlength=counties)
        by_status = np.bincount(cells.attributes["status"], weights=cells.count * q, minlength=statuses)
        add(item.name, levels, label, "", None, "All", float(by_county.sum()) / total, total, _ITEM_DEFINITION)
        for c in range(counties):
            share, size = float(by_county[c] / county_sizes[c]), int(county_sizes[c])
            add(item.name, levels, label, "COUNTY", c + 1, COUNTY_LABELS[c], share, size, _ITEM_DEFINITION)
        for s in range(statuses):
            share, size = float(by_status[s] / status_sizes[s]), int(status_sizes[s])
            add(item.name, levels, label, "STATUS4", s + 1, STATUS_LABELS[s], share, size, _ITEM_DEFINITION)

    margins = {
        **{name: (codes, RAKING_VARIABLES[name]) for name, codes in population_codes(pop).items()},
        "STATUS4": ((pop.status + 1).astype(np.int8), STATUS_LABELS),
        "LANG": ((pop.language + 1).astype(np.int8), ("English", "Spanish")),
    }
    for variable, (codes, labels) in margins.items():
        overall = np.bincount(codes, minlength=len(labels) + 1)[1:]
        for j, label in enumerate(labels):
            add(variable, str(j + 1), label, "", None, "All", float(overall[j]) / total, total, _MARGIN_DEFINITION)
        for c in range(counties):
            counts = np.bincount(codes[pop.county == c], minlength=len(labels) + 1)[1:]
            for j, label in enumerate(labels):
                share = float(counts[j]) / float(county_sizes[c])
                size = int(county_sizes[c])
                add(variable, str(j + 1), label, "COUNTY", c + 1, COUNTY_LABELS[c], share, size, _MARGIN_DEFINITION)

    schema = {
        "variable": pl.String,
        "levels": pl.String,
        "label": pl.String,
        "by": pl.String,
        "domain_code": pl.Int64,
        "domain": pl.String,
        "share": pl.Float64,
        "population": pl.Int64,
        "definition": pl.String,
    }
    return pl.DataFrame(rows, schema=schema)

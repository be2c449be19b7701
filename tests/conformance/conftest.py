"""Conformance harness: R ``survey`` 4.1-1 reference values, read in place.

The suite lives in ``../shared/conformance`` next to the project root
(DESIGN.md section 7); ``conformance/README.md`` there documents every file,
the R calls and the tolerances used below. If the folder is missing the tests
fail (they never skip).

Each test module compares one ``expected/*.csv`` file row by row through
:func:`check_rows` and lists the rows it cannot match in its own
``KNOWN_GAPS`` (pattern + reason). A row that neither matches nor is a listed
gap fails the test, and so does a listed gap that starts matching, so the list
stays honest. At the end of the session one line per file is printed:
``conformance <file>: <matched>/<rows> rows (<k> known gaps)``.

Tolerances (``conformance/README.md``, "Suggested comparison tolerances"):

* :data:`RTOL_CLOSED` = 1e-9 relative: means, totals, ratios, their
  linearization and replicate SEs, covariances, design effects.
* :data:`NOISE_REL` = 1e-12: values that are zero in exact arithmetic (SE of
  a domain inside one cluster) are floating-point noise in R; they are
  compared with an absolute tolerance of ``NOISE_REL * |estimate|``.
* :data:`RTOL_GLM` = 1e-8 relative: ``svyciprop`` logit/likelihood/default
  estimates (R's glm stops iterating at ~1e-11 relative).
* :data:`RTOL_PROFILE` = 1e-6 relative: ``likelihood`` interval bounds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from pipeline.survey.design import Design

#: The shared conformance folder (project root / .. / shared / conformance).
CONFORMANCE = (Path(__file__).parents[2] / ".." / "shared" / "conformance").resolve()
EXPECTED = CONFORMANCE / "expected"
DATA = CONFORMANCE / "data"

RTOL_CLOSED = 1e-9
NOISE_REL = 1e-12
RTOL_GLM = 1e-8
RTOL_PROFILE = 1e-6

_TALLY: dict[str, dict[str, int]] = {}


def conformance_folder() -> Path:
    """The conformance folder; fails (never skips) when it is missing."""
    if not (EXPECTED / "designs.csv").is_file():
        pytest.fail(
            f"conformance suite not found at {CONFORMANCE} (expected/designs.csv missing); "
            "it is read in place from ../shared/conformance next to the project root (DESIGN.md section 7)",
            pytrace=False,
        )
    return CONFORMANCE


def read_expected(name: str) -> pl.DataFrame:
    """An ``expected/`` CSV with text columns as strings and numbers as float64 (``inf`` allowed)."""
    conformance_folder()
    df = pl.read_csv(EXPECTED / name, infer_schema_length=0)
    out = []
    for col in df.columns:
        s = df.get_column(col)
        num = s.cast(pl.Float64, strict=False)
        if s.null_count() == num.null_count() and col not in _TEXT_COLUMNS:
            out.append(num)
        else:
            out.append(s)
    return pl.DataFrame(out)


_TEXT_COLUMNS = {"case", "design", "estimator", "variable", "by", "domain", "level", "method", "level_i", "level_j",
                 "status", "message", "lonely_psu", "r_call", "note", "formula", "statistic_type", "statistic_name",
                 "qrule", "interval_type", "row_var", "row_level", "col_var", "col_level", "column", "rep_type",
                 "kind", "data_file", "notes"}


# ------------------------------------------------------------------ designs
def _data(file: str) -> pl.DataFrame:
    return pl.read_csv(DATA / file, infer_schema_length=10000)


_DESIGN_CACHE: dict[tuple[str, str], Design] = {}


def _nhanes2psu() -> pl.DataFrame:
    nh = _data("nhanes.csv")
    return nh.with_columns(pl.when(pl.col("SDMVPSU") == 3).then(2).otherwise(pl.col("SDMVPSU")).alias("SDMVPSU"))


def _linearization(name: str, lonely: str) -> Design:
    """The linearization designs of designs.csv, each from its R call."""
    d = Design.from_frame
    if name == "srs":  # svydesign(id = ~1, fpc = ~fpc, data = apisrs)
        return d(_data("apisrs.csv"), fpc=["fpc"], lonely_psu=lonely)
    if name == "srs_wr":  # svydesign(id = ~1, weights = ~pw, data = apisrs)
        return d(_data("apisrs.csv"), weights="pw", lonely_psu=lonely)
    if name == "strat":  # svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat)
        return d(_data("apistrat.csv"), strata="stype", weights="pw", fpc=["fpc"], lonely_psu=lonely)
    if name == "clus1":  # svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1)
        return d(_data("apiclus1.csv"), ids=["dnum"], weights="pw", fpc=["fpc"], lonely_psu=lonely)
    if name == "clus2":  # svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, data = apiclus2)
        return d(_data("apiclus2.csv"), ids=["dnum", "snum"], fpc=["fpc1", "fpc2"], lonely_psu=lonely)
    if name == "nhanes":  # svydesign(id = ~SDMVPSU, strata = ~SDMVSTRA, weights = ~WTMEC2YR, nest = TRUE, data = nhanes)
        return d(_data("nhanes.csv"), ids=["SDMVPSU"], strata="SDMVSTRA", weights="WTMEC2YR", nest=True, lonely_psu=lonely)
    if name == "nhanes2psu":
        return d(_nhanes2psu(), ids=["SDMVPSU"], strata="SDMVSTRA", weights="WTMEC2YR", nest=True, lonely_psu=lonely)
    if name == "scd":  # svydesign(data = scd, prob = ~1, id = ~ambulance, strata = ~ESA, nest = TRUE)
        return d(_data("scd.csv"), ids=["ambulance"], strata="ESA", nest=True, lonely_psu=lonely)
    if name == "yrbs":  # update(svydesign(id = ~psu, weights = ~weight, strata = ~stratum, data = yrbs), qn8yes = 2 - qn8)
        frame = _data("yrbs.csv").with_columns((2 - pl.col("qn8")).alias("qn8yes"))
        return d(frame, ids=["psu"], strata="stratum", weights="weight", lonely_psu=lonely)
    if name == "nhanes_lonely":  # nhanes[!(SDMVSTRA == 89 & SDMVPSU == 2), ]
        frame = _data("nhanes.csv").filter(~((pl.col("SDMVSTRA") == 89) & (pl.col("SDMVPSU") == 2)))
        return d(frame, ids=["SDMVPSU"], strata="SDMVSTRA", weights="WTMEC2YR", nest=True, lonely_psu=lonely)
    if name == "strat_lonely":  # apistrat: every E and M school, only the first H school in file order
        st = _data("apistrat.csv").with_row_index("__row")
        first_h = st.filter(pl.col("stype") == "H").get_column("__row")[0]
        frame = st.filter((pl.col("stype") != "H") | (pl.col("__row") == first_h)).drop("__row")
        return d(frame, strata="stype", weights="pw", fpc=["fpc"], lonely_psu=lonely)
    raise KeyError(name)


_SUBSETS = {  # domain designs: subset(<design>, !is.na(HI_CHOL))
    "nhanes_hc": ("nhanes", "HI_CHOL"),
    "nhanes_jkn_hc": ("nhanes_jkn", "HI_CHOL"),
}


def design(name: str, lonely: str = "fail") -> Design:
    """Design ``name`` of ``expected/designs.csv``, built by this package.

    Replicate designs use the replicate weights R exported
    (``expected/repweights/``, ``replicate_scales.csv``), as ``svrepdesign``
    with given weights; building them is tested in ``test_replicates.py``.
    Raises ``KeyError`` for designs this harness cannot build.
    """
    key = (name, lonely)
    if key in _DESIGN_CACHE:
        return _DESIGN_CACHE[key]
    info = {r["design"]: r for r in read_expected("designs.csv").iter_rows(named=True)}
    if name in _SUBSETS:
        parent, var = _SUBSETS[name]
        base = design(parent, lonely)
        out = base.subset(base.frame.get_column(var).is_not_null().to_numpy())
    elif name not in info:
        raise KeyError(name)
    elif info[name]["kind"] in ("linearization", "lonely"):
        out = _linearization(name, lonely)
    elif info[name]["kind"] == "replicate":
        out = replicate_design(name, info[name])
    elif info[name]["kind"] in ("weighted", "weighted-replicate") and name in WEIGHTED:
        out = weighted_design(name)
    else:
        raise KeyError(name)
    _DESIGN_CACHE[key] = out
    return out


def replicate_design(name: str, info: Mapping[str, Any]) -> Design:
    """A replicate design of designs.csv.

    ``as.svrepdesign(<design>, type = JK1|JKn|BRR|Fay)`` is built by
    :mod:`pipeline.survey.replicates` (deterministic, equal to R's weights);
    bootstrap replicates depend on R's random numbers, so those designs use
    R's exported weights; ``svrepdesign(..., repweights = scd_repweights,
    combined.weights = FALSE)`` is built from the given 0/2 multipliers.
    """
    from pipeline.survey import replicates as rp

    call = info["r_call"]
    mse = str(info["mse"]).lower() == "true"
    if name == "scd_brr_given":
        multipliers = 2.0 * np.column_stack(
            [[1, 0, 1, 0, 1, 0], [1, 0, 0, 1, 0, 1], [0, 1, 1, 0, 0, 1], [0, 1, 0, 1, 1, 0]]
        )
        return Design.from_replicate_weights(
            _data("scd.csv"), replicate_weights=multipliers, type="BRR", combined_weights=False, mse=mse
        )
    if info["rep_type"] == "bootstrap":
        return given_replicate_design(name, info)
    match = re.search(r"as\.svrepdesign\((\w+), type = \"(\w+)\"", call)
    if match is None:
        raise KeyError(name)
    source, rtype = match.groups()
    options: dict[str, Any] = {"mse": mse}
    if rtype == "Fay":
        options["rho"] = float(info["fay_rho"])
    return rp.as_replicate_design(design(source), rtype, **options)


def given_replicate_design(name: str, info: Mapping[str, Any]) -> Design:
    """A replicate design from R's exported analysis replicate weights and scales."""
    frame = _nhanes2psu() if name.startswith("nhanes2psu") else _data(info["data_file"])
    rw = pl.read_csv(EXPECTED / "repweights" / f"{name}.csv")
    scales = read_expected("replicate_scales.csv").filter(pl.col("design") == name).sort("replicate")
    reps = [c for c in rw.columns if c.startswith("rep_")]
    rho = info["fay_rho"]
    return Design.from_replicate_weights(
        frame,
        replicate_weights=rw.select(reps).to_numpy().astype(np.float64),
        weights=rw.get_column("weight").to_numpy().astype(np.float64),
        type=info["rep_type"],
        combined_weights=True,
        scale=float(scales.get_column("scale")[0]),
        rscales=scales.get_column("rscale").to_numpy(),
        rho=None if rho is None or (isinstance(rho, float) and math.isnan(rho)) else float(rho),
        mse=str(info["mse"]).lower() == "true",
    )


# ----------------------------------------------------------- weighted designs
def _controls() -> dict[str, pl.DataFrame]:
    """pop.types, pop.schwide and pop.totals as the weighting engine's target tables."""
    c = pl.read_csv(EXPECTED / "population_controls.csv")

    def margin(control: str) -> pl.DataFrame:
        return c.filter(pl.col("control") == control).select(
            "variable", pl.col("level").alias("category"), pl.col("value").cast(pl.Float64).alias("target")
        )

    tot = dict(c.filter(pl.col("control") == "pop.totals").select("variable", "value").iter_rows())
    # ~stype + api99 with treatment contrasts spans the same space as one indicator per stype level
    totals = pl.DataFrame(
        {
            "variable": ["stype", "stype", "stype", "api99"],
            "category": ["E", "H", "M", None],
            "target": [
                float(tot["(Intercept)"] - tot["stypeH"] - tot["stypeM"]),
                float(tot["stypeH"]),
                float(tot["stypeM"]),
                float(tot["api99"]),
            ],
        },
        schema={"variable": pl.String, "category": pl.String, "target": pl.Float64},
    )
    return {"types": margin("pop.types"), "schwide": margin("pop.schwide"), "totals": totals}


def _weighting_steps() -> dict[str, Callable[..., Any]]:
    from pipeline.survey import weighting as wt

    def both(c):
        return pl.concat([c["types"], c["schwide"]])

    return {
        # postStratify(clus1, ~stype, pop.types)
        "ps_clus1": lambda f, c, r=None: wt.poststratify(f, weight="pw", targets=c["types"], replicates=r),
        # rake(clus1, list(~stype, ~sch.wide), ...) with R's default control (maxit 10, epsilon 1)
        "rake_clus1": lambda f, c, r=None: wt.rake(
            f, weight="pw", targets=both(c), max_iter=10, tolerance=1.0, stop_rule="r_default", replicates=r
        ),
        # rake(..., control = list(maxit = 1000, epsilon = 1e-12))
        "rake_clus1_tight": lambda f, c, r=None: wt.rake(f, weight="pw", targets=both(c), max_iter=1000, tolerance=1e-12),
        # calibrate(clus1, ~stype + api99, pop.totals, calfun = ...)
        "cal_linear_clus1": lambda f, c, r=None: wt.calibrate(f, weight="pw", targets=c["totals"], method="linear", replicates=r),
        "cal_raking_clus1": lambda f, c, r=None: wt.calibrate(f, weight="pw", targets=c["totals"], method="raking"),
        "cal_logit_clus1": lambda f, c, r=None: wt.calibrate(
            f, weight="pw", targets=c["totals"], method="logit", bounds=(0.7, 1.7)
        ),
        "cal_linear_bounded_clus1": lambda f, c, r=None: wt.calibrate(
            f, weight="pw", targets=c["totals"], method="linear", bounds=(0.7, 1.7)
        ),
        # postStratify(strat, ~sch.wide, pop.schwide)
        "ps_strat": lambda f, c, r=None: wt.poststratify(f, weight="pw", targets=c["schwide"], replicates=r),
    }


#: weighted design -> (source design, step name, trimming bounds or None)
WEIGHTED: dict[str, tuple[str, str, dict | None]] = {
    "ps_clus1": ("clus1", "ps_clus1", None),
    "rake_clus1": ("clus1", "rake_clus1", None),
    "rake_clus1_tight": ("clus1", "rake_clus1_tight", None),
    "cal_linear_clus1": ("clus1", "cal_linear_clus1", None),
    "cal_raking_clus1": ("clus1", "cal_raking_clus1", None),
    "cal_logit_clus1": ("clus1", "cal_logit_clus1", None),
    "cal_linear_bounded_clus1": ("clus1", "cal_linear_bounded_clus1", None),
    # trimWeights(cal_linear_clus1, lower = 30, upper = 50[, strict = TRUE]): calibration adjustment kept
    "trim_cal_clus1": ("clus1", "cal_linear_clus1", {"lower": 30, "upper": 50}),
    "trim_cal_clus1_strict": ("clus1", "cal_linear_clus1", {"lower": 30, "upper": 50, "strict": True}),
    "ps_strat": ("strat", "ps_strat", None),
    # trimWeights(strat, upper = 40): no weighting step before, weights treated as fixed
    "trim_strat": ("strat", None, {"upper": 40}),
    # the same steps redone in every replicate
    "ps_clus1_jk1": ("clus1_jk1", "ps_clus1", None),
    "cal_linear_clus1_jk1": ("clus1_jk1", "cal_linear_clus1", None),
    "rake_clus1_boot": ("clus1_boot", "rake_clus1", None),
}
#: designs whose weights come from an iteration (README: relative 1e-6)
ITERATIVE = {"rake_clus1", "rake_clus1_tight", "cal_raking_clus1", "cal_logit_clus1", "cal_linear_bounded_clus1", "rake_clus1_boot"}


def weighted_design(name: str) -> Design:
    """A weighted design of designs.csv: the source design reweighted by the weighting engine."""
    from pipeline.survey import weighting as wt

    source, step, trim = WEIGHTED[name]
    base = design(source)
    frame = base.frame
    controls = _controls()
    if base.is_replicate:
        res = _weighting_steps()[step](frame, controls, base.replicates.weights)
        # degf is then the rank of the new replicate weights - 1, as R recomputes it
        return base.reweight(res.weights, replicate_weights=res.replicate_weights)
    if step is None:
        out, weights = base, base.weights
    else:
        res = _weighting_steps()[step](frame, controls)
        out, weights = base.reweight(res.weights, res.adjustment), res.weights
    if trim is not None:
        t = wt.trim_weights(np.asarray(weights), **trim)
        out = out.reweight(t.weights, t.adjustment)
    return out


# ------------------------------------------------------------------ compare
@dataclass(frozen=True)
class Gap:
    """A row (or family of rows) we do not reproduce, with the reason.

    ``case`` is a regular expression matched (``re.fullmatch``) against the
    row's ``case``; ``key`` optionally against the rest of the row key.
    """

    case: str
    key: str | None
    reason: str

    def covers(self, case: str, key: str) -> bool:
        if not re.fullmatch(self.case, case):
            return False
        return self.key is None or re.fullmatch(self.key, key) is not None


@dataclass
class FieldSpec:
    """How to compare one column: relative tolerance and whether NA must be reproduced."""

    rtol: float = RTOL_CLOSED
    na_is_value: bool = False  # expected NA must come out as NaN (not just "no reference")
    noise: bool = False        # allow an absolute NOISE_REL * scale tolerance


@dataclass
class Outcome:
    rows: int = 0
    matched: int = 0
    gaps: int = 0
    unexpected: list[str] = field(default_factory=list)
    stale_gaps: list[str] = field(default_factory=list)
    gap_reasons: dict[str, int] = field(default_factory=dict)


def close(actual: float, expected: float | None, spec: FieldSpec, scale: float = 0.0) -> bool:
    """Whether ``actual`` reproduces ``expected`` under ``spec`` (``scale``: magnitude for noise)."""
    if isinstance(expected, str):
        # text: equal, or R's message contained in ours (ours adds where and a hint)
        return isinstance(actual, str) and (actual == expected or (len(expected) > 8 and expected.lower() in actual.lower()))
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        if spec.na_is_value:
            return actual is None or (isinstance(actual, float) and math.isnan(actual))
        return True
    if actual is None or isinstance(actual, str) or math.isnan(actual):
        return False
    if math.isinf(expected) or math.isinf(actual):
        return expected == actual
    tol = spec.rtol * abs(expected)
    if spec.noise:
        tol += NOISE_REL * abs(scale)
    return abs(actual - expected) <= tol


def check_rows(
    file: str,
    expected: pl.DataFrame,
    compute: Callable[[str, list[dict[str, Any]]], Mapping[str, Mapping[str, float | None]] | None],
    *,
    key: Callable[[dict[str, Any]], str],
    fields: Mapping[str, FieldSpec | dict] | Callable[[dict[str, Any]], Mapping[str, FieldSpec | dict]],
    scale: Callable[[dict[str, Any], Mapping[str, Any], str], float] = lambda row, got, field: 0.0,
    gaps: Iterable[Gap | tuple] = (),
) -> Outcome:
    """Compare every row of ``expected``, grouped by ``case``.

    ``compute(case, rows)`` returns ``{key(row): {field: value}}`` for the
    case's rows, or ``None`` when the case is not supported. Records the
    tally for the end-of-session report and returns the outcome.
    """
    gaps = [g if isinstance(g, Gap) else Gap(*g) for g in gaps]
    def specs(row: dict[str, Any]) -> dict[str, FieldSpec]:
        fs = fields(row) if callable(fields) else fields
        return {f: (v if isinstance(v, FieldSpec) else FieldSpec(**v)) for f, v in fs.items()}

    out = Outcome()
    for (case,), group in expected.group_by(["case"], maintain_order=True):
        rows = list(group.iter_rows(named=True))
        try:
            got = compute(case, rows)
        except NotImplementedError:
            got = None
        for row in rows:
            out.rows += 1
            k = key(row)
            gap = next((g for g in gaps if g.covers(case, k)), None)
            values = None if got is None else got.get(k)
            row_fields = specs(row)
            ok = values is not None and all(
                close(values.get(f), row.get(f), spec, scale(row, values, f)) for f, spec in row_fields.items()
            )
            if ok and gap is None:
                out.matched += 1
            elif ok:
                out.matched += 1
                out.stale_gaps.append(f"{case} [{k}] matches now but is listed as a gap ({gap.reason})")
            elif gap is not None:
                out.gaps += 1
                out.gap_reasons[gap.reason] = out.gap_reasons.get(gap.reason, 0) + 1
            else:
                detail = "not computed" if values is None else ", ".join(
                    f"{f}: got {values.get(f)!r} expected {row.get(f)!r}"
                    for f, spec in row_fields.items()
                    if not close(values.get(f), row.get(f), spec, scale(row, values, f))
                )
                out.unexpected.append(f"{case} [{k}]: {detail}")
    tally = _TALLY.setdefault(file, {"rows": 0, "matched": 0, "gaps": 0, "reasons": {}})
    tally["rows"] += out.rows
    tally["matched"] += out.matched
    tally["gaps"] += out.gaps
    for reason, count in out.gap_reasons.items():
        tally["reasons"][reason] = tally["reasons"].get(reason, 0) + count
    return out


def assert_outcome(file: str, out: Outcome) -> None:
    """Fail with every unexpected row and every stale gap listed."""
    problems = out.unexpected + out.stale_gaps
    if problems:
        shown = "\n  ".join(problems[:40])
        more = f"\n  ... and {len(problems) - 40} more" if len(problems) > 40 else ""
        pytest.fail(
            f"conformance {file}: {out.matched}/{out.rows} rows matched, {out.gaps} known gaps, "
            f"{len(out.unexpected)} unexpected mismatches, {len(out.stale_gaps)} stale gaps:\n  {shown}{more}",
            pytrace=False,
        )


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001 - pytest hook signature
    """Print one ``conformance <file>: <matched>/<rows> rows`` line per compared file."""
    if not _TALLY:
        return
    terminalreporter.section("R survey 4.1-1 conformance")
    for file in sorted(_TALLY):
        t = _TALLY[file]
        terminalreporter.write_line(
            f"conformance {file}: {t['matched']}/{t['rows']} rows ({t['gaps']} known gaps)"
        )
        for reason, count in t["reasons"].items():
            terminalreporter.write_line(f"    known gap, {count} rows: {reason}")


# ------------------------------------------------------------------ shared
def ciprop_rtol(method: str) -> float:
    """Tolerance of svyciprop intervals: glm-based methods 1e-8, likelihood 1e-6, closed forms 1e-9."""
    if method in ("default", "logit"):
        return RTOL_GLM
    if method == "likelihood":
        return RTOL_PROFILE
    return RTOL_CLOSED


def estimate_scale(row: Mapping[str, Any], got: Mapping[str, Any], field: str) -> float:
    """Magnitude for the noise tolerance: the estimate for SEs and intervals, 1 for design effects."""
    if field.startswith("deff"):
        return 1.0
    return abs(got.get("estimate") or 0.0)


def fnum(x: Any) -> float:
    """A float (NaN for None)."""
    return float("nan") if x is None else float(x)


def domain_label(keys: pl.DataFrame, by: list[str], i: int) -> str:
    """R-style domain label ``a=1;b=x`` of row ``i`` of an Estimates' keys."""
    return ";".join(f"{b}={_fmt(keys.get_column(b)[i])}" for b in by)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def level_label(v: Any) -> str:
    """R-style level label."""
    return "" if v is None else _fmt(v)


# ----------------------------------------------------- estimates-like cases
def estimate_case(case: str, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """svymean / svytotal / svyratio of one ``case`` (estimates, lonely_psu, vcov files).

    Returns ``{level: {field: value}}``; factor results also carry
    ``("cov", level_j)`` entries. Lonely-PSU errors come back as
    ``{"status": "error", "message": ...}`` on every row.
    """
    from pipeline.errors import DesignError
    from pipeline.survey import estimators as est

    lonely = "fail"
    c = case
    if c.startswith("lonely="):
        prefix, c = c.split(":", 1)
        lonely = prefix.split("=", 1)[1]
    fun, var, dname = c.split(":")
    try:
        d = design(dname, lonely)
    except KeyError as exc:
        raise NotImplementedError(dname) from exc
    call = rows[0].get("r_call") or ""
    na_rm = "na.rm=TRUE" in call
    factor = any(r.get("level") or r.get("level_i") for r in rows)
    try:
        if fun == "svyratio":
            num, den = var.split("/")
            res = est.ratio(d, num, den, na_rm=na_rm, deff=True)
            res_replace = est.ratio(d, num, den, na_rm=na_rm, deff="replace")
        else:
            f = {"svymean": est.mean, "svytotal": est.total}[fun]
            res = f(d, var, na_rm=na_rm, deff=True, categorical=True if factor else None)
            res_replace = f(d, var, na_rm=na_rm, deff="replace", categorical=True if factor else None)
    except DesignError as exc:
        return {level_label(r.get("level")) if r.get("level") else "": {"status": "error", "message": str(exc)} for r in rows}
    ci = res.confint(0.95, float("inf"))
    ci_t = res.confint(0.95, "design")
    levels = [level_label(v) if factor else "" for v in res.keys.get_column("level").to_list()]
    out: dict[str, dict[str, Any]] = {}
    for i, lv in enumerate(levels):
        out[lv] = {
            "status": "ok",
            "message": "",
            "estimate": float(res.estimate[i]),
            "se": float(res.se[i]),
            "ci_low": float(ci[i, 0]),
            "ci_high": float(ci[i, 1]),
            "ci_low_t": float(ci_t[i, 0]),
            "ci_high_t": float(ci_t[i, 1]),
            "df": float(res.design_df),
            "deff": float(res.deff[i]),
            "deff_replace": float(res_replace.deff[i]),
        }
        for j, lj in enumerate(levels):
            out[lv][("cov", lj)] = float(res.vcov[i, j])
    return out


#: svyciprop variable labels (ciprop.csv, domains.csv) -> (indicator expression, na.rm)
CIPROP_TERMS: dict[str, tuple[pl.Expr, bool]] = {
    "sch_wide_yes": (pl.col("sch.wide") == "Yes", False),          # I(sch.wide == "Yes")
    "awards_yes": (pl.col("awards") == "Yes", False),              # I(awards == "Yes")
    "rare_api00_gt_900": (pl.col("api00") > 900, False),           # I(api00 > 900)
    "rare_api00_lt_450": (pl.col("api00") < 450, False),           # I(api00 < 450)
    "rare_yr_rnd_yes": (pl.col("yr.rnd") == "Yes", False),         # I(yr.rnd == "Yes")
    "hi_chol": (pl.col("HI_CHOL") == 1, False),                    # I(HI_CHOL == 1)
    "rare_race_4": (pl.col("race") == 4, False),                   # I(race == 4)
    "qn8yes": (pl.col("qn8yes") == 1, True),                       # qn8yes (0/1), na.rm = TRUE
}


def with_indicator(d: Design, label: str) -> tuple[Design, bool]:
    """The design with column ``__ind`` = the svyciprop term of ``label``; and its na.rm."""
    expr, na_rm = CIPROP_TERMS[label]
    return d.with_frame(d.frame.with_columns(expr.alias("__ind"))), na_rm


@pytest.fixture(scope="session")
def ref():
    """The harness, for the test modules (which cannot import this conftest under importlib mode)."""
    from types import SimpleNamespace

    conformance_folder()
    return SimpleNamespace(
        folder=CONFORMANCE,
        read=read_expected,
        design=design,
        check_rows=check_rows,
        assert_outcome=assert_outcome,
        estimate_case=estimate_case,
        estimate_scale=estimate_scale,
        with_indicator=with_indicator,
        ciprop_rtol=ciprop_rtol,
        Gap=Gap,
        FieldSpec=FieldSpec,
        close=close,
        fnum=fnum,
        domain_label=domain_label,
        level_label=level_label,
        RTOL_CLOSED=RTOL_CLOSED,
        RTOL_GLM=RTOL_GLM,
        RTOL_PROFILE=RTOL_PROFILE,
        NOISE_REL=NOISE_REL,
    )

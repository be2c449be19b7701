"""The estimate stage's survey-weighted regressions (``models``): ``models.csv`` (one row per
coefficient), ``estimate/model_tests.csv`` (the Wald test of each term) and
``estimate/model_margins.csv`` (the predictive margins of each categorical term's levels).

Each model is :func:`pipeline.survey.models.glm` (R ``svyglm``) in the stage's design: the
weighting remembered for the variance (calibration residuals), replicate designs refit per
replicate, a ``subpopulation`` by zero weights. The analysis columns follow the estimates'
rules: a response with ``levels`` is the 0/1 indicator of those codes (the don't-know and
refused codes out with ``denominator: valid``, 0 with ``all``); the missing-value codes of every
other model variable are missing, so the row leaves the model (R ``na.omit``) and stays in the
design; variables with value labels are categorical, their terms named by the labels.

``models.csv`` columns (:data:`MODEL_COLUMNS`): the coefficient (``term`` as R names it, its
``label``, the ``variable`` and ``level`` it is of, the ``reference`` level of a categorical
term), ``estimate``, ``se``, the t ``statistic``, ``p_value``, the Wald t interval on the model's
residual degrees of freedom ``df`` (R ``confint(fit, df = fit$df.residual)``... as
``summary.svyglm``'s t tests), ``n`` (rows in the model), and for logistic and Poisson models the
``ratio`` (``exp(estimate)``: odds or rate ratio) with its interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import ModelSpec, Wave
    from pipeline.io import Codebook

#: models.csv columns, in order
MODEL_COLUMNS = (
    "wave", "model_id", "term", "label", "variable", "level", "reference", "estimate", "se", "statistic", "p_value",
    "ci_low", "ci_high", "conf_level", "df", "n", "family", "ratio", "ratio_ci_low", "ratio_ci_high", "ratio_name",
    "dispersion", "title",
)
#: estimate/model_tests.csv columns: the Wald test of every term (R ``regTermTest(fit, ~term)``)
TEST_COLUMNS = ("wave", "model_id", "term", "statistic", "df", "ddf", "p_value", "method")
#: estimate/model_margins.csv columns: the predictive margin of every level of each categorical
#: term (R ``svypredmeans``: the average prediction with the term set to the level), its SE and
#: t interval on the model's residual degrees of freedom
MARGIN_COLUMNS = ("wave", "model_id", "variable", "level", "label", "estimate", "se", "ci_low", "ci_high", "df")


def models_for(models: Sequence[ModelSpec], wave: Wave) -> list[tuple[int, ModelSpec]]:
    """The models a wave fits, with their positions: those using a ``not_asked`` variable left out."""
    from pipeline.errors import ArgumentError

    gone = set(wave.not_asked)
    out = []
    for i, m in enumerate(models):
        try:
            used = set(model_variables(m))
        except ArgumentError:  # a formula that does not parse: model_problems says why
            used = set()
        if not used & gone:
            out.append((i, m))
    return out


def formula_of(spec: ModelSpec) -> str:
    """The model's formula: ``formula``, or ``response ~ terms`` (the response as written)."""
    if spec.formula is not None:
        return spec.formula
    return f"{spec.response} ~ {' + '.join(spec.terms)}"


def model_variables(spec: ModelSpec) -> tuple[str, ...]:
    """Every variable of the model, the response first (parsed, never evaluated)."""
    from pipeline.survey.formula import parse

    return parse(formula_of(spec)).variables


def model_problems(i: int, spec: ModelSpec, frame: pl.DataFrame, codebook: Codebook) -> list[str]:
    """What is wrong with ``models[i]`` against the data (also checked by ``validate``)."""
    from pipeline.errors import ArgumentError
    from pipeline.survey.formula import parse

    key = f"models[{i}] ({spec.id})"
    try:
        f = parse(formula_of(spec))
    except ArgumentError as exc:
        return [f"{key}.{'formula' if spec.formula else 'terms'}: {exc.message}" + (f"; {exc.hint}" if exc.hint else "")]
    problems = [f"{key}: {v} is not in the weighted data" for v in f.variables if v not in frame.columns]
    if problems:
        return problems
    labels = codebook.get(f.response).value_labels
    if spec.levels is not None and labels:
        bad = [c for c in spec.levels if c not in labels]
        if bad:
            problems.append(f"{key}.levels: code(s) {bad} are not labelled codes of {f.response} (codes: {', '.join(f'{k} {v}' for k, v in labels.items())})")
    if spec.levels is None and not frame.schema[f.response].is_numeric():
        problems.append(f"{key}.response: {f.response} is text; give levels: [...] for a binary response (family: logistic)")
    for var, code in spec.reference.items():
        if var not in f.variables[1:]:
            problems.append(f"{key}.reference: {var} is not a term of the model (terms: {', '.join(f.variables[1:])})")
    return problems


def model_frame(frame: pl.DataFrame, spec: ModelSpec, codebook: Codebook) -> tuple[pl.DataFrame, str, list[str], dict[str, dict[Any, str]]]:
    """The frame the model is fitted on: the response (``__<id>``: an indicator with ``levels``),
    every variable's missing-value codes set missing; the formula on it, the categorical
    variables (numeric variables whose every value is a labelled code) and their labels."""
    import polars as pl

    from pipeline.survey.formula import parse

    f = parse(formula_of(spec))
    exprs = []
    for v in f.variables[1:]:
        missing = sorted(codebook.get(v).missing_values, key=str)
        if missing:
            exprs.append(pl.when(pl.col(v).is_in(missing)).then(None).otherwise(pl.col(v)).alias(v))
    y = pl.col(f.response)
    missing = sorted(codebook.get(f.response).missing_values, key=str)
    if spec.levels is not None:
        hit = y.is_in(list(spec.levels)).cast(pl.Float64)
        if spec.denominator == "all":
            resp = pl.when(y.is_null()).then(None).otherwise(hit)
        else:
            resp = pl.when(y.is_null() | y.is_in(missing)).then(None).otherwise(hit)
    else:
        resp = (pl.when(y.is_in(missing)).then(None).otherwise(y) if missing else y).cast(pl.Float64)
    column = f"__{spec.id}"
    work = frame.with_columns(*exprs, resp.alias(column))
    text = _with_response(formula_of(spec), column)
    categorical = [v for v in f.variables[1:] if frame.schema[v].is_numeric() and _labelled_codes(work.get_column(v), codebook.get(v).value_labels)]
    labels = {v: dict(codebook.get(v).value_labels) for v in f.variables[1:] if codebook.get(v).value_labels}
    return work, text, categorical, labels


def _labelled_codes(values: pl.Series, labels: dict[Any, str]) -> bool:
    """Whether a numeric variable is categorical: every value it takes (its missing codes
    already missing) is a labelled code. An age with labels only for 97 (97+) and 99 (refused)
    is a covariate."""
    if not labels:
        return False
    seen = values.drop_nulls().unique().to_list()
    known = set(labels) | {float(c) for c in labels if isinstance(c, int)}
    return bool(seen) and all(v in known for v in seen)


def _with_response(formula: str, column: str) -> str:
    """``formula`` with its left side replaced by ``column``."""
    return f"`{column}` ~{formula.split('~', 1)[1]}"


def fit_models(frame: pl.DataFrame, codebook: Codebook, specs: Sequence[tuple[int, ModelSpec]], design: Any, *, wave: str,
               conf_level: float) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """``models.csv``, ``estimate/model_tests.csv`` and ``estimate/model_margins.csv`` of the wave's models.

    Raises
    ------
    ConfigError
        A model variable is not in the data, a code is not the response's, a reference not a term.
    """
    import numpy as np
    import polars as pl

    schema = {c: pl.String for c in TEST_COLUMNS} | {c: pl.Float64 for c in ("statistic", "df", "ddf", "p_value")}
    margin_schema = {c: pl.String for c in MARGIN_COLUMNS} | {c: pl.Float64 for c in ("estimate", "se", "ci_low", "ci_high", "df")}
    if not specs:
        return pl.DataFrame(schema={c: pl.String for c in MODEL_COLUMNS}), pl.DataFrame(schema=schema), pl.DataFrame(schema=margin_schema)
    from scipy import stats

    from pipeline.config import FAMILIES
    from pipeline.errors import ArgumentError, translate_argument_error
    from pipeline.expressions import to_polars
    from pipeline.survey.models import glm

    problems = [p for i, spec in specs for p in model_problems(i, spec, frame, codebook)]
    if problems:
        raise ConfigError(f"models: {len(problems)} problem(s):", problems=problems)
    rows: list[pl.DataFrame] = []
    tests: list[dict[str, Any]] = []
    margins: list[dict[str, Any]] = []
    for i, spec in specs:
        work, text, categorical, labels = model_frame(frame, spec, codebook)
        mask = None
        if spec.subpopulation:
            mask = work.select(to_polars(spec.subpopulation).fill_null(False)).to_series().to_numpy().astype(bool)
        family, ratio_name = FAMILIES[spec.family]
        try:
            fit = glm(design.with_frame(work), text, family, subset=mask, categorical=categorical, refs=dict(spec.reference), labels=labels)
        except ArgumentError as exc:
            raise translate_argument_error(exc, f"models[{i}] ({spec.id})") from exc
        table = fit.table(conf_level)
        term_of, level_of, reference_of = _term_parts(fit)
        ratio = spec.family != "linear"
        out = table.select(
            pl.lit(wave).alias("wave"),
            pl.lit(spec.id).alias("model_id"),
            "term",
            "label",
            pl.Series("variable", term_of, dtype=pl.String),
            pl.Series("level", level_of, dtype=pl.String),
            pl.Series("reference", reference_of, dtype=pl.String),
            "estimate", "se", "statistic", "p_value", "ci_low", "ci_high",
            pl.lit(conf_level).alias("conf_level"),
            "df",
            pl.lit(fit.n).alias("n"),
            pl.lit(spec.family).alias("family"),
            (pl.col("estimate").exp() if ratio else pl.lit(None, dtype=pl.Float64)).alias("ratio"),
            (pl.col("ci_low").exp() if ratio else pl.lit(None, dtype=pl.Float64)).alias("ratio_ci_low"),
            (pl.col("ci_high").exp() if ratio else pl.lit(None, dtype=pl.Float64)).alias("ratio_ci_high"),
            pl.lit(ratio_name, dtype=pl.String).alias("ratio_name"),
            pl.lit(float(fit.dispersion)).alias("dispersion"),
            pl.lit(spec.title or spec.id).alias("title"),
        )
        rows.append(out)
        for term in fit.matrix.formula.terms:
            name = ":".join(term)
            stat, df, ddf, p = fit.term_test([name])
            tests.append({"wave": wave, "model_id": spec.id, "term": name, "statistic": stat, "df": float(df), "ddf": ddf, "p_value": p,
                          "method": "Wald F (R regTermTest)" if np.isfinite(ddf) else "Wald chi-squared (R regTermTest)"})
        q = float(stats.t.ppf(0.5 + conf_level / 2, fit.df_resid)) if fit.df_resid > 0 else float("nan")
        for term in fit.matrix.formula.terms:
            if len(term) != 1 or term[0] not in fit.matrix.factors:
                continue  # margins of a categorical main effect
            for m in fit.margins(term[0]).iter_rows(named=True):
                margins.append({"wave": wave, "model_id": spec.id, "variable": term[0], "level": m["level"], "label": m["label"],
                                "estimate": m["estimate"], "se": m["se"], "ci_low": m["estimate"] - q * m["se"], "ci_high": m["estimate"] + q * m["se"],
                                "df": float(fit.df_resid)})
    return pl.concat(rows, how="vertical_relaxed"), pl.DataFrame(tests, schema=schema), pl.DataFrame(margins, schema=margin_schema)


def _term_parts(fit: Any) -> tuple[list[str], list[str], list[str]]:
    """For each coefficient: the variable(s) it is of, its level's label (a categorical term;
    joined by ``:`` in an interaction) and the reference level's label ("" when none)."""
    mm = fit.matrix
    terms = mm.formula.terms
    variables, levels, references = [], [], []
    for column, a in zip(mm.columns, mm.assign, strict=True):
        if a == 0:
            variables.append("")
            levels.append("")
            references.append("")
            continue
        term = terms[a - 1]
        variables.append(":".join(term))
        parts, refs = [], []
        rest = column
        for v in term:
            f = mm.factors.get(v)
            piece = rest.split(":", 1)
            head, rest = piece[0], (piece[1] if len(piece) > 1 else "")
            if f is None:
                continue
            name = head[len(v):] if head.startswith(v) else head.lstrip("`").removeprefix(v)
            k = f.names.index(name) if name in f.names else None
            parts.append(f.labels[k] if k is not None else name)
            coded = mm.coding[a - 1][term.index(v)]
            refs.append(f.labels[0] if coded else "")
        levels.append(":".join(parts))
        references.append(":".join(r for r in refs if r))
    return variables, levels, references

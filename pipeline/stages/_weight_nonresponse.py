"""The weight stage's nonresponse step: ``weight.nonresponse`` evaluated on the cleaned data.

Owns the evaluation of the respondent condition and of the class variables or the propensity
model's terms (missing values are data errors naming the key and the raw rows), the call of
:mod:`pipeline.survey.nonresponse` (``method: classes``) or :mod:`pipeline.survey.propensity`
(``propensity_classes``, ``inverse_propensity``) with the errors turned into errors naming
``weight.nonresponse``, the replicates' redo, and the step's entry of ``qa.json``
(:func:`nonresponse_step`). The QA markdown is :func:`pipeline.stages._weight_base.qa_markdown`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pipeline.errors import CalibrationError, ConfigError, DataError
from pipeline.stages._weight_base import raw_rows

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from pipeline.config import NonresponseConfig
    from pipeline.survey.nonresponse import NonresponseAdjustment
    from pipeline.survey.propensity import PropensityAdjustment


def collapse_classes(keys: Sequence[tuple[Any, ...]], respondents: Sequence[float], w_all: Sequence[float], w_respondents: Sequence[float], **rules: Any) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """:func:`pipeline.survey.nonresponse.collapse_classes`, its error naming ``weight.nonresponse``."""
    from pipeline.survey import nonresponse

    with _nonresponse_context():
        return nonresponse.collapse_classes(keys, respondents, w_all, w_respondents, **rules)


@contextmanager
def _nonresponse_context() -> Iterator[None]:
    try:
        yield
    except CalibrationError as exc:
        raise CalibrationError(
            f"weight.nonresponse: {exc.message}", hint="lower weight.nonresponse.min_respondents or raise weight.nonresponse.max_factor"
        ) from exc


def respondent_flag(frame: pl.DataFrame, config: NonresponseConfig) -> np.ndarray:
    """``weight.nonresponse.respondent`` on every row, as bools; the frame variables it needs checked."""
    import polars as pl

    from pipeline.config import parse_expr

    key = "classes" if config.method == "classes" else "model"
    variables = list(config.variables)
    missing_cols = [c for c in variables if c not in frame.columns]
    if missing_cols:
        raise ConfigError(
            f"weight.nonresponse.{key}: variable(s) {', '.join(missing_cols)} are not in the cleaned data",
            hint=f"{'class variables' if key == 'classes' else 'the model terms'} come from the sample frame (known for nonrespondents too)",
        )
    try:
        flag = frame.select(parse_expr(config.respondent).alias("_r")).get_column("_r")
    except Exception as exc:  # polars raises several error types for bad columns/types
        raise ConfigError(f"weight.nonresponse.respondent: cannot evaluate {config.respondent!r} on the cleaned data: {exc}") from exc
    if flag.dtype != pl.Boolean:
        raise ConfigError(
            f"weight.nonresponse.respondent: {config.respondent!r} gives {flag.dtype} values; expected true/false",
            hint="write a condition, e.g. 'STATUS = 1'",
        )
    if flag.null_count():
        mask = flag.is_null().to_numpy()
        raise DataError(
            f"weight.nonresponse.respondent: {config.respondent!r} is unknown (missing) on {int(mask.sum())} row(s) "
            f"(raw rows {raw_rows(frame, mask)})",
            hint="every row must be a respondent or a nonrespondent; handle missing values with COALESCE",
        )
    for c in variables:
        nulls = frame.get_column(c).is_null()
        if nulls.any():
            raise DataError(
                f"weight.nonresponse.{key}: {c} is missing on {int(nulls.sum())} row(s) (raw rows {raw_rows(frame, nulls.to_numpy())})",
                hint=f"{'class variables' if key == 'classes' else 'model terms'} must be known for every row, respondents and nonrespondents",
            )
    return flag.to_numpy().astype(bool)


def nonresponse_adjustment(frame: pl.DataFrame, w_base: np.ndarray, config: NonresponseConfig) -> NonresponseAdjustment:
    """``weight.nonresponse`` (``method: classes``) evaluated on the data, then
    :func:`pipeline.survey.nonresponse.nonresponse_adjustment`."""
    from pipeline.survey import nonresponse

    flag = respondent_flag(frame, config)
    with _nonresponse_context():
        return nonresponse.nonresponse_adjustment(
            frame.select(list(config.classes)), flag, w_base, min_respondents=config.min_respondents, max_factor=config.max_factor,
        )


def model_terms(frame: pl.DataFrame, config: NonresponseConfig, categorical: Collection[str] | None) -> list[str]:
    """The categorical terms of ``weight.nonresponse.model``: those in ``categorical`` (the variables
    with value labels in the codebook), and any text, true/false or categorical column."""
    labelled = set(categorical or ())
    out = []
    for term in config.model:
        dtype = frame.schema[term]
        if term in labelled or not dtype.is_numeric():  # text, true/false, categorical: not numeric
            out.append(term)
    return out


def propensity_adjustment(
    frame: pl.DataFrame, w_base: np.ndarray, config: NonresponseConfig, *, categorical: Collection[str] | None = None
) -> tuple[PropensityAdjustment, np.ndarray]:
    """``weight.nonresponse`` with ``method: propensity_classes`` or ``inverse_propensity``: the model
    fitted (:func:`pipeline.survey.propensity.fit_propensity`), then the adjustment. Returns it and
    the model matrix (the replicates refit on it)."""
    from pipeline.survey import propensity

    flag = respondent_flag(frame, config)
    if not flag.any():
        raise DataError(f"weight.nonresponse.respondent: {config.respondent!r} is true on no row; nothing is left to weight")
    if flag.all():
        raise DataError(
            f"weight.nonresponse.respondent: {config.respondent!r} is true on every row; a propensity model needs the nonrespondents",
            hint="keep the eligible nonrespondents in the cleaned data (e.g. leave out clean.drop_partials)",
        )
    cats = model_terms(frame, config, categorical)
    x, names = propensity.model_matrix(frame, list(config.model), cats)
    try:
        model = propensity.fit_propensity(x, names, flag, w_base)
    except DataError as exc:
        raise DataError(f"weight.nonresponse.model: {exc.message}", hint=exc.hint) from None
    with _nonresponse_context():
        if config.method == "propensity_classes":
            adj = propensity.propensity_classes(
                model, flag, w_base, n_classes=config.n_classes, min_respondents=config.min_respondents, max_factor=config.max_factor
            )
        else:
            adj = propensity.inverse_propensity(model, flag, w_base, max_factor=config.max_factor)
    return adj, x


def nonresponse_replicates(reps: np.ndarray, nr: Any, x: np.ndarray | None) -> tuple[np.ndarray, int]:
    """The replicates' redo of the step: class factors per replicate, or the propensity model refitted
    in every replicate (:func:`pipeline.survey.propensity.propensity_replicates`)."""
    from pipeline.survey import nonresponse, propensity

    if x is None:
        return nonresponse.nonresponse_replicates(reps, nr)
    with _nonresponse_context():
        return propensity.propensity_replicates(reps, x, nr)


def nonresponse_step(config: NonresponseConfig, nr: Any, categorical_terms: Sequence[str] = ()) -> dict[str, Any]:
    """The step's ``qa.json`` entry: the counts, the classes (and merges), the model, the factors."""
    import numpy as np

    resp = nr.respondent
    out: dict[str, Any] = {
        "method": config.method,
        "respondent": config.respondent,
        "respondents": int(resp.sum()),
        "nonrespondents": int((~resp).sum()),
        "classes": nr.classes,
        "collapses": nr.collapses,
    }
    if config.method == "classes":
        return out
    m = nr.model
    out["model"] = {
        "terms": list(config.model),
        "categorical": [t for t in config.model if t in set(categorical_terms)],
        "coefficients": [{"term": n, "estimate": float(b)} for n, b in zip(m.names, m.coefficients)],
        "n": int(resp.shape[0]),
        "iterations": m.iterations,
        "converged": m.converged,
        "p_min": float(np.min(m.p)),
        "p_max": float(np.max(m.p)),
    }
    if config.method == "propensity_classes":
        out["n_classes"] = config.n_classes
        out["cuts"] = [{"probability": p, "propensity": q} for p, q in zip(nr.probabilities, nr.cuts)]
    else:
        out["factors"] = nr.summary
    return out

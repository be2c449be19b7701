"""``expected/glm.csv``, ``glm_vcov.csv``, ``glm_tests.csv``, ``glm_predict.csv``: R ``svyglm``.

Provenance: ``../shared/conformance/make_glm_reference.R`` (R 4.2.2, survey 4.1-1): each case
``<model>:<design>`` is ``svyglm(<formula>, design = <design>, family = <family>)`` on the design
of that name (built by ``conftest.design``), with ``regTermTest(fit, ~terms)`` (Wald) and
``predict(fit, newdata, type = "link"|"response", se.fit = TRUE)``. Reproduced with
:func:`pipeline.survey.models.glm`. Tolerances (conformance README): relative 1e-8 on
coefficients, SEs, covariances, dispersion and predictions (R's IRLS path and stopping rule are
reproduced, so even ``rake_clus1`` meets 1e-8), 1e-6 on test statistics and p-values.
"""

from __future__ import annotations

import polars as pl

#: model -> numeric columns that R's script made factors (``factor(race)`` ...)
CATEGORICAL = {"logit_chol": ("race", "RIAGENDR")}
RTOL = 1e-8
RTOL_TEST = 1e-6

KNOWN_GAPS: list[tuple[str, str | None, str]] = []
#: glm_predict.csv only
PREDICT_GAPS: list[tuple[str, str | None, str]] = [
    (r".*:(clus1_jk1|strat_jkn|ps_clus1_jk1|clus2_jk1|nhanes_jkn|nhanes2psu_brr|nhanes2psu_fay)", r"(link|response)\|[2-9]",
     "R 4.1-1's SE() of a replicate design's prediction (class svrepstat) is sqrt(diag(as.matrix(v))) of a vector v: "
     "diag of an n x 1 matrix keeps only the first row's variance, which the script's data.frame recycles, so rows 2+ "
     "carry row 1's SE (our SEs are sqrt(x' V x) per row, as predict.svrepglm's own attr(, 'var'))"),
]

_FITS: dict[str, object] = {}


def _fit(ref, case: str, row: dict):
    if case not in _FITS:
        from pipeline.survey.models import glm

        model, dname = case.split(":")
        try:
            d = ref.design(dname)
        except KeyError as exc:
            raise NotImplementedError(dname) from exc
        _FITS[case] = glm(d, row["formula"], row["family"], categorical=CATEGORICAL.get(model, ()))
    return _FITS[case]


def _formula_rows(ref):
    # glm_vcov/tests/predict rows have no formula: take it from glm.csv
    g = ref.read("glm.csv").unique("case", keep="first", maintain_order=True)
    return {r["case"]: r for r in g.iter_rows(named=True)}


def test_glm_coefficients_match_r(ref):
    expected = ref.read("glm.csv")

    def compute(case, rows):
        fit = _fit(ref, case, rows[0])
        tab = fit.table()
        out = {}
        for r in tab.iter_rows(named=True):
            out[r["term"]] = {"estimate": r["estimate"], "se": r["se"], "statistic": r["statistic"],
                              "p_value": r["p_value"], "df_resid": fit.df_resid, "dispersion": fit.dispersion,
                              "n": float(fit.n)}
        return out

    out = ref.check_rows(
        "glm.csv", expected, compute, key=lambda row: row["term"],
        fields=lambda row: {"estimate": {"rtol": RTOL}, "se": {"rtol": RTOL},
                            "statistic": {"rtol": RTOL}, "p_value": {"rtol": RTOL_TEST},
                            "df_resid": {}, "dispersion": {"rtol": RTOL}, "n": {}},
        gaps=KNOWN_GAPS,
    )
    ref.assert_outcome("glm.csv", out)


def test_glm_vcov_matches_r(ref):
    expected = ref.read("glm_vcov.csv")
    info = _formula_rows(ref)

    def compute(case, rows):
        fit = _fit(ref, case, info[case])
        t = list(fit.terms)
        return {f"{a}|{b}": {"cov": float(fit.vcov[i, j]),
                             "_scale": float(fit.se[i] * fit.se[j])}
                for i, a in enumerate(t) for j, b in enumerate(t)}

    out = ref.check_rows(
        "glm_vcov.csv", expected, compute, key=lambda row: f"{row['term_i']}|{row['term_j']}",
        # a covariance near zero is compared with an allowance of 1e-10 sqrt(v_i v_j)
        fields=lambda row: {"cov": {"rtol": RTOL, "noise": True}},
        scale=lambda row, got, field: got["_scale"] * 1e-10 / ref.NOISE_REL,
        gaps=KNOWN_GAPS,
    )
    ref.assert_outcome("glm_vcov.csv", out)


def test_glm_term_tests_match_r(ref):
    expected = ref.read("glm_tests.csv")
    info = _formula_rows(ref)

    def compute(case, rows):
        fit = _fit(ref, case, info[case])
        out = {}
        for r in rows:
            f, df, ddf, p = fit.term_test(r["test_terms"])
            out[r["test_terms"]] = {"statistic": f, "df": float(df), "ddf": ddf, "p_value": p}
        return out

    out = ref.check_rows(
        "glm_tests.csv", expected, compute, key=lambda row: row["test_terms"],
        fields={"statistic": {"rtol": RTOL_TEST}, "df": {}, "ddf": {}, "p_value": {"rtol": RTOL_TEST}},
        gaps=KNOWN_GAPS,
    )
    ref.assert_outcome("glm_tests.csv", out)


def _newdata(text: str) -> pl.DataFrame:
    cols = {}
    for part in text.split(";"):
        name, value = part.split("=", 1)
        try:
            cols[name] = [float(value)]
        except ValueError:
            cols[name] = [value]
    return pl.DataFrame(cols)


def test_glm_predictions_match_r(ref):
    expected = ref.read("glm_predict.csv")
    info = _formula_rows(ref)

    def compute(case, rows):
        fit = _fit(ref, case, info[case])
        out = {}
        for r in rows:
            est, se = fit.predict(_newdata(r["newdata"]), type=r["type"])
            out[f"{r['type']}|{int(r['row'])}"] = {"estimate": float(est[0]), "se": float(se[0])}
        return out

    out = ref.check_rows(
        "glm_predict.csv", expected, compute, key=lambda row: f"{row['type']}|{int(row['row'])}",
        fields=lambda row: {"estimate": {"rtol": RTOL}, "se": {"rtol": RTOL}},
        gaps=KNOWN_GAPS + PREDICT_GAPS,
    )
    ref.assert_outcome("glm_predict.csv", out)

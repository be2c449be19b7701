"""Design-based generalized linear models, as R ``survey``'s ``svyglm`` (survey 4.1-1).

:func:`glm` fits ``formula`` (:mod:`pipeline.survey.formula`) with the design weights as prior
weights and returns a :class:`ModelFit` whose covariance is design-based:

* the fit is R's ``glm.fit`` iteration (IRLS from R's starting values, R's stopping rule
  ``|dev - dev_old| / (|dev| + 0.1) < 1e-8``, weights rescaled to mean 1 as ``svyglm``'s
  ``rescale = TRUE``), with the families' link and variance functions from statsmodels
  (``statsmodels.genmod.families``). Following R's path matters: R's covariance uses the
  working weights of its last iteration, which differ from fully converged ones by up to
  ~1e-5 relative;
* linearization designs (``svy.varcoef``): influence values ``w_i r_i x_i' A^-1`` (score
  residuals times the inverse of the weighted information), through
  :func:`~pipeline.survey.variance.taylor_vcov` with strata, clusters, fpc, lonely-PSU policy
  and the residualization of calibrated designs;
* replicate designs (``svyglm.svyrep.design``): the model refitted with each replicate's
  weights (all replicates at once, warm start at the full-sample fit, R's stopping rule) and
  :func:`~pipeline.survey.variance.replicate_vcov`;
* rows with a missing model variable are dropped (``na.omit``) while the design keeps them for
  the variance (zero weight); ``subset`` is a domain (zero weights outside);
* ``df_resid`` as R: ``degf(design) + 1 - p`` (linearization: the design without the dropped
  rows; replicate: the design before they are dropped, as R computes it), the dispersion as
  ``summary.svyglm`` (``svyvar`` of the Pearson residuals).

``binomial`` and ``poisson`` give the same fit as ``quasibinomial``/``quasipoisson`` (svyglm
always estimates the dispersion).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from pipeline.errors import ArgumentError, DataError
from pipeline.survey.formula import ModelMatrix, model_matrix
from pipeline.survey.variance import replicate_vcov, taylor_vcov

if TYPE_CHECKING:
    from pipeline.survey.design import Design

__all__ = ["FAMILIES", "ModelFit", "glm"]

#: family name -> statsmodels family class name (canonical link)
FAMILIES: dict[str, str] = {
    "gaussian": "Gaussian",
    "quasibinomial": "Binomial",
    "binomial": "Binomial",
    "quasipoisson": "Poisson",
    "poisson": "Poisson",
}
_EPSILON = 1e-8  # glm.control()$epsilon
_MAXIT = 25      # glm.control()$maxit
_REPLICATE_BLOCK = 8  # replicate fits made together


def _family(name: str):
    from statsmodels.genmod import families

    return getattr(families, FAMILIES[name])()


def _dev_resids(kind: str, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> np.ndarray:
    """R's ``family$dev.resids``."""
    if kind == "Gaussian":
        return w * (y - mu) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "Binomial":
            a = np.where(y > 0, y * np.log(y / mu), 0.0)
            b = np.where(y < 1, (1 - y) * np.log((1 - y) / (1 - mu)), 0.0)
            return 2 * w * (a + b)
        a = np.where(y > 0, y * np.log(y / mu), 0.0)
        return 2 * w * (a - (y - mu))


@dataclass
class _Irls:
    coef: np.ndarray      # (R, p)
    eta: np.ndarray       # (R, n)
    ww: np.ndarray        # (R, n) working weights of the last iteration (R's fit$weights)
    converged: np.ndarray  # (R,)


def _irls(fam, kind: str, x: np.ndarray, y: np.ndarray, w: np.ndarray, start: np.ndarray | None) -> _Irls:
    """R's ``glm.fit`` for ``R`` weight vectors at once (``w``: ``(R, n)``)."""
    link = fam.link
    r, n = w.shape
    if start is None:
        if kind == "Binomial":
            mustart = (w * y + 0.5) / (w + 1)
        elif kind == "Poisson":
            mustart = np.broadcast_to(y + 0.1, w.shape)
        else:
            mustart = np.broadcast_to(y, w.shape)
        eta = np.array(link(mustart), dtype=np.float64)
    else:
        eta = np.asarray(start) @ x.T * np.ones((r, 1))
    mu = np.array(link.inverse(eta), dtype=np.float64)
    devold = _dev_resids(kind, y, mu, w).sum(axis=1)
    coef = np.full((r, x.shape[1]), np.nan)
    ww = np.zeros((r, n))
    done = np.zeros(r, dtype=bool)
    for _ in range(_MAXIT):
        act = ~done
        mue = link.inverse_deriv(eta[act])
        var = fam.variance(mu[act])
        good = (w[act] > 0) & (mue != 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(good, eta[act] + (y - mu[act]) / mue, 0.0)
            wk = np.where(good, w[act] * mue**2 / var, 0.0)
        # X'WX for every weight vector: one BLAS product each (an einsum over (R, n, p, p) is
        # 2-3x slower), and X'Wz as one product
        a = np.stack([(x * wk_r[:, None]).T @ x for wk_r in wk])
        b = (wk * z) @ x
        try:
            new = np.linalg.solve(a, b[..., None])[..., 0]
        except np.linalg.LinAlgError as exc:
            raise DataError(
                "model: the model matrix is singular (a term is constant or a combination of others)",
                hint="drop a redundant term or merge levels with no observations",
            ) from exc
        eta[act] = new @ x.T
        mu[act] = link.inverse(eta[act])
        dev = _dev_resids(kind, y, mu[act], w[act]).sum(axis=1)
        coef[act] = new
        ww[act] = wk
        conv = np.abs(dev - devold[act]) / (np.abs(dev) + 0.1) < _EPSILON
        devold[act] = dev
        idx = np.flatnonzero(act)
        done[idx[conv]] = True
        if done.all():
            break
    return _Irls(coef=coef, eta=eta, ww=ww, converged=done)


def _check_rank(xw: np.ndarray, mm: ModelMatrix) -> None:
    """Fail on aliased columns (R would report their coefficients as NA), naming them."""
    from pipeline.survey._linalg import qr_rank

    tol = min(1e-7, _EPSILON / 1000)  # glm.fit's tolerance for Cdqrls
    p = xw.shape[1]
    # R's limited-pivoting QR run on the triangle of a LAPACK QR (p x p, not n x p): the
    # orthogonal factor keeps every column's norm and the norms' ratios the pivoting tests
    small = np.linalg.qr(xw, mode="r") if xw.shape[0] > p else xw
    if qr_rank(small, tol) == p:
        return
    aliased, rank = [], 0
    for j in range(p):
        r = qr_rank(small[:, : j + 1], tol)
        if r == rank:
            aliased.append(mm.columns[j])
        rank = r
    raise DataError(
        f"model: {', '.join(repr(a) for a in aliased)} of {mm.formula.text!r} "
        "is a combination of earlier columns (constant, a level with no rows, or collinear)",
        hint="drop the term, merge its levels, or choose another reference level",
    )


@dataclass(frozen=True, eq=False)
class ModelFit:
    """A fitted design-based GLM (R ``svyglm``).

    Attributes
    ----------
    formula, family : str
    terms : tuple of str
        Coefficient names as R (``(Intercept)``, ``stypeH``, ``stypeH:ell``).
    labels : tuple of str
        Readable names (level labels when given).
    coef, se : numpy.ndarray
        ``(p,)`` estimates and design-based standard errors.
    vcov : numpy.ndarray
        ``(p, p)`` design-based covariance (R ``vcov(fit)``).
    df_resid : float
        R's ``fit$df.residual`` (t tests and intervals use it).
    dispersion : float
        As ``summary.svyglm``.
    n : int
        Rows used (R's ``nrow(fit$model)``).
    """

    formula: str
    family: str
    terms: tuple[str, ...]
    labels: tuple[str, ...]
    coef: np.ndarray
    vcov: np.ndarray
    se: np.ndarray
    df_resid: float
    dispersion: float
    n: int
    matrix: ModelMatrix
    design: Design
    weights: np.ndarray

    def _fam(self):
        return _family(self.family)

    def table(self, conf_level: float = 0.95, exponentiate: bool = False) -> pl.DataFrame:
        """Coefficient table: term, label, estimate, se, statistic (t), p_value, ci_low, ci_high, df.

        Intervals are ``estimate -/+ qt(1 - alpha/2, df_resid) * se``; with ``exponentiate``
        the estimate and the bounds are exponentiated (odds or rate ratios; ``se`` stays on
        the link scale).
        """
        from scipy import stats

        if not 0 < conf_level < 1:
            raise ArgumentError(f"conf_level: expected a number between 0 and 1, found {conf_level!r}",
                                hint="for example conf_level: 0.95")
        t = self.coef / self.se
        df = self.df_resid
        if df > 0:
            p = 2 * stats.t.sf(np.abs(t), df)
            q = stats.t.ppf(0.5 + conf_level / 2, df)
        else:
            p = np.full_like(t, np.nan)
            q = math.nan
        lo, hi = self.coef - q * self.se, self.coef + q * self.se
        est = self.coef
        if exponentiate:
            est, lo, hi = np.exp(est), np.exp(lo), np.exp(hi)
        return pl.DataFrame({
            "term": list(self.terms), "label": list(self.labels), "estimate": est, "se": self.se,
            "statistic": t, "p_value": p, "ci_low": lo, "ci_high": hi,
            "df": np.full(len(t), float(df)),
        })

    def term_test(self, terms: str | Sequence[str]) -> tuple[float, int, float, float]:
        """Wald test that the coefficients of ``terms`` are zero (R ``regTermTest(fit, ~a + b)``).

        Returns ``(F, df, ddf, p_value)`` with ``F = b' V^-1 b / df`` on ``df`` and
        ``ddf = df_resid`` degrees of freedom (with ``df_resid`` infinite: the chi-squared
        statistic and its p-value).
        """
        from scipy import stats

        if isinstance(terms, str):
            terms = [t.strip() for t in terms.replace("~", "").split("+") if t.strip()]
        wanted = {self.matrix.term_index(t) for t in terms}
        index = [j for j, a in enumerate(self.matrix.assign) if a in wanted]
        b = self.coef[index]
        v = self.vcov[np.ix_(index, index)]
        chisq = float(b @ np.linalg.solve(v, b))
        k = len(index)
        if math.isinf(self.df_resid):
            return chisq, k, math.inf, float(stats.chi2.sf(chisq, k))
        f = chisq / k
        return f, k, float(self.df_resid), float(stats.f.sf(f, k, self.df_resid))

    def predict(self, newdata: pl.DataFrame, type: str = "link") -> tuple[np.ndarray, np.ndarray]:
        """Predictions and SEs for the rows of ``newdata`` (R ``predict(fit, newdata, se.fit = TRUE)``).

        ``type='response'`` applies the inverse link, its SE by the delta method.
        """
        if type not in ("link", "response"):
            raise ArgumentError(f"type: expected 'link' or 'response', found {type!r}", hint="type: response")
        x = self.matrix.new_rows(newdata)
        eta = x @ self.coef
        se = np.sqrt(np.einsum("ij,jk,ik->i", x, self.vcov, x))
        if type == "link":
            return eta, se
        fam = self._fam()
        return fam.link.inverse(eta), np.abs(fam.link.inverse_deriv(eta)) * se

    def margins(self, variable: str) -> pl.DataFrame:
        """Predictive margins of the factor ``variable`` (R ``svypredmeans``).

        For each level, every used row's prediction with ``variable`` set to that level, averaged
        with the design weights; the variance is, as R's ``svypredmeans``, the design variance of
        that weighted mean (predictions held fixed) plus ``g' V g`` with ``g`` the gradient of the
        mean in the coefficients (no covariance term between the two, as R).

        Returns a frame: ``level``, ``label``, ``estimate``, ``se``.
        """
        fac = self.matrix.factors.get(variable)
        if fac is None:
            raise ArgumentError(
                f"margins: {variable!r} is not a categorical term of {self.formula!r}",
                hint="choose one of " + ", ".join(self.matrix.factors) if self.matrix.factors else "the model has no factor",
            )
        d = self.design
        used = self.matrix.used
        frame = d.frame.filter(pl.Series(used))
        w = self.weights[used]
        fam = self._fam()
        fits, grads = [], []
        for lv in fac.levels:
            col = frame.get_column(variable)
            val = pl.Series(variable, [lv] * frame.height, dtype=col.dtype if not col.dtype.is_float() else pl.Float64)
            x = self.matrix.new_rows(frame.with_columns(val))
            eta = x @ self.coef
            fits.append(fam.link.inverse(eta))
            grads.append((w * fam.link.inverse_deriv(eta)) @ x / w.sum())
        fits_a = np.column_stack(fits)
        g = np.column_stack(grads)
        est = (w @ fits_a) / w.sum()
        full = np.zeros((d.frame.height, len(fac.levels)))
        full[used] = fits_a
        sub = d.subset(used)
        if d.is_replicate:
            reps = sub.replicates
            rw = np.asarray(reps.weights, dtype=np.float64)
            thetas = (rw.T @ full) / rw.sum(axis=0)[:, None]
            vcond = replicate_vcov(thetas, est, scale=reps.scale, rscales=reps.rscales, mse=reps.mse)
        else:
            infl = sub.weights[:, None] * (full - est) / sub.weights.sum()
            vcond = taylor_vcov(sub, infl)
        v = vcond + g.T @ self.vcov @ g
        return pl.DataFrame({"level": [str(n) for n in fac.names], "label": list(fac.labels),
                             "estimate": est, "se": np.sqrt(np.diag(v))})


def glm(
    design: Design,
    formula: str,
    family: str = "gaussian",
    *,
    subset: np.ndarray | None = None,
    categorical: Sequence[str] = (),
    refs: Mapping[str, Any] | None = None,
    labels: Mapping[str, Mapping[Any, str]] | None = None,
) -> ModelFit:
    """Fit a design-based GLM (R ``svyglm(formula, design, family = family)``); see the module docstring.

    Parameters
    ----------
    design : Design
    formula : str
        R-style formula (:mod:`pipeline.survey.formula`).
    family : {'gaussian', 'quasibinomial', 'quasipoisson', 'binomial', 'poisson'}
    subset : numpy.ndarray, optional
        ``(n,)`` bool: the domain (R ``svyglm(..., subset = )``), zero weights outside.
    categorical : sequence of str
        Numeric columns to treat as factors.
    refs : mapping, optional
        Reference level per factor (default: the first level).
    labels : mapping, optional
        ``{variable: {level: label}}`` for readable term labels.
    """
    if family not in FAMILIES:
        raise ArgumentError(f"family: expected one of {', '.join(FAMILIES)}, found {family!r}",
                            hint="family: quasibinomial (logistic), quasipoisson (counts) or gaussian (linear)")
    d = design if subset is None else design.subset(np.asarray(subset, dtype=bool))
    rows = d.in_design & (d.weights > 0) if not d.adjustments else d.weights > 0
    mm = model_matrix(formula, d.frame, categorical=categorical, refs=refs, labels=labels, rows=rows)
    fam = _family(family)
    kind = FAMILIES[family]
    y, x, used = mm.y, mm.x, mm.used
    if kind == "Binomial" and ((y[used] < 0) | (y[used] > 1)).any():
        raise DataError(f"model: the response {mm.formula.response!r} of a {family} model must lie in [0, 1]",
                        hint="use a 0/1 or two-level response, or family: gaussian")
    if kind == "Poisson" and (y[used] < 0).any():
        raise DataError(f"model: the response {mm.formula.response!r} of a {family} model must not be negative",
                        hint="use family: gaussian")
    # svyglm rescale = TRUE: prior weights / mean over the design's rows (calibrated designs keep all)
    base = d.weights if d.adjustments else d.weights[d.in_design]
    prior = np.where(used, d.weights / base.mean(), 0.0)
    xu, yu = x[used], y[used]
    _check_rank(xu * np.sqrt(prior[used])[:, None], mm)
    fit = _irls(fam, kind, xu, yu, prior[used][None, :].copy(), None)
    if not fit.converged[0]:
        raise DataError(f"model: the fit of {mm.formula.text!r} did not converge in {_MAXIT} iterations",
                        hint="check for separation (a level where the response is always 0 or 1)")
    beta = fit.coef[0]
    eta = fit.eta[0]
    mu = fam.link.inverse(eta)
    mue = fam.link.inverse_deriv(eta)
    var_mu = fam.variance(mu)
    p = len(beta)
    sub = d.subset(used)
    if d.is_replicate:
        reps = sub.replicates
        rw = np.asarray(reps.weights, dtype=np.float64)[used].T
        rw = rw / rw.sum(axis=1, keepdims=True)
        # the replicates in blocks: the fit's (R, n) arrays stay bounded (80 replicates of 10^6
        # rows at once took 10 GB); every replicate starts from the full-sample fit
        coefs, converged = [], []
        for start in range(0, rw.shape[0], _REPLICATE_BLOCK):
            block = _irls(fam, kind, xu, yu, rw[start:start + _REPLICATE_BLOCK], beta)
            coefs.append(block.coef)
            converged.append(block.converged)
        rcoef, rconv = np.concatenate(coefs), np.concatenate(converged)
        thetas = np.where(rconv[:, None], rcoef, np.nan)
        vcov = replicate_vcov(thetas, beta, scale=reps.scale, rscales=reps.rscales, mse=reps.mse)
        df_resid = float(d.degf + 1 - p)
    else:
        a = (fit.ww[0][:, None] * xu).T @ xu
        score = np.zeros((d.frame.height, p))
        score[used] = xu * (fit.ww[0] * (yu - mu) / mue)[:, None]
        infl = score @ np.linalg.inv(a)
        # the rescaled weights cancel: infl is w_i r_i x_i' (X'WX)^-1 in the design weights
        vcov = taylor_vcov(sub, infl)
        df_resid = float(d.domain_degf(used) + 1 - p)
        n_disp = int((sub.weights != 0).sum())
    e = (yu - mu) / np.sqrt(var_mu)
    wd = sub.weights[used]
    if d.is_replicate:
        # summary.svrepglm: sum(pw r^2) / sum(pw), residuals.svrepglm's r = e sqrt(prior / (pw / sum(pw)))
        r2 = e**2 * prior[used] / (wd / wd.sum())
        dispersion = float((wd @ r2) / wd.sum())
    else:
        # summary.svyglm: svyvar(r, design), residuals.svyglm's r = e sqrt(prior / pw), pw rescaled
        # to mean 1 over the rows of the design without the dropped rows (calibrated: all rows)
        after = sub.weights if d.adjustments else sub.weights[used]
        r = e * np.sqrt(prior[used] / (wd / after.mean()))
        rbar = (wd @ r) / wd.sum()
        dispersion = float(n_disp / (n_disp - 1) * (wd @ (r - rbar) ** 2) / wd.sum()) if n_disp > 1 else math.nan
    se = np.sqrt(np.diag(vcov))
    return ModelFit(
        formula=mm.formula.text, family=family, terms=mm.columns, labels=mm.labels, coef=beta, vcov=vcov,
        se=se, df_resid=df_resid, dispersion=dispersion, n=int(used.sum()), matrix=mm, design=d,
        weights=sub.weights,
    )

"""Shared numerics of ``pipeline.survey``: matrix ranks, projections and root finding.

Owns the small linear-algebra helpers more than one statistics module needs, so that none of
them imports another for a helper (no import circle between ``design`` and ``variance``):

* :func:`qr_rank` (R ``qr(a, tol)$rank``, LINPACK ``dqrdc2``) and :func:`replicate_rank` (the
  same, skipping the QR when the rank is certainly full): degrees of freedom of replicate designs;
* :func:`projection_basis`: the one rank-revealing orthonormal basis behind every calibration
  projection (GREG residuals), with its one tolerance :data:`CALIBRATION_QR_RTOL`;
* :func:`uniroot`: R's ``uniroot`` (Brent), for quantile score intervals and saddlepoints.

Imports nothing from the pipeline but :mod:`pipeline.errors`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.errors import DataError

__all__ = [
    "CALIBRATION_QR_RTOL",
    "REPLICATE_BLOCK",
    "column_sumsq",
    "projection_basis",
    "qr_rank",
    "replicate_rank",
    "uniroot",
]

#: Relative rank tolerance of the calibration projection (R's ``qr()`` default tol = 1e-7, as in
#: ``calibrate()``): singular values below this times the largest are dropped.
CALIBRATION_QR_RTOL = 1e-7


def projection_basis(a: np.ndarray) -> np.ndarray:
    """Orthonormal basis of the column space of ``a`` (rank-revealing, as R's ``qr`` in ``calibrate``).

    The GREG residuals of a calibration are the projection of the estimating functions off this
    basis; the calibration itself and its rebuild from final weights both use this function.

    >>> a = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    >>> projection_basis(a).shape  # two equal columns: rank 1
    (3, 1)
    """
    if a.shape[1] == 0:
        return np.zeros((a.shape[0], 0))
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    keep = s > CALIBRATION_QR_RTOL * (s[0] if s.size else 0.0)
    return u[:, keep]


#: Row block of the passes over replicate weights (float32 blocks are upcast one at a time).
REPLICATE_BLOCK = 16384
# replicate_rank: sigma_min of a row sample must exceed tol * max column norm by this factor
_RANK_MARGIN = 10.0


def column_sumsq(weights: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Column sums of squares of ``weights[idx]``, in float64, one row block at a time."""
    out = np.zeros(weights.shape[1], dtype=np.float64)
    for start in range(0, len(idx), REPLICATE_BLOCK):
        block = np.asarray(weights[idx[start : start + REPLICATE_BLOCK]], dtype=np.float64)
        out += np.einsum("ij,ij->j", block, block)
    return out


def replicate_rank(
    weights: np.ndarray, rows: np.ndarray, *, tol: float = 1e-5, col_sumsq: np.ndarray | None = None
) -> int:
    """R's ``qr(weights[rows, ], tol)$rank``, skipping the QR when the rank is certainly full.

    The degrees of freedom of a replicate design are this rank minus 1. R's
    ``dqrdc2`` (:func:`qr_rank`) moves a column aside when the norm it has
    left after projecting out the columns before it falls below ``tol`` times
    its original norm. That remainder is at least the smallest singular value
    of ``W = weights[rows]``, which is at least the smallest singular value of
    any subset of its rows (more rows only add to ``W'W``). So when an evenly
    spread sample of ``8 R`` (then ``64 R``) rows has ``sigma_min`` above
    ``10 * tol * max_j ||W[:, j]||``, no column is ever moved aside and the
    rank is ``R``: the factor 10 leaves room for dqrdc2's rounding (its norm
    downdates are accurate to about 1e-8). Otherwise (a rank-deficient domain,
    fewer rows than replicates) the exact :func:`qr_rank` runs on ``W``.

    ``sigma_min > b`` is checked as "``G - c I`` has a Cholesky factor", with
    ``G`` the sample's ``R x R`` cross-product and ``c = b^2`` plus a bound on
    the rounding of ``G`` and of the factorization (a singular value
    decomposition costs more, and its threaded BLAS calls stall when the cores
    are busy).

    Parameters
    ----------
    weights : numpy.ndarray
        ``(n, R)`` replicate weights (float64 or float32).
    rows : numpy.ndarray
        ``(n,)`` bool, the rows of the (domain) design.
    tol : float
        R's ``qr`` tolerance (``degf`` uses 1e-5).
    col_sumsq : numpy.ndarray, optional
        ``(R,)`` column sums of squares of ``weights[rows]`` if already known,
        or an upper bound of them (those of more rows): only the bound matters.
    """
    idx = np.flatnonzero(rows)
    n_rep = weights.shape[1]
    if n_rep and len(idx) >= n_rep:
        if col_sumsq is None:
            col_sumsq = column_sumsq(weights, idx)
        bound = _RANK_MARGIN * tol * float(np.sqrt(np.max(col_sumsq)))
        for m in (8 * n_rep, 64 * n_rep):
            take = idx if len(idx) <= m else idx[np.linspace(0, len(idx) - 1, m).astype(np.int64)]
            if bound > 0 and _min_singular_value_exceeds(weights, take, bound):
                return int(n_rep)
            if len(take) == len(idx):
                break
    return qr_rank(weights[idx], tol=tol)


def _min_singular_value_exceeds(weights: np.ndarray, take: np.ndarray, bound: float) -> bool:
    """Whether ``sigma_min(weights[take]) > bound``, certainly (see :func:`replicate_rank`)."""
    n_rep = weights.shape[1]
    sample = np.asarray(weights[take], dtype=np.float64)
    # einsum's own loop, not BLAS: a few hundred microseconds, where a threaded BLAS call on a
    # busy machine can stall for tens of milliseconds
    gram = np.einsum("ij,ik->jk", sample, sample)
    trace = float(np.trace(gram))
    if not np.isfinite(trace):
        return False
    # |computed - exact| <= m eps tr(G) for the products, <= R (R + 1) eps ||G|| for Cholesky (4x slack)
    slack = 4.0 * np.finfo(np.float64).eps * (len(take) + n_rep * (n_rep + 1)) * trace
    try:
        np.linalg.cholesky(gram - (bound * bound + slack) * np.eye(n_rep))
    except np.linalg.LinAlgError:
        return False
    return True


def qr_rank(a: np.ndarray, tol: float = 1e-7) -> int:
    """Rank of ``a`` as R's ``qr(a, tol)$rank`` (LINPACK ``dqrdc2``).

    Householder QR with R's limited column pivoting: a column whose remaining
    norm falls below ``tol`` times its original norm is moved to the end and
    not counted. Used for the degrees of freedom of replicate designs
    (``degf`` = rank of the replicate weights - 1, ``tol = 1e-5``).
    """
    x = np.array(a, dtype=np.float64, copy=True)
    n, p = x.shape
    if n == 0 or p == 0:
        return 0
    qraux = np.sqrt((x * x).sum(axis=0))
    work1 = qraux.copy()
    work2 = np.where(qraux == 0, 1.0, qraux)
    k = p + 1  # 1-based, as in the Fortran
    lup = min(n, p)
    for l in range(lup):  # noqa: E741 - the Fortran's name
        # cycle negligible columns to the end
        while (l + 1) < k and qraux[l] < work2[l] * tol:
            x[:, l:] = np.concatenate([x[:, l + 1 :], x[:, l : l + 1]], axis=1)
            qraux[l:] = np.r_[qraux[l + 1 :], qraux[l]]
            work1[l:] = np.r_[work1[l + 1 :], work1[l]]
            work2[l:] = np.r_[work2[l + 1 :], work2[l]]
            k -= 1
        if l == n - 1:
            break
        col = x[l:, l]
        nrmxl = np.sqrt(col @ col)
        if nrmxl == 0.0:
            continue
        if col[0] != 0.0:
            nrmxl = np.copysign(nrmxl, col[0])
        x[l:, l] = col / nrmxl
        x[l, l] += 1.0
        if l + 1 < p:
            v = x[l:, l]
            t = -(v @ x[l:, l + 1 :]) / x[l, l]
            x[l:, l + 1 :] += np.outer(v, t)
            # update the remaining column norms (vectorised over j; same arithmetic as the Fortran)
            j = np.arange(l + 1, p)
            j = j[qraux[j] != 0.0]
            if len(j):
                tt = np.maximum(1.0 - (np.abs(x[l, j]) / qraux[j]) ** 2, 0.0)
                small = np.abs(tt) < 1e-6
                qraux[j[~small]] = qraux[j[~small]] * np.sqrt(tt[~small])
                if small.any():
                    js = j[small]
                    qraux[js] = np.sqrt((x[l + 1 :, js] ** 2).sum(axis=0))
                    work1[js] = qraux[js]
        qraux[l] = x[l, l]
        x[l, l] = -nrmxl
    return int(min(k - 1, n))


def uniroot(
    f: Callable[[float], float], lower: float, upper: float, tol: float, maxiter: int = 1000, *,
    what: str = "quantile score interval: the score test", hint: str = "use interval_type='mean' (Woodruff)",
) -> float:
    """R ``uniroot`` (Brent's zeroin as ``R_zeroin2``), for reproducible roots of step functions.

    Raises :class:`~pipeline.errors.DataError` ("``what`` does not change sign over the data
    range", with ``hint``) when ``f(lower)`` and ``f(upper)`` have the same sign.

    >>> round(uniroot(lambda t: t * t - 2.0, 0.0, 2.0, 1e-10), 8)
    1.41421356
    """
    eps = np.finfo(float).eps
    a, b = lower, upper
    fa, fb = f(a), f(b)
    if fa * fb > 0:
        raise DataError(f"{what} does not change sign over the data range", hint=hint)
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    c, fc = a, fa
    for _ in range(maxiter + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2 * eps * abs(b) + tol / 2
        new_step = (c - b) / 2
        if abs(new_step) <= tol_act or fb == 0.0:
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p_ = cb * t1
                q_ = 1.0 - t1
            else:
                q_, t1, t2 = fa / fc, fb / fc, fb / fa
                p_ = t2 * (cb * q_ * (q_ - t1) - (b - a) * (t1 - 1.0))
                q_ = (q_ - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p_ > 0:
                q_ = -q_
            else:
                p_ = -p_
            if p_ < (0.75 * cb * q_ - abs(tol_act * q_) / 2) and p_ < abs(prev_step * q_ / 2):
                new_step = p_ / q_
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return b

"""Building replicate-weight designs from a linearization design (R ``as.svrepdesign``).

This module owns the replicate-weight builders, registered in
:data:`REPLICATE_METHODS` under the config vocabulary (``JK1``, ``JKn``,
``BRR``, ``Fay``, ``bootstrap``), and :func:`as_replicate_design`, which
dispatches to them. Each returns a new :class:`~pipeline.survey.design.Design`
whose variances come from the replicates; the replicate weights and scales
are those of R ``survey`` 4.1-1 (``jk1weights``, ``jknweights``,
``brrweights``, ``bootweights``):

``JK1``
    Delete-one-PSU jackknife for unstratified designs: replicate ``j`` sets
    PSU ``j``'s weights to 0 and multiplies the others by ``n/(n-1)``;
    ``scale = (1 - n/N)(n-1)/n`` (first-stage fpc only).
``JKn``
    Stratified jackknife: one replicate per PSU, re-weighting only its
    stratum by ``n_h/(n_h-1)``; ``rscales = (1 - n_h/N_h)(n_h-1)/n_h``,
    ``scale = 1``. Census strata (``N_h = n_h``) give no replicates; lonely
    strata follow the design's ``lonely_psu`` (``fail``: error; ``remove``,
    ``certainty``, ``average``: no replicate, ``average`` scales up by
    ``#PSUs / #replicates``; ``adjust``: one replicate dropping the stratum).
``BRR`` / ``Fay``
    Balanced repeated replication over strata of exactly 2 PSUs (strata with
    an even number of PSUs are split into pairs): replicate ``i`` gives the
    half-sample chosen by column ``i`` of a Hadamard matrix weight
    ``2 - rho`` and the other half ``rho``; ``scale = 1/(R (1 - rho)^2)``.
    The Hadamard matrix is R's ``hadamard()`` (Sylvester and Paley
    constructions, same row and column order) except for orders 28 and 36,
    where R ships precomputed matrices: a Paley II matrix of the same order
    is used instead (another balanced set: replicate columns differ from R's,
    variances of linear statistics do not).
``bootstrap``
    Rescaling bootstrap of Canty and Davison (R ``bootweights``): in every
    stratum ``n_h`` PSUs are drawn with replacement (or, with an fpc, without
    replacement from ``N_h`` copies); the multipliers are the draw counts;
    ``scale = m / ((m - 1)(R - 1))`` with ``m`` the harmonic mean of the
    ``n_h``. Draws come from numpy's generator (``seed``), so they cannot
    equal R's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import cache

import numpy as np

from pipeline.errors import ArgumentError, DesignError
from pipeline.survey.design import Design, ReplicateWeights

__all__ = ["REPLICATE_BUILDS", "REPLICATE_METHODS", "as_replicate_design", "bootstrap", "brr", "fay", "hadamard", "jk1", "jkn"]


# ------------------------------------------------------------------ helpers
def _check_source(design: Design, method: str) -> None:
    if design.is_replicate:
        raise DesignError(
            f"replicates: the design already has replicate weights; cannot build {method} replicates from it",
            hint="build replicates from the linearization design",
        )
    if design.adjustments:
        raise DesignError(
            f"replicates: build {method} replicates before weighting, not after",
            hint="convert the unweighted design, then redo the weighting in every replicate "
            "(the weighting functions take replicates=)",
        )


def _first_order(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct codes in order of first appearance, and each row's position in that order."""
    uniq, first, inv = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return uniq[order], rank[inv.reshape(-1)]


def _finish(design: Design, multipliers: np.ndarray, *, scale: float, rscales: np.ndarray, type: str, rho: float | None, mse: bool) -> Design:
    reps = ReplicateWeights(
        weights=_ro(multipliers * design.weights[:, None]),
        scale=float(scale),
        rscales=_ro(np.asarray(rscales, dtype=np.float64)),
        mse=bool(mse),
        type=type,
        rho=rho,
    )
    return replace(design, replicates=reps)


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _first_stage_fpc(design: Design) -> np.ndarray | None:
    """Population number of PSUs per row (first stage), or None (R drops later-stage fpcs)."""
    if design.popsize is None:
        return None
    return np.asarray(design.popsize[:, 0], dtype=np.float64)


# ------------------------------------------------------------------ jackknife
def jk1(design: Design, *, mse: bool = False) -> Design:
    """Delete-one-PSU jackknife (R ``as.svrepdesign(type = "JK1")``).

    Raises
    ------
    DesignError
        For stratified designs (use :func:`jkn`), or when the fpc differs between PSUs.
    """
    _check_source(design, "JK1")
    if design.has_strata:
        raise DesignError(
            "replicates: can't use JK1 for a stratified design",
            hint="use JKn (one jackknife per stratum) or bootstrap",
        )
    psu, index = _first_order(design.clusters[:, 0])
    n = len(psu)
    fpc = _first_stage_fpc(design)
    f = 1.0
    if fpc is not None:
        values = np.unique(fpc)
        if len(values) > 1:
            raise DesignError(
                f"replicates: JK1 needs a single first-stage fpc; found {len(values)} different values",
                hint="JK1 is for unstratified designs; use JKn for strata with their own fpc",
            )
        f = 1.0 if np.isinf(values[0]) else (values[0] - n) / values[0]
    if f == 0.0:
        # census: R (survey.drop.replicates) keeps no replicates and a zero variance
        return _finish(design, np.ones((len(index), 1)), scale=0.0, rscales=np.ones(1), type="JK1", rho=None, mse=mse)
    mult = np.full((len(index), n), n / (n - 1))
    mult[np.arange(len(index)), index] = 0.0
    return _finish(design, mult, scale=f * (n - 1) / n, rscales=np.ones(n), type="JK1", rho=None, mse=mse)


def jkn(design: Design, *, mse: bool = False) -> Design:
    """Stratified delete-one-PSU jackknife (R ``as.svrepdesign(type = "JKn")``).

    Replicates follow the strata in order of first appearance and, within a
    stratum, the PSUs in order of first appearance (R's ``jknweights``).
    """
    _check_source(design, "JKn")
    if not design.has_strata:
        raise DesignError(
            "replicates: JKn needs a stratified design",
            hint="use JK1 or bootstrap for an unstratified design",
        )
    strata = design.strata[:, 0]
    clusters = design.clusters[:, 0]
    fpc = _first_stage_fpc(design)
    n_rows = len(strata)
    strata_order, _ = _first_order(strata)
    psu_all, psu_index = _first_order(clusters)
    columns: list[np.ndarray] = []
    rscales: list[float] = []
    lonely = design.lonely_psu
    n_strata = len(strata_order)
    for h in strata_order:
        in_h = strata == h
        psus, local = _first_order(clusters[in_h])
        n_h = len(psus)
        f_h = 1.0
        if fpc is not None:
            big_n = fpc[in_h][0]
            f_h = 1.0 if np.isinf(big_n) else (big_n - n_h) / big_n
        if f_h == 0.0:
            continue  # census stratum: no replicates (survey.drop.replicates)
        if n_h == 1:
            if lonely == "fail":
                raise DesignError(
                    f"replicates: Stratum {_label(design, h)} has only one PSU",
                    hint="set lonely_psu to 'remove', 'certainty', 'average' or 'adjust', or merge the stratum",
                )
            if lonely == "adjust":
                col = np.where(in_h, 0.0, n_strata / (n_strata - 1))
                columns.append(col)
                rscales.append((n_strata - 1) / n_strata)
            continue
        rows_h = np.flatnonzero(in_h)
        for j in range(n_h):
            col = np.ones(n_rows)
            col[rows_h] = n_h / (n_h - 1)
            col[rows_h[local == j]] = 0.0
            columns.append(col)
            rscales.append(f_h * (n_h - 1) / n_h)
    if not columns:
        raise DesignError(
            "replicates: all strata were exhaustively sampled: you have the whole population",
            hint="no replicate is needed; every variance is zero",
        )
    scale = 1.0
    if lonely == "average" and len(columns) < len(psu_all):
        scale = len(psu_all) / len(columns)
    return _finish(design, np.column_stack(columns), scale=scale, rscales=np.asarray(rscales), type="JKn", rho=None, mse=mse)


def _label(design: Design, code: int) -> str:
    cols = design.spec.get("strata") or ()
    row = int(np.flatnonzero(design.strata[:, 0] == code)[0])
    return f"({design.frame.get_column(cols[0])[row]})" if cols else f"(row {row + 1})"


# ------------------------------------------------------------------ BRR / Fay
def brr(design: Design, *, fay_rho: float = 0.0, mse: bool = False) -> Design:
    """Balanced repeated replication (R ``as.svrepdesign(type = "BRR")``; Fay's with ``fay_rho > 0``).

    Raises
    ------
    DesignError
        A stratum with one PSU, or with an odd number of PSUs above 2.
    """
    _check_source(design, "BRR")
    if not design.has_strata:
        raise DesignError(
            "replicates: BRR needs a stratified design with 2 PSUs per stratum",
            hint="use JK1 or bootstrap for an unstratified design",
        )
    if not (0.0 <= fay_rho < 1.0):
        raise ArgumentError(f"replicates: fay_rho must be in [0, 1); got {fay_rho!r}", hint="e.g. 0.5 for Fay's method")
    strata = design.strata[:, 0]
    clusters = design.clusters[:, 0]
    psus, psu_index = _first_order(clusters)        # R: unq <- which(!duplicated(psu))
    first_row = np.array([np.flatnonzero(clusters == c)[0] for c in psus])
    labels = _stratum_strings(design)
    s_of_psu = labels[first_row]
    names, sizes = np.unique(s_of_psu, return_counts=True)  # R: table() of character strata (sorted)
    if (sizes < 2).any():
        bad = names[sizes < 2][0]
        raise DesignError(
            f"replicates: some strata have fewer than 2 PSUs (stratum {bad})",
            hint="merge lonely strata with a neighbour before BRR, or use JKn",
        )
    large = names[sizes > 2]
    if (sizes[sizes > 2] % 2 == 1).any():
        raise DesignError(
            "replicates: can't split with odd numbers of PSUs in a stratum",
            hint="BRR needs pairs of PSUs; use JKn or bootstrap",
        )
    # R: oo <- order(sunq, match): PSUs by (character) stratum, then first appearance
    oo = np.lexsort((np.arange(len(psus)), s_of_psu))
    half = np.zeros(len(psus), dtype=np.int64)     # 0: first column of R's weights is 1; 1: second
    pair = np.zeros(len(psus), dtype=np.int64)
    upto = 0
    for group in (large, names[sizes == 2]):
        for name in group:
            members = oo[s_of_psu[oo] == name]
            k = len(members)
            # R: weights[, 1] <- rep(0:1, ...) i.e. the first PSU of a pair is in half 2
            half[members] = np.resize([1, 0], k)
            pair[members] = upto + np.repeat(np.arange(1, k // 2 + 1), 2)
            upto += k // 2
    H = hadamard(upto)
    R = H.shape[1]
    # replicate i: pair k uses half h = H[k, i] + 1; PSU in that half gets 2 - rho, the other rho
    h = H[pair, :]                                   # (n_psu, R) with H's row k = pair index
    in_half = np.where(half[:, None] == 0, h == 0, h == 1)
    mult_psu = np.where(in_half, 2.0 - fay_rho, fay_rho)
    mult = mult_psu[psu_index]
    type_ = "BRR" if fay_rho == 0.0 else "Fay"
    return _finish(
        design, mult, scale=1.0 / (R * (1.0 - fay_rho) ** 2), rscales=np.ones(R), type=type_,
        rho=fay_rho if fay_rho else None, mse=mse,
    )


def fay(design: Design, *, rho: float = 0.5, mse: bool = False) -> Design:
    """Fay's BRR (R ``as.svrepdesign(type = "Fay", fay.rho = rho)``)."""
    if not (0.0 < rho < 1.0):
        raise ArgumentError(f"replicates: Fay's rho must be in (0, 1); got {rho!r}", hint="e.g. rho=0.5")
    return brr(design, fay_rho=rho, mse=mse)


def _stratum_strings(design: Design) -> np.ndarray:
    cols = design.spec.get("strata") or ()
    if cols:
        return design.frame.get_column(cols[0]).cast(str).to_numpy().astype(str)
    return design.strata[:, 0].astype(str)


@cache
def _primes_3_mod_4(limit: int = 7919) -> tuple[int, ...]:
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for i in range(2, int(limit**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = False
    return tuple(int(p) for p in np.flatnonzero(sieve) if p % 4 == 3)


def _sylvester(order: int) -> np.ndarray:
    i = np.arange(order)
    bits = np.bitwise_and.outer(i, i)
    parity = np.zeros_like(bits)
    while bits.any():
        parity ^= bits & 1
        bits >>= 1
    return (parity == 0).astype(np.int64)


def _paley_prime(p: int) -> np.ndarray:
    """R survey ``paley(prime = p)``: 0/1 Paley I matrix of order p + 1."""
    m = np.add.outer(np.arange(p), np.arange(p)) % p
    residues = {0, 1} | {(i * i) % p for i in range(2, (p - 1) // 2 + 1)}
    out = np.where(np.isin(m, list(residues)), 0, 1)
    top = np.ones((1, p), dtype=np.int64)
    return np.column_stack([np.ones(p + 1, dtype=np.int64), np.vstack([top, out])])


def _paley2(q: int) -> np.ndarray:
    """0/1 Paley II Hadamard matrix of order 2(q + 1), q prime = 1 mod 4, first row and column all 1."""
    chi = np.zeros(q, dtype=np.int64)
    for i in range(1, q):
        chi[(i * i) % q] = 1
    chi = np.where(chi == 1, 1, -1)
    chi[0] = 0
    Q = chi[(np.arange(q)[None, :] - np.arange(q)[:, None]) % q]
    C = np.zeros((q + 1, q + 1), dtype=np.int64)
    C[0, 1:] = 1
    C[1:, 0] = 1
    C[1:, 1:] = Q
    H = np.kron(C, np.array([[1, 1], [1, -1]])) + np.kron(np.eye(q + 1, dtype=np.int64), np.array([[1, -1], [-1, -1]]))
    H = H * H[0][None, :]          # first row all +1
    H = H * H[:, 0][:, None]       # first column all +1
    return (H > 0).astype(np.int64)


def _doubler(H: np.ndarray) -> np.ndarray:
    return np.block([[H, H], [H, 1 - H]])


_PRECOOKED_SIZES = (4, 16, 28, 36)


def _precooked(size: int) -> np.ndarray:
    if size in (4, 16):
        return _sylvester(size)
    return _paley2({28: 13, 36: 17}[size])


def _paley(n: int, nmax: int | None = None, prime: int | None = None) -> np.ndarray | None:
    """R survey ``paley(n, nmax)``: a Paley-type 0/1 Hadamard matrix of order > n, or None."""
    if prime is not None:
        return _paley_prime(prime)
    nmax = 2 * n if nmax is None else nmax
    primes = _primes_3_mod_4()
    nceil = nn = n + 4 - (n % 4)
    if (n % 4) + 4 == (n % 8):
        while nn % 8 == 0:
            nn //= 2
        if (nn - 1) in primes:
            m = _paley_prime(nn - 1)
            while nn < nceil:
                m = _doubler(m)
                nn *= 2
            return m
    if n > max(primes):
        return None
    p = min(q for q in primes if q >= n)
    if (p + 1 > nceil + 4) and (nceil + 4 < nmax):
        return _paley(nceil + 3)
    if p > nmax:
        return None
    return _paley_prime(p)


def hadamard(n: int) -> np.ndarray:
    """A 0/1 Hadamard matrix with more than ``n`` rows, as R survey's ``hadamard(n)``.

    Rows ``2..n+1`` define the half-samples of ``n`` PSU pairs; the first row is
    all ones. Sizes and constructions follow R (smallest of the precooked
    orders 4, 16, 28, 36 that fits, else a Paley matrix, else doubling);
    orders 4 and 16 are Sylvester matrices identical to R's, orders 28 and 36
    are Paley II matrices (R's precooked ones are not reproduced).
    """
    m = n - (n % 4)
    fits = [s for s in _PRECOOKED_SIZES if m < s <= m + 4]
    if fits:
        return _precooked(min(fits))
    sizes = np.array(_PRECOOKED_SIZES)
    if (m < sizes).all():
        return _precooked(4)
    doubled = sizes * 2 ** np.maximum(0, np.ceil(np.log2((n + 1) / sizes))).astype(np.int64)
    best = int(np.argmin(doubled - n))
    H = None
    if doubled[best] - n > 4:
        H = _paley(n, int(doubled[best]))
    if H is None:
        H = _precooked(int(sizes[best]))
        for _ in range(int(np.ceil(np.log2(doubled[best] / sizes[best])))):
            H = _doubler(H)
    return H


# ------------------------------------------------------------------ bootstrap
def bootstrap(
    design: Design,
    *,
    replicates: int = 50,
    seed: int | np.random.Generator | None = None,
    mse: bool = False,
) -> Design:
    """Canty-Davison rescaling bootstrap (R ``as.svrepdesign(type = "bootstrap")``).

    Parameters
    ----------
    replicates : int
        Number of bootstrap replicates.
    seed : int or numpy.random.Generator, optional
        Source of the draws (the same seed gives the same replicates).
    """
    _check_source(design, "bootstrap")
    if replicates < 2:
        raise ArgumentError(f"replicates: bootstrap needs at least 2 replicates; got {replicates}", hint="e.g. 200")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    strata = design.strata[:, 0]
    clusters = design.clusters[:, 0]
    fpc = _first_stage_fpc(design)
    psus, psu_index = _first_order(clusters)
    first_row = np.array([np.flatnonzero(clusters == c)[0] for c in psus])
    s_of_psu = strata[first_row]
    counts = np.zeros((len(psus), replicates))
    sizes = []
    for h in _first_order(s_of_psu)[0]:
        members = np.flatnonzero(s_of_psu == h)
        n_h = len(members)
        sizes.append(n_h)
        big_n = None if fpc is None else fpc[first_row[members[0]]]
        for r in range(replicates):
            if big_n is None or np.isinf(big_n):
                draw = rng.integers(0, n_h, size=n_h)
            else:
                # without replacement from N_h copies of the sampled PSUs (R's bootstratum)
                pseudo = np.resize(rng.permutation(n_h), int(big_n))
                draw = rng.choice(pseudo, size=n_h, replace=False)
            counts[members, r] = np.bincount(draw, minlength=n_h)
    m = 1.0 / np.mean(1.0 / np.asarray(sizes, dtype=np.float64))
    scale = m / ((m - 1.0) * (replicates - 1))
    return _finish(design, counts[psu_index], scale=scale, rscales=np.ones(replicates), type="bootstrap", rho=None, mse=mse)


#: Replicate builders keyed by the config vocabulary.
REPLICATE_METHODS: dict[str, Callable[..., Design]] = {
    "JK1": jk1,
    "JKn": jkn,
    "BRR": brr,
    "Fay": fay,
    "bootstrap": bootstrap,
}
#: What ``design.replicates.build`` may name: a builder, or ``auto`` (R ``as.svrepdesign``'s default:
#: JK1 without strata, JKn with strata).
REPLICATE_BUILDS: tuple[str, ...] = ("auto", *REPLICATE_METHODS)


def as_replicate_design(design: Design, type: str = "auto", **options) -> Design:
    """Convert a linearization design to replicate weights (R ``as.svrepdesign``).

    Parameters
    ----------
    design : Design
        An unweighted linearization design.
    type : {'auto', 'JK1', 'JKn', 'BRR', 'Fay', 'bootstrap'}
        ``auto``: JK1 without strata, JKn with strata (R's default).
    **options
        Passed to the builder (``mse``, ``rho``/``fay_rho``, ``replicates``, ``seed``).
    """
    if type == "auto":
        type = "JKn" if design.has_strata else "JK1"
    if type not in REPLICATE_METHODS:
        raise ArgumentError(
            f"replicates: unknown replicate type {type!r}",
            hint=f"expected one of auto, {', '.join(REPLICATE_METHODS)}",
        )
    return REPLICATE_METHODS[type](design, **options)

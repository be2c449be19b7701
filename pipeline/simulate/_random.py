"""Random streams that regenerate identically on any machine, and the draws built on them.

This module owns every contact with numpy's random machinery in the simulator. Only calls
whose output streams numpy keeps stable across versions are used: a ``PCG64`` bit generator
seeded through a ``SeedSequence``, and ``Generator.random``, ``Generator.standard_normal``
and ``Generator.integers``. Categorical draws are done here by inverse CDF on uniforms (not
``Generator.choice`` or ``Generator.multinomial``, whose algorithms have changed between
releases), so the committed demo files can be regenerated bit for bit from the seed.

Each concern (population, sample, responses, fieldwork, problems) draws from its own
stream, so changing how one concern uses randomness never shifts the draws of another. A wave
after the first adds its own key to every stream, so the same ``--seed`` given to two waves
still draws two independent samples (trend tests assume independent samples).
"""

from __future__ import annotations

import numpy as np

#: One independent stream per concern. The numbers are part of the reproducibility
#: contract: changing one changes the committed demo files.
STREAMS: dict[str, int] = {
    "population": 1,
    "sample": 2,
    "responses": 3,
    "fieldwork": 4,
    "problems": 5,
    "nonrespondents": 6,
}


def stream(seed: int, name: str, key: int | None = None) -> np.random.Generator:
    """Return the random generator of one concern.

    Parameters
    ----------
    seed : int
        The user's seed (``survey-pipeline simulate --seed``).
    name : {'population', 'sample', 'responses', 'fieldwork', 'problems', 'nonrespondents'}
        The concern drawing from the stream.
    key : int, optional
        The wave's stream key (``WaveSpec.stream_key``): None for wave 2012, whose committed
        files predate wave keys, the wave's year for later waves.

    Returns
    -------
    numpy.random.Generator
        ``Generator(PCG64(SeedSequence([seed, STREAMS[name]])))``, with ``key`` appended to the
        entropy when given.
    """
    entropy = [seed, STREAMS[name]] if key is None else [seed, STREAMS[name], key]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


def categorical(u: np.ndarray, probs: np.ndarray, group: np.ndarray | None = None) -> np.ndarray:
    """Draw category indices by inverse CDF.

    Parameters
    ----------
    u : numpy.ndarray
        Uniforms on [0, 1), one per draw.
    probs : numpy.ndarray
        Category probabilities, shape ``(K,)`` or ``(G, K)`` (one row per group). Rows are
        renormalised to sum to 1.
    group : numpy.ndarray, optional
        Row of ``probs`` to use for each draw (integers ``0..G-1``). Required when
        ``probs`` is two-dimensional.

    Returns
    -------
    numpy.ndarray
        ``int8`` category indices ``0..K-1``.

    Examples
    --------
    >>> categorical(np.array([0.1, 0.5, 0.95]), np.array([0.2, 0.5, 0.3]))
    array([0, 1, 2], dtype=int8)
    """
    table = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    cdf = np.cumsum(table, axis=1)
    cdf = cdf / cdf[:, -1:]
    last = table.shape[1] - 1
    out = np.empty(u.shape, dtype=np.int8)
    if group is None:
        if table.shape[0] != 1:
            raise ValueError("a two-dimensional probability table needs a group array")
        out[:] = np.minimum(np.searchsorted(cdf[0], u, side="right"), last)
        return out
    # A small loop over the groups (counties, statuses: at most a few dozen), never over rows.
    for g in range(table.shape[0]):
        mask = group == g
        out[mask] = np.minimum(np.searchsorted(cdf[g], u[mask], side="right"), last)
    return out


def permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return a random permutation of ``0..n-1`` built from uniforms (stable across numpy).

    Parameters
    ----------
    rng : numpy.random.Generator
        The stream to draw from.
    n : int
        Length of the permutation.

    Returns
    -------
    numpy.ndarray
        ``int64`` indices.
    """
    return np.argsort(rng.random(n), kind="stable")

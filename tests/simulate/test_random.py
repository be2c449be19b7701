"""The simulator's random streams and inverse-CDF draws (pipeline/simulate/_random.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from pipeline.simulate._random import categorical, permutation, stream

#: First draws of the population stream for seed 20121117, recorded with numpy 2.4.6. If this
#: test fails, numpy changed PCG64 / SeedSequence / the draw algorithms, and the committed demo
#: files in raw/ can no longer be regenerated bit for bit on this numpy.
GOLDEN_POPULATION_DRAWS = {
    "random": [0.6986613698422228, 0.6050443890714955],
    "standard_normal": [-0.6570853717609448],
    "integers": [8, 466],
}


def test_streams_are_stable_across_numpy_versions() -> None:
    g = stream(20121117, "population")
    assert g.random(2).tolist() == GOLDEN_POPULATION_DRAWS["random"]
    assert g.standard_normal(1).tolist() == GOLDEN_POPULATION_DRAWS["standard_normal"]
    assert g.integers(0, 1000, size=2).tolist() == GOLDEN_POPULATION_DRAWS["integers"]


def test_streams_of_different_concerns_are_independent() -> None:
    assert stream(1, "population").random() != stream(1, "sample").random()


def test_categorical_inverse_cdf_by_group() -> None:
    probs = np.array([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]])
    u = np.array([0.1, 0.6, 0.1, 0.3, 0.9999])
    group = np.array([0, 0, 1, 1, 1])
    assert categorical(u, probs, group).tolist() == [0, 1, 1, 2, 2]


@given(
    weights=st.lists(st.floats(min_value=0.01, max_value=10.0), min_size=1, max_size=8),
    u=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_categorical_picks_the_interval_holding_u(weights: list[float], u: float) -> None:
    p = np.asarray(weights) / np.sum(weights)
    k = int(categorical(np.array([u]), np.asarray(weights))[0])
    cdf = np.cumsum(p) / np.sum(p)
    low = 0.0 if k == 0 else cdf[k - 1]
    assert 0 <= k < len(weights)
    assert low <= u < cdf[k] or (k == len(weights) - 1 and u >= low)


def test_permutation_is_a_permutation() -> None:
    perm = permutation(stream(3, "problems"), 1000)
    assert sorted(perm.tolist()) == list(range(1000))


def test_a_wave_key_gives_an_independent_stream() -> None:
    """Wave 2014's streams add the wave key; wave 2012's (key None) are the original ones."""
    assert stream(20121117, "population", None).random() == GOLDEN_POPULATION_DRAWS["random"][0]
    assert stream(20121117, "population", 2014).random() != GOLDEN_POPULATION_DRAWS["random"][0]

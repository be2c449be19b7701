"""Synthetic demo data: a telephone-survey delivery modeled on the UIC "Insecure Communities" study.

``simulate_delivery`` builds a full-size synthetic population of Latino adults in Cook, Harris,
Los Angeles and Maricopa counties, draws a dual-frame (landline/cell) telephone sample with
realistic nonresponse, simulates the interviews with a response model calibrated to the published
headline figures, and injects the data problems of a real vendor delivery, with an answer key.
``write_delivery`` writes the SPSS file, the answer key, the raking targets and the population
truth. The specification is section 7 of ``studies/insecure_communities.md``.

The data are SYNTHETIC: not the real study's data and not real people. The raw delivery carries
no weights (no WEIGHT / WEIGHT_POP): computing them is the pipeline's job.

Examples
--------
A small delivery (the demo's is ``n=2004``, ``seed=20121120``: ``survey-pipeline simulate``),
written to a temporary folder:

>>> import tempfile
>>> from pathlib import Path
>>> from pipeline.simulate import simulate_delivery, write_delivery
>>> delivery = simulate_delivery(wave="2012", seed=20121117, n=400)
>>> paths = write_delivery(delivery, Path(tempfile.mkdtemp()))
"""

from __future__ import annotations

from ._delivery import DEFAULT_N, DEFAULT_SEED, DEFAULT_WAVE, Delivery, simulate_delivery
from ._write import delivery_paths, write_delivery

__all__ = [
    "DEFAULT_N",
    "DEFAULT_SEED",
    "DEFAULT_WAVE",
    "Delivery",
    "delivery_paths",
    "simulate_delivery",
    "write_delivery",
]

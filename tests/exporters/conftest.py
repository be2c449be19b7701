"""Fixtures of the exporter tests."""

from __future__ import annotations

import polars as pl
import pytest

from exporters.exporter_data import small_estimates


@pytest.fixture
def estimates() -> pl.DataFrame:
    return small_estimates()

"""Builders for command-line tests on R's example data in ``../shared/conformance``: a project
folder with one CSV delivery and a config, and the rows of R's expected values to compare with."""

from __future__ import annotations

from pathlib import Path

import polars as pl

CONFORMANCE = (Path(__file__).resolve().parents[1] / ".." / "shared" / "conformance").resolve()


def conformance_data(name: str) -> pl.DataFrame:
    """One of the example data sets (``apistrat.csv``, ``nhanes.csv``, ...)."""
    return pl.read_csv(CONFORMANCE / "data" / name)


def r_row(file: str, case: str, level: str = "", domain: str = "") -> dict:
    """The one row of R's ``expected/<file>`` with this case, level and domain (empty: none)."""
    est = pl.read_csv(CONFORMANCE / "expected" / file, infer_schema_length=None)
    rows = est.filter(
        (pl.col("case") == case) & (pl.col("level").cast(pl.String).fill_null("") == level) & (pl.col("domain").fill_null("") == domain)
    )
    assert rows.height == 1, (file, case, level, domain)
    return rows.row(0, named=True)


def csv_project(tmp_path: Path, data: pl.DataFrame, config: str, name: str = "study") -> Path:
    """``configs/<name>.yaml`` (``RAW`` in ``config`` names the delivery) and ``raw/<name>.csv``."""
    (tmp_path / "configs").mkdir(exist_ok=True)
    (tmp_path / "raw").mkdir(exist_ok=True)
    data.write_csv(tmp_path / "raw" / f"{name}.csv")
    cfg = tmp_path / "configs" / f"{name}.yaml"
    cfg.write_text(config.replace("RAW", f"../raw/{name}.csv"))
    return cfg

"""Small command-line and cleaning edges that ended in a traceback (found in issue 10's pass)."""

from __future__ import annotations

import subprocess
import sys

import polars as pl

from pipeline.config import CleanConfig
from pipeline.io import Codebook
from pipeline.stages.clean import clean


def test_near_duplicates_ordered_by_the_id_column():
    """``order_by: [RESPID]`` selected the id column twice: a polars DuplicateError traceback."""
    f = pl.DataFrame({"ID": [4, 2, 3, 1], "KEY": ["a", "b", "a", "a"]}).with_columns(pl.int_range(1, 5).alias("raw_row"))
    res = clean(f, Codebook(), CleanConfig.model_validate({"drop_duplicates": {"id": "ID"}, "near_duplicates": {"key": "KEY", "order_by": ["ID"]}}))
    assert sorted(res.quarantine.get_column("ID").to_list()) == [3, 4]  # ID 1 is the first of key a


def test_status_piped_into_head_is_not_a_traceback(tiny_project):
    """``survey-pipeline status CONFIG | head -1``: the reader closes the pipe early."""
    proc = subprocess.run(
        f"{sys.executable} -m pipeline status {tiny_project} | head -c 1",
        shell=True, capture_output=True, text=True, timeout=120,
    )
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_argument_errors_of_the_statistics_name_the_config_key():
    """survey/ raises plain argument errors; the estimate stage names the config key path."""
    import pytest

    from pipeline.errors import ArgumentError, ConfigError
    from pipeline.stages.estimate import _argument_errors

    with pytest.raises(ConfigError) as info, _argument_errors("design", prefix="design"):
        raise ArgumentError("design: unknown lonely_psu option 'x'", hint="one of ...")
    assert info.value.message == "design: unknown lonely_psu option 'x'" and info.value.exit_code == 2
    with pytest.raises(ConfigError) as info, _argument_errors("estimates[0] (q1_yes)"):
        raise ArgumentError("levels must be codes of the variable")
    assert info.value.message == "estimates[0] (q1_yes): levels must be codes of the variable"

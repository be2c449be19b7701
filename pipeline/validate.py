"""``survey-pipeline validate``: check a config against its raw files without writing anything.

The checks are :func:`pipeline.preflight.preflight`'s, the same that ``run`` makes before its
first stage, so a config that ``validate`` accepts does not stop a run on a name or a code.
"""

from __future__ import annotations

from pipeline.config import StudyConfig


def validate(config: StudyConfig) -> list[str]:
    """Check every wave's raw file and targets against every name and code of the config.

    Returns notes (one line per wave) when all is well; raises ConfigError (names or codes that
    do not fit the data, exit 2) or DataError (unreadable or missing files, exit 1) listing
    every problem found.
    """
    from pipeline.preflight import preflight

    return preflight(config)

"""The exception tree: one base class, subclasses named by what is wrong.

Every error a user can cause is a :class:`PipelineError`. The CLI maps
:class:`ConfigError` (and usage errors) to exit code 2 and every other
:class:`PipelineError` to exit code 1. Messages say what is wrong, where (file,
config key, row, column), what was expected, what was found, and a hint.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class of every error the pipeline reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(PipelineError):
    """The config file (or the command line) is wrong: exit code 2.

    ``problems`` holds one line per problem, each starting with its key path,
    so that every problem of a config is reported at once.
    """

    exit_code = 2

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message, hint=hint)


class UsageError(ConfigError):
    """The command line is wrong: exit code 2."""


class DataError(PipelineError):
    """The data are wrong (bad raw file, unexpected codes, lost rows): exit code 1."""


class TargetsError(DataError):
    """Weighting targets do not fit the data (missing categories, shares not summing to 1)."""


class CalibrationError(DataError):
    """Raking or calibration failed (non-convergence, empty cells, infeasible bounds)."""


class DesignError(DataError):
    """The survey design cannot support the request (lonely PSU under 'fail', bad fpc, ...)."""


class LockError(PipelineError):
    """Another run of the same study holds the lock."""

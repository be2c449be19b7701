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


class ArgumentError(PipelineError, ValueError):
    """A statistics function (``pipeline.survey``) got an argument it does not support: exit code 2.

    ``pipeline.survey`` knows no config file, so it raises this plain argument error (a
    ``ValueError``) naming the argument; the stage that called it translates it into a
    :class:`ConfigError` naming the config key (:func:`translate_argument_error`). One that escapes
    untranslated is still a usage error (exit code 2, no traceback).
    """

    exit_code = 2


def translate_argument_error(exc: ArgumentError, key: str, *, prefix: str = "") -> ConfigError:
    """``exc`` as a :class:`ConfigError` whose message starts with the config key path ``key``.

    A leading ``"<prefix>: "`` of the argument error's message (e.g. ``design: ``) is replaced by
    the key, so that ``design: unknown lonely_psu ...`` becomes ``design.lonely_psu: unknown ...``.
    """
    message = exc.message
    if prefix and message.startswith(f"{prefix}: "):
        message = message[len(prefix) + 2:]
    return ConfigError(f"{key}: {message}" if key else message, hint=exc.hint)


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

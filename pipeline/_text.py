"""Text helpers for messages, shared by preflight and the stages (a low module: imports nothing
of the package, so that no import circle can pass through it)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'X'?"`` for the closest candidate (case ignored), or ``""``."""
    pool = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(pool), n=1, cutoff=0.6 if len(name) > 3 else 0.5)  # QI -> Q1
    return f"; did you mean '{pool[close[0]]}'?" if close else ""

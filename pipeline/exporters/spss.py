"""The analysis file: the weighted respondents as SPSS ``.sav`` and Stata ``.dta`` (pyreadstat).

Every kept respondent (``weight/data.parquet``) with the codebook's variable labels, value
labels and (SPSS) user-missing declarations, the final weights, and the synthetic-data notice
as the file's note. Left out: identifier columns declared as PII (already dropped at ingest;
dropped again here in case a later change brings one back) and their hashes, the pipeline's
internal columns, and weight columns not listed in ``export.weights``.

Limits of the formats, handled here: Stata variable labels hold 80 characters (longer ones are
cut with "..."), Stata value labels need integer codes, and Stata has no user-missing codes
(don't know and refused stay as labelled codes); SPSS takes at most three discrete missing
codes per variable (more become a range when no valid code lies inside it).

Both formats carry a creation time in their header, which ReadStat takes from the clock; it is
rewritten to ``timestamp`` (by default :func:`pipeline.exporters.file_timestamp`: the end of the
wave's field period), so that the same inputs give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from pipeline.io import Codebook

__all__ = ["AnalysisFile", "analysis_file", "dta_bytes", "sav_bytes"]

#: weight columns the weight stage makes (``w_uncalibrated``: its weight before calibration,
#: ``pipeline.stages._common.UNCALIBRATED``); only those in ``export.weights`` are published
WEIGHT_COLUMNS = ("w_base", "w_uncalibrated", "w_final", "w_pop")
#: the pipeline's own bookkeeping columns
INTERNAL_COLUMNS = ("raw_row",)
SAV_LABEL_MAX = 256
DTA_LABEL_MAX = 80
FILE_LABEL_MAX = 64
#: SPSS document lines hold 80 characters
SAV_NOTE_WIDTH = 80


@dataclass(frozen=True)
class AnalysisFile:
    """The data and metadata written to both formats."""

    frame: pl.DataFrame
    labels: dict[str, str | None]
    value_labels: dict[str, dict[int | float, str]]
    missing: dict[str, list[Any]]
    file_label: str
    note: str


def analysis_file(
    frame: pl.DataFrame,
    codebook: Codebook,
    *,
    weights: Sequence[str] = ("w_final", "w_pop"),
    drop: Sequence[str] = (),
    file_label: str = "",
    note: str = "",
) -> AnalysisFile:
    """Select the columns and gather their labels.

    Parameters
    ----------
    frame : polars.DataFrame
        The weighted data.
    codebook : Codebook
    weights : sequence of str
        Weight columns to keep (others of :data:`WEIGHT_COLUMNS` are left out).
    drop : sequence of str
        Further columns to leave out (the config's PII columns and their hashes).
    """
    import polars as pl

    from pipeline.errors import ConfigError

    unknown = [w for w in weights if w not in frame.columns]
    if unknown:
        raise ConfigError(f"export.weights: {', '.join(unknown)} not in the weighted data", hint=f"weights there: {', '.join(c for c in WEIGHT_COLUMNS if c in frame.columns)}")
    leave = set(drop) | set(INTERNAL_COLUMNS) | (set(WEIGHT_COLUMNS) - set(weights))
    keep = [c for c in frame.columns if c not in leave and not c.startswith("__")]
    out = frame.select(keep)
    # codes stored as integers are written as numbers; anything else numeric as double
    casts = [pl.col(c).cast(pl.Float64) for c, t in out.schema.items() if t.is_integer()]
    out = out.with_columns(casts)
    labels: dict[str, str | None] = {}
    value_labels: dict[str, dict[int | float, str]] = {}
    missing: dict[str, list[Any]] = {}
    for c in out.columns:
        info = codebook.get(c)
        labels[c] = info.label
        vl = {k: v for k, v in info.value_labels.items() if isinstance(k, (int, float)) and not isinstance(k, bool)}
        if vl and out.schema[c].is_numeric():
            value_labels[c] = vl
        codes = sorted(k for k in info.missing_values if isinstance(k, (int, float)))
        if codes and out.schema[c].is_numeric():
            missing[c] = _spss_missing(codes, vl)
    return AnalysisFile(out, labels, value_labels, missing, file_label[:FILE_LABEL_MAX], note)


def _spss_missing(codes: list[float], labels: dict[int | float, str]) -> list[Any]:
    if len(codes) <= 3:
        return list(codes)
    lo, hi = codes[0], codes[-1]
    valid_inside = [k for k in labels if lo <= k <= hi and k not in codes]
    if not valid_inside:
        return [{"lo": lo, "hi": hi}]
    return list(codes[:3])


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3].rstrip() + "..."


def _write(writer: Any, suffix: str) -> bytes:
    from pipeline.errors import DataError

    with tempfile.TemporaryDirectory(prefix="survey-pipeline-") as tmp:
        path = Path(tmp) / f"analysis{suffix}"
        try:
            writer(str(path))
        except Exception as exc:  # pyreadstat's errors, wrapped at the boundary
            raise DataError(f"cannot write the analysis file ({suffix}): {exc}", hint="see export.weights and the codebook's labels") from exc
        return path.read_bytes()


#: English month abbreviations of both headers (not the locale's)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: the SPSS file header: creation date "dd Mmm yy" at byte 92, time "hh:mm:ss" at byte 101
_SAV_DATE, _SAV_TIME = slice(92, 101), slice(101, 109)
#: the Stata 118/119 header: ``<timestamp>``, a length byte (17), "dd Mmm yyyy hh:mm"
_DTA_TIMESTAMP = b"<timestamp>"


def _stamp_sav(raw: bytes, when: dt.datetime) -> bytes:
    from pipeline.errors import PipelineError

    if raw[:4] not in (b"$FL2", b"$FL3") or len(raw) < _SAV_TIME.stop:
        raise PipelineError("export: the .sav that pyreadstat wrote has no SPSS system file header", hint="report it with the pyreadstat version")
    out = bytearray(raw)
    out[_SAV_DATE] = f"{when.day:02d} {_MONTHS[when.month - 1]} {when.year % 100:02d}".encode("ascii")
    out[_SAV_TIME] = f"{when:%H:%M:%S}".encode("ascii")
    return bytes(out)


def _stamp_dta(raw: bytes, when: dt.datetime) -> bytes:
    from pipeline.errors import PipelineError

    at = raw.find(_DTA_TIMESTAMP, 0, 1024)
    start = at + len(_DTA_TIMESTAMP)
    if at < 0 or raw[start] != 17 or raw[start + 18 : start + 30] != b"</timestamp>":
        raise PipelineError("export: the .dta that pyreadstat wrote has no 17-character <timestamp> in its header", hint="report it with the pyreadstat version")
    text = f"{when.day:02d} {_MONTHS[when.month - 1]} {when.year:04d} {when:%H:%M}".encode("ascii")
    return raw[: start + 1] + text + raw[start + 18 :]


def sav_bytes(data: AnalysisFile, *, timestamp: dt.datetime | None = None) -> bytes:
    """The analysis file as SPSS ``.sav`` (compressed, with user-missing codes), created at ``timestamp``."""
    import pyreadstat

    from pipeline.exporters import file_timestamp

    labels = {c: _cut(v, SAV_LABEL_MAX) for c, v in data.labels.items()}
    raw = _write(
        lambda p: pyreadstat.write_sav(
            data.frame,
            p,
            file_label=data.file_label,
            column_labels=labels,
            compress=True,
            note=textwrap.wrap(data.note, SAV_NOTE_WIDTH) or None,
            variable_value_labels=data.value_labels,
            missing_ranges=data.missing,
        ),
        ".sav",
    )
    return _stamp_sav(raw, timestamp or file_timestamp())


def dta_bytes(data: AnalysisFile, *, timestamp: dt.datetime | None = None) -> bytes:
    """The analysis file as Stata ``.dta`` (version 15, UTF-8), created at ``timestamp``."""
    import pyreadstat

    from pipeline.exporters import file_timestamp

    labels = {c: _cut(v, DTA_LABEL_MAX) for c, v in data.labels.items()}
    value_labels = {
        c: {int(k): v for k, v in vl.items()}
        for c, vl in data.value_labels.items()
        if all(float(k).is_integer() for k in vl)
    }
    raw = _write(
        lambda p: pyreadstat.write_dta(
            data.frame,
            p,
            file_label=_cut(data.file_label, DTA_LABEL_MAX) or "",
            column_labels=labels,
            version=15,
            variable_value_labels=value_labels,
        ),
        ".dta",
    )
    return _stamp_dta(raw, timestamp or file_timestamp())

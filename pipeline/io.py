"""Reading survey files into polars with their codebook, and writing artifacts atomically.

``read_survey`` reads SPSS ``.sav``/``.zsav``, Stata ``.dta``, SAS ``.sas7bdat`` and
``.xpt``, ``.csv`` and ``.parquet`` into a polars DataFrame (pyreadstat reads straight into
polars, no pandas), together with a :class:`Codebook`: variable labels, value labels and
user-missing declarations. User-missing codes are kept as values, so that the clean stage can
give each missing value its reason (don't know, refused, ...); the codebook says which codes
they are.

The ``write_*`` helpers write through a temporary file in the target folder and
``os.replace`` it into place, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import DataError

if TYPE_CHECKING:
    import polars as pl

Code = int | float | str

SURVEY_FORMATS = (".sav", ".zsav", ".dta", ".sas7bdat", ".xpt", ".csv", ".parquet")


@dataclass(frozen=True)
class VariableInfo:
    """What the codebook knows about one variable.

    Attributes
    ----------
    name : str
    label : str or None
        The variable label (the question wording or a short description).
    value_labels : dict
        Code -> label, e.g. ``{1: 'Strongly agree', 8: "Don't know"}``.
    missing_values : tuple
        Discrete user-missing codes (SPSS ``MISSING VALUES``).
    missing_ranges : tuple of (lo, hi)
        User-missing ranges (SPSS ``MISSING VALUES x (LO THRU HI)``).
    format : str or None
        The file's display format (``F6.0``, ``A16``, ``DATE11``, ...).
    missing_reasons : dict
        Missing code -> reason (``dont_know``, ``refused``, ``user_missing``), set by cleaning.
    """

    name: str
    label: str | None = None
    value_labels: Mapping[Code, str] = field(default_factory=dict)
    missing_values: tuple[Code, ...] = ()
    missing_ranges: tuple[tuple[float, float], ...] = ()
    format: str | None = None
    missing_reasons: Mapping[Code, str] = field(default_factory=dict)

    def is_user_missing(self, code: Code) -> bool:
        """Whether ``code`` is declared user-missing for this variable."""
        if code in self.missing_values:
            return True
        if isinstance(code, str):
            return False
        return any(lo <= code <= hi for lo, hi in self.missing_ranges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "value_labels": [[k, v] for k, v in self.value_labels.items()],
            "missing_values": list(self.missing_values),
            "missing_ranges": [list(r) for r in self.missing_ranges],
            "format": self.format,
            "missing_reasons": [[k, v] for k, v in self.missing_reasons.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariableInfo:
        return cls(
            name=d["name"],
            label=d.get("label"),
            value_labels={_as_code(k): v for k, v in d.get("value_labels", [])},
            missing_values=tuple(_as_code(v) for v in d.get("missing_values", [])),
            missing_ranges=tuple((float(lo), float(hi)) for lo, hi in d.get("missing_ranges", [])),
            format=d.get("format"),
            missing_reasons={_as_code(k): v for k, v in d.get("missing_reasons", [])},
        )


@dataclass(frozen=True)
class Codebook:
    """Variable labels, value labels and missing-value declarations of a data set.

    The codebook travels with the data from stage to stage (``codebook.json`` next to each
    artifact). It is immutable; :meth:`drop`, :meth:`with_variable` return new codebooks.
    """

    variables: Mapping[str, VariableInfo] = field(default_factory=dict)
    file_label: str | None = None
    source: str | None = None

    def __contains__(self, name: str) -> bool:
        return name in self.variables

    def get(self, name: str) -> VariableInfo:
        """The variable's info; an empty one for a variable the file did not describe."""
        return self.variables.get(name) or VariableInfo(name=name)

    def label_of(self, name: str, code: Any) -> str:
        """The value label of ``code`` in ``name``, or the code as text when unlabelled."""
        labels = self.get(name).value_labels
        if code in labels:
            return labels[code]
        if isinstance(code, float) and code.is_integer() and int(code) in labels:
            return labels[int(code)]
        if code is None:
            return ""
        if isinstance(code, float) and code.is_integer():
            return str(int(code))
        return str(code)

    def drop(self, names: Iterator[str] | list[str] | tuple[str, ...] | set[str]) -> Codebook:
        gone = set(names)
        return replace(self, variables={k: v for k, v in self.variables.items() if k not in gone})

    def rename(self, mapping: Mapping[str, str]) -> Codebook:
        """Rename variables (old -> new), keeping their order."""
        return replace(
            self,
            variables={mapping.get(k, k): replace(v, name=mapping.get(k, k)) for k, v in self.variables.items()},
        )

    def with_variable(self, info: VariableInfo) -> Codebook:
        return replace(self, variables={**self.variables, info.name: info})

    def to_json(self) -> str:
        return json.dumps(
            {
                "file_label": self.file_label,
                "source": self.source,
                "variables": [v.to_dict() for v in self.variables.values()],
            },
            indent=1,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Codebook:
        d = json.loads(text)
        infos = [VariableInfo.from_dict(v) for v in d.get("variables", [])]
        return cls(
            variables={v.name: v for v in infos},
            file_label=d.get("file_label"),
            source=d.get("source"),
        )


def _as_code(value: Any) -> Code:
    """Normalise a code: whole floats become ints so that 1.0 and 1 are one key."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def read_survey(path: Path | str) -> tuple[pl.DataFrame, Codebook]:
    """Read a survey file into polars with its codebook.

    Parameters
    ----------
    path : path-like
        ``.sav``, ``.zsav``, ``.dta``, ``.sas7bdat``, ``.xpt``, ``.csv`` or ``.parquet``.

    Returns
    -------
    (polars.DataFrame, Codebook)
        Numeric columns whose values are all whole numbers come back as ``Int64``; user-missing
        codes are kept as values (the codebook declares them).

    Raises
    ------
    DataError
        The file is missing, has an unsupported extension, or cannot be parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"raw file not found: {path}",
            hint="check the wave's 'raw' path in the config (paths are relative to the config file)",
        )
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise DataError(
            f"{path}: unsupported file type {suffix!r}",
            hint=f"supported: {', '.join(SURVEY_FORMATS)}",
        )
    try:
        frame, codebook = reader(path)
    except DataError:
        raise
    except Exception as exc:  # a library's parse error, wrapped at the boundary
        raise DataError(f"{path}: cannot read the file ({type(exc).__name__}: {exc})") from exc
    return _integer_codes(frame), replace(codebook, source=str(path))


def _read_readstat(path: Path) -> tuple[pl.DataFrame, Codebook]:
    import pyreadstat

    suffix = path.suffix.lower()
    if suffix in (".sav", ".zsav"):
        frame, meta = pyreadstat.read_sav(str(path), output_format="polars", user_missing=True)
    elif suffix == ".dta":
        frame, meta = pyreadstat.read_dta(str(path), output_format="polars", user_missing=True)
    elif suffix == ".sas7bdat":
        frame, meta = pyreadstat.read_sas7bdat(str(path), output_format="polars", user_missing=True)
    else:
        frame, meta = pyreadstat.read_xport(str(path), output_format="polars")
    return frame, _codebook_from_meta(meta)


def _codebook_from_meta(meta: Any) -> Codebook:
    labels = dict(getattr(meta, "column_names_to_labels", {}) or {})
    value_labels = getattr(meta, "variable_value_labels", {}) or {}
    ranges = getattr(meta, "missing_ranges", {}) or {}
    user_missing = getattr(meta, "missing_user_values", {}) or {}
    formats = getattr(meta, "original_variable_types", {}) or {}
    infos: dict[str, VariableInfo] = {}
    for name in meta.column_names:
        discrete: list[Code] = []
        spans: list[tuple[float, float]] = []
        for r in ranges.get(name, []):
            lo, hi = r["lo"], r["hi"]
            if lo == hi:
                discrete.append(_as_code(lo))
            else:
                spans.append((float(lo), float(hi)))
        discrete.extend(_as_code(v) for v in user_missing.get(name, []) if _as_code(v) not in discrete)
        infos[name] = VariableInfo(
            name=name,
            label=labels.get(name) or None,
            value_labels={_as_code(k): str(v) for k, v in value_labels.get(name, {}).items()},
            missing_values=tuple(discrete),
            missing_ranges=tuple(spans),
            format=formats.get(name),
        )
    return Codebook(variables=infos, file_label=getattr(meta, "file_label", None) or None)


def _read_csv(path: Path) -> tuple[pl.DataFrame, Codebook]:
    import polars as pl

    _check_csv_header(path)
    frame = pl.read_csv(path, infer_schema_length=None, try_parse_dates=True)
    return frame, _sidecar_codebook(path, frame.columns)


def _check_csv_header(path: Path) -> None:
    """Refuse a header that names a column twice (polars would rename the second ``X_duplicated_0``)."""
    import csv

    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = next(csv.reader(fh), [])
    seen: dict[str, int] = {}
    for i, name in enumerate(header, start=1):
        if name in seen:
            raise DataError(
                f"{path}: column {name} appears twice in the header (columns {seen[name]} and {i}); "
                "expected every column name once",
                hint=f"rename or drop one of the two {name} columns in the delivery; the pipeline does not guess which one is meant",
            )
        seen[name] = i


def _read_parquet(path: Path) -> tuple[pl.DataFrame, Codebook]:
    import polars as pl

    frame = pl.read_parquet(path)
    return frame, _sidecar_codebook(path, frame.columns)


def _sidecar_codebook(path: Path, columns: list[str]) -> Codebook:
    """A codebook for formats without one: ``<file>.codebook.json`` beside it, if present."""
    sidecar = path.with_name(path.name + ".codebook.json")
    if sidecar.is_file():
        return Codebook.from_json(sidecar.read_text(encoding="utf-8"))
    return Codebook(variables={c: VariableInfo(name=c) for c in columns})


_READERS: dict[str, Callable[[Path], tuple[Any, Codebook]]] = {
    ".sav": _read_readstat,
    ".zsav": _read_readstat,
    ".dta": _read_readstat,
    ".sas7bdat": _read_readstat,
    ".xpt": _read_readstat,
    ".csv": _read_csv,
    ".parquet": _read_parquet,
}


def _integer_codes(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast float columns holding only whole numbers to Int64 (SPSS stores codes as doubles)."""
    import polars as pl

    casts = []
    for name, dtype in frame.schema.items():
        if dtype not in (pl.Float64, pl.Float32):
            continue
        col = frame.get_column(name).drop_nulls()
        if col.len() == 0:
            continue
        if bool(((col % 1) == 0).all()) and float(col.abs().max()) < 2**53:
            casts.append(pl.col(name).cast(pl.Int64))
    return frame.with_columns(casts) if casts else frame


# ----------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it into place atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target


def write_json(target: Path, obj: Any) -> Path:
    return write_text(target, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def write_parquet(target: Path, frame: pl.DataFrame) -> Path:
    with atomic_path(target) as tmp:
        frame.write_parquet(tmp)
    return target


def write_csv(target: Path, frame: pl.DataFrame) -> Path:
    with atomic_path(target) as tmp:
        frame.write_csv(tmp, float_precision=None)
    return target


def _json_default(obj: Any) -> Any:
    import datetime as dt

    if isinstance(obj, (dt.date, dt.datetime)):
        return obj.isoformat()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

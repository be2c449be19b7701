"""Ingest: read the wave's raw delivery into polars with its codebook; drop declared PII.

The raw file is only read. Declared identifier columns (``ingest.pii``) are removed here, so
no later stage and no output ever sees them. A cleaning rule that needs an identifier (near-duplicate
detection by phone number) gets a keyed hash of it (``ingest.hash``, HMAC-SHA256), made here
before the drop; the clean stage drops the hash in turn.

The key never goes into ``outputs/``: it is ``SURVEY_PIPELINE_HASH_KEY``, else the key file
(``ingest.key_file``, by default ``keys/<study>.key`` in the project, git-ignored), created with
a random key on first use. A salt stored beside the hashes would not do: phone numbers have
about 10^10 values, so anyone holding the outputs could hash them all and match (issue 10, item 12).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, DataError
from pipeline.io import Codebook, read_survey
from pipeline.stages import Reads, StageContext, StageOutput

if TYPE_CHECKING:
    import polars as pl

    from pipeline.config import IngestConfig, StudyConfig


def ingest(
    path: Path,
    config: IngestConfig,
    *,
    key: bytes = b"",
    wave_index: int = 0,
    rename: Mapping[str, str] | None = None,
    labels: Mapping[str, Mapping[Any, str]] | None = None,
    not_asked: Sequence[str] = (),
    numeric: Mapping[str, str] | None = None,
) -> tuple[pl.DataFrame, Codebook, dict]:
    """Read ``path``, harmonise names and labels, keep keyed hashes, drop the PII columns.

    Parameters
    ----------
    key : bytes
        The HMAC key of the ``ingest.hash`` columns (see :func:`hash_key`).
    rename : mapping, optional
        The wave's variable names -> the study's names (``waves[].rename``), applied first.
    labels : mapping, optional
        Value labels replacing the file's for some variables (``waves[].labels``).
    not_asked : sequence of str
        Study variables the wave did not ask (``waves[].not_asked``): an error if the file has one.
    numeric : mapping, optional
        Variables the config uses as numeric codes -> the config key that does
        (:func:`numeric_needs`): a text column among them is an error, as is a text column whose
        codebook gives numeric value labels or missing codes.

    Returns
    -------
    (frame, codebook, diagnostics)
    """
    import polars as pl

    frame, codebook = read_survey(path)
    if frame.height == 0:
        raise DataError(
            f"{path}: the file has no rows ({frame.width} columns, 0 respondents); expected at least one interview",
            hint="check the delivery (an empty export?) and the wave's 'raw' path in the config",
        )
    if rename:
        absent = [k for k in rename if k not in frame.columns]
        clash = [v for k, v in rename.items() if v in frame.columns and v not in rename]
        if absent or clash:
            raise ConfigError(
                f"waves[{wave_index}].rename: cannot rename in {path}",
                problems=[f"waves[{wave_index}].rename.{k}: {k} is not in the file" for k in absent]
                + [f"waves[{wave_index}].rename: {v} is already a column of the file" for v in clash],
            )
        frame = frame.rename(dict(rename))
        codebook = codebook.rename(rename)
    asked = sorted(set(not_asked or ()) & set(frame.columns))
    if asked:
        raise ConfigError(
            f"waves[{wave_index}].not_asked: {', '.join(asked)} {'is' if len(asked) == 1 else 'are'} in {path}",
            hint="remove them from not_asked (the wave has them), or rename them with waves[].rename",
        )
    for name, mapping in (labels or {}).items():
        if name not in frame.columns:
            raise ConfigError(f"waves[{wave_index}].labels.{name}: {name} is not in {path} (after renaming)")
        codebook = codebook.with_variable(replace(codebook.get(name), value_labels=dict(mapping)))
    missing = [c for c in (*config.pii, *config.hash, *([config.id] if config.id else [])) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"ingest: column(s) {', '.join(missing)} named in the config are not in {path}",
            hint=f"columns in the file: {', '.join(frame.columns[:40])}{' ...' if frame.width > 40 else ''}",
        )
    check_numeric_columns(frame, codebook, path, numeric or {}, renamed={v: k for k, v in (rename or {}).items()})
    if config.hash:
        frame = frame.with_columns(
            [keyed_hash(pl.col(src), key).alias(dst) for src, dst in config.hash.items()]
        )
    frame = frame.drop(list(config.pii))
    codebook = codebook.drop(config.pii)
    frame = frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("raw_row"))
    diagnostics = {
        "raw_rows": frame.height,
        "columns": frame.width - 1,
        "pii_dropped": list(config.pii),
        "pii_hashed": dict(config.hash),
        "file_label": codebook.file_label,
    }
    return frame, codebook, diagnostics


def numeric_needs(config: StudyConfig, wave_id: str) -> dict[str, str]:
    """The variables the config uses with numeric codes (every config code is a number), each
    with the first config key that does: a text column among them cannot work."""
    wave = config.wave(wave_id)
    index = [w.id for w in config.waves].index(wave_id)
    clean = config.clean_for(wave_id)
    needs: dict[str, str] = {}

    def add(names: Sequence[str], key: str) -> None:
        for name in names:
            needs.setdefault(name, key)

    for name in clean.valid.ranges:
        add([name], f"clean.valid.ranges.{name}")
    if clean.drop_partials is not None:
        add([clean.drop_partials.variable], "clean.drop_partials.variable")
    for i, r in enumerate(wave.recodes):
        add(r.variables, f"waves[{index}].recodes[{i}].map")
    for i, r in enumerate(clean.recodes):
        add(r.variables, f"clean.recodes[{i}].map")
    for i, m in enumerate(wave.missing_also):
        add(m.variables, f"waves[{index}].missing_also[{i}].codes")
    for i, m in enumerate(clean.missing.also):
        add(m.variables, f"clean.missing.also[{i}].codes")
    if clean.speeders is not None:
        add([clean.speeders.duration], "clean.speeders.duration")
    calibration = config.weight.calibration
    if calibration is not None:
        key, section = calibration
        add(getattr(section, "variables", None) or [section.variable], f"weight.{key}.variables")  # type: ignore[union-attr]
    gone = set(wave.not_asked)
    for i, spec in enumerate(config.estimates):
        d = spec.difference
        if d is not None:  # a difference reads its estimates' columns; between domains, codes of its domain variable
            if d.domain is not None and d.domain not in gone and any(isinstance(c, int) for c in (d.a, d.b)):
                add([d.domain], f"estimates[{i}].difference.a")
        elif spec.levels is not None and any(isinstance(c, int) for c in spec.levels) and spec.variable not in gone:
            add([spec.variable], f"estimates[{i}].levels")  # numeric codes; text codes ("Yes") need none
        elif spec.levels is None and spec.statistic != "proportion":  # a mean, total, ratio or quantile
            add([v for v in spec.variables if v not in gone], f"estimates[{i}].{spec.key}")
    return needs


def check_numeric_columns(
    frame: pl.DataFrame, codebook: Codebook, path: Path, numeric: Mapping[str, str], *, renamed: Mapping[str, str] | None = None
) -> None:
    """Refuse a text column where numbers are needed: one the config uses with numeric codes
    (``numeric``: variable -> config key), or one whose codebook gives numeric codes.

    The error names the file, the variable, the key and the first offending value with its row
    (a CSV column with one word among numbers is read as text).
    """
    import polars as pl

    for name in frame.columns:
        if frame.schema[name] != pl.String or frame.get_column(name).null_count() == frame.height:
            continue  # numbers, or no value at all
        key = numeric.get(name)
        if key is None:
            info = codebook.get(name)
            coded = [c for c in (*info.value_labels, *info.missing_values) if not isinstance(c, str)]
            if not coded:
                continue
            key = "its codebook (numeric value labels or missing codes)"
        col = frame.get_column(name)
        parsed = col.str.strip_chars().cast(pl.Float64, strict=False)
        bad = col.is_not_null() & parsed.is_null()
        rows = bad.arg_true()
        if rows.len():
            first = int(rows[0])
            found = f'row {first + 1} has "{col[first]}" ({rows.len():,} value(s) of {col.drop_nulls().len():,} are not numbers)'
            hint = (f"deliver {name} as numbers only: a word such as \"{col[first]}\" must be a numeric code, "
                    "declared missing with clean.missing.also if it means no answer")
            if parsed.is_null().all() and key.startswith("estimates[") and not key.endswith(".levels"):  # every value a word: a categorical variable
                hint += f"; if {name} is categorical, ask for the shares of its answers with proportion: {name}"
        else:
            first = int(col.is_not_null().arg_true()[0])
            found = f'its values are numbers stored as text (row {first + 1}: "{col[first]}")'
            hint = f"deliver {name} as a numeric column (in a CSV: numbers without quotes or spaces)"
        column = f"{renamed[name]} ({name} after waves[].rename)" if renamed and name in renamed else name
        raise DataError(f"{path}: column {column} is text, but {key} needs numbers; {found}", hint=hint)


#: 32 hex characters (128 bits) of the HMAC: no collision among a survey's phone numbers
HASH_CHARS = 32
#: the environment variable that holds the key (it wins over the key file)
KEY_ENV = "SURVEY_PIPELINE_HASH_KEY"
#: a shorter key could itself be guessed; the generated key has 64 hex characters (256 bits)
MIN_KEY_CHARS = 32


def keyed_hash(expr: pl.Expr, key: bytes) -> pl.Expr:
    """HMAC-SHA256(key, value), its first 32 hex characters; null stays null.

    Without the key, the hash of a known value cannot be recomputed, so a small value space
    (phone numbers) cannot be searched from the outputs alone.
    """
    import hashlib
    import hmac

    import polars as pl

    def digest(v: str) -> str:
        return hmac.new(key, v.encode(), hashlib.sha256).hexdigest()[:HASH_CHARS]

    return expr.cast(pl.String).map_elements(digest, return_dtype=pl.String)


def key_file_path(config: StudyConfig) -> Path:
    """Where the hash key is kept: ``ingest.key_file`` (relative to the config), else ``keys/<study>.key``.

    Raises ConfigError when the file would be inside the outputs folder (it would travel with them).
    """
    configured = config.ingest.key_file
    path = config.resolve(configured) if configured is not None else config.root / "keys" / f"{config.study}.key"
    outputs = config.outputs.parent.resolve()
    if path.resolve().is_relative_to(outputs):
        raise ConfigError(
            f"{config.path}: ingest.key_file: {configured} is inside the outputs folder {outputs}; "
            "the key must never be stored with the hashes it protects",
            hint=f"ingest.key_file: keys/{config.study}.key (the default; keys/ is git-ignored), "
            f"or set {KEY_ENV}",
        )
    return path


def hash_key(config: StudyConfig, *, create: bool = False) -> tuple[bytes | None, Path | None]:
    """The key of the ``ingest.hash`` columns and the file it was created in (None if not created now).

    ``SURVEY_PIPELINE_HASH_KEY`` wins; else the key file, created with 32 random bytes (64 hex
    characters, mode 0600) when ``create`` is true. Returns ``(None, None)`` when there is no key
    yet and ``create`` is false.
    """
    import os
    import secrets

    if os.environ.get("SURVEY_PIPELINE_SALT"):
        raise ConfigError(
            "SURVEY_PIPELINE_SALT is no longer read: identifier hashes are keyed (HMAC) with "
            f"{KEY_ENV} or the key file (ingest.key_file)",
            hint=f"rename the variable to {KEY_ENV} (at least {MIN_KEY_CHARS} characters), or unset it "
            f"to use the key file {key_file_path(config)}",
        )
    env = os.environ.get(KEY_ENV)
    if env is not None:
        return _checked_key(env.strip(), KEY_ENV), None
    path = key_file_path(config)
    created = None
    if not path.is_file():
        if not create:
            return None, None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secrets.token_hex(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # never replaces a key another process created meanwhile
            created = path
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return _checked_key(path.read_text(encoding="utf-8").strip(), str(path)), created


def hash_key_id(key: bytes) -> str:
    """A fingerprint of the key for the manifest (a new key makes ingest stale); reveals nothing of it."""
    import hashlib
    import hmac

    return hmac.new(key, b"survey-pipeline hash key id", hashlib.sha256).hexdigest()


def _checked_key(text: str, where: str) -> bytes:
    if len(text) < MIN_KEY_CHARS:
        raise ConfigError(
            f"{where}: the identifier hash key is {len(text)} characters long; expected at least {MIN_KEY_CHARS}",
            hint="use a random key, e.g. python -c 'import secrets; print(secrets.token_hex(32))'",
        )
    return text.encode()


READS = Reads(
    config=("study", "ingest", "waves[].rename", "waves[].labels", "waves[].not_asked"),
    files=("waves[].raw",),
)
"""The ingest settings, the wave's renames, labels and not-asked variables, its raw file (and the hash key)."""


def run(ctx: StageContext) -> StageOutput:
    wave = ctx.wave
    path = ctx.config.resolve(wave.raw)
    index = ctx.wave_index
    key = hash_key(ctx.config, create=True)[0] if ctx.config.ingest.hash else b""
    frame, codebook, diagnostics = ingest(
        path, ctx.config.ingest, key=key or b"", wave_index=index, rename=wave.rename, labels=wave.labels, not_asked=wave.not_asked,
    )
    # the raw file relative to the project: the same codebook bytes wherever the project lives
    root = ctx.config.root.resolve()
    source = path.resolve()
    codebook = replace(codebook, source=source.relative_to(root).as_posix() if source.is_relative_to(root) else str(path))
    return StageOutput(
        files={"ingest/data.parquet": frame, "ingest/codebook.json": codebook.to_json()},
        diagnostics=diagnostics,
        rows=frame.height,
    )

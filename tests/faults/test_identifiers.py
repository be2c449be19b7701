"""Issue 10, item 12: a salted hash next to its salt is not private.

``ingest.hash`` keeps a keyed hash (HMAC-SHA256) of an identifier for the near-duplicate rule;
the key lives outside ``outputs/`` (``keys/<study>.key``, git-ignored, or
``SURVEY_PIPELINE_HASH_KEY``), so the outputs folder alone does not let anyone recompute the
hash of a known phone number, and so cannot be brute-forced over the ~10^10 phone numbers.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import polars as pl
from pipeline.cli import main

HASH_CHARS = 32  # the hash column keeps 32 hex characters (128 bits)


def _with_hash(cfg: Path, *, extra: str = "") -> None:
    text = cfg.read_text().replace(
        "  pii: [PHONE]\n",
        "  pii: [PHONE]\n  hash: {PHONE: phone_key}\n" + extra,
    )
    text = text.replace("  drop_duplicates: {id: RESPID}\n", "  drop_duplicates: {id: RESPID}\n  near_duplicates: {key: phone_key}\n")
    cfg.write_text(text)


def _reinterview(raw: Path) -> None:
    """Give row 31 (RESPID 31) the phone number of row 30: a near duplicate under another id."""
    import pyreadstat

    import polars as pl

    frame, meta = pyreadstat.read_sav(str(raw), user_missing=True, output_format="polars")
    phones = frame.get_column("PHONE").to_list()
    phones[30] = phones[29]
    frame = frame.with_columns(pl.Series("PHONE", phones))
    pyreadstat.write_sav(
        frame, str(raw), column_labels=dict(zip(meta.column_names, meta.column_labels)),
        variable_value_labels=meta.variable_value_labels, missing_ranges=meta.missing_ranges,
    )


def _candidates(outputs: Path) -> set[bytes]:
    """Every secret an attacker holding outputs/ could try: each file, each line, each word."""
    found: set[bytes] = {b""}
    for p in outputs.rglob("*"):
        if not p.is_file():
            continue
        data = p.read_bytes()
        found.add(data)
        found.add(data.strip())
        for line in data.splitlines():
            found.add(line.strip())
            found.update(line.split())
    return found


def _hashes_with(secret: bytes, value: bytes) -> set[str]:
    return {
        hashlib.sha256(secret + value).hexdigest()[:HASH_CHARS],
        hashlib.sha256(secret + b"|" + value).hexdigest()[:HASH_CHARS],
        hmac.new(secret, value, hashlib.sha256).hexdigest()[:HASH_CHARS],
    }


def test_outputs_alone_cannot_recompute_a_phone_hash(tiny_project, capsys):
    cfg = tiny_project
    _with_hash(cfg)
    project = cfg.parent.parent
    outputs = project / "outputs" / "tiny"
    assert main(["run", str(cfg)]) == 0
    _, err = capsys.readouterr()
    key_file = project / "keys" / "tiny.key"
    assert f"created the identifier hash key {key_file}" in err
    data = pl.read_parquet(outputs / "w1" / "ingest" / "data.parquet")
    stored = data.filter(pl.col("raw_row") == 1).get_column("phone_key").item()
    phone = b"555-0000"  # row 1's number (tests/tinystudy.py), known to the attacker
    # the hash is the keyed hash of the number, and needs the key outside outputs/
    key = key_file.read_bytes().strip()
    assert stored == hmac.new(key, phone, hashlib.sha256).hexdigest()[:HASH_CHARS]
    assert not key_file.resolve().is_relative_to(outputs.resolve())
    # brute force with whatever outputs/ holds: no candidate secret reproduces the hash
    for secret in _candidates(outputs):
        assert stored not in _hashes_with(secret, phone), f"outputs/ holds the hash secret ({secret[:40]!r})"
    for p in outputs.rglob("*"):
        if p.is_file():
            assert key not in p.read_bytes(), p
    assert not (outputs / ".salt").exists()


def test_near_duplicates_still_found_with_the_keyed_hash(tiny_project):
    cfg = tiny_project
    _with_hash(cfg)
    _reinterview(cfg.parent.parent / "raw" / "tiny.sav")
    assert main(["run", str(cfg), "--quiet"]) == 0
    outputs = cfg.parent.parent / "outputs" / "tiny" / "w1"
    quarantine = pl.read_parquet(outputs / "clean" / "quarantine.parquet")
    near = quarantine.filter(pl.col("quarantine_reason").cast(pl.String).str.contains("near_duplicate"))
    assert near.get_column("RESPID").to_list() == [31]
    # the hash stops at the clean stage
    assert "phone_key" not in pl.read_parquet(outputs / "clean" / "data.parquet").columns


def test_old_salt_file_in_outputs_is_removed(tiny_project, capsys):
    cfg = tiny_project
    _with_hash(cfg)
    outputs = cfg.parent.parent / "outputs" / "tiny"
    outputs.mkdir(parents=True)
    (outputs / ".salt").write_text("0123456789abcdef")
    assert main(["run", str(cfg)]) == 0
    _, err = capsys.readouterr()
    assert not (outputs / ".salt").exists()
    assert f"removed {outputs / '.salt'}" in err


def test_key_from_the_environment(tiny_project, monkeypatch, capsys):
    cfg = tiny_project
    _with_hash(cfg)
    key = "k" * 8 + "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("SURVEY_PIPELINE_HASH_KEY", key)
    assert main(["run", str(cfg), "--quiet"]) == 0
    project = cfg.parent.parent
    assert not (project / "keys").exists()
    data = pl.read_parquet(project / "outputs" / "tiny" / "w1" / "ingest" / "data.parquet")
    stored = data.filter(pl.col("raw_row") == 1).get_column("phone_key").item()
    assert stored == hmac.new(key.encode(), b"555-0000", hashlib.sha256).hexdigest()[:HASH_CHARS]
    # another key makes ingest stale (and changes every hash)
    capsys.readouterr()
    monkeypatch.setenv("SURVEY_PIPELINE_HASH_KEY", key[::-1])
    assert main(["status", str(cfg)]) == 0
    out, _ = capsys.readouterr()
    assert "[w1] ingest    stale  (hash key changed)" in out


def test_a_short_key_is_refused(tiny_project, monkeypatch, capsys):
    cfg = tiny_project
    _with_hash(cfg)
    monkeypatch.setenv("SURVEY_PIPELINE_HASH_KEY", "short")
    assert main(["run", str(cfg)]) == 2
    _, err = capsys.readouterr()
    assert "SURVEY_PIPELINE_HASH_KEY: the identifier hash key is 5 characters long; expected at least 32" in err
    assert "Traceback" not in err


def test_old_salt_variable_is_refused(tiny_project, monkeypatch, capsys):
    cfg = tiny_project
    _with_hash(cfg)
    monkeypatch.setenv("SURVEY_PIPELINE_SALT", "x" * 40)
    assert main(["run", str(cfg)]) == 2
    _, err = capsys.readouterr()
    assert "SURVEY_PIPELINE_SALT is no longer read" in err and "SURVEY_PIPELINE_HASH_KEY" in err


def test_key_file_inside_outputs_is_refused(tiny_project, capsys):
    cfg = tiny_project
    _with_hash(cfg, extra="  key_file: ../outputs/tiny/phone.key\n")
    assert main(["run", str(cfg)]) == 2
    _, err = capsys.readouterr()
    assert "ingest.key_file: ../outputs/tiny/phone.key is inside the outputs folder" in err
    assert "ingest.key_file: keys/tiny.key" in err  # the hint in the YAML's spelling
    assert not (cfg.parent.parent / "outputs" / "tiny" / "phone.key").exists()


def test_key_file_named_in_the_config(tiny_project):
    cfg = tiny_project
    _with_hash(cfg, extra="  key_file: ../secrets/tiny-phone.key\n")
    assert main(["run", str(cfg), "--quiet"]) == 0
    key_file = cfg.parent.parent / "secrets" / "tiny-phone.key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o077) == 0  # readable by its owner only


def test_key_folder_is_git_ignored():
    root = Path(__file__).resolve().parents[2]
    assert "keys/" in (root / ".gitignore").read_text().splitlines()

"""``survey-pipeline init RAW`` (issue 14, item 1): a commented starter config that validates and runs.

``init`` runs on the demo's raw file and on files it has never seen (an SPSS and a Stata file
built here with pyreadstat: value labels in Spanish and English, user-missing codes, a weight,
strata, clusters, an id and a name column; a parquet and a CSV without codebooks), then
``validate`` and ``run`` run on what it wrote (exit 0). On the unseen .sav the starter config's
share (overall and by region) and mean are checked against R ``survey`` 4.1-1:
``tests/reference/init_unseen.R`` (``Rscript tests/reference/init_unseen.R`` from the project
root) builds the same 240 rows and writes ``tests/reference/init_unseen_expected.csv``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pyreadstat
import pytest
import yaml

from pipeline.cli import main

ROOT = Path(__file__).resolve().parent.parent


def unseen_frame(n: int = 240) -> pl.DataFrame:
    """A small stratified cluster sample: 4 strata x 6 PSUs x 10 respondents."""
    i = pl.int_range(0, n, eager=True)
    return pl.DataFrame(
        {
            "caseid": (i * 7 + 1001),
            "nombre": pl.Series([f"Persona {k}" for k in range(n)]),
            "region": (i % 3 + 1),
            "estrato": (i // 60 + 1),
            "psu": (i // 10 % 6 + 1),
            "confianza": pl.Series([[1, 2, 3, 1, 2, 8, 9, 1, 2, 3][k % 10] for k in range(n)]),
            "empleo": pl.Series([[1, 2, 2, 1, 7, 1, 2, 1, 9, 2, 1, 1][k % 12] for k in range(n)]),
            "ingreso": (i * 37 % 500 + 100).cast(pl.Float64),
            "wt_final": (1.0 + (i % 5) * 0.25),
        }
    )


LABELS = {
    "region": {1: "Norte", 2: "Centro", 3: "Sur"},
    "confianza": {1: "Mucha", 2: "Algo", 3: "Nada", 8: "No sabe", 9: "Rehusó"},
    "empleo": {1: "Employed", 2: "Not employed", 7: "Not applicable", 9: "Refused"},
}


def write_sav(path: Path) -> Path:
    pyreadstat.write_sav(
        unseen_frame(), str(path), column_labels=["Case id", "Nombre", "Región", "Estrato", "PSU",
                                                  "¿Confía en la policía?", "Employment", "Ingreso mensual", "Weight"],
        variable_value_labels=LABELS, missing_ranges={"confianza": [8, 9], "empleo": [7, 9]},
    )
    return path


def init_validate_run(raw: Path, capsys, *extra: str) -> tuple[Path, str]:
    out = raw.parent.parent / "configs" / f"{raw.stem}.yaml" if raw.parent.name == "raw" else raw.with_suffix(".yaml")
    assert main(["init", str(raw), *extra]) == 0
    said = capsys.readouterr().out
    assert out.is_file() and "wrote" in said and "validate" in said
    assert main(["validate", str(out)]) == 0
    assert "config and raw files OK" in capsys.readouterr().out
    assert main(["run", "--quiet", str(out)]) == 0
    capsys.readouterr()
    return out, out.read_text(encoding="utf-8")


def estimates(cfg: Path) -> pl.DataFrame:
    conf = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    project = cfg.parent.parent if cfg.parent.name == "configs" else cfg.parent
    files = sorted(project.glob(f"outputs/{conf['study']}/{conf['waves'][0]['id']}/estimates.csv"))
    assert len(files) == 1
    return pl.read_csv(files[0])


def test_init_on_the_demo_raw_file(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    raw = shutil.copy(ROOT / "raw" / "insecure_communities_2012.sav", tmp_path / "raw")
    cfg, text = init_validate_run(Path(raw), capsys)
    assert cfg == tmp_path / "configs" / "insecure_communities_2012.yaml"
    conf = yaml.safe_load(text)
    assert conf["waves"] == [{"id": "2012", "raw": "../raw/insecure_communities_2012.sav"}]
    assert conf["ingest"]["id"] == "RESPID" and conf["ingest"]["pii"] == ["PHONE_HASH"]
    assert "NOT unique" in text and conf["clean"]["drop_duplicates"] == {"id": "RESPID"}  # the demo repeats 12 ids
    assert conf["clean"]["missing"] == {"dont_know": [8, 98], "refused": [9, 99]}
    assert "weights" not in conf["design"] and "no weight column found" in text
    kinds = {next(k for k in ("proportion", "distribution", "mean", "quantile", "total") if k in e) for e in conf["estimates"]}
    assert kinds == {"proportion", "distribution", "mean", "quantile", "total"}
    est = estimates(cfg)
    assert set(est.get_column("estimate_id")) == {e["id"] for e in conf["estimates"]}
    assert "PHONE_HASH" not in text.split("pii:")[1].split("\n", 1)[1]  # named once, in ingest.pii


def test_init_on_an_unseen_sav_then_the_commented_design(tmp_path, capsys):
    raw = write_sav(tmp_path / "encuesta_2021.sav")
    cfg, text = init_validate_run(raw, capsys)
    conf = yaml.safe_load(text)
    assert conf["study"] == "encuesta" and conf["waves"][0] == {"id": "2021", "raw": "encuesta_2021.sav"}
    assert conf["ingest"] == {"id": "caseid", "pii": ["nombre"]}
    assert "GUESS: unique and never missing" in text
    assert conf["clean"]["missing"] == {"dont_know": [8], "refused": [9]}
    assert "No sabe" in text and "Rehusó" in text and "7 'Not applicable': empleo" in text
    assert conf["design"]["weights"] == "wt_final" and "GUESS: the one weight-like column" in text
    assert "# strata: [estrato]" in text and "# ids: [psu]" in text
    by = [e for e in conf["estimates"] if "by" in e]
    assert by and all(e["by"] == [[], ["region"]] for e in by)
    prop = next(e for e in conf["estimates"] if "proportion" in e)
    assert prop == {"id": "confianza_share", "title": "¿Confía en la policía?", "proportion": "confianza", "levels": [1], "by": [[], ["region"]]}
    # the figures are R's for the design the starter config declares (weights = ~wt_final)
    ref = pl.read_csv(ROOT / "tests" / "reference" / "init_unseen_expected.csv", infer_schema_length=0)
    est = estimates(cfg)
    got = est.join(ref.select("estimate_id", "domain"), on=["estimate_id", "domain"], how="semi")
    assert got.height == ref.height == 8
    for row in ref.iter_rows(named=True):
        mine = est.filter((pl.col("estimate_id") == row["estimate_id"]) & (pl.col("domain") == row["domain"])).row(0, named=True)
        for column in ("estimate", "se", "ci_low", "ci_high"):
            assert mine[column] == pytest.approx(float(row[column]), rel=1e-9), (row["estimate_id"], row["domain"], column)
    assert "nombre" not in est.get_column("variable").to_list()

    # uncommenting the guessed strata and clusters gives a config that validates too
    designed = tmp_path / "designed.yaml"
    designed.write_text(text.replace("  # strata: [estrato]", "  strata: [estrato]").replace("  # ids: [psu]", "  ids: [psu]").replace("  # nest: true", "  nest: true").replace("study: encuesta", "study: encuesta2"), encoding="utf-8")
    assert yaml.safe_load(designed.read_text())["design"]["strata"] == ["estrato"]
    assert main(["validate", str(designed)]) == 0


def test_init_on_an_unseen_dta(tmp_path, capsys):
    raw = tmp_path / "raw" / "panel_w3.dta"
    raw.parent.mkdir()
    pyreadstat.write_dta(unseen_frame(), str(raw), variable_value_labels=LABELS)
    cfg, text = init_validate_run(raw, capsys, "--study", "panel")
    conf = yaml.safe_load(text)
    assert conf["study"] == "panel" and conf["waves"][0]["id"] == "1" and "no year in the file's name" in text
    assert conf["clean"]["missing"] == {"dont_know": [8], "refused": [9]}
    assert any("proportion" in e for e in conf["estimates"])


def test_init_on_a_parquet_and_a_csv_without_codebooks(tmp_path, capsys):
    df = unseen_frame().with_columns(
        pl.col("region").replace_strict({1: "Norte", 2: "Centro", 3: "Sur"}, return_dtype=pl.String)
    ).drop("wt_final").with_columns(telefono=pl.int_range(0, 240, eager=True) + 5550100)  # a phone number stored as a number
    df.write_parquet(tmp_path / "sondeo.parquet")
    cfg, text = init_validate_run(tmp_path / "sondeo.parquet", capsys)
    conf = yaml.safe_load(text)
    assert conf["ingest"]["pii"] == ["nombre", "telefono"] and "weights" not in conf["design"]
    assert "5550100" not in text  # names only, never an identifier's value
    prop = next(e for e in conf["estimates"] if "proportion" in e)
    assert prop == {"id": "region_share", "title": "region", "proportion": "region", "levels": ["Centro"]}  # text codes, the first in order
    assert conf["clean"]["missing"] == {"dont_know": [], "refused": []} and "no codebook: sondeo.parquet.codebook.json" in text
    # without labels 8 and 9 are numbers: the first numeric column's mean counts them (the comment says why)
    assert next(e for e in conf["estimates"] if "mean" in e)["mean"] == "confianza"
    (tmp_path / "csv").mkdir()
    df.write_csv(tmp_path / "csv" / "sondeo.csv")
    init_validate_run(tmp_path / "csv" / "sondeo.csv", capsys)


def test_init_never_overwrites(tmp_path, capsys):
    raw = write_sav(tmp_path / "encuesta.sav")
    existing = tmp_path / "mine.yaml"
    existing.write_text("study: mine\n", encoding="utf-8")
    assert main(["init", str(raw), "--out", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "mine.yaml exists; init never overwrites" in err and "--out" in err
    assert existing.read_text(encoding="utf-8") == "study: mine\n"
    assert main(["init", str(tmp_path / "nothere.sav")]) == 1
    assert "raw file not found" in capsys.readouterr().err


def test_init_on_the_api_csv_finds_its_weight_and_leaves_out_numbers_that_name_things(tmp_path, capsys):
    """raw/api_two_stage.csv, a real delivery without codebook: ``pw`` is its final weight,
    the school, district and county names are identifiers, and the school/district/county
    numbers (``snum``, ``dnum``, ``cnum``) are not measures to average."""
    (tmp_path / "raw").mkdir()
    raw = Path(shutil.copy(ROOT / "raw" / "api_two_stage.csv", tmp_path / "raw"))
    cfg, text = init_validate_run(raw, capsys)
    conf = yaml.safe_load(text)
    assert conf["design"]["weights"] == "pw" and conf["ingest"]["pii"] == ["name", "sname", "dname", "cname"]
    measured = {e.get("mean") or e.get("quantile") for e in conf["estimates"]} - {None}
    assert measured and not measured & {"snum", "dnum", "cnum", "cds"}

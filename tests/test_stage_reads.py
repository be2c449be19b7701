"""Issue 11, item 1: a stage declares what it reads (``READS``), the runner fingerprints exactly
that, and a stage that reads anything else fails.

The leaf walk changes every leaf of the demo config and of a second config (the tiny study with
two waves and the options the demo does not use, tests/readsstudy.py) to another valid value and
checks, from the fingerprints alone, that precisely the stages that declare it, and those after
them, would rerun. The recorded reads of real runs (strict views) show that every read is declared
and that every declared key is read by one of the two configs.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import shutil
import typing
from pathlib import Path

import pytest
import yaml
from readsstudy import POSTSTRATIFIED, write_extended

from pipeline import manifest as manifest_module
from pipeline.config import ConfigError, StudyConfig, load_config
from pipeline.stages import SEEN, STAGES, STUDY_STAGES, Reads, StageContext, UndeclaredRead, config_view, stage_reads

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "insecure_communities.yaml"

#: leaves the walk does not change, and why
NAMES_OUTPUTS = "names the outputs folder and the manifest's entries: a new value starts from nothing"


# ------------------------------------------------------------------------------ fingerprints of every stage


def plan(config: StudyConfig) -> dict[tuple[str, str], str]:
    """Every stage's fingerprint as a run would compute it, by (wave position or "study", stage)."""
    fps: dict[tuple[str, str], str] = {}
    for i, w in enumerate(config.waves):
        upstream = None
        for stage in STAGES:
            upstream = manifest_module.fingerprint(config, w.id, stage, upstream).value
            fps[(str(i), stage)] = upstream
    for stage in STUDY_STAGES:
        inputs = {w.id: fps[(str(i), manifest_module.study_input(stage))] for i, w in enumerate(config.waves)}
        fps[("study", stage)] = manifest_module.study_fingerprint_of(config, stage, inputs).value
    return fps


def expected_reruns(config: StudyConfig, leaf: tuple) -> set[tuple[str, str]]:
    """The stages whose READS cover ``leaf`` and those after them."""
    generic = _generic(leaf)
    waves = [str(leaf[1])] if leaf[0] == "waves" else [str(i) for i in range(len(config.waves))]
    direct = {(w, s) for s in STAGES if stage_reads(s).covers(generic) for w in waves}
    direct |= {("study", s) for s in STUDY_STAGES if stage_reads(s).covers(generic)}
    out = set(direct)
    for w, s in direct:
        if w == "study":
            continue
        out |= {(w, later) for later in STAGES[STAGES.index(s):]}
        out |= {("study", t) for t in STUDY_STAGES if STAGES.index(manifest_module.study_input(t)) >= STAGES.index(s)}
    return out


def _generic(leaf: tuple) -> str:
    """``("tables", "banners", 0, "columns")`` -> ``tables.banners[].columns``; mapping keys as names."""
    out = ""
    for part in leaf:
        if isinstance(part, int):
            out += "[]"
        else:
            out += ("." if out else "") + str(part)
    return out


# ------------------------------------------------------------------------------ the walk


def leaves(node: typing.Any, path: tuple = ()) -> typing.Iterator[tuple[tuple, typing.Any]]:
    """Every leaf of the YAML as written: scalars, lists of scalars; into mappings and lists of mappings."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*path, k))
    elif isinstance(node, list) and node and all(isinstance(v, (dict, list)) for v in node) and any(isinstance(v, dict) for v in node):
        for i, v in enumerate(node):
            yield from leaves(v, (*path, i))
    else:
        yield path, node


def candidates(path: tuple, value: typing.Any, allowed: tuple) -> list[typing.Any]:
    """Other values for a leaf, the likeliest valid first (type-aware)."""
    if allowed and isinstance(value, list):
        return ([value[:-1]] if len(value) > 1 else []) + [[*value, a] for a in allowed if a not in value]
    if allowed:
        return [a for a in allowed if a != value]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1]
    if isinstance(value, float):
        return [value * 1.1, value * 0.9, value / 2]
    if isinstance(value, str):
        if path[-1] in ("raw", "targets"):
            return ["COPY"]
        return [value + "x", "x" + value, f"({value})"]
    if isinstance(value, (dt.date, dt.datetime)):
        return [value + dt.timedelta(days=1)]
    if isinstance(value, list):
        out = []
        if len(value) > 1:
            out.append(value[:-1])
        if value:
            extra = candidates(path, value[-1], ())
            out += [[*value, e] for e in extra]
            out += [[*value[:-1], e] for e in extra]
        return out
    return []


def _literals(path: tuple) -> tuple:
    """The values a ``Literal`` leaf allows (from the config models' annotations), else ()."""
    from pydantic import BaseModel

    model: typing.Any = StudyConfig
    annotation: typing.Any = None
    for part in path:
        if isinstance(part, int):
            continue
        if model is None or not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return ()
        annotation = model.model_fields[part].annotation
        model = next((t for t in _flatten(annotation) if isinstance(t, type) and issubclass(t, BaseModel)), None)
    values: list = []
    for t in _flatten(annotation):
        if typing.get_origin(t) is typing.Literal:
            values += list(typing.get_args(t))
    return tuple(values)


def _flatten(annotation: typing.Any) -> list[typing.Any]:
    out, todo = [], [annotation]
    while todo:
        t = todo.pop()
        out.append(t)
        if typing.get_origin(t) is not typing.Literal:
            todo += [a for a in typing.get_args(t) if a is not Ellipsis]
    return out


def _set(tree: dict, path: tuple, value: typing.Any) -> None:
    node = tree
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def walk(config_path: Path) -> tuple[int, dict[str, str]]:
    """Change every leaf; check the reruns; return the number changed and the skipped leaves' reasons."""
    raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    before = load_config(config_path)
    base = plan(before)
    skipped: dict[str, str] = {}
    changed = 0
    trial = config_path.with_name("trial.yaml")
    for path, value in leaves(raw):
        key = ".".join(str(p) for p in path)
        if path in (("study",),) or (path[0] == "waves" and path[-1] == "id"):
            skipped[key] = NAMES_OUTPUTS
            continue
        reason = "no other value is valid"
        for new in candidates(path, value, _literals(path)):
            if new == "COPY":
                src = before.resolve(Path(value))
                copy_ = src.with_name("copy_" + src.name)
                shutil.copyfile(src, copy_)
                new = str(Path(value).with_name(copy_.name))
            tree = copy.deepcopy(raw)
            _set(tree, path, new)
            trial.write_text(yaml.safe_dump(tree, sort_keys=False, allow_unicode=True), encoding="utf-8")
            try:
                after = load_config(trial)
            except ConfigError as exc:
                reason = (exc.problems or [exc.message])[0]
                continue
            if after.model_dump() == before.model_dump():
                reason = "every other value means the same config"
                continue
            now = plan(after)
            reran = {k for k in base if now[k] != base[k]}
            assert reran == expected_reruns(after, path), f"{key}: {value!r} -> {new!r}"
            changed += 1
            break
        else:
            skipped[key] = reason
    return changed, skipped


@pytest.fixture
def fast_hashes(monkeypatch):
    cached = functools.lru_cache(maxsize=None)(manifest_module.sha256_file)
    monkeypatch.setattr(manifest_module, "sha256_file", cached)


def _project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "raw", tmp_path / "raw")
    (tmp_path / "configs").mkdir()
    shutil.copyfile(DEMO, tmp_path / "configs" / DEMO.name)
    return tmp_path / "configs" / DEMO.name


#: demo leaves that no other valid value exists for (the config's own checks refuse each change)
COMMON_SKIPPED = {
    "study": NAMES_OUTPUTS, "waves.0.id": NAMES_OUTPUTS, "waves.1.id": NAMES_OUTPUTS,
    "design.weights": "another name is a delivered weight the weight stage does not make (the config refuses it)",
    "tables.trends.0.by": "[[]] is the only domain list every trend estimate has ([] is refused)",
}
DEMO_SKIPPED = {
    **COMMON_SKIPPED,
    "estimates.0.id": "export.charts names it (a new id leaves the chart without its estimate)",
    "estimates.1.id": "export.charts names it",
    **{f"estimates.{i}.id": "tables.banners[0].estimates names it" for i in (2, 3, 4, 7, 8)},
    "estimates.10.difference.of": "another id names no estimate (the config refuses it)",
    "estimates.10.difference.domain": "the compared estimate is estimated by no other domain variable (the config refuses it)",
}
EXTENDED_SKIPPED = {
    **COMMON_SKIPPED,
    "design.variance": "design.replicates needs variance: replicate",
    "estimates.1.by": "[[]] is its only valid domain list here",
}
POSTSTRATIFIED_SKIPPED = {**COMMON_SKIPPED, "estimates.1.by": "[[]] is its only valid domain list here"}


def test_every_leaf_of_the_demo_config_reruns_exactly_its_readers(tmp_path, fast_hashes):
    changed, skipped = walk(_project(tmp_path))
    assert changed > 150
    assert sorted(skipped) == sorted(DEMO_SKIPPED), skipped


def test_every_leaf_of_the_second_config_reruns_exactly_its_readers(tmp_path, fast_hashes):
    changed, skipped = walk(write_extended(tmp_path))
    assert changed > 40
    assert sorted(skipped) == sorted(EXTENDED_SKIPPED), skipped


def test_every_leaf_of_the_poststratified_config_reruns_exactly_its_readers(tmp_path, fast_hashes):
    changed, skipped = walk(write_extended(tmp_path, POSTSTRATIFIED))
    assert changed > 40
    assert sorted(skipped) == sorted(POSTSTRATIFIED_SKIPPED), skipped


# ------------------------------------------------------------------------------ what the runs read


def test_every_read_is_declared_and_every_declared_key_is_read(tmp_path, demo_project):
    """The demo (the session's run) and the second config (both variants), run with strict views:
    every key a stage read is declared (or the run would have failed) and every declared key is read."""
    from pipeline import runner

    runner.run(load_config(write_extended(tmp_path / "replicate")), progress=runner.Progress(quiet=True))
    runner.run(load_config(write_extended(tmp_path / "poststratified", POSTSTRATIFIED)), progress=runner.Progress(quiet=True))
    for stage in (*STAGES, *STUDY_STAGES):
        reads, seen = stage_reads(stage), SEEN.get(stage, set())
        assert all(reads.covers(p) for p in seen), (stage, sorted(p for p in seen if not reads.covers(p)))
        unread = [k for k in reads.keys if not any(p == k or p.startswith(k + ".") or p.startswith(k + "[]") for p in seen)]
        assert unread == [], (stage, unread)


def test_a_stage_reading_an_undeclared_key_or_artifact_fails(tiny_project):
    config = load_config(tiny_project)
    view = config_view(config, "weight", "w1")
    assert view.weight.rake.tolerance == 1.0e-8  # declared: weight
    with pytest.raises(UndeclaredRead, match=r"the weight stage read tables but does not declare it"):
        view.tables  # noqa: B018
    with pytest.raises(UndeclaredRead, match=r"the weight stage read design.ci_method but does not declare it"):
        view.design.ci_method  # noqa: B018
    with pytest.raises(UndeclaredRead, match=r"the trends stage read design "):
        config_view(config, "trends", None).design  # noqa: B018
    ctx = StageContext(config=view, wave=view.wave("w1"), wave_dir=tiny_project.parent, stage="weight", reads=stage_reads("weight"))
    assert ctx.path("clean/data.parquet").name == "data.parquet"
    with pytest.raises(UndeclaredRead, match="the weight stage opened estimates.csv but does not declare it"):
        ctx.path("estimates.csv")
    assert Reads(config=("tables",)).covers("tables.banners[].id") and not Reads(config=("tables.decimals",)).covers("tables.labels")


def test_changing_tables_decimals_reruns_the_trends_and_its_table_shows_the_new_rounding(tmp_path):
    """The stale-trends report: tables.decimals reran export but left trends cached, so
    trends/trend.md kept 11.3 while the topline showed 11."""
    from pipeline import runner

    cfg = write_extended(tmp_path)
    runner.run(load_config(cfg), progress=runner.Progress(quiet=True))
    trend = tmp_path / "outputs" / "tiny" / "trends" / "trend.md"
    one = trend.read_text(encoding="utf-8")
    assert "." in one.split("|", 3)[-1]  # 1 decimal
    cfg.write_text(cfg.read_text().replace("  decimals: 1\n", "  decimals: 0\n", 1))
    result = runner.run(load_config(cfg), progress=runner.Progress(quiet=True))
    ran = {(r.wave, r.stage) for r in result.ran}
    assert ran == {("w1", "export"), ("w2", "export"), ("study", "trends")}
    zero = trend.read_text(encoding="utf-8")
    assert zero != one
    import re

    assert re.findall(r"\| (\d+\.\d) ", zero) == [] and re.findall(r"\| (\d+\.\d) ", one)

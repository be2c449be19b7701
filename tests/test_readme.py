"""The README tells the truth: its quickstart commands are what CI runs, its config keys exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_two_quickstart_commands():
    commands = quickstart_commands()
    assert len(commands) == 2
    assert "survey-pipeline run configs/insecure_communities.yaml" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert quickstart_commands()[1] in ci.splitlines()


def test_installs_are_locked_and_ci_starts_cold():
    """Issue 10, item 1: both quickstart commands install the locked versions, the lock pins
    every package of the test install, and CI builds its venv with pip's cache off."""
    for command in quickstart_commands():
        assert "pip install -c constraints.txt " in command
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    for package in ("polars", "numpy", "scipy", "pyreadstat", "pydantic", "pytest", "hypothesis"):
        assert package in pins, f"constraints.txt does not pin {package}"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "export PIP_NO_CACHE_DIR=1" in ci
    assert ci.index("export PIP_NO_CACHE_DIR=1") < ci.index(quickstart_commands()[1])


def test_every_config_key_is_documented():
    from pydantic import BaseModel

    from pipeline.config import StudyConfig
    from pipeline.config import _inner_model

    rows = {}
    for line in README.splitlines():
        m = re.match(r"^\| `([^`]+)`(?:, `([^`]+)`)*", line)
        if m:
            names = re.findall(r"`([^`]+)`", line.split("|")[1])
            prefix = names[0].rpartition(".")[0]
            for k in names:  # "`design.strata`, `ids`" documents design.ids too
                rows[k if "." in k or not prefix else f"{prefix}.{k}"] = line

    def walk(model: type[BaseModel], prefix: str) -> list[str]:
        keys = []
        for name, field in model.model_fields.items():
            if name == "path":
                continue
            key = f"{prefix}{name}"
            inner = _inner_model(field.annotation)
            is_list = "tuple" in str(field.annotation) and inner is not None
            if inner is None or is_list:  # a section is documented by its keys
                keys.append(key + ("[]" if is_list else ""))
            if inner is not None:
                keys += walk(inner, key + ("[]." if is_list else "."))
        return keys

    missing = []
    for key in walk(StudyConfig, ""):
        bare = key.removesuffix("[]")
        if key in rows or bare in rows:
            continue
        parent, _, leaf = bare.rpartition(".")
        sibling = any(k.startswith(parent + ".") and leaf in k.split(".")[-1] for k in rows)  # `a.b`, `c` rows
        parent_row = rows.get(parent) or rows.get(parent + "[]") or rows.get(parent.removesuffix("[]")) or ""
        if not (sibling or re.search(rf"\b{leaf}\b", parent_row)):
            missing.append(key)
    assert missing == [], "\n".join(missing)


def test_docstring_examples_run_with_the_test_command():
    """Issue 11, item 5: the README's test command (plain ``pytest``) runs every docstring
    example of the package, and none is skipped."""
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split() and "pipeline" in options["testpaths"]
    skipped = [str(p.relative_to(ROOT)) for p in (ROOT / "pipeline").rglob("*.py") if "doctest: +SKIP" in p.read_text(encoding="utf-8")]
    assert skipped == []

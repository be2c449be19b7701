"""The README's Python example runs, and its numbers are the ones it quotes (R survey 4.1-1)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_python_example_runs_and_quotes_true_numbers(monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"## Python API.*?```python\n(.*?)```", text, flags=re.S).group(1)
    monkeypatch.chdir(ROOT)
    lines = code.splitlines()
    # keep each expression's value, to compare with the numbers the comments quote
    namespace: dict = {}
    values = []
    for line in lines:
        stmt = line.split("  #")[0]
        if not stmt.strip():
            continue
        if "=" in stmt.split("(")[0] or stmt.startswith(("import", "from")):
            exec(stmt, namespace)
        else:
            values.append(eval(stmt, namespace))
    m, by_type, chi, jk = values
    assert m.get_column("estimate")[0] == pytest.approx(644.17, abs=0.005)
    assert m.get_column("se")[0] == pytest.approx(23.54, abs=0.005)
    assert m.get_column("deff")[0] == pytest.approx(9.35, abs=0.005)
    assert by_type.height == 3
    assert chi.statistic == pytest.approx(5.19, abs=0.005) and chi.p_value == pytest.approx(0.022, abs=0.0005)
    assert jk.get_column("se")[0] == pytest.approx(26.33, abs=0.005)

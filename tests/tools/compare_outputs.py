"""Compare two output folders of the same study file by file (a refactoring must not change them).

Usage, from the project folder::

    python tests/tools/compare_outputs.py OLD/outputs/insecure_communities outputs/insecure_communities

Every file of either folder is compared byte for byte, except ``manifest.json`` (its timestamps
and seconds describe the run); the two runs must use the same identifier hash key (copy
``keys/`` across) for ``ingest/data.parquet`` to agree. Prints each file that is missing on one
side or differs, and exits 1 if any does, 0 when the outputs are identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXEMPT = {"manifest.json"}


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file() and p.name not in (".lock", ".run.json")}


def compare(old: Path, new: Path) -> list[str]:
    a, b = files(old), files(new)
    problems = [f"only in {old}: {name}" for name in sorted(set(a) - set(b))]
    problems += [f"only in {new}: {name}" for name in sorted(set(b) - set(a))]
    problems += [f"differs: {name}" for name in sorted(set(a) & set(b)) if name not in EXEMPT and a[name].read_bytes() != b[name].read_bytes()]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, new = Path(argv[0]), Path(argv[1])
    problems = compare(old, new)
    for line in problems:
        print(line)
    print(f"{len(files(old))} files compared: " + ("identical" if not problems else f"{len(problems)} difference(s)"))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Writing a delivery to disk: the SPSS file, the answer key, the targets and the truth.

This module owns the file layout of ``survey-pipeline simulate --out DIR`` and the atomic
writes (each file is written to a temporary file in its destination folder, then moved into
place with :func:`os.replace`, so a reader never sees a half-written file):

- ``<out>/insecure_communities_<wave>.sav``: SPSS, with variable labels, value labels,
  user-missing declarations, formats, measurement levels, a file label and document notes
  saying the data are synthetic;
- ``<out>/insecure_communities_<wave>_answer_key.csv``;
- ``<out>/targets/latino_adults_<wave>.csv``;
- ``<out>/truth/insecure_communities_<wave>_truth.csv``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._delivery import Delivery

#: File stems of the study's deliveries and of its targets (the config names these paths).
STUDY = "insecure_communities"
TARGETS_STEM = "latino_adults"


def delivery_paths(out_dir: Path, wave: str) -> dict[str, Path]:
    """Where :func:`write_delivery` puts each file of a wave.

    Returns
    -------
    dict of str to pathlib.Path
        Keys ``sav``, ``answer_key``, ``targets``, ``truth``.
    """
    out_dir = Path(out_dir)
    return {
        "sav": out_dir / f"{STUDY}_{wave}.sav",
        "answer_key": out_dir / f"{STUDY}_{wave}_answer_key.csv",
        "targets": out_dir / "targets" / f"{TARGETS_STEM}_{wave}.csv",
        "truth": out_dir / "truth" / f"{STUDY}_{wave}_truth.csv",
    }


def write_delivery(delivery: Delivery, out_dir: Path) -> list[Path]:
    """Write a delivery's files under ``out_dir`` (atomically, creating folders as needed).

    Parameters
    ----------
    delivery : Delivery
        The result of :func:`~pipeline.simulate.simulate_delivery`.
    out_dir : pathlib.Path
        Destination folder (the project's ``raw/`` for the committed demo files).

    Returns
    -------
    list of pathlib.Path
        The files written: the ``.sav``, the answer key, the targets and the truth.
    """
    paths = delivery_paths(Path(out_dir), delivery.wave)
    _atomic(paths["sav"], lambda tmp: _write_sav(delivery, tmp))
    _atomic(paths["answer_key"], lambda tmp: delivery.answer_key.write_csv(tmp))
    _atomic(paths["targets"], lambda tmp: delivery.targets.write_csv(tmp))
    _atomic(paths["truth"], lambda tmp: delivery.truth.write_csv(tmp))
    return [paths["sav"], paths["answer_key"], paths["targets"], paths["truth"]]


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a temporary file next to ``path``, then move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_sav(delivery: Delivery, path: Path) -> None:
    write_sav(delivery.data, delivery.codebook, path)


def write_sav(data: Any, cb: Any, path: Path) -> None:
    """Write rows of a delivery (``Delivery.data`` or ``.clean``) as the labelled SPSS file."""
    import pyreadstat

    pyreadstat.write_sav(
        data,
        str(path),
        file_label=cb.file_label,
        column_labels={name: cb.variable_labels[name] for name in cb.variables},
        note=list(cb.notes),
        variable_value_labels={name: dict(labels) for name, labels in cb.value_labels.items()},
        missing_ranges={name: list(codes) for name, codes in cb.missing_values.items()},
        variable_format=dict(cb.formats),
        variable_measure=dict(cb.measures),
        row_compress=True,  # SPSS bytecode compression: a standard .sav, about a third the size
    )

"""Harmonize (study level, after every wave's ingest): which variables exist in which wave, and
value-label drift.

The same code meaning different things in two waves (EDUC 4 "Some college" in one wave,
"Associate's degree" in the next) would silently mix answers in a trend. It is an error unless
the config maps it (``waves[].recodes`` to move the codes and ``waves[].labels`` to state the
wave's labels after the recode) or accepts it (``harmonize.same_meaning``: the wording changed,
not the meaning). Labels are compared after folding case, quotes, white space and trailing
punctuation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipeline.errors import DataError
from pipeline.stages import Reads

if TYPE_CHECKING:
    from pipeline.config import HarmonizeConfig
    from pipeline.io import Codebook
    from pipeline.stages import StageOutput, StudyContext

#: columns the pipeline adds itself; not part of the questionnaire
_OWN = {"raw_row"}


def _fold(label: str) -> str:
    text = unicodedata.normalize("NFKC", label).replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"\s+", " ", text).strip().lower()
    return text.rstrip(".:;")


def harmonize(codebooks: Mapping[str, Codebook], config: HarmonizeConfig) -> dict[str, Any]:
    """Compare the waves' codebooks (in wave order).

    Returns
    -------
    dict
        ``waves``, ``variables`` (name -> waves having it), ``only_in`` (variables missing from
        some wave), ``accepted`` (label differences accepted by ``same_meaning``).

    Raises
    ------
    DataError
        Listing every unmapped label drift: variable, code, both labels and waves.
    """
    waves = list(codebooks)
    names: dict[str, list[str]] = {}
    for w, cb in codebooks.items():
        for name in cb.variables:
            if name not in _OWN:
                names.setdefault(name, []).append(w)
    accepted_codes = {(s.variable, c) for s in config.same_meaning for c in s.codes}
    problems: list[str] = []
    accepted: list[dict[str, Any]] = []
    for name, present in names.items():
        if len(present) < 2:
            continue
        first: dict[Any, tuple[str, str]] = {}
        for w in present:
            for code, label in codebooks[w].get(name).value_labels.items():
                if code not in first:
                    first[code] = (w, label)
                    continue
                w0, label0 = first[code]
                if _fold(label0) == _fold(label):
                    continue
                entry = {"variable": name, "code": code, "wave": w0, "label": label0, "other_wave": w, "other_label": label}
                if (name, code) in accepted_codes:
                    accepted.append(entry)
                else:
                    problems.append(f"{name} code {code}: {label0!r} in wave {w0} but {label!r} in wave {w}")
    if problems:
        raise DataError(
            f"value labels drift between waves ({len(problems)} code(s)): the same code means different things:\n"
            + "\n".join(f"  - {p}" for p in problems),
            hint="map the later wave's codes with waves[].recodes and state its labels with waves[].labels, "
            "or, if only the wording changed, list the codes in harmonize.same_meaning",
        )
    only_in = {n: w for n, w in names.items() if len(w) < len(waves)}
    return {"waves": waves, "variables": names, "only_in": only_in, "accepted": accepted}


def report_markdown(report: Mapping[str, Any]) -> str:
    waves = report["waves"]
    lines = ["# Harmonization report", "", f"Waves: {', '.join(waves)}.", ""]
    if report["only_in"]:
        lines += ["## Variables not in every wave", "", "| variable | " + " | ".join(waves) + " |", "|---|" + "---|" * len(waves)]
        for name, present in sorted(report["only_in"].items()):
            lines.append(f"| {name} | " + " | ".join("yes" if w in present else "—" for w in waves) + " |")
        lines.append("")
    else:
        lines += ["Every variable is in every wave.", ""]
    if report["accepted"]:
        lines += ["## Label changes accepted as the same meaning", "", "| variable | code | label | wave | label | wave |", "|---|---|---|---|---|---|"]
        lines += [f"| {a['variable']} | {a['code']} | {a['label']} | {a['wave']} | {a['other_label']} | {a['other_wave']} |" for a in report["accepted"]]
        lines.append("")
    lines.append(f"{len(report['variables'])} variables in all.")
    return "\n".join(lines) + "\n"


READS = Reads(config=("harmonize",), upstream=("ingest/codebook.json",))
"""The accepted label changes, and every wave's ingest codebook."""


def run(ctx: StudyContext) -> StageOutput:
    from pipeline.io import Codebook
    from pipeline.stages import StageOutput

    codebooks = {w: Codebook.from_json(ctx.wave_path(w, "ingest/codebook.json").read_text(encoding="utf-8")) for w in ctx.waves}
    report = harmonize(codebooks, ctx.config.harmonize)
    return StageOutput(
        files={"harmonization.json": report, "harmonization.md": report_markdown(report)},
        diagnostics={"waves": list(ctx.waves), "variables_not_in_every_wave": len(report["only_in"]), "accepted_label_changes": len(report["accepted"])},
        rows=len(report["variables"]),
    )

"""A commented starter config for a new labelled file: what ``survey-pipeline init RAW`` writes.

:func:`starter_config` reads the file with the ingest stage's reader (its codebook: variable
labels, value labels, user-missing codes) and lays out a YAML config that validates and runs:
the wave, the respondent id, identifier columns to drop, don't-know and refused codes found by
their labels, one example estimate of each kind, and the exports. Every guess is marked
``GUESS`` in a comment that says what it was based on; weight, strata and cluster columns are
named, and those it cannot be sure of are left commented out. Values are written by
``yaml.safe_dump`` (quoting), the layout and comments by hand. Nothing here imports polars at
module level, so the CLI's ``--help`` stays fast.

>>> _yaml_value(["Yes", 1, "Centro"])  # YAML 1.1 reads a bare Yes as true: quoted
"['Yes', 1, Centro]"
>>> _slug("Insecure Communities 2012")
'insecure_communities_2012'
>>> [bool(_PII.search(n)) for n in ("PHONE", "tel_2", "TELEWORK", "Nombre", "email")]
[True, True, False, True, True]
>>> _missing_kind("No sabe"), _missing_kind("Rehusó"), _missing_kind("Not applicable"), _missing_kind("Agree")
('dont_know', 'refused', 'other', None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from pipeline.io import Codebook

_DONT_KNOW = re.compile(r"don'?t know|dont know|do not know|\bdk\b|not sure|no sabe|no s[eé]\b|ns/nc", re.I)
_REFUSED = re.compile(r"refus|rehus|declin|prefer not|no quiso|se neg[oó]", re.I)
_OTHER_MISSING = re.compile(r"not applicable|inapplicable|\bn/?a\b|no answer|no response|skipped|missing|"
                            r"no aplica|no responde|no contesta|sin respuesta", re.I)
_ID = re.compile(r"^(id|respid|resp_?id|respondent_?id|caseid|case_?id|seqn|serial|record_?id|person_?id|uid|.*_id)$", re.I)
_WEIGHT = re.compile(r"(^|_)(wt|wts|wgt|wght|weight|pw|pwt|finalwt|wtfinal)[0-9]*($|_)|weight|wgt", re.I)
_STRATA = re.compile(r"strat|sdmvstra", re.I)
_CLUSTER = re.compile(r"(^|_)psu|cluster|sdmvpsu|^clus", re.I)
_PII = re.compile(r"name|phone|(^|_)tel(e|ef|efono|ephone)?([0-9_]|$)|mobile|address|addr|street|e_?mail|ssn|tel[eé]fono|direcci|correo|nombre", re.I)
_YEAR = re.compile(r"(?<![0-9])(19[5-9][0-9]|20[0-9][0-9])(?![0-9])")


def _yaml_value(value: Any) -> str:
    """One value in YAML's flow style, quoted where YAML needs it."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _slug(text: str) -> str:
    """A study slug (``a-z0-9_-``, starting with a letter or digit)."""
    slug = re.sub(r"[^a-z0-9_-]+", "_", text.lower()).strip("_-")
    return slug or "study"


def _missing_kind(label: str) -> str | None:
    """``dont_know``, ``refused``, ``other`` (not applicable, no answer) or None, by the label's words."""
    if _DONT_KNOW.search(label):
        return "dont_know"
    if _REFUSED.search(label):
        return "refused"
    if _OTHER_MISSING.search(label):
        return "other"
    return None


def _comment(text: str | None, limit: int = 70) -> str:
    """Text made safe for a one-line comment."""
    one = " ".join(str(text or "").split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


@dataclass
class _Column:
    name: str
    label: str
    kind: str  # categorical, numeric, text, date, other
    codes: list[Any] = field(default_factory=list)  # substantive codes seen in the data (categorical)
    labels: dict[Any, str] = field(default_factory=dict)
    missing: list[Any] = field(default_factory=list)  # codes labelled or declared missing
    nulls: int = 0
    distinct: int = 0


def _describe(frame: pl.DataFrame, codebook: Codebook) -> list[_Column]:
    import polars as pl

    out = []
    for name, dtype in frame.schema.items():
        info = codebook.get(name)
        col = frame.get_column(name)
        seen = col.drop_nulls().unique().sort().to_list()
        missing = sorted({c for c, lab in info.value_labels.items() if _missing_kind(lab)} | set(info.missing_values), key=str)
        substantive = {c: lab for c, lab in info.value_labels.items() if c not in missing}
        codes = [c for c in seen if c not in missing and not info.is_user_missing(c)]
        labelled = [c for c in codes if c in substantive]
        # value labels on 90% of the answers: categorical (a stray unlabelled code is a data problem)
        rows = col.drop_nulls()
        share = float(rows.is_in(list(info.value_labels)).mean() or 0) if rows.len() and info.value_labels else 0.0
        coded = len(substantive) >= 2 and len(labelled) >= 2 and share > 0.9
        if dtype.is_numeric():
            kind = "categorical" if coded else "numeric"
        elif dtype in (pl.String, pl.Categorical, pl.Enum):
            kind = "text" if len(seen) <= 20 else "other"
            kind = "categorical" if coded else kind
        else:
            kind = "date" if dtype.is_temporal() else "other"
        if kind == "categorical":
            codes = labelled
        out.append(_Column(name, info.label or "", kind, codes, dict(info.value_labels), missing, col.null_count(), len(seen)))
    return out


def starter_config(path: Path | str, *, study: str | None = None, raw: str | None = None) -> str:
    """The YAML text of a commented starter config for the labelled file at ``path``.

    ``study`` is the study slug (default: from the file's name); ``raw`` the raw path as the
    config should spell it (default: ``path`` as given; the CLI passes it relative to the
    config). The config validates and runs as written; every guess is said in a comment.
    """
    from pipeline.io import read_survey

    path = Path(path)
    frame, codebook = read_survey(path)
    cols = _describe(frame, codebook)
    by_name = {c.name: c for c in cols}
    n = frame.height
    stem = path.stem
    year = _YEAR.search(stem)
    wave = year.group(1) if year else "1"
    slug = _slug(study or _YEAR.sub("", stem) or stem)

    # by the name; a labelled variable (PHONESTAT: cell only, landline only) is an answer, not an identifier
    pii = [c.name for c in cols if _PII.search(c.name) and c.kind != "categorical"]

    def unique(c: _Column) -> bool:
        return c.nulls == 0 and c.distinct == n

    free = [c for c in cols if c.name not in pii]
    named_ids = [c for c in free if _ID.match(c.name) and c.kind in ("numeric", "other", "text")]
    id_col = next((c for c in named_ids if unique(c)), None)
    id_note = "GUESS: unique and never missing, and its name looks like an id"
    if id_col is None and named_ids:
        id_col = named_ids[0]
        dup = n - id_col.distinct
        id_note = (f"GUESS by its name; NOT unique: {dup:,} of {n:,} rows repeat an id or have none "
                   "(clean.drop_duplicates below quarantines exact copies)")
    if id_col is None:
        id_col = next((c for c in free if unique(c) and c.kind in ("numeric", "other")), None)
        id_note = "GUESS: the first column that is unique and never missing (no column is named like an id)"

    def positive(c: _Column) -> bool:
        s = frame.get_column(c.name)
        return c.kind == "numeric" and c.nulls == 0 and bool((s > 0).all())

    taken = {id_col.name} if id_col else set()
    weights = [c for c in free if _WEIGHT.search(c.name) and c.name not in taken]
    good_weights = [c for c in weights if positive(c)]
    strata = [c for c in free if _STRATA.search(c.name) and c.name not in taken]
    clusters = [c for c in free if _CLUSTER.search(c.name) and c.name not in taken]
    design_cols = taken | {c.name for c in (*weights, *strata, *clusters)}

    analysis = [c for c in free if c.name not in design_cols]
    categorical = [c for c in analysis if c.kind in ("categorical", "text") and len(c.codes) >= 2]
    # numbers that are measures: not identifiers (named or labelled like an id, a number or a code)
    numeric = [c for c in analysis if c.kind == "numeric" and c.distinct > 2
               and not re.search(r"\bid\b", c.label, re.I) and not re.search(r"(num|_no|code|_id)$", c.name, re.I)]
    # questions (variables with don't-know/refused codes) first for the examples; design-like
    # variables (no missing codes, few levels) for the domain
    questions = sorted(categorical, key=lambda c: not c.missing)
    small = sorted((c for c in categorical if 2 <= len(c.codes) <= 6), key=lambda c: (bool(c.missing), c.nulls))
    by = small[0] if small else None
    examples = [c for c in questions if c is not by] or questions
    prop = examples[0] if examples else None
    dist = examples[1] if len(examples) > 1 else prop
    num = numeric[0] if numeric else None

    # missing codes by their labels, over every variable
    dk: set[Any] = set()
    ref: set[Any] = set()
    other: dict[tuple[Any, str], list[str]] = {}
    for c in free:
        for code, lab in c.labels.items():
            kind = _missing_kind(lab)
            if isinstance(code, str) or kind is None:
                continue
            if kind == "dont_know":
                dk.add(code)
            elif kind == "refused":
                ref.add(code)
            else:
                other.setdefault((code, _comment(lab, 40)), []).append(c.name)
    dk_shown = _examples_of(free, dk)
    ref_shown = _examples_of(free, ref)
    declared = sorted({(code, c.name) for c in free for code in c.missing if code not in dk | ref and not isinstance(code, str)}, key=str)

    L: list[str] = []
    add = L.append
    add(f"# Starter config written by `survey-pipeline init {_comment(path.name, 200)}`: {n:,} rows, {frame.width} columns.")
    add("# Lines marked GUESS were guessed from the column names, the labels and the data: check them.")
    add("# Every key is documented in the README (\"Config reference\"); paths are relative to this file.")
    add("# Next: survey-pipeline validate THIS_FILE, then survey-pipeline run THIS_FILE.")
    add(f"study: {_yaml_value(slug)}")
    add(f"title: {_yaml_value(codebook.file_label or stem)}")
    add("")
    add("waves:")
    add(f"  - id: {_yaml_value(wave)}" + ("                 # GUESS: the year in the file's name" if year else "                    # GUESS: no year in the file's name"))
    add(f"    raw: {_yaml_value(raw if raw is not None else str(path))}")
    if not any(c.labels or c.label for c in cols):
        add(f"    # no codebook: {path.name}.codebook.json beside the file would give the labels and missing codes")
    add("")
    add("ingest:")
    if id_col:
        add(f"  id: {_yaml_value(id_col.name)}   # {id_note}")
    else:
        add("  # id: RESPID   # no column is unique and never missing: name the respondent id here")
    if pii:
        add(f"  pii: {_yaml_value(pii)}   # GUESS by the names (name, phone, address, email): dropped at ingest, in no output")
    else:
        add("  pii: []   # no column is named like a name, phone, address or email; list any identifier here")
    add("")
    add("clean:")
    if id_col and not unique(id_col):
        add(f"  drop_duplicates: {{id: {_yaml_value(id_col.name)}}}   # rows identical in every column go to quarantine")
    add("  missing:   # GUESS from the value labels (codes are study-wide: check no variable uses them as answers)")
    add(f"    dont_know: {_yaml_value(sorted(dk))}" + (f"   # labelled {dk_shown}" if dk else "   # none labelled don't know (the default would be [8, 98])"))
    add(f"    refused: {_yaml_value(sorted(ref))}" + (f"   # labelled {ref_shown}" if ref else "   # none labelled refused (the default would be [9, 99])"))
    if other or declared:
        add("    # other missing codes, left as they are (the codebook's user-missing codes stay missing); to")
        add("    # give them a reason, add them under also: [{variables: [...], codes: [...]}]")
        for (code, lab), names in sorted(other.items(), key=str):
            add(f"    #   {code} {lab!r}: {_comment(', '.join(names), 60)}")
        for code, name in declared:
            if not any(code == k and name in v for (k, _), v in other.items()):
                add(f"    #   {code} declared user-missing in {name}")
    add("")
    add(_design_block(weights, good_weights, strata, clusters))
    add("")
    add("# The variables, by their labels: categorical (value labels) and numeric (no labels)")
    add(f"#   categorical: {_comment(', '.join(c.name for c in categorical) or 'none', 200)}")
    add(f"#   numeric:     {_comment(', '.join(c.name for c in numeric) or 'none', 200)}")
    add("# One example estimate of each kind (GUESS: the first suitable variables); add your own.")
    add("estimates:" if (prop or num) else "estimates: []   # no labelled or numeric variable found")
    by_text = f"[[], [{by.name}]]" if by else None
    if by:
        about = f" ({_comment(by.label, 50)})" if by.label else ""
        add(f"  # by: {by.name}{about}: a small labelled variable, estimated overall and in each of its {len(by.codes)} groups")
    if prop:
        first = prop.codes[0]
        add(f"  - id: {_yaml_value(_slug(prop.name) + '_share')}")
        add(f"    title: {_yaml_value(_comment(prop.label, 100) or prop.name)}")
        add(f"    proportion: {_yaml_value(prop.name)}")
        add(f"    levels: {_yaml_value([first])}   # {_comment(prop.labels.get(first, first), 50)}")
        if by_text and by is not prop:
            add(f"    by: {by_text}")
        add(f"  - id: {_yaml_value(_slug(dist.name) + '_dist')}")
        add(f"    title: {_yaml_value(_comment(dist.label, 100) or dist.name)}")
        add(f"    distribution: {_yaml_value(dist.name)}")
        add(f"  - id: {_yaml_value(_slug(prop.name) + '_total')}")
        add(f"    title: {_yaml_value('Number: ' + _comment(prop.labels.get(first, first), 80))}")
        add(f"    total: {_yaml_value(prop.name)}")
        add(f"    levels: {_yaml_value([first])}")
    if num:
        add(f"  - id: {_yaml_value(_slug(num.name) + '_mean')}")
        add(f"    title: {_yaml_value(_comment(num.label, 100) or num.name)}")
        add(f"    mean: {_yaml_value(num.name)}")
        if by_text:
            add(f"    by: {by_text}")
        add(f"  - id: {_yaml_value(_slug(num.name) + '_quartiles')}")
        add(f"    title: {_yaml_value(_comment(num.label, 80) + ' (quartiles)' if num.label else num.name)}")
        add(f"    quantile: {_yaml_value(num.name)}")
        add("    probs: [0.25, 0.5, 0.75]")
    add("")
    add("export:")
    add("  formats: [csv, markdown]   # also: xlsx, html, latex (tables), sav, dta (analysis file), png, svg (charts), methods, report")
    return "\n".join(L) + "\n"


def _examples_of(cols: list[_Column], codes: set[Any]) -> str:
    """Where the codes are labelled, briefly: ``8 "Don't know"/'No sabe' (EDUC, BORN, +3)``."""
    parts = []
    for code in sorted(codes):
        names = [c.name for c in cols if code in c.labels and _missing_kind(c.labels[code])]
        found = [c.labels[code] for c in cols if code in c.labels and _missing_kind(c.labels[code])]
        labs = sorted(dict.fromkeys(found), key=lambda t: -found.count(t))[:3]  # most used first; ties in file order
        more = f", +{len(names) - 3}" if len(names) > 3 else ""
        parts.append(f"{code} {'/'.join(repr(_comment(t, 20)) for t in labs)} ({', '.join(names[:3])}{more})")
    return _comment("; ".join(parts), 200)


def _design_block(weights: list[_Column], good: list[_Column], strata: list[_Column], clusters: list[_Column]) -> str:
    L = ["design:"]
    if len(good) == 1:
        w = good[0].name
        L.append(f"  weights: {_yaml_value(w)}   # GUESS: the one weight-like column, positive on every row, used as the final weight")
        L.append(f"  # to weight from it instead (nonresponse, raking): weight: {{base: {{column: {w}}}}} and drop this line")
    else:
        if good:
            L.append(f"  # weights: {good[0].name}   # GUESS: weight-like columns, positive on every row: {', '.join(c.name for c in good)}; pick one")
        else:
            L.append("  # weights: WEIGHT   # no weight column found: every respondent counts the same (w_base = 1)")
        bad = [c.name for c in weights if c not in good]
        if bad:
            L.append(f"  # named like a weight but not positive and numeric on every row: {', '.join(bad)}")
    if strata:
        L.append(f"  # strata: [{strata[0].name}]   # GUESS by the name ({', '.join(c.name for c in strata)}): uncomment if these are the sampling strata")
    else:
        L.append("  # strata: [STRATUM]   # no column is named like a stratum")
    if clusters:
        L.append(f"  # ids: [{clusters[0].name}]   # GUESS by the name ({', '.join(c.name for c in clusters)}): the first-stage clusters (PSUs)")
        if strata:
            L.append("  # nest: true   # when PSU ids repeat across strata (as in NHANES' SDMVPSU)")
    else:
        L.append("  # ids: [PSU]   # no column is named like a cluster")
    L.append("  ci_method: logit")
    return "\n".join(L)

"""The codebook of the raw delivery: variables, labels, codes, missing values, SPSS formats.

This module owns section 7.5 of ``studies/insecure_communities.md``: the variable list in file
order, every variable label, the value labels of every coded variable (the SPSS ``VALUE LABELS``
syntax and the codes column of the codebook table), the user-missing declarations exactly as the
``MISSING VALUES`` line, the valid ranges (used to tell injected out-of-range codes from real
ones) and the SPSS display formats. Conventions: 8 = Don't know, 9 = Refused (98/99 for two-digit
items); legitimately skipped = system-missing (blank).

WEIGHT and WEIGHT_POP are listed in the study codebook but are *not* part of the raw delivery:
the pipeline computes the weights.

Later waves drift from this codebook the way real questionnaires do: a :class:`QuestionnaireSpec`
per wave renames variables, drops and adds items, moves a battery's don't-know/refused codes and
changes value labels. The simulator works in the 2012 names throughout (the *internal* names);
a wave's names and labels apply to the delivery it writes (``Codebook.sources`` maps them back).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: System-missing marker inside the simulator's integer arrays (becomes a blank / null).
SYSMIS = -1

DK, REF = 8, 9
DK2, REF2 = 98, 99

_DK_REF = {DK: "Don't know", REF: "Refused"}
_YES_NO = {1: "Yes", 2: "No", **_DK_REF}
_AGREE = {1: "Strongly agree", 2: "Somewhat agree", 3: "Somewhat disagree", 4: "Strongly disagree", **_DK_REF}

#: Variable name -> (variable label, value labels or None), in file order (section 7.5).
VARIABLES: dict[str, tuple[str, dict[int, str] | None]] = {
    "RESPID": ("Respondent ID", None),
    "PHONE_HASH": ("Hashed phone number (SHA-256 of the dialled number, 16 hex digits)", None),
    "COUNTY": ("County of residence", {1: "Cook", 2: "Harris", 3: "Los Angeles", 4: "Maricopa"}),
    "FRAME": ("Sample frame", {1: "Landline", 2: "Cell"}),
    "LANG": ("Interview language", {1: "English", 2: "Spanish"}),
    "INTDATE": ("Interview date", None),
    "DURATION": ("Interview length, seconds", None),
    "STATUS": ("Disposition", {1: "Complete", 2: "Partial (break-off)"}),
    "INTVR": ("Interviewer ID", None),
    "S1": (
        "S1. Are you of Hispanic or Latino origin? (screener)",
        {1: "Yes", 2: "No (terminate)", 9: "Refused (terminate)"},
    ),
    "SEX": ("Sex (interviewer-recorded)", {1: "Male", 2: "Female"}),
    "AGE": ("Age in years", {97: "97 or older", REF2: "Refused"}),
    "AGECAT": ("Age group (derived from AGE)", {1: "18-29", 2: "30-44", 3: "45-64", 4: "65+", 9: "Refused"}),
    "EDUC": (
        "Highest level of schooling completed",
        {
            1: "8th grade or less",
            2: "Some high school",
            3: "High school graduate/GED",
            4: "Some college/technical/associate's",
            5: "Bachelor's degree",
            6: "Postgraduate",
            **_DK_REF,
        },
    ),
    "BORN": (
        "Were you born in the United States, on the island of Puerto Rico, or in another country?",
        {1: "United States", 2: "Puerto Rico", 3: "Another country", **_DK_REF},
    ),
    "YRS_US": ("(BORN = 3) How many years have you lived in the United States?", {DK2: "Don't know", REF2: "Refused"}),
    "CITIZEN": ("(BORN = 3) Are you a citizen of the United States?", _YES_NO),
    "LEGAL": (
        "(CITIZEN = 2) Do you currently have a green card or another valid visa/legal status?",
        {1: "Green card/permanent resident", 2: "Other valid visa or status", 3: "No", **_DK_REF},
    ),
    "STATUS4": (
        "Nativity and legal status (derived from BORN, CITIZEN, LEGAL)",
        {
            1: "U.S.-born",
            2: "Foreign-born citizen",
            3: "Foreign-born legal non-citizen",
            4: "Foreign-born undocumented",
            9: "Unknown",
        },
    ),
    "ORIGIN": (
        "Country of origin or heritage",
        {
            1: "Mexico",
            2: "Puerto Rico",
            3: "Cuba",
            4: "El Salvador",
            5: "Guatemala",
            6: "Honduras",
            7: "Other Central America",
            8: "South America",
            10: "Dominican Republic",
            11: "Other",
            DK2: "Don't know",
            REF2: "Refused",
        },
    ),
    "PHONESTAT": ("Telephone service", {1: "Cell only", 2: "Landline only", 3: "Both", 9: "Refused"}),
    "HH_ADULTS": ("(FRAME = 1) Adults 18+ in household", {6: "6 or more", 9: "Refused"}),
    "INCOME": (
        "2011 household income",
        {
            1: "Less than $20,000",
            2: "$20,000 to under $40,000",
            3: "$40,000 to under $60,000",
            4: "$60,000 to under $100,000",
            5: "$100,000 or more",
            **_DK_REF,
        },
    ),
    # Q10A is item a verbatim (PolitiFact); Q10B-F are reconstructions from press paraphrases.
    "Q10A": (
        "Q10A. I am less likely to contact police officers if I have been the victim of a crime for fear "
        "that they will ask me or people I know about our immigration status.",
        _AGREE,
    ),
    "Q10B": (
        "Q10B. I am less likely to voluntarily offer information about crimes I know have been committed "
        "because I am afraid the police will ask me or people I know about our immigration status.",
        _AGREE,
    ),
    "Q10C": (
        "Q10C. I feel less safe because local law enforcement is more involved in immigration enforcement.",
        _AGREE,
    ),
    "Q10D": (
        "Q10D. I am more afraid to leave my home because local law enforcement officials are more involved "
        "in immigration enforcement.",
        _AGREE,
    ),
    "Q10E": (
        "Q10E. I feel that I am under more suspicion now that local police are involved in immigration enforcement.",
        _AGREE,
    ),
    "Q10F": ("Q10F. I feel more isolated now that local police are involved in immigration enforcement.", _AGREE),
    "Q11": (
        "Q11. How often do you think police officers stop Latinos without good reason or cause?",
        {1: "Very often", 2: "Somewhat often", 3: "Not too often", 4: "Never", **_DK_REF},
    ),
    "Q12": (
        "Q12. If you had information about a crime, would you be more likely to tell the police or a church "
        "or community leader?",
        {1: "Police", 2: "Church/community leader", 3: "Both equally (vol.)", 4: "Neither (vol.)", **_DK_REF},
    ),
    "Q13": ("Q13. Have police ever asked you about your immigration status or that of people you know?", _YES_NO),
    "Q14": ("Q14. In the past 12 months, have you been the victim of a crime?", _YES_NO),
    "Q14A": ("(Q14 = 1) Q14A. Did you report it to the police?", _YES_NO),
    "Q15": ("Q15. Have you heard of the federal program called Secure Communities? (not a known study item)", _YES_NO),
}

BATTERY: tuple[str, ...] = ("Q10A", "Q10B", "Q10C", "Q10D", "Q10E", "Q10F")

#: ``MISSING VALUES Q10A TO Q10F Q11 Q12 Q13 Q14 Q14A Q15 BORN CITIZEN LEGAL EDUC INCOME (8,9)
#: /AGE (99) /YRS_US ORIGIN (98,99).`` (section 7.5), exactly; nothing else is user-missing.
MISSING_VALUES: dict[str, tuple[int, ...]] = {
    **{name: (DK, REF) for name in (*BATTERY, "Q11", "Q12", "Q13", "Q14", "Q14A", "Q15")},
    **{name: (DK, REF) for name in ("BORN", "CITIZEN", "LEGAL", "EDUC", "INCOME")},
    "AGE": (REF2,),
    "YRS_US": (DK2, REF2),
    "ORIGIN": (DK2, REF2),
}

@dataclass(frozen=True)
class AddedItem:
    """An item a later wave asks that wave 2012 did not.

    Attributes
    ----------
    name : str
        Variable name.
    label : str
        Variable label.
    value_labels : tuple of (int, str)
        Value labels.
    missing : tuple of int
        User-missing codes.
    after : str
        The (internal) variable it follows, in the file and in the interview.
    measure : str
        SPSS measurement level.
    """

    name: str
    label: str
    value_labels: tuple[tuple[int, str], ...]
    missing: tuple[int, ...]
    after: str
    measure: str = "nominal"


@dataclass(frozen=True)
class QuestionnaireSpec:
    """How one wave's delivery names, codes and labels the study's variables.

    Wave 2012 is the reference: every field empty. Names in every field are the internal
    (2012) names, except ``renames``' targets and the added items' names.

    Attributes
    ----------
    renames : tuple of (str, str)
        Internal name -> the name in this wave's file.
    dropped : tuple of str
        Items of 2012 this wave does not ask (not generated, not delivered).
    added : tuple of AddedItem
        Items this wave asks that 2012 did not.
    nonresponse_codes : tuple of (tuple of str, int, int)
        Items whose don't-know and refused codes differ from 8/9 in this wave (for every row:
        the value labels and MISSING VALUES of the file say so), with those codes.
    value_labels : tuple of (str, tuple of (int, str))
        Items whose value labels this wave replaces (before the nonresponse codes apply).
    variable_labels : tuple of (str, str)
        Items whose variable label this wave replaces.
    modeled_items : str
        The items "modeled on press paraphrases", for the file's notes.
    changes : str
        What changed since 2012, for the file's notes (empty for 2012).
    """

    renames: tuple[tuple[str, str], ...] = ()
    dropped: tuple[str, ...] = ()
    added: tuple[AddedItem, ...] = ()
    nonresponse_codes: tuple[tuple[tuple[str, ...], int, int], ...] = ()
    value_labels: tuple[tuple[str, tuple[tuple[int, str], ...]], ...] = ()
    variable_labels: tuple[tuple[str, str], ...] = ()
    modeled_items: str = "Q10B-Q10F, Q11-Q15"
    changes: str = ""

    def delivered(self, name: str) -> str:
        """The name of internal variable ``name`` in this wave's file."""
        return dict(self.renames).get(name, name)

    def dk_ref(self, name: str) -> tuple[int, int]:
        """Don't-know and refused codes of a substantive item in this wave (default 8, 9)."""
        for names, dk, ref in self.nonresponse_codes:
            if name in names:
                return dk, ref
        return DK, REF

    def asks(self, name: str) -> bool:
        """Whether this wave asks (and delivers) internal variable ``name``."""
        return name not in self.dropped and (name in VARIABLES or any(a.name == name for a in self.added))


QUESTIONNAIRE_2012 = QuestionnaireSpec()

#: Wave 2014's questionnaire drift [E] (the config's 2014 entry maps it back; see the report of
#: issue 7): two variables renamed; the Q10 battery's don't know / refused moved to the two-digit
#: codes 98 / 99 in every row; Q15 (heard of Secure Communities) dropped after the program's end
#: was announced, Q16 (police asked you or someone you know about status, past 12 months) added
#: in its place; EDUC split "Some college/technical/associate's" (2012 code 4) into code 4
#: "Associate's degree" and a new code 7 "Some college/technical, no degree" (label drift: the
#: same code 4 means something else); INCOME asks about 2013.
QUESTIONNAIRE_2014 = QuestionnaireSpec(
    renames=(("PHONESTAT", "PHONE_STATUS"), ("HH_ADULTS", "ADULTS_HH")),
    dropped=("Q15",),
    added=(
        AddedItem(
            name="Q16",
            label=(
                "Q16. In the past 12 months, have you or someone you know been asked about immigration "
                "status by local police? (new in 2014; not a known study item)"
            ),
            value_labels=tuple(_YES_NO.items()),
            missing=(DK, REF),
            after="Q14A",
        ),
    ),
    nonresponse_codes=((BATTERY, DK2, REF2),),
    value_labels=(
        (
            "EDUC",
            (
                (1, "8th grade or less"),
                (2, "Some high school"),
                (3, "High school graduate/GED"),
                (4, "Associate's degree"),
                (5, "Bachelor's degree"),
                (6, "Postgraduate"),
                (7, "Some college/technical, no degree"),
                (DK, "Don't know"),
                (REF, "Refused"),
            ),
        ),
    ),
    variable_labels=(("INCOME", "2013 household income"),),
    modeled_items="Q10B-Q10F, Q11-Q14A, Q16",
    changes=(
        "Changes since the 2012 wave: PHONESTAT is now PHONE_STATUS and HH_ADULTS is now ADULTS_HH; "
        "Q10A-Q10F code don't know 98 and refused 99; Q15 was dropped and Q16 added; EDUC code 4 "
        "is now Associate's degree and the new code 7 is Some college/technical, no degree."
    ),
)


#: Valid values of the numeric variables without a complete set of value labels, as inclusive
#: ranges; a labelled variable's valid values are its labelled codes.
VALID_RANGES_UNLABELLED: dict[str, tuple[tuple[int, int], ...]] = {
    "RESPID": ((100_000, 999_999),),
    "DURATION": ((1, 4 * 3600),),
    "INTVR": ((101, 160),),
    "AGE": ((18, 97), (REF2, REF2)),
    "YRS_US": ((0, 96), (DK2, REF2)),
    "HH_ADULTS": ((1, 6), (REF, REF)),
}

STRING_VARIABLES: dict[str, int] = {"PHONE_HASH": 16}
DATE_VARIABLES: tuple[str, ...] = ("INTDATE",)

_ORDINAL = {*BATTERY, "Q11", "EDUC", "INCOME", "AGECAT"}
_SCALE = {"AGE", "YRS_US", "DURATION", "HH_ADULTS", "INTDATE"}


@dataclass(frozen=True)
class Codebook:
    """Everything needed to write (and check) the SPSS delivery.

    Attributes
    ----------
    variables : tuple of str
        Variable names in file order.
    variable_labels : Mapping[str, str]
        Variable label of every variable.
    value_labels : Mapping[str, Mapping[int, str]]
        Value labels of every coded variable.
    missing_values : Mapping[str, tuple of int]
        Discrete user-missing codes (SPSS ``MISSING VALUES``).
    valid_ranges : Mapping[str, tuple of (int, int)]
        Valid values of every numeric variable, as inclusive ranges (dates and strings excluded).
    formats : Mapping[str, str]
        SPSS print formats (``F6.0``, ``A16``, ``DATE11``).
    measures : Mapping[str, str]
        SPSS measurement level: ``nominal``, ``ordinal`` or ``scale``.
    file_label : str
        SPSS file label (at most 64 characters).
    notes : tuple of str
        SPSS document lines (provenance; says the data are synthetic).
    sources : Mapping[str, str]
        The internal (2012) name of every variable (the identity except for renamed ones).
    """

    variables: tuple[str, ...]
    variable_labels: Mapping[str, str]
    value_labels: Mapping[str, Mapping[int, str]]
    missing_values: Mapping[str, tuple[int, ...]]
    valid_ranges: Mapping[str, tuple[tuple[int, int], ...]]
    formats: Mapping[str, str]
    measures: Mapping[str, str]
    file_label: str
    notes: tuple[str, ...]
    sources: Mapping[str, str]

    def is_valid(self, name: str, values: np.ndarray) -> np.ndarray:
        """Boolean mask: which values (a numpy array of numbers) are valid codes of ``name``.

        System-missing (NaN or the simulator's -1) counts as valid: blanks are a skip question,
        not a range question.
        """
        import numpy as np

        arr = np.asarray(values, dtype=np.float64)
        ok = np.isnan(arr) | (arr == SYSMIS)
        for low, high in self.valid_ranges[name]:
            ok |= (arr >= low) & (arr <= high) & (arr == np.floor(arr))
        return ok


def wave_variables(questionnaire: QuestionnaireSpec) -> dict[str, tuple[str, dict[int, str] | None]]:
    """The wave's variables in file order, by internal name: (variable label, value labels).

    Starts from the 2012 list (:data:`VARIABLES`), drops and adds items, then replaces labels and
    moves the don't-know/refused codes as the questionnaire says.
    """
    out: dict[str, tuple[str, dict[int, str] | None]] = {}
    for name, (label, labels) in VARIABLES.items():
        if name not in questionnaire.dropped:
            out[name] = (label, dict(labels) if labels else None)
        for item in questionnaire.added:
            if item.after == name:
                out[item.name] = (item.label, dict(item.value_labels))
    for name, label in questionnaire.variable_labels:
        out[name] = (label, out[name][1])
    for name, labels in questionnaire.value_labels:
        out[name] = (out[name][0], dict(labels))
    for names, dk, ref in questionnaire.nonresponse_codes:
        for name in names:
            label, labels = out[name]
            kept = {code: text for code, text in (labels or {}).items() if code not in (DK, REF)}
            out[name] = (label, {**kept, dk: "Don't know", ref: "Refused"})
    return out


def wave_missing_values(questionnaire: QuestionnaireSpec) -> dict[str, tuple[int, ...]]:
    """The wave's user-missing codes by internal name (:data:`MISSING_VALUES` with the drift)."""
    out = {name: codes for name, codes in MISSING_VALUES.items() if name not in questionnaire.dropped}
    out.update({item.name: tuple(item.missing) for item in questionnaire.added})
    for names, dk, ref in questionnaire.nonresponse_codes:
        out.update({name: (dk, ref) for name in names})
    return out


def build_codebook(
    *, wave: str, seed: int, study_title: str, questionnaire: QuestionnaireSpec = QUESTIONNAIRE_2012
) -> Codebook:
    """Assemble the codebook of one wave's delivery.

    Parameters
    ----------
    wave : str
        Wave id (goes into the file label and notes).
    seed : int
        Seed of the generator (goes into the notes).
    study_title : str
        Title of the study the data are modeled on.
    questionnaire : QuestionnaireSpec, default wave 2012's
        The wave's names, codes and labels.
    """
    variables = wave_variables(questionnaire)
    value_labels_by_internal = {name: labels for name, (_, labels) in variables.items() if labels}
    valid_internal: dict[str, tuple[tuple[int, int], ...]] = {}
    for name in variables:
        if name in STRING_VARIABLES or name in DATE_VARIABLES:
            continue
        if name in VALID_RANGES_UNLABELLED:
            valid_internal[name] = VALID_RANGES_UNLABELLED[name]
        else:
            valid_internal[name] = tuple((code, code) for code in sorted(value_labels_by_internal[name]))
    formats_internal = {}
    for name in variables:
        if name in STRING_VARIABLES:
            formats_internal[name] = f"A{STRING_VARIABLES[name]}"
        elif name in DATE_VARIABLES:
            formats_internal[name] = "DATE11"
        else:
            formats_internal[name] = "F6.0"
    added_measures = {item.name: item.measure for item in questionnaire.added}
    measures_internal = {
        name: added_measures.get(name)
        or ("scale" if name in _SCALE else "ordinal" if name in _ORDINAL else "nominal")
        for name in variables
    }
    file_label = f"SYNTHETIC data modeled on UIC Insecure Communities, {wave}"
    if len(file_label) > 64:  # SPSS file labels hold 64 bytes
        raise ValueError(f"file label too long for SPSS: {file_label!r}")
    notes = (
        "SYNTHETIC DATA. Not the real study data and not real people.",
        f"Generated by survey-pipeline simulate (wave {wave}, seed {seed}).",
        "Modeled on the study by Nik Theodore, University of Illinois at Chicago,",
        *textwrap.wrap(f"May 2013: {study_title}.", width=80),
        *textwrap.wrap(
            f"Q10A is the published item verbatim; {questionnaire.modeled_items} are items modeled on "
            "press paraphrases. Specification: studies/insecure_communities.md section 7.",
            width=80,
        ),
        *textwrap.wrap(questionnaire.changes, width=80),
        "Includes deliberately injected data problems (see the answer-key CSV).",
        "No weights: the pipeline computes WEIGHT and WEIGHT_POP.",
    )
    if any(len(line) > 80 for line in notes):  # SPSS document lines hold 80 bytes
        raise ValueError("codebook notes must be at most 80 characters a line")

    name_of = questionnaire.delivered
    delivered = tuple(name_of(name) for name in variables)
    if len(set(delivered)) != len(delivered):
        raise ValueError(f"wave {wave}: renaming gives duplicate variable names")
    missing = wave_missing_values(questionnaire)
    return Codebook(
        variables=delivered,
        variable_labels=MappingProxyType({name_of(name): label for name, (label, _) in variables.items()}),
        value_labels=MappingProxyType(
            {name_of(name): MappingProxyType(dict(labels)) for name, labels in value_labels_by_internal.items()}
        ),
        missing_values=MappingProxyType({name_of(name): codes for name, codes in missing.items()}),
        valid_ranges=MappingProxyType({name_of(name): r for name, r in valid_internal.items()}),
        formats=MappingProxyType({name_of(name): f for name, f in formats_internal.items()}),
        measures=MappingProxyType({name_of(name): m for name, m in measures_internal.items()}),
        file_label=file_label,
        notes=notes,
        sources=MappingProxyType({name_of(name): name for name in variables}),
    )


def to_wave_codes(records: dict[str, np.ndarray], questionnaire: QuestionnaireSpec) -> dict[str, np.ndarray]:
    """Interview answers in 8/9 don't-know/refused codes -> the wave's codes (all rows).

    Returns a new dict; the arrays of items whose codes do not change are shared, not copied.
    """
    import numpy as np

    out = dict(records)
    for names, dk, ref in questionnaire.nonresponse_codes:
        for name in names:
            values = records[name]
            out[name] = np.where(values == DK, dk, np.where(values == REF, ref, values)).astype(values.dtype)
    return out


def derive_agecat(age: np.ndarray) -> np.ndarray:
    """AGECAT from AGE as the vendor derives it: 18-29, 30-44, 45-64, 65+ (incl. 97 = 97+), 99 -> 9.

    Values outside the codebook's AGE codes (and blanks) give system-missing.
    """
    import numpy as np

    out = np.full(age.shape, SYSMIS, dtype=np.int32)
    for code, (low, high) in enumerate(((18, 29), (30, 44), (45, 64), (65, 97)), start=1):
        out[(age >= low) & (age <= high)] = code
    out[age == REF2] = 9
    return out


def derive_status4(born: np.ndarray, citizen: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """STATUS4 from BORN, CITIZEN and LEGAL as the vendor derives it (codebook section 7.5).

    BORN 1 or 2 -> 1 U.S.-born; BORN 3 and CITIZEN 1 -> 2; BORN 3, CITIZEN 2 and LEGAL 1 or 2 -> 3;
    LEGAL 3 -> 4; anything else asked -> 9 Unknown; BORN not reached (a break-off) -> system-missing.
    The rules apply in that order, so a skip violation (say LEGAL = 3 with CITIZEN = 1) gets the
    code of the first rule it meets.
    """
    import numpy as np

    abroad = born == 3
    noncitizen = abroad & (citizen == 2)
    conditions = [
        born == SYSMIS,
        (born == 1) | (born == 2),
        abroad & (citizen == 1),
        noncitizen & np.isin(legal, (1, 2)),
        noncitizen & (legal == 3),
    ]
    return np.select(
        conditions,
        [SYSMIS, 1, 2, 3, 4],
        default=9,
    ).astype(np.int32)

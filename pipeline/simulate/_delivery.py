"""Assembling one synthetic delivery: population -> sample -> interviews -> problems -> frames.

This module owns :class:`Delivery` and :func:`simulate_delivery`, which run the other modules in
order (each with its own random stream) and turn their arrays into polars frames in codebook
order. It holds no study numbers of its own.

The raw delivery has no WEIGHT or WEIGHT_POP: computing weights is the pipeline's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import polars as pl

    from ._codebook import Codebook
    from ._problems import Injected

DEFAULT_WAVE = "2012"
#: Wave 2012's seed and size (each wave has its own: ``WaveSpec.default_seed`` and ``reference_n``,
#: used when ``simulate_delivery`` gets no seed or n).
DEFAULT_SEED = 20121120  # see README "The demo seed": the realized sample nearest the published figures
DEFAULT_N = 2004
#: Below 100 completes some strata would get no interview or no injected problem of a kind;
#: above 50,000 the per-stratum draws would start to exhaust the smallest frames' propensity mass.
MIN_N, MAX_N = 100, 50_000


@dataclass(frozen=True)
class Delivery:
    """One simulated survey delivery and everything known about how it was made.

    Attributes
    ----------
    wave : str
        Wave id.
    seed : int
        Seed the delivery was generated from.
    n : int
        Completes after removing duplicates, near-duplicates and partials.
    data : polars.DataFrame
        The raw delivery, one row per delivered record, columns in codebook order; blanks are
        null. Includes the injected problems. No weights.
    answer_key : polars.DataFrame
        One row per row of ``data``: ``row`` (1-based), ``RESPID``, 0/1 flags ``DQ_DUP``,
        ``DQ_NEARDUP``, ``DQ_OOR``, ``DQ_PARTIAL``, ``DQ_SPEEDER``, ``DQ_SKIP``, ``DQ_DATE``,
        ``DQ_DRIFT``, ``DQ_INTVR``, and ``DQ_DETAIL`` (what was injected, in words).
    targets : polars.DataFrame
        Raking targets by county (``county, county_label, variable, category, label, share,
        population, source, year``).
    truth : polars.DataFrame
        Population truths (``variable, levels, label, by, domain_code, domain, share,
        population, definition``).
    codebook : Codebook
        Variable labels, value labels, missing values, valid ranges and SPSS formats.
    clean : polars.DataFrame
        The ``n`` completes as truly answered, before any problem was injected (same columns
        and RESPIDs as ``data``): what a perfect cleaning would recover.
    """

    wave: str
    seed: int
    n: int
    data: pl.DataFrame
    answer_key: pl.DataFrame
    targets: pl.DataFrame
    truth: pl.DataFrame
    codebook: Codebook
    clean: pl.DataFrame


_POPULATIONS: dict[tuple[str, int], Any] = {}  # the last population built, for repeated samples of it


def simulate_delivery(
    *,
    wave: str = DEFAULT_WAVE,
    seed: int | None = None,
    n: int | None = None,
    population_seed: int | None = None,
    nonrespondents: bool = False,
) -> Delivery:
    """Simulate the raw delivery of one wave of the synthetic Insecure Communities study.

    Parameters
    ----------
    wave : str, default '2012'
        Wave id: ``"2012"`` or ``"2014"`` (see :mod:`pipeline.simulate._waves`).
    seed : int, optional
        Seed of every random draw. The same seed gives the same delivery on any machine.
        Default: the wave's demo seed (2012: 20121120; 2014: 20141133), which made the committed
        files in ``raw/``.
    n : int, optional
        Completes, allocated to the four counties and the landline and cell frames as the wave's
        design says (2012: equally, 501 each at 2,004, 50/50 frames; 2014: 20/25/35/20%, 40%
        landline); the injected problem counts scale with ``n``. Default: the wave's size
        (2012: 2,004; 2014: 2,000).
    population_seed : int, optional
        Seed of the synthetic population alone (default: ``seed``). Fixing it while ``seed``
        varies draws repeated samples from one finite population, as a coverage study needs;
        the last population built is kept in memory for that.
    nonrespondents : bool, default False
        Keep the eligible nonrespondents: rows with ``STATUS = 3`` appended after the delivered
        records, carrying the frame and screener variables only (see
        :mod:`pipeline.simulate._nonrespondents`), drawn from their own random stream, so every
        other row is the default delivery's. For a nonresponse adjustment's test; the demo's
        files in ``raw/`` have none.

    Returns
    -------
    Delivery
        The delivery, its answer key, the raking targets, the population truth and the codebook.

    Raises
    ------
    ConfigError
        For an unknown wave, a negative seed or ``n`` outside 100..50,000.

    Examples
    --------
    >>> d = simulate_delivery()
    >>> d.data.height, d.answer_key["DQ_PARTIAL"].sum()
    (2122, 100)
    """
    import numpy as np

    from ._codebook import SYSMIS, build_codebook, derive_agecat, derive_status4, to_wave_codes
    from ._fieldwork import assign_fieldwork
    from ._population import build_population
    from ._problems import FLAGS, inject_problems, scaled
    from ._random import stream
    from ._responses import answer_interviews
    from ._sample import allocate, draw_sample
    from ._targets import population_truth, raking_targets
    from ._waves import STUDY_TITLE, wave_spec

    spec = wave_spec(wave)
    seed = spec.default_seed if seed is None else seed
    n = spec.reference_n if n is None else n
    problems = []
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        problems.append(f"seed must be a non-negative integer (got {seed!r})")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not MIN_N <= n <= MAX_N:
        problems.append(f"n must be an integer from {MIN_N} to {MAX_N} (got {n!r})")
    if problems:
        raise ConfigError("simulate: invalid arguments", problems=problems)
    seed, n = int(seed), int(n)

    key = spec.stream_key
    pop_seed = seed if population_seed is None else int(population_seed)
    cached = _POPULATIONS.get((spec.wave, pop_seed))
    if cached is None:
        cached = build_population(spec.population, stream(pop_seed, "population", key))
        _POPULATIONS.clear()
        if population_seed is not None:
            _POPULATIONS[(spec.wave, pop_seed)] = cached
    pop = cached
    allocation = allocate(spec.sample, n, len(spec.population.county_adults))
    sample = draw_sample(pop, spec.sample, allocation, stream(seed, "sample", key))
    answers = answer_interviews(pop, sample.person, sample.frame, spec.responses, stream(seed, "responses", key))
    county = pop.county[sample.person].astype(np.int64)
    fieldwork = assign_fieldwork(
        spec.fieldwork,
        county=county,
        language=pop.language[sample.person].astype(np.int64),
        spare=scaled(spec.problems.near_duplicate_pairs, n, spec.problems.reference_n),
        reserve_fabricator=spec.problems.fabricated > 0,
        rng=stream(seed, "fieldwork", key),
    )
    rows = sample.person.shape[0]
    records: dict[str, np.ndarray] = {
        "RESPID": fieldwork.respid,
        "PHONE_HASH": fieldwork.phone_hash,
        "COUNTY": (county + 1).astype(np.int32),
        "FRAME": (sample.frame + 1).astype(np.int32),
        "INTDATE": fieldwork.date,
        "DURATION": fieldwork.duration,
        "STATUS": np.ones(rows, dtype=np.int32),
        "INTVR": fieldwork.interviewer,
        "S1": np.ones(rows, dtype=np.int32),  # everyone interviewed passed the screener
        **answers,
    }
    records["AGECAT"] = derive_agecat(records["AGE"])
    records["STATUS4"] = derive_status4(records["BORN"], records["CITIZEN"], records["LEGAL"])
    records = to_wave_codes(records, spec.questionnaire)

    codebook = build_codebook(wave=spec.wave, seed=seed, study_title=STUDY_TITLE, questionnaire=spec.questionnaire)
    internal = set(codebook.sources.values())
    if internal != set(records):  # the questionnaire and the response model name the same items
        raise RuntimeError(
            f"simulate: wave {spec.wave}: generated items {sorted(set(records) - internal)} are not in the "
            f"codebook, codebook items {sorted(internal - set(records))} were not generated"
        )
    complete = sample.complete
    clean_order = np.lexsort((records["RESPID"][complete], fieldwork.minute[complete], records["INTDATE"][complete]))
    clean = _frame({name: col[complete][clean_order] for name, col in records.items()}, codebook, SYSMIS)

    injected = inject_problems(
        records,
        complete=complete,
        minute=fieldwork.minute,
        spec=spec.problems,
        fieldwork=spec.fieldwork,
        n=n,
        fabricator=fieldwork.fabricator,
        spare_respids=fieldwork.spare_respids,
        rng=stream(seed, "problems", key),
        questionnaire=spec.questionnaire,
    )
    out_records, detail, drift = injected.records, list(injected.detail), None
    if nonrespondents:
        out_records, codebook, extra, drift = _with_nonrespondents(
            pop, spec, sample, allocation, injected.records, codebook, used=fieldwork.spare_respids, rng=stream(seed, "nonrespondents", key)
        )
        detail += extra
    data = _frame(out_records, codebook, SYSMIS)
    answer_key = _answer_key(injected, FLAGS, detail=detail, respid=out_records["RESPID"], drift=drift)

    source = f"synthetic population, survey-pipeline simulate wave={spec.wave} seed={pop_seed}; {spec.targets_basis}"
    return Delivery(
        wave=spec.wave,
        seed=seed,
        n=n,
        data=data,
        answer_key=answer_key,
        targets=raking_targets(pop, year=spec.year, source=source),
        truth=population_truth(pop, spec.responses),
        codebook=codebook,
        clean=clean,
    )


def _frame(records: dict[str, np.ndarray], codebook: Codebook, sysmis: int) -> pl.DataFrame:
    """Column arrays (internal names) -> a polars frame in codebook order and names (SYSMIS -> null,
    dates -> Date)."""
    import polars as pl

    columns = []
    for name in codebook.variables:
        values = records[codebook.sources[name]]
        fmt = codebook.formats[name]
        if fmt.startswith("A"):
            columns.append(pl.Series(name, values.tolist(), dtype=pl.String))
        elif fmt.startswith("DATE"):
            columns.append(pl.Series(name, values.astype("datetime64[D]")).cast(pl.Date))
        else:
            series = pl.Series(name, values.astype("int32"), dtype=pl.Int32)
            columns.append(series.set(series == sysmis, None))
    return pl.DataFrame(columns)


def _answer_key(
    injected: Injected,
    flags: tuple[str, ...],
    *,
    detail: list[str] | None = None,
    respid: np.ndarray | None = None,
    drift: np.ndarray | None = None,
) -> pl.DataFrame:
    """The answer key frame: row, RESPID, the 0/1 flags and the injection details (``detail`` and
    ``respid``: those of the rows after the injected records too, the kept nonrespondents, flagged 0
    but ``DQ_DRIFT`` as ``drift`` says: the drifted vendor batch's nonrespondents)."""
    import numpy as np
    import polars as pl

    detail = list(injected.detail) if detail is None else detail
    rows, extra = len(detail), len(detail) - len(injected.detail)
    respid = injected.records["RESPID"] if respid is None else respid
    return pl.DataFrame(
        [
            pl.Series("row", range(1, rows + 1), dtype=pl.Int32),
            pl.Series("RESPID", respid, dtype=pl.Int32),
            *[
                pl.Series(flag, np.concatenate([
                    injected.flags[flag],
                    drift.astype(np.int8) if flag == "DQ_DRIFT" and drift is not None else np.zeros(extra, dtype=np.int8),
                ]), dtype=pl.Int8)
                for flag in flags
            ],
            pl.Series("DQ_DETAIL", [text or None for text in detail], dtype=pl.String),
        ]
    )


def _with_nonrespondents(
    pop: Any, spec: Any, sample: Any, allocation: Any, records: dict[str, np.ndarray], codebook: Codebook, *, used: np.ndarray, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], Codebook, list[str], np.ndarray]:
    """The records with the eligible nonrespondents appended, the codebook labelling ``STATUS = 3``,
    the answer key's details of the new rows and which of them are in the drifted vendor batch
    (its codes applied to them too: 2014 Harris's SEX 0/1)."""
    import dataclasses

    import numpy as np

    from ._codebook import SYSMIS
    from ._fieldwork import RESPID_RANGE, draw_dates, draw_phone_hashes
    from ._nonrespondents import NONRESPONDENT_LABEL, NONRESPONDENT_STATUS, draw_nonrespondents, nonrespondent_records
    from ._random import permutation

    nr = draw_nonrespondents(pop, spec.sample, sample, allocation, rng)
    m = nr.person.shape[0]
    taken = set(records["RESPID"].tolist()) | set(used.tolist())
    ids = RESPID_RANGE[0] + permutation(rng, RESPID_RANGE[1] - RESPID_RANGE[0] + 1)
    respids = np.array([i for i in ids[: m + len(taken)] if int(i) not in taken][:m], dtype=np.int32)
    phones = draw_phone_hashes(spec.fieldwork, pop.county[nr.person].astype(np.int64), rng)
    if set(phones.tolist()) & set(records["PHONE_HASH"].tolist()):
        raise RuntimeError("simulate: a nonrespondent's phone number repeats an interviewed one")  # practically never
    dates, _ = draw_dates(spec.fieldwork, m, rng)
    rows = nonrespondent_records(pop, nr, records, respids=respids, phone_hashes=phones, dates=dates, sysmis=SYSMIS)
    batch = rows["COUNTY"] == spec.problems.drift_county  # the drifted vendor batch codes its nonrespondents alike
    for names, pairs in spec.problems.drift_recodes:
        for name in names:
            asked = rows[name]
            delivered = asked.copy()
            for old, new in pairs:
                delivered[batch & (asked == old)] = new
            rows[name] = delivered
    merged = {name: np.concatenate([col, rows[name]]) for name, col in records.items()}
    status = next(name for name, source in codebook.sources.items() if source == "STATUS")
    labels = {**codebook.value_labels, status: {**codebook.value_labels[status], NONRESPONDENT_STATUS: NONRESPONDENT_LABEL}}
    ranges = dict(codebook.valid_ranges)
    if status in ranges:
        ranges[status] = (*ranges[status], (NONRESPONDENT_STATUS, NONRESPONDENT_STATUS))
    codebook = dataclasses.replace(codebook, value_labels=labels, valid_ranges=ranges)
    return merged, codebook, [f"eligible nonrespondent (STATUS = {NONRESPONDENT_STATUS}), kept for the nonresponse adjustment"] * m, batch

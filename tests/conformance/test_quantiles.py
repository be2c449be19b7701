"""``expected/quantiles.csv``: ``svyquantile(..., ci = TRUE, qrule = q, interval.type = i)`` (R survey 4.1-1).

Reproduced with :func:`pipeline.survey.quantiles.quantile`. Quantile definitions differ
between packages; these are R survey's (``qrule``), compared for the same rule and interval
type. Compared: estimate, the interval (NA bounds must be NaN), R's derived ``se`` and df.
"""

from __future__ import annotations

FILE = "quantiles.csv"

KNOWN_GAPS: list[tuple[str, str | None, str]] = []


def test_quantiles_match_r(ref):
    from pipeline.survey import estimators as est

    expected = ref.read(FILE)

    def compute(case, rows):
        _, var, qrule, itype, dname = case.split(":")
        d = ref.design(dname)
        probs = [float(r["quantile"]) for r in rows]
        q = est.quantile(
            d, var, probs=probs, qrule=qrule, interval_type="mean" if itype == "default(mean)" else itype
        )
        return {
            ref.level_label(p): {
                "estimate": float(q.estimate[i]),
                "se": float(q.se[i]),
                "ci_low": float(q.ci_low[i]),
                "ci_high": float(q.ci_high[i]),
                "df": float(q.df[i]),
            }
            for i, p in enumerate(probs)
        }

    fields = {
        "estimate": {},
        "se": {"noise": True, "na_is_value": True},
        "ci_low": {"na_is_value": True},
        "ci_high": {"na_is_value": True},
        "df": {},
    }
    out = ref.check_rows(
        FILE, expected, compute, key=lambda row: row["level"], fields=fields, scale=ref.estimate_scale, gaps=KNOWN_GAPS
    )
    ref.assert_outcome(FILE, out)

"""Small, hand-made estimates for the exporter tests (the schema of estimates.csv)."""

from __future__ import annotations

import polars as pl

from pipeline.exporters.tables import prepare_estimates

COLUMNS = ("wave", "estimate_id", "statistic", "variable", "level", "by", "domain", "n", "estimate", "se",
           "ci_low", "ci_high", "ci_method", "conf_level", "df", "deff", "flag", "denominator", "title")


def rows(est_id: str, variable: str, title: str, items: list[tuple[str, str, int, float, float, str]], *, level: str = "Agree", wave: str = "1") -> list[dict]:
    """(by, domain, n, estimate, se, flag) -> estimates.csv rows with Wald-like bounds."""
    out = []
    for by, domain, n, p, se, flag in items:
        out.append({
            "wave": wave, "estimate_id": est_id, "statistic": "proportion", "variable": variable, "level": level,
            "by": by, "domain": domain, "n": n, "estimate": p, "se": se, "ci_low": max(0.0, p - 1.96 * se),
            "ci_high": min(1.0, p + 1.96 * se), "ci_method": "logit", "conf_level": 0.95, "df": float(n - 1),
            "deff": 1.5, "flag": flag, "denominator": "all", "title": title,
        })
    return out


def small_estimates(wave: str = "1", shift: float = 0.0) -> pl.DataFrame:
    """Two questions, overall and by region (three regions, one suppressed)."""
    data = rows("q_agree", "Q1", "Agrees with the statement", [
        ("", "All", 900, 0.4449 + shift, 0.02, ""),
        ("REGION", "North", 400, 0.3051 + shift, 0.03, ""),
        ("REGION", "South", 450, 0.5549 + shift, 0.03, "df<8"),
        ("REGION", "East", 50, 0.5, 0.1, "n_eff<30"),
    ], wave=wave)
    data += rows("q_often", "Q2", "Often", [
        ("", "All", 880, 0.6125 + shift, 0.018, ""),
        ("REGION", "North", 390, 0.6, 0.03, ""),
        ("REGION", "South", 440, 0.62, 0.03, ""),
    ], level="Very or somewhat often", wave=wave)
    return prepare_estimates(pl.DataFrame(data).select(COLUMNS))


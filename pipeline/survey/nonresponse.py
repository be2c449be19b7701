"""Nonresponse adjustment by weighting classes, with the collapsing of classes that break the rules.

Owns :func:`collapse_classes` (merge a class with too few respondents, or too large a factor,
into the neighbour sharing more leading class variables), :func:`nonresponse_adjustment` (within
each final class the respondents carry the base weight of the class's nonrespondents:
factor = sum of all weights / sum of respondent weights) and :func:`nonresponse_replicates` (the
same factors redone in every replicate). The weight stage evaluates ``weight.nonresponse`` (the
respondent condition, the class columns) and passes plain arrays and frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipeline.errors import CalibrationError

__all__ = ["NonresponseAdjustment", "collapse_classes", "nonresponse_adjustment", "nonresponse_replicates"]


@dataclass(frozen=True)
class NonresponseAdjustment:
    """Weighting-class nonresponse adjustment of one sample.

    Attributes
    ----------
    respondent : ndarray of bool, shape (n,)
    class_index : ndarray of int, shape (n,)
        Final (collapsed) class of every row, ``0 .. n_classes - 1``.
    factor : ndarray, shape (n,)
        Adjustment factor of every respondent (0 for nonrespondents).
    classes : list of dict
        Per final class: ``class`` (label), ``cells`` (the original classes merged into it),
        ``respondents``, ``nonrespondents``, ``factor``.
    collapses : list of dict
        Every merge, in order: ``class``, ``into``, ``reason``.
    """

    respondent: np.ndarray
    class_index: np.ndarray
    factor: np.ndarray
    classes: list[dict[str, Any]]
    collapses: list[dict[str, Any]]


def _common_prefix(a: tuple[Any, ...], b: tuple[Any, ...]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def collapse_classes(
    keys: Sequence[tuple[Any, ...]],
    respondents: Sequence[float],
    w_all: Sequence[float],
    w_respondents: Sequence[float],
    *,
    min_respondents: int,
    max_factor: float | None,
    label: Callable[[tuple[Any, ...]], str],
) -> tuple[list[list[int]], list[dict[str, Any]]]:
    """Merge weighting classes until every class meets the rules.

    ``keys`` are the classes' values of the class variables, sorted. Repeatedly, the first class
    (in that order) with fewer than ``min_respondents`` respondents, or with a factor
    ``w_all / w_respondents`` above ``max_factor``, is merged with the adjacent class that shares
    more leading class variables with it (the next one on a tie; the previous one for the last).

    Returns
    -------
    groups : list of list of int
        The final classes as lists of indices into ``keys`` (contiguous, in order).
    collapses : list of dict
        ``{"class", "into", "reason"}`` for every merge.

    Raises
    ------
    CalibrationError
        When even one class holding everything breaks a rule.

    Examples
    --------
    >>> collapse_classes([(1,), (2,)], [30, 5], [30, 5], [30, 5], min_respondents=20, max_factor=None,
    ...                  label=lambda k: f"A={k[0]}")[0]
    [[0, 1]]
    """
    groups = [[i] for i in range(len(keys))]

    def stats(g: list[int]) -> tuple[float, float]:
        r = sum(respondents[i] for i in g)
        wr = sum(w_respondents[i] for i in g)
        f = math.inf if wr <= 0 else sum(w_all[i] for i in g) / wr
        return r, f

    def name(g: list[int]) -> str:
        return " + ".join(label(keys[i]) for i in g)

    collapses: list[dict[str, Any]] = []
    while True:
        failing = None
        for j, g in enumerate(groups):
            r, f = stats(g)
            if r < min_respondents:
                failing, reason = j, f"{int(r)} respondent(s), fewer than min_respondents = {min_respondents}"
                break
            if max_factor is not None and f > max_factor:
                failing, reason = j, f"adjustment factor {f:.4g} above max_factor = {max_factor:g}"
                break
        if failing is None:
            return groups, collapses
        if len(groups) == 1:
            r, f = stats(groups[0])
            raise CalibrationError(
                f"even a single class of all rows breaks the rules ({int(r)} respondent(s), "
                f"adjustment factor {f:.4g}; min_respondents = {min_respondents}, max_factor = {max_factor})",
                hint="lower min_respondents or raise max_factor",
            )
        j = failing
        candidates = []
        if j + 1 < len(groups):
            candidates.append((_common_prefix(keys[groups[j][-1]], keys[groups[j + 1][0]]), 1, j + 1))
        if j > 0:
            candidates.append((_common_prefix(keys[groups[j - 1][-1]], keys[groups[j][0]]), 0, j - 1))
        _, _, k = max(candidates)  # longest shared prefix; on a tie the next class (flag 1)
        collapses.append({"class": name(groups[j]), "into": name(groups[k]), "reason": reason})
        lo, hi = min(j, k), max(j, k)
        groups[lo:hi + 1] = [groups[lo] + groups[hi]]


def nonresponse_adjustment(
    classes: pl.DataFrame,
    respondent: np.ndarray,
    w_base: np.ndarray,
    *,
    min_respondents: int,
    max_factor: float | None,
) -> NonresponseAdjustment:
    """Weighting-class nonresponse adjustment with collapsing (see :func:`collapse_classes`).

    Parameters
    ----------
    classes : polars.DataFrame
        The class variables, one row per sampled unit (respondents and nonrespondents), no nulls.
    respondent : ndarray of bool, shape (n,)
    w_base : ndarray, shape (n,)
        Base weights of every row.
    min_respondents, max_factor
        The collapsing rules.
    """
    names = list(classes.columns)
    cells = (
        classes
        .with_columns(pl.Series("_r", respondent), pl.Series("_w", w_base))
        .group_by(names)
        .agg(
            pl.col("_r").sum().alias("respondents"),
            (~pl.col("_r")).sum().alias("nonrespondents"),
            pl.col("_w").sum().alias("w_all"),
            pl.col("_w").filter(pl.col("_r")).sum().alias("w_respondents"),
        )
        .sort(names)
    )
    keys = cells.select(names).rows()

    def label(key: tuple[Any, ...]) -> str:
        return ", ".join(f"{c}={v}" for c, v in zip(names, key))

    groups, collapses = collapse_classes(
        keys,
        cells.get_column("respondents").to_list(),
        cells.get_column("w_all").to_list(),
        cells.get_column("w_respondents").to_list(),
        min_respondents=min_respondents,
        max_factor=max_factor,
        label=label,
    )
    cell_class = np.empty(len(keys), dtype=np.int64)
    for k, g in enumerate(groups):
        cell_class[g] = k
    cell_of_row = (
        classes.with_row_index("_i")
        .join(cells.select(names).with_row_index("_cell"), on=names, how="left")
        .sort("_i").get_column("_cell").to_numpy().astype(np.int64)
    )
    class_index = cell_class[cell_of_row]
    n_classes = len(groups)
    w_all = np.bincount(class_index, weights=w_base, minlength=n_classes)
    w_resp = np.bincount(class_index, weights=np.where(respondent, w_base, 0.0), minlength=n_classes)
    class_factor = w_all / w_resp
    report = []
    for k, g in enumerate(groups):
        in_class = class_index == k
        report.append(
            {
                "class": " + ".join(label(keys[i]) for i in g),
                "cells": [dict(zip(names, keys[i])) for i in g],
                "respondents": int((in_class & respondent).sum()),
                "nonrespondents": int((in_class & ~respondent).sum()),
                "factor": float(class_factor[k]),
            }
        )
    factor = np.where(respondent, class_factor[class_index], 0.0)
    return NonresponseAdjustment(respondent=respondent, class_index=class_index, factor=factor, classes=report, collapses=collapses)


def nonresponse_replicates(reps: np.ndarray, nr: NonresponseAdjustment) -> tuple[np.ndarray, int]:
    """Redo the class factors in every replicate; returns the respondents' rows and the number of
    (class, replicate) pairs with no respondent weight (their weight cannot be carried)."""
    out = np.zeros_like(reps)
    lost = 0
    for k in range(len(nr.classes)):
        rows = nr.class_index == k
        resp = rows & nr.respondent
        total = reps[rows].sum(axis=0)
        carried = reps[resp].sum(axis=0)
        empty = carried <= 0
        lost += int((empty & (total > 0)).sum())
        factor = np.where(empty, 1.0, total / np.where(empty, 1.0, carried))
        out[resp] = reps[resp] * factor
    return out[nr.respondent], lost

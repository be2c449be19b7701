"""The statistics moved out of the stages into pipeline.survey (issue 11, item 2), tested where they now
live: plain arguments in, no config objects; argument errors are ArgumentError (a ValueError)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from pipeline.errors import ArgumentError, CalibrationError, ConfigError, PipelineError, translate_argument_error
from pipeline.survey.adjustments import GregAdjustment, PostStratAdjustment, RakingAdjustment, calibration_adjustment
from pipeline.survey.changes import independent_difference
from pipeline.survey.design import Design
from pipeline.survey.nonresponse import collapse_classes, nonresponse_adjustment, nonresponse_replicates
from pipeline.survey.trimming import outside_caps, trim_caps, trim_groups, trim_weights


def test_argument_error_is_a_value_error_and_a_usage_error():
    exc = ArgumentError("design: unknown lonely_psu option 'drop'", hint="expected one of fail, remove")
    assert isinstance(exc, ValueError) and isinstance(exc, PipelineError) and not isinstance(exc, ConfigError)
    assert exc.exit_code == 2
    translated = translate_argument_error(exc, "design.lonely_psu", prefix="design")
    assert isinstance(translated, ConfigError)
    assert translated.message == "design.lonely_psu: unknown lonely_psu option 'drop'"
    assert translated.hint == "expected one of fail, remove"


def test_survey_raises_argument_errors_not_config_errors():
    frame = pl.DataFrame({"w": [1.0, 2.0, 3.0], "y": [1, 0, 1]})
    with pytest.raises(ArgumentError, match="unknown lonely_psu option 'drop'") as info:
        Design.from_frame(frame, weights="w", lonely_psu="drop")
    assert not isinstance(info.value, ConfigError)


def test_independent_difference_is_the_t_test_of_two_independent_estimates():
    est, se, df = np.array([0.5, 0.3, 0.2]), np.array([0.03, 0.02, 0.0]), np.array([30.0, 10.0, 5.0])
    est0, se0, df0 = np.array([0.4, 0.35, 0.2]), np.array([0.04, 0.01, 0.0]), np.array([20.0, 12.0, 5.0])
    d = independent_difference(est, se, df, est0, se0, df0, 0.95)
    want_se = np.sqrt(se**2 + se0**2)
    np.testing.assert_allclose(d.estimate, est - est0, rtol=1e-15)
    np.testing.assert_allclose(d.se, want_se, rtol=1e-15)
    np.testing.assert_array_equal(d.df, df + df0)
    t = stats.t.ppf(0.975, df + df0)
    np.testing.assert_allclose(d.ci_low, est - est0 - t * want_se, rtol=1e-14)
    np.testing.assert_allclose(d.ci_high, est - est0 + t * want_se, rtol=1e-14)
    assert d.p_value[0] == pytest.approx(2 * stats.t.sf(0.1 / 0.05, 50), rel=1e-12)
    assert math.isnan(d.p_value[2])  # no variance: no test


def test_nonresponse_classes_take_plain_arrays():
    classes = pl.DataFrame({"A": [1, 1, 1, 2, 2, 2, 2], "B": [1, 1, 2, 1, 1, 1, 2]})
    respondent = np.array([True, False, True, True, True, False, True])
    w = np.array([1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    nr = nonresponse_adjustment(classes, respondent, w, min_respondents=1, max_factor=None)
    assert [c["class"] for c in nr.classes] == ["A=1, B=1", "A=1, B=2", "A=2, B=1", "A=2, B=2"]
    assert nr.factor.tolist() == [3.0, 0.0, 1.0, 1.5, 1.5, 0.0, 1.0]
    reps = np.column_stack([w, 2 * w])
    carried, lost = nonresponse_replicates(reps, nr)
    np.testing.assert_allclose(carried[:, 1], 2 * (w * nr.factor)[respondent])
    assert lost == 0


def test_collapsing_error_names_the_rules_not_a_config_key():
    with pytest.raises(CalibrationError) as info:
        collapse_classes([(1,), (2,)], [3, 4], [10, 10], [3, 4], min_respondents=20, max_factor=None, label=str)
    assert info.value.message.startswith("even a single class of all rows breaks the rules (7 respondent(s)")
    assert "weight." not in info.value.message


def test_grouped_trimming_is_trim_weights_per_group():
    rng = np.random.default_rng(3)
    w = rng.lognormal(0, 0.6, 40)
    groups = np.repeat([0, 1], 20)
    got, counts = trim_groups(w, groups, n_groups=2, lower=0.5, upper=2.5, relative_to="median", strict=True)
    for g in (0, 1):
        rows = groups == g
        med = np.median(w[rows])
        np.testing.assert_allclose(got[rows], trim_weights(w[rows], lower=0.5 * med, upper=2.5 * med, strict=True).weights, rtol=1e-15)
    lo, hi = trim_caps(got, groups, lower=0.5, upper=2.0, relative_to="absolute")
    assert lo.tolist() == [0.5] * 40 and hi.tolist() == [2.0] * 40
    assert counts["n_trimmed"] > 0
    lo, hi = trim_caps(w, groups, lower=0.5, upper=2.0)
    assert not outside_caps(np.clip(w, lo, hi), lo, hi).any()
    with pytest.raises(ArgumentError, match="unknown relative_to 'mode'"):
        trim_caps(w, groups, lower=0.5, upper=2.0, relative_to="mode")


def test_calibration_adjustment_by_method():
    frame = pl.DataFrame({"G": [1, 1, 2, 2, 2, 1], "X": [1, 2, 1, 2, 2, 1], "Z": [1, 1, 2, 2, 1, 2]})
    w = np.array([1.0, 2.0, 3.0, 1.5, 2.5, 1.0])
    assert isinstance(calibration_adjustment(frame, w, method="rake", by=["G"], variables=["X", "Z"]), RakingAdjustment)
    assert isinstance(calibration_adjustment(frame, w, method="poststratify", by=[], variables=["X"]), PostStratAdjustment)
    greg = calibration_adjustment(frame, w, method="calibrate", by=["G"], variables=["X"], uncalibrated=np.ones(6))
    assert isinstance(greg, GregAdjustment) and len(greg.blocks) == 2
    # the residuals of the calibration variables' own indicators vanish (they are calibrated exactly)
    x = (frame.get_column("X").to_numpy() == 1).astype(float) * w
    np.testing.assert_allclose(greg.residualize(x), 0.0, atol=1e-12)
    with pytest.raises(ArgumentError, match="unknown method 'ipf'"):
        calibration_adjustment(frame, w, method="ipf", by=[], variables=["X"])
    with pytest.raises(ArgumentError, match="needs the uncalibrated weights"):
        calibration_adjustment(frame, w, method="calibrate", by=[], variables=["X"])

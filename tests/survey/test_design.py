"""Design construction (R ``svydesign`` semantics), immutability, domains and reweighting."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from pipeline.errors import ArgumentError, DesignError
from pipeline.survey.design import Design, VarianceAdjustment


def _frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "h": [1, 1, 1, 1, 2, 2, 2, 2],
            "psu": [1, 1, 2, 2, 1, 1, 2, 2],
            "w": [2.0, 2, 3, 3, 4, 4, 5, 5],
            "N": [10, 10, 10, 10, 20, 20, 20, 20],
            "y": [1.0, 2, 3, 4, 5, 6, 7, 8],
        }
    )


class TestConstruction:
    def test_nested_clusters_and_degf(self):
        d = Design.from_frame(_frame(), weights="w", ids=["psu"], strata="h", nest=True)
        assert d.degf == 2  # 4 PSUs - 2 strata
        assert d.n_rows == 8
        assert len(np.unique(d.clusters[:, 0])) == 4

    def test_clusters_not_nested_without_nest(self):
        with pytest.raises(DesignError, match=r"clusters are not nested in strata at the first stage"):
            Design.from_frame(_frame(), weights="w", ids=["psu"], strata="h")

    def test_single_psu_is_refused(self):
        f = _frame().with_columns(pl.lit(1).alias("one"))
        with pytest.raises(DesignError, match="single primary sampling unit"):
            Design.from_frame(f, weights="w", ids=["one"])

    def test_weights_from_fpc_counts_and_fractions_agree(self):
        f = _frame().with_columns((4 / pl.col("N")).alias("frac"))
        a = Design.from_frame(f, strata="h", fpc=["N"])
        b = Design.from_frame(f, strata="h", fpc=["frac"])
        np.testing.assert_allclose(a.weights, [2.5] * 4 + [5.0] * 4)
        np.testing.assert_allclose(a.weights, b.weights)
        np.testing.assert_allclose(a.popsize, b.popsize)

    def test_fpc_smaller_than_sample_is_refused(self):
        f = _frame().with_columns(pl.lit(3).alias("tiny"))
        with pytest.raises(DesignError, match=r"more than 100% sampling: row 1, stage 1 \('tiny'\): population 3 but 4 units sampled"):
            Design.from_frame(f, strata="h", fpc=["tiny"])

    def test_fpc_mixing_counts_and_fractions(self):
        f = _frame().with_columns(pl.Series("bad", [0.5, 10, 10, 10, 10, 10, 10, 10]))
        with pytest.raises(DesignError, match="mixes population counts and sampling fractions"):
            Design.from_frame(f, fpc=["bad"])

    def test_missing_design_values_are_reported_with_rows(self):
        f = _frame().with_columns(pl.Series("w", [1.0, None, 1, 1, 1, 1, None, 1]))
        with pytest.raises(DesignError) as err:
            Design.from_frame(f, weights="w")
        assert "the weights column 'w' has 2 missing value(s) (rows 2, 7)" in str(err.value)

    def test_unknown_column(self):
        with pytest.raises(DesignError, match="the strata column 'nope' is not in the data"):
            Design.from_frame(_frame(), strata="nope")

    def test_bad_lonely_option_is_a_config_error(self):
        with pytest.raises(ArgumentError, match="unknown lonely_psu option 'drop'"):
            Design.from_frame(_frame(), weights="w", lonely_psu="drop")  # type: ignore[arg-type]

    def test_weights_and_probs_together(self):
        f = _frame().with_columns((1 / pl.col("w")).alias("p"))
        with pytest.raises(ArgumentError, match="either weights or probs"):
            Design.from_frame(f, weights="w", probs="p")

    def test_probs(self):
        f = _frame().with_columns((1 / pl.col("w")).alias("p"))
        np.testing.assert_allclose(Design.from_frame(f, probs="p").weights, f["w"].to_numpy())

    def test_fpc_per_stage_required(self):
        with pytest.raises(DesignError, match=r"fpc has 1 column\(s\) \(N\) but the design has 2 stage\(s\)"):
            Design.from_frame(_frame(), ids=["h", "psu"], fpc=["N"])


class TestImmutability:
    def test_arrays_are_read_only(self):
        d = Design.from_frame(_frame(), weights="w")
        with pytest.raises(ValueError):
            d.weights[0] = 99.0

    def test_subset_keeps_rows_and_zeroes_weights(self):
        d = Design.from_frame(_frame(), weights="w", ids=["psu"], strata="h", nest=True)
        mask = d.frame["h"].to_numpy() == 1
        sub = d.subset(mask)
        assert sub.frame.height == 8
        assert sub.n_rows == 4
        assert sub.degf == 1  # R: degf(subset(design, h == 1)) = 2 PSUs - 1 stratum
        np.testing.assert_array_equal(sub.weights[~mask], 0.0)
        np.testing.assert_array_equal(d.weights, _frame()["w"].to_numpy())  # original untouched

    def test_reweight_returns_new_design_with_adjustment(self):
        class Centre:
            def residualize(self, x: np.ndarray) -> np.ndarray:
                return x - x.mean(axis=0)

        d = Design.from_frame(_frame(), weights="w")
        new = d.reweight(np.ones(8), Centre())
        assert isinstance(Centre(), VarianceAdjustment)
        assert new.adjustments and not d.adjustments
        np.testing.assert_array_equal(new.weights, 1.0)

    def test_reweight_checks_length_and_sign(self):
        d = Design.from_frame(_frame(), weights="w")
        with pytest.raises(DesignError, match="got 3 weights for 8 rows"):
            d.reweight(np.ones(3))
        with pytest.raises(DesignError, match="row 2 has -1.0"):
            d.reweight(np.array([1.0, -1, 1, 1, 1, 1, 1, 1]))


class TestReplicateDesign:
    def test_defaults_follow_svrepdesign(self):
        rep = np.array([[2, 0], [0, 2], [2, 0], [0, 2]], dtype=float)
        f = pl.DataFrame({"y": [1.0, 2, 3, 4]})
        d = Design.from_replicate_weights(f, replicate_weights=rep, type="BRR", combined_weights=False)
        assert d.replicates.scale == 0.5
        d = Design.from_replicate_weights(f, replicate_weights=rep, type="Fay", rho=0.5)
        assert d.replicates.scale == pytest.approx(1 / (2 * 0.25))
        with pytest.raises(ArgumentError, match="type='Fay' needs rho"):
            Design.from_replicate_weights(f, replicate_weights=rep, type="Fay")

    def test_degf_is_rank_minus_one(self):
        rep = np.array([[2, 0, 1], [0, 2, 1], [2, 0, 1], [0, 2, 1]], dtype=float)
        d = Design.from_replicate_weights(pl.DataFrame({"y": [1.0, 2, 3, 4]}), replicate_weights=rep, type="other")
        assert d.degf == 1  # third column = mean of the first two


class TestPerformanceContracts:
    """Issue 3, item 7: the design neither copies replicate weights nor sorts to count PSUs."""

    def test_replicate_weights_are_used_in_place(self):
        f = pl.DataFrame({"y": np.arange(100.0)})
        reps = np.random.default_rng(0).uniform(1, 2, (100, 8))
        for array in (reps, np.asfortranarray(reps), reps.astype(np.float32)):
            d = Design.from_replicate_weights(f, replicate_weights=array, type="JK1")
            assert np.shares_memory(d.replicates.weights, array)
            assert d.replicates.weights.dtype == array.dtype

    def test_domain_degf_counts_psus_and_strata_with_weight(self):
        rng = np.random.default_rng(4)
        n = 300
        w = rng.uniform(1, 5, n)
        w[rng.random(n) < 0.05] = 0.0
        f = pl.DataFrame({"h": rng.integers(0, 5, n), "psu": rng.integers(0, 4, n), "w": w, "g": rng.integers(0, 3, n)})
        d = Design.from_frame(f, weights="w", ids=["psu"], strata="h", nest=True)
        for base in (d, d.subset(f["g"].to_numpy() != 2)):
            for mask in (None, f["g"].to_numpy() == 1, f["h"].to_numpy() == 0, np.zeros(n, dtype=bool)):
                rows = base.in_design if mask is None else base.in_design & mask
                inset = rows & (base.weights != 0)
                expected = len(np.unique(base.clusters[inset, 0])) - len(np.unique(base.strata[inset, 0])) if inset.any() else 0
                assert base.domain_degf(mask) == expected

    def test_factorize_orders_combinations_as_unique_rows(self):
        from pipeline.survey._design_build import factorize as _factorize

        rng = np.random.default_rng(5)
        for columns in (
            [rng.integers(-3, 40, 500)],
            [rng.integers(0, 5, 500), rng.integers(0, 7, 500)],
            [rng.integers(0, 2**40, 500), rng.integers(-5, 5, 500), rng.integers(0, 3, 500)],
            [rng.choice(["b", "a", "c"], 500), rng.uniform(0, 3, 500).round()],
        ):
            codes = [np.unique(c, return_inverse=True)[1].reshape(-1) for c in columns]
            expected = np.unique(np.column_stack(codes), axis=0, return_inverse=True)[1].reshape(-1)
            np.testing.assert_array_equal(_factorize(columns), expected)

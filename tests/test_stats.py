"""mql.stats against hand-computed values: IQM, stratified bootstrap, probability of improvement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import trim_mean

from mql import stats


def test_iqm_hand_computed():
    assert stats.iqm(np.arange(1, 9)) == 4.5  # n = 8: drop 2 each end, mean(3, 4, 5, 6)
    assert stats.iqm([0.0, 0.0, 0.0, 100.0]) == 0.0  # drop 1 each end: mean(0, 0)
    assert stats.iqm([[1.0, 2.0], [3.0, 50.0]]) == 2.5  # runs x tasks pooled: mean(2, 3)
    assert stats.iqm([7.0]) == 7.0


@pytest.mark.parametrize("n", [5, 9, 20, 101])
def test_iqm_is_scipys_trim_mean(n):
    x = np.random.default_rng(n).normal(size=(n, 3))
    assert stats.iqm(x) == pytest.approx(trim_mean(x.ravel(), 0.25), rel=1e-12)


def test_probability_of_improvement_hand_computed():
    # one task: pairs (1, 2) no, (3, 2) yes -> 1/2
    assert stats.probability_of_improvement([[1.0], [3.0]], [[2.0]]) == 0.5
    # ties count one half
    assert stats.probability_of_improvement([[2.0]], [[2.0]]) == 0.5
    # two tasks: task 0 always better (1), task 1 never (0) -> 0.5; task 1 half ties -> 0.25
    x = np.array([[5.0, 0.0], [6.0, 1.0]])
    y = np.array([[1.0, 1.0], [2.0, 3.0]])
    # task 1: pairs (0,1) no, (0,3) no, (1,1) tie, (1,3) no -> 0.5 / 4 = 0.125
    assert stats.probability_of_improvement(x, y) == pytest.approx((1.0 + 0.125) / 2)
    assert stats.probability_of_improvement(y, x) == pytest.approx((0.0 + 0.875) / 2)
    with pytest.raises(ValueError, match="different numbers of tasks"):
        stats.probability_of_improvement(np.ones((2, 2)), np.ones((2, 3)))


def test_stratified_bootstrap_resamples_runs_within_each_task():
    # constant per task: every resample has the same IQM
    x = np.tile([1.0, 2.0, 3.0, 4.0], (5, 1))
    assert stats.stratified_bootstrap_ci(x, reps=50) == (2.5, 2.5)
    # the interval brackets the estimate and shrinks with more runs
    rng = np.random.default_rng(0)
    small, large = rng.normal(size=(4, 5)), rng.normal(size=(64, 5))
    lo_s, hi_s = stats.stratified_bootstrap_ci(small, reps=500)
    lo_l, hi_l = stats.stratified_bootstrap_ci(large, reps=500)
    assert lo_s <= stats.iqm(small) <= hi_s and lo_l <= stats.iqm(large) <= hi_l
    assert hi_l - lo_l < hi_s - lo_s
    # a resample only mixes runs of the same task: column sets are preserved
    x = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    r = stats._resample(x, np.random.default_rng(1))
    assert set(r[:, 0]) <= {0.0, 1.0, 2.0} and set(r[:, 1]) <= {10.0, 11.0, 12.0}


def test_pair_bootstrap_of_a_clear_winner():
    x, y = np.full((5, 3), 10.0), np.full((4, 3), 1.0)
    assert stats.stratified_bootstrap_ci_pair(x, y, reps=100) == (1.0, 1.0)


def test_bad_scores_raise():
    with pytest.raises(ValueError, match="non-empty"):
        stats.iqm(np.empty((0, 3)))

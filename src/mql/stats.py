"""Statistics across seeds and tasks (Agarwal et al. 2021, "Deep RL at the Edge of the
Statistical Precipice"): the interquartile mean, stratified-bootstrap intervals and the
probability of improvement.

Scores are arrays (runs, tasks): one row per seed, one column per evaluated task. Written here
rather than imported from `rliable`: rliable 1.2.0, its latest release, fails at import with
today's stack (its dependency arch 7.2.0 raises `TypeError: deprecate_kwarg() missing 1 required
positional argument` under pandas 3.1; checked with numpy 2.4, scipy 1.17). The estimators
follow rliable's definitions and are tested against hand-computed values (tests/test_stats.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "iqm",
    "probability_of_improvement",
    "stratified_bootstrap_ci",
    "stratified_bootstrap_ci_pair",
]

Statistic = Callable[[np.ndarray], float]


def _scores(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) array, got shape {x.shape}")
    return x


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all run x task scores: the mean of the middle 50% (rliable's
    `aggregate_iqm`, scipy's `trim_mean(x, 0.25)`: int(0.25 n) values cut from each end)."""
    x = np.sort(_scores(scores).ravel())
    cut = int(0.25 * x.size)
    return float(np.mean(x[cut : x.size - cut]))


def _resample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Runs drawn with replacement, independently for each task (column)."""
    runs, tasks = x.shape
    rows = rng.integers(0, runs, size=(runs, tasks))
    return x[rows, np.arange(tasks)[None, :]]


def stratified_bootstrap_ci(
    scores: np.ndarray,
    statistic: Statistic = iqm,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of `statistic` under the stratified bootstrap: each replicate
    resamples the runs with replacement within every task (rliable's `StratifiedBootstrap`)."""
    x = _scores(scores)
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(_resample(x, rng)) for _ in range(reps)])
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): for each task, the Mann-Whitney statistic of X's runs against Y's, that is the
    fraction of run pairs (i, j) with x_i > y_j, counting ties as one half; averaged over tasks.
    `x` (runs_x, tasks) and `y` (runs_y, tasks) must score the same tasks."""
    a, b = _scores(x), _scores(y)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y score different numbers of tasks: {a.shape} vs {b.shape}")
    greater = (a[:, None, :] > b[None, :, :]).mean(axis=(0, 1))
    ties = (a[:, None, :] == b[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * ties))


def stratified_bootstrap_ci_pair(
    x: np.ndarray,
    y: np.ndarray,
    statistic: Callable[[np.ndarray, np.ndarray], float] = probability_of_improvement,
    reps: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of a two-sample statistic, both samples resampled as in
    `stratified_bootstrap_ci`."""
    a, b = _scores(x), _scores(y)
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(_resample(a, rng), _resample(b, rng)) for _ in range(reps)])
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))

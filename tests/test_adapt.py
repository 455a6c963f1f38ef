"""Tests for mql.algos.mql.propensity: ESS (eq. 13), β from logits (eq. 12 + Remark 4),
λ (Remark 3) and the logistic propensity fit (eq. 11), against hand-computed values and known
density ratios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mql.algos.mql.propensity import (
    Propensity,
    beta_from_logits,
    beta_stats,
    effective_sample_size,
    fit_propensity,
    proximal_coefficient,
)

# --------------------------------------------------------------------------- ESS (eq. 13)


@pytest.mark.parametrize(
    ("beta", "expected"),
    [
        ([1.0, 1.0, 1.0, 1.0], 1.0),  # 16 / (4 * 4)
        ([1.0, 0.0, 0.0, 0.0], 0.25),  # 1 / (4 * 1)
        ([2.0, 1.0], 0.9),  # 9 / (2 * 5)
        ([3.0, 1.0, 0.0], 16.0 / 30.0),  # 16 / (3 * 10)
        ([0.5], 1.0),  # a single weight
        ([0.0, 0.0, 0.0], 0.0),  # every weight 0: defined as 0
    ],
)
def test_ess_hand_computed(beta, expected):
    assert effective_sample_size(np.array(beta)) == pytest.approx(expected, rel=1e-12, abs=0)


def test_ess_scale_invariant_and_in_unit_interval():
    rng = np.random.default_rng(0)
    for _ in range(20):
        beta = rng.exponential(size=rng.integers(1, 50))
        ess = effective_sample_size(beta)
        assert 0.0 < ess <= 1.0 + 1e-12
        assert effective_sample_size(7.3 * beta) == pytest.approx(ess, rel=1e-12)


def test_ess_accepts_lists_and_returns_float():
    ess = effective_sample_size([2, 1])
    assert isinstance(ess, float)
    assert ess == pytest.approx(0.9)


@pytest.mark.parametrize("bad", [np.array([]), np.ones((2, 2)), np.float64(1.0)])
def test_ess_bad_input(bad):
    with pytest.raises(ValueError):
        effective_sample_size(bad)


# --------------------------------------------------------------------- β from logits (eq. 12)

LOGITS = np.array([0.0, -math.log(2.0), -5.0])  # exp(-f) = 1, 2, e^5 ≈ 148.4


def test_beta_unclipped_is_exp_minus_logit():
    beta = beta_from_logits(LOGITS, beta_clip=1e9)
    np.testing.assert_allclose(beta, [1.0, 2.0, math.exp(5.0)], rtol=1e-12)


def test_beta_clip_on_beta():
    # β ← min(exp(-f), 1.5)
    beta = beta_from_logits(LOGITS, beta_clip=1.5, clip_on="beta")
    np.testing.assert_allclose(beta, [1.0, 1.5, 1.5], rtol=1e-12)


def test_beta_clip_on_logit():
    # f ← max(f, -1.5), so β ≤ e^1.5 ≈ 4.48; β = 2 is kept
    beta = beta_from_logits(LOGITS, beta_clip=1.5, clip_on="logit")
    np.testing.assert_allclose(beta, [1.0, 2.0, math.exp(1.5)], rtol=1e-12)


def test_beta_zero_below():
    logits = np.array([3.0, 2.0, 0.0, -1.0])  # exp(-f) = 0.0498, 0.1353, 1, e
    beta = beta_from_logits(logits, beta_clip=1.5, clip_on="beta", zero_below=0.1)
    np.testing.assert_allclose(beta, [0.0, math.exp(-2.0), 1.0, 1.5], rtol=1e-12)
    beta = beta_from_logits(logits, beta_clip=1.5, clip_on="logit", zero_below=0.1)
    np.testing.assert_allclose(beta, [0.0, math.exp(-2.0), 1.0, math.e], rtol=1e-12)
    # zero_below = 0 keeps every weight
    beta = beta_from_logits(logits, beta_clip=1.5, clip_on="beta", zero_below=0.0)
    np.testing.assert_allclose(beta, [math.exp(-3.0), math.exp(-2.0), 1.0, 1.5], rtol=1e-12)


def test_beta_preserves_shape():
    logits = np.zeros((3, 4))
    assert beta_from_logits(logits, 1.1).shape == (3, 4)


def test_beta_bad_clip_mode():
    with pytest.raises(ValueError, match="clip_on"):
        beta_from_logits(LOGITS, 1.5, clip_on="prob")  # type: ignore[arg-type]


def test_beta_stats():
    stats = beta_stats(np.array([0.0, 1.0, 2.0, 1.0]))
    assert stats["beta_mean"] == pytest.approx(1.0)
    assert stats["beta_std"] == pytest.approx(math.sqrt(0.5))
    assert stats["beta_min"] == 0.0
    assert stats["beta_max"] == 2.0


# ------------------------------------------------------------------------ λ (Remark 3)


def test_proximal_coefficient():
    assert proximal_coefficient(0.3, None) == pytest.approx(0.7)
    assert proximal_coefficient(1.0, None) == 0.0
    assert proximal_coefficient(0.0, None) == 1.0
    assert proximal_coefficient(0.3, 0.1) == 0.1  # fixed λ ignores the ESS
    assert proximal_coefficient(0.3, 0.0) == 0.0  # 0.0 is a fixed value, not "unset"
    assert isinstance(proximal_coefficient(0.3, None), float)


# ----------------------------------------------------------------- propensity fit (eq. 11)


def _accuracy(prop: Propensity, new: np.ndarray, meta: np.ndarray) -> float:
    """Fraction classified correctly: f > 0 means "meta" (β < 1), f < 0 means "new"."""
    return float(
        (np.sum(prop.logits(meta) > 0) + np.sum(prop.logits(new) < 0)) / (len(meta) + len(new))
    )


def test_fit_separates_well_separated_gaussians():
    rng = np.random.default_rng(0)
    meta = rng.normal(0.0, 1.0, size=(300, 4))
    new = rng.normal(0.0, 1.0, size=(300, 4)) + np.array([3.0, -3.0, 0.0, 0.0])
    prop = fit_propensity(new, meta, C=0.1, beta_clip=1e9)
    assert _accuracy(prop, new, meta) > 0.97
    beta_new, beta_meta = prop.beta(new), prop.beta(meta)
    assert np.median(beta_new) > 10.0 * np.median(beta_meta)
    assert np.median(beta_meta) < 0.2 < 5.0 < np.median(beta_new)
    # the meta samples are far from the new task: low ESS
    assert effective_sample_size(beta_meta) < 0.3


def test_fit_same_distribution_gives_ess_near_one():
    rng = np.random.default_rng(1)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        meta = rng.normal(0.5, 2.0, size=(200, 5))
        new = rng.normal(0.5, 2.0, size=(200, 5))
        prop = fit_propensity(new, meta, C=0.1, beta_clip=1.5)
        beta = prop.beta(meta)
        assert effective_sample_size(beta) > 0.9
        assert abs(float(np.mean(beta)) - 1.0) < 0.1


def test_fit_corrects_class_imbalance():
    """With 10x more meta samples from the SAME distribution, β stays ~1 (not ~0.1)."""
    rng = np.random.default_rng(2)
    meta = rng.normal(size=(2000, 3))
    new = rng.normal(size=(200, 3))
    prop = fit_propensity(new, meta, C=0.1, beta_clip=1e9)
    assert abs(float(np.mean(prop.beta(meta))) - 1.0) < 0.1
    assert abs(float(np.mean(prop.beta(new))) - 1.0) < 0.1
    # and the other way round: more new-task samples than meta samples
    prop = fit_propensity(meta, new, C=0.1, beta_clip=1e9)
    assert abs(float(np.mean(prop.beta(new))) - 1.0) < 0.1


def test_fit_recovers_known_density_ratio():
    """q = N(0, 1) (meta), p = N(mu, 1) (new): log p/q = mu x - mu^2/2, so f = -mu x + mu^2/2.

    Unbalanced classes (4:1) and weak regularisation: w ≈ -mu and b ≈ mu^2/2 only if the sign
    convention (meta = +1, β = exp(-f)) and the prior correction log(n_meta/n_new) are right.
    """
    rng = np.random.default_rng(3)
    mu = 1.0
    meta = rng.normal(0.0, 1.0, size=(20000, 1))
    new = rng.normal(mu, 1.0, size=(5000, 1))
    prop = fit_propensity(new, meta, C=100.0, beta_clip=1e9)
    assert prop.w.shape == (1,)
    assert prop.w[0] == pytest.approx(-mu, abs=0.05)
    assert prop.b == pytest.approx(mu**2 / 2, abs=0.05)
    x = np.array([[-1.0], [0.0], [2.0]])
    np.testing.assert_allclose(prop.beta(x), np.exp(mu * x[:, 0] - mu**2 / 2), rtol=0.1)


def test_standardisation_folded_into_logits():
    """Propensity.logits on raw features == sklearn's decision_function on standardised
    features minus log(n_meta / n_new), reconstructed independently."""
    rng = np.random.default_rng(4)
    scales = np.array([100.0, 0.01, 1.0])
    offsets = np.array([50.0, -3.0, 0.0])
    meta = rng.normal(size=(150, 3)) * scales + offsets
    new = (rng.normal(size=(60, 3)) + 0.7) * scales + offsets
    C = 0.3
    prop = fit_propensity(new, meta, C=C, beta_clip=1.1, clip_on="logit", zero_below=0.1)
    assert (prop.beta_clip, prop.clip_on, prop.zero_below) == (1.1, "logit", 0.1)

    x = np.concatenate([meta, new])
    y = np.concatenate([np.ones(len(meta)), np.zeros(len(new))])
    mean, std = x.mean(axis=0), x.std(axis=0)
    clf = LogisticRegression(C=C, solver="lbfgs", max_iter=2000).fit((x - mean) / std, y)
    probe = rng.normal(size=(40, 3)) * scales + offsets
    expected = clf.decision_function((probe - mean) / std) - math.log(150 / 60)
    np.testing.assert_allclose(prop.logits(probe), expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(
        prop.beta(probe), beta_from_logits(expected, 1.1, "logit", 0.1), rtol=1e-9, atol=1e-12
    )


def test_fit_constant_feature_is_harmless():
    rng = np.random.default_rng(5)
    meta = np.concatenate([rng.normal(size=(100, 2)), np.full((100, 1), 3.0)], axis=1)
    new = np.concatenate([rng.normal(size=(100, 2)) + 2.0, np.full((100, 1), 3.0)], axis=1)
    prop = fit_propensity(new, meta, C=0.1, beta_clip=1.5)
    assert np.all(np.isfinite(prop.w)) and np.isfinite(prop.b)
    assert prop.w[2] == 0.0
    assert _accuracy(prop, new, meta) > 0.8


def test_fit_accepts_float32_and_returns_float64_logits():
    rng = np.random.default_rng(6)
    meta = rng.normal(size=(50, 2)).astype(np.float32)
    new = rng.normal(size=(50, 2)).astype(np.float32)
    prop = fit_propensity(new, meta, C=0.1, beta_clip=1.5)
    assert prop.logits(meta).dtype == np.float64
    assert prop.beta(meta).shape == (50,)


@pytest.mark.parametrize(
    ("new", "meta"),
    [
        (np.zeros(5), np.zeros((5, 1))),  # 1-d
        (np.zeros((5, 2)), np.zeros((5, 3))),  # feature widths differ
        (np.zeros((0, 2)), np.zeros((5, 2))),  # no new-task samples
        (np.zeros((5, 2)), np.zeros((0, 2))),  # no meta samples
        (np.zeros((5, 2, 1)), np.zeros((5, 2, 1))),  # 3-d
    ],
)
def test_fit_bad_inputs(new, meta):
    with pytest.raises(ValueError):
        fit_propensity(new, meta, C=0.1, beta_clip=1.5)

"""The linear feature baseline of rllab and ProMP (`LinearFeatureBaseline`), in NumPy.

Features of a step: [clip(obs, -10, 10), clip(obs, -10, 10)^2, t/100, (t/100)^2, (t/100)^3, 1],
with t the step's time within its path. The weights solve the ridge normal equations
(X^T X + reg I) w = X^T y; when that fails (non-finite weights or a LinAlgError) the
regularisation is raised tenfold and the fit retried, up to five attempts, as in rllab. rllab
solves them with `lstsq`; the regularised system is positive definite, where `solve` gives the
same weights (to 1e-8 in tests/test_onpolicy_advantages.py) about 8x faster (humanoid-dir's 756
features: 12 ms against 90 ms a fit). Fitted
afresh on every batch, once per task (`fit_per_group`), to the discounted returns of that
batch (ProMP fits per task; the targets come from `mql.onpolicy.gae.discounted_returns`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["features", "fit_linear_baseline", "fit_per_group", "predict", "predict_per_group"]


def features(obs: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(..., 2 obs_dim + 4) features of observations `obs` (..., obs_dim) at times `t` (...)."""
    o = np.clip(np.asarray(obs, np.float64), -10.0, 10.0)
    al = np.asarray(t, np.float64)[..., None] / 100.0
    return np.concatenate([o, o * o, al, al**2, al**3, np.ones_like(al)], axis=-1)


def fit_linear_baseline(
    feats: np.ndarray, targets: np.ndarray, reg: float = 1e-5, attempts: int = 5
) -> np.ndarray:
    """Weights `w` (n_features,) of the ridge fit of `targets` (n,) on `feats` (n, n_features)."""
    x = np.asarray(feats, np.float64)
    y = np.asarray(targets, np.float64)
    gram, rhs = x.T @ x, x.T @ y
    eye = np.eye(x.shape[1])
    for _ in range(attempts):
        try:
            w = np.linalg.solve(gram + reg * eye, rhs)
        except np.linalg.LinAlgError:
            w = None
        if w is not None and np.all(np.isfinite(w)):
            return w
        reg *= 10.0
    raise ValueError(
        f"linear baseline: no finite fit after {attempts} attempts (reg up to {reg / 10:g})"
    )


def predict(weights: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The baseline's values (...) at features (..., n_features)."""
    return np.asarray(feats, np.float64) @ weights


def fit_per_group(
    obs: np.ndarray,
    t: np.ndarray,
    targets: np.ndarray,
    valid: np.ndarray,
    group: np.ndarray,
    reg: float = 1e-5,
) -> dict[int, np.ndarray]:
    """One fit per group (task) of time-major data: `obs` (T, N, d), `t`, `targets`, `valid`
    (T, N), `group` (N,) the group of each slot. Only valid steps enter a fit."""
    feats = features(obs, t)
    valid = np.asarray(valid, bool)
    group = np.asarray(group)
    weights: dict[int, np.ndarray] = {}
    for g in np.unique(group):
        cols = group == g
        mask = valid[:, cols]
        weights[int(g)] = fit_linear_baseline(
            feats[:, cols][mask], np.asarray(targets)[:, cols][mask], reg
        )
    return weights


def predict_per_group(
    weights: dict[int, np.ndarray], obs: np.ndarray, t: np.ndarray, group: np.ndarray
) -> np.ndarray:
    """(T, N) values: every slot's steps under its group's weights (padded steps included; the
    caller masks them)."""
    feats = features(obs, t)
    out = np.zeros(feats.shape[:2])
    for g, w in weights.items():
        cols = np.asarray(group) == g
        out[:, cols] = predict(w, feats[:, cols])
    return out

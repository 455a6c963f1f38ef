"""Advantages over paths with the linear feature baseline (RL2, MAML-TRPO, ProMP).

A *path* is what returns are summed over (`mql.onpolicy.gae`): an episode for MAML-TRPO and
ProMP (`path_end = traj.episode_end`, time feature `traj.t_episode`), a whole trial for RL2
(`traj.trial_end`, the time within the trial). `linear_baseline_advantages`: discounted returns
per path -> the linear feature baseline fitted per group of slots (a task of the meta-batch;
ProMP fits one per task on its own paths) -> `path_gae`. `path_gae`: GAE(gamma, lambda) from any
baseline's values, bootstrapping from the value of the final observation where a path ends at
the time limit (`bootstrap_truncation`; ProMP and garage treat every path end as terminal:
False). Advantages are optionally normalised to zero mean and unit standard deviation within
each group (ProMP's per-task `normalize_adv`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from mql.onpolicy.baseline import features, fit_per_group, predict_per_group
from mql.onpolicy.gae import discounted_returns, gae
from mql.onpolicy.types import Trajectories

__all__ = ["PathAdvantages", "linear_baseline_advantages", "normalize_per_group", "path_gae"]


class PathAdvantages(NamedTuple):
    advantages: np.ndarray
    """(T, N) float32, normalised per group if asked."""
    values: np.ndarray
    """(T, N) float32: the baseline's value of each step."""
    targets: np.ndarray
    """(T, N) float32: advantages (before normalisation) + values, 0 where invalid."""


def normalize_per_group(x: np.ndarray, valid: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(x - mean) / (std + 1e-8) over the valid steps of each group's slots; 0 where invalid."""
    out = np.zeros_like(x)
    for g in np.unique(groups):
        cols = groups == g
        v = valid[:, cols]
        sel = x[:, cols][v]
        z = (x[:, cols] - sel.mean()) / (sel.std() + 1e-8) if sel.size else x[:, cols]
        out[:, cols] = np.where(v, z, 0.0)
    return out


def path_gae(
    traj: Trajectories,
    path_end: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    gamma: float,
    lam: float,
    bootstrap_truncation: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, value targets) by GAE over the paths `path_end` delimits. `next_values[t]`
    is the value of the state after step t (at a truncated path end: of `traj.final_obs`); only a
    termination at a path's end is terminal, or every path end without `bootstrap_truncation`."""
    terminal = path_end & traj.terminated if bootstrap_truncation else path_end
    adv, targets = gae(
        jnp.asarray(traj.rewards),
        jnp.asarray(values, jnp.float32),
        jnp.asarray(next_values, jnp.float32),
        jnp.asarray(terminal),
        jnp.asarray(path_end),
        jnp.asarray(traj.valid),
        gamma,
        lam,
    )
    return np.asarray(adv), np.asarray(targets)


def linear_baseline_advantages(
    traj: Trajectories,
    path_end: np.ndarray,
    t_path: np.ndarray,
    groups: np.ndarray,
    gamma: float,
    lam: float,
    bootstrap_truncation: bool = True,
    normalize: bool = True,
) -> PathAdvantages:
    """See the module docstring; `t_path` (T, N) is each step's time within its path (the
    baseline's time feature), `groups` (N,) each slot's group."""
    returns = np.asarray(discounted_returns(traj.rewards, path_end, traj.valid, gamma))
    weights = fit_per_group(traj.obs, t_path, returns, traj.valid, groups)
    values = predict_per_group(weights, traj.obs, t_path, groups)
    next_values = np.concatenate([values[1:], np.zeros_like(values[:1])], axis=0)
    next_values = np.where(path_end, 0.0, next_values)
    rows, cols = np.nonzero(path_end & traj.truncated)
    if bootstrap_truncation and rows.size:
        f = features(traj.final_obs[rows, cols], t_path[rows, cols] + 1)
        w = np.stack([weights[int(groups[c])] for c in cols])
        next_values[rows, cols] = (f * w).sum(-1)
    adv, targets = path_gae(traj, path_end, values, next_values, gamma, lam, bootstrap_truncation)
    if normalize:
        adv = normalize_per_group(adv, traj.valid, np.asarray(groups))
    return PathAdvantages(
        adv.astype(np.float32), values.astype(np.float32), targets.astype(np.float32)
    )

"""Advantages of one-episode-per-slot batches (MAML-TRPO, ProMP): the path is the episode.

Discounted returns per episode -> the linear feature baseline fitted per group of slots (a task
of the meta-batch; ProMP fits one per task on its own paths) with the time within the episode as
its time feature -> GAE(gamma, lambda) (`mql.onpolicy.gae`), bootstrapping from the baseline's
value of the final observation where an episode ends at the time limit (`bootstrap_truncation`;
ProMP treats every path end as terminal: False). Advantages are then optionally normalised to
zero mean and unit standard deviation within each group (ProMP's per-task `normalize_adv`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from mql.onpolicy.baseline import features, fit_per_group, predict_per_group
from mql.onpolicy.gae import discounted_returns, gae
from mql.onpolicy.types import Trajectories

__all__ = ["EpisodeAdvantages", "episode_advantages", "normalize_per_group"]


class EpisodeAdvantages(NamedTuple):
    advantages: np.ndarray
    """(T, N) float32, normalised per group if asked."""
    values: np.ndarray
    """(T, N) float32: the baseline's value of each step."""


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


def episode_advantages(
    traj: Trajectories,
    groups: np.ndarray,
    gamma: float,
    lam: float,
    bootstrap_truncation: bool = True,
    normalize: bool = True,
) -> EpisodeAdvantages:
    """See the module docstring; `groups` (N,) is each slot's group."""
    path_end = traj.episode_end
    returns = np.asarray(discounted_returns(traj.rewards, path_end, traj.valid, gamma))
    weights = fit_per_group(traj.obs, traj.t_episode, returns, traj.valid, groups)
    values = predict_per_group(weights, traj.obs, traj.t_episode, groups)
    next_values = np.concatenate([values[1:], np.zeros_like(values[:1])], axis=0)
    next_values = np.where(path_end, 0.0, next_values)
    terminal = path_end & traj.terminated
    if bootstrap_truncation:
        rows, cols = np.nonzero(path_end & traj.truncated)
        if rows.size:
            f = features(traj.final_obs[rows, cols], traj.t_episode[rows, cols] + 1)
            w = np.stack([weights[int(groups[c])] for c in cols])
            next_values[rows, cols] = (f * w).sum(-1)
    else:
        terminal = path_end
    adv, _ = gae(
        jnp.asarray(traj.rewards),
        jnp.asarray(values, jnp.float32),
        jnp.asarray(next_values, jnp.float32),
        jnp.asarray(terminal),
        jnp.asarray(path_end),
        jnp.asarray(traj.valid),
        gamma,
        lam,
    )
    adv = np.asarray(adv)
    if normalize:
        adv = normalize_per_group(adv, traj.valid, np.asarray(groups))
    return EpisodeAdvantages(adv.astype(np.float32), values.astype(np.float32))

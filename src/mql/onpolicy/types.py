"""The arrays the on-policy sampler produces and its policies consume (no JAX here).

Time-major layout `(T, N, ...)`: `T` steps of `N` environments ("slots"), each slot running one
trial of `E` consecutive episodes on one task (E = 1 for MAML and ProMP, 2 by default for RL2).
A slot whose trial has ended pads the rest of the batch (`valid` false).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["PolicyInputs", "Trajectories"]


class PolicyInputs(NamedTuple):
    """What a policy sees at one time step, for every slot (float32 arrays).

    `prev_action`, `prev_reward`: the slot's previous step (zeros at the start of a trial);
    `prev_done`: 1 if the previous step ended an episode, so `obs` is a fresh reset (0 at the
    start of a trial). RL2 feeds all four to its recurrent cell; an MLP policy reads `obs`."""

    obs: np.ndarray  # (N, obs_dim)
    prev_action: np.ndarray  # (N, act_dim)
    prev_reward: np.ndarray  # (N,)
    prev_done: np.ndarray  # (N,)


class Trajectories(NamedTuple):
    """One sampling call's data, `(T, N, ...)`; see the module docstring."""

    obs: np.ndarray
    """(T, N, obs_dim) float32: the observation step t acted on."""
    actions: np.ndarray
    """(T, N, act_dim) float32: the action sampled (the environment clips it)."""
    log_probs: np.ndarray
    """(T, N) float32: log-density of the action under the sampling policy."""
    rewards: np.ndarray
    """(T, N) float32."""
    terminated: np.ndarray
    """(T, N) bool: step t ended its episode in a terminal state."""
    truncated: np.ndarray
    """(T, N) bool: step t ended its episode at the time limit (not terminal)."""
    final_obs: np.ndarray
    """(T, N, obs_dim) float32: where step t ended an episode, the observation it reached (the
    state to bootstrap from at a truncation); zeros elsewhere."""
    valid: np.ndarray
    """(T, N) bool: step t happened (false after the slot's trial has ended)."""
    episode: np.ndarray
    """(T, N) int32: index of the step's episode within its trial (0 .. E-1)."""
    t_episode: np.ndarray
    """(T, N) int32: time step within the episode."""
    task_ids: np.ndarray
    """(N,) int32: each slot's task (an index into the task list given to the sampler)."""
    inputs: PolicyInputs
    """The policy inputs of every step and one more, `(T + 1, N, ...)`: `inputs[T]` is what the
    policy would see next (after a slot's trial has ended: its final observation, last action
    and reward, done = 1), so a recurrent value head gives the value to bootstrap from."""

    @property
    def episode_end(self) -> np.ndarray:
        """(T, N) bool: step t ended an episode (terminated or truncated)."""
        return self.terminated | self.truncated

    @property
    def trial_end(self) -> np.ndarray:
        """(T, N) bool: step t ended the slot's trial (its last valid step)."""
        nxt = np.concatenate([self.valid[1:], np.zeros_like(self.valid[:1])], axis=0)
        return self.valid & ~nxt

    @property
    def steps(self) -> int:
        """Environment steps taken."""
        return int(self.valid.sum())

    def episode_returns(self) -> np.ndarray:
        """(N, E) undiscounted return of every episode (NaN for episodes that never ran)."""
        n_ep = int(self.episode[self.valid].max()) + 1 if self.valid.any() else 0
        out = np.full((self.valid.shape[1], n_ep), np.nan)
        for e in range(n_ep):
            mask = self.valid & (self.episode == e)
            ran = mask.any(axis=0)
            out[ran, e] = (self.rewards * mask).sum(axis=0)[ran]
        return out

"""The one episode loop: collection, adaptation, evaluation and the benchmarks all run it.

An episode is `env.reset(seed=seed)`, `policy.reset()`, then until termination or truncation:
`action = policy.act(obs)`, `env.step(action)`, `on_step(transition)` (to store it, say), and
`policy.observe(obs, action, reward)` (so a recurrent policy can update its context).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = ["Episode", "Policy", "RandomPolicy", "Transition", "run_episode"]


class Policy(Protocol):
    """An acting policy that may keep an in-episode context."""

    def reset(self) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None: ...


class Transition(NamedTuple):
    """One environment step as `on_step` sees it; `t` is its position in the episode."""

    obs: np.ndarray
    action: np.ndarray
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    info: dict[str, Any]
    t: int


class Episode(NamedTuple):
    """What an episode returns: the undiscounted return and the number of steps."""

    ret: float
    steps: int


def run_episode(
    env: Any,
    policy: Policy,
    seed: int,
    on_step: Callable[[Transition], None] | None = None,
) -> Episode:
    """One episode of `policy` on `env` (its task already set) from `env.reset(seed=seed)`."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total, t, done = 0.0, 0, False
    while not done:
        action = policy.act(obs)
        next_obs, reward, terminated, truncated, info = env.step(action)
        reward = float(reward)
        if on_step is not None:
            on_step(
                Transition(
                    obs, action, reward, next_obs, bool(terminated), bool(truncated), info, t
                )
            )
        policy.observe(obs, action, reward)
        total += reward
        t += 1
        obs = next_obs
        done = terminated or truncated
    return Episode(total, t)


class RandomPolicy:
    """Uniform random actions in [-1, 1] from `rng` (the warm-up of off-policy agents)."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
        self.rng, self.shape = rng, shape

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=self.shape).astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None:
        pass

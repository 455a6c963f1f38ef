"""The one episode loop: collection, adaptation, evaluation and the benchmarks all run it.

An episode is `env.reset(seed=seed)`, `policy.reset()`, then until termination or truncation:
`action = policy.act(obs)`, `env.step(action)`, `on_step(transition)` (to store it, say), and
`policy.observe(obs, action, reward)` (so a recurrent policy can update its context).

`run_episodes` runs N such episodes together, one per environment, with a `BatchPolicy`: one
`act` call per time step for all N (the batched evaluation, `mql.evaluate`). Each environment
sees the same calls in the same order as under `run_episode`, so an episode's transitions and
return are those of `run_episode` whenever the batch policy's row n computes what the single
policy of slot n would (`PolicyList` does by construction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = [
    "BatchPolicy",
    "Episode",
    "Policy",
    "PolicyList",
    "RandomPolicy",
    "SuccessFlag",
    "Transition",
    "run_episode",
    "run_episodes",
    "step_success",
]


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


def step_success(so_far: float | None, info: dict[str, Any]) -> float | None:
    """An episode's success after one more step with `info`: 1.0 once `info["success"]` has
    been 1 at some step (Meta-World's episode success), else 0.0; None while `info` has no
    "success" (families that do not report it)."""
    if "success" not in info:
        return so_far
    return max(so_far or 0.0, 1.0 if float(info["success"]) >= 1.0 else 0.0)


class SuccessFlag:
    """An `on_step` callback keeping an episode's `step_success` in `value` (one per episode)."""

    def __init__(self) -> None:
        self.value: float | None = None

    def __call__(self, transition: Transition) -> None:
        self.value = step_success(self.value, transition.info)


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


class BatchPolicy(Protocol):
    """The acting policies of N environments stepped together (slot n acts for environment n).

    `act` gets the N current observations stacked (a finished slot repeats its last one) and
    returns N actions; `observe` gets the step's N observations, actions and rewards with the
    mask of the slots that were still running (only those stepped)."""

    def reset(self) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...

    def observe(
        self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, active: np.ndarray
    ) -> None: ...


class PolicyList:
    """N single policies as one `BatchPolicy`: each acts on its own row (N calls per step).

    The batched loop for policies without a batched form of their own. The N policies must be
    distinct objects when they keep an in-episode state (a context window, a recurrent state)."""

    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = list(policies)

    def reset(self) -> None:
        for p in self.policies:
            p.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(p.act(o)) for p, o in zip(self.policies, obs, strict=True)])

    def observe(
        self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, active: np.ndarray
    ) -> None:
        for n in np.flatnonzero(active):
            self.policies[n].observe(obs[n], actions[n], float(rewards[n]))


def run_episodes(
    envs: Sequence[Any],
    policy: BatchPolicy,
    seeds: Sequence[int],
    on_step: Sequence[Callable[[Transition], None] | None] | None = None,
) -> list[Episode]:
    """One episode in each of `envs` (their tasks already set), from `env.reset(seed=seeds[n])`,
    stepped together with one `policy.act` call per time step; `on_step[n]` sees environment
    n's transitions. Environments that finish early wait for the others."""
    n_envs = len(envs)
    if len(seeds) != n_envs or (on_step is not None and len(on_step) != n_envs):
        raise ValueError(
            f"run_episodes: {n_envs} environments need as many seeds and on_step entries, got "
            f"{len(seeds)} and {n_envs if on_step is None else len(on_step)}"
        )
    obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds, strict=True)]
    policy.reset()
    active = np.ones(n_envs, bool)
    totals, steps = [0.0] * n_envs, [0] * n_envs
    rewards = np.zeros(n_envs, np.float64)
    while active.any():
        current = np.stack(obs)
        actions = policy.act(current)
        stepped = active.copy()
        for n in np.flatnonzero(stepped):
            next_obs, reward, terminated, truncated, info = envs[n].step(actions[n])
            reward = float(reward)
            if on_step is not None and on_step[n] is not None:
                on_step[n](
                    Transition(
                        obs[n],
                        actions[n],
                        reward,
                        next_obs,
                        bool(terminated),
                        bool(truncated),
                        info,
                        steps[n],
                    )
                )
            rewards[n] = reward
            totals[n] += reward
            steps[n] += 1
            obs[n] = next_obs
            active[n] = not (terminated or truncated)
        policy.observe(current, actions, rewards, stepped)
    return [Episode(total, t) for total, t in zip(totals, steps, strict=True)]


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

"""Named seed streams: every random draw of a run derives from its root seed and one of these.

A stream is a path of integers under the root seed, turned into a 32-bit seed by NumPy's
`SeedSequence` (`episode_seed`), so two streams never share draws and no global RNG is used:

- `AGENT_RNG` (0): the agent's NumPy Generator, `default_rng([seed, AGENT_RNG])`: exploration
  noise, random warm-up actions, task choice, minibatch indices;
- `TRAIN_EPISODE` (1): reset seed of training episode n, `episode_seed(seed, 1, n)`;
- `PERIODIC_EVAL` (2): a run's evaluations: the episodes of every evaluation, and of
  `mql eval`, from `episode_seed(seed, 2)` (so `mql eval` on a run's final checkpoint gives
  the numbers of its final_eval.json); the evaluated tasks from `episode_seed(task_seed, 2, j)`.
  (Stream 3 was `mql eval`'s own until version 0.1.)

Network initialisation and the learners' noise come from `jax.random.PRNGKey(seed)`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AGENT_RNG", "PERIODIC_EVAL", "TRAIN_EPISODE", "agent_rng", "episode_seed"]

AGENT_RNG = 0
TRAIN_EPISODE = 1
PERIODIC_EVAL = 2


def episode_seed(seed: int, *stream: int) -> int:
    """A reset seed derived from a root seed and a path of integers (no global RNG)."""
    return int(np.random.SeedSequence([seed, *stream]).generate_state(1)[0])


def agent_rng(seed: int) -> np.random.Generator:
    """The agent's NumPy Generator of root seed `seed` (stream `AGENT_RNG`)."""
    return np.random.default_rng([seed, AGENT_RNG])

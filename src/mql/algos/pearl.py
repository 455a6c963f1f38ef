"""PEARL meta-training and adaptation (Rakelly et al. 2019), as released in "oyster" (REFERENCE §3).

Buffers: every training task owns an RL buffer and an encoder buffer (`TaskBuffers`, oyster's
MultiTaskReplayBuffer). A task's encoder buffer is cleared before each new collection on it, so
the encoder's context is recent, near-on-policy data of that task; the RL buffer keeps it all.

Meta-training (oyster's `MetaRLAlgorithm.train`):
- warm-up: `num_initial_steps` per training task, z ~ prior resampled every trajectory, into
  both buffers (one training task per `run_iteration` call, as the MQL driver does);
- then each iteration: for `num_tasks_sample` training tasks drawn with replacement, clear the
  task's encoder buffer and collect (stochastic actions, whole trajectories until at least the
  asked number of steps):
  `num_steps_prior` steps with z ~ prior (both buffers); `num_steps_posterior` steps with z from
  the posterior (both buffers); `num_extra_rl_steps_posterior` steps with z from the posterior
  (RL buffer only). Each posterior collection starts from the prior for its first trajectory and
  after every `update_post_train` trajectories infers q(z | c) from `embedding_batch_size`
  transitions drawn from the task's encoder buffer and samples z from it;
- then `num_train_steps_per_itr` gradient steps, each on `meta_batch` training tasks drawn with
  replacement: a context batch (`embedding_batch_size`) from each task's encoder buffer and an RL
  batch (`batch_size`) from its RL buffer (`mql.pearl_learner` has the losses).

Evaluation through the shared protocol (`mql.evaluate`):
- `zero_shot_policy()`: deterministic actions tanh(mean) with z = 0, the prior mean (oyster has
  no such number; it is what the policy does before seeing any context).
- `adapt(env, task, seed)`, oyster's `collect_paths`: belief reset to the prior; run
  `adapt_episodes` trajectories with deterministic actions, accumulating their context; the
  first `num_exp_traj_eval` each use a fresh z ~ prior, later ones z from the posterior of ALL
  context collected so far. The returned policy acts with z from the posterior of all of it
  (`eval_z`: posterior mean, or a posterior sample as oyster). The protocol's adapted episodes
  are therefore oyster's "last trajectory" (AverageReturn_all_test_tasks) when `adapt_episodes`
  = num_steps_per_eval / horizon - 1 (the presets). Diagnostics: exploration_return_first /
  _last (returns of the first and last adaptation trajectories), posterior_var, posterior_kl.
- MQL-comparable number: with `adapt_episodes = 1` the new-task data is one episode (horizon
  steps), MQL's budget; its first trajectory uses z ~ prior, the scored episodes the posterior
  of that one episode.

Randomness: network init and the gradient steps' samples (z, policy) come from the JAX key in
the train state; z draws and actions while collecting, task choice and minibatch indices from one
NumPy Generator; each episode's reset seed from (seed, episode counter). Evaluation uses only its
own seeds. All of it is part of `state_dict`, so a resumed run continues exactly.

Deviations from oyster (on purpose):
- The adapted policy acts with the posterior MEAN by default (`eval_z="mean"`); oyster draws z
  from the posterior (`eval_z="sample"`). Oyster repeats the whole adaptation `num_evals` times
  per task; here a task is adapted once and `eval_episodes` (preset: num_evals) episodes are
  scored with its z. Adaptation runs a fixed number of trajectories, where oyster ran until 600
  steps (more, shorter trajectories when episodes terminate early: ant, humanoid, walker, hopper).
  The adapted policy uses the posterior even when `adapt_episodes < num_exp_traj_eval`.
- The zero-shot number (z = 0) is ours. Training tasks are scored with the same protocol as test
  tasks (oyster's AverageReturn_all_train_tasks); oyster's extra train-task number with context
  drawn from the replay buffer is not reported.
- sparse-point-robot: the shared protocol sums the environment's (dense) reward; oyster reported
  sparse returns. The encoder sees sparse rewards and SAC dense ones, as in oyster.
- `total_steps` replaces oyster's 500 iterations (the presets hold 500 iterations' worth);
  evaluation every `eval_every` steps on `eval_tasks` test tasks (at the end on
  `final_eval_tasks`, default all), where oyster evaluated after every iteration on all. Warm-up
  is split into one `run_iteration` per task (the same operations in the same order, so the
  driver can log and checkpoint in between).
- Not implemented: the recurrent encoder and the deterministic-z variant (oyster options its
  configs never use). One learning rate for all four Adam optimisers (all 3e-4 in oyster).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

import mql.envs
from mql.calls import call_sizes
from mql.checkpoint import as_numpy
from mql.envs.base import Task
from mql.evaluate import Adaptation, EvalResult, episode_seed, periodic_evaluation
from mql.pearl_config import PEARLConfig
from mql.pearl_learner import (
    PEARLLearner,
    PEARLSpec,
    RLBatch,
    kl_to_standard_normal,
    shared_learner,
)

_STREAM_TRAIN_EPISODE = 1


class TaskBuffers:
    """One ring buffer of transitions per task (oyster's MultiTaskReplayBuffer).

    A row is [obs, action, reward, sparse_reward, next_obs, done] (float32). Storage of a task
    grows on demand (doubling) up to `capacity` rows, then wraps around.
    """

    def __init__(self, n_tasks: int, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.n_tasks, self.capacity = n_tasks, capacity
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.width = 2 * obs_dim + act_dim + 3
        self._rows: list[np.ndarray] = [np.zeros((0, self.width), np.float32)] * n_tasks
        self._size = np.zeros(n_tasks, np.int64)
        self._ptr = np.zeros(n_tasks, np.int64)

    def size(self, task: int) -> int:
        return int(self._size[task])

    def clear(self, task: int) -> None:
        self._size[task] = 0
        self._ptr[task] = 0

    def add(self, task: int, rows: np.ndarray) -> None:
        """Append rows (n, width) to `task`'s buffer."""
        rows = rows[-self.capacity :]  # only the newest `capacity` rows can be kept
        n = len(rows)
        need = min(self.capacity, self.size(task) + n)
        if len(self._rows[task]) < need:
            new = min(self.capacity, max(need, 2 * len(self._rows[task]), 256))
            grown = np.zeros((new, self.width), np.float32)
            grown[: self.size(task)] = self._rows[task][: self.size(task)]
            self._rows[task] = grown
        idx = (self._ptr[task] + np.arange(n)) % self.capacity
        self._rows[task][idx] = rows
        self._ptr[task] = (self._ptr[task] + n) % self.capacity
        self._size[task] = need

    def sample(self, rng: np.random.Generator, task: int, n: int) -> np.ndarray:
        """`n` rows of `task` drawn uniformly with replacement."""
        size = self.size(task)
        if size == 0:
            raise ValueError(f"task {task} has no transitions to sample")
        return self._rows[task][rng.integers(0, size, size=n)]

    def rows(self, task: int) -> np.ndarray:
        """All stored rows of `task` (storage order)."""
        return self._rows[task][: self.size(task)]

    def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        o, a = self.obs_dim, self.act_dim
        return {
            "obs": rows[..., :o],
            "action": rows[..., o : o + a],
            "reward": rows[..., o + a],
            "sparse_reward": rows[..., o + a + 1],
            "next_obs": rows[..., o + a + 2 : 2 * o + a + 2],
            "done": rows[..., -1],
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "size": self._size.copy(),
            "ptr": self._ptr.copy(),
            "rows": {f"{t:05d}": self.rows(t).copy() for t in range(self.n_tasks)},
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        size, ptr = np.asarray(data["size"], np.int64), np.asarray(data["ptr"], np.int64)
        if size.shape != (self.n_tasks,) or np.any(size > self.capacity):
            raise ValueError("buffer state does not match this config (tasks or capacity)")
        for t in range(self.n_tasks):
            rows = np.asarray(data["rows"][f"{t:05d}"], np.float32).reshape(-1, self.width)
            if len(rows) != size[t]:
                raise ValueError(f"buffer state of task {t} has {len(rows)} rows, not {size[t]}")
            self._rows[t] = rows.copy()
        self._size, self._ptr = size.copy(), ptr.copy()


@dataclass
class Path:
    """One trajectory: its buffer rows, its return and whether z came from a posterior."""

    rows: np.ndarray
    ret: float
    posterior: bool


class PEARLPolicy:
    """Deterministic policy tanh(mean(s, z)) with a fixed z (an `evaluate.Policy`)."""

    def __init__(self, learner: PEARLLearner, policy: Any, z: np.ndarray) -> None:
        self.learner, self.policy, self.z = learner, policy, np.asarray(z, np.float32)

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        mean, _ = self.learner.policy_params(self.policy, np.asarray(obs, np.float32), self.z)
        return np.tanh(np.asarray(mean)).astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None:
        pass


class PEARL:
    """Meta-training state and loop of PEARL; also an `evaluate.MetaAgent`."""

    adapts = True

    def __init__(self, cfg: PEARLConfig) -> None:
        cfg.validate()
        self.cfg = cfg
        task_seed = cfg.seed if cfg.task_seed is None else cfg.task_seed
        self.env = mql.envs.make(cfg.env, seed=task_seed)
        self.eval_env = mql.envs.make(cfg.env, seed=task_seed)
        obs_dim = int(np.prod(self.env.observation_space.shape))
        act_dim = int(np.prod(self.env.action_space.shape))
        context_dim = obs_dim + act_dim + 1 + (obs_dim if cfg.use_next_obs_in_context else 0)
        self.spec = PEARLSpec(
            obs_dim=obs_dim,
            act_dim=act_dim,
            context_dim=context_dim,
            latent_dim=cfg.latent_dim,
            hidden=tuple(cfg.hidden),
            encoder_hidden=tuple(cfg.encoder_hidden),
            gamma=cfg.gamma,
            tau=cfg.tau,
            reward_scale=cfg.reward_scale,
            kl_lambda=cfg.kl_lambda,
            policy_mean_reg_weight=cfg.policy_mean_reg_weight,
            policy_std_reg_weight=cfg.policy_std_reg_weight,
            policy_pre_activation_weight=cfg.policy_pre_activation_weight,
        )
        self.learner = shared_learner(self.spec, cfg.lr)
        self.state = self.learner.init(jax.random.PRNGKey(cfg.seed))
        n_train = len(self.env.train_tasks)
        self.rl_buffer = TaskBuffers(n_train, cfg.replay_size, obs_dim, act_dim)
        self.enc_buffer = TaskBuffers(n_train, cfg.replay_size, obs_dim, act_dim)
        self.rng = np.random.default_rng([cfg.seed, 0])
        self.env_steps = 0
        self.episodes = 0
        self.warmup_tasks_done = 0

    @property
    def train_tasks(self) -> list[Task]:
        return self.env.train_tasks

    # -- acting and context --------------------------------------------------------------------
    def context_features(self, rows: np.ndarray) -> np.ndarray:
        """Encoder inputs (o, a, r[, o']) of buffer rows; r is the sparse reward if configured."""
        f = self.rl_buffer.split(rows)
        r = f["sparse_reward"] if self.cfg.sparse_rewards else f["reward"]
        parts = [f["obs"], f["action"], r[..., None]]
        if self.cfg.use_next_obs_in_context:
            parts.append(f["next_obs"])
        return np.concatenate(parts, -1)

    def infer(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """q(z | c) from the context of `rows` (padded to a power of two with masked factors, so
        that few shapes are compiled); the prior N(0, I) for no rows."""
        L = self.cfg.latent_dim
        if len(rows) == 0:
            return np.zeros(L, np.float32), np.ones(L, np.float32)
        ctx = self.context_features(rows)
        n = len(ctx)
        padded = max(32, 1 << (n - 1).bit_length())
        buf = np.zeros((padded, ctx.shape[1]), np.float32)
        buf[:n] = ctx
        mask = np.zeros(padded, np.float32)
        mask[:n] = 1.0
        mu, var = self.learner.posterior(self.state.critic["encoder"], buf, mask)
        return np.asarray(mu), np.asarray(var)

    def _sample_z(self, mu: np.ndarray, var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (mu + np.sqrt(var) * rng.standard_normal(mu.shape)).astype(np.float32)

    def rollout(
        self,
        env: Any,
        z: np.ndarray,
        seed: int,
        rng: np.random.Generator | None,
        posterior: bool = False,
    ) -> Path:
        """One trajectory with z fixed; stochastic actions from `rng`, deterministic if None."""
        policy = self.state.policy
        z = np.asarray(z, np.float32)
        o, a_dim = self.spec.obs_dim, self.spec.act_dim
        obs, _ = env.reset(seed=seed)
        rows, total, done = [], 0.0, False
        while not done:
            mean, log_std = self.learner.policy_params(policy, np.asarray(obs, np.float32), z)
            mean = np.asarray(mean, np.float64)
            if rng is None:
                action = np.tanh(mean)
            else:
                std = np.exp(np.asarray(log_std, np.float64))
                action = np.tanh(mean + std * rng.standard_normal(a_dim))
            action = action.astype(np.float32)
            next_obs, reward, terminated, truncated, info = env.step(action)
            row = np.empty(2 * o + a_dim + 3, np.float32)
            row[:o] = np.ravel(obs)
            row[o : o + a_dim] = action
            row[o + a_dim] = reward
            row[o + a_dim + 1] = info.get("sparse_reward", 0.0)
            row[o + a_dim + 2 : 2 * o + a_dim + 2] = np.ravel(next_obs)
            row[-1] = float(terminated)
            rows.append(row)
            total += float(reward)
            obs = next_obs
            done = terminated or truncated
        return Path(np.stack(rows), total, posterior)

    # -- meta-training -------------------------------------------------------------------------
    def collect(
        self, task: int, num_steps: int, posterior_every: int | None, add_to_enc: bool
    ) -> list[Path]:
        """oyster's `collect_data`: whole trajectories on training task `task` until at least
        `num_steps` steps. z starts from the prior and is redrawn after every trajectory, from
        the prior if `posterior_every` is None, else after every `posterior_every` trajectories
        from q(z | c) with c = `embedding_batch_size` rows of the task's encoder buffer."""
        cfg, env = self.cfg, self.env
        env.set_task(self.train_tasks[task])
        L = cfg.latent_dim
        mu, var = np.zeros(L, np.float32), np.ones(L, np.float32)
        z, from_posterior = self._sample_z(mu, var, self.rng), False
        paths: list[Path] = []
        steps = 0
        while steps < num_steps:
            seed = episode_seed(cfg.seed, _STREAM_TRAIN_EPISODE, self.episodes)
            self.episodes += 1
            path = self.rollout(env, z, seed, self.rng, from_posterior)
            paths.append(path)
            steps += len(path.rows)
            self.rl_buffer.add(task, path.rows)
            if add_to_enc:
                self.enc_buffer.add(task, path.rows)
            if posterior_every is not None and len(paths) % posterior_every == 0:
                rows = self.enc_buffer.sample(self.rng, task, cfg.embedding_batch_size)
                mu, var = self.learner.posterior(
                    self.state.critic["encoder"], self.context_features(rows)
                )
                mu, var, from_posterior = np.asarray(mu), np.asarray(var), True
            z = self._sample_z(mu, var, self.rng)
        self.env_steps += steps
        return paths

    def run_iteration(self) -> dict[str, float]:
        """Warm-up on the next training task, or one collect-and-train iteration."""
        start = time.perf_counter()
        cfg = self.cfg
        if self.warmup_tasks_done < len(self.train_tasks):
            paths = self.collect(self.warmup_tasks_done, cfg.num_initial_steps, None, True)
            self.warmup_tasks_done += 1
            return {
                "train/episode_return": float(np.mean([p.ret for p in paths])),
                "warmup": 1.0,
                "time/iteration_s": time.perf_counter() - start,
            }
        paths: list[Path] = []
        for _ in range(cfg.num_tasks_sample):
            task = int(self.rng.integers(len(self.train_tasks)))
            self.enc_buffer.clear(task)
            if cfg.num_steps_prior > 0:
                paths += self.collect(task, cfg.num_steps_prior, None, True)
            if cfg.num_steps_posterior > 0:
                paths += self.collect(task, cfg.num_steps_posterior, cfg.update_post_train, True)
            if cfg.num_extra_rl_steps_posterior > 0:
                paths += self.collect(
                    task, cfg.num_extra_rl_steps_posterior, cfg.update_post_train, False
                )
        t_collect = time.perf_counter()
        metrics = self.train(cfg.num_train_steps_per_itr)
        end = time.perf_counter()
        metrics["train/episode_return"] = float(np.mean([p.ret for p in paths]))
        for label, flag in (("prior", False), ("posterior", True)):
            rets = [p.ret for p in paths if p.posterior == flag]
            if rets:
                metrics[f"train/return_{label}_z"] = float(np.mean(rets))
        n = cfg.num_train_steps_per_itr
        metrics.update(
            {
                "train/updates": float(n),
                "time/collect_s": t_collect - start,
                "time/train_s": end - t_collect,
                "time/updates_per_s": n / max(end - t_collect, 1e-9),
            }
        )
        return metrics

    def sample_meta_batches(self, k: int) -> tuple[RLBatch, np.ndarray]:
        """`k` meta-batches: (k, T, B, ...) RL arrays and (k, T, C, context_dim) contexts."""
        cfg = self.cfg
        T, B, C = cfg.meta_batch, cfg.batch_size, cfg.embedding_batch_size
        rl = np.empty((k, T, B, self.rl_buffer.width), np.float32)
        enc = np.empty((k, T, C, self.rl_buffer.width), np.float32)
        for i in range(k):
            for j, task in enumerate(self.rng.integers(0, len(self.train_tasks), size=T)):
                rl[i, j] = self.rl_buffer.sample(self.rng, int(task), B)
                enc[i, j] = self.enc_buffer.sample(self.rng, int(task), C)
        f = self.rl_buffer.split(rl)
        batch = RLBatch(f["obs"], f["action"], f["reward"], f["next_obs"], f["done"])
        return batch, self.context_features(enc)

    def train(self, n_updates: int) -> dict[str, float]:
        """`n_updates` gradient steps in compiled calls of `mql.calls.call_sizes` updates each
        (`updates_per_call`, then 10, then single ones)."""
        sums: dict[str, float] = {}
        for k in call_sizes(n_updates, self.cfg.updates_per_call):
            batch, context = self.sample_meta_batches(k)
            self.state, m = self.learner.update_many(self.state, batch, context)
            for key, value in m.items():
                sums[key] = sums.get(key, 0.0) + float(value) * k
        return {f"losses/{k}": v / max(n_updates, 1) for k, v in sums.items()}

    # -- adaptation (posterior inference) ------------------------------------------------------
    def zero_shot_policy(self) -> PEARLPolicy:
        """Deterministic policy with z = 0, the prior mean."""
        return PEARLPolicy(self.learner, self.state.policy, np.zeros(self.cfg.latent_dim))

    def _eval_z(self, mu: np.ndarray, var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return mu.astype(np.float32) if self.cfg.eval_z == "mean" else self._sample_z(mu, var, rng)

    def adapt(self, env: Any, task: Task, seed: int) -> Adaptation:
        """oyster's `collect_paths` on `task` (see the module docstring)."""
        cfg = self.cfg
        rng = np.random.default_rng(seed)
        env.set_task(task)
        L = cfg.latent_dim
        rows: list[np.ndarray] = []
        returns: list[float] = []
        for k in range(cfg.adapt_episodes):
            if k < cfg.num_exp_traj_eval:
                z = self._sample_z(np.zeros(L), np.ones(L), rng)
            else:
                z = self._eval_z(*self.infer(np.concatenate(rows)), rng)
            path = self.rollout(env, z, episode_seed(seed, k), None)
            rows.append(path.rows)
            returns.append(path.ret)
        context = np.concatenate(rows)
        mu, var = self.infer(context)
        diagnostics = {
            "exploration_return_first": returns[0],
            "exploration_return_last": returns[-1],
            "posterior_var": float(np.mean(var)),
            "posterior_kl": float(np.sum(kl_to_standard_normal(mu, var))),
        }
        policy = PEARLPolicy(self.learner, self.state.policy, self._eval_z(mu, var, rng))
        return Adaptation(policy, new_task_steps=len(context), diagnostics=diagnostics)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, index: int, final: bool = False) -> list[EvalResult]:
        """The shared protocol on `eval_tasks` test tasks (`final_eval_tasks` if `final`) and
        `eval_train_tasks` training tasks."""
        return periodic_evaluation(self, self.eval_env, self.cfg, index, final)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: learner state, buffers, RNG, counters."""
        return {
            "train_state": as_numpy(serialization.to_state_dict(jax.device_get(self.state))),
            "rl_buffer": self.rl_buffer.state_dict(),
            "enc_buffer": self.enc_buffer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "warmup_tasks_done": self.warmup_tasks_done,
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore a `state_dict` (shapes must match this config)."""
        restored = serialization.from_state_dict(self.state, data["train_state"])
        self.state = jax.tree_util.tree_map(jnp.asarray, restored)
        self.rl_buffer.load_state_dict(data["rl_buffer"])
        self.enc_buffer.load_state_dict(data["enc_buffer"])
        self.rng.bit_generator.state = data["rng"]
        self.env_steps = int(data["env_steps"])
        self.episodes = int(data["episodes"])
        self.warmup_tasks_done = int(data["warmup_tasks_done"])

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
  batch (`batch_size`) from its RL buffer (`mql.algos.pearl.learner` has the losses).

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
NumPy Generator; each episode's reset seed from (seed, episode counter) (`mql.seeds`).
Evaluation uses only its own seeds. All of it is part of `state_dict`, so a resumed run
continues exactly.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from mql.algos.agent import AgentBase, Collected
from mql.algos.pearl.batched import PEARLBatchPolicy
from mql.algos.pearl.buffers import TaskBuffers
from mql.algos.pearl.config import PEARLConfig
from mql.algos.pearl.learner import (
    PEARLLearner,
    PEARLSpec,
    RLBatch,
    kl_to_standard_normal,
    shared_learner,
)
from mql.envs.base import Task
from mql.evaluate import Adaptation
from mql.offpolicy.updates import run_in_calls
from mql.rollout import BatchPolicy, Policy, Transition, run_episode, run_episodes
from mql.seeds import episode_seed


@dataclass
class Trajectory:
    """One trajectory: its buffer rows, its return and whether z came from a posterior."""

    rows: np.ndarray
    ret: float
    posterior: bool


class PEARLPolicy:
    """Deterministic policy tanh(mean(s, z)) with a fixed z (a `mql.rollout.Policy`): the
    policy the protocol scores."""

    def __init__(self, learner: PEARLLearner, policy: Any, z: np.ndarray) -> None:
        self.learner, self.policy, self.z = learner, policy, np.asarray(z, np.float32)

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        mean, _ = self.learner.policy_params(self.policy, np.asarray(obs, np.float32), self.z)
        return np.tanh(np.asarray(mean)).astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None:
        pass


class CollectingPolicy:
    """The policy of PEARL's own trajectories (collection, and the adaptation's exploration):
    tanh(mean + std ε) with ε from `rng`, or tanh(mean) when `rng` is None, with a fixed z,
    computed in float64 as oyster's sampler does (then cast to float32)."""

    def __init__(
        self, learner: PEARLLearner, policy: Any, z: np.ndarray, rng: np.random.Generator | None
    ) -> None:
        self.learner, self.policy, self.rng = learner, policy, rng
        self.z = np.asarray(z, np.float32)

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        mean, log_std = self.learner.policy_params(self.policy, np.asarray(obs, np.float32), self.z)
        mean = np.asarray(mean, np.float64)
        if self.rng is None:
            action = np.tanh(mean)
        else:
            std = np.exp(np.asarray(log_std, np.float64))
            action = np.tanh(mean + std * self.rng.standard_normal(mean.shape[-1]))
        return action.astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None:
        pass


class PEARL(AgentBase):
    """Meta-training state and loop of PEARL (an `mql.algos.agent.Algorithm`)."""

    cfg: PEARLConfig

    def __init__(self, cfg: PEARLConfig) -> None:
        super().__init__(cfg)
        obs_dim, act_dim = self.obs_dim, self.act_dim
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
    ) -> Trajectory:
        """One trajectory with z fixed; stochastic actions from `rng`, deterministic if None."""
        rows: list[np.ndarray] = []
        policy = CollectingPolicy(self.learner, self.state.policy, z, rng)
        episode = run_episode(env, policy, seed, self._row_writer(rows))
        return Trajectory(np.stack(rows), episode.ret, posterior)

    def _row_writer(self, rows: list[np.ndarray]) -> Callable[[Transition], None]:
        """An `on_step` appending each step as a buffer row (`TaskBuffers` layout)."""
        o, a_dim = self.spec.obs_dim, self.spec.act_dim

        def write(tr: Transition) -> None:
            row = np.empty(2 * o + a_dim + 3, np.float32)
            row[:o] = np.ravel(tr.obs)
            row[o : o + a_dim] = tr.action
            row[o + a_dim] = tr.reward
            row[o + a_dim + 1] = tr.info.get("sparse_reward", 0.0)
            row[o + a_dim + 2 : 2 * o + a_dim + 2] = np.ravel(tr.next_obs)
            row[-1] = float(tr.terminated)
            rows.append(row)

        return write

    # -- meta-training -------------------------------------------------------------------------
    def collect_task(
        self, task: int, num_steps: int, posterior_every: int | None, add_to_enc: bool
    ) -> list[Trajectory]:
        """oyster's `collect_data`: whole trajectories on training task `task` until at least
        `num_steps` steps. z starts from the prior and is redrawn after every trajectory, from
        the prior if `posterior_every` is None, else after every `posterior_every` trajectories
        from q(z | c) with c = `embedding_batch_size` rows of the task's encoder buffer."""
        cfg, env = self.cfg, self.env
        env.set_task(self.train_tasks[task])
        L = cfg.latent_dim
        mu, var = np.zeros(L, np.float32), np.ones(L, np.float32)
        z, from_posterior = self._sample_z(mu, var, self.rng), False
        paths: list[Trajectory] = []
        steps = 0
        while steps < num_steps:
            path = self.rollout(env, z, self.next_episode_seed(), self.rng, from_posterior)
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

    def warmup_steps_per_task(self) -> int:
        return self.cfg.num_initial_steps

    def warmup_task(self, task: int) -> list[float]:
        """`num_initial_steps` on `task` with z ~ prior, into both buffers."""
        paths = self.collect_task(task, self.cfg.num_initial_steps, None, True)
        return [p.ret for p in paths]

    def collect(self) -> Collected:
        """oyster's collection of one iteration (module docstring)."""
        cfg = self.cfg
        paths: list[Trajectory] = []
        for _ in range(cfg.num_tasks_sample):
            task = int(self.rng.integers(len(self.train_tasks)))
            self.enc_buffer.clear(task)
            if cfg.num_steps_prior > 0:
                paths += self.collect_task(task, cfg.num_steps_prior, None, True)
            if cfg.num_steps_posterior > 0:
                paths += self.collect_task(
                    task, cfg.num_steps_posterior, cfg.update_post_train, True
                )
            if cfg.num_extra_rl_steps_posterior > 0:
                paths += self.collect_task(
                    task, cfg.num_extra_rl_steps_posterior, cfg.update_post_train, False
                )
        metrics = {}
        for label, flag in (("prior", False), ("posterior", True)):
            rets = [p.ret for p in paths if p.posterior == flag]
            if rets:
                metrics[f"train/return_{label}_z"] = float(np.mean(rets))
        return Collected([p.ret for p in paths], sum(len(p.rows) for p in paths), metrics)

    def updates_after(self, collected_steps: int) -> int:
        return self.cfg.num_train_steps_per_itr

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
        """`n_updates` gradient steps in compiled calls of `mql.offpolicy.calls.call_sizes`
        updates each (`updates_per_call`, then 10, then single ones)."""

        def call(k: int) -> dict[str, Any]:
            batch, context = self.sample_meta_batches(k)
            self.state, m = self.learner.update_many(self.state, batch, context)
            return m

        return run_in_calls(n_updates, self.cfg.updates_per_call, call)

    # -- adaptation (posterior inference) ------------------------------------------------------
    def zero_shot_policy(self) -> PEARLPolicy:
        """Deterministic policy with z = 0, the prior mean."""
        return PEARLPolicy(self.learner, self.state.policy, np.zeros(self.cfg.latent_dim))

    def _eval_z(self, mu: np.ndarray, var: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return mu.astype(np.float32) if self.cfg.eval_z == "mean" else self._sample_z(mu, var, rng)

    def _adapt_episodes(self, episodes: int | None) -> int:
        n_episodes = self.cfg.adapt_episodes if episodes is None else episodes
        if n_episodes < 1:
            raise ValueError(f"PEARL adapts on at least one trajectory, got {n_episodes}")
        return n_episodes

    def _trajectory_z(self, k: int, rows: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """z of adaptation trajectory k: from the prior for the first `num_exp_traj_eval`, then
        from the posterior of all the context so far."""
        if k < self.cfg.num_exp_traj_eval:
            L = self.cfg.latent_dim
            return self._sample_z(np.zeros(L), np.ones(L), rng)
        return self._eval_z(*self.infer(np.concatenate(rows)), rng)

    def _adaptation(
        self, rows: list[np.ndarray], returns: list[float], rng: np.random.Generator
    ) -> Adaptation:
        """The adapted policy (z from the posterior of all of `rows`) and its diagnostics."""
        context = np.concatenate(rows)
        mu, var = self.infer(context)
        diagnostics = {
            "exploration_return_first": returns[0],
            "exploration_return_last": returns[-1],
            "posterior_var": float(np.mean(var)),
            "posterior_kl": float(np.sum(kl_to_standard_normal(mu, var))),
        }
        policy = PEARLPolicy(self.learner, self.state.policy, self._eval_z(mu, var, rng))
        return Adaptation(
            policy, new_task_steps=len(context), diagnostics=diagnostics, episodes=len(rows)
        )

    def adapt(self, env: Any, task: Task, seed: int, episodes: int | None = None) -> Adaptation:
        """oyster's `collect_paths` on `task` (see the module docstring), with `episodes`
        trajectories (None: `adapt_episodes`)."""
        n_episodes = self._adapt_episodes(episodes)
        rng = np.random.default_rng(seed)
        env.set_task(task)
        rows: list[np.ndarray] = []
        returns: list[float] = []
        for k in range(n_episodes):
            z = self._trajectory_z(k, rows, rng)
            path = self.rollout(env, z, episode_seed(seed, k), None)
            rows.append(path.rows)
            returns.append(path.ret)
        return self._adaptation(rows, returns, rng)

    def adapt_tasks(
        self,
        envs: Sequence[Any],
        tasks: Sequence[Task],
        seeds: Sequence[int],
        episodes: int | None = None,
    ) -> list[Adaptation]:
        """`adapt(envs[j], tasks[j], seeds[j], episodes)` for every task j, the k-th
        trajectories of all tasks stepped together (one compiled call per time step)."""
        n_episodes = self._adapt_episodes(episodes)
        rngs = [np.random.default_rng(s) for s in seeds]
        rows: list[list[np.ndarray]] = [[] for _ in tasks]
        returns: list[list[float]] = [[] for _ in tasks]
        for env, task in zip(envs, tasks, strict=True):
            env.set_task(task)
        for k in range(n_episodes):
            zs = np.stack([self._trajectory_z(k, r, g) for r, g in zip(rows, rngs, strict=True)])
            steps: list[list[np.ndarray]] = [[] for _ in tasks]
            done = run_episodes(
                envs,
                PEARLBatchPolicy(self.learner, self.state.policy, zs, float64=True),
                [episode_seed(s, k) for s in seeds],
                [self._row_writer(rows_j) for rows_j in steps],
            )
            for j, episode in enumerate(done):
                rows[j].append(np.stack(steps[j]))
                returns[j].append(episode.ret)
        return [self._adaptation(r, ret, g) for r, ret, g in zip(rows, returns, rngs, strict=True)]

    def batch_policy(self, policies: Sequence[Policy], repeat: int) -> BatchPolicy:
        """The deterministic policies of `policies` (PEARL policies: one network, a z each),
        each on `repeat` slots, as one `BatchPolicy` (`mql.algos.pearl.batched`)."""
        if not policies or any(
            not isinstance(p, PEARLPolicy) or p.policy is not policies[0].policy for p in policies
        ):
            raise TypeError("PEARL.batch_policy needs PEARL policies of one network")
        zs = np.repeat(np.stack([p.z for p in policies]), repeat, axis=0)
        return PEARLBatchPolicy(self.learner, policies[0].policy, zs)

    # -- checkpoints ---------------------------------------------------------------------------
    def buffers_state(self) -> dict[str, Any]:
        return {
            "rl_buffer": self.rl_buffer.state_dict(),
            "enc_buffer": self.enc_buffer.state_dict(),
        }

    def load_buffers_state(self, data: dict[str, Any]) -> None:
        self.rl_buffer.load_state_dict(data["rl_buffer"])
        self.enc_buffer.load_state_dict(data["enc_buffer"])

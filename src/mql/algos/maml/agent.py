"""MAML-TRPO (Finn et al. 2017) and ProMP (Rothfuss et al. 2019) on the batched sampler.

One iteration (Finn et al. 2017, Algorithm 3; Rothfuss et al. 2019, Algorithm 1): draw
`meta_batch` training tasks; for each inner step k = 0 .. K-1, `rollouts_per_task` episodes of
every task's current policy theta'_k (theta'_0 = theta) sampled together
(`mql.onpolicy.sampler`, one slot per episode), advantages per task
(`mql.onpolicy.path_advantages`: the linear baseline fitted on the task's own episodes, GAE,
normalised per task), and the inner step
theta'_{k+1} = theta'_k + alpha grad J (`mql.onpolicy.meta_gradient`); then the adapted policies'
episodes and the outer update through the inner steps (`mql.algos.maml.outer`: TRPO for
MAML-TRPO, ProMP's clipped surrogate with Adam).

Protocol (`mql.evaluate`): zero-shot = the pre-update policy theta; adaptation = for each inner
step, K new-task episodes (K = `eval_adapt_rollouts`, by default `rollouts_per_task`: ProMP's
20 x horizon steps; 1 is MQL's budget) of the current policy, the linear baseline fitted on
them, one inner step; the adapted policy is theta'_K. `Adaptation.episodes` is K, the episodes
per inner step (the same as the total with one inner step); `new_task_steps` counts every step
of every inner step. Adaptation episodes draw their action noise from (seed, step, episode);
scored episodes from (run seed, first observation), as RL2's, so paired episodes share it.
"""

from __future__ import annotations

import time
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mql.algos.agent import AgentBase
from mql.algos.maml.config import MAMLTRPOConfig, MetaGradientConfig, ProMPConfig
from mql.algos.maml.outer import (
    InnerSettings,
    MetaState,
    OuterFn,
    ProMPSettings,
    make_promp_update,
    make_trpo_update,
)
from mql.envs.base import Task
from mql.evaluate import Adaptation
from mql.onpolicy.meta_gradient import PathBatch, adapted_chain, task_map
from mql.onpolicy.path_advantages import linear_baseline_advantages
from mql.onpolicy.policies import GaussianMLP, log_prob
from mql.onpolicy.sampler import Sampler
from mql.onpolicy.trpo import TRPOSettings
from mql.onpolicy.types import PolicyInputs, Trajectories
from mql.rollout import Transition, run_episode
from mql.seeds import TRAIN_EPISODE, episode_seed

__all__ = ["MAMLTRPO", "MLPPolicy", "MetaGradientAgent", "ProMP", "SampledIteration"]


class SampledIteration(NamedTuple):
    """One iteration's data before the outer update (`MetaGradientAgent.sample_iteration`)."""

    pre: tuple[PathBatch, ...]
    """Each inner step's batch (the policies theta'_0 .. theta'_{K-1}), task axis first."""
    post: PathBatch
    """The adapted policies' batch (theta'_K)."""
    post_score: jax.Array
    """(meta_batch,) each task's post-update return, standardised (E-MAML's weight)."""
    returns: list[np.ndarray]
    """Per sampling round (pre-update, ..., post-update), every episode's return."""
    steps: int
    """Environment steps sampled."""
    times: dict[str, float]
    """Seconds spent sampling, fitting advantages and computing the inner steps."""


class MetaGradientAgent(AgentBase):
    """The shared part of MAML-TRPO and ProMP (see the module docstring); a subclass supplies
    `make_outer` and `initial_opt_state`."""

    def __init__(self, cfg: MetaGradientConfig) -> None:
        super().__init__(cfg)
        self.cfg: MetaGradientConfig = cfg
        self.module = GaussianMLP(self.act_dim, tuple(cfg.hidden), cfg.init_std)
        key, init_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
        params = self.module.init(init_key, jnp.zeros((1, self.obs_dim)))
        kl_coef = jnp.full((cfg.inner_steps,), self.initial_kl_coef(), jnp.float32)
        self.state = MetaState(params, self.initial_opt_state(params), key, kl_coef)
        self.apply_fn = self.module.apply
        self.inner = InnerSettings(
            cfg.inner_lr, cfg.inner_estimator, cfg.gamma, cfg.exploration_coef
        )
        self.horizon = cfg.train_horizon(int(self.env.horizon))
        self.slots = cfg.meta_batch * cfg.rollouts_per_task
        self._act = jax.jit(_sample_step(self.apply_fn, cfg.meta_batch, cfg.rollouts_per_task))
        self._adapt = jax.jit(self._adapted)
        self._mean = jax.jit(self.apply_fn)
        self._log_probs = jax.jit(lambda p, o, a: log_prob(*self.apply_fn(p, o), a))
        self._outer = self.make_outer()
        self._sampler: Sampler | None = None
        self.warmup_tasks_done = len(self.train_tasks)  # on-policy: no warm-up

    # -- what the subclasses supply ------------------------------------------------------------
    def make_outer(self) -> OuterFn:
        raise NotImplementedError

    def initial_opt_state(self, params: Any) -> Any:
        return optax.EmptyState()

    def initial_kl_coef(self) -> float:
        return 0.0

    def outer_updates(self) -> int:
        """Parameter updates of one outer step (for the `train/updates` metric)."""
        return 1

    # -- sampling ------------------------------------------------------------------------------
    @property
    def sampler(self) -> Sampler:
        if self._sampler is None:
            task_seed = self.cfg.seed if self.cfg.task_seed is None else self.cfg.task_seed
            self._sampler = Sampler(
                self.cfg.env, task_seed, self.slots, self.cfg.sampler_processes, self.horizon
            )
        return self._sampler

    def close(self) -> None:
        """Stop the sampler's worker processes."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    def draw_tasks(self) -> np.ndarray:
        """The iteration's `meta_batch` training tasks (indices)."""
        n_train, m = len(self.train_tasks), self.cfg.meta_batch
        if self.cfg.task_sampling == "without_replacement":
            return self.rng.choice(n_train, m, replace=False)
        return self.rng.integers(n_train, size=m)

    def sample(self, task_ids: np.ndarray, params: Any) -> Trajectories:
        """One episode per slot, `rollouts_per_task` slots per task; `params` stacked (M, ...)
        (the policy of each task)."""
        r = self.cfg.rollouts_per_task
        seeds = np.array(
            [
                [episode_seed(self.cfg.seed, TRAIN_EPISODE, self.episodes + j)]
                for j in range(self.slots)
            ],
            np.int64,
        )
        self.episodes += self.slots
        key, sub = jax.random.split(self.state.key)
        self.state = self.state._replace(key=key)
        act = self._act

        def step_fn(k: Any, inputs: PolicyInputs) -> tuple[np.ndarray, np.ndarray, Any]:
            action, logp, k = act(params, inputs.obs, k)
            return np.asarray(action), np.asarray(logp), k

        slot_tasks = np.repeat(task_ids, r)
        tasks = [self.train_tasks[i] for i in slot_tasks]
        traj, _ = self.sampler.sample(tasks, seeds, step_fn, sub, task_ids=slot_tasks)
        return traj

    def path_batch(self, traj: Trajectories, m: int, r: int) -> PathBatch:
        """The (M, T, R, ...) batch of `traj` (slot j = task j // r, time padded to the
        horizon), with advantages fitted per task."""
        cfg = self.cfg
        groups = np.arange(m * r) // r
        adv = linear_baseline_advantages(
            traj,
            traj.episode_end,
            traj.t_episode,
            groups,
            cfg.gamma,
            cfg.gae_lambda,
            cfg.bootstrap_truncation,
            cfg.normalize_advantages,
        )
        t_max = max(self.horizon, traj.valid.shape[0])

        def per_task(x: np.ndarray, dtype: Any = np.float32) -> jax.Array:
            x = np.asarray(x, dtype)
            pad = np.zeros((t_max - x.shape[0], *x.shape[1:]), dtype)
            x = np.concatenate([x, pad]).reshape(t_max, m, r, *x.shape[2:])
            return jnp.asarray(np.moveaxis(x, 1, 0))

        return PathBatch(
            obs=per_task(traj.obs),
            actions=per_task(traj.actions),
            log_probs=per_task(traj.log_probs),
            advantages=per_task(adv.advantages),
            rewards=per_task(traj.rewards),
            baselines=per_task(adv.values),
            valid=per_task(traj.valid),
        )

    def _adapted(self, params: Any, batches: tuple[PathBatch, ...]) -> Any:
        """theta'_K of every task of the batches (stacked over their leading axis)."""
        s = self.inner
        return task_map(
            lambda b: adapted_chain(self.apply_fn, params, b, s.alpha, s.estimator, s.gamma)[-1],
            batches,
        )

    # -- one iteration -------------------------------------------------------------------------
    def sample_iteration(self) -> SampledIteration:
        """An iteration's data at the current meta-parameters, up to the outer update: each
        inner step's batch and the adapted policies' batch of a fresh draw of the meta-batch's
        tasks (`SampledIteration`). `run_iteration` is this, then the outer update; like it,
        this advances the agent's random state and episode count, not its parameters or its
        environment step count."""
        cfg = self.cfg
        m, r = cfg.meta_batch, cfg.rollouts_per_task
        t_sample = t_adv = t_inner = 0.0
        task_ids = self.draw_tasks()
        theta = self.state.params
        policy = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (m, *x.shape)), theta)
        batches: list[PathBatch] = []
        returns: list[np.ndarray] = []
        steps = 0
        for k in range(cfg.inner_steps + 1):
            t0 = time.perf_counter()
            traj = self.sample(task_ids, policy)
            t1 = time.perf_counter()
            batch = self.path_batch(traj, m, r)
            t2 = time.perf_counter()
            steps += traj.steps
            returns.append(traj.episode_returns()[:, 0])
            t_sample += t1 - t0
            t_adv += t2 - t1
            if k < cfg.inner_steps:
                batches.append(batch)
                policy = self._adapt(theta, tuple(batches))
                jax.block_until_ready(policy)
                t_inner += time.perf_counter() - t2
        post_returns = returns[-1].reshape(m, r).mean(axis=1)
        score = (post_returns - post_returns.mean()) / (post_returns.std() + 1e-8)
        return SampledIteration(
            tuple(batches),
            batch,
            jnp.asarray(score, jnp.float32),
            returns,
            steps,
            {"time/sample_s": t_sample, "time/advantages_s": t_adv, "time/inner_s": t_inner},
        )

    def run_iteration(self) -> dict[str, float]:
        start = time.perf_counter()
        it = self.sample_iteration()
        t_outer = time.perf_counter()
        self.state, metrics = self._outer(self.state, it.pre, it.post, it.post_score)
        out = {k: float(v) for k, v in jax.device_get(metrics).items()}
        end = time.perf_counter()
        self.env_steps += it.steps
        for k, ret in enumerate(it.returns):
            out[f"train/return_step{k}"] = float(np.mean(ret))
        out["train/episode_return"] = float(np.mean(it.returns[-1]))
        out["train/return_pre"] = float(np.mean(it.returns[0]))
        out["train/updates"] = float(self.outer_updates())
        out["train/log_std"] = float(np.mean(np.asarray(self.state.params["params"]["log_std"])))
        out.update(it.times)
        out["time/outer_s"] = end - t_outer
        out["time/iteration_s"] = end - start
        return out

    # -- protocol ------------------------------------------------------------------------------
    def _policy(self, params: Any) -> MLPPolicy:
        return MLPPolicy(self._mean, params, self.cfg.eval_deterministic, self.cfg.seed)

    def zero_shot_policy(self) -> MLPPolicy:
        """The pre-update policy theta."""
        return self._policy(self.state.params)

    def adapt(self, env: Any, task: Task, seed: int, episodes: int | None = None) -> Adaptation:
        """`inner_steps` inner steps, each on `episodes` (default `eval_adapt_rollouts`) new-task
        episodes of the policy adapted so far (see the module docstring)."""
        k = self.cfg.adapt_rollouts() if episodes is None else episodes
        if k == 0:
            return Adaptation(self.zero_shot_policy(), 0, {}, episodes=0)
        theta = self.state.params
        params, batches, steps = theta, [], 0
        env.set_task(task)
        for step in range(self.cfg.inner_steps):
            traj = self._episodes(env, params, k, seed, step)
            steps += traj.steps
            batches.append(self.path_batch(traj, 1, k))
            adapted = self._adapt(theta, tuple(batches))
            params = jax.tree_util.tree_map(lambda x: x[0], adapted)
        diagnostics = {"adapt/inner_steps": float(self.cfg.inner_steps)}
        return Adaptation(self._policy(params), steps, diagnostics, episodes=k)

    def _episodes(self, env: Any, params: Any, k: int, seed: int, step: int) -> Trajectories:
        """`k` sampled episodes of `params` on `env` as a (T, k) batch."""
        records: list[list[Transition]] = []
        policy = self._policy(params)
        policy.deterministic = False
        for e in range(k):
            records.append([])
            policy.noise_seed = (seed, step, e)
            run_episode(env, policy, episode_seed(seed, step, e), records[-1].append)
        traj = _as_trajectories(records, self.obs_dim, self.act_dim)
        logp = self._log_probs(params, jnp.asarray(traj.obs), jnp.asarray(traj.actions))
        return traj._replace(log_probs=np.asarray(logp) * traj.valid)


class MAMLTRPO(MetaGradientAgent):
    """MAML-TRPO: VPG inner steps, TRPO outer step (`mql.algos.maml.outer.make_trpo_update`)."""

    cfg: MAMLTRPOConfig

    def make_outer(self) -> OuterFn:
        cfg: MAMLTRPOConfig = self.cfg  # type: ignore[assignment]
        settings = TRPOSettings(
            cfg.max_kl, cfg.cg_iters, cfg.cg_damping, cfg.backtrack_ratio, cfg.max_backtracks
        )
        return make_trpo_update(self.apply_fn, self.inner, settings, cfg.hvp, cfg.hvp_tasks)


class ProMP(MetaGradientAgent):
    """ProMP: LVC inner steps, clipped surrogate + KL penalty with Adam
    (`mql.algos.maml.outer.make_promp_update`)."""

    cfg: ProMPConfig

    def _optimizer(self) -> optax.GradientTransformation:
        return optax.adam(self.cfg.lr)  # type: ignore[attr-defined]

    def initial_opt_state(self, params: Any) -> Any:
        return self._optimizer().init(params)

    def initial_kl_coef(self) -> float:
        return float(self.cfg.kl_coef)  # type: ignore[attr-defined]

    def outer_updates(self) -> int:
        return int(self.cfg.outer_steps)  # type: ignore[attr-defined]

    def make_outer(self) -> OuterFn:
        cfg: ProMPConfig = self.cfg  # type: ignore[assignment]
        settings = ProMPSettings(cfg.clip, cfg.outer_steps, cfg.adaptive_kl, cfg.target_inner_kl)
        return make_promp_update(self.apply_fn, self.inner, self._optimizer(), settings)


def _sample_step(apply_fn: Any, m: int, r: int) -> Any:
    """(params (M, ...), obs (M r, d), key) -> (actions, log-probs, key): slot j acts with the
    policy of task j // r."""

    def step(params: Any, obs: jax.Array, key: jax.Array) -> Any:
        obs = jnp.asarray(obs, jnp.float32).reshape(m, r, -1)
        mean, log_std = jax.vmap(apply_fn)(params, obs)
        key, sub = jax.random.split(key)
        action = mean + jnp.exp(log_std) * jax.random.normal(sub, mean.shape)
        logp = log_prob(mean, log_std, action)
        return action.reshape(m * r, -1), logp.reshape(m * r), key

    return step


def _as_trajectories(records: list[list[Transition]], obs_dim: int, act_dim: int) -> Trajectories:
    """Episodes recorded by `run_episode` as a `(T, k)` batch (log-probs left zero)."""
    k, t_max = len(records), max(len(r) for r in records)
    obs = np.zeros((t_max, k, obs_dim), np.float32)
    actions = np.zeros((t_max, k, act_dim), np.float32)
    rewards = np.zeros((t_max, k), np.float32)
    terminated = np.zeros((t_max, k), bool)
    truncated = np.zeros((t_max, k), bool)
    final_obs = np.zeros((t_max, k, obs_dim), np.float32)
    valid = np.zeros((t_max, k), bool)
    for j, episode in enumerate(records):
        for tr in episode:
            obs[tr.t, j], actions[tr.t, j], rewards[tr.t, j] = tr.obs, tr.action, tr.reward
            terminated[tr.t, j], valid[tr.t, j] = tr.terminated, True
            truncated[tr.t, j] = tr.truncated
            if tr.terminated or tr.truncated:
                final_obs[tr.t, j] = tr.next_obs
    t_episode = np.broadcast_to(np.arange(t_max)[:, None], (t_max, k)).astype(np.int32)
    zeros = np.zeros((t_max + 1, k), np.float32)
    inputs = PolicyInputs(
        np.concatenate([obs, obs[-1:]]), np.zeros((t_max + 1, k, act_dim), np.float32), zeros, zeros
    )
    return Trajectories(
        obs=obs,
        actions=actions,
        log_probs=np.zeros((t_max, k), np.float32),
        rewards=rewards,
        terminated=terminated,
        truncated=truncated,
        final_obs=final_obs,
        valid=valid,
        episode=np.zeros((t_max, k), np.int32),
        t_episode=t_episode,
        task_ids=np.zeros(k, np.int32),
        inputs=inputs,
    )


class MLPPolicy:
    """The MLP policy with parameters `params` for the protocol's episodes (`mql.rollout.Policy`).

    Sampled actions use NumPy noise seeded from `noise_seed` when set (adaptation episodes), else
    from (`seed`, the episode's first observation), so two policies scored on the same reset seed
    draw the same noise (paired episodes)."""

    def __init__(self, mean_fn: Any, params: Any, deterministic: bool, seed: int) -> None:
        self.mean_fn, self.params = mean_fn, params
        self.deterministic, self.seed = deterministic, seed
        self.noise_seed: tuple[int, ...] | None = None
        self.noise: np.random.Generator | None = None

    def reset(self) -> None:
        self.noise = None

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.noise is None:
            extra = self.noise_seed or (zlib.crc32(np.asarray(obs, np.float64).tobytes()),)
            self.noise = np.random.default_rng([self.seed, *extra])
        mean, log_std = self.mean_fn(self.params, np.asarray(obs, np.float32)[None])
        mean = np.asarray(mean[0])
        if self.deterministic:
            return mean.astype(np.float32)
        std = np.exp(np.asarray(log_std[0]))
        return (mean + std * self.noise.standard_normal(mean.shape[-1])).astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None:
        pass

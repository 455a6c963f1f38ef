"""Meta-Q-Learning: multi-task TD3 meta-training (eq. 15) and adaptation (eq. 18, 19, 13).

Covers the paper's variants through `MQLConfig.algo`:
- `td3`: no context, no adaptation;  `td3-context`: GRU context, no adaptation;
- `mql`: context, eq. 18 then eq. 19 adaptation with λ = 1 - ESS (or the preset's rule);
- `mql-no-eq19`: eq. 18 only;  `mql-fixed-lambda`: λ fixed (Fig. 4c: 0.5).

Meta-training (REFERENCE §2): one replay buffer holding every training task's transitions
(sampled uniformly, task identity ignored by the learner); warm-up with uniform random actions,
`num_initial_steps` per training task; then iterations of: collect `num_tasks_sample` episodes,
each on a uniformly drawn training task, with N(0, expl_noise) exploration noise; train for as
many updates as steps were just collected while the buffer holds fewer than `small_buffer`
transitions, else `num_train_steps` updates. (The released loop trained, then collected; here
one iteration collects, then trains, which is the same sequence shifted by half an iteration.)

Randomness: network init and TD3 noise come from the JAX key in the train state; exploration,
task choice and minibatch indices from one NumPy Generator; each episode's reset seed from
(seed, episode counter). All of it is part of `state_dict`, so a resumed run continues exactly.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

import mql.envs
from mql import kernels
from mql.adapt import beta_stats, effective_sample_size, fit_propensity, proximal_coefficient
from mql.calls import call_sizes
from mql.checkpoint import as_numpy
from mql.config import MQLConfig
from mql.envs.base import Task
from mql.evaluate import Adaptation, EvalResult, episode_seed, periodic_evaluation
from mql.replay import Batch, ContextWindow, ReplayBuffer, unpack
from mql.staging import BatchStaging
from mql.td3 import TD3, Anchor, TD3Spec, TrainState, no_anchor, shared_td3

_STREAM_TRAIN_EPISODE = 1


def td3_spec(cfg: MQLConfig, obs_dim: int, act_dim: int) -> TD3Spec:
    """The learner spec of `cfg` for an environment with these observation/action sizes."""
    return TD3Spec(
        obs_dim=obs_dim,
        act_dim=act_dim,
        history_len=cfg.history_len,
        hidden=tuple(cfg.hidden),
        context_dim=cfg.context_dim,
        context_mode=cfg.effective_context_mode,
        gamma=cfg.gamma,
        tau=cfg.tau,
        policy_noise=cfg.policy_noise,
        noise_clip=cfg.noise_clip,
        policy_freq=cfg.policy_freq,
        gru_kernel=cfg.gru_kernel,
    )


class MQLPolicy:
    """Deterministic actor with its online context window (an `evaluate.Policy`)."""

    def __init__(
        self,
        td3: TD3,
        state: TrainState,
        noise: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.td3, self.state, self.noise, self.rng = td3, state, noise, rng
        s = td3.spec
        self.window = ContextWindow(s.obs_dim, s.act_dim, s.history_len)

    def reset(self) -> None:
        self.window.reset()

    def act(self, obs: np.ndarray) -> np.ndarray:
        action = np.asarray(
            self.td3.act(
                self.state.actor,
                self.state.critic,
                jnp.asarray(obs, jnp.float32),
                self.window.history(),
            )
        )
        if self.noise > 0.0 and self.rng is not None:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None:
        self.window.push(obs, action, reward)


class MQL:
    """Meta-training state and loop of MQL and its ablations; also an `evaluate.MetaAgent`."""

    def __init__(self, cfg: MQLConfig) -> None:
        cfg.validate()
        kernels.resolve(cfg.gru_kernel)  # NativeKernelError now, not deep inside tracing
        self.cfg = cfg
        task_seed = cfg.seed if cfg.task_seed is None else cfg.task_seed
        self.env = mql.envs.make(cfg.env, seed=task_seed)
        self.eval_env = mql.envs.make(cfg.env, seed=task_seed)
        obs_dim = int(np.prod(self.env.observation_space.shape))
        act_dim = int(np.prod(self.env.action_space.shape))
        self.spec = td3_spec(cfg, obs_dim, act_dim)
        self.td3 = shared_td3(self.spec)
        self.state = self.td3.init(jax.random.PRNGKey(cfg.seed), cfg.lr)
        self.replay = ReplayBuffer(cfg.replay_size, obs_dim, act_dim, cfg.history_len)
        self._staging = BatchStaging()  # reused host memory for the minibatches of `_updates`
        self.rng = np.random.default_rng([cfg.seed, 0])
        self.env_steps = 0
        self.episodes = 0
        self.warmup_tasks_done = 0
        self.adapts = cfg.adapts

    # -- meta-training ---------------------------------------------------------------------
    @property
    def train_tasks(self) -> list[Task]:
        return self.env.train_tasks

    def collect_episode(self, task_index: int, random_actions: bool) -> tuple[float, int]:
        """One episode on training task `task_index` into the replay buffer."""
        env = self.env
        env.set_task(self.train_tasks[task_index])
        obs, _ = env.reset(seed=episode_seed(self.cfg.seed, _STREAM_TRAIN_EPISODE, self.episodes))
        self.episodes += 1
        policy = MQLPolicy(self.td3, self.state, self.cfg.expl_noise, self.rng)
        policy.reset()
        total, t, done = 0.0, 0, False
        while not done:
            if random_actions:
                action = self.rng.uniform(-1.0, 1.0, size=env.action_space.shape).astype(np.float32)
            else:
                action = policy.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            self.replay.add(obs, action, float(reward), next_obs, bool(terminated), task_index, t)
            policy.observe(obs, action, float(reward))
            total += float(reward)
            t += 1
            obs = next_obs
            done = terminated or truncated
        self.env_steps += t
        return total, t

    def run_iteration(self) -> dict[str, float]:
        """Warm-up on the next training task, or one collect-and-train iteration."""
        start = time.perf_counter()
        cfg = self.cfg
        if self.warmup_tasks_done < len(self.train_tasks) and cfg.num_initial_steps > 0:
            steps, returns = 0, []
            while steps < cfg.num_initial_steps:
                ret, n = self.collect_episode(self.warmup_tasks_done, random_actions=True)
                steps += n
                returns.append(ret)
            self.warmup_tasks_done += 1
            return {
                "train/episode_return": float(np.mean(returns)),
                "warmup": 1.0,
                "time/iteration_s": time.perf_counter() - start,
            }
        self.warmup_tasks_done = len(self.train_tasks)
        collected, returns = 0, []
        for _ in range(cfg.num_tasks_sample):
            ret, n = self.collect_episode(int(self.rng.integers(len(self.train_tasks))), False)
            collected += n
            returns.append(ret)
        t_collect = time.perf_counter()
        n_updates = collected if len(self.replay) < cfg.small_buffer else cfg.num_train_steps
        metrics = self.train(n_updates)
        end = time.perf_counter()
        metrics.update(
            {
                "train/episode_return": float(np.mean(returns)),
                "train/updates": float(n_updates),
                "time/collect_s": t_collect - start,
                "time/train_s": end - t_collect,
                "time/updates_per_s": n_updates / max(end - t_collect, 1e-9),
            }
        )
        return metrics

    def train(self, n_updates: int) -> dict[str, float]:
        """`n_updates` meta-training updates (eq. 15) on uniform minibatches of the buffer."""
        self.state, metrics = self._updates(
            self.state,
            n_updates,
            lambda: self._sample(self.replay, self.cfg.batch_size),
            None,
            no_anchor(self.state),
        )
        return metrics

    def _sample(self, buffer: ReplayBuffer, batch_size: int) -> np.ndarray:
        return buffer.sample_indices(self.rng, batch_size)

    def _updates(
        self,
        state: TrainState,
        n: int,
        draw,
        weight_fn,
        anchor: Anchor,
        buffer: ReplayBuffer | None = None,
    ) -> tuple[TrainState, dict[str, float]]:
        """Run `n` updates in compiled calls of `mql.calls.call_sizes` updates each (chunks of
        `updates_per_call`, then of 10, then single updates)."""
        buffer = self.replay if buffer is None else buffer
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for k in call_sizes(n, self.cfg.updates_per_call):
            indices = [draw() for _ in range(k)]
            host, packed = self._staging.stage(buffer, indices)
            weights = (
                np.ones((k, len(indices[0])), np.float32)
                if weight_fn is None
                else weight_fn(unpack(host, self.spec.act_dim))
            )
            state, m = self.td3.update_many(state, packed, weights, anchor)
            self._staging.consumed_by((state, m))
            for key, value in m.items():
                value = float(value)
                if np.isfinite(value):  # a chunk without an actor step has no actor loss
                    sums[key] = sums.get(key, 0.0) + value * k
                    counts[key] = counts.get(key, 0) + k
        return state, {f"losses/{key}": v / counts[key] for key, v in sums.items()}

    # -- adaptation (eq. 18, 19) -------------------------------------------------------------
    def zero_shot_policy(self) -> MQLPolicy:
        return MQLPolicy(self.td3, self.state)

    def _features(self, state: TrainState, batch: Batch) -> np.ndarray:
        """Propensity features of a batch: the actor's context z (optionally with obs)."""
        z = np.asarray(self.td3.actor_features(state.actor, state.critic, batch.history))
        if self.cfg.propensity_features == "context+obs":
            z = np.concatenate([z, batch.obs.reshape((*z.shape[:-1], -1))], -1)
        return z.reshape(-1, z.shape[-1])

    def adapt(self, env: Any, task: Task, seed: int) -> Adaptation:
        """MQL's adaptation to `task` from a copy of the meta-trained state (§3.2)."""
        cfg, meta = self.cfg, self.state
        # 1. one episode of the deterministic meta-policy on the new task
        new = ReplayBuffer(self.env.horizon, self.spec.obs_dim, self.spec.act_dim, cfg.history_len)
        env.set_task(task)
        obs, _ = env.reset(seed=seed)
        policy = self.zero_shot_policy()
        policy.reset()
        t, done = 0, False
        while not done:
            action = policy.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            new.add(obs, action, float(reward), next_obs, bool(terminated), 0, t)
            policy.observe(obs, action, float(reward))
            obs, t, done = next_obs, t + 1, terminated or truncated
        rng = np.random.default_rng(seed)
        # 2. propensity classifier: new-task transitions vs a sample of meta-training ones
        new_feat = self._features(meta, new.gather(np.arange(len(new))))
        n_meta = cfg.propensity_samples or len(new)
        meta_feat = self._features(
            meta, self.replay.gather(self.replay.sample_indices(rng, n_meta))
        )
        prop = fit_propensity(
            new_feat, meta_feat, cfg.lam_csc, cfg.beta_clip, cfg.beta_clip_on, cfg.beta_zero_below
        )
        beta_meta = prop.beta(meta_feat)
        # 3. ESS (eq. 13) and λ (Remark 3)
        ess = effective_sample_size(beta_meta)
        lam = proximal_coefficient(ess, cfg.fixed_lambda)
        anchor = Anchor(meta.actor, meta.critic, jnp.asarray(lam, jnp.float32))
        state = self.td3.fresh_optimizers(meta, cfg.adapt_lr or cfg.lr)
        # 4. eq. 18: updates on the new task's data with the proximal term
        state, _ = self._updates(
            state,
            cfg.eq18_updates,
            lambda: new.sample_indices(rng, cfg.batch_size),
            None,
            anchor,
            new,
        )
        # 5. eq. 19: β-weighted updates on meta-training data with the same proximal term
        used: list[np.ndarray] = []
        if cfg.uses_eq19 and cfg.eq19_updates > 0:

            def weights(batches: Batch) -> np.ndarray:
                b = prop.beta(self._features(meta, batches)).reshape(batches.reward.shape)
                used.append(b)
                return b.astype(np.float32)

            state, _ = self._updates(
                state,
                cfg.eq19_updates,
                lambda: self.replay.sample_indices(rng, cfg.eq19_batch),
                weights,
                anchor,
            )
        diagnostics = {"lambda": lam, "ess": ess, **beta_stats(beta_meta)}
        if used:
            diagnostics["eq19_beta_mean"] = float(
                np.mean(np.concatenate([u.ravel() for u in used]))
            )
        return Adaptation(MQLPolicy(self.td3, state), new_task_steps=t, diagnostics=diagnostics)

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self, index: int, final: bool = False) -> list[EvalResult]:
        """The shared protocol on `eval_tasks` test tasks (`final_eval_tasks` if `final`) and
        `eval_train_tasks` training tasks."""
        return periodic_evaluation(self, self.eval_env, self.cfg, index, final)

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: learner state, replay, RNG, counters."""
        return {
            "train_state": as_numpy(serialization.to_state_dict(jax.device_get(self.state))),
            "replay": self.replay.state_dict(),
            "rng": self.rng.bit_generator.state,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "warmup_tasks_done": self.warmup_tasks_done,
        }

    def load_state_dict(self, data: dict[str, Any]) -> None:
        """Restore a `state_dict` (shapes must match this config)."""
        restored = serialization.from_state_dict(self.state, data["train_state"])
        self.state = jax.tree_util.tree_map(jnp.asarray, restored)
        self.replay.load_state_dict(data["replay"])
        self.rng.bit_generator.state = data["rng"]
        self.env_steps = int(data["env_steps"])
        self.episodes = int(data["episodes"])
        self.warmup_tasks_done = int(data["warmup_tasks_done"])

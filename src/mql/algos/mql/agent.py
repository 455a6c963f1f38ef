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
(seed, episode counter) (`mql.seeds`). All of it is part of `state_dict`, so a resumed run
continues exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mql import kernels
from mql.algos.agent import AgentBase, Collected
from mql.algos.mql.batched import (
    MQLBatchPolicy,
    TaskAxis,
    TaskStaging,
    default_task_axis,
    run_task_updates,
    stack_states,
    unstack_state,
)
from mql.algos.mql.config import MQLConfig
from mql.algos.mql.propensity import (
    Propensity,
    beta_stats,
    effective_sample_size,
    fit_propensity,
    proximal_coefficient,
)
from mql.envs.base import Task
from mql.evaluate import Adaptation
from mql.offpolicy.replay import Batch, ContextWindow, ReplayBuffer, unpack
from mql.offpolicy.staging import BatchStaging
from mql.offpolicy.td3 import TD3, Anchor, TD3Spec, TD3State, no_anchor, shared_td3
from mql.offpolicy.updates import run_in_calls
from mql.rollout import (
    BatchPolicy,
    Episode,
    Policy,
    RandomPolicy,
    Transition,
    run_episode,
    run_episodes,
)
from mql.seeds import episode_seed

WeightFn = Callable[[Batch], np.ndarray]


def adaptation_reset_seed(seed: int, episode: int) -> int:
    """Reset seed of new-task episode `episode` of an adaptation from `seed` (the first: `seed`
    itself, so an adaptation on K episodes sees the same first episodes as one on fewer)."""
    return seed if episode == 0 else episode_seed(seed, episode)


@dataclass(frozen=True)
class PropensityFit:
    """What steps 2-3 of the adaptation give: the classifier, β of its meta-training samples,
    the ESS (eq. 13) and λ (Remark 3)."""

    prop: Propensity
    beta_meta: np.ndarray
    ess: float
    lam: float

    def diagnostics(self, used: list[np.ndarray]) -> dict[str, float]:
        """λ, ESS, β statistics, and the mean β of the eq. 19 minibatches (`used`)."""
        out = {"lambda": self.lam, "ess": self.ess, **beta_stats(self.beta_meta)}
        if used:
            out["eq19_beta_mean"] = float(np.mean(np.concatenate([u.ravel() for u in used])))
        return out


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
    """Deterministic actor with its online context window (a `mql.rollout.Policy`), plus
    N(0, noise) exploration noise from `rng` when collecting."""

    def __init__(
        self,
        td3: TD3,
        state: TD3State,
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


def store_in(buffer: ReplayBuffer, task: int) -> Callable[[Transition], None]:
    """An `on_step` that adds each transition to `buffer` as a step of task `task`."""

    def add(tr: Transition) -> None:
        buffer.add(tr.obs, tr.action, tr.reward, tr.next_obs, tr.terminated, task, tr.t)

    return add


class MQL(AgentBase):
    """Meta-training state and loop of MQL and its ablations (an `mql.algos.agent.Algorithm`)."""

    cfg: MQLConfig

    def __init__(self, cfg: MQLConfig) -> None:
        cfg.validate()
        kernels.resolve(cfg.gru_kernel)  # NativeKernelError now, not deep inside tracing
        super().__init__(cfg)
        self.spec = td3_spec(cfg, self.obs_dim, self.act_dim)
        self.td3 = shared_td3(self.spec)
        self.state = self.td3.init(jax.random.PRNGKey(cfg.seed), cfg.lr)
        self.replay = ReplayBuffer(cfg.replay_size, self.obs_dim, self.act_dim, cfg.history_len)
        self._staging = BatchStaging()  # reused host memory for the minibatches of `_updates`
        self._task_staging = TaskStaging()  # and for those of `adapt_tasks`

    # -- meta-training ---------------------------------------------------------------------
    def collect_episode(self, task_index: int, random_actions: bool) -> Episode:
        """One episode on training task `task_index` into the replay buffer."""
        self.env.set_task(self.train_tasks[task_index])
        seed = self.next_episode_seed()
        if random_actions:
            policy = RandomPolicy(self.rng, self.env.action_space.shape)
        else:
            policy = MQLPolicy(self.td3, self.state, self.cfg.expl_noise, self.rng)
        episode = run_episode(self.env, policy, seed, store_in(self.replay, task_index))
        self.env_steps += episode.steps
        return episode

    def warmup_steps_per_task(self) -> int:
        return self.cfg.num_initial_steps

    def warmup_task(self, task: int) -> list[float]:
        """Uniform random actions on `task` for at least `num_initial_steps` steps."""
        steps, returns = 0, []
        while steps < self.cfg.num_initial_steps:
            ret, n = self.collect_episode(task, random_actions=True)
            steps += n
            returns.append(ret)
        return returns

    def collect(self) -> Collected:
        """`num_tasks_sample` episodes, each on a uniformly drawn training task."""
        collected, returns = 0, []
        for _ in range(self.cfg.num_tasks_sample):
            ret, n = self.collect_episode(int(self.rng.integers(len(self.train_tasks))), False)
            collected += n
            returns.append(ret)
        return Collected(returns, collected, {})

    def updates_after(self, collected_steps: int) -> int:
        """One update per collected step below `small_buffer` stored steps, then
        `num_train_steps` (the released rule)."""
        if len(self.replay) < self.cfg.small_buffer:
            return collected_steps
        return self.cfg.num_train_steps

    def train(self, n_updates: int) -> dict[str, float]:
        """`n_updates` meta-training updates (eq. 15) on uniform minibatches of the buffer."""
        self.state, metrics = self._updates(
            self.state,
            n_updates,
            lambda: self.replay.sample_indices(self.rng, self.cfg.batch_size),
            None,
            no_anchor(self.state),
        )
        return metrics

    def _updates(
        self,
        state: TD3State,
        n: int,
        draw: Callable[[], np.ndarray],
        weight_fn: WeightFn | None,
        anchor: Anchor,
        buffer: ReplayBuffer | None = None,
    ) -> tuple[TD3State, dict[str, float]]:
        """Run `n` updates in compiled calls of `mql.offpolicy.calls.call_sizes` updates each
        (chunks of `updates_per_call`, then of 10, then single updates), each minibatch of
        `draw()` indices into `buffer` (the replay by default), weighted by `weight_fn`."""
        buffer = self.replay if buffer is None else buffer
        result = [state]

        def call(k: int) -> dict[str, Any]:
            indices = [draw() for _ in range(k)]
            host, packed = self._staging.stage(buffer, indices)
            weights = (
                np.ones((k, len(indices[0])), np.float32)
                if weight_fn is None
                else weight_fn(unpack(host, self.spec.act_dim))
            )
            result[0], m = self.td3.update_many(result[0], packed, weights, anchor)
            self._staging.consumed_by((result[0], m))
            return m

        metrics = run_in_calls(n, self.cfg.updates_per_call, call)
        return result[0], metrics

    # -- adaptation (eq. 18, 19) -------------------------------------------------------------
    def zero_shot_policy(self) -> MQLPolicy:
        return MQLPolicy(self.td3, self.state)

    def _features(self, state: TD3State, batch: Batch) -> np.ndarray:
        """Propensity features of a batch: the actor's context z (optionally with obs)."""
        z = np.asarray(self.td3.actor_features(state.actor, state.critic, batch.history))
        if self.cfg.propensity_features == "context+obs":
            z = np.concatenate([z, batch.obs.reshape((*z.shape[:-1], -1))], -1)
        return z.reshape(-1, z.shape[-1])

    def _negatives(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Replay rows drawn as the classifier's meta-training samples (`propensity_negatives`):
        `n` uniformly from the replay, or, as released, n / tasks + 2 from each training
        task's `propensity_recent` most recent rows (with replacement, task by task)."""
        if self.cfg.propensity_negatives == "replay":
            return self.replay.sample_indices(rng, n)
        recent = self.replay.recent_indices(self.cfg.propensity_recent)
        per_task = n // len(recent) + 2
        return np.concatenate(
            [rows[rng.integers(0, len(rows), size=per_task)] for _, rows in sorted(recent.items())]
        )

    def adapt_episodes(self, episodes: int | None) -> int:
        """New-task episodes of an adaptation (None: 1, the paper's protocol)."""
        n_episodes = 1 if episodes is None else episodes
        if n_episodes < 1:
            raise ValueError(f"MQL adapts on at least one new-task episode, got {n_episodes}")
        return n_episodes

    def new_task_buffer(self, n_episodes: int) -> ReplayBuffer:
        """An empty buffer for `n_episodes` episodes of new-task data (task id 0)."""
        s = self.spec
        return ReplayBuffer(n_episodes * self.env.horizon, s.obs_dim, s.act_dim, s.history_len)

    def propensity(self, new: ReplayBuffer, rng: np.random.Generator) -> PropensityFit:
        """Step 2-3 of §3.2 on the host: the classifier of eq. 11 (new-task transitions against
        a sample of meta-training ones, drawn with `rng`), β on those (eq. 12, Remark 4), the
        ESS (eq. 13) and λ (Remark 3)."""
        cfg, meta = self.cfg, self.state
        new_feat = self._features(meta, new.gather(np.arange(len(new))))
        n_meta = cfg.propensity_samples or len(new)
        meta_feat = self._features(meta, self.replay.gather(self._negatives(rng, n_meta)))
        prop = fit_propensity(
            new_feat, meta_feat, cfg.lam_csc, cfg.beta_clip, cfg.beta_clip_on, cfg.beta_zero_below
        )
        beta_meta = prop.beta(meta_feat)
        ess = effective_sample_size(beta_meta)
        return PropensityFit(prop, beta_meta, ess, proximal_coefficient(ess, cfg.fixed_lambda))

    def beta_weights(self, prop: Propensity, used: list[np.ndarray]) -> WeightFn:
        """The per-sample weights of eq. 19: β of each minibatch sample under the meta-trained
        context (appended to `used` for the diagnostics)."""

        def weights(batches: Batch) -> np.ndarray:
            b = prop.beta(self._features(self.state, batches)).reshape(batches.reward.shape)
            used.append(b)
            return b.astype(np.float32)

        return weights

    def adapt(self, env: Any, task: Task, seed: int, episodes: int | None = None) -> Adaptation:
        """MQL's adaptation to `task` from a copy of the meta-trained state (§3.2), on
        `episodes` episodes of new-task data (None: 1, the paper's protocol)."""
        cfg, meta = self.cfg, self.state
        n_episodes = self.adapt_episodes(episodes)
        # 1. episodes of the deterministic meta-policy on the new task (the first from `seed`)
        new = self.new_task_buffer(n_episodes)
        env.set_task(task)
        t = 0
        for j in range(n_episodes):
            reset = adaptation_reset_seed(seed, j)
            t += run_episode(env, self.zero_shot_policy(), reset, store_in(new, 0)).steps
        rng = np.random.default_rng(seed)
        # 2-3. propensity classifier, β, ESS (eq. 13) and λ (Remark 3)
        fit = self.propensity(new, rng)
        anchor = Anchor(meta.actor, meta.critic, jnp.asarray(fit.lam, jnp.float32))
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
            state, _ = self._updates(
                state,
                cfg.eq19_updates,
                lambda: self.replay.sample_indices(rng, cfg.eq19_batch),
                self.beta_weights(fit.prop, used),
                anchor,
            )
        return Adaptation(
            MQLPolicy(self.td3, state),
            new_task_steps=t,
            diagnostics=fit.diagnostics(used),
            episodes=n_episodes,
        )

    def adapt_tasks(
        self,
        envs: Sequence[Any],
        tasks: Sequence[Task],
        seeds: Sequence[int],
        episodes: int | None = None,
        axis: TaskAxis | None = None,
    ) -> list[Adaptation]:
        """`adapt(envs[j], tasks[j], seeds[j], episodes)` for every task j, computed together
        (the batched evaluation): the new-task episodes of all tasks stepped at once, the
        classifier per task on the host, then every task's eq. 18 and eq. 19 updates in
        compiled calls over a task axis (`mql.algos.mql.batched`; `axis` None: its default)."""
        cfg, meta = self.cfg, self.state
        n_episodes = self.adapt_episodes(episodes)
        n_tasks = len(tasks)
        if not (len(envs) == len(seeds) == n_tasks):
            raise ValueError(f"adapt_tasks: {n_tasks} tasks need as many environments and seeds")
        # 1. the new-task episodes, the e-th of every task together
        news = [self.new_task_buffer(n_episodes) for _ in tasks]
        steps = [0] * n_tasks
        for env, task in zip(envs, tasks, strict=True):
            env.set_task(task)
        for e in range(n_episodes):
            done = run_episodes(
                envs,
                self.batch_policy([self.zero_shot_policy()], n_tasks),
                [adaptation_reset_seed(s, e) for s in seeds],
                [store_in(new, 0) for new in news],
            )
            steps = [t + ep.steps for t, ep in zip(steps, done, strict=True)]
        # 2-3. classifier, β, ESS, λ per task (host)
        rngs = [np.random.default_rng(s) for s in seeds]
        fits = [self.propensity(new, rng) for new, rng in zip(news, rngs, strict=True)]
        lams = jnp.asarray([f.lam for f in fits], jnp.float32)
        anchor = Anchor(meta.actor, meta.critic, lams)
        start = self.td3.fresh_optimizers(meta, cfg.adapt_lr or cfg.lr)
        states = stack_states([start] * n_tasks)
        axis = default_task_axis() if axis is None else axis
        staging = self._task_staging
        # 4. eq. 18 for every task, on its own new-task data
        states = run_task_updates(
            self.td3,
            states,
            cfg.eq18_updates,
            [lambda new=new, rng=rng: new.sample_indices(rng, cfg.batch_size)
             for new, rng in zip(news, rngs, strict=True)],
            None,
            anchor,
            news,
            cfg.batch_size,
            cfg.updates_per_call,
            staging,
            axis,
        )  # fmt: skip
        # 5. eq. 19 for every task, β-weighted on meta-training data
        used: list[list[np.ndarray]] = [[] for _ in tasks]
        if cfg.uses_eq19 and cfg.eq19_updates > 0:
            states = run_task_updates(
                self.td3,
                states,
                cfg.eq19_updates,
                [lambda rng=rng: self.replay.sample_indices(rng, cfg.eq19_batch) for rng in rngs],
                [self.beta_weights(f.prop, u) for f, u in zip(fits, used, strict=True)],
                anchor,
                [self.replay] * n_tasks,
                cfg.eq19_batch,
                cfg.updates_per_call,
                staging,
                axis,
            )
        return [
            Adaptation(
                MQLPolicy(self.td3, unstack_state(states, j)),
                new_task_steps=steps[j],
                diagnostics=fits[j].diagnostics(used[j]),
                episodes=n_episodes,
            )
            for j in range(n_tasks)
        ]

    def batch_policy(self, policies: Sequence[Policy], repeat: int) -> BatchPolicy:
        """The deterministic actors of `policies` (MQL policies), each on `repeat` slots, as
        one `BatchPolicy`: one compiled call per time step (`mql.algos.mql.batched`)."""
        return MQLBatchPolicy.of(self.td3, policies, repeat)

    # -- checkpoints ---------------------------------------------------------------------------
    def buffers_state(self) -> dict[str, Any]:
        return {"replay": self.replay.state_dict()}

    def load_buffers_state(self, data: dict[str, Any]) -> None:
        self.replay.load_state_dict(data["replay"])

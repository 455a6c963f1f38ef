"""RL2 (Duan et al. 2016; Wang et al. 2016) trained with PPO on the batched sampler.

One iteration: `meta_batch` trials, each of `episodes_per_trial` episodes on one training task,
sampled together (`mql.onpolicy.sampler`); the recurrent policy's hidden state starts at zero
at each trial's start and carries across its episodes. As in ProMP's and garage's RL2, a trial is
one path for returns and advantages: GAE runs over the whole trial, an episode boundary inside
it is not a path end (the value of the next step is that of the next episode's first input), and
only a termination in the trial's last episode is terminal. The baseline is the linear feature
baseline fitted per task on the batch, with the step's time within the trial as its time
feature (garage concatenates a trial's episodes the same way), or a learned value head. Then PPO
(`mql.onpolicy.ppo`) on whole trials.

Protocol (`mql.evaluate`): zero-shot = the first episode of a fresh trial on the test task;
adaptation = `episodes_per_trial - 1` episodes of a trial (by default; K episodes when the
protocol asks for the return after K), after which every scored episode continues that same
trial from its hidden state, so each is the (K+1)-th episode of the trial; new-task steps =
the steps of the K episodes before it.
"""

from __future__ import annotations

import time
import zlib
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mql.algos.agent import AgentBase
from mql.algos.rl2.config import RL2Config
from mql.envs.base import Task
from mql.evaluate import Adaptation
from mql.onpolicy.numpy_step import NumpyRecurrentStep
from mql.onpolicy.path_advantages import linear_baseline_advantages, path_gae
from mql.onpolicy.policies import RecurrentGaussian, log_prob, sequence_outputs
from mql.onpolicy.ppo import PPOBatch, PPOSettings, PPOState, make_optimizer, make_update
from mql.onpolicy.sampler import Sampler, StepFn
from mql.onpolicy.types import PolicyInputs, Trajectories
from mql.rollout import run_episode
from mql.seeds import TRAIN_EPISODE, episode_seed

__all__ = ["RL2", "RL2Policy", "TrialState"]


class TrialState(NamedTuple):
    """Where a trial stands between two episodes: the recurrent carry and the last step."""

    carry: Any
    prev_action: np.ndarray
    prev_reward: float


class RL2(AgentBase):
    """The RL2 agent (see the module docstring)."""

    def __init__(self, cfg: RL2Config) -> None:
        super().__init__(cfg)
        self.cfg: RL2Config = cfg
        self.module = RecurrentGaussian(
            act_dim=self.act_dim,
            hidden=cfg.hidden,
            cell=cfg.cell,
            init_std=cfg.init_std,
            value=cfg.baseline == "value",
        )
        key, init_key = jax.random.split(jax.random.PRNGKey(cfg.seed))
        dummy = _zero_inputs(1, self.obs_dim, self.act_dim)
        carry = self.module.initial_carry(1)
        params = self.module.init(init_key, carry, dummy)
        optimizer = make_optimizer(cfg.lr, cfg.max_grad_norm)
        self.state = PPOState(params, optimizer.init(params), key)
        settings = PPOSettings(
            clip=cfg.clip,
            epochs=cfg.ppo_epochs,
            minibatches=cfg.minibatches,
            ent_coef=cfg.ent_coef,
            vf_coef=cfg.vf_coef,
            use_value=cfg.baseline == "value",
            normalize_advantages=cfg.normalize_advantages,
        )
        module, bptt = self.module, cfg.bptt_len
        self._outputs = jax.jit(lambda p, inp: sequence_outputs(module, p, inp, bptt))
        self._update = make_update(
            lambda p, inp: sequence_outputs(module, p, inp, bptt), optimizer, settings
        )
        self._act = jax.jit(_sample_step(module))
        self._step1 = jax.jit(lambda p, c, inp: module.apply(p, c, inp))
        self.horizon = cfg.train_horizon(int(self.env.horizon))
        self._sampler: Sampler | None = None
        self.warmup_tasks_done = len(self.train_tasks)  # on-policy: no warm-up

    # -- sampling ------------------------------------------------------------------------------
    @property
    def sampler(self) -> Sampler:
        if self._sampler is None:
            task_seed = self.cfg.seed if self.cfg.task_seed is None else self.cfg.task_seed
            self._sampler = Sampler(
                self.cfg.env,
                task_seed,
                self.cfg.meta_batch,
                self.cfg.sampler_processes,
                self.horizon,
            )
        return self._sampler

    def close(self) -> None:
        """Stop the sampler's worker processes."""
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None

    def _draw_tasks(self) -> np.ndarray:
        n_train, m = len(self.train_tasks), self.cfg.meta_batch
        if self.cfg.task_sampling == "without_replacement":
            return self.rng.choice(n_train, m, replace=False)
        return self.rng.integers(n_train, size=m)

    def sample(self) -> Trajectories:
        """One iteration's trials (see the module docstring)."""
        cfg = self.cfg
        task_ids = self._draw_tasks()
        n_ep = cfg.episodes_per_trial
        seeds = np.array(
            [
                [
                    episode_seed(cfg.seed, TRAIN_EPISODE, self.episodes + j * n_ep + e)
                    for e in range(n_ep)
                ]
                for j in range(cfg.meta_batch)
            ],
            np.int64,
        )
        self.episodes += cfg.meta_batch * n_ep
        key, sub = jax.random.split(self.state.key)
        self.state = self.state._replace(key=key)
        step_fn, carry = self.sampling_policy(cfg.meta_batch, sub)
        tasks = [self.train_tasks[i] for i in task_ids]
        traj, _ = self.sampler.sample(tasks, seeds, step_fn, carry, task_ids=task_ids)
        return traj

    def sampling_policy(self, n: int, key: jax.Array) -> tuple[StepFn, Any]:
        """The sampler's step function for `n` trials of the current policy and its first carry
        (`sampler_policy`: NumPy, its noise seeded from `key`, or the jit-compiled step)."""
        params = self.state.params
        if self.cfg.sampler_policy == "numpy":
            rng = np.random.default_rng(np.asarray(key, np.uint32))
            step = NumpyRecurrentStep(params, self.cfg.cell, rng)
            return step, step.initial_carry(n)
        act = self._act

        def step_fn(c: Any, inputs: PolicyInputs) -> tuple[np.ndarray, np.ndarray, Any]:
            rnn, k = c
            rnn, action, logp, k = act(params, rnn, inputs, k)
            return np.asarray(action), np.asarray(logp), (rnn, k)

        return step_fn, (self.module.initial_carry(n), key)

    # -- advantages ----------------------------------------------------------------------------
    def advantages(self, traj: Trajectories) -> tuple[jax.Array, jax.Array, dict[str, float]]:
        """(advantages, value targets) over whole trials, and diagnostics."""
        cfg = self.cfg
        t_len = traj.valid.shape[0]
        trial_end = traj.trial_end
        t_trial = np.broadcast_to(np.arange(t_len)[:, None], traj.valid.shape)
        if cfg.baseline == "linear":
            groups = (
                traj.task_ids if cfg.baseline_fit == "per_task" else np.zeros_like(traj.task_ids)
            )
            out = linear_baseline_advantages(
                traj,
                trial_end,
                t_trial,
                groups,
                cfg.gamma,
                cfg.gae_lambda,
                cfg.bootstrap_truncation,
                normalize=False,
            )
            return jnp.asarray(out.advantages), jnp.asarray(out.targets), {}
        _, _, v_all = self._outputs(
            self.state.params, jax.tree_util.tree_map(jnp.asarray, traj.inputs)
        )
        v_all = np.asarray(v_all)
        adv, targets = path_gae(
            traj,
            trial_end,
            v_all[:t_len],
            v_all[1:],
            cfg.gamma,
            cfg.gae_lambda,
            cfg.bootstrap_truncation,
        )
        return jnp.asarray(adv), jnp.asarray(targets), {}

    # -- one iteration -------------------------------------------------------------------------
    def run_iteration(self) -> dict[str, float]:
        cfg = self.cfg
        start = time.perf_counter()
        traj = self.sample()
        t_sample = time.perf_counter()
        adv, targets, _ = self.advantages(traj)
        t_len = traj.valid.shape[0]
        inputs = jax.tree_util.tree_map(lambda x: jnp.asarray(x[:t_len]), traj.inputs)
        batch = PPOBatch(
            inputs=inputs,
            actions=jnp.asarray(traj.actions),
            old_log_probs=jnp.asarray(traj.log_probs),
            advantages=adv,
            value_targets=targets,
            valid=jnp.asarray(traj.valid, jnp.float32),
        )
        t_adv = time.perf_counter()
        self.state, metrics = self._update(self.state, batch)
        out = {k: float(v) for k, v in jax.device_get(metrics).items()}
        end = time.perf_counter()
        self.env_steps += traj.steps
        returns = traj.episode_returns()
        out["train/episode_return"] = float(np.nanmean(returns))
        for e in range(returns.shape[1]):
            out[f"train/return_episode{e + 1}"] = float(np.nanmean(returns[:, e]))
        out["train/updates"] = float(cfg.ppo_epochs * cfg.minibatches)
        out["train/log_std"] = float(np.mean(np.asarray(self.state.params["params"]["log_std"])))
        out.update(
            {
                "time/sample_s": t_sample - start,
                "time/advantages_s": t_adv - t_sample,
                "time/update_s": end - t_adv,
                "time/iteration_s": end - start,
            }
        )
        return out

    # -- protocol ------------------------------------------------------------------------------
    def _policy(self, start: TrialState | None, continue_trial: bool) -> RL2Policy:
        return RL2Policy(
            self._step1,
            self.state.params,
            self.module,
            self.act_dim,
            start,
            continue_trial,
            self.cfg.eval_deterministic,
            self.cfg.seed,
        )

    def zero_shot_policy(self) -> RL2Policy:
        """The first episode of a fresh trial, at every reset."""
        return self._policy(None, continue_trial=False)

    def adapt(self, env: Any, task: Task, seed: int, episodes: int | None = None) -> Adaptation:
        """Run `episodes` (default: episodes_per_trial - 1) episodes of one trial on `task`;
        the adapted policy continues that trial at every reset."""
        k = self.cfg.episodes_per_trial - 1 if episodes is None else episodes
        runner = self._policy(None, continue_trial=True)
        steps = 0
        env.set_task(task)
        for e in range(k):
            steps += run_episode(env, runner, episode_seed(seed, e)).steps
        start = runner.trial_state() if k > 0 else None
        return Adaptation(self._policy(start, continue_trial=False), steps, {}, episodes=k)


def _zero_inputs(n: int, obs_dim: int, act_dim: int) -> PolicyInputs:
    return PolicyInputs(
        jnp.zeros((n, obs_dim)), jnp.zeros((n, act_dim)), jnp.zeros(n), jnp.zeros(n)
    )


def _sample_step(module: RecurrentGaussian) -> Any:
    """(params, carry, inputs, key) -> (carry, action, log_prob, key): one sampling step."""

    def step(params: Any, carry: Any, inputs: PolicyInputs, key: jax.Array) -> Any:
        inputs = PolicyInputs(*(jnp.asarray(x, jnp.float32) for x in inputs))
        carry, (mean, log_std, _) = module.apply(params, carry, inputs)
        key, sub = jax.random.split(key)
        action = mean + jnp.exp(log_std) * jax.random.normal(sub, mean.shape)
        return carry, action, log_prob(mean, log_std, action), key

    return step


class RL2Policy:
    """RL2's acting policy for the protocol's episodes (`mql.rollout.Policy`).

    `start` None: every reset starts a fresh trial (zero carry). `start` a `TrialState`: every
    reset continues from it, as the next episode of that trial. `continue_trial`: the carry is
    kept across resets, so consecutive episodes form one trial (adaptation).
    Sampled actions use NumPy noise seeded from (`seed`, the episode's first observation), so
    two policies scored on the same reset seed draw the same noise (paired episodes)."""

    def __init__(
        self,
        step1: Any,
        params: Any,
        module: RecurrentGaussian,
        act_dim: int,
        start: TrialState | None,
        continue_trial: bool,
        deterministic: bool,
        seed: int,
    ) -> None:
        self.step1, self.params, self.module = step1, params, module
        self.act_dim, self.start = act_dim, start
        self.continue_trial, self.deterministic, self.seed = continue_trial, deterministic, seed
        self.carry: Any = None
        self.prev_action = np.zeros(act_dim, np.float32)
        self.prev_reward = 0.0
        self.prev_done = 0.0
        self.noise: np.random.Generator | None = None

    def reset(self) -> None:
        self.noise = None
        if self.continue_trial and self.carry is not None:
            self.prev_done = 1.0
            return
        if self.start is None:
            self.carry = self.module.initial_carry(1)
            self.prev_action = np.zeros(self.act_dim, np.float32)
            self.prev_reward, self.prev_done = 0.0, 0.0
        else:
            self.carry = self.start.carry
            self.prev_action = np.array(self.start.prev_action, np.float32)
            self.prev_reward, self.prev_done = float(self.start.prev_reward), 1.0

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.noise is None:
            first = zlib.crc32(np.asarray(obs, np.float64).tobytes())
            self.noise = np.random.default_rng([self.seed, first])
        inputs = PolicyInputs(
            np.asarray(obs, np.float32)[None],
            self.prev_action[None],
            np.array([self.prev_reward], np.float32),
            np.array([self.prev_done], np.float32),
        )
        self.carry, (mean, log_std, _) = self.step1(self.params, self.carry, inputs)
        mean, std = np.asarray(mean[0]), np.exp(np.asarray(log_std[0]))
        if self.deterministic:
            return mean.astype(np.float32)
        return (mean + std * self.noise.standard_normal(self.act_dim)).astype(np.float32)

    def observe(self, obs: np.ndarray, action: np.ndarray, reward: float) -> None:
        self.prev_action = np.asarray(action, np.float32)
        self.prev_reward = float(reward)
        self.prev_done = 0.0

    def trial_state(self) -> TrialState:
        """Where the trial stands now (after its last episode)."""
        return TrialState(self.carry, self.prev_action.copy(), self.prev_reward)

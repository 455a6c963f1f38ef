"""Tests for mql.config and mql.algos.mql: presets, validation, determinism, exact resume from a
state_dict, the evaluation result structure of every variant, and learning sanity checks."""

from __future__ import annotations

import copy
import dataclasses

import jax
import numpy as np
import pytest

import mql.envs
from mql.algos.mql.agent import MQL
from mql.algos.mql.config import ALGOS
from mql.config import PRESET_NAMES, MQLConfig, from_dict, resolve, to_dict
from mql.evaluate import evaluate
from mql.offpolicy.calls import call_sizes, chunk_sizes
from mql.offpolicy.td3 import no_anchor
from mql.seeds import episode_seed

# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env", mql.envs.names())
def test_resolve_every_env_preset_algo(env, algo):
    for preset in PRESET_NAMES:
        cfg = resolve(env, algo, preset)
        cfg.validate()
        assert (cfg.env, cfg.algo, cfg.preset) == (env, algo, preset)
        assert cfg.effective_context_mode == ("none" if algo == "td3" else cfg.context_mode)
        assert cfg.adapts == (algo in ("mql", "mql-no-eq19", "mql-fixed-lambda"))
        assert cfg.uses_eq19 == (algo in ("mql", "mql-fixed-lambda"))
        if algo == "mql-fixed-lambda":
            assert cfg.fixed_lambda is not None
        assert from_dict(to_dict(cfg)) == cfg


def test_paper_preset_cheetah_vel_is_table_1():
    cfg = resolve("cheetah-vel", "mql", "paper")
    expected = dict(
        beta_clip=1.1,
        expl_noise=0.3,
        policy_noise=0.3,
        policy_freq=2,
        num_train_steps=1000,
        eq18_updates=5,
        eq19_updates=400,
        history_len=20,
        context_dim=20,
        lr=1e-3,
        # paper rules: λ = 1 - ESS, β itself clipped, adaptation Adam at the meta lr
        fixed_lambda=None,
        beta_clip_on="beta",
        beta_zero_below=0.0,
        adapt_lr=None,
        # not in Table 1: the released values
        lam_csc=0.1,
        eq19_batch=1280,
        num_initial_steps=500,
        batch_size=256,
    )
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_paper_preset_other_columns_of_table_1():
    # Humanoid, Ant-FB, Ant-Goal, Walker, HC-FB: (β clip, eq. 19 updates, H, context, lr)
    table = {
        "humanoid-dir": (1.0, 200, 20, 20, 3e-4),
        "ant-dir": (1.0, 100, 20, 15, 3e-4),
        "ant-goal": (1.2, 400, 25, 30, 4e-4),
        "walker-params": (2.0, 400, 10, 30, 8e-4),
        "cheetah-dir": (0.8, 300, 10, 30, 3e-4),
    }
    for env, values in table.items():
        cfg = resolve(env, "mql", "paper")
        got = (cfg.beta_clip, cfg.eq19_updates, cfg.history_len, cfg.context_dim, cfg.lr)
        assert got == values, env


def test_released_preset_cheetah_vel():
    cfg = resolve("cheetah-vel", "mql", "released")
    expected = dict(
        lr=1e-3,
        context_dim=15,
        history_len=20,
        num_train_steps=200,
        eq18_updates=10,
        eq19_updates=100,
        eq19_batch=1280,
        beta_clip=1.0,
        lam_csc=0.1,
        fixed_lambda=0.1,
        beta_clip_on="logit",
        beta_zero_below=0.1,
        adapt_lr=1e-3,
    )
    assert {k: getattr(cfg, k) for k in expected} == expected


def test_fixed_lambda_defaults():
    assert resolve("cheetah-vel", "mql-fixed-lambda", "paper").fixed_lambda == 0.5  # Fig. 4c
    assert resolve("cheetah-vel", "mql-fixed-lambda", "released").fixed_lambda == 0.1
    assert resolve("cheetah-vel", "mql-fixed-lambda", "paper", fixed_lambda=0.2).fixed_lambda == 0.2
    assert resolve("cheetah-vel", "mql", "paper").fixed_lambda is None
    with pytest.raises(ValueError, match="fixed-lambda"):
        MQLConfig(algo="mql-fixed-lambda").validate()


def test_overrides_apply_after_preset():
    cfg = resolve("ant-dir", "mql", "released", lr=5e-4, hidden=(32, 32), seed=7)
    assert (cfg.lr, cfg.hidden, cfg.seed) == (5e-4, (32, 32), 7)
    assert cfg.context_dim == 30  # the rest of the preset is kept


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(env="no-such-env"), "unknown environment 'no-such-env'"),
        (dict(algo="sac"), "unknown algo 'sac'"),
        (dict(preset="mine"), "unknown preset 'mine'"),
        (dict(learning_rate=1e-3), "unknown MQL config field"),
        (dict(lr=0.0), "lr must be > 0"),
        (dict(lr=-1e-3), "lr must be > 0"),
        (dict(total_steps=0), "total_steps must be positive"),
        (dict(history_len=0), "history_len must be positive"),
        (dict(batch_size=-5), "batch_size must be positive"),
        (dict(eq19_updates=-1), "eq19_updates must be >= 0"),
        (dict(beta_zero_below=-0.1), "beta_zero_below must be >= 0"),
        (dict(beta_clip=0.0), "beta_clip must be > 0"),
        (dict(lam_csc=0.0), "lam_csc must be > 0"),
        (dict(gamma=1.5), "gamma"),
        (dict(tau=0.0), "tau must be > 0"),
        (dict(tau=2.0), "tau"),
        (dict(adapt_lr=0.0), "adapt_lr must be > 0"),
        (dict(fixed_lambda=-0.5), "fixed_lambda must be >= 0"),
        (dict(hidden=(64, 0)), "hidden widths"),
    ],
)
def test_resolve_rejects_bad_values(kwargs, message):
    args = {"env": "point-robot", "algo": "mql", "preset": "paper"}
    overrides = {k: v for k, v in kwargs.items() if k not in args}
    args.update({k: v for k, v in kwargs.items() if k in args})
    with pytest.raises(ValueError, match=message):
        resolve(args["env"], args["algo"], args["preset"], **overrides)


@pytest.mark.parametrize(
    "kwargs",
    [dict(context_mode="seperate"), dict(beta_clip_on="prob"), dict(propensity_features="obs")],
    ids=["context_mode", "beta_clip_on", "propensity_features"],
)
def test_resolve_rejects_unknown_choices(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        resolve("point-robot", "mql", "paper", **kwargs)


def test_from_dict_rejects_unknown_keys_and_validates():
    data = to_dict(resolve("point-robot", "mql"))
    with pytest.raises(ValueError, match="unknown MQL config field"):
        from_dict({**data, "nope": 1})
    with pytest.raises(ValueError, match="lr must be > 0"):
        from_dict({**data, "lr": -1.0})


# ----------------------------------------------------------------- small agents for tests

WARMUP_ITERS = 80  # point-robot: 80 training tasks, one warm-up iteration each


def small_cfg(algo: str = "mql", seed: int = 0, preset: str = "paper", **kw) -> MQLConfig:
    """Point robot with tiny networks; batch sizes equal so every update has one shape."""
    values = dict(
        seed=seed,
        total_steps=10_000,
        hidden=(16, 16),
        history_len=3,
        context_dim=4,
        batch_size=64,
        eq19_batch=64,
        updates_per_call=5,
        num_initial_steps=20,  # one 20-step episode per training task
        num_tasks_sample=2,  # 40 steps, 40 updates per iteration
        replay_size=10_000,
        eq18_updates=10,
        eq19_updates=10,
        eval_tasks=2,
        eval_train_tasks=1,
        eval_episodes=1,
    )
    values.update(kw)
    return resolve("point-robot", algo, preset, **values)


def run(agent: MQL, iterations: int) -> list[dict[str, float]]:
    """Iterations' metrics without wall-clock timings."""
    out = []
    for _ in range(iterations):
        m = agent.run_iteration()
        out.append({k: v for k, v in m.items() if not k.startswith("time/")})
    return out


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def assert_states_equal(a, b) -> None:
    la, lb = leaves(a), leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(x, y)


def eval_dicts(results) -> list[dict]:
    return [r.to_dict() for r in results]


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_everything_other_seed_differs():
    cfg = small_cfg("mql", seed=3)
    a, b = MQL(cfg), MQL(cfg)
    ma, mb = run(a, WARMUP_ITERS + 3), run(b, WARMUP_ITERS + 3)
    assert a.env_steps == b.env_steps == 80 * 20 + 3 * 40
    assert ma == mb
    assert all(np.isfinite(v) for m in ma for v in m.values())
    assert "losses/critic_loss" in ma[-1] and "losses/actor_loss" in ma[-1]
    assert_states_equal(a.state, b.state)
    ra, rb = a.evaluate(0), b.evaluate(0)
    assert eval_dicts(ra) == eval_dicts(rb)
    summary = ra[0].summary()
    for key in ("zero_shot_return", "adapted_return", "ess", "lambda", "eq19_beta_mean"):
        assert f"test/{key}" in summary
    # evaluation does not change the meta-trained state, and is repeatable
    assert_states_equal(a.state, b.state)
    assert eval_dicts(a.evaluate(0)) == eval_dicts(ra)

    c = MQL(small_cfg("mql", seed=4))
    mc = run(c, WARMUP_ITERS + 3)
    assert mc[0]["train/episode_return"] != ma[0]["train/episode_return"]
    assert mc[-1]["losses/critic_loss"] != ma[-1]["losses/critic_loss"]
    assert not np.array_equal(leaves(c.state.actor)[0], leaves(a.state.actor)[0])
    rc = c.evaluate(0)[0].summary()
    assert rc["test/adapted_return"] != summary["test/adapted_return"]
    assert rc["test/ess"] != summary["test/ess"]


def test_task_seed_decouples_tasks_from_learner_seed():
    a = MQL(small_cfg("td3-context", seed=0))
    b = MQL(small_cfg("td3-context", seed=1, task_seed=0))
    c = MQL(small_cfg("td3-context", seed=1))
    goals = lambda m: np.array([t["goal"] for t in m.env.test_tasks])  # noqa: E731
    np.testing.assert_array_equal(goals(a), goals(b))
    assert not np.array_equal(goals(a), goals(c))
    assert not np.array_equal(leaves(a.state.actor)[0], leaves(b.state.actor)[0])


# -------------------------------------------------------------------------- exact resume


def test_state_dict_round_trip_resumes_exactly():
    cfg = small_cfg("mql", seed=5)
    a = MQL(cfg)
    run(a, WARMUP_ITERS - 1)
    sd_warmup = a.state_dict()  # mid warm-up (one training task left)
    run(a, 3)  # finish warm-up, two training iterations
    sd_trained = a.state_dict()  # with Adam moments, targets, TD3 key, replay, RNG
    tail = run(a, 2)
    eval_a = eval_dicts(a.evaluate(1))

    # load after `a` went on: the state_dicts must not alias `a`'s live buffers
    b = MQL(cfg)
    b.load_state_dict(sd_trained)
    assert b.env_steps == 80 * 20 + 2 * 40
    assert run(b, 2) == tail
    assert_states_equal(b.state, a.state)
    assert b.env_steps == a.env_steps and b.episodes == a.episodes
    assert eval_dicts(b.evaluate(1)) == eval_a

    c = MQL(cfg)
    c.load_state_dict(sd_warmup)
    assert c.warmup_tasks_done == WARMUP_ITERS - 1
    assert run(c, 5)[-2:] == tail
    assert_states_equal(c.state, a.state)


# ------------------------------------------------------------------ evaluation structure


def _trained(algo: str, preset: str = "paper", **kw) -> MQL:
    agent = MQL(small_cfg(algo, seed=6, preset=preset, **kw))
    run(agent, WARMUP_ITERS + 1)
    return agent


def test_eval_structure_td3_context_has_no_adaptation():
    agent = _trained("td3-context")
    results = agent.evaluate(0)
    assert [r.split for r in results] == ["test", "train"]
    test = results[0]
    assert len(test.tasks) == 2  # eval_tasks
    assert all(t.adapted_return is None and t.new_task_steps == 0 for t in test.tasks)
    assert test.adapted_return is None
    assert set(test.summary()) == {"test/zero_shot_return"}
    assert -40.0 < test.zero_shot_return < 0.0  # 20 steps of -distance, distance < 2 sqrt 2
    assert len(results[1].tasks) == 1  # eval_train_tasks
    final = agent.evaluate(1, final=True)
    assert len(final[0].tasks) == len(agent.env.test_tasks) == 20


def test_eval_structure_mql():
    agent = _trained("mql")
    before = leaves(agent.state)
    test = agent.evaluate(0)[0]
    for t in test.tasks:
        assert t.adapted_return is not None and -40.0 < t.adapted_return < 0.0
        assert t.new_task_steps == 20  # one point-robot episode
        d = t.diagnostics
        assert 0.0 <= d["ess"] <= 1.0
        assert 0.0 <= d["lambda"] <= 1.0
        assert d["lambda"] == pytest.approx(1.0 - d["ess"])  # Remark 3
        assert 0.0 <= d["beta_min"] <= d["beta_mean"] <= d["beta_max"] <= 1.5  # β ≤ beta_clip
        assert 0.0 <= d["eq19_beta_mean"] <= 1.5
    summary = test.summary()
    assert summary["test/new_task_steps"] == 20.0
    assert summary["test/adapted_return"] == pytest.approx(
        np.mean([t.adapted_return for t in test.tasks])
    )
    # adaptation worked on a copy
    for x, y in zip(before, leaves(agent.state), strict=True):
        np.testing.assert_array_equal(x, y)
    # the zero-shot number is the meta-trained policy's: same as td3-context's with this seed
    ctx = _trained("td3-context")
    assert ctx.evaluate(0)[0].zero_shot_return == test.zero_shot_return


def test_adapt_updates_a_copy_and_zero_updates_keep_meta_params():
    agent = _trained("mql")
    env = agent.eval_env
    adaptation = agent.adapt(env, env.test_tasks[0], seed=11)
    assert adaptation.new_task_steps == 20
    adapted, meta = leaves(adaptation.policy.state.actor), leaves(agent.state.actor)
    assert all(not np.array_equal(x, y) for x, y in zip(adapted, meta, strict=True))
    assert all(
        not np.array_equal(x, y)
        for x, y in zip(
            leaves(adaptation.policy.state.critic), leaves(agent.state.critic), strict=True
        )
    )

    frozen = _trained("mql", eq18_updates=0, eq19_updates=0)
    adaptation = frozen.adapt(env, env.test_tasks[0], seed=11)
    assert_states_equal(adaptation.policy.state.actor, frozen.state.actor)
    assert_states_equal(adaptation.policy.state.critic, frozen.state.critic)


def test_eval_structure_mql_no_eq19():
    test = _trained("mql-no-eq19").evaluate(0)[0]
    for t in test.tasks:
        assert t.adapted_return is not None
        assert "eq19_beta_mean" not in t.diagnostics
        assert t.diagnostics["lambda"] == pytest.approx(1.0 - t.diagnostics["ess"])
    assert "test/eq19_beta_mean" not in test.summary()


def test_eval_structure_mql_fixed_lambda():
    agent = _trained("mql-fixed-lambda", fixed_lambda=0.25)
    test = agent.evaluate(0)[0]
    for t in test.tasks:
        assert t.adapted_return is not None
        assert t.diagnostics["lambda"] == 0.25
        assert "eq19_beta_mean" in t.diagnostics


def test_eval_structure_mql_released_rules():
    """Released rules: λ = 0.1 fixed, β ≤ exp(beta_clip), β < 0.1 set to 0."""
    agent = _trained("mql", preset="released", hidden=(16, 16))
    assert (agent.cfg.beta_clip_on, agent.cfg.beta_zero_below) == ("logit", 0.1)
    for t in agent.evaluate(0)[0].tasks:
        d = t.diagnostics
        assert d["lambda"] == 0.1
        assert d["beta_max"] <= np.exp(agent.cfg.beta_clip) + 1e-9
        assert d["beta_min"] == 0.0 or d["beta_min"] >= 0.1


def test_td3_has_no_context_parameters():
    agent = MQL(small_cfg("td3"))
    assert agent.spec.context_mode == "none"
    assert set(agent.state.actor) == {"mlp"} and set(agent.state.critic) == {"mlp"}
    ctx = MQL(small_cfg("td3-context"))
    assert set(ctx.state.actor) == {"mlp", "gru"} and set(ctx.state.critic) == {"mlp", "gru"}
    shared = MQL(small_cfg("td3-context", context_mode="shared"))
    assert set(shared.state.actor) == {"mlp"} and set(shared.state.critic) == {"mlp", "gru"}


def test_loss_metrics_finite_when_updates_not_multiple_of_chunk():
    # 42 updates per iteration = 8 chunks of 5 + 2 single updates (the second has no actor step)
    agent = MQL(small_cfg("td3", num_train_steps=42))
    metrics = run(agent, WARMUP_ITERS + 1)[-1]
    assert metrics["train/updates"] == 42.0
    assert all(np.isfinite(v) for v in metrics.values()), metrics


def test_train_through_staging_equals_fresh_gathers():
    """`MQL._updates` stages minibatches in reused memory (mql.offpolicy.staging): the same
    numbers as
    gathering fresh arrays and passing them to `update_many` (chunks of 5, then singles)."""
    agent = MQL(small_cfg("mql", seed=6))
    run(agent, WARMUP_ITERS)
    state0, rng = agent.state, copy.deepcopy(agent.rng)
    agent.train(12)
    ref = state0
    for k in (5, 5, 1, 1):
        idx = np.concatenate([agent.replay.sample_indices(rng, 64) for _ in range(k)])
        packed = agent.replay.gather_packed(idx).stacked(k)
        ref, _ = agent.td3.update_many(ref, packed, np.ones((k, 64), np.float32), no_anchor(ref))
    assert_states_equal(agent.state, ref)
    assert agent.rng.bit_generator.state == rng.bit_generator.state


def test_chunk_sizes():
    assert chunk_sizes(50) == (50, 10, 1)
    assert chunk_sizes(10) == (10, 1)
    assert chunk_sizes(5) == (5, 1)
    assert chunk_sizes(1) == (1,)


def test_call_sizes():
    assert call_sizes(73, 50) == [50, 10, 10, 1, 1, 1]
    assert call_sizes(100, 50) == [50, 50]
    assert call_sizes(20, 50) == [10, 10]
    assert call_sizes(7, 5) == [5, 1, 1]
    assert call_sizes(0, 50) == []


def test_remainders_run_in_chunks_with_the_numbers_of_single_updates():
    """33 updates with updates_per_call=20 run as 20 + 10 + 1 + 1 + 1 updates per call and give
    exactly the state of 33 single-update calls on the same minibatches."""
    agent = MQL(small_cfg("mql", seed=7, updates_per_call=20))
    run(agent, WARMUP_ITERS)
    state0, rng = agent.state, copy.deepcopy(agent.rng)
    sizes, stage = [], agent._staging.stage
    agent._staging.stage = lambda buffer, indices: (
        sizes.append(len(indices)) or stage(buffer, indices)
    )
    agent.train(33)
    assert sizes == [20, 10, 1, 1, 1]
    ref = state0
    for _ in range(33):
        idx = agent.replay.sample_indices(rng, 64)
        packed = agent.replay.gather_packed(idx).stacked(1)
        ref, _ = agent.td3.update_many(ref, packed, np.ones((1, 64), np.float32), no_anchor(ref))
    assert_states_equal(agent.state, ref)


def test_config_is_not_mutated_by_agent():
    cfg = small_cfg("mql")
    snapshot = dataclasses.asdict(cfg)
    MQL(cfg)
    assert dataclasses.asdict(cfg) == snapshot


# ------------------------------------------------------------------------ learning sanity


class _RandomPolicy:
    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=2).astype(np.float32)

    def observe(self, obs, action, reward) -> None:
        pass


class _RandomAgent:
    """Uniform random actions, through the same evaluation protocol."""

    adapts = False

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def zero_shot_policy(self) -> _RandomPolicy:
        return _RandomPolicy(self.rng)

    def adapt(self, env, task, seed):  # pragma: no cover - never called
        raise AssertionError


def _zero_shot_test_return(agent, env, seed: int) -> float:
    """Zero-shot return on ALL test tasks, 3 episodes each, through `mql.evaluate.evaluate`."""
    return evaluate(agent, env, env.test_tasks, episodes=3, seed=seed).zero_shot_return


def _train_to(algo: str, seed: int, env_steps: int, **kw) -> MQL:
    agent = MQL(resolve("point-robot", algo, "paper", seed=seed, **kw))
    while agent.env_steps < env_steps:
        agent.run_iteration()
    return agent


def test_td3_context_learns_point_robot():
    """td3-context (paper preset for point-robot: 64x64 MLPs, GRU 16, H 10; 80 training tasks
    with 40 random warm-up steps each = 3200 steps, then 5 episodes + 100 updates per
    iteration) trained for 6000 environment steps clearly beats both uniform random actions
    and its own untrained policy on the 20 held-out test tasks (3 episodes each, same tasks
    and reset seeds for all three).

    Observed while writing this test (this exact protocol), trained / random / untrained:
      seed 0: -16.0 / -21.5 / -22.4     seed 1: -15.0 / -19.8 / -19.5
      seed 2: -16.9 / -20.2 / -20.2     seed 3: -14.9 / -21.2 / -20.5
    so the margin over the better baseline is 3.3-5.5 (5.5 for seed 0, used here). A policy
    that only heads for the middle of the goal square scores about -15 .. -17 on this
    protocol; TD3 without context reached -19.2 / -15.7 / -17.2 / -15.1 at the same budget.
    Cost: about 25 CPU-seconds, 8-10 of them XLA compilation.
    """
    seed = 0
    agent = MQL(resolve("point-robot", "td3-context", "paper", seed=seed))
    env = agent.eval_env
    untrained = _zero_shot_test_return(agent, env, seed=123)
    while agent.env_steps < 6000:
        agent.run_iteration()
    trained = _zero_shot_test_return(agent, env, seed=123)
    random = _zero_shot_test_return(_RandomAgent(1), env, seed=123)
    assert -26.0 < random < -17.0  # sanity of the baseline itself
    assert trained > max(random, untrained) + 2.5, (trained, random, untrained)


def _zero_shot_rewards(agent: MQL, episodes: int, seed: int) -> np.ndarray:
    """Per-step rewards (tasks * episodes, 20) of the zero-shot policy on all test tasks."""
    env = agent.eval_env
    policy = agent.zero_shot_policy()
    rows = []
    for i, task in enumerate(env.test_tasks):
        env.set_task(task)
        for k in range(episodes):
            obs, _ = env.reset(seed=episode_seed(seed, i, k))
            policy.reset()
            rewards, done = [], False
            while not done:
                action = policy.act(obs)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                policy.observe(obs, action, float(reward))
                rewards.append(reward)
                obs, done = next_obs, terminated or truncated
            rows.append(rewards)
    return np.asarray(rows)


@pytest.mark.slow
def test_td3_context_beats_td3_point_robot():
    """The goal must be inferred from the rewards in the history: with the context, TD3 ends
    episodes much closer to the goal and earns more than TD3 without it (same seed, tasks and
    budget: 30k environment steps, paper preset). About 2.5 CPU-minutes, hence `slow`.

    Observed (all 20 test tasks, 3 episodes each; return, then distance to the goal at the
    last step), td3-context vs td3:
      this test (seed 0): -12.8 vs -17.0, 0.45 vs 0.80
      other reset seeds:  seed 0: -13.4 vs -17.2, 0.48 vs 0.80; seed 1: -13.6 vs -16.6,
      0.48 vs 0.81; seed 2: -14.2 vs -17.8, 0.43 vs 0.85; seed 3: -12.3 vs -15.5, 0.50 vs 0.77
    At 6-12k steps the two are NOT separable (td3-context -15 .. -18, td3 -16 .. -19, either
    one ahead depending on the seed): both first learn to head for the middle of the goal
    square, and only later does td3-context use its context (at 20k the margins were 1.9-3.3).
    """
    seed = 0
    ctx = _train_to("td3-context", seed, 30_000)
    plain = _train_to("td3", seed, 30_000)
    r_ctx, r_plain = _zero_shot_rewards(ctx, 3, 5), _zero_shot_rewards(plain, 3, 5)
    ret_ctx, ret_plain = r_ctx.sum(1).mean(), r_plain.sum(1).mean()
    final_ctx, final_plain = -r_ctx[:, -1].mean(), -r_plain[:, -1].mean()
    assert ret_ctx > ret_plain + 1.5, (ret_ctx, ret_plain)
    assert final_ctx < 0.8 * final_plain, (final_ctx, final_plain)

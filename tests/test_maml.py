"""MAML-TRPO and ProMP agents: the outer TRPO step within its trust region, ProMP's outer update,
the protocol's adaptation, determinism, bad input and learning sanity on point-robot."""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_config

from mql.algos import registry
from mql.evaluate import evaluate
from mql.onpolicy.policies import gaussian_kl

ALGOS = ["maml-trpo", "promp"]


def _one_batch(agent):
    """The pre-update batch, the adapted parameters and the post-update batch of one iteration."""
    m, r = agent.cfg.meta_batch, agent.cfg.rollouts_per_task
    task_ids = agent.draw_tasks()
    theta = agent.state.params
    stacked = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (m, *x.shape)), theta)
    pre = agent.path_batch(agent.sample(task_ids, stacked), m, r)
    adapted = agent._adapt(theta, (pre,))
    post = agent.path_batch(agent.sample(task_ids, adapted), m, r)
    return pre, adapted, post


def _adapted_kl(agent, old_adapted, new_adapted, post) -> float:
    """Mean over tasks of the mean KL(old adapted || new adapted) on the post-update states."""
    kls = []
    for i in range(agent.cfg.meta_batch):
        p_old = jax.tree_util.tree_map(lambda x, i=i: x[i], old_adapted)
        p_new = jax.tree_util.tree_map(lambda x, i=i: x[i], new_adapted)
        m0, s0 = agent.apply_fn(p_old, post.obs[i])
        m1, s1 = agent.apply_fn(p_new, post.obs[i])
        kl, valid = np.asarray(gaussian_kl(m0, s0, m1, s1)), np.asarray(post.valid[i])
        kls.append((kl * valid).sum() / valid.sum())
    return float(np.mean(kls))


@pytest.mark.parametrize("max_kl", [0.01, 1e-4])
def test_outer_trpo_step_keeps_the_kl_of_the_adapted_policies_within_delta(max_kl):
    agent = registry.make_agent(tiny_config("maml-trpo", meta_batch=4, max_kl=max_kl))
    pre, old_adapted, post = _one_batch(agent)
    score = jnp.zeros(agent.cfg.meta_batch)
    state, metrics = agent._outer(agent.state, (pre,), post, score)
    agent.close()
    assert int(metrics["losses/line_search_step"]) >= 0  # a step was accepted
    assert float(metrics["losses/outer_loss"]) < float(metrics["losses/outer_loss_before"])
    new_adapted = agent._adapt(state.params, (pre,))
    kl = _adapted_kl(agent, old_adapted, new_adapted, post)
    assert 0.0 < kl <= max_kl * (1 + 1e-3)
    np.testing.assert_allclose(kl, float(metrics["losses/outer_kl"]), rtol=1e-3)


def test_gauss_newton_and_full_hvps_give_the_same_trpo_step():
    """Both products are exact at the sampling parameters (the KL's gradient is zero there)."""
    steps = []
    for hvp in ("gauss_newton", "full"):
        agent = registry.make_agent(tiny_config("maml-trpo", meta_batch=4, hvp=hvp))
        pre, _, post = _one_batch(agent)
        state, _ = agent._outer(agent.state, (pre,), post, jnp.zeros(4))
        agent.close()
        steps.append(jax.flatten_util.ravel_pytree(state.params)[0])
    np.testing.assert_allclose(steps[0], steps[1], rtol=1e-4, atol=1e-6)
    # the products on two of the four tasks: another step, still within the bound
    agent = registry.make_agent(tiny_config("maml-trpo", meta_batch=4, hvp_tasks=2))
    pre, old_adapted, post = _one_batch(agent)
    state, metrics = agent._outer(agent.state, (pre,), post, jnp.zeros(4))
    agent.close()
    assert int(metrics["losses/line_search_step"]) >= 0
    new_adapted = agent._adapt(state.params, (pre,))
    assert _adapted_kl(agent, old_adapted, new_adapted, post) <= 0.01 * (1 + 1e-3)


def test_promp_outer_update_improves_its_objective_and_adapts_eta():
    agent = registry.make_agent(tiny_config("promp", adaptive_kl=True, target_inner_kl=1.0))
    pre, _, post = _one_batch(agent)
    state, metrics = agent._outer(agent.state, (pre,), post, jnp.zeros(agent.cfg.meta_batch))
    agent.close()
    assert float(metrics["losses/outer_loss"]) < float(metrics["losses/outer_loss_before"])
    # 5 Adam steps of 1e-3 move the pre-update policy far less than a KL of 1 / 1.5: eta halves
    np.testing.assert_allclose(np.asarray(state.kl_coef), [agent.cfg.kl_coef / 2], rtol=1e-6)


@pytest.mark.parametrize("algo", ALGOS)
def test_adaptation_collects_its_episodes_and_steps_on_the_new_task(algo):
    agent = registry.make_agent(tiny_config(algo, rollouts_per_task=3))
    env = agent.eval_env
    task = env.test_tasks[0]
    zero = agent.zero_shot_policy()
    adapted = agent.adapt(env, task, seed=5)
    assert adapted.episodes == 3 and adapted.new_task_steps == 3 * env.horizon  # ProMP's budget
    one = agent.adapt(env, task, seed=5, episodes=1)  # MQL's budget: one episode
    assert one.episodes == 1 and one.new_task_steps == env.horizon
    none = agent.adapt(env, task, seed=5, episodes=0)
    assert none.new_task_steps == 0
    obs = np.array([0.3, -0.2], np.float32)
    for p in (zero, adapted.policy, none.policy):
        p.deterministic = True
    assert not np.allclose(adapted.policy.act(obs), zero.act(obs))  # the inner step moved it
    np.testing.assert_array_equal(none.policy.act(obs), zero.act(obs))
    again = agent.adapt(env, task, seed=5)  # the same seed: the same adapted policy
    again.policy.deterministic = True
    np.testing.assert_array_equal(again.policy.act(obs), adapted.policy.act(obs))
    two = registry.make_agent(tiny_config(algo, rollouts_per_task=3, inner_steps=2))
    assert two.adapt(env, task, seed=5).new_task_steps == 2 * 3 * env.horizon
    m = two.run_iteration()  # two inner steps: three batches of 3 x 3 x 20 steps
    assert two.env_steps == 3 * 3 * 3 * env.horizon and "train/return_step2" in m
    for a in (agent, two):
        a.close()


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("extra", [{}, {"inner_estimator": "dice", "exploration_coef": 1.0}])
def test_same_seed_same_numbers(algo, extra):
    runs = []
    for _ in range(2):
        agent = registry.make_agent(tiny_config(algo, **extra))
        m = [agent.run_iteration() for _ in range(2)][-1]
        runs.append({k: v for k, v in m.items() if not k.startswith("time/")})
        agent.close()
    assert runs[0] == runs[1]
    assert all(np.isfinite(v) for v in runs[0].values())


@pytest.mark.parametrize(
    ("algo", "overrides", "message"),
    [
        ("maml-trpo", dict(inner_lr=0.0), "inner_lr must be > 0, got 0.0"),
        ("promp", dict(inner_lr=-0.1), "inner_lr must be > 0, got -0.1"),
        ("maml-trpo", dict(rollouts_per_task=0), "rollouts_per_task must be positive, got 0"),
        ("maml-trpo", dict(max_kl=0.0), "max_kl must be > 0, got 0.0"),
        ("maml-trpo", dict(max_kl=-1.0), "max_kl must be > 0, got -1.0"),
        (
            "promp",
            dict(sampler_processes=7),
            "sampler_processes \\(7\\) exceeds the 6 rollouts of an iteration",
        ),
        (
            "maml-trpo",
            dict(task_sampling="without_replacement", meta_batch=81),
            "meta_batch \\(81\\) exceeds point-robot's 80 training tasks",
        ),
        ("promp", dict(inner_estimator="sgd"), "inner_estimator must be one of vpg, lvc, dice"),
        ("maml-trpo", dict(backtrack_ratio=1.0), "backtrack_ratio must be in \\(0, 1\\)"),
        ("promp", dict(horizon=21), "horizon \\(21\\) must be at most point-robot's"),
        ("maml-trpo", dict(inner_steps=0), "inner_steps must be positive"),
        ("maml-trpo", dict(hvp_tasks=4), "hvp_tasks \\(4\\) must be at most meta_batch \\(3\\)"),
    ],
)
def test_bad_config_values_raise_one_line(algo, overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        tiny_config(algo, **overrides)
    assert "\n" not in str(err.value)


def test_presets_follow_promp():
    cheetah = registry.resolve("cheetah-dir", "maml-trpo")
    assert (cheetah.meta_batch, cheetah.rollouts_per_task, cheetah.horizon) == (40, 20, 100)
    assert (cheetah.inner_lr, cheetah.inner_steps, cheetah.inner_estimator) == (0.1, 1, "vpg")
    assert (cheetah.max_kl, cheetah.cg_iters, cheetah.cg_damping) == (0.01, 10, 1e-5)
    assert cheetah.total_steps == 1001 * 2 * 40 * 20 * 100
    assert registry.resolve("ant-goal", "maml-trpo").inner_steps == 2
    assert registry.resolve("walker-params", "promp").inner_lr == 0.05
    promp = registry.resolve("cheetah-dir", "promp")
    assert (promp.inner_estimator, promp.clip, promp.kl_coef, promp.outer_steps, promp.lr) == (
        "lvc",
        0.3,
        5e-4,
        5,
        1e-3,
    )


@pytest.mark.parametrize("algo", ALGOS)
def test_metaworld_presets_follow_the_metaworld_paper(algo):
    """REFERENCE §5: MAML meta-batch 20 (45 for ML45), 10 rollouts, (128, 128) tanh, horizon
    500 (the configs load without the Meta-World extra)."""
    reach = registry.resolve("metaworld-ml1-reach", algo)
    assert (reach.meta_batch, reach.rollouts_per_task, reach.hidden) == (20, 10, (128, 128))
    assert (reach.horizon, reach.eval_episodes) == (0, 3)  # 0: the family's horizon, 500
    assert reach.total_steps == 1001 * 2 * 20 * 10 * 500
    assert registry.resolve("metaworld-ml45", algo).meta_batch == 45


@pytest.mark.parametrize("algo", ALGOS)
def test_learning_sanity_the_adapted_policy_beats_the_pre_update_policy(algo):
    """point-robot (goal unobserved, dense reward -distance): the pre-update policy cannot know
    the goal, one inner step on 10 episodes of the new task can. 40 iterations of 10 tasks x 10
    rollouts (MLP (32, 32); 9-25 s on 2 shared cores), then the paired protocol on all 20 test
    tasks: adapted beats zero-shot by more than 3 standard errors and by more than 1, and the
    adapted policy beats the initial one. Measured over seeds 0, 1, 2 (paired difference; adapted
    against the first iteration's pre-update return): MAML-TRPO 7.8 +- 0.6, 6.7 +- 0.9,
    7.0 +- 0.6 (-10.2 vs -24.3, -8.9 vs -26.4, -11.0 vs -17.5); ProMP 4.8 +- 0.8, 2.5 +- 0.3,
    4.7 +- 0.4 (-13.2 vs -24.3, -13.6 vs -26.4, -14.7 vs -17.5)."""
    cfg = registry.resolve(
        "point-robot",
        algo,
        seed=0,
        meta_batch=10,
        rollouts_per_task=10,
        hidden=(32, 32),
        sampler_processes=1,
    )
    agent = registry.make_agent(cfg)
    first = agent.run_iteration()
    for _ in range(39):
        agent.run_iteration()
    result = evaluate(agent, agent.eval_env, agent.eval_env.test_tasks, 2, seed=1)
    agent.close()
    s = result.summary()
    diff, se = s["test/paired_difference"], s["test/paired_difference_se"]
    assert diff > max(1.0, 3 * se), s
    assert s["test/adapted_return"] > first["train/return_step0"], s


def test_bench_times_the_parts_of_an_iteration():
    from mql.bench.meta_gradient import (
        PARTS,
        iteration_parts,
        markdown_meta_gradient,
        with_ceiling,
    )

    tiny = dict(meta_batch=2, rollouts_per_task=2, hidden=(8,), hvp_tasks=1)
    row = iteration_parts("point-robot", "maml-trpo", iterations=1, processes=1, overrides=tiny)
    assert row["steps"] == 2 * 2 * 2 * 20 and row["settings"].startswith("meta_batch=2")
    shares = [row[f"{p}_share"] for p in PARTS]
    assert all(0.0 <= s <= 1.0 for s in shares) and sum(shares) <= 1.0 + 1e-9
    assert row["task_states"] == 2 * 20 and row["width"] == 8  # point-robot's horizon: 20
    assert row["outer_gflop"] > 0 and row["outer_gflops_rate"] > 0
    full = with_ceiling(row, ceiling=row["outer_gflops_rate"])  # at its own rate: as measured
    assert full["outer_share_at_ceiling"] == pytest.approx(row["outer_share"])
    assert "| point-robot | maml-trpo |" in markdown_meta_gradient([full])

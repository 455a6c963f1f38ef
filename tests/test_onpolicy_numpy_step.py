"""RL2's sampling step in NumPy (`mql.onpolicy.numpy_step`) against the flax module it mirrors,
the sampler's one-thread BLAS while it steps, and the config that selects the step."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_info
from tiny import tiny_config

from mql.algos.rl2.config import RL2Config
from mql.onpolicy.numpy_step import NumpyRecurrentStep
from mql.onpolicy.policies import RecurrentGaussian, log_prob
from mql.onpolicy.sampler import Sampler
from mql.onpolicy.types import PolicyInputs

OBS, ACT, HIDDEN, N = 5, 3, 8, 4


def _inputs(rng: np.random.Generator) -> PolicyInputs:
    return PolicyInputs(
        rng.normal(size=(N, OBS)).astype(np.float32),
        rng.normal(size=(N, ACT)).astype(np.float32),
        rng.normal(size=N).astype(np.float32),
        (rng.random(N) < 0.2).astype(np.float32),
    )


def _module_and_params(cell: str):
    """The module with every parameter random (flax starts biases at zero, which would leave
    the bias handling untested) and a log-std away from zero."""
    module = RecurrentGaussian(act_dim=ACT, hidden=HIDDEN, cell=cell)
    params = module.init(
        jax.random.PRNGKey(0), module.initial_carry(N), _inputs(np.random.default_rng(0))
    )
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    leaves = [0.5 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves, strict=True)]
    return module, jax.tree_util.tree_unflatten(treedef, leaves)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_numpy_step_matches_the_module_over_a_trial(cell):
    """30 chained steps: the carry, the action (the module's mean plus exp(log_std) times the
    same standard-normal draws) and the log-density equal the module's to float32 rounding."""
    module, params = _module_and_params(cell)
    step = NumpyRecurrentStep(params, cell, np.random.default_rng(7))
    noise = np.random.default_rng(7)  # the same draws, to reconstruct the expected actions
    rng = np.random.default_rng(1)
    carry_np, carry_jax = step.initial_carry(N), module.initial_carry(N)
    for _ in range(30):
        inputs = _inputs(rng)
        actions, log_probs, carry_np = step(carry_np, inputs)
        carry_jax, (mean, log_std, _) = module.apply(params, carry_jax, inputs)
        eps = noise.standard_normal((N, ACT), dtype=np.float32)
        expected = np.asarray(mean) + np.exp(np.asarray(log_std)) * eps
        np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-5)
        lp = log_prob(mean, log_std, jnp.asarray(actions))
        np.testing.assert_allclose(log_probs, np.asarray(lp), rtol=1e-5, atol=1e-4)
        for a, b in zip(
            jax.tree_util.tree_leaves(carry_np), jax.tree_util.tree_leaves(carry_jax), strict=True
        ):
            np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-5)
        assert actions.dtype == log_probs.dtype == np.float32


def test_log_density_by_hand():
    """log N(a; m, s^2) of every slot, written out: -0.5 eps^2 - log s - log(2 pi)/2
    per dimension, with eps the draw."""
    _, params = _module_and_params("gru")
    step = NumpyRecurrentStep(params, "gru", np.random.default_rng(3))
    _, log_probs, _ = step(step.initial_carry(N), _inputs(np.random.default_rng(2)))
    eps = np.random.default_rng(3).standard_normal((N, ACT), dtype=np.float32).astype(np.float64)
    log_std = np.asarray(params["params"]["log_std"], np.float64)
    by_hand = [
        sum(
            -0.5 * e * e - s - 0.5 * math.log(2 * math.pi)
            for e, s in zip(row, log_std, strict=True)
        )
        for row in eps
    ]
    np.testing.assert_allclose(log_probs, by_hand, rtol=1e-6, atol=1e-5)


def test_same_generator_same_actions_and_an_unknown_cell_raises():
    _, params = _module_and_params("gru")
    inputs = _inputs(np.random.default_rng(0))
    a = NumpyRecurrentStep(params, "gru", np.random.default_rng(5))
    b = NumpyRecurrentStep(params, "gru", np.random.default_rng(5))
    np.testing.assert_array_equal(
        a(a.initial_carry(N), inputs)[0], b(b.initial_carry(N), inputs)[0]
    )
    with pytest.raises(ValueError, match="unknown recurrent cell 'rnn'"):
        NumpyRecurrentStep(params, "rnn", np.random.default_rng(0))


def test_the_sampler_steps_with_one_blas_thread_and_restores_it():
    """OpenBLAS's idle threads spin after each product and would take the physics' cores."""

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before, seen = blas_threads(), []

    def step_fn(carry, inputs):
        seen.append(blas_threads())
        return (
            np.zeros((len(inputs.obs), 2), np.float32),
            np.zeros(len(inputs.obs), np.float32),
            carry,
        )

    with Sampler("point-robot", 0, 2, processes=1) as sampler:
        env = sampler.pool._local.envs[0]
        sampler.sample(env.train_tasks[:2], np.array([[0], [1]]), step_fn, None)
    assert seen and all(threads == [1] * len(before) for threads in seen)
    assert blas_threads() == before


def test_sampler_policy_config():
    """numpy by default; configs saved before the option existed keep the compiled step (exact
    resume of old runs); an unknown value is a one-line error."""
    assert tiny_config("rl2").sampler_policy == "numpy"
    saved = tiny_config("rl2").to_dict()
    del saved["sampler_policy"]
    assert RL2Config.from_dict(saved).sampler_policy == "jax"
    with pytest.raises(ValueError, match="sampler_policy must be one of numpy, jax"):
        tiny_config("rl2", sampler_policy="torch")

"""Smoke tests of the learner benchmark (`mql.bench`) at tiny sizes."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import pytest

from mql.bench import cli as bench_cli
from mql.bench.flops import cost_flops, jaxpr_matmul_flops, mlp_flops
from mql.bench.memory import replay_memory
from mql.bench.timing import mlp_chain_gflops, numpy_matmul_gflops
from mql.offpolicy.networks import MLP

TINY = [
    "--override",
    "hidden=16,16",
    "--override",
    "history_len=2",
    "--override",
    "context_dim=4",
    "--override",
    "batch_size=8",
    "--override",
    "updates_per_call=4",
]


@pytest.mark.parametrize(("hidden", "n_in", "n_out"), [((16, 16), 5, 3), ((7,), 4, 1)])
def test_mlp_flop_count_equals_hand_count(hidden, n_in, n_out):
    batch = 8
    mlp = MLP(hidden, n_out)
    x = jnp.ones((batch, n_in))
    params = mlp.init(jax.random.PRNGKey(0), x)
    compiled = jax.jit(mlp.apply).lower(params, x).compile()
    assert cost_flops(compiled) == mlp_flops(batch, (n_in, *hidden, n_out))


def test_ceiling_measurements_are_plausible():
    # tiny shapes: only that both return a finite positive rate below an absurd bound
    for rate in (
        mlp_chain_gflops(8, 16, layers=2, repeats=2),
        numpy_matmul_gflops(8, 16, repeats=2),
    ):
        assert math.isfinite(rate) and 0 < rate < 1e5


def test_jaxpr_matmul_flops_counts_every_loop_trip():
    """Hand count: each (5 x 3) . (3 x 3) product is 2 * 5 * 3 * 3 = 90 FLOPs; a batched
    product 2 * batch * i * j * k."""
    w = jnp.ones((3, 3))

    def fn(x: jax.Array) -> jax.Array:
        y = jax.lax.map(lambda xi: xi @ w, x)  # 4 tasks: 4 products
        z = jax.lax.fori_loop(0, 3, lambda _, z: z @ w, y[0])  # 3 products
        _, u = jax.lax.while_loop(
            lambda c: c[0] < 2, lambda c: (c[0] + 1, c[1] @ w), (0, z)
        )  # `while_trips` products
        v = jax.lax.cond(u.sum() > 0, lambda: u @ w, lambda: u)  # the dearer branch: 1
        return v + jnp.einsum("bij,bjk->bik", x, x.transpose(0, 2, 1)).sum()  # 2*4*5*3*5

    x = jnp.ones((4, 5, 3))
    for trips in (1, 2, 7):
        expected = 90 * (4 + 3 + trips + 1) + 2 * 4 * 5 * 3 * 5
        assert jaxpr_matmul_flops(jax.jit(fn), x, while_trips=trips) == expected


def test_replay_memory_cheetah_layout():
    mem = replay_memory(obs_dim=20, act_dim=6, history_len=20, n=2000, horizon=200)
    assert mem["bytes_per_transition"] == 197.0  # 4 (27 + 20) + 1 + 4 + 4
    assert mem["fill_peak_mb"] >= 2000 * 197 / 2**20
    assert mem["released_bytes_per_transition"] > 20 * mem["bytes_per_transition"]


def test_main_prints_positive_finite_numbers(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench_cli.main(
        [
            "--presets",
            "cheetah-vel",
            "--quick",
            "--updates",
            "8",
            "--e2e-steps",
            "1",
            "--fill",
            "500",
            "--json",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| cheetah-vel |" in printed and "utilisation" in printed
    assert "replay bytes/transition: 197" in printed
    row = json.loads(out.read_text())["presets"][0]
    for key in (
        "peak_gflops",
        "updates_per_s",
        "flops_per_update",
        "matmul_flops_per_update_hand",
        "utilisation",
        "e2e_steps_per_s",
        "e2e_ratio",
        "act_latency_us",
        "env_step_us",
        "sample_us_per_update",
        "staging_mb",
        "bytes_per_transition",
        "fill_peak_mb",
        "chain_gflops",
        "blas_gflops",
    ):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert (row["history_len"], row["context_dim"], row["hidden"]) == (2, 4, [16, 16])
    # XLA's count: the delayed actor branch weighted by 1/policy_freq, and at least the matmuls
    # counted by hand (Adam, activations, losses and noise add elementwise FLOPs)
    detail, hand = row["flops_detail"], row["matmul_flops_hand"]
    pf = row["policy_freq"]
    assert row["flops_per_update"] == pytest.approx(
        detail["cost_update_both_branches"] - (1 - 1 / pf) * detail["cost_actor_branch"]
    )
    assert hand["per_update"] == pytest.approx(hand["critic_step"] + hand["actor_step"] / pf)
    assert 1.0 <= row["flops_per_update"] / hand["per_update"] < 2.0


def test_sampler_benchmark_measures_and_tabulates():
    from mql.bench.sampler import markdown_sampler, measure_sampler

    row = measure_sampler("hopper-params", n_envs=4, rounds=1, raw_steps=300)
    for key in (
        "raw_steps_per_s",
        "env_steps_per_s",
        "sampler_steps_per_s",
        "single_steps_per_s",
    ):
        assert math.isfinite(row[key]) and row[key] > 0, key
    assert 0.0 < row["sampler_inference_share"] < 1.0
    assert row["sampler_vs_raw"] == pytest.approx(
        row["sampler_steps_per_s"] / row["raw_steps_per_s"]
    )
    table = markdown_sampler([{**row, "iteration": None}])
    assert table.count("\n") == 2 and "| hopper-params | 4 x 1 |" in table
    assert row["layout"].endswith(("process", "processes")) and f"({row['layout']})" in table

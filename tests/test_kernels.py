"""Native GRU kernels (mql.kernels): same numbers as the XLA GRU, deterministic, clear failures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mql import config as config_lib
from mql import kernels
from mql.offpolicy.networks import ContextGRU, gru_context, gru_context_native, input_weight_grad

NATIVE, WHY = kernels.status()
needs_native = pytest.mark.skipif(not NATIVE, reason=f"native kernels unavailable: {WHY}")


def _gru_inputs(batch: tuple[int, ...], steps: int, feat: int, hidden: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    s = 1.0 / np.sqrt(hidden)
    shapes = [(feat, 3 * hidden), (3 * hidden,), (hidden, 3 * hidden), (3 * hidden,)]
    params = [jnp.asarray(rng.uniform(-s, s, sh), jnp.float32) for sh in shapes]
    history = jnp.asarray(rng.normal(size=(*batch, steps, feat)), jnp.float32)
    return params, history


@needs_native
@pytest.mark.parametrize(
    ("batch", "steps", "feat", "hidden"),
    [
        ((1,), 3, 4, 5),
        ((7,), 20, 27, 20),
        ((33,), 5, 9, 30),
        ((2, 3), 4, 6, 8),
        ((256,), 20, 27, 20),
    ],
)
def test_forward_matches_xla(batch, steps, feat, hidden):
    """Any batch (not a multiple of the SIMD width, several leading axes) and hidden size."""
    params, history = _gru_inputs(batch, steps, feat, hidden)
    ref = gru_context(*params, history)
    out = jax.jit(gru_context_native)(*params, history)
    assert out.shape == ref.shape == (*batch, hidden)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=0, atol=2e-6)


@needs_native
@pytest.mark.parametrize(
    ("batch", "hidden", "feat"),
    [((5,), 4, 11), ((40,), 20, 11), ((3, 6), 30, 11), ((5,), 4, 30), ((40,), 20, 70)],
)
def test_gradients_match_xla(batch, hidden, feat):
    """All five cotangents (W_in, b_in, W_h, b_h, history) of a nonlinear loss of z; history rows
    narrower and wider than 3 x hidden (`input_weight_grad` transposes the smaller operand)."""
    params, history = _gru_inputs(batch, 6, feat, hidden, seed=1)

    def grads(fn):
        loss = lambda p, h: jnp.sum(jnp.sin(3.0 * fn(*p, h)))  # noqa: E731
        return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, history)

    ref, out = grads(gru_context), grads(gru_context_native)
    for r, o in zip(jax.tree.leaves(ref), jax.tree.leaves(out), strict=True):
        scale = float(jnp.max(jnp.abs(r)))
        np.testing.assert_allclose(np.asarray(o), np.asarray(r), rtol=0, atol=2e-6 * scale)


@pytest.mark.parametrize(("feat", "gates"), [(27, 60), (394, 60), (60, 60)])
def test_input_weight_grad_is_the_sum_of_outer_products(feat, gates):
    """sum_{b,t} x_bt^T d_bt, whichever operand is transposed, against float64 NumPy."""
    rng = np.random.default_rng(feat)
    x = rng.normal(size=(9, 4, feat)).astype(np.float32)
    d = rng.normal(size=(9, 4, gates)).astype(np.float32)
    out = np.asarray(jax.jit(input_weight_grad)(x, d))
    ref = np.einsum("btf,btj->fj", x.astype(np.float64), d.astype(np.float64))
    assert out.shape == (feat, gates)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@needs_native
def test_deterministic_across_calls():
    """Blocks of samples may run on two threads; each sample's numbers never depend on it."""
    params, history = _gru_inputs((256,), 20, 27, 20, seed=2)
    step = jax.jit(jax.value_and_grad(lambda p: jnp.sum(gru_context_native(*p, history) ** 2)))
    v1, g1 = step(params)
    for _ in range(3):
        v2, g2 = step(params)
        assert float(v1) == float(v2)
        for a, b in zip(g1, g2, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@needs_native
def test_context_gru_module_switches_kernel():
    params, history = _gru_inputs((9,), 4, 6, 5)
    mod_xla, mod_native = ContextGRU(5, "xla"), ContextGRU(5, "native")
    variables = mod_xla.init(jax.random.PRNGKey(0), history)
    assert jax.tree.structure(variables) == jax.tree.structure(
        mod_native.init(jax.random.PRNGKey(0), history)
    )
    z_xla = mod_xla.apply(variables, history)
    z_native = mod_native.apply(variables, history)
    np.testing.assert_allclose(np.asarray(z_native), np.asarray(z_xla), atol=2e-6)
    assert jax.jit(gru_context_native).lower(*params, history).as_text().count("mql_gru") == 1


def test_resolve_choices(monkeypatch):
    assert kernels.resolve("xla") == "xla"
    monkeypatch.setattr(kernels, "status", lambda: (False, "no C++ compiler found (set $CXX)"))
    assert kernels.resolve("auto") == "xla"
    with pytest.raises(kernels.NativeKernelError, match="unavailable: no C\\+\\+ compiler"):
        kernels.resolve("native")
    monkeypatch.setattr(kernels, "status", lambda: (True, "lib.so (8 float lanes)"))
    assert kernels.resolve("auto") == kernels.resolve("native") == "native"


def test_compiler_from_env(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert kernels._compiler() is None  # as asked, or none: no silent fallback


def test_failed_build_is_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch):
    fake = tmp_path / "fake-c++"
    fake.write_text("#!/bin/sh\necho 'gru.cc:1:1: error: boom' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    target = tmp_path / "cache" / "lib.so"
    with pytest.raises(
        kernels.NativeKernelError, match=r"^compiling gru.cc failed: .*error: boom$"
    ):
        kernels._build(str(fake), target)
    assert not target.exists()
    assert os.listdir(target.parent) == []  # the temporary file is gone too


@needs_native
def test_build_into_fresh_cache(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MQL_KERNEL_CACHE", str(tmp_path))
    cxx = kernels._compiler()
    path = kernels._library_path(cxx)
    assert path.parent == tmp_path and not path.exists()
    kernels._build(cxx, path)
    assert path.is_file() and [p.name for p in tmp_path.iterdir()] == [path.name]
    assert kernels._library_path(cxx) == path  # same source, compiler, CPU: same cache entry


def test_config_field_and_legacy_configs():
    cfg = config_lib.resolve("point-robot", "mql")
    assert cfg.gru_kernel == "auto"
    with pytest.raises(ValueError, match="gru_kernel must be one of xla, native, auto"):
        config_lib.resolve("point-robot", "mql", gru_kernel="fast").validate()
    data = config_lib.to_dict(cfg)
    assert config_lib.from_dict(data).gru_kernel == "auto"
    del data["gru_kernel"]  # a config saved before the field existed ran the XLA GRU
    assert config_lib.from_dict(data).gru_kernel == "xla"


@needs_native
def test_update_native_matches_xla():
    """One MQL update (critic, actor, targets, Adam) with either kernel: same numbers to ~1e-5."""
    import dataclasses

    from mql.bench.learner import sample_batches
    from mql.bench.memory import fill_random
    from mql.offpolicy.replay import ReplayBuffer
    from mql.offpolicy.td3 import TD3, TD3Spec, no_anchor

    spec = TD3Spec(obs_dim=5, act_dim=2, history_len=4, hidden=(32, 32), context_dim=6)
    buffer = ReplayBuffer(500, 5, 2, 4)
    fill_random(buffer, 500, 20)
    batches, weights = sample_batches(buffer, np.random.default_rng(0), 2, 37)
    out = {}
    for kernel in ("xla", "native"):
        td3 = TD3(dataclasses.replace(spec, gru_kernel=kernel))
        state = td3.init(jax.random.PRNGKey(0), 1e-3)
        out[kernel] = td3.update_many(state, batches, weights, no_anchor(state))
    for a, b in zip(jax.tree.leaves(out["xla"]), jax.tree.leaves(out["native"]), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-5)


def test_cli_native_unavailable_is_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    from mql.cli import main

    monkeypatch.setattr(kernels, "status", lambda: (False, "no C++ compiler found (set $CXX)"))
    run_dir = tmp_path / "run"
    argv = ["train", "--env", "point-robot", "--gru-kernel", "native", "--run-dir", str(run_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "mql train: error: gru_kernel='native' is unavailable: no C++ compiler found (set $CXX)"
    )
    assert not run_dir.exists()

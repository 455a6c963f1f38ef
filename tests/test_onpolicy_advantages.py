"""GAE, discounted returns and the linear feature baseline against hand-computed values."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from mql.onpolicy import baseline
from mql.onpolicy.gae import discounted_returns, gae
from mql.onpolicy.path_advantages import linear_baseline_advantages
from mql.onpolicy.types import PolicyInputs, Trajectories

GAMMA, LAM = 0.9, 0.5

# Slot 0: one RL2 trial of two episodes (steps 0-1, then 2-3), step 3 ends the trial at the
# time limit, step 4 is padding. Slot 1: a 3-step trial, then two padded steps.
REWARDS = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0], [4.0, 9.0], [7.0, 9.0]], np.float32)
VALUES = np.array([[0.5, 0.0], [0.6, 0.0], [0.7, 0.0], [0.8, 5.0], [3.0, 5.0]], np.float32)
NEXT = np.array([[0.6, 0.0], [0.7, 0.0], [0.8, 2.0], [2.0, 5.0], [3.0, 5.0]], np.float32)
VALID = np.array([[1, 1], [1, 1], [1, 1], [1, 0], [0, 0]], bool)
TRIAL_END = np.array([[0, 0], [0, 0], [0, 1], [1, 0], [0, 0]], bool)


def _gae(terminated: np.ndarray, path_end: np.ndarray, lam: float = LAM):
    adv, targets = gae(
        jnp.asarray(REWARDS),
        jnp.asarray(VALUES),
        jnp.asarray(NEXT),
        jnp.asarray(terminated),
        jnp.asarray(path_end),
        jnp.asarray(VALID),
        GAMMA,
        lam,
    )
    return np.asarray(adv), np.asarray(targets)


def test_gae_across_an_episode_boundary_inside_a_trial_and_a_truncation() -> None:
    adv, targets = _gae(np.zeros_like(VALID), TRIAL_END)
    # slot 0 by hand: deltas 1 + .9*.6 - .5 = 1.04, 2 + .9*.7 - .6 = 2.03, 3 + .9*.8 - .7 = 3.02,
    # 4 + .9*2 - .8 = 5.0 (bootstrapped at the truncation); A_t = delta_t + .45 A_{t+1}, the
    # episode boundary after step 1 is not a path end.
    a3 = 5.0
    a2 = 3.02 + 0.45 * a3
    a1 = 2.03 + 0.45 * a2
    a0 = 1.04 + 0.45 * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2, a3, 0.0], rtol=1e-6)
    # slot 1: deltas 1, 1, 1 + .9*2 = 2.8; then padding
    b2 = 2.8
    b1 = 1.0 + 0.45 * b2
    b0 = 1.0 + 0.45 * b1
    np.testing.assert_allclose(adv[:, 1], [b0, b1, b2, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(targets, (adv + VALUES) * VALID, rtol=1e-6)


def test_gae_termination_does_not_bootstrap() -> None:
    terminated = np.zeros_like(VALID)
    terminated[3, 0] = True
    adv, _ = _gae(terminated, TRIAL_END)
    a3 = 4.0 - 0.8
    a2 = 3.02 + 0.45 * a3
    np.testing.assert_allclose(adv[2:4, 0], [a2, a3], rtol=1e-6)
    # a terminated step ends its path even where path_end does not say so
    terminated[1, 0] = True
    adv, _ = _gae(terminated, TRIAL_END)
    np.testing.assert_allclose(adv[1, 0], 2.0 - 0.6, rtol=1e-6)


def test_gae_per_episode_paths() -> None:
    path_end = TRIAL_END.copy()
    path_end[1, 0] = True  # MAML/ProMP: every episode is a path
    adv, _ = _gae(np.zeros_like(VALID), path_end)
    np.testing.assert_allclose(adv[:2, 0], [1.04 + 0.45 * 2.03, 2.03], rtol=1e-6)


def test_gae_lambda_identities() -> None:
    delta = (REWARDS + GAMMA * NEXT - VALUES) * VALID
    adv0, _ = _gae(np.zeros_like(VALID), TRIAL_END, lam=0.0)
    np.testing.assert_allclose(adv0, delta, rtol=1e-6)
    # lam = 1: the value target is the discounted return bootstrapped at the path end
    _, targets = _gae(np.zeros_like(VALID), TRIAL_END, lam=1.0)
    g = GAMMA
    np.testing.assert_allclose(
        targets[:4, 0],
        [
            1 + g * 2 + g**2 * 3 + g**3 * (4 + g * 2.0),
            2 + g * 3 + g**2 * (4 + g * 2.0),
            3 + g * (4 + g * 2.0),
            4 + g * 2.0,
        ],
        rtol=1e-6,
    )


def test_discounted_returns() -> None:
    ret = np.asarray(discounted_returns(REWARDS, TRIAL_END, VALID, GAMMA))
    g = GAMMA
    np.testing.assert_allclose(
        ret[:, 0],
        [1 + g * 2 + g**2 * 3 + g**3 * 4, 2 + g * 3 + g**2 * 4, 3 + g * 4, 4, 0],
        rtol=1e-6,
    )
    np.testing.assert_allclose(ret[:, 1], [1 + g + g**2, 1 + g, 1, 0, 0], rtol=1e-6)


def test_baseline_features_by_hand() -> None:
    f = baseline.features(np.array([[12.0, -0.5]]), np.array([50]))
    np.testing.assert_allclose(f, [[10.0, -0.5, 100.0, 0.25, 0.5, 0.25, 0.125, 1.0]])


def test_linear_baseline_matches_numpy_lstsq() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 9))
    y = x @ rng.normal(size=9) + 0.1 * rng.normal(size=200)
    w = baseline.fit_linear_baseline(x, y, reg=1e-5)
    ref = np.linalg.lstsq(x.T @ x + 1e-5 * np.eye(9), x.T @ y, rcond=None)[0]
    np.testing.assert_allclose(w, ref, rtol=1e-10)
    # with a tiny ridge the fit is ordinary least squares
    np.testing.assert_allclose(w, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(baseline.predict(w, x[:3]), x[:3] @ w)


def test_linear_baseline_raises_the_ridge_on_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.eye(3)
    y = np.ones(3)
    real = np.linalg.solve
    seen: list[float] = []

    def flaky(a, b):
        seen.append(float(a[0, 0] - 1.0))  # the ridge added to the Gram matrix's diagonal
        if len(seen) < 3:
            raise np.linalg.LinAlgError("singular")
        return real(a, b)

    monkeypatch.setattr(np.linalg, "solve", flaky)
    w = baseline.fit_linear_baseline(x, y, reg=1e-5)
    np.testing.assert_allclose(seen, [1e-5, 1e-4, 1e-3], rtol=1e-9)
    np.testing.assert_allclose(w, np.full(3, 1.0 / (1.0 + 1e-3)))

    monkeypatch.setattr(np.linalg, "solve", lambda a, b: np.full(3, np.nan))
    with pytest.raises(ValueError, match="no finite fit after 5 attempts"):
        baseline.fit_linear_baseline(x, y)


def test_fit_per_group_fits_each_task_on_its_valid_steps() -> None:
    rng = np.random.default_rng(1)
    t_len, n, d = 6, 4, 2
    obs = rng.normal(size=(t_len, n, d))
    t = np.broadcast_to(np.arange(t_len)[:, None], (t_len, n))
    targets = rng.normal(size=(t_len, n))
    valid = np.ones((t_len, n), bool)
    valid[4:, 1] = False
    group = np.array([0, 0, 1, 1])
    weights = baseline.fit_per_group(obs, t, targets, valid, group)
    assert sorted(weights) == [0, 1]
    feats = baseline.features(obs, t)
    for g, cols in ((0, [0, 1]), (1, [2, 3])):
        mask = valid[:, cols]
        ref = baseline.fit_linear_baseline(feats[:, cols][mask], targets[:, cols][mask])
        np.testing.assert_allclose(weights[g], ref)
    pred = baseline.predict_per_group(weights, obs, t, group)
    np.testing.assert_allclose(pred[:, 2], feats[:, 2] @ weights[1])
    np.testing.assert_allclose(pred[:, 0], feats[:, 0] @ weights[0])


def _two_slot_trajectories() -> Trajectories:
    """Slot 0: one trial of two 2-step episodes, the second truncated at step 3; slot 1: a
    3-step episode that terminates, then padding. Observations are 1-dimensional."""
    t_len, n = 4, 2
    obs = np.array([[[0.1], [1.0]], [[0.3], [-0.5]], [[0.2], [0.4]], [[-0.4], [0.0]]], np.float32)
    final_obs = np.zeros((t_len, n, 1), np.float32)
    final_obs[1, 0] = 0.7  # the first episode's last observation (not bootstrapped: not a path end)
    final_obs[3, 0] = 0.9  # the truncated trial's end
    final_obs[2, 1] = -0.3
    terminated = np.zeros((t_len, n), bool)
    terminated[2, 1] = True
    truncated = np.zeros((t_len, n), bool)
    truncated[1, 0] = truncated[3, 0] = True
    valid = np.array([[1, 1], [1, 1], [1, 1], [1, 0]], bool)
    zeros = np.zeros((t_len + 1, n), np.float32)
    return Trajectories(
        obs=obs,
        actions=np.zeros((t_len, n, 1), np.float32),
        log_probs=np.zeros((t_len, n), np.float32),
        rewards=np.array([[1.0, 2.0], [0.5, -1.0], [2.0, 3.0], [1.5, 0.0]], np.float32),
        terminated=terminated,
        truncated=truncated,
        final_obs=final_obs,
        valid=valid,
        episode=np.array([[0, 0], [0, 0], [1, 0], [1, 0]], np.int32),
        t_episode=np.array([[0, 0], [1, 1], [0, 2], [1, 0]], np.int32),
        task_ids=np.zeros(n, np.int32),
        inputs=PolicyInputs(
            np.zeros((t_len + 1, n, 1), np.float32), zeros[..., None], zeros, zeros
        ),
    )


@pytest.mark.parametrize("bootstrap", [True, False])
def test_linear_baseline_advantages_over_trials_by_hand(bootstrap: bool) -> None:
    """RL2's paths (whole trials, time within the trial): NumPy ridge fit of the baseline on the
    discounted returns, bootstrapping at the truncated trial end, and GAE written as loops."""
    traj = _two_slot_trajectories()
    t_len, n = traj.valid.shape
    path_end = traj.trial_end
    t_path = np.broadcast_to(np.arange(t_len)[:, None], (t_len, n))
    groups = np.zeros(n, np.int64)
    out = linear_baseline_advantages(
        traj, path_end, t_path, groups, GAMMA, LAM, bootstrap, normalize=False
    )
    # returns per trial, by hand
    ret = np.zeros((t_len, n))
    for c in range(n):
        acc = 0.0
        for t in reversed(range(t_len)):
            if not traj.valid[t, c]:
                continue
            acc = traj.rewards[t, c] + (0.0 if path_end[t, c] else GAMMA * acc)
            ret[t, c] = acc
    w = baseline.fit_per_group(traj.obs, t_path, ret.astype(np.float32), traj.valid, groups)[0]
    values = np.array(
        [
            [baseline.features(traj.obs[t, c][None], np.array([t]))[0] @ w for c in range(n)]
            for t in range(t_len)
        ]
    )
    np.testing.assert_allclose(out.values, values, rtol=1e-5, atol=1e-6)
    adv = np.zeros((t_len, n))
    for c in range(n):
        nxt = 0.0
        for t in reversed(range(t_len)):
            if not traj.valid[t, c]:
                continue
            if path_end[t, c]:
                terminal = traj.terminated[t, c] or not bootstrap
                v_next = 0.0
                if not terminal:  # truncated: the baseline's value of the final observation
                    v_next = baseline.features(traj.final_obs[t, c][None], np.array([t + 1]))[0] @ w
                delta = traj.rewards[t, c] + GAMMA * v_next - values[t, c]
                nxt = delta
            else:
                delta = traj.rewards[t, c] + GAMMA * values[t + 1, c] - values[t, c]
                nxt = delta + GAMMA * LAM * nxt
            adv[t, c] = nxt
    np.testing.assert_allclose(out.advantages, adv, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.targets, (adv + values) * traj.valid, rtol=1e-4, atol=1e-5)
    # the bootstrapped value at the truncation is not zero, so the flag changes the result
    if not bootstrap:
        other = linear_baseline_advantages(traj, path_end, t_path, groups, GAMMA, LAM, True, False)
        assert abs(other.advantages[3, 0] - out.advantages[3, 0]) > 1e-3


def test_linear_baseline_advantages_normalise_per_group() -> None:
    traj = _two_slot_trajectories()
    groups = np.array([0, 1])
    out = linear_baseline_advantages(
        traj, traj.episode_end, traj.t_episode, groups, GAMMA, LAM, normalize=True
    )
    for g in (0, 1):
        sel = out.advantages[:, g][traj.valid[:, g]]
        assert abs(sel.mean()) < 1e-5 and abs(sel.std() - 1.0) < 1e-3
    assert np.all(out.advantages[~traj.valid] == 0.0)

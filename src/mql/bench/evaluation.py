"""Periodic evaluation: seconds per evaluation, batched against one task at a time.

`mql bench --eval` times, per preset (the paper preset of `learner_config`, its replay filled
with `fill` random transitions), one periodic evaluation (`mql.evaluate.periodic_evaluation`:
`eval_tasks` test and `eval_train_tasks` training tasks, `eval_episodes` scored episodes per
policy, MQL's adaptation of each) with `eval_batched` on and off, in alternating rounds in one
process, after one untimed evaluation of each (compilation). With `eq19_updates` below the
preset's (`--eval-updates`), the eq. 19 phase is timed on its own and the evaluation at the
preset's count is extrapolated linearly in the eq. 19 updates (each update costs the same).

Also: the share of the host's propensity fit (eq. 11, scikit-learn), the peak resident memory
added while evaluating, the largest difference of the adapted parameters between the two
schedules, and the end-to-end rate of a run with its periodic evaluations: `eval_every` steps
of meta-training at the end-to-end rate measured here (one update per collected step, as below
`small_buffer` transitions), then one evaluation.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
import numpy as np

import mql.algos.mql.agent as mql_agent
import mql.envs
from mql import config
from mql.algos.mql.agent import MQL
from mql.algos.registry import make_agent as registry_agent
from mql.bench.learner import learner_config
from mql.bench.memory import fill_random
from mql.bench.timing import _median
from mql.evaluate import periodic_evaluation
from mql.seeds import episode_seed

__all__ = ["markdown_evaluation", "measure_evaluation", "measure_pearl_evaluation"]


def _rss_bytes() -> int:
    """Resident set size of this process (Linux), 0 elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * 4096


@contextmanager
def _peak_rss(out: list[int], every_s: float = 0.02) -> Iterator[None]:
    """Append the peak resident memory above the starting one while the block runs."""
    base, peak, stop = _rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        out.append(max(0, max(peak[0], _rss_bytes()) - base))


class _PhaseTimer:
    """Seconds spent in the agent's propensity fits and in its eq. 19 updates (both schedules),
    by wrapping the agent's methods and the batched update loop for the measurement."""

    def __init__(self, agent: MQL) -> None:
        self.fit_s = self.eq19_s = 0.0
        self.agent = agent
        fit, updates = agent.propensity, agent._updates
        batched_updates = mql_agent.run_task_updates

        def timed_fit(*a: Any, **k: Any) -> Any:
            start = time.perf_counter()
            try:
                return fit(*a, **k)
            finally:
                self.fit_s += time.perf_counter() - start

        def timed_updates(state: Any, n: int, draw: Any, weight_fn: Any, *a: Any, **k: Any):
            start = time.perf_counter()
            out = updates(state, n, draw, weight_fn, *a, **k)
            jax.block_until_ready(out[0])
            if weight_fn is not None:
                self.eq19_s += time.perf_counter() - start
            return out

        def timed_batched(td3: Any, states: Any, n: int, draws: Any, weight_fns: Any, *a: Any):
            start = time.perf_counter()
            out = batched_updates(td3, states, n, draws, weight_fns, *a)
            jax.block_until_ready(out)
            if weight_fns is not None:
                self.eq19_s += time.perf_counter() - start
            return out

        agent.propensity = timed_fit  # type: ignore[method-assign]
        agent._updates = timed_updates  # type: ignore[method-assign]
        self._restore = lambda: setattr(mql_agent, "run_task_updates", batched_updates)
        mql_agent.run_task_updates = timed_batched  # type: ignore[assignment]

    def reset(self) -> None:
        self.fit_s = self.eq19_s = 0.0

    def close(self) -> None:
        self._restore()
        del self.agent.propensity, self.agent._updates  # the instance's wrappers: methods again


def _param_difference(agent: MQL) -> float:
    """Largest |difference| of the adapted parameters of two test tasks, batched vs alone."""
    env = agent.eval_env
    tasks = env.test_tasks[:2]
    seeds = [episode_seed(0, j) for j in range(len(tasks))]
    alone = [agent.adapt(env, t, s) for t, s in zip(tasks, seeds, strict=True)]
    envs = [env] + [mql.envs.make(env.family, seed=0) for _ in tasks[1:]]
    together = agent.adapt_tasks(envs, tasks, seeds)
    diff = 0.0
    for a, b in zip(alone, together, strict=True):
        for x, y in zip(
            jax.tree_util.tree_leaves((a.policy.state.actor, a.policy.state.critic)),
            jax.tree_util.tree_leaves((b.policy.state.actor, b.policy.state.critic)),
            strict=True,
        ):
            diff = max(diff, float(np.max(np.abs(np.asarray(x) - np.asarray(y)))))
    return diff


def measure_evaluation(
    env: str,
    *,
    overrides: dict[str, Any] | None = None,
    rounds: int = 1,
    eq19_updates: int | None = None,
    fill: int = 20_000,
    e2e_steps: int = 400,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The evaluation numbers of one preset (module docstring)."""
    say = log or (lambda _msg: None)
    t_start = time.perf_counter()
    preset = learner_config(env, **(overrides or {}))
    n19 = preset.eq19_updates if eq19_updates is None else min(eq19_updates, preset.eq19_updates)
    cfg = dataclasses.replace(
        preset, replay_size=max(fill, preset.batch_size, preset.eq19_batch), eq19_updates=n19
    )
    agent = MQL(cfg)
    fill_random(agent.replay, fill, agent.env.horizon)
    timer = _PhaseTimer(agent)
    seconds: dict[bool, list[float]] = {True: [], False: []}
    phases: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    memory: dict[bool, list[int]] = {True: [], False: []}
    try:
        for batched in (False, True):  # compilation, untimed
            agent.cfg.eval_batched = batched
            t0 = time.perf_counter()
            periodic_evaluation(agent, agent.eval_env, agent.cfg, 0, False)
            say(f"{env}: first evaluation (batched={batched}) {time.perf_counter() - t0:.1f}s")
        for r in range(max(1, rounds)):
            for batched in (False, True) if r % 2 == 0 else (True, False):
                agent.cfg.eval_batched = batched
                timer.reset()
                with _peak_rss(memory[batched]):
                    t0 = time.perf_counter()
                    periodic_evaluation(agent, agent.eval_env, agent.cfg, 0, False)
                    seconds[batched].append(time.perf_counter() - t0)
                phases[batched].append((timer.fit_s, timer.eq19_s))
                say(
                    f"{env}: round {r + 1}, batched={batched}: {seconds[batched][-1]:.1f}s "
                    f"(fit {timer.fit_s:.1f}s, eq. 19 {timer.eq19_s:.1f}s)"
                )
        diff = _param_difference(agent)
    finally:
        timer.close()
    # the end-to-end rate of meta-training between evaluations (one update per collected step)
    agent.run_iteration()
    steps0, t0 = agent.env_steps, time.perf_counter()
    while agent.env_steps - steps0 < e2e_steps:
        agent.run_iteration()
    e2e = (agent.env_steps - steps0) / (time.perf_counter() - t0)
    n_tasks = min(cfg.eval_tasks or len(agent.eval_env.test_tasks), len(agent.eval_env.test_tasks))
    n_tasks += min(cfg.eval_train_tasks, len(agent.eval_env.train_tasks))
    out: dict[str, Any] = {
        "env": env,
        "tasks": n_tasks,
        "eval_episodes": cfg.eval_episodes,
        "eq18_updates": cfg.eq18_updates,
        "eq19_updates_measured": n19,
        "eq19_updates_preset": preset.eq19_updates,
        "eq19_batch": cfg.eq19_batch,
        "e2e_steps_per_s": e2e,
        "eval_every": preset.eval_every,
        "max_param_difference": diff,
    }
    train_s = preset.eval_every / e2e
    for batched, name in ((False, "one"), (True, "batched")):
        measured = _median(seconds[batched])
        fit = _median([p[0] for p in phases[batched]])
        eq19 = _median([p[1] for p in phases[batched]])
        per_update = eq19 / n19 if n19 else 0.0
        full = measured + (preset.eq19_updates - n19) * per_update
        out[f"{name}_measured_s"] = measured
        out[f"{name}_fit_s"] = fit
        out[f"{name}_eq19_s"] = eq19
        out[f"{name}_preset_s"] = full
        out[f"{name}_fit_share"] = fit / full
        out[f"{name}_peak_rss_mb"] = max(memory[batched]) / 1e6
        out[f"{name}_eval_share"] = full / (full + train_s)
        out[f"{name}_e2e_steps_per_s"] = preset.eval_every / (train_s + full)
    out["speedup_measured"] = out["one_measured_s"] / out["batched_measured_s"]
    out["speedup_preset"] = out["one_preset_s"] / out["batched_preset_s"]
    out["seconds"] = time.perf_counter() - t_start
    return out


def markdown_evaluation(rows: list[dict[str, Any]]) -> str:
    """The evaluation table (one row per preset)."""
    lines = [
        "| preset | tasks x (episodes, eq. 18, eq. 19 updates at batch) | measured at eq. 19 "
        "updates | one at a time s (measured) | batched s (measured) | speedup | one at a time "
        "s (preset, extrapolated) | batched s (preset) | propensity fit share | peak MB added "
        "(one / batched) | max param diff | end-to-end steps/s: no eval / one / batched "
        "| eval share of wall time: one / batched |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {r['tasks']} x ({r['eval_episodes']}, {r['eq18_updates']}, "
            f"{r['eq19_updates_preset']} at {r['eq19_batch']}) | {r['eq19_updates_measured']} "
            f"| {r['one_measured_s']:.1f} | {r['batched_measured_s']:.1f} "
            f"| {r['speedup_measured']:.2f}x | {r['one_preset_s']:.0f} "
            f"| {r['batched_preset_s']:.0f} | {r['batched_fit_share']:.1%} "
            f"| {r['one_peak_rss_mb']:.0f} / {r['batched_peak_rss_mb']:.0f} "
            f"| {r['max_param_difference']:.1e} | {r['e2e_steps_per_s']:.1f} / "
            f"{r['one_e2e_steps_per_s']:.1f} / {r['batched_e2e_steps_per_s']:.1f} "
            f"| {r['one_eval_share']:.0%} / {r['batched_eval_share']:.0%} |"
        )
    return "\n".join(lines)


def measure_pearl_evaluation(env: str, rounds: int = 2) -> dict[str, Any]:
    """Seconds per periodic evaluation of PEARL (its preset for `env`; acting and posterior
    inference only, so an untrained agent times the same), batched against one task at a time
    in alternating rounds after one untimed evaluation of each."""
    agent = registry_agent(config.resolve(env, "pearl"))
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for batched in (False, True):
        agent.cfg.eval_batched = batched
        periodic_evaluation(agent, agent.eval_env, agent.cfg, 0, False)
    for r in range(max(1, rounds)):
        for batched in (False, True) if r % 2 == 0 else (True, False):
            agent.cfg.eval_batched = batched
            t0 = time.perf_counter()
            periodic_evaluation(agent, agent.eval_env, agent.cfg, 0, False)
            seconds[batched].append(time.perf_counter() - t0)
    one, many = _median(seconds[False]), _median(seconds[True])
    return {"env": env, "one_s": one, "batched_s": many, "speedup": one / many}

"""Where the time of one MQL update goes: XLA kernels grouped by kind, from a JAX profiler trace.

    python benchmarks/profile_update.py [--env cheetah-vel] [--calls 2] [--top 12]
                                        [--gru-kernel xla|native|auto]

Builds the paper preset's learner (as `mql bench` does), runs `--calls` compiled calls of
`update_many` (`updates_per_call` updates each) under `jax.profiler.trace`, and sums the
*exclusive* time of every XLA kernel (thunk) over the CPU worker threads. Kernels are grouped by
kind (the HLO name without its number: `ynn_fusion` = a dot run by YNNPACK, `*_fusion` = fused
elementwise work, `while` = loop overhead, ...) and the largest single dots are listed with
their output shapes. Times are thread time per update: with two worker threads they add up to
more than the wall time. The profiler itself slows the run by 10-30%; use the shares, not the
absolute numbers.
"""

from __future__ import annotations

import argparse
import collections
import re
import tempfile
import time
from pathlib import Path

import jax

from mql.bench.learner import prepared_learner


def exclusive_times(xspace: Path) -> tuple[collections.Counter, collections.Counter]:
    """Exclusive nanoseconds and call counts per event name on the XLA worker threads."""
    data = jax.profiler.ProfileData.from_file(str(xspace))
    excl: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            if "XLAEigen" not in line.name:  # the CPU client's worker threads
                continue
            events = sorted(
                ((ev.start_ns, ev.duration_ns, ev.name) for ev in line.events),
                key=lambda e: (e[0], -e[1]),
            )
            stack: list[tuple[float, float, str]] = []
            for start, dur, name in events:
                while stack and stack[-1][0] + stack[-1][1] <= start:
                    stack.pop()
                if stack:
                    excl[stack[-1][2]] -= dur  # time inside a child is not the parent's
                excl[name] += dur
                calls[name] += 1
                stack.append((start, dur, name))
    return excl, calls


def output_shapes(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> output shape, from the compiled module's text."""
    shapes = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*%?(\S+) = (\S+) \w[\w-]*\(", line)
        if m:
            shapes[m.group(1)] = m.group(2)
    return shapes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="cheetah-vel")
    p.add_argument("--calls", type=int, default=2)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--gru-kernel", default="xla", choices=("xla", "native", "auto"))
    ns = p.parse_args(argv)

    agent, dev = prepared_learner(ns.env, replay_size=20_000, gru_kernel=ns.gru_kernel)
    cfg, td3, state = agent.cfg, agent.td3, agent.state
    state, _ = td3.update_many(state, *dev)
    jax.block_until_ready(state)
    n_updates = ns.calls * cfg.updates_per_call

    start = time.perf_counter()
    for _ in range(ns.calls):
        state, _ = td3.update_many(state, *dev)
    jax.block_until_ready(state)
    wall_ms = (time.perf_counter() - start) / n_updates * 1e3

    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            for _ in range(ns.calls):
                state, _ = td3.update_many(state, *dev)
            jax.block_until_ready(state)
        xspace = next(Path(tmp).rglob("*.xplane.pb"))
        excl, calls = exclusive_times(xspace)
    shapes = output_shapes(td3.update_many.lower(state, *dev).compile().as_text())

    per_update = {k: v / 1e6 / n_updates for k, v in excl.items()}
    kinds: collections.Counter = collections.Counter()
    for name, ms in per_update.items():
        kinds[re.sub(r"\.\d+$", "", name)] += ms
    total = sum(v for v in kinds.values() if v > 0)
    print(f"{ns.env}: {wall_ms:.2f} ms per update without the profiler; "
          f"{total:.2f} ms of worker-thread time per update under it")  # fmt: skip
    print("\nby kind (exclusive thread time per update):")
    for kind, ms in kinds.most_common(ns.top):
        print(f"  {ms:7.3f} ms  {ms / total:5.1%}  {kind}")
    print("\nlargest dots (YNNPACK or Eigen):")
    dots = [(v, k) for k, v in per_update.items() if k.startswith(("ynn_fusion", "dot"))]
    for ms, name in sorted(dots, reverse=True)[: ns.top]:
        per_call = ms * n_updates / max(calls[name], 1) * 1e3
        print(f"  {ms:7.3f} ms/update  {calls[name] / n_updates:5.1f} calls/update  "
              f"{per_call:7.1f} µs/call  {shapes.get(name, '?')}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

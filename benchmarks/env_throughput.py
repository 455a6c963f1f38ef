"""Environment throughput: steps per second of every task family under random actions.

    python benchmarks/env_throughput.py [--steps 5000] [--repeats 3] [--seed 0]
                                        [--families a b ...] [--write]

Each family is built with `mql.envs.make(name, seed)`; the timed loop steps uniformly random
actions (seeded action space) and resets whenever an episode terminates or is truncated, so
resets are included in the rate. One untimed warm-up episode runs first; the reported rate is
the median over `--repeats` timed runs. With `--write`, the markdown table replaces the
"Environment throughput" section of docs/performance.md (between the
`<!-- env-throughput:start -->` / `<!-- env-throughput:end -->` markers).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import gymnasium
import mujoco
import numpy as np

import mql.envs
from mql.bench.docsection import write_section
from mql.bench.machine import cpu_name

DOC = Path("docs") / "performance.md"
START = "<!-- env-throughput:start -->"
END = "<!-- env-throughput:end -->"


def measure(name: str, steps: int, seed: int, repeats: int = 3) -> dict[str, object]:
    """Median steps/s of family `name` over `repeats` runs of `steps` random-action steps."""
    env = mql.envs.make(name, seed=seed)
    env.action_space.seed(seed)
    env.set_task(env.train_tasks[0])
    env.reset(seed=seed)
    for _ in range(getattr(env, "horizon", 200)):  # warm-up, untimed
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            break
    rates, episodes = [], 0
    for _ in range(repeats):
        env.reset(seed=seed)
        start = time.perf_counter()
        for _ in range(steps):
            _, _, term, trunc, _ = env.step(env.action_space.sample())
            if term or trunc:
                episodes += 1
                env.reset()
        rates.append(steps / (time.perf_counter() - start))
    row = {
        "family": name,
        "obs": int(env.observation_space.shape[0]),
        "act": int(env.action_space.shape[0]),
        "steps_per_s": float(np.median(rates)),
        "mean_episode": steps * repeats / max(episodes, 1),
    }
    env.close()
    return row


def machine() -> str:
    cpu = cpu_name()
    return (
        f"{platform.system()} {platform.release()} {platform.machine()}, {cpu}, "
        f"{os.cpu_count()} logical CPUs; Python {platform.python_version()}, "
        f"mujoco {mujoco.__version__}, gymnasium {gymnasium.__version__}, numpy {np.__version__}"
    )


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| family | obs | act | steps/s | mean episode length |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['obs']} | {r['act']} | {r['steps_per_s']:,.0f} "
            f"| {r['mean_episode']:.1f} |"
        )
    return "\n".join(lines)


def section(table: str, command: str, steps: int, repeats: int) -> str:
    return "\n".join(
        [
            START,
            f"Single process, one environment per family, uniformly random actions; median of "
            f"{repeats} timed runs of {steps} steps (resets on termination/truncation inside the "
            "timed loop).",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {machine()}",
            "",
            table,
            END,
        ]
    )


def write_doc(text: str, path: Path) -> None:
    """Replace this benchmark's marked section of `path` (or append it)."""
    write_section(path, START, END, "Environment throughput", text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5000, help="timed steps per family")
    parser.add_argument("--seed", type=int, default=0, help="task, reset and action seed")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the median is shown")
    parser.add_argument(
        "--families", nargs="+", default=None, help="families to measure (default: all)"
    )
    parser.add_argument(
        "--write",
        nargs="?",
        type=Path,
        const=DOC,
        default=None,
        metavar="DOC",
        help=f"replace this benchmark's section of DOC (default: {DOC})",
    )
    args = parser.parse_args(argv)
    families = args.families or mql.envs.names()
    rows = []
    for name in families:
        row = measure(name, args.steps, args.seed, args.repeats)
        print(f"{name}: {row['steps_per_s']:,.0f} steps/s", file=sys.stderr)
        rows.append(row)
    table = markdown(rows)
    print(table)
    if args.write is not None:
        argv_shown = sys.argv[1:] if argv is None else argv
        command = shlex.join(["python", "benchmarks/env_throughput.py", *argv_shown])
        write_doc(section(table, command, args.steps, args.repeats), args.write)
        print(f"wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()

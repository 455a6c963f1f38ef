"""`mql bench`: the learner benchmark's command line (see `mql.bench`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
from pathlib import Path
from typing import Any

import mql.bench
from mql.algos.mql.config import MQLConfig
from mql.bench.experiments import experiments
from mql.bench.learner import measure_preset
from mql.bench.machine import machine_info, machine_line
from mql.bench.report import _targets, markdown, markdown_experiments, section, write_doc

PRESETS: tuple[str, ...] = ("cheetah-vel", "ant-goal", "humanoid-dir")
DOC = Path("docs") / "performance.md"


def _parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--override wants KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    field_type = {f.name: f.type for f in dataclasses.fields(MQLConfig)}.get(key)
    if field_type is None:
        raise argparse.ArgumentTypeError(f"unknown config field {key!r}")
    if "tuple" in str(field_type):
        return key, tuple(int(v) for v in value.split(",") if v)
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, value


def _finite_positive(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mql bench", description=(mql.bench.__doc__ or "").strip().splitlines()[0]
    )
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), help="environments")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    parser.add_argument("--updates", type=int, default=200, help="timed updates per round")
    parser.add_argument(
        "--e2e-steps", type=int, default=200, help="end-to-end environment steps per round"
    )
    parser.add_argument("--fill", type=int, default=100_000, help="transitions for the memory")
    parser.add_argument(
        "--quick", action="store_true", help="1 round, 100 updates, 200 steps, 20k fill"
    )
    parser.add_argument(
        "--override",
        action="append",
        type=_parse_override,
        default=[],
        metavar="KEY=VALUE",
        help="config field override, e.g. batch_size=512 or hidden=64,64 (repeatable)",
    )
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="also A/B variants of the update (donation, XLA options, context modes) on "
        "the first preset",
    )
    parser.add_argument(
        "--sampler",
        action="store_true",
        help="measure the on-policy sampler instead (mql.bench.sampler): steps/s against raw "
        "single-thread mj_step, inference share, and an RL2 iteration's parts",
    )
    parser.add_argument(
        "--slots", type=int, default=100, help="--sampler: environments stepped together"
    )
    parser.add_argument(
        "--meta-gradient",
        action="store_true",
        help="time MAML-TRPO's and ProMP's iterations part by part instead "
        "(mql.bench.meta_gradient): sampling, advantages, inner steps, outer step, medians of "
        "--rounds iterations after one that compiles; the outer step's matmul FLOPs against "
        "the ceiling of the policy's product shape",
    )
    parser.add_argument(
        "--eval",
        action="store_true",
        help="time one periodic evaluation instead (mql.bench.evaluation): all tasks "
        "batched against one task at a time, and the run's rate with its evaluations",
    )
    parser.add_argument(
        "--eval-updates",
        type=int,
        default=None,
        metavar="N",
        help="--eval: eq. 19 updates per task measured (default: the preset's); the preset's "
        "count is extrapolated from the timed eq. 19 phase",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument(
        "--write",
        nargs="?",
        type=Path,
        const=DOC,
        default=None,
        metavar="DOC",
        help=f"replace the benchmark's section of DOC (default: {DOC})",
    )
    parser.add_argument("--verbose", action="store_true", help="progress on stderr")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.updates, args.e2e_steps = 1, 100, 200
        args.fill = min(args.fill, 20_000)
    overrides = dict(args.override)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.verbose else None

    info = machine_info()
    print(f"Machine: {machine_line(info)}", flush=True)
    if args.sampler:
        return _sampler_main(args, info, argv)
    if args.meta_gradient:
        return _meta_gradient_main(args, info, argv)
    if args.eval:
        return _eval_main(args, info, argv, overrides, log)
    rows = []
    for env in args.presets:
        row = measure_preset(
            env,
            overrides=overrides,
            rounds=args.rounds,
            updates=args.updates,
            e2e_steps=args.e2e_steps,
            fill=args.fill,
            log=log,
        )
        rows.append(row)
        print(
            f"{env}: {row['updates_per_s']:.1f} updates/s, utilisation "
            f"{row['utilisation']:.0%} of this preset's best peak, end-to-end "
            f"{row['e2e_steps_per_s']:.1f} steps/s "
            f"({row['e2e_ratio']:.0%} of the update rate) [{row['seconds']:.0f}s]",
            flush=True,
        )
    # one machine, one peak: the best matmul measurement of the whole run
    machine_peak = max(rd["peak_gflops"] for row in rows for rd in row["rounds"])
    for row in rows:
        row["preset_peak_gflops"] = row["peak_gflops"]
        row["peak_gflops"] = machine_peak
        row["utilisation"] = row["flops_per_update"] * row["updates_per_s"] / (machine_peak * 1e9)
    exp = None
    if args.experiments:
        exp = experiments(
            args.presets[0],
            overrides=overrides,
            rounds=max(3, 2 * args.rounds + 1),
            updates=args.updates,
            log=log,
        )
    print()
    print(markdown(rows))
    targets = _targets(rows)
    if targets:
        print("\nTargets:\n" + "\n".join(targets))
    if exp:
        print("\n" + markdown_experiments(exp, args.presets[0]))
    if args.json is not None:
        args.json.write_text(
            json.dumps({"machine": info, "presets": rows, "experiments": exp}, indent=2)
        )
    if args.write is not None:
        write_doc(section(rows, info, _recorded_command(argv), args, exp), args.write)
    bad = [
        (r["env"], key)
        for r in rows
        for key in ("peak_gflops", "updates_per_s", "flops_per_update", "e2e_steps_per_s")
        if not _finite_positive(r[key])
    ]
    if bad:
        print(f"non-positive or non-finite measurements: {bad}", file=sys.stderr)
        return 1
    return 0


def _recorded_command(argv: list[str] | None) -> str:
    """The command line as recorded in the doc (output-only flags do not change the numbers:
    left out)."""
    shown, skip = [], False
    for a in argv if argv is not None else sys.argv[1:]:
        if skip or a == "--verbose":
            skip = False
            continue
        if a == "--json":
            skip = True
            continue
        if not a.startswith("--json="):
            shown.append(a)
    return ("mql bench " + " ".join(shlex.quote(a) for a in shown)).strip()


def _emit_section(
    args: argparse.Namespace,
    argv: list[str] | None,
    info: dict[str, Any],
    key: str,
    rows: list[dict[str, Any]],
    table: str,
    marker: str,
    title: str,
) -> None:
    """Print a benchmark's table; with --json write its rows under `key`; with --write replace
    its section (between `<!-- marker:start/end -->`) of the document, headed `title`."""
    from mql.bench.docsection import write_section

    print("\n" + table)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, key: rows}, indent=2))
    if args.write is not None:
        start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
        text = (
            f"{start}\nMeasured by `{_recorded_command(argv)}` on {machine_line(info)}.\n\n"
            f"{table}\n{end}"
        )
        write_section(args.write, start, end, title, text)


def _sampler_main(args: argparse.Namespace, info: dict[str, Any], argv: list[str] | None) -> int:
    from mql.bench.sampler import iteration_shares, markdown_sampler, measure_sampler

    rows = []
    for env in args.presets:
        row = measure_sampler(env, n_envs=args.slots, rounds=args.rounds)
        row["iteration"] = None if args.quick else iteration_shares(env)
        rows.append(row)
        print(
            f"{env}: raw {row['raw_steps_per_s']:,.0f}/s, sampler ({row['layout']}) "
            f"{row['sampler_steps_per_s']:,.0f}/s = {row['sampler_vs_raw']:.2f}x raw, "
            f"inference {row['sampler_inference_share']:.0%}",
            flush=True,
        )
    table = markdown_sampler(rows)
    _emit_section(args, argv, info, "sampler", rows, table, "sampler", "On-policy sampler")
    bad = [r["env"] for r in rows if not _finite_positive(r["sampler_steps_per_s"])]
    return 1 if bad else 0


def _eval_main(
    args: argparse.Namespace,
    info: dict[str, Any],
    argv: list[str] | None,
    overrides: dict[str, Any],
    log: Any,
) -> int:
    from mql.bench.evaluation import markdown_evaluation, measure_evaluation

    rows = []
    for env in args.presets:
        row = measure_evaluation(
            env,
            overrides=overrides,
            rounds=args.rounds,
            eq19_updates=args.eval_updates,
            fill=args.fill,
            e2e_steps=args.e2e_steps,
            log=log,
        )
        rows.append(row)
        print(
            f"{env}: one evaluation {row['one_measured_s']:.1f}s one task at a time, "
            f"{row['batched_measured_s']:.1f}s batched ({row['speedup_measured']:.2f}x)",
            flush=True,
        )
    table = markdown_evaluation(rows)
    _emit_section(args, argv, info, "evaluation", rows, table, "evaluation", "Evaluation")
    bad = [r["env"] for r in rows if not _finite_positive(r["batched_measured_s"])]
    return 1 if bad else 0


META_GRADIENT_PRESETS: tuple[str, ...] = ("cheetah-dir", "ant-goal")


def _meta_gradient_main(
    args: argparse.Namespace, info: dict[str, Any], argv: list[str] | None
) -> int:
    from mql.bench.meta_gradient import (
        iteration_parts,
        markdown_meta_gradient,
        shape_ceiling,
        with_ceiling,
    )

    envs = args.presets if args.presets != list(PRESETS) else list(META_GRADIENT_PRESETS)
    rows = []
    runs = [(env, algo, {}) for env in envs for algo in ("maml-trpo", "promp")]
    runs.insert(1, (envs[0], "maml-trpo", {"hvp_tasks": 8}))
    for env, algo, overrides in runs:
        row = iteration_parts(env, algo, iterations=args.rounds, overrides=overrides)
        rows.append(row)
        print(
            f"{env} {algo} ({row['settings']}): {row['iteration_s']:.1f} s an iteration, "
            f"outer step {row['outer_share']:.0%}",
            flush=True,
        )
    # the ceilings after every iteration, on the same machine state, best of 3 each
    shapes = sorted({(r["task_states"], r["width"]) for r in rows})
    ceilings = {shape: shape_ceiling(*shape) for shape in shapes}
    rows = [with_ceiling(r, ceilings[(r["task_states"], r["width"])]) for r in rows]
    table = markdown_meta_gradient(rows)
    _emit_section(
        args,
        argv,
        info,
        "meta_gradient",
        rows,
        table,
        "meta-gradient",
        "MAML-TRPO and ProMP iterations",
    )
    bad = [r["env"] for r in rows if not _finite_positive(r["iteration_s"])]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

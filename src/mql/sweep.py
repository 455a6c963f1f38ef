"""`mql sweep`: a grid of `mql train` runs (envs x algos x config values x seeds) on Ray.

    mql sweep --envs cheetah-vel ant-dir --algos mql td3-context --seeds 0 1 2 \\
        --set lr=1e-3,3e-4 --set eq19_updates=100 --root runs --num-cpus 8

Every trial is `python -m mql.cli train ... --run-dir ROOT/NAME --quiet` in a child process of
a Ray task that reserves one CPU, so a trial is exactly what `mql train` does (same config
resolution, run directory, checks and exit status) and gets a fresh interpreter: the compiled
JAX functions, MuJoCo state and memory of one trial never leak into the next one that a reused
Ray worker runs, a crash (segfault, out of memory) fails that trial alone, and cancelling the
task (Ctrl-C) kills the child process. Its output goes to ROOT/logs/NAME.log.

NAME is `ENV__ALGO[__preset=P][__key=value...]__seedS` with the `--set` keys given several
values, so the trials of a sweep never share a directory; without them it is `mql train`'s
default name. Everything is checked before Ray starts: env, algo and preset names, `--set` keys
and values (typed and range-checked by the config), so a typo fails at once. Trials whose run
directory already exists are skipped (and reported) unless `--overwrite`; one that exists with
a different config (say another single `--set` value) is an error, never silently reused.
With `--address` the run directories are written by the cluster's nodes: ROOT must then be a
path on a filesystem they all share.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import re
import sys
import time
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mql import runs
from mql.algos import registry
from mql.algos.config_base import BaseConfig
from mql.errors import UsageError
from mql.train_args import budget_plan

RAY_MISSING = "mql sweep needs Ray: pip install -e '.[ray]'"
# Set by the dedicated flags, not by --set.
_RESERVED = {"env", "algo", "preset", "seed", "total_steps"}


@dataclass
class Trial:
    env: str
    algo: str
    seed: int
    overrides: dict[str, Any]
    run_dir: Path
    argv: list[str]
    config: BaseConfig

    @property
    def name(self) -> str:
        return self.run_dir.name


def parse_set(items: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`--set key=v1,v2` items as (field name, value texts); typed per algo by `typed_sets`."""
    out: list[tuple[str, list[str]]] = []
    seen = set()
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        values = [v.strip() for v in text.split(",")]
        if not sep or not key or not all(values):
            raise ValueError(f"--set {item!r}: expected key=value[,value...]")
        if key in _RESERVED:
            flag = {"env": "--envs", "algo": "--algos", "seed": "--seeds"}.get(
                key, "--" + key.replace("_", "-")
            )
            raise ValueError(f"--set {key}: use {flag} instead")
        if key in seen:
            raise ValueError(f"--set {key} given twice; list its values once: {key}=v1,v2")
        seen.add(key)
        out.append((key, values))
    return out


def typed_sets(
    config_class: type, sets: Sequence[tuple[str, list[str]]], algo: str
) -> list[tuple[str, list[Any]]]:
    """The `--set` values as values of `config_class`'s fields (unknown keys raise)."""
    names = [f.name for f in dataclasses.fields(config_class)]
    out = []
    for key, texts in sets:
        if key not in names:
            raise ValueError(
                f"--set {key}: unknown config field {key!r} (algo {algo}); known: "
                + ", ".join(k for k in names if k not in _RESERVED)
            )
        out.append((key, [convert(config_class, key, t) for t in texts]))
    return out


def convert(config_class: type, key: str, text: str) -> Any:
    """`text` as a value of field `key` of `config_class` (its annotation decides the type)."""
    hint = typing.get_type_hints(config_class)[key]
    try:
        return _convert(hint, text)
    except ValueError as e:
        raise ValueError(f"--set {key}={text}: {e}") from None


def _convert(hint: Any, text: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() == "none" and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], text)
    if origin is typing.Literal:
        if text not in args:
            raise ValueError(f"expected one of {', '.join(map(str, args))}")
        return text
    if origin is tuple:
        parts = [p for p in re.split(r"[:x ]", text) if p]
        if not parts:
            raise ValueError("expected numbers separated by ':' (e.g. 64:64)")
        return tuple(_convert(args[0], p) for p in parts)
    if hint is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError("expected true or false")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)  # 1e5
        except ValueError:
            value = math.nan
        if not value.is_integer():
            raise ValueError("expected an integer")
        return int(value)
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("expected a number") from None
    if hint is str:
        return text
    raise ValueError(f"cannot parse a value of type {hint}")


def _flag_value(value: Any) -> list[str]:
    if value is None:
        return ["None"]
    if isinstance(value, tuple):
        return [str(v) for v in value]
    if isinstance(value, float):
        return [repr(value)]
    return [str(value)]


def _name_value(value: Any) -> str:
    if isinstance(value, tuple):
        text = "-".join(str(v) for v in value)
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def run_name(env: str, algo: str, preset: str, overrides: dict[str, Any], seed: int) -> str:
    parts = [env, algo]
    if preset != "paper":
        parts.append(f"preset={preset}")
    parts += [f"{k}={_name_value(v)}" for k, v in overrides.items()]
    parts.append(f"seed{seed}")
    return "__".join(parts)


def build_grid(
    envs: Sequence[str],
    algos: Sequence[str],
    seeds: Sequence[int],
    sets: Sequence[tuple[str, list[str]]],
    preset: str,
    root: Path,
    total_steps: int | None,
    overwrite: bool,
    allow_warmup_only: bool = False,
) -> list[Trial]:
    """Every trial, its `mql train` arguments and its resolved (validated) config."""
    swept = {k for k, vals in sets if len(vals) > 1}
    trials: list[Trial] = []
    for env, algo in itertools.product(envs, algos):
        try:
            config_class = type(registry.resolve(env, algo, preset))
        except (ValueError, TypeError) as e:
            raise ValueError(f"{env} {algo}: {e}") from None
        typed = typed_sets(config_class, sets, algo)
        for combo in itertools.product(*(vals for _, vals in typed)):
            overrides = dict(zip([k for k, _ in typed], combo, strict=True))
            extra = dict(overrides)
            if total_steps is not None:
                extra["total_steps"] = total_steps
            named = {k: v for k, v in overrides.items() if k in swept}
            for seed in seeds:
                try:
                    cfg = registry.resolve(env, algo, preset, seed=seed, **extra)
                except (ValueError, TypeError) as e:
                    what = f"{env} {algo}" + "".join(f" {k}={v}" for k, v in overrides.items())
                    raise ValueError(f"{what}: {e}") from None
                run_dir = root / run_name(env, algo, preset, named, seed)
                argv = ["--env", env, "--algo", algo, "--preset", preset, "--seed", str(seed)]
                for k, v in extra.items():
                    argv += [f"--{k.replace('_', '-')}", *_flag_value(v)]
                argv += ["--run-dir", str(run_dir.absolute()), "--quiet"]
                if overwrite:
                    argv.append("--overwrite")
                if allow_warmup_only:
                    argv.append("--allow-warmup-only")
                try:
                    budget_plan(cfg, allow_warmup_only)
                except UsageError as e:
                    raise ValueError(f"{env} {algo}: {e}") from None
                trials.append(Trial(env, algo, seed, overrides, run_dir, argv, cfg))
    names = [t.run_dir for t in trials]
    if len(set(names)) != len(names):
        raise ValueError("the grid has duplicate trials (repeated envs, algos, seeds or values)")
    return trials


def check_argv(trials: Sequence[Trial]) -> None:
    """Parse each trial's command line as `mql train` does and compare with its config."""
    from mql.train_args import parse_train_args

    for t in trials:
        base = registry.resolve(t.env, t.algo, t.config.preset)
        parsed = parse_train_args(t.argv, base)
        if parsed.config != t.config:
            diff = [
                f"{f.name}: {getattr(parsed.config, f.name)!r} != {getattr(t.config, f.name)!r}"
                for f in dataclasses.fields(t.config)
                if getattr(parsed.config, f.name) != getattr(t.config, f.name)
            ]
            raise ValueError(f"internal: {t.name} command line parses differently ({diff})")


def _run_trial(argv: list[str], run_dir: str, log_path: str) -> dict[str, Any]:
    """The body of a Ray task: `mql train ARGV` in a child process; its outcome as a dict."""
    import os
    import socket
    import subprocess
    import sys as _sys

    start = time.time()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [_sys.executable, "-m", "mql.cli", "train", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            check=False,
        )
    out: dict[str, Any] = {
        "returncode": proc.returncode,
        "seconds": time.time() - start,
        "node": socket.gethostname(),
    }
    final = Path(run_dir) / "final_eval.json"
    if proc.returncode == 0 and final.is_file():
        out["final"] = json.loads(final.read_text())
    else:
        lines = Path(log_path).read_text(errors="replace").strip().splitlines()
        out["error"] = lines[-1] if lines else f"exit status {proc.returncode}"
    return out


def check_existing(trial: Trial) -> int:
    """Refuse an existing run directory made with another config; return its total_steps."""
    try:
        stored = runs.read_config(trial.run_dir)
    except runs.RunDirError as e:
        raise ValueError(f"{trial.run_dir} exists and {e}; use another --root") from None
    old, new = registry.to_dict(stored), registry.to_dict(trial.config)
    diff = [k for k in new if k != "total_steps" and old.get(k) != new[k]]
    if diff:
        shown = ", ".join(f"{k}={old.get(k)!r} (sweep: {new[k]!r})" for k in diff[:3])
        raise ValueError(
            f"{trial.run_dir} exists with another config: {shown}; "
            "use another --root, or --overwrite to replace it"
        )
    return stored.total_steps


def _final_of(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "final_eval.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _fmt_return(final: dict[str, Any] | None, key: str) -> str:
    if not final:
        return "-"
    v = final.get("summary", {}).get(key)
    return "-" if v is None else f"{v:.2f}"


def summary_table(trials: Sequence[Trial], results: dict[str, dict[str, Any]]) -> str:
    header = ["run dir", "status", "env steps", "zero-shot", "adapted", "minutes"]
    rows = []
    for t in trials:
        res = results.get(t.name, {})
        final = res.get("final")
        steps = "-" if not final else str(final.get("env_steps", "-"))
        mins = f"{res['seconds'] / 60:.1f}" if "seconds" in res else "-"
        rows.append(
            [
                str(t.run_dir),
                res.get("status", "not run"),
                steps,
                _fmt_return(final, "test/zero_shot_return"),
                _fmt_return(final, "test/adapted_return"),
                mins,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ValueError(RAY_MISSING) from None
    return ray


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="mql sweep",
        description="Run a grid of `mql train` trials (envs x algos x --set values x seeds) "
        "on Ray, one CPU per trial.",
    )
    p.add_argument("--envs", nargs="+", required=True, metavar="ENV")
    p.add_argument("--algos", nargs="+", default=["mql"], metavar="ALGO", help="(default: mql)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED", help="(default: 0)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=V1[,V2...]",
        dest="sets",
        help="config values to sweep (any `mql train` config field; repeatable; tuples as 64:64)",
    )
    p.add_argument("--preset", default="paper", help="(default: paper)")
    p.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="environment steps per trial (default: the preset's)",
    )
    p.add_argument(
        "--root",
        type=Path,
        default=Path("runs"),
        help="folder of the run directories (default: runs)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join (e.g. auto or HOST:PORT); default: a local Ray",
    )
    p.add_argument(
        "--num-cpus",
        type=int,
        default=None,
        help="CPUs of the local Ray, i.e. trials at a time (default: all cores)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing run directories instead of skipping them",
    )
    p.add_argument(
        "--allow-warmup-only",
        action="store_true",
        help="allow budgets that end inside the warm-up (trials then evaluate untrained networks)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the trials and their `mql train` commands; run nothing",
    )
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))

    if ns.num_cpus is not None and ns.num_cpus <= 0:
        raise ValueError(f"--num-cpus must be positive, got {ns.num_cpus}")
    if ns.num_cpus is not None and ns.address is not None:
        raise ValueError("--num-cpus is for a local Ray; a cluster (--address) has its own")
    if ns.total_steps is not None and ns.total_steps <= 0:
        raise ValueError(f"--total-steps must be positive, got {ns.total_steps}")
    for name in ("envs", "algos", "seeds"):
        values = getattr(ns, name)
        if len(set(values)) != len(values):
            raise ValueError(f"--{name} lists a value twice: {' '.join(map(str, values))}")
    sets = parse_set(ns.sets)
    trials = build_grid(
        ns.envs,
        ns.algos,
        ns.seeds,
        sets,
        ns.preset,
        ns.root,
        ns.total_steps,
        ns.overwrite,
        ns.allow_warmup_only,
    )
    check_argv(trials)
    if ns.dry_run:
        for t in trials:
            print("mql train " + " ".join(t.argv))
        return 0

    results: dict[str, dict[str, Any]] = {}
    todo = []
    for t in trials:
        if t.run_dir.exists() and any(t.run_dir.iterdir()) and not ns.overwrite:
            steps = check_existing(t)
            results[t.name] = {"status": "skipped (exists)", "final": _final_of(t.run_dir)}
            note = f"note: {t.run_dir} exists; skipped (--overwrite to replace it)"
            if steps != t.config.total_steps:
                note += f"; it was made for {steps} steps (`mql train --resume` continues it)"
            print(note, file=sys.stderr)
        else:
            todo.append(t)
    ray = _import_ray() if todo else None
    print(
        f"sweep: {len(trials)} trials, {len(todo)} to run, {len(trials) - len(todo)} skipped",
        file=sys.stderr,
    )
    failed = _run_on_ray(ray, ns, todo, results) if todo else 0

    print(summary_table(trials, results))
    if failed:
        print(
            f"mql sweep: {failed} of {len(todo)} trials failed; their logs are in "
            f"{ns.root / 'logs'}",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_on_ray(
    ray: Any, ns: argparse.Namespace, todo: list[Trial], results: dict[str, Any]
) -> int:
    import logging

    init: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if ns.address is not None:
        init["address"] = ns.address
    else:
        init.update(num_cpus=ns.num_cpus, include_dashboard=False)
    ray.init(**init)
    pending: dict[Any, Trial] = {}
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_run_trial)
        for t in todo:
            log_path = ns.root.absolute() / "logs" / f"{t.name}.log"
            ref = task.remote(t.argv, str(t.run_dir.absolute()), str(log_path))
            pending[ref] = t
        total, done, failed = len(pending), 0, 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                t = pending.pop(ref)
                done += 1
                try:
                    res = ray.get(ref)
                except Exception as e:  # the task itself died (worker crash, node lost)
                    res = {"returncode": None, "error": f"{type(e).__name__}: {e}".splitlines()[0]}
                ok = res.get("returncode") == 0 and "final" in res
                res["status"] = "ok" if ok else "failed"
                results[t.name] = res
                failed += not ok
                msg = f"[{done}/{total}] {t.name}: {res['status']}"
                if ok:
                    summ = res["final"].get("summary", {})
                    msg += f", test zero-shot {summ.get('test/zero_shot_return', float('nan')):.2f}"
                    if "test/adapted_return" in summ:
                        msg += f", adapted {summ['test/adapted_return']:.2f}"
                else:
                    msg += f" ({res.get('error', '')})"
                print(msg, file=sys.stderr, flush=True)
        return failed
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        raise
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())

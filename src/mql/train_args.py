"""The arguments of `mql train` (shared by the CLI and `mql sweep`, which checks its trials'
command lines against them)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import tyro

from mql.algos.config_base import BaseConfig
from mql.errors import UsageError

__all__ = ["TrainArgs", "budget_plan", "parse_train_args"]

ConfigT = TypeVar("ConfigT", bound=BaseConfig)


@dataclass
class TrainArgs(Generic[ConfigT]):
    """Train one run (or several seeds) and write a run directory."""

    config: tyro.conf.OmitArgPrefixes[ConfigT]
    run_dir: Path | None = None
    """Run directory (default: runs/ENV__ALGO__seedS)."""
    resume: Path | None = None
    """Continue the run in this directory (optionally to a new --total-steps)."""
    overwrite: bool = False
    """Replace an existing run directory."""
    seeds: tuple[int, ...] = ()
    """Several seeds as parallel processes (up to the core count), one run directory each."""
    jobs: int = 0
    """Parallel processes for --seeds (0: the number of CPU cores)."""
    quiet: bool = False
    """No progress display."""
    json: bool = False
    """End with the final evaluation as one JSON line (default: a short readable summary)."""
    wandb: bool = False
    """Also log to Weights & Biases (pip install -e '.[wandb]'; WANDB_MODE=offline needs no
    account; project: $WANDB_PROJECT, default mql)."""
    allow_warmup_only: bool = False
    """Allow a budget that ends inside the warm-up (the run then evaluates untrained networks)."""


def parse_train_args(argv: list[str], base: BaseConfig) -> TrainArgs:
    """`argv` of `mql train` with `base` (the resolved preset) supplying the defaults. Integer
    fields also take integral numbers in float notation (`--total-steps 1e6`)."""
    args = integral_floats(argv, base)
    if {"-h", "--help"} & set(args):
        return tyro.cli(
            TrainArgs[type(base)],
            args=args,
            default=TrainArgs(config=base),
            prog="mql train",
            description=_help_description(base),
        )
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
            return tyro.cli(
                TrainArgs[type(base)], args=args, default=TrainArgs(config=base), prog="mql train"
            )
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise UsageError(_one_line(captured.getvalue())) from None


def budget_plan(cfg: BaseConfig, allow_warmup_only: bool) -> str:
    """The plan of a run, to print; UsageError for a budget that ends inside the warm-up."""
    from mql.envs import family_class

    family = family_class(cfg.env)
    warm = cfg.warmup_steps(family.n_train, family.horizon)
    if warm >= cfg.total_steps and warm > 0 and not allow_warmup_only:
        raise UsageError(
            f"--total-steps {cfg.total_steps} ends inside the warm-up: {warm} steps "
            f"({family.n_train} training tasks x {warm // family.n_train} steps, whole episodes "
            f"of {family.horizon}) come before the first update, so the run would evaluate "
            "untrained networks; raise --total-steps, lower --num-initial-steps, or pass "
            "--allow-warmup-only"
        )
    plan = f"plan: {cfg.total_steps} environment steps"
    if warm:
        plan += f", the first {min(warm, cfg.total_steps)} a warm-up (no updates)"
    return plan + f"; evaluation every {cfg.eval_every} steps and at the end"


def _help_description(base: BaseConfig) -> str:
    """`mql train --help`'s heading: what it does, and the names --env and --algo take."""
    import mql.envs
    from mql.algos import registry

    return (
        "Train one run (or several seeds) and write a run directory. The flags below show "
        f"the {base.preset} preset of --env {base.env} --algo {base.algo}.\n\n"
        f"--env: {', '.join(mql.envs.names())} (mql envs describes them).\n"
        f"--algo: {', '.join(registry.names())} (mql --help describes them)."
    )


def _one_line(text: str) -> str:
    """tyro's boxed parse error as one line: its message, without the box and the help."""
    text = re.sub(r"[\u2500-\u257f]+|-{3,}|[│╭╮╰╯]", " ", text)
    text = re.split(r"Argument helptext:|For full helptext", text)[0]
    message = " ".join(text.split())
    titles = ("Parsing error", "Value error", "Invalid choice", "Unrecognized options")
    for title in titles:  # the box's heading, when the message below it says it again
        rest = message[len(title) :].strip()
        if message.startswith(title + " ") and not rest.startswith(":"):
            message = rest
    message = message[:300] or "could not parse the arguments"
    return f"{message} (see mql train --help)"


def integral_floats(argv: list[str], base: BaseConfig) -> list[str]:
    """`argv` with the values of int fields written like 1e6 or 2.0 turned into 1000000, 2."""
    ints = {
        f.name.replace("_", "-")
        for f in dataclasses.fields(base)
        if typing.get_type_hints(type(base))[f.name] is int
    }
    out: list[str] = []
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        prev = argv[i - 1].removeprefix("--").replace("_", "-") if i else ""
        if eq and name.removeprefix("--").replace("_", "-") in ints:
            arg = f"{name}={_integral(value)}"
        elif not arg.startswith("--") and prev in ints:
            arg = _integral(arg)
        out.append(arg)
    return out


def _integral(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() and not text.lstrip("-").isdigit() else text

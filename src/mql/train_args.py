"""The arguments of `mql train` (shared by the CLI and `mql sweep`, which checks its trials'
command lines against them)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import tyro

from mql.algos.config_base import BaseConfig

__all__ = ["TrainArgs", "parse_train_args"]

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


def parse_train_args(argv: list[str], base: BaseConfig) -> TrainArgs:
    """`argv` of `mql train` with `base` (the resolved preset) supplying the defaults."""
    return tyro.cli(
        TrainArgs[type(base)], args=argv, default=TrainArgs(config=base), prog="mql train"
    )

"""Run directories: resolved config, CSV and TensorBoard logs, evaluation records, checkpoints.

```
RUN_DIR/
  config.json          resolved config, package version, git commit, creation time
  metrics.csv          one row per training iteration (losses, Q values, returns, steps/s)
  eval.csv             one row per evaluation (zero-shot and adapted returns, λ, ESS, β stats)
  evals/step_N.json    per-task evaluation results
  final_eval.json      evaluation on all test tasks at the end of `total_steps`
  tb/                  TensorBoard event files with the same scalars
  checkpoints/latest.ckpt   full training state (written atomically)
  .lock                an advisory lock held by the process training in the directory
```
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mql
from mql.algos.config_base import BaseConfig
from mql.algos.registry import from_dict, to_dict
from mql.errors import RunDirError

CONFIG = "config.json"
METRICS = "metrics.csv"
EVAL = "eval.csv"
CHECKPOINT = Path("checkpoints") / "latest.ckpt"
LOCK = ".lock"

try:
    import fcntl
except ImportError:  # no advisory locks on this platform (Windows): runs are not guarded
    fcntl = None  # type: ignore[assignment]


def kept_checkpoint(env_steps: int) -> Path:
    """The kept checkpoint at `env_steps` (config `checkpoint_every`), relative to a run."""
    return Path("checkpoints") / f"step_{env_steps:09d}.ckpt"


def kept_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """A run's kept checkpoints as (env_steps, path), in step order."""
    found = []
    for path in (run_dir / "checkpoints").glob("step_*.ckpt"):
        digits = path.stem.removeprefix("step_")
        if digits.isdigit():
            found.append((int(digits), path))
    return sorted(found)


def git_commit() -> str | None:
    """The commit of the source tree `mql` was imported from, if it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(mql.__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def default_run_dir(cfg: BaseConfig, root: Path = Path("runs")) -> Path:
    return root / f"{cfg.env}__{cfg.algo}__seed{cfg.seed}"


def _in_use(path: Path, holder: str) -> RunDirError:
    who = f"another mql process (pid {holder})" if holder else "another mql process"
    return RunDirError(
        f"run directory {path} is in use by {who}; wait for it to end or stop it "
        f"(a stopped run continues with --resume {path})"
    )


def _try_lock(fd: int) -> bool:
    """Lock `fd` if no other process holds it: False if one does. A file system without
    advisory locks (some network mounts) counts as free: the run is then not guarded."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def _claim(fd: int, path: Path) -> None:
    """Lock `fd` (run directory `path`'s lock file) or raise `RunDirError` naming its holder."""
    if not _try_lock(fd):
        raise _in_use(path, os.read(fd, 32).decode(errors="replace").strip())


def _unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)


def ensure_free(path: Path) -> None:
    """Raise `RunDirError` if a process is training in run directory `path` (holds its lock,
    `holding_lock`); a lock file left by a process that ended does not count."""
    file = path / LOCK
    if fcntl is None or not file.is_file():
        return
    try:
        fd = os.open(file, os.O_RDONLY)
    except OSError:
        return
    try:
        _claim(fd, path)
        _unlock(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def holding_lock(path: Path) -> Iterator[None]:
    """Hold run directory `path`'s lock (an exclusive `flock` of RUN_DIR/.lock, with this
    process's pid in it) for the block: a second `mql train` into the directory (a resume, an
    overwrite) is refused with a one-line `RunDirError` instead of interleaving two runs' logs
    and checkpoints. The kernel releases the lock when the process ends, however it ends."""
    if fcntl is None:
        yield
        return
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunDirError(f"cannot lock run directory {path}: {e.strerror or e}") from None
    try:
        _claim(fd, path)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            _unlock(fd)
    finally:
        os.close(fd)


def _clear(path: Path) -> None:
    """Remove everything in `path` but its lock file (which its holder keeps holding)."""
    for child in path.iterdir():
        if child.name == LOCK:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def create(path: Path, cfg: BaseConfig, overwrite: bool = False) -> Path:
    """Make a new run directory and write its config; refuse an existing one unless told.

    A run directory interrupted before its first checkpoint (`never_checkpointed`) has no
    state worth keeping: it is started afresh, with a note on stderr. A directory that a
    process is training in (`ensure_free`) is never replaced."""
    try:
        if path.exists() and not path.is_dir():
            raise RunDirError(f"run directory {path} exists and is not a directory")
        if path.exists() and any(c.name != LOCK for c in path.iterdir()):
            is_run = (path / CONFIG).is_file()
            if is_run:
                ensure_free(path)
            if never_checkpointed(path):
                print(f"note: {path} has no checkpoint yet; starting it afresh", file=sys.stderr)
                _clear(path)
            elif not overwrite:
                raise RunDirError(
                    f"run directory {path} already exists; use --resume {path} to continue it "
                    "or --overwrite to replace it"
                )
            elif not is_run:
                raise RunDirError(f"refusing to overwrite {path}: it is not an mql run directory")
            else:
                _clear(path)
        path.mkdir(parents=True, exist_ok=True)
        write_config(path, cfg)
    except OSError as e:
        raise RunDirError(f"cannot create run directory {path}: {e.strerror or e}") from None
    return path


def write_config(path: Path, cfg: BaseConfig, **extra: Any) -> None:
    """Write `config.json`: the resolved config, package version, git commit, time, `extra`."""
    meta = {
        "config": to_dict(cfg),
        "mql_version": mql.__version__,
        "git_commit": git_commit(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    (path / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


def never_checkpointed(path: Path) -> bool:
    """A run directory interrupted before its first checkpoint: a config, but no checkpoint,
    no evaluation logged and no final evaluation (so nothing is lost by starting it afresh).
    A directory with evaluations but no checkpoint is damaged, not new: False."""
    return (
        (path / CONFIG).is_file()
        and not (path / CHECKPOINT).exists()
        and not (path / "final_eval.json").exists()
        and not ((path / EVAL).is_file() and len(read_csv(path / EVAL)) > 0)
    )


def read_config(path: Path) -> BaseConfig:
    """The config stored in run directory `path`."""
    file = path / CONFIG
    if not file.is_file():
        raise RunDirError(f"{path} is not an mql run directory (no {CONFIG})")
    try:
        return from_dict(json.loads(file.read_text())["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise RunDirError(f"{file} is unreadable: {e}") from e


def update_config(path: Path, cfg: BaseConfig) -> None:
    """Rewrite the stored config (on resume with a new `total_steps`)."""
    meta = json.loads((path / CONFIG).read_text())
    meta["config"] = to_dict(cfg)
    (path / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")


class CsvLog:
    """Append-only CSV with a header fixed by its first row (later rows may leave cells empty)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] | None = None
        if path.is_file() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                self.fields = next(csv.reader(f), None)

    def write(self, row: dict[str, Any]) -> None:
        if self.fields is None:
            self.fields = list(row)
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        extra = [k for k in row if k not in self.fields]
        if extra:
            self._widen(extra)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: _cell(row.get(k)) for k in self.fields})

    def _widen(self, extra: list[str]) -> None:
        rows = read_csv(self.path)
        assert self.fields is not None
        self.fields = self.fields + extra
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows(rows)

    def truncate_after(self, env_steps: int) -> None:
        """Drop rows logged after `env_steps` (written after the checkpoint we resume from)."""
        if self.fields is None:
            return
        rows = [r for r in read_csv(self.path) if float(r["env_steps"]) <= env_steps]
        with self.path.open("w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows(rows)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


class Logger:
    """metrics.csv + eval.csv + TensorBoard (and, if asked, W&B) for one run directory."""

    def __init__(
        self,
        path: Path,
        tensorboard: bool = True,
        purge_step: int | None = None,
        wandb_config: dict[str, Any] | None = None,
    ) -> None:
        """`purge_step` (on resume: the checkpoint's step + 1): TensorBoard drops the events
        at and after it, so the curves do not overlap the steps run again. `wandb_config`
        (the run's config): also log to Weights & Biases, resuming the W&B run of this
        directory if there is one (`wandb_run_id` holds its id)."""
        self.path = path
        self.metrics = CsvLog(path / METRICS)
        self.evals = CsvLog(path / EVAL)
        self._tb = None
        self._wandb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(path / "tb"), purge_step=purge_step)
        if wandb_config is not None:
            self._wandb = _wandb_run(path, wandb_config)

    def log_metrics(self, env_steps: int, row: dict[str, Any]) -> None:
        self.metrics.write({"env_steps": env_steps, **row})
        self._scalars(env_steps, row)

    def log_eval(self, env_steps: int, summary: dict[str, float], detail: dict[str, Any]) -> None:
        self.evals.write({"env_steps": env_steps, **summary})
        self._scalars(env_steps, {f"eval/{k}": v for k, v in summary.items()})
        (self.path / "evals").mkdir(exist_ok=True)
        (self.path / "evals" / f"step_{env_steps}.json").write_text(json.dumps(detail, indent=1))

    def _scalars(self, step: int, row: dict[str, Any]) -> None:
        # NaN marks a value that does not exist (a standard error over one task), not a number
        # to plot: the CSV keeps it, TensorBoard (which warns on every NaN) and W&B do not
        numbers = {k: v for k, v in row.items() if isinstance(v, int | float) and math.isfinite(v)}
        if self._tb is not None:
            for k, v in numbers.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(numbers, step=step)

    def truncate_after(self, env_steps: int) -> None:
        self.metrics.truncate_after(env_steps)
        self.evals.truncate_after(env_steps)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


WANDB_MISSING = "--wandb needs Weights & Biases: pip install -e '.[wandb]'"
WANDB_ID = "wandb_run_id"


def wandb_available() -> bool:
    """Whether `wandb` can be imported (without importing it)."""
    import importlib.util

    return importlib.util.find_spec("wandb") is not None


def _wandb_run(path: Path, config: dict[str, Any]) -> Any:
    """A W&B run for this run directory (project $WANDB_PROJECT or "mql"; files under
    RUN_DIR/wandb; WANDB_MODE=offline logs without an account), resumed by its stored id."""
    try:
        import wandb
    except ImportError:
        raise RunDirError(WANDB_MISSING) from None
    id_file = path / WANDB_ID
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id + "\n")
    try:
        return wandb.init(
            project=os.environ.get("WANDB_PROJECT", "mql"),
            name=path.name,
            id=run_id,
            resume="allow",
            dir=str(path),
            config=config,
        )
    except Exception as e:  # no API key, no network: say so in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunDirError(
            f"W&B could not start ({first}); WANDB_MODE=offline logs without an account"
        ) from None

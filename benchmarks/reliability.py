"""Reliability of the `mql` command line: bad input, corrupt checkpoints, kill and resume.

    python benchmarks/reliability.py [--root DIR] [--kills N] [--seed S] [--verbose]

Every check is a separate `python -m mql.cli` child process (this interpreter, this
environment; a JAX compilation cache under DIR unless JAX_COMPILATION_CACHE_DIR is set):

1. Bad input (about 60 cases): unknown names, bad numbers, configs that cannot be meant,
   unusable run directories, damaged checkpoints, bad `eval`, `plot`, `report` and `sweep`
   arguments. Each must exit non-zero with one error line `mql COMMAND: error: ...` on stderr
   (lines starting with `note:` or `plan:` aside; an argparse usage block followed by one such
   line is a "usage error"), print no traceback, and leave every file under DIR/cases as it was
   (the tree, a prepared finished run directory included, is hashed before and after each case).
2. Crash recovery: a short point-robot td3-context run made once uninterrupted (the reference),
   then N times for each of SIGINT, SIGTERM and SIGKILL: the same run in a fresh directory,
   signalled a random 0-3 s (random.Random(S)) after its first checkpoint appears, then
   `mql train --resume DIR` to the end. Its eval.csv and metrics.csv (timing columns aside),
   evals/*.json and final_eval.json must equal the reference's.

Prints a summary (and every case with `--verbose`); exits 1 on a traceback, on lost or changed
data, or on a bad input that exited 0. Takes 10-20 minutes on a busy 2-core machine.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TINY = ["--hidden", "8", "8", "--history-len", "2", "--context-dim", "4", "--gru-kernel", "xla",
        "--batch-size", "16", "--num-initial-steps", "20", "--num-train-steps", "5",
        "--num-tasks-sample", "1", "--small-buffer", "0", "--replay-size", "3000",
        "--updates-per-call", "5", "--eval-tasks", "1", "--eval-train-tasks", "0",
        "--eval-episodes", "1"]  # fmt: skip
RUN = ["--env", "point-robot", "--algo", "td3-context", *TINY]
RUN_STEPS = ["--total-steps", "4000", "--eval-every", "400"]  # warm-up: 80 tasks x 20 steps
TIMING_PREFIXES = ("time/", "wall_s", "steps_per_s")
CASE_TIMEOUT_S = 300
RUN_TIMEOUT_S = 900
TRACEBACK = "Traceback (most recent call last)"
ERROR_LINE = re.compile(r"^mql( [a-z-]+)*: error: ")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)


# ------------------------------------------------------------------------- processes and files


def mql_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "mql.cli", *args]


def child_env(root: Path) -> dict[str, str]:
    """This environment, with a JAX compilation cache shared by the children (unless one is set)."""
    env = dict(os.environ)
    if "JAX_COMPILATION_CACHE_DIR" not in env:
        env["JAX_COMPILATION_CACHE_DIR"] = str(root / "jax-cache")
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    return env


def run_mql(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """One `mql` child process; one that runs past `timeout` is reported with exit code -1."""
    try:
        return subprocess.run(
            mql_cmd(args), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else e.stderr or ""
        return subprocess.CompletedProcess(e.cmd, -1, "", err + f"\n(timed out after {timeout} s)")


def tree_hashes(top: Path) -> dict[str, str]:
    """Every file (SHA-256) and directory ("dir") below `top`, by relative path."""
    out: dict[str, str] = {}
    for p in sorted(top.rglob("*")):
        rel = str(p.relative_to(top))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def changed_paths(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def read_rows(path: Path) -> list[dict[str, str]]:
    """A CSV log without its timing columns (they differ between any two runs)."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_PREFIXES)} for r in rows]


def last_env_steps(run_dir: Path) -> int | None:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return int(float(rows[-1]["env_steps"])) if rows else None


def differences(run_dir: Path, reference: Path) -> list[str]:
    """The logs of `run_dir` that differ from the reference run's (empty: identical)."""
    diffs = []
    for name in ("eval.csv", "metrics.csv"):
        if not (run_dir / name).is_file() or read_rows(run_dir / name) != read_rows(
            reference / name
        ):
            diffs.append(name)
    names = sorted(p.relative_to(reference) for p in reference.glob("evals/*.json"))
    names.append(Path("final_eval.json"))
    if sorted(p.relative_to(run_dir) for p in run_dir.glob("evals/*.json")) != names[:-1]:
        diffs.append("evals/ (file set)")
    for rel in names:
        ours = run_dir / rel
        if not ours.is_file() or json.loads(ours.read_text()) != json.loads(
            (reference / rel).read_text()
        ):
            diffs.append(str(rel))
    return diffs


# ------------------------------------------------------------------------------ bad input


@dataclass
class Case:
    name: str
    args: list[str]
    command: str  # `mql COMMAND: error:` expected ("" for the top-level `mql: error:`)
    group: str = "input"


@dataclass
class Outcome:
    case: Case
    code: int
    kind: str  # one-line, usage error, other
    traceback: bool
    changed: list[str]
    message: str

    @property
    def ok(self) -> bool:
        return self.code > 0 and self.kind != "other" and not self.traceback and not self.changed


def classify(stderr: str) -> tuple[str, str]:
    """(kind, the error line or first line) of a failed command's stderr."""
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith(("note:", "plan:"))]
    errors = [ln for ln in lines if ERROR_LINE.match(ln)]
    if len(lines) == 1 and errors:
        return "one-line", errors[0]
    if lines and lines[0].startswith("usage:") and len(errors) == 1 and lines[-1] == errors[0]:
        return "usage error", errors[0]
    if lines and lines[0].startswith("╭"):  # tyro draws its parse errors in a box
        return "other", "(tyro box) " + " ".join(lines[1].strip("│ ").split())
    return "other", f"({len(lines)} lines) " + (errors[0] if errors else lines[0] if lines else "")


def train(extra: list[str], run_dir: Path, algo: str = "td3-context") -> list[str]:
    """`mql train` on the tiny point-robot settings, with `extra` flags (they win)."""
    steps = [] if "--total-steps" in extra else ["--total-steps", "2000"]
    return ["train", "--env", "point-robot", "--algo", algo, *TINY, *steps, *extra,
            "--run-dir", str(run_dir), "--quiet"]  # fmt: skip


def bad_numbers(new: Path) -> list[Case]:
    values = {
        "--lr": ["-1", "0", "nan", "abc"],
        "--total-steps": ["0", "-5", "nan", "2.5"],
        "--eval-every": ["0", "-400"],
        "--batch-size": ["0", "-16"],
        "--history-len": ["0", "-1"],
        "--gamma": ["0", "1.5", "nan"],
        "--tau": ["-0.1", "2"],
        "--seed": ["-3", "abc"],
        "--task-seed": ["-1"],
    }
    cases = [
        Case(f"train {flag} {v}", train([flag, v], new), "train")
        for flag, vs in values.items()
        for v in vs
    ]
    cases.append(Case("train --eval-adapt-episodes -1", train(["--eval-adapt-episodes", "-1"], new), "train"))  # fmt: skip
    cases.append(Case("train --eval-adapt-episodes 1 1", train(["--eval-adapt-episodes", "1", "1"], new), "train"))  # fmt: skip
    return cases


def train_cases(fx: dict[str, Path]) -> list[Case]:
    new = fx["new"]
    return [
        Case("train --env no-such-env", ["train", "--env", "no-such-env", "--run-dir", str(new)], "train"),  # fmt: skip
        Case("train --algo no-such-algo", train([], new, algo="no-such-algo"), "train"),
        Case("train --preset no-such-preset", train(["--preset", "no-such-preset"], new), "train"),
        Case("train without --env", ["train", "--total-steps", "100", "--run-dir", str(new)], "train"),  # fmt: skip
        Case("train --no-such-flag 1", train(["--no-such-flag", "1"], new), "train"),
        *bad_numbers(new),
        Case("train --algo mql --fixed-lambda 0.3", train(["--fixed-lambda", "0.3"], new, "mql"), "train"),  # fmt: skip
        Case("train --replay-size 8 (< batch 16)", train(["--replay-size", "8"], new), "train"),
        Case("train --history-len 40 (point-robot)", train(["--history-len", "40"], new), "train"),
        Case("train budget inside the warm-up", train(["--total-steps", "1000"], new), "train"),
        Case("train --run-dir /proc/x", train([], Path("/proc/mql-reliability-x")), "train"),
        Case("train --run-dir FILE", train([], fx["file"]), "train"),
        Case("train --run-dir FINISHED (no --overwrite)", train([], fx["finished"]), "train"),
        Case("train --run-dir NOT-A-RUN --overwrite", train(["--overwrite"], fx["notrun"]), "train"),  # fmt: skip
        Case("train --resume MISSING", ["train", "--resume", str(fx["missing"])], "train"),
        Case("train --resume FINISHED --lr 0.1", ["train", "--resume", str(fx["finished"]), "--lr", "0.1"], "train"),  # fmt: skip
        Case("train --resume FINISHED --total-steps 100", ["train", "--resume", str(fx["finished"]), "--total-steps", "100"], "train"),  # fmt: skip
        Case("train --resume FINISHED --total-steps -1", ["train", "--resume", str(fx["finished"]), "--total-steps", "-1"], "train"),  # fmt: skip
    ]


def other_cases(fx: dict[str, Path]) -> list[Case]:
    done, png = str(fx["finished"]), str(fx["new"].with_suffix(".png"))
    return [
        Case("eval MISSING", ["eval", str(fx["missing"])], "eval"),
        Case("eval NOT-A-RUN", ["eval", str(fx["notrun"])], "eval"),
        Case("eval FINISHED --adapt-as pearl", ["eval", done, "--adapt-as", "pearl"], "eval"),
        Case("eval FINISHED --adapt-as no-such-algo", ["eval", done, "--adapt-as", "nope"], "eval"),
        Case("eval FINISHED --episodes 0", ["eval", done, "--episodes", "0"], "eval"),
        Case("eval FINISHED --episodes x", ["eval", done, "--episodes", "x"], "eval"),
        Case("eval FINISHED --adapt-episodes -1", ["eval", done, "--adapt-episodes", "-1"], "eval"),
        Case("eval FINISHED --adapt-episodes 1 1", ["eval", done, "--adapt-episodes", "1", "1"], "eval"),  # fmt: skip
        Case("eval FINISHED --num-tasks -1", ["eval", done, "--num-tasks", "-1"], "eval"),
        Case("plot MISSING", ["plot", str(fx["missing"]), "--out", png], "plot"),
        Case("plot EMPTY", ["plot", str(fx["empty"]), "--out", png], "plot"),
        Case("plot FINISHED --out /proc/x.png", ["plot", done, "--out", "/proc/mql-x.png"], "plot"),
        Case("plot FINISHED --out x.xyz", ["plot", done, "--out", png[:-4] + ".xyz"], "plot"),
        Case("plot FINISHED --resamples 0", ["plot", done, "--out", png, "--resamples", "0"], "plot"),  # fmt: skip
        Case("report MISSING", ["report", str(fx["missing"])], "report"),
        Case("report UNFINISHED", ["report", str(fx["unfinished"])], "report"),
        Case("report FINISHED --baseline mql", ["report", done, "--baseline", "mql"], "report"),
        Case("sweep --set no_such_key=1", ["sweep", "--envs", "point-robot", "--set", "no_such_key=1", "--root", str(fx["new"])], "sweep"),  # fmt: skip
        Case("sweep --envs no-such-env --dry-run", ["sweep", "--envs", "no-such-env", "--dry-run", "--root", str(fx["new"])], "sweep"),  # fmt: skip
        Case("envs --bogus", ["envs", "--bogus"], "envs"),
        Case("unknown subcommand", ["trian"], ""),
    ]


def checkpoint_cases(fx: dict[str, Path]) -> list[Case]:
    """Damaged checkpoints of finished runs: refused in one line, the directory untouched."""
    cases = []
    for damage in ("truncated", "flipped"):
        d = str(fx[damage])
        cases.append(Case(f"train --resume {damage.upper()}", ["train", "--resume", d, "--total-steps", "8000"], "train", "checkpoint"))  # fmt: skip
        cases.append(Case(f"eval {damage.upper()}", ["eval", d], "eval", "checkpoint"))
    return cases


def prepare_fixtures(cases_dir: Path, reference: Path) -> dict[str, Path]:
    fx = {name: cases_dir / name for name in ("finished", "truncated", "flipped", "unfinished")}
    for path in fx.values():
        shutil.copytree(reference, path)
    for name, damage in (("truncated", _truncate), ("flipped", _flip)):
        ckpt = fx[name] / "checkpoints" / "latest.ckpt"
        ckpt.write_bytes(damage(ckpt.read_bytes()))
    (fx["unfinished"] / "final_eval.json").unlink()
    fx["notrun"] = cases_dir / "not-a-run"
    fx["notrun"].mkdir()
    (fx["notrun"] / "notes.txt").write_text("my notes, not a run\n")
    fx["empty"] = cases_dir / "empty"
    fx["empty"].mkdir()
    fx["file"] = cases_dir / "a-file"
    fx["file"].write_text("not a directory\n")
    fx["missing"] = cases_dir / "missing"
    fx["new"] = cases_dir / "cwd" / "new-run"
    fx["new"].parent.mkdir()
    return fx


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip(data: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 16]) + data[mid + 16 :]


def run_case(case: Case, env: dict[str, str], cases_dir: Path) -> Outcome:
    before = tree_hashes(cases_dir)
    proc = run_mql(case.args, env, cases_dir / "cwd", timeout=CASE_TIMEOUT_S)
    changed = changed_paths(before, tree_hashes(cases_dir))
    kind, message = classify(proc.stderr) if proc.returncode != 0 else ("other", "(exit 0)")
    if kind == "one-line" and not message.startswith(f"mql {case.command}: ".replace("  ", " ")):
        kind, message = "other", f"(wrong command) {message}"
    trace = TRACEBACK in proc.stderr or TRACEBACK in proc.stdout
    return Outcome(case, proc.returncode, kind, trace, changed, message)


# -------------------------------------------------------------------------- crash recovery


@dataclass
class Trial:
    signal: str
    delay_s: float
    exit_code: int | None  # of the signalled run (None: it had finished before the signal)
    steps_at_stop: int | None
    resume_code: int
    traceback: bool
    diffs: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return self.resume_code == 0 and not self.diffs


def reference_run(root: Path, env: dict[str, str]) -> Path:
    ref = root / "reference"
    proc = run_mql(["train", *RUN, *RUN_STEPS, "--run-dir", str(ref), "--quiet"], env, root)
    if proc.returncode != 0 or not (ref / "final_eval.json").is_file():
        sys.exit(f"reliability: the reference run failed (exit {proc.returncode}):\n{proc.stderr}")
    return ref


def wait_for(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def signalled_run(run_dir: Path, env: dict[str, str], sig: signal.Signals, delay: float) -> tuple[int | None, str]:  # fmt: skip
    """The run started, signalled `delay` s after its first checkpoint: (exit code, stderr)."""
    err_path = run_dir.with_suffix(".stderr")
    args = ["train", *RUN, *RUN_STEPS, "--run-dir", str(run_dir), "--quiet"]
    with err_path.open("w") as err:
        proc = subprocess.Popen(mql_cmd(args), env=env, cwd=run_dir.parent, stdout=err, stderr=err)
        try:
            wait_for(run_dir / "checkpoints" / "latest.ckpt", proc, RUN_TIMEOUT_S)
            time.sleep(delay)
            if proc.poll() is not None:
                return None, err_path.read_text()
            proc.send_signal(sig)
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    return code, err_path.read_text()


def kill_trial(
    run_dir: Path, env: dict[str, str], sig: signal.Signals, delay: float, ref: Path
) -> Trial:
    code, err = signalled_run(run_dir, env, sig, delay)
    steps = last_env_steps(run_dir)
    resume = run_mql(["train", "--resume", str(run_dir), "--quiet", "--json"], env, run_dir.parent)
    trace = TRACEBACK in err or TRACEBACK in resume.stderr
    diffs = differences(run_dir, ref) if resume.returncode == 0 else ["resume failed"]
    return Trial(sig.name, delay, code, steps, resume.returncode, trace, diffs)


# ----------------------------------------------------------------------------------- report


def summary(outcomes: list[Outcome], trials: list[Trial]) -> list[str]:
    def count(pred: Callable[[Outcome], bool]) -> int:
        return sum(1 for o in outcomes if pred(o))

    rows = [
        ("cases tried (bad input and damaged checkpoints)", len(outcomes), ""),
        ("  one-line error, non-zero exit", count(lambda o: o.kind == "one-line" and o.code > 0), ""),  # fmt: skip
        ("  usage error (argparse usage + one error line)", count(lambda o: o.kind == "usage error" and o.code > 0), ""),  # fmt: skip
        ("  other error output (several lines, tyro box)", count(lambda o: o.kind == "other" and o.code > 0), ""),  # fmt: skip
        ("  accepted (exit 0) or timed out", count(lambda o: o.code <= 0), "(must be 0)"),
        ("tracebacks", count(lambda o: o.traceback) + sum(t.traceback for t in trials), "(must be 0)"),  # fmt: skip
        ("cases that created, changed or lost files", count(lambda o: bool(o.changed)), "(must be 0)"),  # fmt: skip
        ("kill-and-resume trials (SIGINT, SIGTERM, SIGKILL)", len(trials), ""),
        ("  reproduced the uninterrupted run exactly", sum(t.reproduced for t in trials), ""),
        ("  lost data (resume failed or logs differ)", sum(not t.reproduced for t in trials), "(must be 0)"),  # fmt: skip
    ]
    return [f"{name:52s} {n:4d}  {note}".rstrip() for name, n, note in rows]


def case_line(o: Outcome) -> str:
    flags = ("TRACEBACK " if o.traceback else "") + (f"CHANGED {o.changed[:3]} " if o.changed else "")  # fmt: skip
    return f"{o.case.name[:44]:44s} {o.code:4d}  {o.kind:11s} {flags}{o.message[:110]}"


def trial_line(t: Trial) -> str:
    code = "finished" if t.exit_code is None else str(t.exit_code)
    verdict = "identical" if t.reproduced else "DIFFERS: " + ", ".join(t.diffs)
    trace = " TRACEBACK" if t.traceback else ""
    return (
        f"{t.signal:8s} after {t.delay_s:4.2f} s: exit {code:>8s}, stopped at {t.steps_at_stop} "
        f"steps, resume exit {t.resume_code}: {verdict}{trace}"
    )


def print_report(outcomes: list[Outcome], trials: list[Trial], verbose: bool) -> None:
    print("\n".join(summary(outcomes, trials)))
    shown = outcomes if verbose else [o for o in outcomes if not o.ok]
    if shown:
        title = "every case" if verbose else "cases that were not a clean one-line refusal"
        print(f"\n{title} (name, exit, stderr, message):")
        print("\n".join(case_line(o) for o in shown))
    if verbose or any(not t.reproduced or t.traceback for t in trials):
        print("\nkill-and-resume trials:")
        print("\n".join(trial_line(t) for t in trials))


def failed(outcomes: list[Outcome], trials: list[Trial]) -> bool:
    return (
        any(o.traceback or o.changed or o.code <= 0 for o in outcomes)
        or any(t.traceback or not t.reproduced for t in trials)
    )  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=None, help="empty working folder (default: temp)")
    p.add_argument("--kills", type=int, default=3, help="trials per signal (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the signal delays (default: 0)")
    p.add_argument("--verbose", action="store_true", help="print every case and trial")
    ns = p.parse_args()
    root = ns.root or Path(tempfile.mkdtemp(prefix="mql-reliability-"))
    if root.exists() and any(root.iterdir()):
        p.error(f"--root {root} is not empty")
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    env = child_env(root)
    print(f"reliability: working in {root}", file=sys.stderr)

    ref = reference_run(root, env)
    cases_dir = root / "cases"
    fx = prepare_fixtures(cases_dir, ref)
    outcomes = []
    for case in [*train_cases(fx), *other_cases(fx), *checkpoint_cases(fx)]:
        outcomes.append(run_case(case, env, cases_dir))
        print(case_line(outcomes[-1]), file=sys.stderr)

    rng, trials = random.Random(ns.seed), []
    (root / "kills").mkdir()
    for sig in SIGNALS:
        for i in range(ns.kills):
            run_dir = root / "kills" / f"{sig.name.lower()}-{i}"
            trials.append(kill_trial(run_dir, env, sig, rng.uniform(0.0, 3.0), ref))
            print(trial_line(trials[-1]), file=sys.stderr)
    print()
    print_report(outcomes, trials, ns.verbose)
    return 1 if failed(outcomes, trials) else 0


if __name__ == "__main__":
    sys.exit(main())

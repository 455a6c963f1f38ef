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
from dataclasses import dataclass
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
COMMANDS = ("train", "eval", "plot", "report", "envs", "bench", "sweep")


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


def last_env_steps(run_dir: Path) -> int | None:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return int(float(rows[-1]["env_steps"])) if rows else None


def differences(run_dir: Path, reference: Path) -> list[str]:
    """The logs of `run_dir` that differ from the reference run's (empty: identical)."""
    diffs = [n for n in ("eval.csv", "metrics.csv") if _rows(run_dir / n) != _rows(reference / n)]
    ours = sorted(p.name for p in run_dir.glob("evals/*.json"))
    theirs = sorted(p.name for p in reference.glob("evals/*.json"))
    if ours != theirs:
        diffs.append("evals/ (the files)")
    for rel in [*(f"evals/{n}" for n in theirs if n in ours), "final_eval.json"]:
        if _json(run_dir / rel) != _json(reference / rel):
            diffs.append(rel)
    return diffs


def _rows(path: Path) -> list[dict[str, str]] | None:
    """A CSV log without its timing columns (they differ between any two runs); None if absent."""
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        return [
            {k: v for k, v in row.items() if not k.startswith(TIMING_PREFIXES)}
            for row in csv.DictReader(f)
        ]


def _json(path: Path) -> object:
    return json.loads(path.read_text()) if path.is_file() else None


# ------------------------------------------------------------------------------ bad input


@dataclass
class Case:
    name: str
    args: list[str]
    group: str = "input"

    @property
    def prefix(self) -> str:
        """The start of the error line expected: `mql COMMAND: error: ` (`mql: error: ` for an
        unknown command)."""
        command = self.args[0]
        return f"mql {command}: error: " if command in COMMANDS else "mql: error: "


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


def classify(stderr: str, prefix: str) -> tuple[str, str]:
    """(kind, the error line, or what stands for it) of a failed command's stderr."""
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith(("note:", "plan:"))]
    errors = [ln for ln in lines if ERROR_LINE.match(ln)]
    if len(lines) == 1 and errors and errors[0].startswith(prefix):
        return "one-line", errors[0]
    if lines and lines[0].startswith("usage:") and len(errors) == 1 and lines[-1] == errors[0]:
        return "usage error", errors[0]
    if len(lines) > 1 and lines[0].startswith("╭"):  # tyro draws its parse errors in a box
        return "other", "(tyro box) " + " ".join(lines[1].strip("│ ").split())
    first = errors[0] if errors else lines[0] if lines else "(no stderr)"
    return "other", f"({len(lines)} lines) {first}"


def train(extra: list[str], run_dir: Path, algo: str = "td3-context") -> list[str]:
    """`mql train` on the tiny point-robot settings, with `extra` flags."""
    steps = [] if "--total-steps" in extra else ["--total-steps", "2000"]
    base = ["train", "--env", "point-robot", "--algo", algo, *TINY, *steps]
    return [*base, *extra, "--run-dir", str(run_dir), "--quiet"]


BAD_NUMBERS: dict[str, list[str]] = {
    "--lr": ["-1", "0", "nan", "abc"],
    "--total-steps": ["0", "-5", "nan", "2.5"],
    "--eval-every": ["0", "-400"],
    "--batch-size": ["0"],
    "--history-len": ["0", "-1"],
    "--gamma": ["0", "1.5", "nan"],
    "--tau": ["-0.1"],
    "--seed": ["-3", "abc"],
    "--task-seed": ["-1"],
    "--eval-adapt-episodes": ["-1", "1 1"],
}


def train_cases(fx: dict[str, Path]) -> list[Case]:
    new = fx["new"]

    def case(name: str, extra: list[str], algo: str = "td3-context") -> Case:
        return Case(f"train {name}", train(extra, new, algo))

    def resume(name: str, extra: list[str]) -> Case:
        return Case(
            " ".join(["train --resume", name, *extra]), ["train", "--resume", str(fx[name]), *extra]
        )

    cases = [
        Case("train --env no-such-env", ["train", "--env", "no-such-env", "--run-dir", str(new)]),
        Case("train without --env", ["train", "--total-steps", "100", "--run-dir", str(new)]),
        case("--algo no-such-algo", [], algo="no-such-algo"),
        case("--preset no-such-preset", ["--preset", "no-such-preset"]),
        case("--no-such-flag 1", ["--no-such-flag", "1"]),
    ]
    cases += [case(f"{f} {v}", [f, *v.split()]) for f, vs in BAD_NUMBERS.items() for v in vs]
    cases += [
        case("--algo mql --fixed-lambda 0.3", ["--fixed-lambda", "0.3"], algo="mql"),
        case("--replay-size 8 (< batch 16)", ["--replay-size", "8"]),
        case("--history-len 40 (point-robot)", ["--history-len", "40"]),
        case("--total-steps 1000 (in the warm-up)", ["--total-steps", "1000"]),
        Case("train --run-dir /proc/x", train([], Path("/proc/mql-reliability-x"))),
        Case("train --run-dir FILE", train([], fx["file"])),
        Case("train --run-dir FINISHED", train([], fx["finished"])),
        Case("train --run-dir NOT-A-RUN --overwrite", train(["--overwrite"], fx["notrun"])),
        resume("missing", []),
        resume("finished", ["--lr", "0.1"]),
        resume("finished", ["--total-steps", "100"]),
        resume("finished", ["--total-steps", "-1"]),
    ]
    return cases


def other_cases(fx: dict[str, Path]) -> list[Case]:
    done, png = str(fx["finished"]), str(fx["new"].with_suffix(".png"))

    def case(*args: str) -> Case:
        return Case(" ".join(args).replace(f"{fx['finished'].parent}/", ""), list(args))

    return [
        case("eval", str(fx["missing"])),
        case("eval", str(fx["notrun"])),
        case("eval", done, "--adapt-as", "pearl"),
        case("eval", done, "--adapt-as", "no-such-algo"),
        case("eval", done, "--episodes", "0"),
        case("eval", done, "--episodes", "x"),
        case("eval", done, "--adapt-episodes", "-1"),
        case("eval", done, "--adapt-episodes", "1", "1"),
        case("eval", done, "--num-tasks", "-1"),
        case("plot", str(fx["missing"]), "--out", png),
        case("plot", str(fx["empty"]), "--out", png),
        case("plot", done, "--out", "/proc/mql-x.png"),
        case("plot", done, "--out", png.removesuffix(".png") + ".xyz"),
        case("plot", done, "--out", png, "--resamples", "0"),
        case("report", str(fx["missing"])),
        case("report", str(fx["unfinished"])),
        case("report", done, "--baseline", "mql"),
        case("sweep", "--envs", "point-robot", "--set", "no_such_key=1", "--root", "sweep"),
        case("sweep", "--envs", "no-such-env", "--dry-run", "--root", "sweep"),
        case("envs", "--bogus"),
        case("trian"),
    ]


def checkpoint_cases(fx: dict[str, Path]) -> list[Case]:
    """Damaged checkpoints of finished runs: refused in one line, the directory untouched."""
    cases = []
    for damage in ("truncated", "flipped"):
        d = str(fx[damage])
        resume = ["train", "--resume", d, "--total-steps", "8000"]
        cases.append(Case(f"train --resume {damage} --total-steps 8000", resume, "checkpoint"))
        cases.append(Case(f"eval {damage}", ["eval", d], "checkpoint"))
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
    if proc.returncode > 0:
        kind, message = classify(proc.stderr.replace(f"{cases_dir}/", ""), case.prefix)
    else:
        kind, message = "other", "(accepted)" if proc.returncode == 0 else "(timed out)"
    trace = TRACEBACK in proc.stderr or TRACEBACK in proc.stdout
    return Outcome(case, proc.returncode, kind, trace, changed, message)


# -------------------------------------------------------------------------- crash recovery


@dataclass
class Trial:
    signal: str
    delay_s: float
    signalled: bool  # False: the run had ended before the signal was due
    exit_code: int
    steps_at_stop: int | None
    resume_code: int
    traceback: bool
    diffs: list[str]

    @property
    def reproduced(self) -> bool:
        return self.resume_code == 0 and not self.diffs


def reference_run(root: Path, env: dict[str, str]) -> Path:
    ref = root / "reference"
    proc = run_mql(["train", *RUN, *RUN_STEPS, "--run-dir", str(ref), "--quiet"], env, root)
    if proc.returncode != 0 or not (ref / "final_eval.json").is_file():
        sys.exit(f"reliability: the reference run failed (exit {proc.returncode}):\n{proc.stderr}")
    return ref


def signalled_run(
    run_dir: Path, env: dict[str, str], sig: signal.Signals, delay: float
) -> tuple[bool, int, str]:
    """The run, sent `sig` `delay` s after its first checkpoint: (signalled, exit code, stderr)."""
    err_path = run_dir.with_suffix(".stderr")
    args = ["train", *RUN, *RUN_STEPS, "--run-dir", str(run_dir), "--quiet"]
    with err_path.open("w") as err:
        proc = subprocess.Popen(mql_cmd(args), env=env, cwd=run_dir.parent, stdout=err, stderr=err)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        ckpt = run_dir / "checkpoints" / "latest.ckpt"
        while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(delay)
        signalled = proc.poll() is None
        if signalled:
            proc.send_signal(sig)
        try:
            code = proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    return signalled, code, err_path.read_text()


def kill_trial(
    run_dir: Path, env: dict[str, str], sig: signal.Signals, delay: float, ref: Path
) -> Trial:
    signalled, code, err = signalled_run(run_dir, env, sig, delay)
    steps = last_env_steps(run_dir)
    resume = run_mql(["train", "--resume", str(run_dir), "--quiet", "--json"], env, run_dir.parent)
    trace = TRACEBACK in err or TRACEBACK in resume.stderr
    diffs = differences(run_dir, ref) if resume.returncode == 0 else ["resume failed"]
    return Trial(sig.name, delay, signalled, code, steps, resume.returncode, trace, diffs)


# ----------------------------------------------------------------------------------- report


def summary(outcomes: list[Outcome], trials: list[Trial]) -> list[str]:
    refused = [o for o in outcomes if o.code > 0]
    kinds = [o.kind for o in refused]
    traces = sum(o.traceback for o in outcomes) + sum(t.traceback for t in trials)
    changed = sum(bool(o.changed) for o in outcomes)
    reproduced = sum(t.reproduced for t in trials)
    ckpt = [o.ok for o in outcomes if o.case.group == "checkpoint"]
    must = "(must be 0)"
    rows = [
        ("cases tried (bad input, damaged checkpoints)", len(outcomes), ""),
        ("  one-line error, non-zero exit", kinds.count("one-line"), ""),
        ("  usage error (argparse usage + one error line)", kinds.count("usage error"), ""),
        ("  other error output (several lines, tyro box)", kinds.count("other"), ""),
        ("  accepted (exit 0) or timed out", len(outcomes) - len(refused), must),
        (f"  damaged checkpoints refused cleanly (of {len(ckpt)})", sum(ckpt), ""),
        ("tracebacks", traces, must),
        ("cases that created, changed or lost files", changed, must),
        ("kill-and-resume trials (SIGINT, SIGTERM, SIGKILL)", len(trials), ""),
        ("  reproduced the uninterrupted run exactly", reproduced, ""),
        ("  lost data (resume failed or logs differ)", len(trials) - reproduced, must),
    ]
    return [f"{name:52s} {n:4d}  {note}".rstrip() for name, n, note in rows]


def case_line(o: Outcome) -> str:
    flags = "TRACEBACK " if o.traceback else ""
    if o.changed:
        flags += f"CHANGED {', '.join(o.changed[:3])} "
    return f"{o.case.name[:48]:48s} {o.code:4d}  {o.kind:11s}  {flags}{o.message[:120]}"


def trial_line(t: Trial) -> str:
    stop = f"exit {t.exit_code}" if t.signalled else f"ended (exit {t.exit_code}) before it"
    verdict = "identical" if t.reproduced else "DIFFERS: " + ", ".join(t.diffs)
    trace = " TRACEBACK" if t.traceback else ""
    return (
        f"{t.signal:7s} {t.delay_s:4.2f} s after the first checkpoint: {stop}, "
        f"{t.steps_at_stop} steps logged; resume exit {t.resume_code}, {verdict}{trace}"
    )


def print_report(outcomes: list[Outcome], trials: list[Trial], verbose: bool) -> None:
    print("\n".join(summary(outcomes, trials)))
    shown = outcomes if verbose else [o for o in outcomes if not o.ok]
    if shown:
        title = "every case" if verbose else "cases that were not a clean one-line refusal"
        print(f"\n{title} (case, exit code, stderr, error line):")
        print("\n".join(case_line(o) for o in shown))
    if verbose or any(not t.reproduced or t.traceback for t in trials):
        print("\nkill-and-resume trials:")
        print("\n".join(trial_line(t) for t in trials))


def failed(outcomes: list[Outcome], trials: list[Trial]) -> bool:
    bad_case = any(o.traceback or o.changed or o.code <= 0 for o in outcomes)
    return bad_case or any(t.traceback or not t.reproduced for t in trials)


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--root", type=Path, default=None, help="empty working folder (default: temp)")
    p.add_argument("--kills", type=int, default=3, help="trials per signal (default: 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the signal delays (default: 0)")
    p.add_argument("--verbose", action="store_true", help="print every case and trial")
    ns = p.parse_args()
    root = (ns.root or Path(tempfile.mkdtemp(prefix="mql-reliability-"))).resolve()
    if root.exists() and any(root.iterdir()):
        p.error(f"--root {root} is not empty")
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

"""A newcomer's traps, each reproduced and now refused or handled: budgets inside the warm-up,
run directories interrupted before their first checkpoint, bad paths and seeds, configs that
cannot be meant, and a `--seeds` group interrupted and resumed."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mql import runs
from mql.algos import registry
from mql.cli import main as cli_main
from mql.train_args import integral_floats, parse_train_args

TINY = ["--env", "point-robot", "--algo", "td3-context", "--hidden", "8", "8",
        "--history-len", "2", "--context-dim", "4", "--gru-kernel", "xla", "--batch-size", "16",
        "--num-initial-steps", "20", "--num-train-steps", "5", "--num-tasks-sample", "1",
        "--small-buffer", "0", "--replay-size", "3000", "--updates-per-call", "5",
        "--eval-tasks", "1", "--eval-train-tasks", "0", "--eval-episodes", "1"]  # fmt: skip
WARMUP = 80 * 20  # point-robot: 80 training tasks x one 20-step episode


def one_line_error(err: str, command: str = "train") -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith(("note:", "plan:"))]
    assert len(lines) == 1 and lines[0].startswith(f"mql {command}: error: "), err
    return lines[0]


def test_a_budget_inside_the_warm_up_is_refused_with_the_numbers(tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(["train", *TINY, "--total-steps", "1000", "--run-dir", str(run)]) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "ends inside the warm-up: 1600 steps (80 training tasks x 20 steps" in err
    assert "--allow-warmup-only" in err and not run.exists()


def test_the_plan_is_printed_and_warm_up_only_can_be_allowed(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", *TINY, "--total-steps", "200", "--eval-every", "200", "--run-dir",
            str(run), "--quiet", "--allow-warmup-only", "--json"]  # fmt: skip
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    assert "plan: 200 environment steps, the first 200 a warm-up (no updates)" in err


def test_env_is_required(capsys):
    assert cli_main(["train", "--total-steps", "100"]) == 2
    assert "--env is required" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--algo", "mql", "--fixed-lambda", "0.3"], "use --algo mql-fixed-lambda"),
        (["--replay-size", "8"], "replay_size (8) must be at least batch_size (16)"),
        (["--history-len", "30"], "history_len (30) exceeds the point-robot episode length"),
        (["--seed", "-3"], "seed must be >= 0"),
        (["--task-seed", "-1"], "task_seed must be >= 0"),
    ],
)
def test_configs_that_cannot_be_meant(tmp_path, capsys, extra, message):
    run = tmp_path / "run"
    argv = ["train", *TINY, "--total-steps", "2000", *extra, "--run-dir", str(run)]
    assert cli_main(argv) == 2
    assert message in one_line_error(capsys.readouterr().err)
    assert not run.exists()  # nothing written before validation


def test_step_counts_in_float_notation():
    base = registry.resolve("point-robot", "mql")
    argv = integral_floats(["--total-steps", "1e6", "--eval-every=2e3", "--lr", "1e-3"], base)
    assert argv == ["--total-steps", "1000000", "--eval-every=2000", "--lr", "1e-3"]
    args = parse_train_args(["--total-steps", "2.5e5"], base)
    assert args.config.total_steps == 250_000


@pytest.mark.parametrize("where", ["/proc/mql-x", "file"])
def test_unusable_run_directories_are_one_line_errors(tmp_path, capsys, where):
    target = Path(where) if where.startswith("/") else tmp_path / "a-file"
    if where == "file":
        target.write_text("not a directory")
    argv = ["train", *TINY, "--total-steps", "2000", "--run-dir", str(target)]
    assert cli_main(argv) == 2
    assert "run directory" in one_line_error(capsys.readouterr().err)


def test_a_run_interrupted_before_its_first_checkpoint_can_be_rerun_or_resumed(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = registry.resolve("point-robot", "td3-context")
    runs.create(run, cfg)  # what an interrupted run leaves: config.json, maybe empty logs
    (run / runs.METRICS).write_text("env_steps,iteration\n20,1\n")
    assert runs.never_checkpointed(run)
    argv = ["train", *TINY, "--total-steps", "200", "--eval-every", "200", "--run-dir",
            str(run), "--quiet", "--allow-warmup-only", "--json"]  # fmt: skip
    assert cli_main(argv) == 0
    assert "starting it afresh" in capsys.readouterr().err
    assert (run / runs.CHECKPOINT).is_file()
    # and --resume on such a directory starts it too (with its own stored config)
    fresh = tmp_path / "fresh"
    runs.create(fresh, registry.resolve("point-robot", "td3-context", **_tiny_values()))
    assert cli_main(["train", "--resume", str(fresh), "--quiet", "--json"]) == 0
    assert (fresh / "final_eval.json").is_file()
    # a directory with evaluations but no checkpoint is damaged, not new: refused
    (fresh / runs.CHECKPOINT).unlink()
    assert not runs.never_checkpointed(fresh)
    assert cli_main(["train", "--resume", str(fresh), "--quiet"]) == 2


def _tiny_values() -> dict:
    return dict(hidden=(8, 8), history_len=2, context_dim=4, gru_kernel="xla", batch_size=16,
                num_initial_steps=1, num_train_steps=2, num_tasks_sample=1, small_buffer=0,
                replay_size=3000, updates_per_call=2, eval_tasks=1, eval_train_tasks=0,
                eval_episodes=1, total_steps=1700, eval_every=1700)  # fmt: skip


def test_resume_purges_tensorboard_events_after_the_checkpoint(tmp_path, monkeypatch):
    seen: list[int | None] = []
    real = runs.Logger

    def logger(path, tensorboard=True, purge_step=None, wandb_config=None):
        seen.append(purge_step)
        return real(path, tensorboard, purge_step, wandb_config)

    monkeypatch.setattr(runs, "Logger", logger)
    run = tmp_path / "run"
    argv = ["train", *TINY, "--total-steps", "200", "--eval-every", "100", "--run-dir",
            str(run), "--quiet", "--allow-warmup-only", "--json"]  # fmt: skip
    assert cli_main(argv) == 0
    assert cli_main(["train", "--resume", str(run), "--total-steps", "300", "--quiet"]) == 0
    assert seen[0] is None and seen[1] is not None and seen[1] > 200


def test_a_seed_group_stops_on_sigint_to_its_parent_and_resumes_in_one_command(tmp_path):
    root = tmp_path / "group"
    cmd = [sys.executable, "-m", "mql.cli", "train", *TINY, "--total-steps", "60000",
           "--eval-every", "1700", "--seeds", "0", "1", "--jobs", "2",
           "--run-dir", str(root)]  # fmt: skip
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    ckpts = [root / f"point-robot__td3-context__seed{s}" / runs.CHECKPOINT for s in (0, 1)]
    while time.time() < deadline and not all(c.is_file() for c in ckpts):
        time.sleep(0.5)
    assert all(c.is_file() for c in ckpts), parent.communicate(timeout=60)
    parent.send_signal(signal.SIGINT)  # the parent alone, as `kill -INT PID` does
    _, err = parent.communicate(timeout=120)
    assert parent.returncode == 130, err
    assert "interrupted" in err
    children = subprocess.run(
        ["pgrep", "-f", "--", f"--run-dir {root}"], capture_output=True, text=True
    )
    assert children.stdout.strip() == "", "children kept training"
    assert not any((c.parent.parent / "final_eval.json").exists() for c in ckpts)
    # one command resumes the whole group, to a budget beyond either seed's progress (on loaded
    # cores one seed can be several evaluations ahead when the other's first checkpoint lands)
    reached = max(int(runs.read_csv(c.parent.parent / runs.EVAL)[-1]["env_steps"]) for c in ckpts)
    resume = [sys.executable, "-m", "mql.cli", "train", "--resume", str(root), "--quiet",
              "--total-steps", str(reached + 1700)]  # fmt: skip
    proc = subprocess.run(resume, capture_output=True, text=True, timeout=600,
                          env={**os.environ})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert all((c.parent.parent / "final_eval.json").is_file() for c in ckpts)


def test_wandb_offline_logs_the_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    argv = ["train", *TINY, "--total-steps", "200", "--eval-every", "100", "--run-dir",
            str(run), "--quiet", "--allow-warmup-only", "--wandb", "--json"]  # fmt: skip
    assert cli_main(argv) == 0
    assert (run / runs.WANDB_ID).is_file()
    offline = list((run / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and any(offline[0].glob("*.wandb")), offline


def test_wandb_missing_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runs, "wandb_available", lambda: False)
    argv = ["train", *TINY, "--total-steps", "2000", "--run-dir", str(tmp_path / "r"), "--wandb"]
    assert cli_main(argv) == 2
    assert "pip install -e '.[wandb]'" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "abc"], "Error parsing --lr: could not convert string to float: 'abc'"),
        (["--total-steps", "2.5"], "Error parsing --total-steps"),
        (["--context-mode", "foo"], "invalid choice 'foo' for argument '--context-mode'"),
    ],
)
def test_parse_errors_are_one_line(tmp_path, capsys, extra, message):
    assert cli_main(["train", *TINY, *extra, "--run-dir", str(tmp_path / "r")]) == 2
    assert message in one_line_error(capsys.readouterr().err)


def test_resume_with_other_flags_is_one_line(tmp_path, capsys):
    assert cli_main(["train", "--resume", str(tmp_path), "--lr", "0.1"]) == 2
    assert "got --lr 0.1" in one_line_error(capsys.readouterr().err)


def test_logger_keeps_nan_in_the_csv_but_not_in_tensorboard(tmp_path):
    """A standard error over one task is NaN: the CSV records it, TensorBoard (which warns on
    every NaN) gets only the finite values."""
    logged: list[str] = []

    class Recorder:
        def add_scalar(self, key, value, step):
            logged.append(key)

    log = runs.Logger(tmp_path, tensorboard=False)
    log._tb = Recorder()
    log.log_eval(100, {"test/zero_shot_return": 1.5, "test/paired_difference_se": math.nan}, {})
    assert logged == ["eval/test/zero_shot_return"]
    text = (tmp_path / "eval.csv").read_text()
    assert "test/paired_difference_se" in text and "nan" in text

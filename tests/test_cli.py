"""The `mql` command line: listing, bad input, run directories, exact resume, eval, plot, seeds.

Input errors are checked in-process through `mql.cli.main` (they fail before any training);
training runs are real `python -m mql.cli` child processes on tiny point-robot settings that
share the test session's JAX compilation cache, so only the first one pays for compiling.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mql import runs
from mql.cli import main as cli_main

TINY = [
    "--env", "point-robot", "--algo", "mql", "--seed", "3",
    "--eval-tasks", "2", "--eval-train-tasks", "1", "--eval-episodes", "1",
    "--eq18-updates", "2", "--eq19-updates", "5", "--eq19-batch", "32",
    "--replay-size", "5000", "--num-initial-steps", "20", "--num-train-steps", "20",
    "--updates-per-call", "5", "--quiet", "--allow-warmup-only",
]  # fmt: skip
# One iteration of point-robot collects 5 episodes of 20 steps: evaluations at 200, 400, 600.
N, EVAL_EVERY = 300, 200
TIMING_PREFIXES = ("time/", "wall_s", "steps_per_s")


def jax_cache_env(tmp_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of the child processes: the test session's JAX compilation cache (set up by
    conftest.py; MQL_TEST_JAX_CACHE keeps one across sessions), shared by all of them."""
    import jax

    cache = (
        os.environ.get("MQL_TEST_JAX_CACHE")
        or getattr(jax.config, "jax_compilation_cache_dir", None)
        or str(tmp_factory.getbasetemp() / "jax-cache")
    )
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    return jax_cache_env(tmp_path_factory)


def mql(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mql.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=900,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory, by relative path."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


def one_line_error(err: str, command: str) -> str:
    err = err.strip()
    assert err.startswith(f"mql {command}: error: "), err
    assert "\n" not in err, err
    return err


def without_timing(path: Path) -> list[dict[str, str]]:
    return [
        {k: v for k, v in row.items() if not k.startswith(TIMING_PREFIXES)}
        for row in runs.read_csv(path)
    ]


@pytest.fixture(scope="module")
def full_run(env, tmp_path_factory) -> Path:
    """2N steps in one go (seed 3)."""
    run_dir = tmp_path_factory.mktemp("cli") / "full"
    ok(mql(env, "train", *TINY, "--total-steps", str(2 * N), "--eval-every", str(EVAL_EVERY),
           "--run-dir", str(run_dir)))  # fmt: skip
    return run_dir


# ---------------------------------------------------------------- fast, in-process checks


def test_envs_lists_every_family(capsys) -> None:
    import mql.envs

    assert cli_main(["envs"]) == 0
    out = capsys.readouterr().out
    for name in mql.envs.names():
        assert name in out


def test_no_command_and_unknown_command(capsys) -> None:
    assert cli_main([]) == 2
    assert cli_main(["--help"]) == 0
    capsys.readouterr()
    assert cli_main(["trian"]) == 2
    assert "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "no-such-env"], "unknown environment 'no-such-env'"),
        (["--env", "point-robot", "--algo", "no-such-algo"], "unknown algo 'no-such-algo'"),
        (["--env", "point-robot", "--preset", "no-such-preset"], "unknown preset"),
        (["--env", "point-robot", "--lr", "-1"], "lr must be > 0"),
        (["--env", "point-robot", "--total-steps", "0"], "total_steps must be positive"),
        (["--env", "point-robot", "--eval-every", "-5"], "eval_every must be positive"),
    ],
)  # fmt: skip
def test_bad_train_input_is_exit_2_one_line(tmp_path, capsys, args, message) -> None:
    run_dir = tmp_path / "run"
    assert cli_main(["train", *args, "--run-dir", str(run_dir), "--quiet"]) == 2
    assert message in one_line_error(capsys.readouterr().err, "train")
    assert not run_dir.exists()


def test_fixed_lambda_algo_resolves(tmp_path, capsys) -> None:
    argv = ["train", "--env", "point-robot", "--algo", "mql-fixed-lambda", "--fixed-lambda",
            "-1", "--run-dir", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    assert cli_main(argv) == 2
    assert "fixed_lambda must be >= 0" in one_line_error(capsys.readouterr().err, "train")


def test_unknown_config_flag_fails(tmp_path, capsys) -> None:
    code = cli_main(["train", "--env", "point-robot", "--no-such-flag", "1",
                     "--run-dir", str(tmp_path / "run")])  # fmt: skip
    assert code not in (0, None)
    assert "Unrecognized options: --no-such-flag" in one_line_error(
        capsys.readouterr().err, "train"
    )
    assert not (tmp_path / "run").exists()


def test_eval_and_resume_of_a_missing_directory(tmp_path, capsys) -> None:
    assert cli_main(["eval", str(tmp_path / "nope")]) == 2
    one_line_error(capsys.readouterr().err, "eval")
    assert cli_main(["train", "--resume", str(tmp_path / "nope")]) == 2
    one_line_error(capsys.readouterr().err, "train")


def test_plot_of_an_empty_directory_writes_nothing(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    out = tmp_path / "curves.png"
    assert cli_main(["plot", str(tmp_path / "empty"), "--out", str(out)]) == 2
    one_line_error(capsys.readouterr().err, "plot")
    assert not out.exists()


# ----------------------------------------------------------- with tiny training runs


def test_train_writes_a_run_directory(full_run: Path) -> None:
    for name in ("config.json", "metrics.csv", "eval.csv", "final_eval.json", "checkpoints"):
        assert (full_run / name).exists(), name
    rows = runs.read_csv(full_run / "eval.csv")
    assert [int(float(r["env_steps"])) for r in rows] == [200, 400, 600]
    assert json.loads((full_run / "config.json").read_text())["config"]["total_steps"] == 2 * N


def test_existing_run_directory_is_refused_and_untouched(full_run: Path, capsys) -> None:
    before = snapshot(full_run)
    argv = ["train", *TINY, "--total-steps", "100", "--run-dir", str(full_run)]
    assert cli_main(argv) == 2
    assert "already exists" in one_line_error(capsys.readouterr().err, "train")
    assert snapshot(full_run) == before


def test_a_run_directory_in_use_is_refused_and_untouched(
    full_run: Path, tmp_path: Path, capsys
) -> None:
    """While a process trains in a run directory (holds its lock), a resume, an overwrite, and
    a fresh start over a directory not yet checkpointed are refused in one line; once the
    holder ends, the lock file it leaves does not count."""
    run_dir = tmp_path / "run"
    shutil.copytree(full_run, run_dir)
    fresh = tmp_path / "fresh"  # a run interrupted (or still running) before its first checkpoint
    skip = shutil.ignore_patterns("checkpoints", "eval*", "final*")
    shutil.copytree(full_run, fresh, ignore=skip)
    assert runs.never_checkpointed(fresh)
    attempts = [
        ["train", "--resume", str(run_dir), "--total-steps", "900", "--quiet"],
        ["train", *TINY, "--total-steps", "100", "--run-dir", str(run_dir), "--overwrite"],
        ["train", *TINY, "--total-steps", "100", "--run-dir", str(fresh)],
        ["train", "--resume", str(fresh), "--quiet"],
    ]
    with runs.holding_lock(run_dir), runs.holding_lock(fresh):
        before = snapshot(run_dir), snapshot(fresh)
        for argv in attempts:
            assert cli_main(argv) == 2
            err = one_line_error(capsys.readouterr().err, "train")
            assert f"is in use by another mql process (pid {os.getpid()})" in err, err
        assert (snapshot(run_dir), snapshot(fresh)) == before
    runs.ensure_free(run_dir)  # released: the stale lock file is no obstacle
    with runs.holding_lock(run_dir):
        pass


def test_exact_resume(env, full_run: Path, tmp_path: Path) -> None:
    """N steps, then --resume to 2N: the same logs as 2N in one go (timing columns aside)."""
    part = tmp_path / "part"
    ok(mql(env, "train", *TINY, "--total-steps", str(N), "--eval-every", str(EVAL_EVERY),
           "--run-dir", str(part)))  # fmt: skip
    assert [r["env_steps"] for r in runs.read_csv(part / "eval.csv")] == ["200"]
    proc = ok(
        mql(env, "train", "--resume", str(part), "--total-steps", str(2 * N), "--quiet", "--json")
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1])["run_dir"] == str(part)

    for name in ("eval.csv", "metrics.csv"):
        resumed, single = without_timing(part / name), without_timing(full_run / name)
        assert len(resumed) == len(single) > 0, name
        for i, (a, b) in enumerate(zip(resumed, single, strict=True)):
            assert a == b, f"{name} row {i} differs"
    final = json.loads((part / "final_eval.json").read_text())
    assert final == json.loads((full_run / "final_eval.json").read_text())
    config = json.loads((part / "config.json").read_text())["config"]
    assert config["total_steps"] == 2 * N


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_broken_checkpoint_is_exit_2_and_logs_untouched(
    full_run: Path, tmp_path: Path, capsys, damage: str
) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(full_run, run_dir)
    ckpt = run_dir / runs.CHECKPOINT
    if damage == "truncated":
        data = ckpt.read_bytes()
        ckpt.write_bytes(data[: len(data) // 2])
    else:
        ckpt.unlink()
    before = snapshot(run_dir)

    assert cli_main(["eval", str(run_dir)]) == 2
    err = one_line_error(capsys.readouterr().err, "eval")
    assert "checkpoint" in err or "corrupt" in err
    assert cli_main(["train", "--resume", str(run_dir), "--total-steps", "900", "--quiet"]) == 2
    err = one_line_error(capsys.readouterr().err, "train")
    assert "checkpoint" in err or "corrupt" in err
    assert snapshot(run_dir) == before


def test_eval_json(env, full_run: Path) -> None:
    before = snapshot(full_run)
    proc = ok(mql(env, "eval", str(full_run), "--json"))
    result = json.loads(proc.stdout)
    assert result["env_steps"] == 2 * N
    assert result["split"] == "test"
    summary = result["summary"]
    for key in ("test/zero_shot_return", "test/adapted_return"):
        assert isinstance(summary[key], float)
    assert len(result["tasks"]) == 20  # all test tasks of point-robot
    assert snapshot(full_run) == before


def test_plot_of_a_run_directory(full_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "curves.png"
    assert cli_main(["plot", str(full_run), "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "curves_lambda_beta.png").read_bytes()[:4] == b"\x89PNG"


def test_seeds_make_one_run_directory_each(env, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    ok(mql(env, "train", *TINY, "--seeds", "0", "1", "--total-steps", "200",
           "--eval-every", "200", "--run-dir", str(root)))  # fmt: skip
    for seed in (0, 1):
        run_dir = root / f"point-robot__mql__seed{seed}"
        config = json.loads((run_dir / "config.json").read_text())["config"]
        assert config["seed"] == seed
        assert len(runs.read_csv(run_dir / "eval.csv")) == 1
        assert (run_dir / "final_eval.json").is_file()
    a, b = (runs.read_csv(root / f"point-robot__mql__seed{s}" / "eval.csv") for s in (0, 1))
    assert a[0]["test/zero_shot_return"] != b[0]["test/zero_shot_return"]


def test_output_into_a_closed_pipe_is_no_traceback():
    """`mql envs | head -1`: the reader leaves early; mql exits quietly (status 141)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mql.cli", "envs"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before mql (still importing) writes its table
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("se", "expected"),
    [(0.25, "  adapted - zero-shot     1.50 ± 0.25 (paired episodes; 200 new-task steps)"),
     (float("nan"), "  adapted - zero-shot     1.50 (one task: no standard error) (paired "
      "episodes; 200 new-task steps)")],
)  # fmt: skip
def test_final_summary_lines(capsys, se: float, expected: str) -> None:
    """The final evaluation's lines; one task has no standard error (no "± nan")."""
    from mql.cli import _print_final

    summary = {
        "test/zero_shot_return": -10.0,
        "test/adapted_return": -8.5,
        "test/paired_difference": 1.5,
        "test/paired_difference_se": se,
        "test/new_task_steps": 200.0,
    }
    _print_final(Path("run"), summary, as_json=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:3] == ["  zero-shot return      -10.00", "  adapted return         -8.50"]
    assert lines[3] == expected

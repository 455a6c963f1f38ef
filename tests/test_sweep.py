"""`mql sweep`: grid building and up-front validation, and a real local Ray sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mql import runs, sweep
from mql.cli import main as cli_main
from mql.config import MQLConfig, resolve, to_dict

# Tiny point-robot trials (one iteration is 5 episodes of 20 steps).
TINY_SET = [
    "--set", "eval_every=200", "--set", "eval_tasks=2", "--set", "eval_train_tasks=1",
    "--set", "eval_episodes=1", "--set", "eq18_updates=2", "--set", "eq19_updates=5",
    "--set", "eq19_batch=32", "--set", "replay_size=5000", "--set", "num_initial_steps=20",
    "--set", "num_train_steps=20", "--set", "updates_per_call=5",
]  # fmt: skip


def test_parse_set_types() -> None:
    raw = sweep.parse_set(
        ["lr=1e-3,3e-4", "eq19-updates=100,2e2", "hidden=64:64,32x32x32",
         "fixed_lambda=None,0.5", "context_mode=shared", "adapt_lr=none"]
    )  # fmt: skip
    assert raw[1] == ("eq19_updates", ["100", "2e2"])
    sets = dict(sweep.typed_sets(MQLConfig, raw, "mql"))
    assert sets["lr"] == [1e-3, 3e-4]
    assert sets["eq19_updates"] == [100, 200] and all(type(v) is int for v in sets["eq19_updates"])
    assert sets["hidden"] == [(64, 64), (32, 32, 32)]
    assert sets["fixed_lambda"] == [None, 0.5]
    assert sets["context_mode"] == ["shared"]
    assert sets["adapt_lr"] == [None]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("lrr=1", "unknown config field 'lrr'"),
        ("lr=fast", "expected a number"),
        ("eq19_updates=1.5", "expected an integer"),
        ("context_mode=both", "expected one of"),
        ("lr", "expected key=value"),
        ("lr=1e-3,", "expected key=value"),
        ("eq19_updates=many", "expected an integer"),
        ("seed=1,2", "use --seeds"),
        ("total_steps=5", "use --total-steps"),
    ],
)
def test_parse_set_errors(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sweep.typed_sets(MQLConfig, sweep.parse_set([item]), "mql")


def test_grid_names_and_commands(tmp_path: Path) -> None:
    sets = sweep.parse_set(["lr=1e-3,3e-4", "eval_every=200"])
    trials = sweep.build_grid(
        ["point-robot"], ["mql", "td3"], [0, 1], sets, "paper", tmp_path, 400, False, True
    )
    assert len(trials) == 2 * 2 * 2
    names = {t.name for t in trials}
    assert len(names) == 8
    # Only the swept key is in the name; single values are in the config (checked on reuse).
    assert "point-robot__mql__lr=0.0003__seed1" in names
    t = trials[0]
    assert t.config.total_steps == 400 and t.config.eval_every == 200
    assert t.argv[-4:-2] == ["--run-dir", str((tmp_path / t.name).absolute())]
    assert t.argv[-1] == "--allow-warmup-only"  # 400 steps end inside the 3200-step warm-up
    sweep.check_argv(trials)  # `mql train` parses every command line to the same config
    # Without --set the names are `mql train`'s defaults.
    (plain,) = sweep.build_grid(["point-robot"], ["mql"], [2], [], "paper", tmp_path, None, False)
    assert plain.run_dir == runs.default_run_dir(plain.config, tmp_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--envs", "point-robt"], "unknown environment 'point-robt'"),
        (["--envs", "point-robot", "--algos", "mql", "tdd3"], "unknown algo 'tdd3'"),
        (["--envs", "point-robot", "--preset", "nope"], "unknown preset"),
        (["--envs", "point-robot", "--set", "lr=1e-3,-1"], "lr must be > 0"),
        (["--envs", "point-robot", "--set", "nope=1"], "unknown config field"),
        (["--envs", "point-robot", "--total-steps", "0"], "--total-steps must be positive"),
        (["--envs", "point-robot", "--seeds", "1", "1"], "lists a value twice"),
        (["--envs", "point-robot", "--num-cpus", "0"], "--num-cpus must be positive"),
    ],
)
def test_bad_sweeps_fail_before_anything_runs(tmp_path, capsys, args, message) -> None:
    root = tmp_path / "runs"
    assert cli_main(["sweep", *args, "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mql sweep: error: ") and "\n" not in err, err
    assert message in err
    assert not root.exists()


def test_dry_run_prints_train_commands(tmp_path, capsys) -> None:
    argv = ["sweep", "--envs", "point-robot", "--algos", "mql", "td3-context", "--seeds", "0",
            "--root", str(tmp_path), "--dry-run"]  # fmt: skip
    assert cli_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("mql train --env point-robot") for line in lines)
    assert list(tmp_path.iterdir()) == []


def _fake_run(run_dir: Path, **overrides) -> None:
    cfg = resolve("point-robot", "mql", **overrides)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"config": to_dict(cfg)}))
    (run_dir / "final_eval.json").write_text(
        json.dumps({"env_steps": 200, "summary": {"test/zero_shot_return": -12.5}})
    )


def test_existing_runs_are_skipped_without_ray(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # nothing is left to run: Ray is not needed
    _fake_run(tmp_path / "point-robot__mql__seed0", seed=0, total_steps=200)
    argv = ["sweep", "--envs", "point-robot", "--seeds", "0", "--total-steps", "200",
            "--root", str(tmp_path), "--allow-warmup-only"]  # fmt: skip
    assert cli_main(argv) == 0
    out, err = capsys.readouterr()
    assert "skipped" in err
    assert "skipped (exists)" in out and "-12.50" in out


def test_existing_run_with_another_config_is_an_error(tmp_path, capsys) -> None:
    _fake_run(tmp_path / "point-robot__mql__seed0", seed=0, lr=0.01)
    assert cli_main(["sweep", "--envs", "point-robot", "--root", str(tmp_path)]) == 2
    assert "exists with another config: lr=0.01" in capsys.readouterr().err


def test_a_budget_inside_the_warm_up_is_refused_before_ray(tmp_path, capsys) -> None:
    argv = ["sweep", "--envs", "point-robot", "--total-steps", "100", "--root", str(tmp_path)]
    assert cli_main(argv) == 2
    assert "ends inside the warm-up" in capsys.readouterr().err


def test_missing_ray_is_a_clear_error(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    argv = ["sweep", "--envs", "point-robot", "--total-steps", "100", "--root", str(tmp_path),
            "--allow-warmup-only"]  # fmt: skip
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"mql sweep: error: {sweep.RAY_MISSING}"


def test_local_ray_sweep(tmp_path_factory, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    import jax

    cache = (  # the test session's JAX compilation cache, as in tests/test_cli.py
        os.environ.get("MQL_TEST_JAX_CACHE")
        or getattr(jax.config, "jax_compilation_cache_dir", None)
        or str(tmp_path_factory.getbasetemp() / "jax-cache")
    )
    env = {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    root = tmp_path / "runs"
    cmd = [sys.executable, "-m", "mql.cli", "sweep", "--envs", "point-robot", "--algos", "mql",
           "--seeds", "0", "1", "--total-steps", "200", *TINY_SET, "--root", str(root),
           "--num-cpus", "2", "--allow-warmup-only"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for seed in (0, 1):
        run_dir = root / f"point-robot__mql__seed{seed}"
        rows = runs.read_csv(run_dir / "eval.csv")
        assert [r["env_steps"] for r in rows] == ["200"]
        final = json.loads((run_dir / "final_eval.json").read_text())
        assert final["env_steps"] == 200
        assert json.loads((run_dir / "config.json").read_text())["config"]["seed"] == seed
        assert (root / "logs" / f"{run_dir.name}.log").is_file()
        assert str(run_dir) in proc.stdout
    table = [line for line in proc.stdout.splitlines() if "point-robot__mql__seed" in line]
    assert len(table) == 2 and all(" ok " in line for line in table)

    # Run again: both trials exist and are skipped (without starting Ray).
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("skipped (exists)") == 2
    assert os.path.getsize(root / "point-robot__mql__seed0" / "final_eval.json") > 0

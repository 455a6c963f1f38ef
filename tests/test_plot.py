"""`mql plot`: run discovery, seed alignment, bootstrap bands, figures and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mql import plot, results
from mql.cli import main as cli_main
from mql.config import resolve, to_dict


def make_run(
    path: Path,
    env: str = "point-robot",
    algo: str = "mql",
    seed: int = 0,
    steps: list[int] | None = None,
    adapts: bool | None = None,
    **overrides,
) -> Path:
    """A synthetic run directory: config.json and an eval.csv shaped like train.py's."""
    cfg = resolve(env, algo, seed=seed, **overrides)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"config": to_dict(cfg)}))
    steps = steps or [2000 * (i + 1) for i in range(10)]
    adapts = cfg.adapts if adapts is None else adapts
    rng = np.random.default_rng(seed + 100 * len(algo))
    rows = []
    for i, s in enumerate(steps):
        zs = -40 + 25 * (1 - np.exp(-i / 4)) + rng.normal(0, 2)
        row = {"env_steps": s, "test/zero_shot_return": zs, "train/zero_shot_return": zs + 1}
        if adapts:
            lam = 0.6 * np.exp(-i / 5) + 0.1 + rng.normal(0, 0.02)
            row |= {
                "test/adapted_return": zs + 4 + rng.normal(0, 1),
                "test/lambda": lam,
                "test/ess": 1 - lam,
                "test/beta_mean": 0.4 + 0.03 * i + rng.normal(0, 0.02),
            }
        rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with (path / "eval.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def sweep_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for env in ("point-robot", "sparse-point-robot"):
        for algo in ("mql", "td3-context"):
            for seed in range(3):
                make_run(root / f"{env}__{algo}__seed{seed}", env, algo, seed)
    return root


def test_find_run_dirs_one_and_two_levels(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "group" / "b")
    c = make_run(tmp_path / "group" / "sub" / "c")
    make_run(tmp_path / "deep" / "x" / "y" / "z")  # three levels: not searched
    assert results.find_run_dirs([a]) == [a]
    assert sorted(results.find_run_dirs([tmp_path / "group"])) == sorted([b, c])
    assert sorted(results.find_run_dirs([tmp_path])) == sorted([a, b])
    assert results.find_run_dirs([a, a]) == [a]
    with pytest.raises(ValueError, match="does not exist"):
        results.find_run_dirs([tmp_path / "nope"])
    with pytest.raises(ValueError, match="no run directories"):
        results.find_run_dirs([tmp_path / "deep"])


def test_align_shared_steps_and_interpolation() -> None:
    x = np.array([100.0, 200.0, 300.0])
    grid, vals = plot.align([(x, np.array([1.0, 2.0, 3.0])), (x[:2], np.array([5.0, 6.0]))])
    assert grid.tolist() == [100.0, 200.0]
    assert vals.tolist() == [[1.0, 2.0], [5.0, 6.0]]
    # Evaluation steps that differ between seeds (episodes of random length): interpolated
    # onto the densest seed's steps inside the range every seed covers.
    grid, vals = plot.align(
        [
            (np.array([100.0, 210.0, 320.0]), np.array([0.0, 11.0, 22.0])),
            (np.array([110.0, 200.0, 300.0, 400.0]), np.array([1.0, 10.0, 20.0, 30.0])),
        ]
    )
    assert grid.tolist() == [110.0, 200.0, 300.0]
    np.testing.assert_allclose(vals, [[1.0, 10.0, 20.0], [1.0, 10.0, 20.0]])


def test_align_takes_evaluations_within_one_percent_as_one_point() -> None:
    """Iterations overshoot the evaluation period: "300k" came at 300,237, 300,331 and 300,781
    steps in three seeds, one of which evaluated only there. That is one point, each seed at its
    nearest evaluation; seeds 2% apart are not."""
    grid, vals = plot.align(
        [
            (np.array([100_082.0, 200_884.0, 300_237.0]), np.array([1.0, 2.0, 3.0])),
            (np.array([300_331.0]), np.array([7.0])),
            (np.array([100_000.0, 200_000.0, 300_781.0]), np.array([4.0, 5.0, 6.0])),
        ]
    )
    assert grid.tolist() == [300_237.0]
    np.testing.assert_allclose(vals[:, 0], [3.0, 7.0, 5.0 + (100_237 / 100_781)])
    grid, _ = plot.align(
        [(np.array([100.0, 200.0]), np.array([1.0, 2.0])), (np.array([204.5]), np.array([3.0]))]
    )
    assert grid.tolist() == []


def test_bootstrap_ci_is_seeded_and_covers_the_mean() -> None:
    vals = np.random.default_rng(1).normal(size=(5, 7))
    lo, hi = plot.bootstrap_ci(vals)
    lo2, hi2 = plot.bootstrap_ci(vals)
    assert np.array_equal(lo, lo2) and np.array_equal(hi, hi2)
    mean = vals.mean(axis=0)
    assert np.all(lo <= mean) and np.all(mean <= hi) and np.all(lo < hi)
    same = np.ones((4, 3))
    lo, hi = plot.bootstrap_ci(same)
    assert np.allclose(lo, 1) and np.allclose(hi, 1)


def test_groups_split_by_swept_config_values(tmp_path: Path) -> None:
    runs_ = [
        results.load_run(make_run(tmp_path / f"lr{lr}_s{s}", seed=s, lr=lr))
        for lr in (1e-3, 3e-4)
        for s in (0, 1)
    ]
    runs_.append(results.load_run(make_run(tmp_path / "td3", algo="td3")))
    groups = results.group_runs(runs_)
    labels = sorted(g.label for g in groups)
    # variants are found within an algorithm: td3 has one run, so its label is plain
    assert labels == ["mql (lr=0.0003)", "mql (lr=0.001)", "td3"]
    assert all(len(g.runs) == 2 for g in groups if g.algo == "mql")


def test_the_evaluation_schedule_is_not_a_variant(tmp_path: Path) -> None:
    """Runs evaluated batched, one task at a time, or saved before the field existed are one
    group: the schedules compute the same evaluation."""
    a = make_run(tmp_path / "a", seed=0, eval_batched=True)
    b = make_run(tmp_path / "b", seed=1, eval_batched=False)
    stored = json.loads((b / "config.json").read_text())
    del stored["config"]["eval_batched"]
    (b / "config.json").write_text(json.dumps(stored))
    c = make_run(tmp_path / "c", seed=2, lr=3e-4)
    groups = results.group_runs([results.load_run(d) for d in (a, b, c)])
    assert sorted((g.label, len(g.runs)) for g in groups) == [
        ("mql (lr=0.0003)", 1),
        ("mql (lr=0.001)", 2),
    ]


def test_plot_writes_both_figures(sweep_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "figs" / "curves.png"
    assert plot.main([str(sweep_root), "--out", str(out)]) == 0
    second = tmp_path / "figs" / "curves_lambda_beta.png"
    for f in (out, second):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out.split()
    assert printed == [str(out), str(second)]


def test_plot_single_seed_and_no_lambda(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", algo="td3-context")
    out = tmp_path / "c.png"
    assert plot.main([str(run), "--out", str(out), "--split", "train"]) == 0
    assert out.is_file()
    assert not (tmp_path / "c_lambda_beta.png").exists()  # td3-context logs no λ, β


def test_run_without_eval_rows_is_left_out(tmp_path: Path, capsys) -> None:
    make_run(tmp_path / "runs" / "good")
    empty = tmp_path / "runs" / "new"
    empty.mkdir()
    (empty / "config.json").write_text((tmp_path / "runs" / "good" / "config.json").read_text())
    out = tmp_path / "c.png"
    assert plot.main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert out.is_file()
    assert "left out" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "empty_dir", "no_eval", "header_only", "bad_out"])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, capsys, case: str) -> None:
    target = tmp_path / "in"
    out = tmp_path / "out.png"
    if case == "empty_dir":
        target.mkdir()
    elif case in ("no_eval", "header_only", "bad_out"):
        make_run(target)
        if case == "no_eval":
            (target / "eval.csv").unlink()
        elif case == "header_only":
            header = (target / "eval.csv").read_text().splitlines()[0]
            (target / "eval.csv").write_text(header + "\n")
        else:
            out = tmp_path / "out.nope"
    assert cli_main(["plot", str(target), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mql plot: error: ") and "\n" not in err
    assert list(tmp_path.glob("out*")) == []


def test_runs_stored_before_eval_protocol_group_with_paired_ones(tmp_path: Path) -> None:
    """A config saved before `eval_protocol` existed evaluated with the paired protocol: it is
    the same experiment as one saved with "paired", and a different one from "metaworld"."""
    old = make_run(tmp_path / "old", seed=0)
    stored = json.loads((old / "config.json").read_text())
    del stored["config"]["eval_protocol"]
    (old / "config.json").write_text(json.dumps(stored))
    new = make_run(tmp_path / "new", seed=1, eval_protocol="paired")
    mw = make_run(tmp_path / "mw", seed=2, eval_protocol="metaworld", eval_episodes=3)
    groups = results.group_runs([results.load_run(d) for d in (old, new, mw)])
    assert sorted((g.label, len(g.runs)) for g in groups) == [
        ("mql (eval_episodes=2, eval_protocol=paired)", 2),
        ("mql (eval_episodes=3, eval_protocol=metaworld)", 1),
    ]


def test_log_steps_axis_leaves_out_step_zero(tmp_path: Path) -> None:
    """`--log-steps`: a log steps axis on which an evaluation at step 0 has no point, while
    every later evaluation is drawn where it was taken."""
    steps = [0, 1_000, 10_000, 100_000, 1_000_000]
    run = make_run(tmp_path / "run", steps=steps)
    groups = results.group_runs([results.load_run(run)])
    fig = plot.return_figure(groups, "test", 50, log_steps=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    drawn = [line.get_xdata() for line in ax.get_lines()]
    assert len(drawn) == 2  # zero-shot and adapted, one seed
    for xs in drawn:
        np.testing.assert_array_equal(xs, steps[1:])
    linear = plot.return_figure(groups, "test", 50).axes[0]
    assert linear.get_xscale() == "linear"
    np.testing.assert_array_equal(linear.get_lines()[0].get_xdata(), steps)
    out = tmp_path / "log.png"
    assert plot.main([str(run), "--out", str(out), "--log-steps"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

"""Kept checkpoints (`checkpoint_every`) and their re-evaluation as a variant (`mql.reeval`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tiny import tiny_config

from mql import driver, runs
from mql.reeval import ReevalError, reevaluate

EVAL = dict(
    eval_tasks=2,
    eval_train_tasks=0,
    eval_episodes=1,
    final_eval_tasks=2,
    eq18_updates=2,
    eq19_updates=2,
    eq19_batch=16,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tiny_config("mql", total_steps=600, eval_every=200, checkpoint_every=200, seed=2, **EVAL)
    run_dir = runs.create(tmp_path_factory.mktemp("reeval") / "run", cfg)
    driver.train(cfg, run_dir, progress=False)
    return run_dir


def _rows(path: Path) -> list[dict[str, str]]:
    return runs.read_csv(path / runs.EVAL)


def test_checkpoint_every_keeps_one_file_per_period(run: Path) -> None:
    assert [s for s, _ in runs.kept_checkpoints(run)] == [200, 400, 600]
    assert (run / runs.CHECKPOINT).is_file()


def test_reevaluating_as_the_runs_own_algorithm_reproduces_its_evaluations(
    run: Path, tmp_path: Path
) -> None:
    out = reevaluate(run, None, tmp_path / "same")
    mine, theirs = _rows(out), _rows(run)
    assert (
        [r["env_steps"] for r in mine] == [r["env_steps"] for r in theirs] == ["200", "400", "600"]
    )
    for a, b in zip(mine, theirs, strict=True):
        for key in ("test/zero_shot_return", "test/adapted_return", "test/lambda"):
            assert a[key] == b[key], key
    final_a = json.loads((out / "final_eval.json").read_text())["summary"]
    final_b = json.loads((run / "final_eval.json").read_text())["summary"]
    assert final_a == final_b
    assert json.loads((out / "config.json").read_text())["reevaluated_from"] == str(run)
    assert not (out / "checkpoints").exists()


def test_variants_share_the_zero_shot_policy_and_differ_in_adaptation(
    run: Path, tmp_path: Path
) -> None:
    ctx = _rows(reevaluate(run, "td3-context", tmp_path / "ctx", final=False))
    fixed = _rows(reevaluate(run, "mql-fixed-lambda", tmp_path / "fixed", final=False))
    own = _rows(run)
    assert [r["test/zero_shot_return"] for r in ctx] == [r["test/zero_shot_return"] for r in own]
    assert all(r.get("test/adapted_return", "") == "" for r in ctx)
    assert all(float(r["test/lambda"]) == 0.5 for r in fixed)
    cfg = json.loads((tmp_path / "fixed" / "config.json").read_text())["config"]
    assert cfg["algo"] == "mql-fixed-lambda"
    some = reevaluate(run, "mql", tmp_path / "some", {"final_eval_tasks": 3}, every=400)
    assert [r["env_steps"] for r in _rows(some)] == ["400"]
    final = json.loads((some / "final_eval.json").read_text())  # evaluated: 3 tasks, not 2
    assert final["env_steps"] == 600 and len(final["results"][0]["tasks"]) == 3


def test_reevaluation_continues_and_refuses_to_mix(run: Path, tmp_path: Path) -> None:
    out = reevaluate(run, "td3-context", tmp_path / "ctx", final=False)
    (out / "evals" / "step_600.json").unlink()  # as if interrupted before the last one
    rows = [r for r in _rows(out) if r["env_steps"] != "600"]
    with (out / runs.EVAL).open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    reevaluate(run, "td3-context", out, final=False)
    assert [r["env_steps"] for r in _rows(out)] == ["200", "400", "600"]
    with pytest.raises(ReevalError, match="holds another evaluation"):
        reevaluate(run, "mql", out, final=False)
    with pytest.raises(ReevalError, match=r"can be evaluated as .*not pearl"):
        reevaluate(run, "pearl", tmp_path / "bad")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    with pytest.raises(ReevalError, match="not a re-evaluation directory"):
        reevaluate(run, "mql", tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "keep me"


def test_every_takes_the_first_kept_checkpoint_past_each_multiple() -> None:
    from mql.reeval import _thin

    kept = [(s, Path(f"step_{s}")) for s in (50725, 100305, 150748, 200100, 250000, 300500)]
    assert [s for s, _ in _thin(kept, 100_000)] == [100305, 200100, 300500]
    assert _thin(kept, 0) == kept

"""Success rates in `mql plot` and `mql report` (families whose episodes report
`info["success"]`, e.g. Meta-World), from synthetic run directories."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mql import plot, report
from mql.cli import main as cli_main
from mql.config import resolve, to_dict
from mql.results import find_run_dirs, group_runs, load_run

CLASSES = ["drawer-open", "door-close"]


def make_run(path: Path, algo: str, seed: int, successes: list[tuple[float, float]]) -> Path:
    """A run directory whose final evaluation scored one task per entry of `successes`
    ((zero-shot, adapted) success rate), the tasks alternating between two classes."""
    cfg = resolve("point-robot", algo, seed=seed)
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"config": to_dict(cfg)}))
    rows = [
        {
            "env_steps": s,
            "test/zero_shot_return": 10.0 * i,
            "test/adapted_return": 10.0 * i + 1,
            "test/zero_shot_success": 0.1 * i,
            "test/adapted_success": 0.1 * i + 0.05,
        }
        for i, s in enumerate((1000, 2000, 3000))
    ]
    with (path / "eval.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    tasks = [
        {
            "task_index": i,
            "task_class": CLASSES[i % 2],
            "zero_shot_return": 1.0,
            "adapted_return": 2.0,
            "paired_difference": 1.0,
            "new_task_steps": 500,
            "zero_shot_success": zs,
            "adapted_success": ad,
            "curve": [
                {"episodes": 0, "return": 1.0, "new_task_steps": 0, "success": zs},
                {"episodes": 2, "return": 2.0, "new_task_steps": 400, "success": ad / 2},
            ],
        }
        for i, (zs, ad) in enumerate(successes)
    ]
    final = {"env_steps": 3000, "results": [{"split": "test", "summary": {}, "tasks": tasks}]}
    (path / "final_eval.json").write_text(json.dumps(final))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_run(root / "a", "mql", 0, [(0.0, 1.0), (0.0, 0.0), (1 / 3, 2 / 3), (0.0, 1 / 3)])
    make_run(root / "b", "mql", 1, [(0.0, 1.0), (1.0, 1.0), (0.0, 0.0), (0.0, 0.0)])
    return root


def test_report_success_columns_and_classes(root: Path) -> None:
    groups = group_runs([load_run(d) for d in find_run_dirs([root])])
    rows = report.report_rows(groups, None, resamples=50)["point-robot"]
    (row,) = rows
    assert row["zero_shot_success"] == pytest.approx((1 / 3 + 1.0) / 8)
    assert row["adapted_success"] == pytest.approx((1 + 2 / 3 + 1 / 3 + 1 + 1) / 8)
    by_class = row["success_by_class"]
    # drawer-open: tasks 0 and 2 of both seeds; door-close: tasks 1 and 3
    assert by_class["drawer-open"]["adapted"] == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    assert by_class["door-close"]["zero_shot"] == pytest.approx((0 + 0 + 1 + 0) / 4)
    text = report.to_markdown({"point-robot": rows}, None)
    assert "success zero-shot | success adapted" in text
    assert f"{100 * row['adapted_success']:.1f}%" in text
    assert "| door-close | 25.0% / 33.3% |" in text  # (0 + 1/3 + 1 + 0) / 4 adapted
    # the success after K new-task episodes, from the final evaluation's curve
    assert row["success_curve"]["0"] == pytest.approx(row["zero_shot_success"])
    assert row["success_curve"]["2"] == pytest.approx(row["adapted_success"] / 2)
    assert "success K=0 | success K=2" in text
    assert f"{100 * row['adapted_success'] / 2:.1f}%" in text


def test_report_without_success_has_no_success_columns(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / "a", "mql", 0, [(0.0, 1.0), (0.0, 0.0)])
    final = json.loads((run / "final_eval.json").read_text())
    for t in final["results"][0]["tasks"]:
        for key in ("zero_shot_success", "adapted_success", "task_class"):
            del t[key]
    (run / "final_eval.json").write_text(json.dumps(final))
    groups = group_runs([load_run(run)])
    rows = report.report_rows(groups, None, resamples=50)["point-robot"]
    assert rows[0]["adapted_success"] is None and not rows[0]["success_by_class"]
    assert "success" not in report.to_markdown({"point-robot": rows}, None)


def test_plot_writes_the_success_figure(root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "fig" / "curves.png"
    assert cli_main(["plot", str(root), "--out", str(out), "--resamples", "50"]) == 0
    assert plot.success_path(out).is_file()
    assert str(plot.success_path(out)) in capsys.readouterr().out
    groups = group_runs([load_run(d) for d in find_run_dirs([root])])
    for g in groups:
        for r in g.runs:  # without success columns: no figure
            r.rows = [{k: v for k, v in row.items() if "success" not in k} for row in r.rows]
    assert plot.success_figure(groups, "test", 50) is None

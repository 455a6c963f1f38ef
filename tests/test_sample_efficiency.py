"""benchmarks/sample_efficiency.py: steps to a return, from a trailing mean of evaluations."""

import importlib.util
from pathlib import Path

import numpy as np
from test_plot import make_run

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "sample_efficiency.py"
spec = importlib.util.spec_from_file_location("sample_efficiency", PATH)
se = importlib.util.module_from_spec(spec)
spec.loader.exec_module(se)


def test_trailing_mean_by_hand():
    values = np.array([0.0, 300.0, 300.0, 600.0])
    # windows of 3: [0], [0, 300], [0, 300, 300], [300, 300, 600]
    np.testing.assert_allclose(se.trailing_mean(values, 3), [0.0, 150.0, 200.0, 400.0])
    np.testing.assert_array_equal(se.trailing_mean(values, 1), values)


def test_first_reaching_uses_the_smoothed_curve():
    steps = np.array([10.0, 20.0, 30.0, 40.0])
    smoothed = se.trailing_mean(np.array([0.0, 300.0, 300.0, 600.0]), 3)
    assert se.first_reaching(steps, smoothed, 200.0) == 30.0  # not 20: one evaluation is noise
    assert se.first_reaching(steps, smoothed, 400.0) == 40.0
    assert se.first_reaching(steps, smoothed, 401.0) is None


def test_table_rows(tmp_path: Path, capsys):
    make_run(tmp_path / "runs" / "a", steps=[1000, 2000, 3000])
    assert se.main([str(tmp_path / "runs"), "--thresholds", "-1000", "1000"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| env | algorithm | seed | steps to -1000 | steps to 1000 |")
    assert out[2].startswith("| point-robot | mql | 0 | 1k | not reached | 3k |")


def test_windows_table(tmp_path: Path, capsys):
    run = make_run(tmp_path / "a", steps=[1000, 2000, 3000, 4000])
    zero = np.array([float(r) for r in se.load_run(run).series("test/zero_shot_return")[1]])
    assert se.main([str(run), "--windows", "0", "2000", "4000"]) == 0
    out = capsys.readouterr().out.splitlines()
    # windows (0, 2000] and (2000, 4000]: two evaluations each
    assert out[2].startswith(f"| mql | 0-2k | 2 | {zero[:2].mean():.1f} |")
    assert out[3].startswith(f"| mql | 2k-4k | 2 | {zero[2:].mean():.1f} |")

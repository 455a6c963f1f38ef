"""The numbers of docs/results.md's cheetah-vel section, from the committed data files.

    python benchmarks/cheetah_vel_table.py [--data docs/data]

The data were written by mql 0.1 (unpaired protocol) at commits before 04e7ec2; see
docs/results.md for which file came from which command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

FILES = {
    "td3": "cheetah-vel_final_td3_30tasks.json",
    "td3-context": "cheetah-vel_final_td3-context_30tasks.json",
    "mql": "cheetah-vel_final_mql_10tasks.json",
    "pearl": "cheetah-vel_final_pearl_30tasks.json",
    "pearl, 1 trajectory": "cheetah-vel_final_pearl_1traj_30tasks.json",
}


def tasks_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-task results of an `mql eval --json` output or of a final_eval.json."""
    if "tasks" in data:
        return data["tasks"]
    return next(r for r in data["results"] if r["split"] == "test")["tasks"]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("docs/data"))
    ns = p.parse_args(argv)
    loaded = {k: json.loads((ns.data / f).read_text()) for k, f in FILES.items()}
    print("| run | source | env steps | tasks | zero-shot | adapted | diagnostics |")
    print("|---|---|---:|---:|---:|---:|---|")
    for name, data in loaded.items():
        tasks = tasks_of(data)
        zs = mean([t["zero_shot_return"] for t in tasks])
        ad = [t["adapted_return"] for t in tasks if t.get("adapted_return") is not None]
        first10 = tasks[:10]
        diag = data["summary"]
        keys = ("ess", "lambda", "beta_mean", "posterior_kl", "posterior_var")
        shown = ", ".join(f"{k} {diag[f'test/{k}']:.2f}" for k in keys if f"test/{k}" in diag)
        source = "mql eval" if "run_dir" in data else "final_eval.json"
        print(
            f"| {name} | {source} | {data['env_steps']} | {len(tasks)} | {zs:.1f} "
            f"| {mean(ad):.1f} | {shown} |"
            if ad
            else f"| {name} | {source} | {data['env_steps']} | {len(tasks)} | {zs:.1f} | - | |"
        )
        if len(tasks) > 10:
            z10 = mean([t["zero_shot_return"] for t in first10])
            a10 = [t["adapted_return"] for t in first10 if t.get("adapted_return") is not None]
            tail = f" {mean(a10):.1f} |" if a10 else " - |"
            print(f"| {name}, first 10 tasks | | | 10 | {z10:.1f} |{tail} |")
        if ad and len(tasks) == len(ad):
            better = sum(t["adapted_return"] > t["zero_shot_return"] for t in tasks)
            print(f"| {name}: adapted > zero-shot on | | | | {better} of {len(tasks)} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

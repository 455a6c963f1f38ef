"""The house: the algorithm registry, the layers' imports, and one test over every algorithm.

- Every registered algorithm trains a few iterations on point-robot, goes through a checkpoint
  file, and its restored copy acts and continues exactly as the original (SB3's
  save/load/predict test, once for all algorithms, parametrised by the registry).
- Run directories written by mql 0.1.0 before the package was reshaped (tests/data/v0_1_runs,
  made by `mql train` at commit 9303dd5) still load, their state round-trips exactly, and they
  evaluate under today's protocol. (Until the paired protocol, commit 04e7ec2, the evaluation
  of those checkpoints reproduced their final_eval.json bit for bit.)
- Config modules and the CLI import no JAX, Flax, optax or scikit-learn; no import cycles,
  counting imports inside functions.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny import TINY, tiny_config

from mql import checkpoint, runs
from mql.algos import registry

SRC = Path(__file__).resolve().parents[1] / "src" / "mql"
OLD_RUNS = Path(__file__).parent / "data" / "v0_1_runs"


def test_every_algorithm_has_tiny_settings():
    assert {registry.config_class(a).__name__ for a in registry.names()} == set(TINY)


def test_registry_entries_are_consistent():
    for name in registry.names():
        entry = registry.entry(name)
        assert name in entry.config.ALGOS  # the config class accepts its own name
        assert name in registry.variants(name)
        assert callable(entry.agent_class())
    served = [a for e in {registry.entry(n).config for n in registry.names()} for a in e.ALGOS]
    assert sorted(served) == sorted(registry.names())  # no config serves an unlisted algorithm
    with pytest.raises(ValueError, match="unknown algo 'nope'; known: td3"):
        registry.entry("nope")


@pytest.mark.parametrize("algo", registry.names())
def test_train_checkpoint_restore_continue_exactly(algo, tmp_path):
    cfg = tiny_config(algo)
    agent = registry.make_agent(cfg)
    while agent.warmup_tasks_done < len(agent.train_tasks):
        agent.run_iteration()
    first = agent.run_iteration()
    assert first["train/updates"] > 0 and all(np.isfinite(v) for v in first.values())
    path = tmp_path / "latest.ckpt"
    checkpoint.save(path, agent.state_dict())
    copy = registry.make_agent(cfg)
    copy.load_state_dict(checkpoint.load(path))
    assert copy.env_steps == agent.env_steps > 0
    obs = np.full(agent.obs_dim, 0.25, np.float32)
    for a in (agent, copy):
        a.env.set_task(a.train_tasks[0])
    policies = [a.zero_shot_policy() for a in (agent, copy)]
    for p in policies:
        p.reset()
    np.testing.assert_array_equal(policies[0].act(obs), policies[1].act(obs))
    timing = ("time/",)
    m1, m2 = agent.run_iteration(), copy.run_iteration()
    assert {k: v for k, v in m1.items() if not k.startswith(timing)} == {
        k: v for k, v in m2.items() if not k.startswith(timing)
    }


@pytest.mark.parametrize("name", ["mql-v0", "pearl-v0"])
def test_runs_of_version_0_1_load_and_evaluate_to_their_numbers(name, tmp_path):
    run_dir = tmp_path / name
    shutil.copytree(OLD_RUNS / name, run_dir)
    cfg = runs.read_config(run_dir)
    saved = checkpoint.load(run_dir / runs.CHECKPOINT)
    agent = registry.make_agent(cfg)
    agent.load_state_dict(saved["algo"])
    # the checkpoint is written just before the final evaluation, with the driver's counter
    results = agent.evaluate(int(saved["driver"]["eval_index"]), final=True)
    expected = json.loads((run_dir / "final_eval.json").read_text())
    assert len(results[0].tasks) == len(expected["results"][0]["tasks"])  # all test tasks
    assert all(
        np.isfinite(t.zero_shot_return) and t.adapted_return is not None for t in results[0].tasks
    )
    # and the state round-trips: what it saves is what it loaded
    assert_tree_equal(checkpoint.load(_saved(tmp_path, agent)), saved["algo"])


def _saved(tmp_path: Path, agent: Any) -> Path:
    path = tmp_path / "again.ckpt"
    checkpoint.save(path, agent.state_dict())
    return path


def assert_tree_equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_tree_equal(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=where)
    else:
        assert a == b, where


def test_config_json_of_version_0_1_reads_as_today():
    for name in ("mql-v0", "pearl-v0"):
        stored = json.loads((OLD_RUNS / name / runs.CONFIG).read_text())["config"]
        cfg = runs.read_config(OLD_RUNS / name)
        # every stored value is read as it was; fields added since take their defaults
        assert {k: v for k, v in cfg.to_dict().items() if k in stored} == stored
        assert dataclasses.replace(cfg) == cfg
        # evaluated one task at a time before the batched schedule existed, and so re-evaluated
        assert "eval_batched" not in stored and cfg.eval_batched is False


_HEAVY = ("jax", "jaxlib", "flax", "optax", "sklearn")


@pytest.mark.parametrize(
    "module", ["mql.config", "mql.algos.registry", "mql.cli", "mql.runs", "mql.plot"]
)
def test_light_modules_import_no_jax_flax_optax_sklearn(module):
    code = (
        f"import sys, {module}; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(_HEAVY)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """mql module -> the mql modules it imports, anywhere in the file (functions included)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                targets = [f"{base}.{a.name}" for a in node.names] + [base]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and not (path.name == "__init__.py" and t.startswith(name)):
                    graph[name].add(t)
    return graph


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_layers_point_downwards():
    graph = import_graph()
    # the library core does not import the benchmark tool, the CLI or the drivers above it
    for m, deps in graph.items():
        if not m.startswith(("mql.bench", "mql.cli", "mql.sweep")):
            assert not any(d.startswith("mql.bench") for d in deps), m
        if m.startswith(("mql.offpolicy", "mql.onpolicy", "mql.envs", "mql.kernels")):
            assert not any(d.startswith("mql.algos") for d in deps if d != "mql.algos"), m


def test_no_algorithm_name_outside_the_registry_and_its_package():
    """Only the registry and an algorithm's own package spell its name in code."""
    names = set(registry.names())
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("algos/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                for c in [node.left, *node.comparators]:
                    if isinstance(c, ast.Constant) and c.value in names:
                        raise AssertionError(f"{rel}:{node.lineno} compares with {c.value!r}")

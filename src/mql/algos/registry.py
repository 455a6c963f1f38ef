"""The one list of algorithms: name -> config class, agent, variants, summary.

Everything that needs to know the algorithms (the CLI, the driver, evaluation, sweeps, plots,
run directories and checkpoint loading) reads this table; no other module names one. Adding an
algorithm is a package `mql/algos/<name>/` (config with presets, networks, losses, agent) and
one `AlgoEntry` below (docs/architecture.md).

The agent class is named as "module:Class" and imported on first use, so this module (and
every config) loads without JAX.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mql.algos.config_base import PRESET_NAMES, BaseConfig
from mql.algos.maml.config import MAMLTRPOConfig, ProMPConfig
from mql.algos.mql.config import MQLConfig
from mql.algos.pearl.config import PEARLConfig
from mql.algos.rl2.config import RL2Config

if TYPE_CHECKING:
    from mql.algos.agent import Algorithm

__all__ = [
    "ALGORITHMS",
    "AlgoEntry",
    "config_class",
    "entry",
    "families",
    "from_dict",
    "make_agent",
    "names",
    "resolve",
    "to_dict",
    "variants",
]


@dataclass(frozen=True)
class AlgoEntry:
    """One algorithm as the rest of the package sees it."""

    name: str
    config: type[BaseConfig]
    """Its config class (presets, validation, JSON form)."""
    agent: str
    """"module:Class" of its agent (an `mql.algos.agent.Algorithm`), imported on first use."""
    summary: str
    """One line for `--help` and the docs."""
    family: str
    """Algorithms of one family share their meta-training and differ only in evaluation, so a
    run of one can be evaluated as another (`mql eval --adapt-as`)."""

    def agent_class(self) -> type[Algorithm]:
        module, cls = self.agent.split(":")
        return getattr(importlib.import_module(module), cls)


_MQL_AGENT = "mql.algos.mql.agent:MQL"
ALGORITHMS: dict[str, AlgoEntry] = {
    e.name: e
    for e in (
        AlgoEntry("td3", MQLConfig, _MQL_AGENT, "multi-task TD3, no context", "td3"),
        AlgoEntry(
            "td3-context", MQLConfig, _MQL_AGENT, "TD3 with a GRU context, no adaptation", "mql"
        ),
        AlgoEntry(
            "mql", MQLConfig, _MQL_AGENT, "MQL: TD3-context + eq. 18 and eq. 19 adaptation", "mql"
        ),
        AlgoEntry("mql-no-eq19", MQLConfig, _MQL_AGENT, "MQL adapting by eq. 18 only", "mql"),
        AlgoEntry("mql-fixed-lambda", MQLConfig, _MQL_AGENT, "MQL with a fixed λ (Fig. 4c)", "mql"),
        AlgoEntry(
            "pearl",
            PEARLConfig,
            "mql.algos.pearl.agent:PEARL",
            "PEARL (oyster): probabilistic context encoder + SAC",
            "pearl",
        ),
        AlgoEntry(
            "rl2",
            RL2Config,
            "mql.algos.rl2.agent:RL2",
            "RL2: a recurrent policy across a trial's episodes, trained with PPO",
            "rl2",
        ),
        AlgoEntry(
            "maml-trpo",
            MAMLTRPOConfig,
            "mql.algos.maml.agent:MAMLTRPO",
            "MAML-TRPO: a policy-gradient inner step, TRPO through it",
            "maml-trpo",
        ),
        AlgoEntry(
            "promp",
            ProMPConfig,
            "mql.algos.maml.agent:ProMP",
            "ProMP: an LVC inner step, clipped surrogate + KL penalty through it",
            "promp",
        ),
    )
}


def names() -> list[str]:
    """Every registered algorithm name."""
    return list(ALGORITHMS)


def entry(algo: str) -> AlgoEntry:
    """The entry of `algo`; unknown names raise ValueError listing the known ones."""
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown algo {algo!r}; known: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algo]


def config_class(algo: str) -> type[BaseConfig]:
    return entry(algo).config


def variants(algo: str) -> list[str]:
    """The algorithms a run of `algo` can be evaluated as (its family, itself included)."""
    family = entry(algo).family
    return [name for name, e in ALGORITHMS.items() if e.family == family]


def families() -> list[list[str]]:
    """The algorithms grouped by family, in registry order."""
    groups: dict[str, list[str]] = {}
    for name, e in ALGORITHMS.items():
        groups.setdefault(e.family, []).append(name)
    return list(groups.values())


def check_names(env: str, algo: str, preset: str) -> None:
    """Raise ValueError for an unknown environment, algorithm or preset name."""
    import mql.envs

    if env not in mql.envs.names():
        raise ValueError(f"unknown environment {env!r}; known: {', '.join(mql.envs.names())}")
    entry(algo)
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESET_NAMES)}")


def resolve(env: str, algo: str = "mql", preset: str = "paper", **overrides: Any) -> BaseConfig:
    """The config of `algo` on `env` under `preset`, then `overrides`, validated."""
    check_names(env, algo, preset)
    return config_class(algo).resolve(env, algo, preset, **overrides)


def to_dict(cfg: BaseConfig) -> dict[str, Any]:
    """JSON-ready dict of any algorithm's config."""
    return cfg.to_dict()


def from_dict(data: dict[str, Any]) -> BaseConfig:
    """The config stored by `to_dict` (its `algo` picks the class); validated."""
    algo = data.get("algo")
    if not isinstance(algo, str):
        raise ValueError("config has no algo field")
    return config_class(algo).from_dict(data)


def make_agent(cfg: BaseConfig, state: dict[str, Any] | None = None) -> Algorithm:
    """The agent of `cfg.algo`, built from `cfg`; with `state` (a checkpoint's `"algo"` entry,
    `Algorithm.state_dict`) loaded when given."""
    agent = entry(cfg.algo).agent_class()(cfg)
    if state is not None:
        agent.load_state_dict(state)
    return agent

"""Configs of every algorithm: resolve a preset, read and write the JSON form (no JAX).

    import mql.config
    cfg = mql.config.resolve("cheetah-vel", "mql", "paper", seed=1)   # an MQLConfig
    cfg = mql.config.resolve("point-robot", "pearl")                  # a PEARLConfig

The config classes live with their algorithms (`mql.algos.<name>.config`), the list of
algorithms in `mql.algos.registry`; this module is the entry point.
"""

from __future__ import annotations

from mql.algos.config_base import PRESET_NAMES, BaseConfig, check_ranges
from mql.algos.mql.config import MQLConfig
from mql.algos.pearl.config import PEARLConfig
from mql.algos.registry import check_names, from_dict, names, resolve, to_dict

__all__ = [
    "PRESET_NAMES",
    "BaseConfig",
    "MQLConfig",
    "PEARLConfig",
    "check_names",
    "check_ranges",
    "from_dict",
    "names",
    "resolve",
    "to_dict",
]

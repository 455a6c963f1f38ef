"""A summary table of the registered task families (printed by `mql envs`)."""

from __future__ import annotations

from typing import Any

import mql.envs
from mql.envs import metaworld_spec

COLUMNS: list[tuple[str, str]] = [
    ("name", "family"),
    ("obs", "obs"),
    ("act", "act"),
    ("horizon", "horizon"),
    ("n_train", "train"),
    ("n_test", "test"),
    ("varies", "what varies between tasks"),
]


def family_rows(names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per family (all registered ones by default), read off an env built with seed 0
    (the Meta-World families' rows come from `metaworld_spec`, without building them)."""
    rows = []
    for name in mql.envs.names() if names is None else names:
        if metaworld_spec.is_metaworld(name):  # from data: no extra needed, no goal sampling
            rows.append(metaworld_spec.SPECS[name].table_row())
            continue
        env = mql.envs.make(name, seed=0)
        try:
            rows.append(
                {
                    "name": name,
                    "obs": int(env.observation_space.shape[0]),
                    "act": int(env.action_space.shape[0]),
                    "horizon": int(env.horizon),
                    "n_train": len(env.train_tasks),
                    "n_test": len(env.test_tasks),
                    "varies": str(env.varies),
                }
            )
        finally:
            env.close()
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Plain text, one line per row, columns aligned (numbers right, text left)."""
    header = [title for _, title in COLUMNS]
    cells = [[str(row[key]) for key, _ in COLUMNS] for row in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, h in enumerate(header)]
    numeric = [all(isinstance(row[key], int) for row in rows) for key, _ in COLUMNS]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(c) for c in cells)
    return "\n".join(out)

"""Literal types of the off-policy core that configs name (no JAX here)."""

from __future__ import annotations

from typing import Literal

__all__ = ["ContextMode", "GruKernel"]

ContextMode = Literal["separate", "shared", "none"]
"""separate GRUs for actor and critic (released code), one shared GRU (paper), or none (TD3)."""

GruKernel = Literal["xla", "native", "auto"]
"""How the context GRU runs: compiled by XLA, native C++ kernels (mql.kernels), or auto."""

"""The errors that `mql` reports to a user in one line (the CLI catches exactly these).

They live here, apart from the code that raises them, so that the CLI can name them without
importing JAX, Flax or the native kernels (`mql --help` starts in well under a second).
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "MissingExtraError",
    "NativeKernelError",
    "RunDirError",
    "UsageError",
]


class UsageError(Exception):
    """Bad input from the command line."""


class RunDirError(RuntimeError):
    """A run directory cannot be used as asked (exists, missing, unreadable)."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated or corrupt."""


class NativeKernelError(RuntimeError):
    """The native kernels were asked for but cannot be built or used here."""


class MissingExtraError(ImportError):
    """A task family needs an optional extra that is not installed (e.g. Meta-World)."""

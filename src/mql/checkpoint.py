"""Checkpoint files: a nested dict of arrays and scalars, written atomically, checked on load.

Format: the 8-byte magic `MQLCKPT1`, the SHA-256 of the payload, then the payload, a Flax
msgpack serialisation of the tree. Python ints too large for msgpack (NumPy's PCG64 state) are
stored as strings under a marker key. Writing goes to a temporary file in the same directory that
is fsynced and then renamed over the target, so a crash while writing never leaves a broken
checkpoint; a truncated or corrupted file fails the checksum and raises `CheckpointError`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

from mql.errors import CheckpointError

__all__ = ["CheckpointError", "as_numpy", "load", "save"]

MAGIC = b"MQLCKPT1"
_BIGINT = "__bigint__"


def _encode(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {str(k): _encode(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return {f"{i:06d}": _encode(v) for i, v in enumerate(tree)} | {"__list__": True}
    if isinstance(tree, bool):
        return tree
    if isinstance(tree, int) and not -(2**63) <= tree < 2**63:
        return {_BIGINT: str(tree)}
    return tree


def _decode(tree: Any) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {_BIGINT}:
            return int(tree[_BIGINT])
        if tree.get("__list__") is True:
            return [_decode(tree[k]) for k in sorted(k for k in tree if k != "__list__")]
        return {k: _decode(v) for k, v in tree.items()}
    return tree


def save(path: Path | str, tree: dict[str, Any]) -> None:
    """Write `tree` to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = serialization.msgpack_serialize(_encode(tree))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".ckpt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(hashlib.sha256(payload).digest())
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint written by `save`; raise `CheckpointError` if it is not intact."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    data = path.read_bytes()
    if len(data) < len(MAGIC) + 32 or not data.startswith(MAGIC):
        raise CheckpointError(f"{path} is not an mql checkpoint (bad header or truncated)")
    digest, payload = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path} is corrupt or truncated (checksum mismatch)")
    try:
        return _decode(serialization.msgpack_restore(payload))
    except Exception as e:  # a valid checksum over an undecodable payload
        raise CheckpointError(f"{path} could not be decoded: {e}") from e


def as_numpy(tree: Any) -> Any:
    """Arrays of any kind (JAX included) as NumPy arrays, recursively."""
    if isinstance(tree, dict):
        return {k: as_numpy(v) for k, v in tree.items()}
    if hasattr(tree, "__array__") and not isinstance(tree, np.ndarray):
        return np.asarray(tree)
    return tree

"""The sampler's environments split over processes that step in parallel (no JAX here).

`ShardPool(env_name, task_seed, n, obs_dim, act_dim, processes)` holds `n` environments in
`processes` shards: the first shard in the calling process, the others each in a worker process
(started as `python -m mql.onpolicy.workers`, so they never inherit JAX's threads nor re-run the
caller's script). All shards write into one
block of shared memory (a file in /dev/shm mapped by every process, unlinked once they all have
it), `pool.buf` (a `ShardBuffers` over all `n` slots), so a step moves no
arrays through pipes: the main process writes the actions, sends one byte-sized command to every
worker, steps its own shard meanwhile, and waits for the workers' replies.

With `processes` = 2 on a 2-core machine both cores step environments and the policy's batched
inference runs on the main process between steps (docs/performance.md has the measurements).
`threads` is each shard's (`Shard`): families stepped on MuJoCo's thread pool need one process,
whose pool uses every core.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import socket
import subprocess
import sys
import tempfile
import traceback
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from mql.envs.base import Task
from mql.onpolicy.shard import FIELDS, Shard, ShardBuffers, layout

__all__ = ["SamplerError", "ShardPool", "split"]


class SamplerError(RuntimeError):
    """A worker process failed (its message is the worker's last traceback line)."""


def split(n: int, parts: int) -> list[tuple[int, int]]:
    """`n` slots in `parts` contiguous ranges whose sizes differ by at most one."""
    parts = max(1, min(parts, n))
    bounds = np.linspace(0, n, parts + 1).round().astype(int)
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(parts)]


def _nbytes(n: int, obs_dim: int, act_dim: int) -> list[tuple[str, tuple[int, ...], Any, int]]:
    out, offset = [], 0
    for name, shape, dtype in layout(n, obs_dim, act_dim):
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        out.append((name, shape, dtype, offset))
        offset += -(-size // 8) * 8
    return out


def _views(buffer: Any, n: int, obs_dim: int, act_dim: int) -> ShardBuffers:
    arrays = {
        name: np.ndarray(shape, dtype, buffer=buffer, offset=offset)
        for name, shape, dtype, offset in _nbytes(n, obs_dim, act_dim)
    }
    return ShardBuffers(*(arrays[f] for f in FIELDS))


def _block_size(n: int, obs_dim: int, act_dim: int) -> int:
    _, shape, dtype, offset = _nbytes(n, obs_dim, act_dim)[-1]
    return max(8, offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)


def _create(size: int) -> tuple[str, mmap.mmap]:
    """A zero-filled file of `size` bytes in RAM (/dev/shm where it exists), mapped shared."""
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(prefix="mql-sampler-", dir=folder)
    try:
        os.ftruncate(fd, size)
        return path, mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _attach(path: str, size: int) -> mmap.mmap:
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _worker(
    conn: Connection,
    path: str,
    dims: tuple[int, int, int],
    rows: tuple[int, int],
    env_name: str,
    task_seed: int,
    horizon: int,
    threads: int,
) -> None:
    """A worker's loop: build its shard, then answer "start" / "step" until "close"."""
    block = _attach(path, _block_size(*dims))
    shard: Shard | None = None
    buf: ShardBuffers | None = None
    try:
        buf = _views(block, *dims).rows(*rows)
        shard = Shard(env_name, task_seed, rows[1] - rows[0], buf, horizon, threads)
        conn.send(("ok", None))
        while True:
            cmd, payload = conn.recv()
            if cmd == "step":
                shard.step()
                conn.send(("ok", None))
            elif cmd == "start":
                shard.start(*payload)
                conn.send(("ok", None))
            else:
                break
    except (EOFError, KeyboardInterrupt):
        pass
    except Exception as exc:  # reported to the main process, which raises SamplerError
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        with contextlib.suppress(OSError):
            conn.send(("error", last))
    finally:
        if shard is not None:
            shard.close()
        shard = buf = None
        block.close()


def _spawn(args: tuple[Any, ...]) -> tuple[Connection, subprocess.Popen[bytes]]:
    """Start `python -m mql.onpolicy.workers` connected by a socket pair; unlike
    multiprocessing's spawn it does not re-run the caller's main script."""
    parent, child = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mql.onpolicy.workers", str(child.fileno())],
        pass_fds=(child.fileno(),),
        stdin=subprocess.DEVNULL,
    )
    child.close()
    conn = Connection(os.dup(parent.fileno()))
    parent.close()
    conn.send(args)
    return conn, proc


class ShardPool:
    """`n` environments over `processes` shards (see the module docstring)."""

    def __init__(
        self,
        env_name: str,
        task_seed: int,
        n: int,
        obs_dim: int,
        act_dim: int,
        processes: int,
        horizon: int = 0,
        threads: int = 0,
    ) -> None:
        self.n = n
        self.ranges = split(n, processes)
        dims = (n, obs_dim, act_dim)
        self._path, self._block = _create(_block_size(*dims))
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        try:
            self.buf = _views(self._block, *dims)
            for rows in self.ranges[1:]:
                args = (self._path, dims, rows, env_name, task_seed, horizon, threads)
                conn, proc = _spawn(args)
                self._conns.append(conn)
                self._procs.append(proc)
            lo, hi = self.ranges[0]
            self._local = Shard(
                env_name, task_seed, hi - lo, self.buf.rows(lo, hi), horizon, threads
            )
            self._wait()
            _unlink(self._path)  # every process has it mapped; nothing is left behind on exit
        except BaseException:
            self.close()
            raise

    @property
    def processes(self) -> int:
        return len(self.ranges)

    def _wait(self) -> None:
        for conn in self._conns:
            try:
                status, message = conn.recv()
            except EOFError:
                raise SamplerError("a sampler worker process exited unexpectedly") from None
            if status != "ok":
                raise SamplerError(f"sampler worker failed: {message}")

    def start(self, tasks: list[Task], seeds: np.ndarray) -> None:
        """Begin a trial in every slot (`Shard.start`, over all shards)."""
        for conn, (lo, hi) in zip(self._conns, self.ranges[1:], strict=True):
            conn.send(("start", (tasks[lo:hi], seeds[lo:hi])))
        lo, hi = self.ranges[0]
        self._local.start(tasks[lo:hi], seeds[lo:hi])
        self._wait()

    def step(self) -> None:
        """Step every running slot with `buf.actions` (`Shard.step`, over all shards)."""
        for conn in self._conns:
            conn.send(("step", None))
        self._local.step()
        self._wait()

    def close(self) -> None:
        """Stop the workers and free the shared memory (idempotent)."""
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(("close", None))
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for conn in self._conns:
            conn.close()
        self._conns, self._procs = [], []
        local = getattr(self, "_local", None)
        if local is not None:
            local.close()
            self._local = None
        if self._block is not None:
            self.buf = None  # type: ignore[assignment]
            with contextlib.suppress(BufferError):  # views still alive: freed at exit
                self._block.close()
            self._block = None
        _unlink(self._path)

    def __del__(self) -> None:
        # no module globals here: at interpreter exit they may already be None
        try:  # noqa: SIM105
            self.close()
        except Exception:
            pass


def _main() -> None:
    conn = Connection(int(sys.argv[1]))
    _worker(conn, *conn.recv())


if __name__ == "__main__":
    _main()

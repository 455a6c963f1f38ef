"""Native CPU kernels for the context GRU, called from XLA through its FFI.

`gru.cc` (next to this file) runs a whole GRU pass, with or without the residuals its gradient
needs, and the backward recurrence, each as ONE custom call; XLA's CPU backend otherwise runs
every one of the H steps as several small kernels whose launch cost dominates at MQL's sizes
(docs/performance.md). `mql.offpolicy.networks.gru_context` uses them when asked (`gru_kernel`).

The source is compiled on first use with the machine's C++ compiler (`$CXX`, else `c++`,
`-O3 -march=native`) against the FFI headers shipped in jaxlib, into a cache directory keyed by
the source, the compiler, jaxlib's version and the CPU (`$MQL_KERNEL_CACHE`, else
`~/.cache/mql/kernels`). Building takes a few seconds once per machine; concurrent processes
(sweeps) build into private temporary files and rename, so none sees a partial library.

`status()` says whether the kernels can be used here and, if not, why (no compiler, a build
error, not a CPU backend). `gru_kernel="auto"` falls back to the XLA path in that case;
`"native"` raises `NativeKernelError` with that reason.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp

from mql.errors import NativeKernelError

SOURCE = Path(__file__).with_name("gru.cc")
_TARGETS = {
    "mql_gru_forward": "MqlGruForward",
    "mql_gru_forward_saved": "MqlGruForwardSaved",
    "mql_gru_backward": "MqlGruBackward",
}


def cache_dir() -> Path:
    env = os.environ.get("MQL_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mql" / "kernels"


def _compiler() -> str | None:
    if os.environ.get("CXX"):
        return shutil.which(os.environ["CXX"])  # as asked, or none
    return shutil.which("c++") or shutil.which("g++")


def _cpu_signature() -> str:
    """CPU model and flags: `-march=native` code is only valid on a CPU with the same flags."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [ln for ln in lines if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _compile_command(cxx: str, output: Path) -> list[str]:
    return [
        cxx, "-O3", "-march=native", "-std=c++17", "-shared", "-fPIC",
        "-isystem", jax.ffi.include_dir(), str(SOURCE), "-o", str(output),
    ]  # fmt: skip


def _library_path(cxx: str) -> Path:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), version.encode(), jax.lib.__version__.encode()):
        key.update(part)
    key.update(_cpu_signature().encode())
    key.update(" ".join(_compile_command("CXX", Path("OUT"))).encode())
    return cache_dir() / f"mql_gru_{key.hexdigest()[:16]}.so"


def _build(cxx: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run(
            _compile_command(cxx, Path(tmp)), capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["(no output)"]
            first = next((ln for ln in lines if "error" in ln), lines[-1])
            raise NativeKernelError(f"compiling {SOURCE.name} failed: {first.strip()}")
        os.replace(tmp, target)  # atomic: other processes see no library or a whole one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def _load() -> tuple[int, str]:
    """Build (once) and register the kernels; returns (SIMD lanes, library path)."""
    if jax.default_backend() != "cpu":
        raise NativeKernelError(f"native kernels are CPU-only (backend: {jax.default_backend()})")
    cxx = _compiler()
    if cxx is None:
        raise NativeKernelError("no C++ compiler found (set $CXX)")
    path = _library_path(cxx)
    if not path.exists():
        _build(cxx, path)
    try:
        lib = ctypes.cdll.LoadLibrary(str(path))
    except OSError as err:
        raise NativeKernelError(f"loading {path} failed: {err}") from err
    for name, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform="cpu")
    lib.MqlGruLanes.restype = ctypes.c_int64
    return int(lib.MqlGruLanes()), str(path)


@functools.cache
def status() -> tuple[bool, str]:
    """(usable, description): the library path and SIMD width, or why it cannot be used.

    Computed once per process, so a failed build is not retried at every trace."""
    try:
        lanes, path = _load()
    except (NativeKernelError, OSError, subprocess.SubprocessError) as err:
        return False, str(err)
    return True, f"{path} ({lanes} float lanes)"


def resolve(kernel: str) -> str:
    """Map a `gru_kernel` setting to the implementation used here: "xla" or "native"."""
    if kernel == "xla":
        return "xla"
    ok, why = status()
    if ok:
        return "native"
    if kernel == "native":
        raise NativeKernelError(f"gru_kernel='native' is unavailable: {why}")
    return "xla"


def lanes() -> int:
    return _load()[0]


def _f32(shape: tuple[int, ...]) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def gru_forward(xs: jax.Array, w_h: jax.Array, b_h: jax.Array) -> jax.Array:
    """Final hidden state (B, n) from the input projections xs (B, H, 3n)."""
    shape = _f32((xs.shape[0], w_h.shape[0]))
    return jax.ffi.ffi_call("mql_gru_forward", shape, vmap_method="sequential")(xs, w_h, b_h)


def gru_forward_saved(
    xs: jax.Array, w_h: jax.Array, b_h: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """As `gru_forward`, and the residuals of the gradient: h_{t-1} per step (B, H, n), and
    r, u, c, hn in the kernels' block layout (ceil(B / lanes), H, 4, n, lanes)."""
    batch, steps = xs.shape[:2]
    n, s = w_h.shape[0], lanes()
    shapes = (_f32((batch, n)), _f32((batch, steps, n)), _f32((-(-batch // s), steps, 4, n, s)))
    return jax.ffi.ffi_call("mql_gru_forward_saved", shapes, vmap_method="sequential")(xs, w_h, b_h)


def gru_backward(
    g: jax.Array, h_prev: jax.Array, gates: jax.Array, w_h: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Cotangents (B, H, 3n) of the input projections and of h W_h + b_h, given g (B, n) and
    the residuals of `gru_forward_saved`."""
    shape = _f32((*h_prev.shape[:2], w_h.shape[1]))
    call = jax.ffi.ffi_call("mql_gru_backward", (shape, shape), vmap_method="sequential")
    return call(g, h_prev, gates, w_h)

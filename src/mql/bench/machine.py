"""What this machine is: CPU, cores, library versions, XLA flags, GRU kernel."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import jax

from mql import kernels


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, library versions and XLA flags of this process."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": _jaxlib_version(),
        "backend": jax.default_backend(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "gru_kernel": _gru_kernel_line(),
    }


def _gru_kernel_line() -> str:
    """What `gru_kernel="auto"` (the default) runs here."""
    ok, why = kernels.status()
    return f"native, {kernels.lanes()} float lanes" if ok else f"xla ({why})"


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return "?"


def machine_line(info: dict[str, Any]) -> str:
    flags = f", XLA_FLAGS={info['xla_flags']!r}" if info["xla_flags"] else ""
    return (
        f"{info['system']}, {info['cpu']}, {info['logical_cpus']} logical CPUs "
        f"({info['usable_cpus']} usable); Python {info['python']}, jax {info['jax']}, "
        f"jaxlib {info['jaxlib']} ({info['backend']}){flags}; "
        f"GRU kernel: {info.get('gru_kernel', 'xla')}"
    )

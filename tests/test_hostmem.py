"""mql.hostmem: after keep_freed_memory, a freed 64 MB block is reused without page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mql import hostmem

glibc_only = pytest.mark.skipif(hostmem._glibc() is None, reason="needs glibc")

# malloc 64 MB, touch every page, free it, and count the page faults of doing it again
FAULTS = """
import ctypes, ctypes.util, resource, sys
from mql import hostmem
if sys.argv[1] == "keep":
    assert hostmem.keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
n = 64 << 20
def touch():
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _second_allocation_faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip())


@glibc_only
def test_freed_memory_is_reused_without_page_faults() -> None:
    pages = (64 << 20) // 4096
    assert _second_allocation_faults("default") > pages // 2  # glibc mmaps it afresh
    assert _second_allocation_faults("keep") < pages // 50  # reused from the heap


def test_opt_out_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostmem, "_applied", False)
    monkeypatch.setenv(hostmem.ENV_VAR, "0")
    assert hostmem.keep_freed_memory() is False
    assert hostmem._applied is False

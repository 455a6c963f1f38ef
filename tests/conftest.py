"""Shared test setup.

XLA compilation dominates the run time of the learner tests on a small CPU machine (a fused
TD3 update over a GRU compiles for 10-25 s), and every `TD3` instance jit-compiles its own
functions. A persistent compilation cache, private to this test session, lets identical
computations (e.g. two agents built from the same config in a determinism test) compile once.
It does not change any numbers: a cache hit runs the executable a miss would have built.
Set MQL_TEST_JAX_CACHE to a directory to keep the cache across sessions.

Tests marked `slow` (minutes each: longer learning checks) are skipped unless pytest runs with
`--run-slow` (or MQL_RUN_SLOW=1 is set).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_OWN_CACHE: str | None = None


def pytest_addoption(parser):
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_configure(config):
    global _OWN_CACHE
    import jax

    config.addinivalue_line("markers", "slow: takes minutes; skipped unless --run-slow")
    cache_dir = os.environ.get("MQL_TEST_JAX_CACHE")
    if not cache_dir:
        cache_dir = _OWN_CACHE = tempfile.mkdtemp(prefix="mql-test-jax-cache-")
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("MQL_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow (or MQL_RUN_SLOW=1)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)

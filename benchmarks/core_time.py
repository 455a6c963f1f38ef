"""Where the cores' time goes while the MQL update runs, sampled with Linux `perf`.

    python benchmarks/core_time.py [--env cheetah-vel] [--calls 6] [--freq 2999]
                                   [--gru-kernel auto]

`profile_update.py` times XLA's kernels (thunks) from JAX's trace; it cannot see work a kernel
hands to other threads (YNNPACK's and the GRU kernels' helpers) nor the time threads spend
waiting. This script samples every thread of the process instead. A child process builds the
preset's learner (as `mql bench` does), measures the matmul peak, compiles and warms
`update_many`, and then runs `--calls` timed calls while `perf record -F FREQ -p PID` samples it.
Each sample is classified by its symbol and library:

- matmul kernels: YNNPACK's `dot_*` microkernels, Eigen's or a BLAS's GEMM kernels;
- matmul data movement: YNNPACK's other routines (packing, transposes, reductions), Eigen's
  GEMM packing;
- GRU kernels: `mql.kernels` (the native recurrence);
- XLA-generated kernels: code XLA compiled at run time (fusions of elementwise work, copies,
  loops); perf cannot name it;
- thread pool, waiting: Eigen's pool looking for or waiting for work, the kernel scheduler;
- runtime: XLA's thunk executor, YNNPACK's scheduler (slinky), malloc and free;
- copies: libc's memcpy/memmove/memset;
- other: the rest (Python, the kernel's other work, ...).

It prints core-milliseconds per update for each class and, with the update's FLOPs (counted as
in `mql bench`) and the matmul peak measured in the same process:

- utilisation = FLOPs x updates/s / peak, as in `mql bench` (perf slows the run by a few %);
- cores working = core time outside "thread pool, waiting" / wall time;
- a bound: the utilisation the update would reach if only the matmul and GRU kernels took
  time, at their measured speed, on all the process's cores;
- what 60% utilisation leaves for everything outside those kernels (XLA's elementwise
  kernels, data movement, the runtime), in core-ms per update, at the measured number of
  cores working and with every core always working.

Needs `perf` and permission to sample one's own processes (`kernel.perf_event_paranoid` <= 2).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, sys, time
import jax
from mql.bench.flops import update_flops
from mql.bench.learner import prepared_learner
from mql.bench.timing import matmul_gflops, time_updates
env, calls, kernel = sys.argv[1], int(sys.argv[2]), sys.argv[3]
agent, dev = prepared_learner(env, replay_size=20_000, gru_kernel=kernel)
flops = update_flops(agent.td3, agent.state, *dev)["per_update"]
peak = max(matmul_gflops() for _ in range(3))
state, _, _ = time_updates(agent.td3, agent.state, dev, 2)  # compiled and warm
print("READY", os.getpid(), flush=True)
sys.stdin.readline()
state, rate, _ = time_updates(agent.td3, state, dev, calls)
print(json.dumps({"updates_per_s": rate, "updates": calls * agent.cfg.updates_per_call,
                  "flops": flops, "peak": peak, "cores": len(os.sched_getaffinity(0))}),
      flush=True)
sys.stdin.readline()  # stay alive until perf has stopped sampling
"""

CLASSES = (
    "matmul kernels",
    "matmul data movement",
    "GRU kernels",
    "XLA-generated kernels",
    "thread pool, waiting",
    "runtime",
    "copies",
    "other",
)
WAITING = "thread pool, waiting"
_MATMUL = re.compile(r"ynn::dot_|gebp_kernel|sgemm_kernel|sgemm_.*_kernel|dgemm_kernel")
_MATMUL_MOVE = re.compile(r"^ynn::|gemm_pack|sgemm_(on|it|in|ot|beta)")
_WAITING = re.compile(
    r"ThreadPoolTempl|RunQueue|EigenEnvironment|Await|futex|schedule|finish_task_switch"
    r"|raw_spin|sched_yield|do_syscall|entry_SYSCALL|syscall_exit|pick_next_task"
)
_RUNTIME = re.compile(
    r"xla::|slinky::|^ynn_|tsl::|malloc|free|_int_|unlink_chunk|__tls_get_addr|std::_Function"
)
_COPIES = re.compile(r"__mem(move|cpy|set)")


def classify(symbol: str, library: str) -> str:
    """The class of one perf sample from its symbol and its library (shared object)."""
    if "mql_gru" in library:
        return "GRU kernels"
    if _MATMUL.search(symbol):
        return "matmul kernels"
    if _MATMUL_MOVE.search(symbol):
        return "matmul data movement"
    if _WAITING.search(symbol):
        return WAITING
    if _COPIES.search(symbol):
        return "copies"
    if _RUNTIME.search(symbol):
        return "runtime"
    if "perf-" in library or "[JIT]" in library or library in ("[unknown]", "", "anon"):
        return "XLA-generated kernels"
    return "other"


def parse_samples(text: str) -> collections.Counter:
    """Sample counts per class from `perf script -F ip,sym,dso` output."""
    counts: collections.Counter = collections.Counter()
    for line in text.splitlines():
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s*\(([^()]*)\)\s*$", line)
        if m:
            counts[classify(m.group(1), m.group(2))] += 1
    return counts


def record(env: str, calls: int, freq: int, kernel: str, data: Path) -> dict:
    """Run the child under `perf record`; its result with the sample counts per class."""
    args = [sys.executable, "-c", CHILD, env, str(calls), kernel]
    child = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    ready = child.stdout.readline().split()
    if not ready or ready[0] != "READY":
        child.kill()
        raise SystemExit("core_time: the child process failed before the timed calls")
    perf_cmd = ["perf", "record", "-q", "-F", str(freq), "-p", ready[1], "-o", str(data)]
    perf = subprocess.Popen(perf_cmd, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # perf attaches to every thread
    child.stdin.write("go\n")
    child.stdin.flush()
    line = child.stdout.readline()
    perf.send_signal(signal.SIGINT)  # perf stops and writes its file
    if not line:
        perf.wait()
        raise SystemExit("core_time: the child process failed during the timed calls")
    result = json.loads(line)
    _, err = perf.communicate()
    child.stdin.write("done\n")
    child.stdin.flush()
    child.wait()
    if perf.returncode not in (0, -2, 130) or not data.exists():
        tail = (err.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"core_time: perf record failed: {tail}")
    script = subprocess.run(
        ["perf", "script", "-i", str(data), "-F", "ip,sym,dso"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    result["counts"] = parse_samples(script.stdout)
    return result


def report(r: dict, freq: int, env: str, kernel: str) -> list[str]:
    """The table and the bounds, as markdown lines."""
    n, counts = r["updates"], r["counts"]
    total = sum(counts.values())
    # Outside the timed calls the child blocks on its stdin, unsampled: all samples are theirs.
    ms = {c: counts[c] / freq / n * 1e3 for c in CLASSES}
    wall_ms = 1e3 / r["updates_per_s"]
    working = sum(v for c, v in ms.items() if c != WAITING)
    util = r["flops"] * r["updates_per_s"] / (r["peak"] * 1e9)

    kernels = ms["matmul kernels"] + ms["GRU kernels"]
    busy = working / wall_ms
    # Core time per update that 60% allows: FLOPs / (0.6 peak) of wall time on `busy` cores.
    allowed = r["flops"] / (0.6 * r["peak"] * 1e9) * 1e3

    lines = [
        f"{env}, gru_kernel={kernel}: {r['updates_per_s']:.1f} updates/s under perf "
        f"({wall_ms:.2f} ms per update), {r['flops'] / 1e6:.1f} MFLOP/update, peak "
        f"{r['peak']:.1f} GFLOP/s on {r['cores']} cores: utilisation {util:.0%}",
        "",
        "| where the cores' time goes | core-ms per update | share |",
        "|---|---:|---:|",
    ]
    lines += [f"| {c} | {ms[c]:.2f} | {counts[c] / max(total, 1):.1%} |" for c in CLASSES]
    lines += [
        f"| all samples | {sum(ms.values()):.2f} | 100% |",
        "",
        f"- cores working: {busy:.2f} of {r['cores']}",
        f"- utilisation if only the matmul and GRU kernels took time, on all cores: "
        f"{r['flops'] / (kernels / r['cores'] * 1e-3) / (r['peak'] * 1e9):.0%}",
        f"- 60% allows {allowed:.2f} ms per update: with {busy:.2f} cores working, "
        f"{allowed * busy - kernels:.2f} core-ms outside the matmul and GRU kernels "
        f"(now {working - kernels:.2f}); with all {r['cores']} cores always working, "
        f"{allowed * r['cores'] - kernels:.2f}",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default="cheetah-vel")
    p.add_argument("--calls", type=int, default=6)
    p.add_argument("--freq", type=int, default=2999, help="perf samples per second per thread")
    p.add_argument("--gru-kernel", default="auto", choices=("xla", "native", "auto"))
    ns = p.parse_args(argv)
    if shutil.which("perf") is None:
        raise SystemExit("core_time: needs Linux perf on PATH")
    with tempfile.TemporaryDirectory() as tmp:
        r = record(ns.env, ns.calls, ns.freq, ns.gru_kernel, Path(tmp) / "perf.data")
    if not r["counts"]:
        raise SystemExit("core_time: perf recorded no samples (perf_event_paranoid?)")
    print("\n".join(report(r, ns.freq, ns.env, ns.gru_kernel)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

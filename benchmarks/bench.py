"""Learner throughput benchmark; the same as `mql bench` (see `mql.bench` for what it measures).

python benchmarks/bench.py [--presets cheetah-vel ant-goal humanoid-dir] [--quick]
                           [--rounds 3] [--updates 200] [--e2e-steps 200] [--fill 100000]
                           [--experiments] [--json PATH] [--write] [--verbose]
"""

from __future__ import annotations

import sys

from mql.bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

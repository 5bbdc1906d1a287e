"""`make bench`: run every benchmark in bench/, one after another.

Each benchmark measures npuc against a reference in the same run (ratios,
not absolute times) and writes its table to bench/results/. A failing
benchmark stops the run with its exit code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BENCHMARKS = (
    "cpu_baseline.py",  # npuc CPU .so vs onnxruntime: compile time, latency
    "sim_speed.py",  # simulator GMAC/s vs numpy float64 GEMM
    "scalesim_compare.py",  # simulator MAC cycles vs SCALE-Sim (own venv)
)


def main() -> int:
    for name in BENCHMARKS:
        print(f"== bench/{name}", flush=True)
        code = subprocess.run([sys.executable, str(BENCH / name)], check=False).returncode
        if code != 0:
            print(f"bench/{name} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())

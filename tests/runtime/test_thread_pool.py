"""``configure_threads`` gives TVM's pool the requested threads, on any number of CPUs.

TVM caps its pool at half the hardware threads on x86 unless ``TVM_NUM_THREADS``
is set when the pool is created: on a 2-CPU machine ``--threads 2`` ran one
thread. Checked in a fresh process (the pool is process-global and created once).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import tvm
from npuc.runtime import configure_threads
configure_threads({n})
print(tvm.get_global_func("runtime.NumThreads")())
"""


@pytest.mark.parametrize("wanted", [1, 2])
def test_pool_holds_the_requested_threads(wanted: int) -> None:
    if len(os.sched_getaffinity(0)) < wanted:
        pytest.skip(f"this machine gives the process fewer than {wanted} CPUs")
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(n=wanted)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert int(done.stdout.strip().splitlines()[-1]) == wanted

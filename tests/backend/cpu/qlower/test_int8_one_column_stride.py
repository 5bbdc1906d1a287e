"""A fixed defect of issue 14's exact int8 CPU library, kept as a regression test.

An int8 convolution on a one-column input (``W = 1``) with a column stride of 3 or more and
column padding (1x1, 1x3, 1x5, 1x7 kernels) stored other integers than the integer executor,
or crashed the process inside the compiled library (SIGSEGV/SIGABRT), on the host (AVX-512
VNNI) and the AVX2 target: the input packer's chunk count
(``schedules/int8_pack.py``, ``chunks``) went to -1 for an empty run that starts past its
row's end, and the next chunk loop wrote before the run. Found by a helper's fuzzing at
91db5c5 (also at cbc137a). The layer runs in a child process so that a crash fails this test
only.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from npuc.core.target import host_target

_SCRIPT = """
import sys
import numpy as np
from tests.backend.cpu.qlower.harness import Case, node, run_cases
from tests.backend.cpu.schedules.test_int8_avx2 import AVX2_TARGET, OUT, _stage
from npuc.core.target import host_target
from npuc.midend.quantize.qparams import QParams

rng = np.random.default_rng(0)
w = rng.integers(-20, 20, size=(4, 4, 1, 3)).astype(np.int8)
x = rng.integers(0, 256, size=(1, 4, 2, 1)).astype(np.uint8)
attrs = {"strides": [1, 3], "padding": [0, 1, 0, 1], "dilation": [1, 1], "groups": 1}
case = Case(
    node=node("n13", "conv2d", ("n13_x",), **attrs),
    inputs={"n13_x": (x, QParams(0.05, 100, "uint8"))},
    params={"weights": w, **_stage(4, 0)},
    out=OUT,
)
target = AVX2_TARGET if sys.argv[1] == "avx2" else host_target(1)
want, got = run_cases([case], target)["n13"]
np.testing.assert_array_equal(got.astype(np.int64), want, strict=True)
"""


@pytest.mark.parametrize("isa", ["host", "avx2"])
def test_one_column_input_with_stride_3_is_exact(isa: str) -> None:
    if "avx2" not in host_target().features:
        pytest.skip("this machine lacks avx2")
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, isa], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])

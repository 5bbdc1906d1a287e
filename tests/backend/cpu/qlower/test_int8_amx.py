"""The AMX int8 convolution kernel (:mod:`npuc.backend.cpu.schedules.int8_amx`) equals the
integer executor bit for bit, and is chosen only where the target has AMX and the layer
fits its tiles.

Cases: input channels multiples of 64 (16 groups of 4: one tile row), output channels
whose padding is a whole number of 16-channel tiles but not of the 2 x 2 job (a single
tile at the end), output grids that are not whole tiles, strides, dilation, asymmetric
padding, int8/uint8 inputs, every output type, int32 and int64 output stages. Run where
the machine has AMX (skipped elsewhere).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from npuc.backend.cpu.qlower.int8_conv import plan_conv
from npuc.backend.cpu.schedules.int8_amx import amx_eligible, has_amx
from npuc.core.target import CpuTarget, host_target

from .harness import DTYPES, Case, assert_cases_exact, ints, node, qparams
from .test_conv import _out_stage

AMX_FEATURES = ("amx-int8", "amx-tile", "avx2", "avx512bw", "avx512f", "avx512vnni", "fma")

#: (input channels, output channels, kernel, stride, dilation, padding, height, width)
SHAPES = (
    (64, 30, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1), 13, 17),
    (128, 48, (1, 1), (2, 2), (1, 1), (0, 0, 0, 0), 9, 12),
    (64, 16, (5, 3), (2, 1), (2, 1), (2, 0, 1, 2), 15, 11),
    (64, 80, (3, 3), (1, 1), (1, 1), (0, 1, 2, 1), 7, 7),
)


def _amx_target() -> CpuTarget:
    if not has_amx(host_target()):
        pytest.skip("this machine lacks AMX (amx-tile, amx-int8)")
    return CpuTarget(cpu_name="sapphirerapids", features=tuple(sorted(AMX_FEATURES)), num_cores=2)


def _case(rng: np.random.Generator, index: int) -> Case:
    cin, cout, k, stride, dil, pads, h, w = SHAPES[index]
    xq = qparams(rng, ("int8", "uint8")[index % 2])
    out = qparams(rng, DTYPES[index % len(DTYPES)])
    name = f"amx{index}"
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), strides=list(stride), padding=list(pads),
                  dilation=list(dil), groups=1),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (1, cin, h, w)), xq)},
        params={"weights": ints(rng, "int8", (cout, cin, *k)),
                **_out_stage(rng, cout, xq, out, taps=cin * k[0] * k[1], extreme=index == 3)},
        out=out,
    )  # fmt: skip


def test_amx_kernel_is_bit_exact() -> None:
    target = _amx_target()
    rng = np.random.default_rng(21)
    cases = [_case(rng, i) for i in range(len(SHAPES))]
    specs = []
    for case in cases:
        (x, xq), = case.inputs.values()  # fmt: skip
        assert case.out is not None
        spec = plan_conv(case.node, case.params, x.shape, xq, case.out)
        assert spec is not None and amx_eligible(spec), case.node.name
        specs.append(spec)
    assert {s.narrow for s in specs} == {0, 1}, "cases cover the int32 and int64 stages"
    assert {s.phases > 1 for s in specs} == {False, True}, "cases cover strided phases"
    assert_cases_exact(cases, target)


def test_amx_is_chosen_only_with_amx_and_fitting_layers() -> None:
    rng = np.random.default_rng(22)
    case = _case(rng, 0)
    (x, xq), = case.inputs.values()  # fmt: skip
    assert case.out is not None
    spec = plan_conv(case.node, case.params, x.shape, xq, case.out)
    assert spec is not None and amx_eligible(spec)
    assert not amx_eligible(replace(spec, cg=8))  # not a whole tile row of groups
    assert not amx_eligible(replace(spec, ocp=spec.ocp + 4))
    with_amx = CpuTarget(cpu_name="x", features=tuple(sorted(AMX_FEATURES)), num_cores=1)
    without = CpuTarget(cpu_name="x", features=("avx512vnni",), num_cores=1)
    assert has_amx(with_amx) and not has_amx(without)
    assert "+amx-tile" in with_amx.llvm_mattr and "+amx-tile" not in without.llvm_mattr

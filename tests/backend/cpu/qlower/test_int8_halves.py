"""The int8 convolution kernels' multiply stage in int32 halves (``ConvKernelSpec.fits32``,
int8_epilogue.epilogue) equals the integer executor bit for bit at its extremes: multipliers
0, 1, 2^15 - 1, 2^16 - 1, 2^20 and 2^31 - 1, post shifts 0 to 47 (large products and
small shifts leave the result beyond int32: the int64 stage), ahead shifts with and
without the 32-bit saturation, activation clamps, every output type; on this machine's
kernels (VNNI/AMX where present), AVX2 and the generic ones."""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.cpu.qlower.int8_conv import plan_conv
from npuc.core.target import CpuTarget

from .harness import DTYPES, Case, assert_cases_exact, ints, node, qparams

GENERIC = CpuTarget(cpu_name="x86-64", features=("sse2",), num_cores=2)
AVX2 = CpuTarget(cpu_name="haswell", features=("avx", "avx2", "f16c", "fma"), num_cores=2)
MULTIPLIERS = np.array([0, 1, 2**15 - 1, 2**16 - 1, 2**20, 2**31 - 1], np.int64)


def extreme_case(rng: np.random.Generator, index: int) -> Case:
    """A 1x1 or 3x3 conv whose output stage sits at the extremes (module docstring)."""
    cin, cout, k = int(rng.integers(1, 9)), int(rng.integers(2, 9)), int(rng.choice([1, 3]))
    xq = qparams(rng, ("int8", "uint8")[index % 2])
    out = qparams(rng, str(DTYPES[index % len(DTYPES)]))
    info = np.iinfo(np.dtype(out.dtype))
    big = index % 4 == 3  # multipliers up to 2^31 - 1
    pool = MULTIPLIERS if big else MULTIPLIERS[:4]
    mul = rng.choice(pool, size=cout)
    mul[0] = pool[index % len(pool)]
    act_min = int(info.min) if index % 2 else int(rng.integers(int(info.min), int(info.max) // 2))
    name = f"half{index}"
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), strides=[1, 1 + index % 2],
                  padding=[k // 2] * 4, dilation=[1, 1], groups=1),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (1, cin, 6, 11)), xq)},
        params={"weights": ints(rng, "int8", (cout, cin, k, k)),
                "b16": ints(rng, "int16", (cout,)), "bias_shift": int(rng.integers(0, 24)),
                "ofm_multiplier": mul, "pre_shift": int(rng.integers(0, 12)) if index % 3 else 0,
                "post_shift": int(rng.integers(0, 48)), "act_min": act_min,
                "act_max": int(rng.integers(max(act_min, 0), int(info.max) + 1))},
        out=out,
    )  # fmt: skip


def _cases() -> list[Case]:
    rng = np.random.default_rng(41)
    cases = [extreme_case(rng, i) for i in range(24)]
    seen = []
    for case in cases:
        ((x, xq),) = case.inputs.values()
        assert case.out is not None
        spec = plan_conv(case.node, case.params, x.shape, xq, case.out)
        assert spec is not None
        seen.append((bool(spec.fits32), spec.need_sat32))
    assert {t for t, _ in seen} == {False, True}, seen
    assert (True, 1) in seen, "int32 halves after the 32-bit saturation"
    return cases


@pytest.mark.parametrize("target", [None, AVX2, GENERIC], ids=["host", "avx2", "generic"])
def test_multiply_stage_in_halves_is_bit_exact_at_the_extremes(target: CpuTarget | None) -> None:
    assert_cases_exact(_cases(), target)

"""Element-wise, clip, pool, concat and table layers in their narrowest exact type (int32,
float64, else int64; qlower/intops.narrow_type) equal the integer executor bit for bit,
on this machine and on an AVX2-only target (no 64-bit vector multiply or shift there)."""

from __future__ import annotations

import numpy as np
import pytest
from tvm import relax

from npuc.backend.cpu.qlower import lower_model
from npuc.backend.cpu.qlower.intops import F64_LIMIT, I32_LIMIT, narrow_type
from npuc.midend.quantize.qparams import QParams

from .harness import Case, assert_cases_exact, ints, node
from .harness import _model as harness_model
from .test_depthwise import AVX2
from .test_eltwise import binary_case, requant_case
from .test_lut_movement import lut_case


@pytest.mark.parametrize("shift", [0, 1, 12, 47])
def test_narrow_type_takes_the_narrowest_exact_type(shift: int) -> None:
    r = (1 << (shift - 1)) if shift else 0
    assert narrow_type(I32_LIMIT - 1 - r, shift) == "int32"
    assert narrow_type(I32_LIMIT - r, shift) == "float64"
    assert narrow_type(F64_LIMIT - 1 - r, shift) == "float64"
    assert narrow_type(F64_LIMIT - r, shift) == "int64"


def test_random_layers_are_bit_exact_on_avx2() -> None:
    rng = np.random.default_rng(30)
    cases = [binary_case(rng, i) for i in range(20)]
    cases += [requant_case(rng, i) for i in range(20, 32)]
    cases += [lut_case(rng, i) for i in range(32, 38)]
    assert_cases_exact(cases, AVX2)


def _add(name: str, dtype: str, zp: int, multipliers: tuple[int, int], shift: int) -> Case:
    rng = np.random.default_rng(len(name))
    q = QParams(0.1, zp, dtype)
    inputs = {f"{name}_{s}": (ints(rng, dtype, (1, 2, 3, 4)), q) for s in "ab"}
    info = np.iinfo(np.dtype(dtype))
    params = {"ifm_multiplier": multipliers[0], "ifm2_multiplier": multipliers[1],
              "post_shift": shift, "act_min": int(info.min), "act_max": int(info.max)}  # fmt: skip
    return Case(node=node(name, "add", tuple(inputs)), inputs=inputs, params=params, out=q)


def _tensor_dtypes(cases: list[Case]) -> set[str]:
    """Element types of every binding of the lowered module of ``cases``."""
    mod = lower_model(harness_model(cases, [c.node for c in cases]), raw_inputs=True)
    found: set[str] = set()

    def visit(expr: relax.Expr) -> None:
        ty = getattr(expr, "ty", None)
        if isinstance(ty, relax.TensorType):
            found.add(str(ty.dtype))

    relax.analysis.post_order_visit(mod["main"], visit)
    return found


def test_eight_bit_adds_run_in_int32_and_sixteen_bit_in_float64() -> None:
    """The extremes of each path: the largest int32 bound and a float64 one at shift 47."""
    int32_case = _add("a32", "int8", -128, (32767, 32767), 30)  # 255 * 2 * 32767 + 2^29 < 2^31
    f64_case = _add("a64", "int16", -32768, (32767, 32767), 47)
    dtypes = _tensor_dtypes([int32_case])
    assert "int64" not in dtypes and "float64" not in dtypes
    assert "float64" in _tensor_dtypes([f64_case])
    for target in (None, AVX2):
        assert_cases_exact([int32_case, f64_case], target)

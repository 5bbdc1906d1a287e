"""The input quantization kernel (:mod:`npuc.backend.cpu.qlower.quantize_kernel`): a float32
multiply with a float64-divide fallback equals :meth:`QParams.quantize` bit for bit.

Values are crafted where a plain float32 multiply rounds differently from the
executor's float64 divide (the fallback must catch them), next to half-integers,
beyond the clip range, infinite, subnormal and signed zero; sizes cross the
vector, fallback-block and parallel-chunk boundaries. Compiled for the host and
for AVX2.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower.quantize_kernel import (
    BLOCK,
    CHUNK,
    emit_quantize,
    fast_quantize_applies,
)
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.qparams import QParams

AVX2 = CpuTarget(cpu_name="haswell", features=("avx", "avx2", "f16c", "fma"), num_cores=2)
TARGETS = {"host": host_target(), "avx2": AVX2}


def _naive(x: np.ndarray, q: QParams) -> np.ndarray:
    """The float32 multiply alone, without the fallback."""
    y = np.rint(x * np.float32(1.0 / q.scale)).astype(np.float64) + q.zero_point
    return np.clip(y, q.qmin, q.qmax)


def _near_half_integers(q: QParams, ulps: int) -> np.ndarray:
    """float32 values within ``ulps`` ulps of ``(n + 1/2) * scale`` for every ``n`` in range."""
    centres = (np.arange(q.qmin - q.zero_point - 2, q.qmax - q.zero_point + 2) + 0.5) * q.scale
    values = [np.float32(c) for c in centres]
    out = []
    for v in values:
        lo = hi = v
        out.append(v)
        for _ in range(ulps):
            lo = np.nextafter(lo, np.float32(-np.inf))
            hi = np.nextafter(hi, np.float32(np.inf))
            out += [lo, hi]
    return np.asarray(out, np.float32)


def _values(q: QParams, rng: np.random.Generator) -> np.ndarray:
    edge = _near_half_integers(q, 40)
    spread = (rng.uniform(-1.2, 1.2, 3000) * 140 * q.scale).astype(np.float32)
    special = np.asarray(
        [0.0, -0.0, np.inf, -np.inf, 1e-42, -1e-42, 3e38, -3e38, 511.9 * q.scale, 513 * q.scale],
        np.float32,
    )
    return np.concatenate([edge, spread, special])


def _run(x: np.ndarray, q: QParams, target: CpuTarget) -> np.ndarray:
    bb = relax.BlockBuilder()
    param = relax.Var("x", relax.TensorType(x.shape, "float32"))
    with bb.function("main", [param]):
        with bb.dataflow():
            y = bb.emit_output(emit_quantize(bb, param, q))
        bb.emit_func_output(y)
    mod = bb.get()
    assert any(gv.name_hint.startswith("quantize_input") for gv in mod.functions), mod
    vm = relax.VirtualMachine(compile_module(mod, target), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _worst_reciprocal_scale(r: float) -> float:
    """A scale whose ``1 / scale`` lies just below the midpoint of float32 ``r`` and the
    next float32: ``fl32(1 / scale)`` is as far off as it can be (relative ``2^-24``),
    so a float32 multiply misrounds values that are not exact ties too."""
    lo = np.float32(r)
    hi = np.nextafter(lo, np.float32(np.inf))
    return 1.0 / ((float(lo) + float(hi)) / 2 * (1 - 1e-13))


QPARAMS = [
    QParams(_worst_reciprocal_scale(70.0), -3, "int8"),
    QParams(0.004037551551695295, 0, "int8"),
    QParams(0.0187, -3, "int8"),
    QParams(0.02113, 131, "uint8"),
    QParams(1.0 / 1024, 0, "uint8"),
]


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("q", QPARAMS, ids=lambda q: f"{q.dtype}_{q.scale:.4g}_{q.zero_point}")
def test_quantize_kernel_equals_the_executor_where_a_float32_multiply_does_not(
    q: QParams, target: str
) -> None:
    rng = np.random.default_rng(7)
    values = _values(q, rng)
    with np.errstate(invalid="ignore", over="ignore"):
        want = q.quantize(values)
        naive = _naive(values, q)
    risky = values[naive != want]
    if q.scale != 1.0 / 1024:  # a power-of-two scale multiplies exactly
        assert risky.size > 0, "no value that needs the fallback"
    # Each risky value alone in a block of zeros (at a varying lane), so that only its own
    # flag can send the block to the fallback; then every value in a packed, shuffled run
    # that ends in a partial block (the tail) past a chunk boundary.
    isolated = np.zeros((risky.size, BLOCK), np.float32)
    isolated[np.arange(risky.size), np.arange(risky.size) % BLOCK] = risky
    packed = np.resize(rng.permutation(values), 2 * CHUNK + BLOCK + 13)
    x = np.concatenate([isolated.ravel(), packed]).astype(np.float32)
    got = _run(x, q, TARGETS[target])
    with np.errstate(invalid="ignore", over="ignore"):
        np.testing.assert_array_equal(got, q.quantize(x), strict=True)


@pytest.mark.parametrize("shape", [(1,), (63,), (64,), (65,), (1, 3, 5, 7)])
def test_quantize_kernel_small_and_shaped_inputs(shape: tuple[int, ...]) -> None:
    q = QParams(0.0187, -3, "int8")
    rng = np.random.default_rng(8)
    x = (rng.standard_normal(shape) * 1.5).astype(np.float32)
    got = _run(x, q, host_target())
    assert got.shape == shape
    np.testing.assert_array_equal(got, q.quantize(x), strict=True)


def test_fast_quantize_declines_what_it_cannot_prove() -> None:
    assert fast_quantize_applies("float32", QParams(0.01, 0, "int8"))
    assert not fast_quantize_applies("float64", QParams(0.01, 0, "int8"))
    assert not fast_quantize_applies("float32", QParams(0.01, 0, "int16"))
    assert not fast_quantize_applies("float32", QParams(1e-39, 0, "int8"))  # 1/scale overflows
    assert not fast_quantize_applies("float32", QParams(1e39, 0, "int8"))  # 1/scale subnormal

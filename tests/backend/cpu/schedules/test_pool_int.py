"""The pooling rule on integer max pools (the int8 library's): bit-exact, in the pool's own type.

Each case is compared with the unscheduled nest and with a numpy window maximum
(padding never wins: LegalizeOps pads with the type's lowest value), on AVX2 and,
where the host runs it, AVX-512.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.schedules.loops import vector_factor, vector_lanes
from npuc.backend.cpu.schedules.pool import PoolRule
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import run, schedule_with, targets
from tests.backend.cpu.schedules.relax_graphs import graph

op = relax.op


@dataclass(frozen=True, slots=True, kw_only=True)
class IntPoolCase:
    """An integer NCHW (or NHWC) max pool; ``epilogue``: none, ``requant`` (int32 rescale,
    clamp, int8), or ``widened`` (pooled in int32 from an int8 input, then clamped)."""

    dtype: str
    shape: tuple[int, int, int, int]
    pool: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, ...] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    layout: str = "NCHW"
    epilogue: str = "none"

    def __str__(self) -> str:
        return (
            f"{self.dtype}_{self.layout}_{'x'.join(map(str, self.shape))}_k{self.pool}"
            f"s{self.stride}p{self.padding}d{self.dilation}_{self.epilogue}"
        )

    def pooled(self, x: relax.Expr) -> relax.Expr:
        return op.nn.max_pool2d(
            x, self.pool, self.stride, self.padding, self.dilation, layout=self.layout
        )

    def body(self, p: list[relax.Var]) -> relax.Expr:
        def i32(value: int) -> relax.Expr:
            return relax.const(value, "int32")

        if self.epilogue == "widened":
            y = self.pooled(op.astype(p[0], "int32"))
            return op.astype(op.minimum(op.maximum(y, i32(-100)), i32(100)), "int8")
        y = self.pooled(p[0])
        if self.epilogue == "requant":
            v = op.multiply(op.subtract(op.astype(y, "int32"), i32(3)), i32(77))
            v = op.right_shift(op.add(v, i32(32)), i32(6))
            return op.astype(op.minimum(op.maximum(v, i32(-128)), i32(127)), "int8")
        return y

    def module(self) -> tvm.IRModule:
        return graph([self.shape], self.body, dtype=self.dtype)

    def input(self) -> np.ndarray:
        info = np.iinfo(self.dtype)
        lo, hi = (-300, 300) if self.dtype == "int32" else (info.min, info.max)
        x = np.random.default_rng(5).integers(lo, hi, self.shape, endpoint=True)
        x.flat[::7] = lo  # the type's lowest too (what the padding holds)
        return x.astype(self.dtype)


CASES = [
    IntPoolCase(dtype="int8", shape=(1, 6, 23, 23), stride=(2, 2)),  # SqueezeNet: unpadded
    IntPoolCase(dtype="int8", shape=(1, 4, 10, 10), pool=(5, 5), padding=(2, 2)),  # SPPF
    IntPoolCase(dtype="uint8", shape=(1, 3, 40, 40), stride=(2, 2), padding=(1, 1)),
    IntPoolCase(dtype="int8", shape=(1, 2, 24, 24), stride=(2, 2), padding=(0, 0, 1, 1)),
    IntPoolCase(dtype="int8", shape=(1, 2, 19, 21), stride=(2, 2), padding=(2, 2), dilation=(2, 2)),
    IntPoolCase(dtype="int8", shape=(1, 3, 34, 300), pool=(2, 2), stride=(2, 2)),  # wide rows
    IntPoolCase(
        dtype="int16", shape=(1, 2, 9, 30), pool=(2, 5), stride=(1, 3), padding=(0, 2, 1, 0)
    ),
    IntPoolCase(dtype="int32", shape=(1, 3, 21, 21), stride=(2, 2), padding=(1, 1)),
    IntPoolCase(
        dtype="int8", shape=(1, 8, 10, 10), pool=(5, 5), padding=(2, 2), epilogue="requant"
    ),
    IntPoolCase(
        dtype="int8", shape=(1, 8, 21, 21), stride=(2, 2), padding=(1, 1), epilogue="widened"
    ),
]
NHWC = [
    IntPoolCase(dtype="int8", shape=(1, 13, 13, 40), stride=(2, 2), padding=(1, 1), layout="NHWC"),
    IntPoolCase(dtype="uint8", shape=(1, 8, 8, 64), pool=(2, 2), stride=(2, 2), layout="NHWC"),
]


def max_pool_reference(case: IntPoolCase, x: np.ndarray) -> np.ndarray:
    """The window maximum over the input values it covers (padding never wins), then the
    case's epilogue, in numpy."""
    nchw = x if case.layout == "NCHW" else x.transpose(0, 3, 1, 2)
    h, w = nchw.shape[2:]
    top, left = case.padding[0], case.padding[1]
    bottom, right = case.padding[2:] if len(case.padding) == 4 else case.padding
    span = [(k - 1) * d + 1 for k, d in zip(case.pool, case.dilation, strict=True)]
    out_h = (h + top + bottom - span[0]) // case.stride[0] + 1
    out_w = (w + left + right - span[1]) // case.stride[1] + 1
    out = np.full((*nchw.shape[:2], out_h, out_w), np.iinfo(x.dtype).min, np.int64)
    for y, xo, ky, kx in np.ndindex(out_h, out_w, *case.pool):
        r = y * case.stride[0] + ky * case.dilation[0] - top
        c = xo * case.stride[1] + kx * case.dilation[1] - left
        if 0 <= r < h and 0 <= c < w:
            out[:, :, y, xo] = np.maximum(out[:, :, y, xo], nchw[:, :, r, c])
    if case.epilogue == "requant":
        out = np.clip(((out - 3) * 77 + 32) >> 6, -128, 127)
    if case.epilogue == "widened":
        out = np.clip(out, -100, 100)
    dtype = "int8" if case.epilogue != "none" else x.dtype
    out = out.astype(dtype)
    return out if case.layout == "NCHW" else out.transpose(0, 2, 3, 1)


def _check(case: IntPoolCase, target: CpuTarget, scheduled_text: Callable[[str], None]) -> None:
    x = case.input()
    want = run(schedule_with(case.module(), target, None)[0], target, [x])
    scheduled, applied = schedule_with(case.module(), target, PoolRule())
    assert len(applied) == 1, f"pool rule did not apply to {case}"
    got = run(scheduled, target, [x])
    np.testing.assert_array_equal(got, want, strict=True)
    np.testing.assert_array_equal(got, max_pool_reference(case, x), strict=True)
    scheduled_text(scheduled.script())


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_integer_nchw_max_pool_row_kernel(case: IntPoolCase, target: CpuTarget) -> None:
    """The separable row kernel in the pool's type (the fallback took these: 4-18x slower)."""

    def row_kernel_in_its_type(text: str) -> None:
        assert "pool_rows" in text
        pooled = "int32" if case.epilogue == "widened" else case.dtype
        assert f'sblock_alloc_buffer(({_row_width(case)},), "{pooled}")' in text

    _check(case, target, row_kernel_in_its_type)


def _row_width(case: IntPoolCase) -> int:
    w = case.shape[3]
    left, right = case.padding[1], (case.padding[3] if len(case.padding) == 4 else case.padding[1])
    span = (case.pool[1] - 1) * case.dilation[1] + 1
    out_w = (w + left + right - span) // case.stride[1] + 1
    return (out_w - 1) * case.stride[1] + span


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", NHWC, ids=str)
def test_integer_nhwc_max_pool(case: IntPoolCase, target: CpuTarget) -> None:
    """NHWC: channel vectors of the type's lanes (up to 32 bytes on AVX2, 64 with AVX-512)."""
    lanes = vector_factor(case.shape[3], vector_lanes(target, case.dtype))

    def byte_vectors(text: str) -> None:
        assert f"T.vectorized(T.int64({lanes}))" in text

    _check(case, target, byte_vectors)


def test_integer_average_is_left_alone() -> None:
    """An integer sum window is not a max: the rule declines it (the int8 library emits
    its average pools as exact sums elsewhere)."""
    module = graph([(1, 2, 8, 8)], lambda p: op.nn.avg_pool2d(p[0], (2, 2), (2, 2)), "int32")
    assert schedule_with(module, targets()[0], PoolRule())[1] == []


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_pool_with_a_fused_pad_writes_the_padding(dtype: str, target: CpuTarget) -> None:
    """A max pool fused with a ``pad`` (the int8 library's deferred float layers: pool, channel
    pad) writes a bigger output than the pool's: the row kernel, one value per pool output,
    left the padding unwritten (stale memory; found by test_deferred's chain on int8). The
    rule now schedules it as a nest. Run first, so no earlier result sits in the memory."""
    pad_value = 0.5 if dtype == "float32" else 5
    shape = (1, 3, 6, 6)

    def body(p: list[relax.Var]) -> relax.Expr:
        pooled = op.nn.max_pool2d(p[0], (2, 2), (2, 2))
        return op.nn.pad(pooled, [0, 0, 0, 2, 0, 1, 0, 0], "constant", pad_value)

    x = (np.random.default_rng(6).standard_normal(shape) * 20).astype(dtype)
    scheduled, applied = schedule_with(graph([shape], body, dtype), target, PoolRule())
    assert len(applied) == 1
    got = run(scheduled, target, [x])
    want = np.full((1, 5, 4, 3), pad_value, dtype)
    want[:, :3, :3] = x.reshape(1, 3, 3, 2, 3, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(got, want, strict=True)

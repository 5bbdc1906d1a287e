"""The NHWC conv2d and depthwise rules: scheduled kernels equal the unscheduled loop nests.

Graphs as TFLite's importer writes them (``data_layout="NHWC"``, weights
``HWIO``, depthwise ``HWOI`` with ``groups`` = channels), with the epilogues
BlazeFace has (bias + ReLU, a residual add, a residual whose channels are
zero-padded, none). Each is compiled as LegalizeOps and FuseOps left it and
with the rule (weights packed at compile time) and run on the same input; the
two sum each output in a different order only through fused multiply-adds,
so rtol 1e-5, atol 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import tvm
from tvm import relax, s_tir, tirx

from npuc.backend.cpu.schedules.conv2d import Conv2dRule
from npuc.backend.cpu.schedules.conv2d_nhwc import (
    Conv2dNhwcRule,
    DepthwiseConv2dNhwcRule,
    choose_strip,
    padded_nhwc_channels,
)
from npuc.backend.cpu.schedules.nhwc_match import NhwcConv, match_nhwc_conv
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import (
    check_rule_matches_unscheduled,
    schedule_with,
    targets,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class NhwcCase:
    """One NHWC conv2d (+ epilogue) graph."""

    channels: int
    filters: int
    size: tuple[int, int]
    kernel: tuple[int, int] = (3, 3)
    stride: int = 1
    padding: int = 0
    depthwise: bool = False
    epilogue: str = "bias_relu"  # "none", "bias_relu", "residual", "padded_residual"

    def __str__(self) -> str:
        kind = "dw" if self.depthwise else "conv"
        return (
            f"{kind}_c{self.channels}k{self.filters}_{self.size[0]}x{self.size[1]}_"
            f"k{self.kernel[0]}x{self.kernel[1]}_s{self.stride}p{self.padding}_{self.epilogue}"
        )

    def out_shape(self) -> tuple[int, int, int, int]:
        dims = [
            (size + 2 * self.padding - kernel) // self.stride + 1
            for size, kernel in zip(self.size, self.kernel, strict=True)
        ]
        return (1, dims[0], dims[1], self.filters)

    def module(self, seed: int = 0) -> tvm.IRModule:
        rng = np.random.default_rng(seed)
        if self.depthwise:
            w_shape = (*self.kernel, self.channels, 1)
        else:
            w_shape = (*self.kernel, self.channels, self.filters)
        weight = rng.standard_normal(w_shape).astype(np.float32)
        bias = rng.standard_normal((self.filters,)).astype(np.float32)
        x = relax.Var("x", relax.TensorType((1, *self.size, self.channels), "float32"))
        params = [x]
        residual_shape = list(self.out_shape())
        if self.epilogue == "padded_residual":
            residual_shape[3] = self.channels
        residual = relax.Var("r", relax.TensorType(tuple(residual_shape), "float32"))
        if self.epilogue in ("residual", "padded_residual"):
            params.append(residual)
        bb = relax.BlockBuilder()
        with bb.function("main", params):
            with bb.dataflow():
                y = bb.emit(
                    relax.op.nn.conv2d(
                        x,
                        relax.const(weight),
                        strides=self.stride,
                        padding=self.padding,
                        groups=self.channels if self.depthwise else 1,
                        data_layout="NHWC",
                        kernel_layout="HWOI" if self.depthwise else "HWIO",
                    )
                )
                if self.epilogue != "none":
                    y = bb.emit(relax.op.add(y, relax.const(bias)))
                if self.epilogue == "residual":
                    y = bb.emit(relax.op.add(y, residual))
                elif self.epilogue == "padded_residual":
                    extra = self.filters - self.channels
                    padded = relax.op.nn.pad(residual, [0, 0, 0, 0, 0, 0, 0, extra])
                    y = bb.emit(relax.op.add(y, padded))
                if self.epilogue != "none":
                    y = bb.emit(relax.op.nn.relu(y))
                out = bb.emit_output(y)
            bb.emit_func_output(out)
        return bb.get()

    def inputs(self, seed: int = 1) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        arrays = [rng.standard_normal((1, *self.size, self.channels)).astype(np.float32)]
        if self.epilogue == "residual":
            arrays.append(rng.standard_normal(self.out_shape()).astype(np.float32))
        elif self.epilogue == "padded_residual":
            shape = (*self.out_shape()[:3], self.channels)
            arrays.append(rng.standard_normal(shape).astype(np.float32))
        return arrays


REGULAR = [
    NhwcCase(channels=3, filters=24, size=(32, 32), kernel=(5, 5), stride=2, padding=1),
    NhwcCase(channels=24, filters=24, size=(16, 16), kernel=(1, 1), epilogue="residual"),
    NhwcCase(channels=24, filters=28, size=(16, 16), kernel=(1, 1), epilogue="padded_residual"),
    NhwcCase(channels=72, filters=80, size=(8, 8), kernel=(1, 1), epilogue="padded_residual"),
    NhwcCase(channels=16, filters=32, size=(9, 7), padding=1, epilogue="none"),
    NhwcCase(channels=7, filters=12, size=(6, 10), kernel=(2, 3), stride=2, padding=1),
]
#: 1x1 convolutions computed on channels padded to whole vectors (42 and 2 have no
#: power-of-two vector of 4 or more lanes at all; 28 and 56 only narrow ones).
PADDED_CHANNELS = [
    NhwcCase(channels=36, filters=42, size=(8, 8), kernel=(1, 1), epilogue="padded_residual"),
    NhwcCase(channels=88, filters=2, size=(4, 4), kernel=(1, 1)),
    NhwcCase(channels=24, filters=28, size=(16, 16), kernel=(1, 1), epilogue="none"),
    NhwcCase(channels=48, filters=56, size=(6, 6), kernel=(1, 1), stride=2),
]
DEPTHWISE = [
    NhwcCase(channels=24, filters=24, size=(16, 16), padding=1, depthwise=True, epilogue="none"),
    NhwcCase(channels=28, filters=28, size=(16, 16), stride=2, padding=1, depthwise=True),
    NhwcCase(channels=42, filters=42, size=(9, 9), padding=1, depthwise=True),
    NhwcCase(channels=96, filters=96, size=(8, 8), padding=1, depthwise=True),
    NhwcCase(
        channels=5, filters=5, size=(7, 9), kernel=(1, 3), depthwise=True, epilogue="residual"
    ),
]
TARGETS = targets()


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", REGULAR, ids=str)
def test_conv2d_nhwc_rule_matches_unscheduled(case: NhwcCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, Conv2dNhwcRule())


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", DEPTHWISE, ids=str)
def test_depthwise_nhwc_rule_matches_unscheduled(case: NhwcCase, target: CpuTarget) -> None:
    check_rule_matches_unscheduled(case, target, DepthwiseConv2dNhwcRule())


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", PADDED_CHANNELS, ids=str)
def test_conv2d_nhwc_rule_pads_channels_exactly(case: NhwcCase, target: CpuTarget) -> None:
    """Padded channels are computed on zero weights and never stored."""
    check_rule_matches_unscheduled(case, target, Conv2dNhwcRule())


def _nhwc_conv(case: NhwcCase, target: CpuTarget) -> NhwcConv:
    for func in _prim_funcs(schedule_with(case.module(), target, None)[0]):
        conv = match_nhwc_conv(s_tir.Schedule(func))
        if conv is not None:
            return conv
    raise AssertionError(f"no NHWC convolution in {case}")


@pytest.mark.parametrize(
    ("filters", "width", "padded"),
    [
        (42, 32, 48),
        (28, 64, 32),
        (36, 32, 48),
        (88, 16, 96),
        (2, 16, 16),
        (24, 64, 24),
        (32, 8, 32),
    ],
)
def test_padded_channels_avx512(filters: int, width: int, padded: int) -> None:
    """AVX-512 (16 lanes): 24 channels keep three 8-lane vectors x 8 columns (as many real
    outputs as 32 x 8; padded, their partial output vector ran 1.6x slower)."""
    target = TARGETS[-1]
    assert target.vector_bits == 512
    case = NhwcCase(channels=16, filters=filters, size=(width, width), kernel=(1, 1))
    assert padded_nhwc_channels(_nhwc_conv(case, target), target) == padded


def test_padded_channels_only_for_pointwise() -> None:
    target = TARGETS[-1]
    case = NhwcCase(channels=8, filters=42, size=(8, 8), kernel=(3, 3), padding=1)
    assert padded_nhwc_channels(_nhwc_conv(case, target), target) == 42


def test_conv2d_nhwc_rule_keeps_packed_weights() -> None:
    """The packing block survives the epilogue inlining (PrepackWeights folds it)."""
    target = TARGETS[-1]
    for case in (REGULAR[1], PADDED_CHANNELS[0]):
        mod, applied = schedule_with(case.module(), target, Conv2dNhwcRule())
        assert applied
        assert all(name + "_prepacked" in [g.name_hint for g in mod.functions] for name in applied)


def _prim_funcs(mod: tvm.IRModule) -> list[tirx.PrimFunc]:
    return [f for _, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)]


def test_nhwc_and_nchw_rules_leave_each_other_alone() -> None:
    target = TARGETS[0]
    regular, depthwise = REGULAR[1], DEPTHWISE[0]
    for func in _prim_funcs(schedule_with(regular.module(), target, None)[0]):
        assert DepthwiseConv2dNhwcRule().apply(func, target) is None
        assert Conv2dRule().apply(func, target) is None
    for func in _prim_funcs(schedule_with(depthwise.module(), target, None)[0]):
        assert Conv2dNhwcRule().apply(func, target) is None


def test_depthwise_strip_fits_the_register_budget() -> None:
    target = TARGETS[0]  # AVX2: 8 lanes, 12 accumulator vectors
    for func in _prim_funcs(schedule_with(DEPTHWISE[3].module(), target, None)[0]):
        conv = match_nhwc_conv(s_tir.Schedule(func))
        if conv is not None:
            strip = choose_strip(conv, target)
            assert strip * -(-conv.out_channels // 8) <= 12
            assert conv.out_width % strip == 0
            return
    pytest.fail("no NHWC convolution found")


@pytest.mark.parametrize(
    ("case", "parallel"),
    [
        (NhwcCase(channels=96, filters=96, size=(8, 8), kernel=(1, 1)), True),  # 590K MACs
        (NhwcCase(channels=96, filters=16, size=(8, 8), kernel=(1, 1)), False),  # 98K
        (NhwcCase(channels=64, filters=64, size=(16, 16), padding=1, depthwise=True), True),
        (NhwcCase(channels=96, filters=96, size=(8, 8), padding=1, depthwise=True), False),
    ],
    ids=str,
)
def test_small_kernels_run_on_one_thread(case: NhwcCase, parallel: bool) -> None:
    """Below PARALLEL_MIN_MACS multiply-adds the kernel has no parallel loop."""
    target = TARGETS[-1]
    rule = DepthwiseConv2dNhwcRule() if case.depthwise else Conv2dNhwcRule()
    scheduled = [
        rule.apply(f, target) for f in _prim_funcs(schedule_with(case.module(), target, None)[0])
    ]
    (func,) = [f for f in scheduled if f is not None]
    assert ("T.parallel" in func.script()) == parallel


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("channels", [1, 2, 3])
def test_tiny_channel_inputs_are_padded_by_rows(channels: int, target: CpuTarget) -> None:
    """An RGB-like input (fewer channels than a vector) is padded row by row, each pixel's
    channels one short vector (BlazeFace's first layer: the scalar copy was 40% of it); the
    result equals the unscheduled kernel's, padding included (5x5 stride 2, pad 2, 40x40:
    parallel)."""
    case = NhwcCase(
        channels=channels, filters=16, size=(40, 40), kernel=(5, 5), stride=2, padding=2
    )
    (func,) = _prim_funcs(schedule_with(case.module(), target, None)[0])
    scheduled = Conv2dNhwcRule().apply(func, target)
    assert scheduled is not None
    if channels > 1:
        assert f"T.vectorized(T.int64({channels}))" in scheduled.script()
    check_rule_matches_unscheduled(case, target, Conv2dNhwcRule())

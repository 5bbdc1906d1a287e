"""The pooling rule: scheduled == unscheduled, chosen by the schedule pass, and vs onnxruntime.

Max pooling is compared bit-exactly (a maximum is exact in any order); average
pooling with rtol/atol 1e-6 (the same sums in the same order, but LLVM may
turn the division into another rounding path).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper
from tvm import relax

from npuc import runtime
from npuc.backend.cpu import build_library, host_target
from npuc.backend.cpu.schedules import RULES
from npuc.backend.cpu.schedules.pool import PoolRule
from npuc.backend.cpu.schedules.pool_rows import ROW_VECTOR_MAX
from npuc.core.target import CpuTarget
from tests.backend.cpu.schedules.conv_harness import AVX2, run, schedule_with, targets
from tests.backend.cpu.schedules.relax_graphs import check_same, graph
from tests.backend.cpu.small_models import import_onnx
from tests.tooling.reference import run_onnxruntime

op = relax.op


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolCase:
    """One pooling graph: ``kind`` is ``max``, ``avg`` or ``global`` (adaptive to 1x1)."""

    kind: str
    shape: tuple[int, int, int, int]
    pool: tuple[int, int] = (3, 3)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, ...] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    ceil_mode: bool = False
    count_include_pad: bool = False
    layout: str = "NCHW"
    relu: bool = False

    def __str__(self) -> str:
        return (
            f"{self.kind}_{self.layout}_{'x'.join(map(str, self.shape))}_k{self.pool}"
            f"s{self.stride}p{self.padding}d{self.dilation}"
            f"{'_ceil' if self.ceil_mode else ''}{'_incl' if self.count_include_pad else ''}"
            f"{'_relu' if self.relu else ''}"
        )

    def body(self, x: relax.Expr) -> relax.Expr:
        if self.kind == "global":
            return op.nn.adaptive_avg_pool2d(x, (1, 1), layout=self.layout)
        common = {
            "pool_size": self.pool,
            "strides": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "ceil_mode": self.ceil_mode,
            "layout": self.layout,
        }
        if self.kind == "max":
            y = op.nn.max_pool2d(x, **common)
        else:
            y = op.nn.avg_pool2d(x, count_include_pad=self.count_include_pad, **common)
        return op.nn.relu(y) if self.relu else y

    def module(self) -> tvm.IRModule:
        return graph([self.shape], lambda p: self.body(p[0]))

    def inputs(self) -> list[np.ndarray]:
        return [np.random.default_rng(3).uniform(-1, 1, self.shape).astype(np.float32)]


CASES = [
    PoolCase(kind="max", shape=(1, 8, 20, 20), stride=(2, 2), padding=(1, 1)),  # ResNet stem
    PoolCase(kind="max", shape=(1, 5, 13, 13), stride=(2, 2), ceil_mode=True),  # odd channels
    PoolCase(kind="avg", shape=(1, 6, 14, 14), padding=(1, 1)),  # Inception, pads not counted
    PoolCase(kind="avg", shape=(1, 3, 9, 11), padding=(1, 1), count_include_pad=True),
    PoolCase(kind="avg", shape=(1, 4, 7, 7), pool=(2, 2), stride=(2, 2), ceil_mode=True),
    PoolCase(kind="max", shape=(1, 4, 12, 12), padding=(2, 2), dilation=(2, 2), relu=True),
    PoolCase(kind="max", shape=(1, 3, 10, 9), pool=(2, 3), stride=(1, 2), padding=(0, 0, 1, 1)),
    PoolCase(kind="max", shape=(1, 8, 8, 24), pool=(2, 2), stride=(2, 2), layout="NHWC"),
    PoolCase(kind="max", shape=(1, 9, 9, 7), stride=(2, 2), padding=(1, 1), layout="NHWC"),
    PoolCase(kind="avg", shape=(1, 6, 6, 32), padding=(1, 1), layout="NHWC", relu=True),
    PoolCase(kind="avg", shape=(1, 7, 7, 12), stride=(2, 2), ceil_mode=True, layout="NHWC"),
    PoolCase(kind="global", shape=(1, 5, 5, 20), layout="NHWC"),
]


def check_pool(case: PoolCase, target: CpuTarget) -> None:
    """The rule takes ``case``'s one kernel and gives the unscheduled nest's result."""
    module = case.module()
    want = run(schedule_with(module, target, None)[0], target, case.inputs())
    scheduled, applied = schedule_with(module, target, PoolRule())
    assert len(applied) == 1, f"pool rule did not apply to {case}"
    got = run(scheduled, target, case.inputs())
    if case.kind == "max":
        np.testing.assert_array_equal(got, want, strict=True)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_rule_matches_unscheduled_on_the_host(case: PoolCase) -> None:
    check_pool(case, targets()[-1])


@pytest.mark.parametrize("case", [CASES[2], CASES[8]], ids=str)
def test_rule_matches_unscheduled_on_avx2(case: PoolCase) -> None:
    check_pool(case, AVX2)


#: NCHW pools of the separable row kernel (``pool_rows``): strides, asymmetric and no padding,
#: dilation, ``ceil_mode``, odd sizes, windows wider than the padding, the models' shapes scaled.
ROW_KERNEL = [
    PoolCase(kind="max", shape=(1, 3, 40, 40), stride=(2, 2), padding=(1, 1)),  # ShuffleNet stem
    PoolCase(kind="avg", shape=(1, 2, 33, 36), stride=(2, 2), padding=(1, 1), relu=True),
    PoolCase(kind="avg", shape=(1, 2, 20, 35), stride=(2, 2), padding=(1, 1), ceil_mode=True),
    PoolCase(kind="max", shape=(1, 2, 50, 53), stride=(3, 3), padding=(1, 1)),
    PoolCase(kind="max", shape=(1, 3, 24, 24), stride=(2, 2), padding=(0, 0, 1, 1)),  # Inception
    PoolCase(kind="max", shape=(1, 3, 23, 23), stride=(2, 2)),  # SqueezeNet: no padding, odd
    PoolCase(kind="max", shape=(1, 4, 10, 10), pool=(5, 5), padding=(2, 2)),  # YOLOv8n SPPF
    PoolCase(kind="max", shape=(1, 5, 14, 14), padding=(1, 1)),  # stride 1, 14 wide (a loop)
    PoolCase(kind="avg", shape=(1, 3, 28, 28), padding=(1, 1)),  # pads not counted
    PoolCase(
        kind="avg", shape=(1, 3, 28, 28), stride=(2, 2), padding=(1, 1), count_include_pad=True
    ),
    PoolCase(kind="avg", shape=(1, 2, 16, 17), pool=(2, 2), stride=(2, 2), ceil_mode=True),
    PoolCase(kind="max", shape=(1, 2, 19, 21), stride=(2, 2), padding=(2, 2), dilation=(2, 2)),
    PoolCase(kind="max", shape=(1, 2, 9, 30), pool=(2, 5), stride=(1, 3), padding=(0, 2, 1, 0)),
    PoolCase(kind="max", shape=(2, 3, 12, 12), pool=(3, 3), stride=(2, 2), ceil_mode=True),
]


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", ROW_KERNEL, ids=str)
def test_nchw_pool_row_kernel(case: PoolCase, target: CpuTarget) -> None:
    check_pool(case, target)
    text = schedule_with(case.module(), target, PoolRule())[0].script()
    assert "pool_rows" in text  # the separable row kernel, not the scheduled nest
    if case.kind == "max":
        np.testing.assert_array_equal(
            run(schedule_with(case.module(), target, PoolRule())[0], target, case.inputs()),
            max_pool_reference(case, case.inputs()[0]),
            strict=True,
        )


#: Rows wider than ``ROW_VECTOR_MAX`` (600 columns: blocks at 0, 256 and 344, the last
#: overlapping), with padded rows (tested) and an inside row.
WIDE_ROWS = [
    PoolCase(kind="max", shape=(1, 2, 3, 600), stride=(1, 2), padding=(1, 1)),
    PoolCase(kind="avg", shape=(1, 2, 4, 600), pool=(2, 3), padding=(0, 1, 1, 1)),
]


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", WIDE_ROWS, ids=str)
def test_wide_rows_are_reduced_in_bounded_vectors(case: PoolCase, target: CpuTarget) -> None:
    """One vector over a whole wide row made the build take minutes (129 s at 17000 columns)
    or abort LLVM (32768 and more: TVM's lane count overflowed); blocks give the same result."""
    text = schedule_with(case.module(), target, PoolRule())[0].script()
    lanes = [int(n) for n in re.findall(r"T\.vectorized\((?:0, )?(\d+)\)", text)]
    assert lanes and max(lanes) <= ROW_VECTOR_MAX, lanes
    check_pool(case, target)
    if case.kind == "max":
        np.testing.assert_array_equal(
            run(schedule_with(case.module(), target, PoolRule())[0], target, case.inputs()),
            max_pool_reference(case, case.inputs()[0]),
            strict=True,
        )


def _pads(case: PoolCase) -> tuple[int, int]:
    """(top, left) padding of ``case``."""
    return (case.padding[0], case.padding[1])


def max_pool_reference(case: PoolCase, x: np.ndarray) -> np.ndarray:
    """NCHW max pool in numpy, onnxruntime's padding: padded rows are skipped (a window of
    ``-inf`` gives ``-inf``), padded columns count as ``-FLT_MAX``; NaN skipped (``np.fmax``)."""
    out_shape = tuple(int(d) for d in case.module()["main"].ret_ty.shape)
    top, left = _pads(case)
    lowest = np.float32(np.finfo(np.float32).min)
    out = np.full(out_shape, -np.inf, np.float32)
    for y, xo in np.ndindex(*out_shape[2:]):
        for ky, kx in np.ndindex(*case.pool):
            r = y * case.stride[0] + ky * case.dilation[0] - top
            c = xo * case.stride[1] + kx * case.dilation[1] - left
            if not 0 <= r < x.shape[2]:
                continue
            tap = x[:, :, r, c] if 0 <= c < x.shape[3] else lowest
            out[:, :, y, xo] = np.fmax(out[:, :, y, xo], tap)
    return out


def _special_values(shape: tuple[int, ...]) -> np.ndarray:
    """Finite values with NaN and ``-inf`` sprinkled in, and one all ``-inf`` plane."""
    rng = np.random.default_rng(8)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    x[rng.random(shape) < 0.2] = np.nan
    x[rng.random(shape) < 0.2] = -np.inf
    x[:, 0] = -np.inf
    x[:, 1, ::2] = np.nan
    return x


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
@pytest.mark.parametrize("case", [ROW_KERNEL[0], ROW_KERNEL[4], ROW_KERNEL[6]], ids=str)
def test_max_pool_skips_nan_and_padding(case: PoolCase, target: CpuTarget) -> None:
    """NaN inputs are skipped; a window of ``-inf`` gives ``-inf`` (``-FLT_MAX`` with padded
    columns, as onnxruntime)."""
    x = _special_values(case.shape)
    scheduled, applied = schedule_with(case.module(), target, PoolRule())
    assert len(applied) == 1
    got = run(scheduled, target, [x])
    want = max_pool_reference(case, x)
    np.testing.assert_array_equal(got, want, strict=True)
    lowest = np.finfo(np.float32).min
    assert np.isneginf(got[:, 0]).any() and (np.isneginf(got[:, 0]) | (got[:, 0] == lowest)).all()


def test_max_pool_minus_inf_matches_onnxruntime(tmp_path: Path) -> None:
    """Inception's padding (bottom and right only) and windows of ``-inf``: as onnxruntime
    (which skips padded rows but counts padded columns as ``-FLT_MAX``)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 4, 16, 16)).astype(np.float32)
    x[:, 1] = -np.inf  # every window, padded or not, is -inf
    x[:, 2, 8:, 8:] = -np.inf  # the bottom-right windows, with their padding
    x[rng.random(x.shape) < 0.2] = -np.inf
    model = _single_pool_model("MaxPool", (1, 4, 16, 16), (1, 4, 8, 8), pads=[0, 0, 1, 1])
    mod, info = import_onnx(model, source_path="maxpool.onnx")
    result = build_library(mod, info, host_target(num_cores=2), tmp_path / "maxpool.so")
    assert result.schedule_counts.get("pool", 0) == 1, result.schedule_counts
    got = runtime.load(result.library_path).run({"x": x})["y"]
    want = run_onnxruntime(model, {"x": x})["y"]
    assert np.isneginf(want[:, 1, :, :7]).all() and np.isneginf(want[:, 2, 4:, 4:7]).all()
    np.testing.assert_array_equal(got, want, strict=True)


def _single_pool_model(
    op_type: str, shape: tuple[int, ...], out: tuple[int, ...], pads: list[int]
) -> onnx.ModelProto:
    """x -> ``op_type`` (3x3, stride 2, ``pads``) -> y."""
    node = helper.make_node(op_type, ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=pads)
    graph_proto = helper.make_graph(
        [node],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out))],
    )
    return helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)])


def _blazeface_shortcut(p: list[relax.Var]) -> relax.Expr:
    """NHWC max pool 2x2/2, channels zero-padded 28 -> 32, plus the residual, ReLU."""
    pooled = op.nn.max_pool2d(p[0], (2, 2), (2, 2), layout="NHWC")
    return op.nn.relu(op.add(op.nn.pad(pooled, [0, 0, 0, 0, 0, 0, 0, 4]), p[1]))


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.cpu_name)
def test_channel_padded_residual_epilogue(target: CpuTarget) -> None:
    """BlazeFace's shortcut: the pool and its fused epilogue are one kernel of the rule."""
    shapes = [(1, 16, 16, 28), (1, 8, 8, 32)]
    module = graph(shapes, _blazeface_shortcut)
    rng = np.random.default_rng(4)
    inputs = [rng.uniform(-1, 1, shape).astype(np.float32) for shape in shapes]
    want = run(schedule_with(module, target, None)[0], target, inputs)
    scheduled, applied = schedule_with(module, target, PoolRule())
    assert len(applied) == 1
    np.testing.assert_array_equal(run(scheduled, target, inputs), want, strict=True)


def test_vector_width_follows_the_target() -> None:
    """NHWC: each pixel's channels in vectors of the target's float32 lanes."""
    case = PoolCase(kind="avg", shape=(1, 6, 6, 32), padding=(1, 1), layout="NHWC")
    avx512 = CpuTarget(cpu_name="icelake-server", features=("avx2", "avx512f"), num_cores=2)
    text_avx2 = schedule_with(case.module(), AVX2, PoolRule())[0].script()
    text_avx512 = schedule_with(case.module(), avx512, PoolRule())[0].script()
    assert "T.vectorized(T.int64(8))" in text_avx2
    assert "T.vectorized(T.int64(16))" in text_avx512
    assert "T.vectorized(T.int64(16))" not in text_avx2


def test_schedule_pass_picks_the_rule_and_leaves_other_reductions_alone() -> None:
    """Pools go to ``pool``; an NCHW global average and a mean over H, W stay on the fallback."""
    shape = (1, 8, 16, 16)
    pools = check_same(
        graph(
            [shape],
            lambda p: op.add(
                op.nn.max_pool2d(p[0], 3, 1, padding=1), op.nn.avg_pool2d(p[0], 3, 1, padding=1)
            ),
        ),
        RULES,
    )
    assert sorted(pools.rule_of.values()).count("pool") == 2, pools.rule_of
    means = check_same(
        graph(
            [shape],
            lambda p: op.add(
                op.nn.adaptive_avg_pool2d(p[0], (1, 1)), op.mean(p[0], axis=[2, 3], keepdims=True)
            ),
        ),
        RULES,
    )
    assert "pool" not in means.rule_of.values(), means.rule_of


def _pool_model() -> onnx.ModelProto:
    """x[1,6,15,15] -> MaxPool(3, s2, pad 1, ceil) -> Relu -> AveragePool(3, s1, pad 1)."""
    nodes = [
        helper.make_node(
            "MaxPool", ["x"], ["m"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["m"], ["r"]),
        helper.make_node(
            "AveragePool", ["r"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], ceil_mode=1
        ),
    ]
    graph_proto = helper.make_graph(
        nodes,
        "pools",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 15, 15])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8, 8])],
    )
    return helper.make_model(graph_proto, opset_imports=[helper.make_opsetid("", 17)])


def test_library_matches_onnxruntime(tmp_path: Path) -> None:
    model = _pool_model()
    mod, info = import_onnx(model, source_path="pools.onnx")
    result = build_library(mod, info, host_target(num_cores=2), tmp_path / "pools.so")
    assert result.schedule_counts.get("pool", 0) >= 1, result.schedule_counts
    x = np.random.default_rng(11).standard_normal((1, 6, 15, 15)).astype(np.float32)
    got = runtime.load(result.library_path).run({"x": x})["y"]
    want = run_onnxruntime(model, {"x": x})["y"]
    # fp32 sums of nine values, divided by the count: another order than onnxruntime's.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

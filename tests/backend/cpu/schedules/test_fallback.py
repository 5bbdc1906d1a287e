"""The parallel-and-vectorise fallback: scheduled == unscheduled over many shapes.

Every case runs with no other rule, so the fallback schedules every kernel
(convolutions included). Float tolerances: rtol 1e-5, atol 1e-5 (1e-4 for
convolutions, which sum up to 72 products); integers bit-exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from tvm import relax

from npuc.backend.cpu.schedule_pass import ScheduleReport
from npuc.backend.cpu.schedules import ScheduleRule
from tests.backend.cpu.schedules.relax_graphs import build, check_same, graph, run

FALLBACK_ONLY: tuple[ScheduleRule, ...] = ()
op = relax.op


@pytest.mark.parametrize(
    "shape", [(1, 64, 56, 56), (3, 7), (1, 1000), (2, 3, 5, 7), (1, 32, 13, 13), (17,)]
)
def test_elementwise_chain(shape: tuple[int, ...]) -> None:
    mod = graph([shape, shape], lambda p: op.nn.relu(op.add(op.multiply(p[0], p[1]), p[0])))
    check_same(mod, FALLBACK_ONLY)


@pytest.mark.parametrize(("shape", "axis"), [((1, 1000), -1), ((4, 37), -1), ((2, 8, 6), 1)])
def test_softmax(shape: tuple[int, ...], axis: int) -> None:
    check_same(graph([shape], lambda p: op.nn.softmax(p[0], axis=axis)), FALLBACK_ONLY)


@pytest.mark.parametrize(
    ("shape", "axes"), [((1, 64, 7, 7), [2, 3]), ((1, 24, 16, 16), [1]), ((5, 9), [0])]
)
def test_mean(shape: tuple[int, ...], axes: list[int]) -> None:
    check_same(graph([shape], lambda p: op.mean(p[0], axis=axes, keepdims=True)), FALLBACK_ONLY)


@pytest.mark.parametrize(
    ("shape", "pool", "strides", "padding"),
    [
        ((1, 16, 32, 32), (2, 2), (2, 2), (0, 0)),
        ((1, 8, 55, 55), (3, 3), (2, 2), (0, 0)),
        ((1, 8, 28, 28), (3, 3), (1, 1), (1, 1)),
    ],
)
def test_pooling(
    shape: tuple[int, ...],
    pool: tuple[int, int],
    strides: tuple[int, int],
    padding: tuple[int, int],
) -> None:
    for pool_op in (op.nn.max_pool2d, op.nn.avg_pool2d):
        mod = graph([shape], lambda p, f=pool_op: f(p[0], pool, strides, padding=padding))
        check_same(mod, FALLBACK_ONLY)


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "padding", "layout"),
    [
        ((1, 8, 16, 16), (16, 8, 3, 3), (1, 1), "NCHW"),
        ((1, 8, 13, 13), (12, 8, 1, 1), (0, 0), "NCHW"),
        ((1, 10, 10, 8), (3, 3, 8, 16), (1, 1), "NHWC"),
    ],
)
def test_convolution_without_its_rule(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], padding: tuple[int, int], layout: str
) -> None:
    kernel_layout = "OIHW" if layout == "NCHW" else "HWIO"

    def body(p: list[relax.Var]) -> relax.Expr:
        conv = op.nn.conv2d(
            p[0], p[1], padding=padding, data_layout=layout, kernel_layout=kernel_layout
        )
        return op.nn.relu(conv)

    check_same(graph([x_shape, w_shape], body), FALLBACK_ONLY, atol=1e-4)


def test_integer_graph_is_bit_exact() -> None:
    mod = graph([(4, 33), (4, 33)], lambda p: op.multiply(op.add(p[0], p[1]), p[0]), "int32")
    rng = np.random.default_rng(1)
    inputs = [rng.integers(-1000, 1000, (4, 33), dtype=np.int32) for _ in range(2)]
    got = run(build(mod, FALLBACK_ONLY), inputs)
    np.testing.assert_array_equal(got, run(build(mod, None), inputs), strict=True)


@pytest.mark.parametrize("shape", [(3, 131), (2, 4, 67)])
def test_long_odd_rows_with_a_row_operand(shape: tuple[int, ...]) -> None:
    """Rows no vector divides, >= PLAIN_ROW_MIN long, stay whole loops (not fused flat)."""
    row = (*shape[:-1], 1)
    mod = graph([shape, row], lambda p: op.nn.relu(op.subtract(p[0], p[1])))
    check_same(mod, FALLBACK_ONLY)


def test_empty_slice_is_scheduled_without_a_rule_failure() -> None:
    """ONNX Slice 5:5: an empty output. Splitting its zero-trip loop by a vector width
    divided by zero in TVM (a raw 'Divide by zero' warning at build time)."""
    mod = graph([(4, 8)], lambda p: op.strided_slice(p[0], axes=[1], begin=[5], end=[5]))
    report = ScheduleReport()
    got = run(build(mod, FALLBACK_ONLY, report), [np.ones((4, 8), "float32")])
    assert got.shape == (4, 0)
    assert report.failures == [], report.notes()

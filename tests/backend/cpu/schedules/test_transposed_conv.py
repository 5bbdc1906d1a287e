"""The upsampling transposed-convolution rule: scheduled == unscheduled (float32, 1e-5)."""

from __future__ import annotations

import pytest
from tvm import relax

from npuc.backend.cpu.schedules.transposed_conv import TransposedConv2dRule
from tests.backend.cpu.schedules.relax_graphs import check_same, graph

op = relax.op


@pytest.mark.parametrize(
    ("c", "o", "h", "w", "s", "epilogue"),
    [(6, 5, 3, 16, 2, True), (5, 1, 4, 8, 2, False), (3, 4, 2, 12, 3, True)],
)
def test_upsampling(c: int, o: int, h: int, w: int, s: int, epilogue: bool) -> None:
    def body(p: list[relax.Var]) -> relax.Expr:
        y = op.nn.conv2d_transpose(p[0], p[1], strides=s)
        return op.nn.relu(op.add(y, p[2])) if epilogue else y

    mod = graph([(1, c, h, w), (c, o, s, s), (1, o, 1, 1)], body)
    report = check_same(mod, [TransposedConv2dRule()])
    assert "conv2d_transpose" in report.rule_of.values()

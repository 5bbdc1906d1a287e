"""Schedule rules that raise instead of scheduling or declining (found by random models).

A rule's ``apply`` returns the scheduled PrimFunc or ``None``; here three rules
raise ``IndexError`` when every reduction loop left under the output's column
strip has extent 1 (a 1x1 window or kernel with a one-column strip, or one
input channel). The schedule pass catches the error, logs ``schedule rule ...
failed`` and runs the fallback, so the library's results stay right; the
rules should schedule these nests (or decline them) instead.

Each test expects the rule to apply and to give the unscheduled nest's
result (max pool bit-exact; convolutions rtol/atol 1e-5: sums in another
order). Marked ``xfail(strict=True)`` until the rules are fixed.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.cpu.schedules import ScheduleRule
from npuc.backend.cpu.schedules.conv2d import Conv2dRule
from npuc.backend.cpu.schedules.depthwise import DepthwiseConv2dRule
from npuc.backend.cpu.schedules.pool import PoolRule
from tests.backend.cpu.schedules.conv_harness import AVX2, ConvCase, run, schedule_with
from tests.backend.cpu.schedules.test_pool import PoolCase


def _check(case: ConvCase | PoolCase, rule: ScheduleRule, *, exact: bool) -> None:
    module = case.module()
    want = run(schedule_with(module, AVX2, None)[0], AVX2, case.inputs())
    scheduled, applied = schedule_with(module, AVX2, rule)  # raises IndexError today
    assert len(applied) == 1, f"{rule.name} declined {case}"
    got = run(scheduled, AVX2, case.inputs())
    if exact:
        np.testing.assert_array_equal(got, want, strict=True)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.xfail(
    strict=True,
    raises=IndexError,
    reason="pool.py _schedule_nchw: 1x1 window and a one-column output leave the "
    "reduction without loops; loops_by_iter indexes an empty list",
)
def test_pool_rule_on_a_one_by_one_window_with_one_output_column() -> None:
    # ONNX MaxPool kernel 1x1, stride (1, 4) on a 9x4 plane: output 9x1.
    case = PoolCase(kind="max", shape=(1, 4, 9, 4), pool=(1, 1), stride=(1, 4))
    _check(case, PoolRule(), exact=True)


@pytest.mark.xfail(
    strict=True,
    raises=IndexError,
    reason="conv2d.py schedule_conv: one input channel and a 1x1 kernel leave no "
    "reduction loop; decompose_reduction(conv, reduction[0]) indexes an empty list",
)
def test_conv2d_rule_on_a_one_channel_one_by_one_convolution() -> None:
    case = ConvCase(channels=1, filters=32, size=(8, 8), kernel=(1, 1), epilogue="bias_relu")
    _check(case, Conv2dRule(), exact=False)


@pytest.mark.xfail(
    strict=True,
    raises=IndexError,
    reason="depthwise.py schedule_depthwise: a 1x1 kernel and a one-column strip "
    "(prime output width above two vectors) leave no loop; loops_by_iter indexes "
    "an empty list",
)
def test_depthwise_rule_on_a_one_by_one_kernel_with_a_one_column_strip() -> None:
    case = ConvCase(channels=8, filters=8, size=(4, 17), kernel=(1, 1), groups=8, epilogue="none")
    _check(case, DepthwiseConv2dRule(), exact=False)

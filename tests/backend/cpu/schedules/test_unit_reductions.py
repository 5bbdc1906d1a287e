"""Schedule rules on nests whose reduction keeps only unit loops (found by random models).

A 1x1 window or kernel with a one-column strip, or one input channel with a
1x1 kernel, leaves no reduction loop under the output's column strip. The
pool, conv2d and depthwise rules raised ``IndexError`` there (the schedule
pass then fell back, so results stayed right, but slowly); they now schedule
these nests.

Each test expects the rule to apply and to give the unscheduled nest's
result (max pool bit-exact; convolutions rtol/atol 1e-5: sums in another
order).
"""

from __future__ import annotations

import numpy as np

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


def test_pool_rule_on_a_one_by_one_window_with_one_output_column() -> None:
    # ONNX MaxPool kernel 1x1, stride (1, 4) on a 9x4 plane: output 9x1.
    case = PoolCase(kind="max", shape=(1, 4, 9, 4), pool=(1, 1), stride=(1, 4))
    _check(case, PoolRule(), exact=True)


def test_conv2d_rule_on_a_one_channel_one_by_one_convolution() -> None:
    case = ConvCase(channels=1, filters=32, size=(8, 8), kernel=(1, 1), epilogue="bias_relu")
    _check(case, Conv2dRule(), exact=False)


def test_depthwise_rule_on_a_one_by_one_kernel_with_a_one_column_strip() -> None:
    case = ConvCase(channels=8, filters=8, size=(4, 17), kernel=(1, 1), groups=8, epilogue="none")
    _check(case, DepthwiseConv2dRule(), exact=False)

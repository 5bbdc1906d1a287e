"""TIR schedule rules of the CPU backend, one rule per file, tried in order on every PrimFunc.

A rule is an object with a ``name`` and an ``apply(func, target)`` method that
takes one fused PrimFunc (as :class:`~npuc.backend.cpu.fuse_ops.FuseOps` left
it) and the :class:`~npuc.core.target.CpuTarget`, and returns the scheduled
PrimFunc, or ``None`` when the rule does not apply to that function (so the
next rule is tried). Rules choose their kernels (vector width, VNNI) from the
target's CPU features, never from the build machine. The schedule pass
(:mod:`npuc.backend.cpu.lowering`, ``schedule_passes``) applies :data:`RULES`
in order; the parallel-and-vectorise fallback comes last, so no PrimFunc stays
a serial scalar loop.
"""

from __future__ import annotations

from typing import Protocol

from tvm import tirx

from npuc.core.target import CpuTarget


class ScheduleRule(Protocol):
    """One schedule rule (see the module docstring)."""

    name: str

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` when this rule does not apply to it."""
        ...


from npuc.backend.cpu.schedules.channel_shuffle import (  # noqa: E402 (after the protocol)
    ChannelShuffleRule,
)
from npuc.backend.cpu.schedules.concat import ConcatRule  # noqa: E402
from npuc.backend.cpu.schedules.conv2d import Conv2dRule  # noqa: E402
from npuc.backend.cpu.schedules.conv2d_nhwc import (  # noqa: E402
    Conv2dNhwcRule,
    DepthwiseConv2dNhwcRule,
)
from npuc.backend.cpu.schedules.conv2d_pointwise import Conv2dPointwiseRule  # noqa: E402
from npuc.backend.cpu.schedules.conv2d_spatial import Conv2dPlaneRule  # noqa: E402
from npuc.backend.cpu.schedules.conv2d_stem import Conv2dStemRule  # noqa: E402
from npuc.backend.cpu.schedules.depthwise import DepthwiseConv2dRule  # noqa: E402
from npuc.backend.cpu.schedules.int8_conv import Int8ConvRule  # noqa: E402
from npuc.backend.cpu.schedules.int_depthwise import IntDepthwiseRule  # noqa: E402
from npuc.backend.cpu.schedules.matmul import MatmulRule  # noqa: E402
from npuc.backend.cpu.schedules.pool import PoolRule  # noqa: E402
from npuc.backend.cpu.schedules.transposed_conv import TransposedConv2dRule  # noqa: E402

#: Rules in the order they are tried; the fallback rule is appended by the schedule pass.
RULES: tuple[ScheduleRule, ...] = (
    IntDepthwiseRule(),
    Int8ConvRule(),
    # Before the conv2d rule: takes the first layer (<= 4 input channels, short reduction, rows
    # of at least one vector) with the output columns on the vector lanes; declines the rest.
    Conv2dStemRule(),
    # Before the conv2d rule: takes the pointwise convolutions with few channels (store-bound
    # there) and those whose channels no vector divides; declines the rest.
    Conv2dPlaneRule(),
    # Wide ungrouped pointwise convolutions whose plane is whole vectors (NCHW in and out).
    Conv2dPointwiseRule(),
    Conv2dRule(),
    DepthwiseConv2dRule(),
    Conv2dNhwcRule(),
    DepthwiseConv2dNhwcRule(),
    MatmulRule(),
    TransposedConv2dRule(),
    PoolRule(),
    ChannelShuffleRule(),
    ConcatRule(),
)

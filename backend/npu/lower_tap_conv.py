"""Lowering of :class:`NpuTapConv2d`: the tap gather interleaved with the convolution, one plan.

Why: planned as two ops, the gather's stores and the convolution's output
stores share the in-order DMA-out queue, so the convolution's output waits
for the whole gather and the layer costs about the sum of the two. Here the
gather (:func:`plan_im2col`, band buffers limited to a share of the budget)
and the convolution (:func:`plan_window`, the rest of the budget) are
planned separately, and their steps are merged: before each convolution
step that reads packed rows from DRAM, every gather step writing those rows
is emitted, plus the gather steps for the next ``LOOKAHEAD`` such reads, so
the gather runs a few bands ahead (software pipelining). Order alone does
not make it correct -- the scheduler derives every hazard from the byte
ranges -- it only decides what can overlap.

Requires: a validated :class:`NpuTapConv2d`. Guarantees: the merged steps
compute what the two ops compute in sequence (each part keeps its own
order; every read of the packed tensor follows the writes it reads); the
estimate is the replay of the op's own steps under the token rules with the
compiler's costs (the same replay the whole program gets), with placeholder
addresses.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping, Sequence

from npuc.backend.npu.lower_taps import plan_im2col
from npuc.backend.npu.lower_window import plan_window
from npuc.backend.npu.ops_taps import NpuTapConv2d
from npuc.backend.npu.plan import OpPlan, replay_alone
from npuc.backend.npu.schedule import Step
from npuc.backend.npu.tiling import align
from npuc.core.errors import UnsupportedError
from npuc.core.hw.config import HwConfig

LOOKAHEAD = 2  # packed-tensor reads of the convolution the gather runs ahead of
GATHER_SHARES = (8, 4, 2)  # the gather's buffers get budget // share, the first that plans
PREFIX = "taps."  # the gather's SRAM buffer names inside the merged plan


def interleave(
    gather: Sequence[Step], conv: Sequence[Step], lo: int, hi: int, lookahead: int = LOOKAHEAD
) -> list[Step]:
    """``gather`` and ``conv`` steps merged (module docstring); ``[lo, hi)``: the packed tensor."""
    writes = sorted(
        (a.lo, j)
        for j, s in enumerate(gather)
        for a in s.accesses
        if a.memory == "dram" and a.write and a.hi > lo and a.lo < hi
    )
    starts = [w for w, _ in writes]
    latest: list[int] = []  # latest gather index among writes starting below each start
    for _, j in writes:
        latest.append(max(j, latest[-1]) if latest else j)
    needs = []
    for s in conv:
        need = -1
        for a in s.accesses:
            if a.memory == "dram" and not a.write and a.hi > lo and a.lo < hi:
                i = bisect.bisect_left(starts, a.hi) - 1
                need = max(need, latest[i] if i >= 0 else -1)
        needs.append(need)
    reads = [i for i, n in enumerate(needs) if n >= 0]
    ahead = list(needs)
    for r, i in enumerate(reads):
        ahead[i] = max(needs[x] for x in reads[r : r + lookahead + 1])
    out: list[Step] = []
    k = 0
    for s, need in zip(conv, ahead, strict=True):
        while k <= need:
            out.append(gather[k])
            k += 1
        out.append(s)
    return out + list(gather[k:])


def _parts(
    op: NpuTapConv2d, hw: HwConfig, budget: int, resident: frozenset[str]
) -> tuple[OpPlan, OpPlan]:
    gather = dataclasses.replace(op.gather, fused=False)
    last: UnsupportedError | None = None
    for share in GATHER_SHARES:
        try:
            pa = plan_im2col(gather, hw, budget // share)
            need = sum(align(b.nbytes) for b in pa.sram)
            # no cache: a smaller budget
            return pa, plan_window(op.conv, hw, budget - need, resident=resident)
        except UnsupportedError as err:
            last = err
    assert last is not None
    raise last


def plan_tap_conv(
    op: NpuTapConv2d, hw: HwConfig, sram_budget: int, resident: frozenset[str] = frozenset()
) -> OpPlan:
    """The merged plan of ``op`` (module docstring); UnsupportedError if no split fits.

    ``resident``: when it names the output, the convolution writes its tiles
    in place into that SRAM-resident tensor (:mod:`npuc.backend.npu.cascade`,
    address under ``"@" + name``) instead of storing them to DRAM. The
    packed tensor always goes through DRAM (the gather's DMA writes it there).
    """
    pa, pb = _parts(op, hw, sram_budget, resident & {op.ofm.name})
    packed = op.conv.ifm

    def make_steps(dram: Mapping[str, int], sram: Mapping[str, int]) -> list[Step]:
        a = pa.make_steps(dram, {b.name: sram[PREFIX + b.name] for b in pa.sram})
        b = pb.make_steps(dram, sram)
        lo = dram[packed.name]
        return interleave(a, b, lo, lo + packed.nbytes)

    buffers = tuple(dataclasses.replace(b, name=PREFIX + b.name) for b in pa.sram) + pb.sram
    consts = pa.constants + pb.constants
    plan = OpPlan(
        op.name,
        type(op).__name__,
        consts,
        buffers,
        0,
        f"tap-packed, gather interleaved: {pa.tiling}; conv {pb.tiling}",
        pb.macs,
        make_steps,
    )
    tensors = [(t.name, t.nbytes) for t in (op.gather.ifm, op.conv.ifm, op.ofm)]
    # A resident output lies outside the op's window.
    cycles = replay_alone(tensors, plan, hw, sram_budget, resident=(op.ofm.name,))
    return dataclasses.replace(plan, est_cycles=cycles)

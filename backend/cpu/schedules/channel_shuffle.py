"""Schedule rule for a channel shuffle: reshape -> transpose -> reshape that keeps each plane whole.

ShuffleNet mixes its channel groups with ``reshape(N, G, C/G, H, W) ->
transpose(0, 2, 1, 3, 4) -> reshape(N, C, H, W)``. After inlining, that is one
copy whose source channel is a permutation of the output channel while each
``H x W`` plane is copied unchanged. The fallback fuses ``H`` and ``W`` into
one loop and vectorises it with an integer division and remainder per lane
(its indices are written through the flattened reshapes), which ran 2-8x
slower than a plain copy on ShuffleNet's 14x14 and 28x28 planes.

The kernel: the outer loops (image, channel) are fused into one ``parallel``
loop and the last two (row, column) are left as they are, so TVM's
simplifier reduces the row-major indices under the loops' bounds and LLVM
copies each plane with contiguous vector loads and stores.

Only functions made of reshapes and transposes, with at least one transpose
that leaves its last two axes in place, are taken; any other permutation
(an NCHW <-> NHWC transpose reads with a stride) stays on the fallback.
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.fallback import PARALLEL_MIN_ELEMENTS, inline_elementwise
from npuc.backend.cpu.schedules.loops import extent, is_spatial, iter_kinds, root_blocks
from npuc.core.target import CpuTarget

#: Block names LegalizeOps gives reshapes and transposes (``T_reshape1`` and so on).
_RESHAPE, _TRANSPOSE = "T_reshape", "T_transpose"


def _keeps_inner_plane(block: tirx.SBlock) -> bool:
    """A transpose whose read indexes its last two axes with its last two iterators."""
    if len(block.reads) != 1 or len(block.iter_vars) < 3:
        return False
    region = block.reads[0].region
    inner = [iv.var for iv in block.iter_vars[-2:]]
    return len(region) == len(block.iter_vars) and all(
        r.min.same_as(v) for r, v in zip(region[-2:], inner, strict=True)
    )


def is_channel_shuffle(sch: s_tir.Schedule) -> bool:
    """Every block is a reshape or a transpose, and some transpose keeps its inner plane."""
    blocks = [sch.get(b) for b in root_blocks(sch)]
    if not blocks or not all(b.name_hint.startswith((_RESHAPE, _TRANSPOSE)) for b in blocks):
        return False
    return any(b.name_hint.startswith(_TRANSPOSE) and _keeps_inner_plane(b) for b in blocks)


class ChannelShuffleRule:
    """Plane-by-plane parallel copy for reshape/transpose channel shuffles."""

    name = "channel_shuffle"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it is one channel-shuffle copy."""
        del target  # the copy is left to LLVM's vectoriser at the target's width
        sch = s_tir.Schedule(func)
        if not is_channel_shuffle(sch):
            return None
        inline_elementwise(sch)
        blocks = root_blocks(sch)
        if len(blocks) != 1 or not is_spatial(sch, blocks[0]):
            return None
        kinds = iter_kinds(sch, blocks[0])
        loops = list(sch.get_loops(blocks[0]))
        if kinds is None or len(loops) < 3:
            return None
        outer = loops[:-2]
        work = math.prod(extent(sch, loop) or PARALLEL_MIN_ELEMENTS for loop in loops)
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        if work >= PARALLEL_MIN_ELEMENTS:
            sch.parallel(fused)
        return sch.mod["main"]

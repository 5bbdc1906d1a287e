"""Schedule rule for the direct transposed convolution of :mod:`npuc.backend.cpu.transposed_conv`.

That lowering writes one reduction block named ``conv2d_transpose``: output
``(n, o, h, w)`` sums ``data[n, c, (h + p) // s - j, (w + p) // s - i] *
kernel[c, o, (h + p) % s + s * j, (w + p) % s + s * i]``. This rule takes the
common upsampling form (kernel = stride, no padding, output exactly ``s``
times the input; PP-OCR det's 2x2 stride-2 layers), where an output row
``h`` reads input row ``h // s`` and output column ``s * x + t`` reads input
column ``x`` through kernel column ``t``.

The kernel: every (image, output channel, output row, strip of ``s * V``
output columns) is one parallel task, ``V`` the float32 vector width (or the
widest power-of-two divisor of the input width). The strip's ``s``
accumulators of ``V`` lanes live in a local tile laid out ``[t][x]`` (a
layout transform of the accumulation buffer), so each input channel costs one
contiguous vector load of the input row, ``s`` broadcast weights and ``s``
fused multiply-adds. The fused epilogue (bias, activation) is applied as the
strip is interleaved into the output row.

Anything else this lowering produces (taps > 1, padding, output padding) is
left to the fallback rule.
"""

from __future__ import annotations

from tvm import s_tir, tirx

from npuc.backend.cpu.schedules.fallback import attempt, inline_elementwise
from npuc.backend.cpu.schedules.loops import extent, is_spatial, vector_factor, vector_lanes
from npuc.core.target import CpuTarget

#: Name of the reduction block :mod:`npuc.backend.cpu.transposed_conv` writes.
BLOCK_NAME = "conv2d_transpose"


def _upsampling_factors(
    sch: s_tir.Schedule, conv: s_tir.schedule.SBlockRV
) -> tuple[int, int] | None:
    """``(s_h, s_w)`` when the block is kernel = stride upsampling with no padding, else None."""
    block = sch.get(conv)
    if [iv.iter_type for iv in block.iter_vars] != [tirx.IterVar.DataPar] * 4 + [
        tirx.IterVar.CommReduce
    ]:
        return None  # more than one tap per dimension
    data, kernel = (r.source for r in block.reads[:2]) if len(block.reads) == 2 else (None, None)
    if data is None or kernel is None or len(data.shape) != 4 or len(kernel.shape) != 4:
        return None
    out = block.writes[0].source
    try:
        (h, w), (kh, kw), (oh, ow) = (
            [int(d) for d in buf.shape[2:]] for buf in (data, kernel, out)
        )
    except TypeError:
        return None
    if (
        (oh, ow) != (h * kh, w * kw)
        or "if_then_else" in str(block.body)
        or "Select" in str(block.body)
    ):
        return None
    return kh, kw


class TransposedConv2dRule:
    """Row-strip vectorised upsampling transposed convolution (module docstring)."""

    name = "conv2d_transpose"

    def apply(self, func: tirx.PrimFunc, target: CpuTarget) -> tirx.PrimFunc | None:
        """The scheduled ``func``, or ``None`` unless it holds one upsampling transposed conv."""
        sch = s_tir.Schedule(func)
        try:
            conv = sch.get_sblock(BLOCK_NAME)
        except (s_tir.ScheduleError, ValueError, RuntimeError):
            return None
        factors = _upsampling_factors(sch, conv)
        if factors is None:
            return None
        sw = factors[1]
        in_width = int(sch.get(conv).reads[0].source.shape[3])
        lanes = vector_factor(in_width, vector_lanes(target, "float32"))
        if lanes is None:
            return None
        inline_elementwise(sch)
        consumers = sch.get_consumers(conv)
        if not consumers:
            out = sch.cache_write(conv, 0, "global")
        elif len(consumers) == 1 and is_spatial(sch, consumers[0]):
            out = consumers[0]
        else:
            return None
        if len(sch.get_loops(out)) != 4:
            return None
        _schedule(sch, conv, out, sw, lanes)
        return sch.mod["main"]


def _schedule(
    sch: s_tir.Schedule,
    conv: s_tir.schedule.SBlockRV,
    out: s_tir.schedule.SBlockRV,
    sw: int,
    lanes: int,
) -> None:
    n, o, h, w = sch.get_loops(out)
    wo, wi = sch.split(w, [None, sw * lanes])
    task = sch.fuse(n, o, h, wo)
    sch.parallel(task)
    sch.compute_at(conv, task)
    sch.set_scope(conv, 0, "local")
    sch.transform_layout(
        conv,
        ("write", 0),
        lambda a, b, c, d: (a, b, c, d % sw, d // sw),
    )
    loops = sch.get_loops(conv)
    inner = [loop for loop in loops[1:] if (extent(sch, loop) or 0) > 1]
    column, channel = inner[-2], inner[-1]
    x, t = sch.split(column, [lanes, sw])
    sch.reorder(channel, t, x)
    sch.unroll(t)
    sch.vectorize(x)
    init = sch.decompose_reduction(conv, channel)
    init_loops = sch.get_loops(init)
    ix, it = sch.split(init_loops[-1], [lanes, sw])
    sch.reorder(it, ix)
    sch.vectorize(ix)
    attempt(sch.vectorize, wi)

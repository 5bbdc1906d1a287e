"""Find the convolution of a fused PrimFunc and the parts around it (padding, epilogue).

LegalizeOps writes a 2-D convolution (``relax.nn.conv2d``, NCHW data, OIHW
weights, any groups) as TOPI's loop nest: an optional ``pad_temp`` block, a
reduction block with iterators ``n, k, y, x`` (spatial) and ``c, ky, kx``
(reduction) that reads ``weight[k, c, ky, kx]``, and FuseOps appends the
element-wise epilogue (bias add, activation, clip, residual add) as further
blocks. :func:`match_conv2d` recognises that form from the loop nest itself,
not from block names, and describes it as a :class:`ConvNest`; the conv2d and
depthwise rules schedule from that description.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx

_CONV_ITERS = "SSSSRRR"


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvNest:
    """A float32 NCHW/OIHW convolution block and its neighbours in one PrimFunc.

    Sizes are element counts. ``groups`` is ``in_channels // group_in``; a
    depthwise convolution has ``group_in == group_out == 1``.
    """

    block: str
    """Name of the reduction block."""
    weight_read: int
    """Index of the weight among the block's reads (a parameter of the function)."""
    pad_block: str | None
    """Block producing the (padded) input the convolution reads, if any."""
    epilogue: tuple[str, ...]
    """Element-wise blocks after the convolution, in order; the last writes the output."""
    out_channels: int
    out_height: int
    out_width: int
    in_channels: int
    in_height: int
    """Height of the buffer the convolution reads (padded input)."""
    group_in: int
    kernel_h: int
    kernel_w: int

    @property
    def groups(self) -> int:
        return self.in_channels // self.group_in

    @property
    def group_out(self) -> int:
        """Output channels per group."""
        return self.out_channels // self.groups

    @property
    def is_depthwise(self) -> bool:
        """One input and one output channel per group."""
        return self.group_in == 1 and self.group_out == 1

    @property
    def subsamples(self) -> bool:
        """The input is at least twice as tall as the output (stride 2 or more)."""
        return self.in_height >= 2 * self.out_height


def block_kinds(block: s_tir.SBlock) -> str:
    """One letter per block iterator: ``S`` spatial, ``R`` reduction, ``?`` other."""
    letters = {tirx.IterVar.DataPar: "S", tirx.IterVar.CommReduce: "R"}
    return "".join(letters.get(int(iv.iter_type), "?") for iv in block.iter_vars)


def indexed_by(region: tirx.BufferRegion, vars_: list[tirx.Var]) -> bool:
    """``region`` is exactly ``buffer[vars_[0], vars_[1], ...]``."""
    mins = [r.min for r in region.region]
    return len(mins) == len(vars_) and all(
        isinstance(m, tirx.Var) and m.same_as(v) for m, v in zip(mins, vars_, strict=True)
    )


def static_ints(shape: list[tirx.PrimExpr]) -> list[int] | None:
    """``shape`` as Python ints, or ``None`` when a dimension is not a constant."""
    if not all(isinstance(d, tirx.IntImm) for d in shape):
        return None
    return [int(d) for d in shape]


def _epilogue(sch: s_tir.Schedule, conv: s_tir.schedule.SBlockRV) -> tuple[str, ...] | None:
    """The element-wise blocks after ``conv`` (root order), or ``None`` if one is not.

    Every block after the convolution must be spatial over the output's
    shape and read the convolution's result, and the results of the blocks
    before it, only at the index it writes (bias, activations, clip, residual
    add, ``x * sigmoid(x)``); then all but the last can be inlined into the
    last. Only the last may write a parameter of the function (its output).
    """
    func = sch.mod["main"]
    root = list(sch.get_child_blocks(sch.get_sblock("root")))
    position = next(i for i, rv in enumerate(root) if sch.get(rv).same_as(sch.get(conv)))
    produced = [sch.get(conv).writes[0].source]
    out_shape = static_ints(list(produced[0].shape))
    names: list[str] = []
    for rv in root[position + 1 :]:
        block = sch.get(rv)
        if block_kinds(block) != "SSSS" or len(block.writes) != 1:
            return None
        vars_ = [iv.var for iv in block.iter_vars]
        inner = [r for r in block.reads if any(r.source.same_as(b) for b in produced)]
        if not inner or not all(indexed_by(r, vars_) for r in inner):
            return None
        written = block.writes[0]
        if not indexed_by(written, vars_) or static_ints(list(written.source.shape)) != out_shape:
            return None
        produced.append(written.source)
        names.append(block.name_hint)
    params = [p for p in func.params]
    if any(any(p.same_as(b) for p in params) for b in produced[:-1]):
        return None  # an intermediate result is also an output: it cannot stay in registers
    return tuple(names)


def match_conv2d(sch: s_tir.Schedule) -> ConvNest | None:
    """The single float32 convolution of ``sch``'s function, or ``None``.

    ``None`` when the function has no such block, more than one, symbolic
    shapes, a weight that is not a function parameter, or an epilogue that is
    not element-wise over the output's shape (see :func:`_epilogue`).
    """
    func = sch.mod["main"]
    found: list[ConvNest] = []
    for rv in sch.get_child_blocks(sch.get_sblock("root")):
        block = sch.get(rv)
        if block_kinds(block) != _CONV_ITERS or len(block.reads) != 2 or len(block.writes) != 1:
            continue
        out = block.writes[0].source
        if str(out.dtype) != "float32" or block.init is None:
            continue
        vars_ = [iv.var for iv in block.iter_vars]
        weight_vars = [vars_[1], vars_[4], vars_[5], vars_[6]]
        weight_read = next(
            (i for i, r in enumerate(block.reads) if indexed_by(r, weight_vars)), None
        )
        if weight_read is None or not any(
            p.same_as(block.reads[weight_read].source) for p in func.params
        ):
            continue
        data = block.reads[1 - weight_read].source
        out_shape = static_ints(list(out.shape))
        w_shape = static_ints(list(block.reads[weight_read].source.shape))
        d_shape = static_ints(list(data.shape))
        if out_shape is None or w_shape is None or d_shape is None or len(d_shape) != 4:
            continue
        if d_shape[1] % w_shape[1] or out_shape[1] % (d_shape[1] // w_shape[1]):
            continue
        epilogue = _epilogue(sch, rv)
        if epilogue is None:
            return None
        producers = [sch.get(p) for p in sch.get_producers(rv)]
        pad = next((p.name_hint for p in producers if p.writes[0].source.same_as(data)), None)
        found.append(
            ConvNest(
                block=block.name_hint,
                weight_read=weight_read,
                pad_block=pad,
                epilogue=epilogue,
                out_channels=out_shape[1],
                out_height=out_shape[2],
                out_width=out_shape[3],
                in_channels=d_shape[1],
                in_height=d_shape[2],
                group_in=w_shape[1],
                kernel_h=w_shape[2],
                kernel_w=w_shape[3],
            )
        )
    return found[0] if len(found) == 1 else None


def loops_by_iter(
    sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, first: int
) -> dict[int, s_tir.schedule.LoopRV]:
    """Map block-iterator index -> the loop (from ``get_loops(block)[first:]``) it is bound to.

    Loops of extent 1 that compute-at dropped have no entry.
    """
    loops = sch.get_loops(block)[first:]
    if not loops:  # every loop under ``first`` had extent 1 and was dropped
        return {}
    body = sch.get(loops[-1]).body
    while not isinstance(body, s_tir.SBlockRealize):
        body = body.body
    roles: dict[int, s_tir.schedule.LoopRV] = {}
    for loop in loops:
        var = sch.get(loop).loop_var
        for i, value in enumerate(body.iter_values):
            if any(v.same_as(var) for v in tirx.analysis.undefined_vars(value, [])):
                roles[i] = loop
    return roles


def inline_plain_copy(sch: s_tir.Schedule, nest: ConvNest) -> bool:
    """Inline the convolution's input block when it is a plain copy (LegalizeOps' unpadded
    ``pad_temp``); ``False``, with nothing changed, when it pads (or there is none to
    inline: then ``True``)."""
    if nest.pad_block is None:
        return True
    pad = sch.get_sblock(nest.pad_block)
    body = sch.get(pad).body
    if not (isinstance(body, tirx.BufferStore) and isinstance(body.value, tvm.ir.TensorLoad)):
        return False
    sch.compute_inline(pad)
    return True


def inline_epilogue(
    sch: s_tir.Schedule, conv: s_tir.schedule.SBlockRV, nest: ConvNest
) -> s_tir.schedule.SBlockRV:
    """Inline every epilogue block but the last into its consumer; return the output block.

    With no epilogue the convolution writes the output itself: a write-back
    block is made (``cache_write``) so that the accumulation can live in a
    local tile and the write-back is the output block.
    """
    if not nest.epilogue:
        return sch.cache_write(conv, 0, "global")
    for name in nest.epilogue[:-1]:
        sch.compute_inline(sch.get_sblock(name))
    return sch.get_sblock(nest.epilogue[-1])

"""Find a channels-last (NHWC) convolution in a fused PrimFunc and gather its epilogue.

LegalizeOps writes TFLite's convolutions (``relax.nn.conv2d`` with
``data_layout="NHWC"``, ``kernel_layout="HWIO"``) as TOPI's loop nest: an
optional ``pad_temp`` block, then one reduction block with iterators
``n, y, x, f`` (spatial) and ``ry, rx, rc`` (reduction) that reads

- ``weight[ry, rx, rc, f]`` and ``data[n, .., .., rc]`` (one group), or
- ``weight[ry, rx, f, rc]`` with ``rc`` of extent 1 and ``data[n, .., .., f + rc]``
  (depthwise: one input and one output channel per group).

FuseOps appends the element-wise epilogue (bias, activation, residual add,
and TFLite's channel-padded residual ``pad(x)`` as a block of its own).
:func:`match_nhwc_conv` recognises the reduction block from its iterators and
index patterns, not from block names; :func:`gather_epilogue` inlines every
element-wise block into the one that writes the output, so the NHWC rules
(:mod:`.conv2d_nhwc`) compute the epilogue as the accumulators leave the
registers.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir
from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr
from tvm.s_tir.schedule import SBlockRV as BlockRV

from npuc.backend.cpu.schedules.conv_match import block_kinds, indexed_by, static_ints
from npuc.backend.cpu.schedules.fallback import attempt
from npuc.backend.cpu.schedules.loops import is_spatial, root_blocks

#: Annotation of a weight-packing block (kept: PrepackWeights folds it at compile time).
_PREPROC_ATTR = "meta_schedule.layout_rewrite_preproc"


@dataclass(frozen=True, slots=True, kw_only=True)
class NhwcConv:
    """A float32 NHWC convolution block of one PrimFunc; sizes are element counts."""

    block: str
    """Name of the reduction block."""
    weight_read: int
    """Index of the weight among the block's reads (a parameter of the function)."""
    pad_block: str | None
    """Block producing the (padded) input the convolution reads, if any."""
    depthwise: bool
    """Weight ``[kh, kw, channels, 1]``; else ``[kh, kw, in_channels, out_channels]``."""
    out_channels: int
    out_height: int
    out_width: int
    in_channels: int
    in_height: int
    """Height of the buffer the convolution reads (padded input)."""
    kernel_h: int
    kernel_w: int

    @property
    def subsamples(self) -> bool:
        """The input is at least twice as tall as the output (stride 2 or more)."""
        return self.in_height >= 2 * self.out_height


def _describe(sch: s_tir.Schedule, rv: BlockRV) -> NhwcConv | None:
    """The NHWC convolution ``rv`` is, or ``None`` (see the module docstring)."""
    func = sch.mod["main"]
    block = sch.get(rv)
    if block_kinds(block) != "SSSSRRR" or len(block.reads) != 2 or len(block.writes) != 1:
        return None
    out = block.writes[0].source
    if str(out.dtype) != "float32" or block.init is None:
        return None
    v = [iv.var for iv in block.iter_vars]
    if not indexed_by(block.writes[0], v[:4]):
        return None
    regular = [v[4], v[5], v[6], v[3]]
    depthwise = [v[4], v[5], v[3], v[6]]
    for index, read in enumerate(block.reads):
        is_depthwise = indexed_by(read, depthwise) and int(block.iter_vars[6].dom.extent) == 1
        if not (indexed_by(read, regular) or is_depthwise):
            continue
        if not any(p.same_as(read.source) for p in func.params):
            return None
        data = block.reads[1 - index]
        channel_vars = collect_vars_used_in_prim_expr(data.region[-1].min) if data.region else set()
        wanted = {v[3], v[6]} if is_depthwise else {v[6]}
        if len(data.region) != 4 or set(channel_vars) != wanted:
            return None
        out_shape = static_ints(list(out.shape))
        w_shape = static_ints(list(read.source.shape))
        d_shape = static_ints(list(data.source.shape))
        if out_shape is None or w_shape is None or d_shape is None:
            return None
        if not is_depthwise and d_shape[3] != w_shape[2]:
            return None
        if is_depthwise and d_shape[3] != out_shape[3]:
            return None
        producers = [sch.get(p) for p in sch.get_producers(rv)]
        pad = next(
            (p.name_hint for p in producers if p.writes[0].source.same_as(data.source)), None
        )
        return NhwcConv(
            block=block.name_hint,
            weight_read=index,
            pad_block=pad,
            depthwise=is_depthwise,
            out_channels=out_shape[3],
            out_height=out_shape[1],
            out_width=out_shape[2],
            in_channels=d_shape[3],
            in_height=d_shape[1],
            kernel_h=w_shape[0],
            kernel_w=w_shape[1],
        )
    return None


def match_nhwc_conv(sch: s_tir.Schedule) -> NhwcConv | None:
    """The single float32 NHWC convolution of ``sch``'s function, or ``None``.

    ``None`` when there is none, more than one reduction block, or symbolic
    shapes; every other block of the function must be element-wise or
    injective (padding, epilogue).
    """
    blocks = root_blocks(sch)
    reductions = [b for b in blocks if not is_spatial(sch, b)]
    if len(reductions) != 1:
        return None
    return _describe(sch, reductions[0])


def gather_epilogue(sch: s_tir.Schedule, conv: NhwcConv) -> BlockRV | None:
    """Inline the element-wise blocks into the output block; return that block, or ``None``.

    Every block but the convolution, its input padding, the weight packing (a
    block tagged :data:`_PREPROC_ATTR`, folded at compile time) and the last
    block is inlined (bias, activation, a channel-padded residual input). The last block
    must then read the convolution's result at the index it writes. With no
    block after the convolution, a write-back block is made (``cache_write``)
    so that the accumulators can live in a local tile. ``None`` when a block
    cannot be inlined or the last one is not element-wise over the output
    (the schedule is then unusable: the caller declines).
    """
    conv_rv = sch.get_sblock(conv.block)
    blocks = root_blocks(sch)
    keep = {conv.block, conv.pad_block}
    position = next(i for i, b in enumerate(blocks) if sch.get(b).same_as(sch.get(conv_rv)))
    if position == len(blocks) - 1:
        return sch.cache_write(conv_rv, 0, "global")
    last = sch.get(blocks[-1]).name_hint
    for block in blocks:
        name = sch.get(block).name_hint
        if name in keep or name == last or _PREPROC_ATTR in sch.get(block).annotations:
            continue
        if not attempt(sch.compute_inline, block):
            return None
    out = sch.get_sblock(last)
    out_block = sch.get(out)
    produced = sch.get(conv_rv).writes[0].source
    vars_ = [iv.var for iv in out_block.iter_vars]
    inner = [r for r in out_block.reads if r.source.same_as(produced)]
    if (
        block_kinds(out_block) != "SSSS"
        or not inner
        or not all(indexed_by(r, vars_) for r in inner)
    ):
        return None
    if not indexed_by(out_block.writes[0], vars_):
        return None
    return out

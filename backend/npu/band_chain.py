"""Row-band cascading of residual blocks: 1x1 -> kxk -> 1x1 -> add, computed band by band.

A bottleneck (ResNet) or inverted residual (MobileNetV2) block whose feature
maps are too large for whole-tensor cascading (:mod:`npuc.backend.npu.cascade`)
still need not send its intermediates to DRAM: computed a band of output rows
at a time, each intermediate only needs a band of rows in SRAM. This module
finds such blocks in an :class:`NpuGraph` and replaces their four ops by one
:class:`NpuBandChain` (lowered by :mod:`npuc.backend.npu.lower_band_chain`);
the block's input and output stay ordinary tensors, so the cascade can keep
the residual stream whole in SRAM across blocks (the block writes its output
in place over its input, as a resident element-wise add does).

Pattern (all must hold; otherwise the ops stay as they are):

- ``head``: 1x1 convolution, stride 1, no padding, reading the block input ``x``;
- ``mid``: regular or depthwise ``k x k`` convolution over ``head``'s output,
  stride 1, dilation 1, "same" padding ``(k - 1) / 2`` on every side;
- ``tail``: 1x1 convolution, stride 1, no padding, over ``mid``'s output;
- ``add``: element-wise add of ``tail``'s output and ``x`` (either order);
- no op has a table (LUT); ``head``'s, ``mid``'s and ``tail``'s outputs are
  read by the next op only and are no graph outputs; ``x`` is read by ``head``
  and ``add`` only, has the output's shape and element size, and is no graph
  output (so the output may overwrite it band by band).

Choice (:mod:`npuc.backend.npu.band_choice`, through :func:`fuse_band_chains`):
a matched block is replaced when its chain plan fits the SRAM budget, moves
fewer DRAM bytes than the four ops planned alone and costs at most
``TOLERANCE`` more estimated cycles.
Bit-exactness: every band op is the block's op restricted to whole output
rows (the ``mid`` band reads its input rows with the true neighbours, padded
only at the map's top and bottom), so each output row is computed from the
same operands as the untiled op.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from npuc.backend.npu.ops import (
    NpuConv2d,
    NpuElementwise,
    NpuGraph,
    NpuOp,
    NpuTensor,
    op_inputs,
)
from npuc.backend.npu.tiling import tiling_key
from npuc.core.errors import UnsupportedError

TOLERANCE = 0.01  # a chain may cost this much more estimated cycles than its four ops


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class NpuBandChain:
    """``add(tail(mid(head(x))), x)`` computed in bands of output rows (module docstring).

    Named after its ``add`` (the op writing the block's output); ``ifm`` is
    ``x``, ``ofm`` the add's output, both ``(1, h, w, c)``.
    """

    name: str
    head: NpuConv2d
    mid: NpuConv2d
    tail: NpuConv2d
    add: NpuElementwise

    @property
    def ifm(self) -> NpuTensor:
        return self.head.ifm

    @property
    def ofm(self) -> NpuTensor:
        return self.add.ofm

    @property
    def parts(self) -> tuple[NpuConv2d, NpuConv2d, NpuConv2d, NpuElementwise]:
        return (self.head, self.mid, self.tail, self.add)

    @property
    def macs(self) -> int:
        return self.head.macs + self.mid.macs + self.tail.macs

    @property
    def halo(self) -> int:
        """Rows of ``head``'s output above and below a band that ``mid`` reads."""
        return self.mid.padding[0]

    def validate(self) -> None:
        """Each part valid and the parts form the pattern (module docstring)."""
        for op in self.parts:
            op.validate()
        if not _chain_shape(self.head, self.mid, self.tail, self.add):
            raise UnsupportedError(f"NPU op {self.name!r}: the parts do not form a band chain")


def _pointwise(op: NpuOp) -> bool:
    return (
        isinstance(op, NpuConv2d)
        and op.kernel == (1, 1)
        and op.stride == (1, 1)
        and op.padding == (0, 0, 0, 0)
        and op.groups == 1
        and op.lut is None
    )


def _same_window(op: NpuOp) -> bool:
    if not isinstance(op, NpuConv2d) or op.lut is not None:
        return False
    kh, kw = op.kernel
    p = (kh - 1) // 2
    return (
        kh == kw
        and kh % 2 == 1
        and op.stride == (1, 1)
        and op.dilation == (1, 1)
        and op.padding == (p, p, p, p)
        and (op.groups == 1 or op.depthwise)
    )


def _chain_shape(head: NpuOp, mid: NpuOp, tail: NpuOp, add: NpuOp) -> bool:
    if not (_pointwise(head) and _same_window(mid) and _pointwise(tail)):
        return False
    if not isinstance(add, NpuElementwise) or add.op != "add":
        return False
    assert isinstance(head, NpuConv2d) and isinstance(mid, NpuConv2d)
    assert isinstance(tail, NpuConv2d)
    x = head.ifm
    chained = mid.ifm == head.ofm and tail.ifm == mid.ofm
    reads = {add.ifm.name, add.ifm2.name} == {tail.ofm.name, x.name}
    same = x.shape == add.ofm.shape and x.itemsize == add.ofm.itemsize
    return chained and reads and same and tail.ofm.shape == x.shape


def _conv_ifm(op: NpuOp) -> str:
    """The input tensor name of a convolution ("" for other ops)."""
    return op.ifm.name if isinstance(op, NpuConv2d) else ""


def find_chains(graph: NpuGraph) -> list[tuple[int, int, int, int]]:
    """Op indices ``(head, mid, tail, add)`` of every block matching the pattern."""
    users: dict[str, list[int]] = {}
    for i, op in enumerate(graph.ops):
        for t in op_inputs(op):
            users.setdefault(t.name, []).append(i)
    outs = {t.name for t in graph.outputs}
    made = {op.ofm.name: i for i, op in enumerate(graph.ops)}
    found = []
    for a, add in enumerate(graph.ops):
        if not isinstance(add, NpuElementwise):
            continue
        for t in (add.ifm, add.ifm2):
            c = made.get(t.name)
            b = made.get(_conv_ifm(graph.ops[c])) if c is not None else None
            h = made.get(_conv_ifm(graph.ops[b])) if b is not None else None
            if c is None or b is None or h is None:
                continue
            head, mid, tail = graph.ops[h], graph.ops[b], graph.ops[c]
            if not _chain_shape(head, mid, tail, add):
                continue
            assert isinstance(head, NpuConv2d)
            inner = [users.get(o.ofm.name, []) for o in (head, mid, tail)]
            if inner != [[b], [c], [a]] or sorted(users.get(head.ifm.name, [])) != [h, a]:
                continue
            if outs & {head.ifm.name, head.ofm.name, mid.ofm.name, tail.ofm.name}:
                continue
            found.append((h, b, c, a))
            break
    return found


Judge = Callable[[NpuBandChain, tuple[NpuOp, ...]], bool]


def fuse_band_chains(graph: NpuGraph, keep: Judge) -> NpuGraph:
    """``graph`` with each matched block that ``keep(chain, its four ops)`` accepts replaced
    by one :class:`NpuBandChain` at the position of its ``add`` (program order stays valid:
    nothing between the block's ops reads their intermediates)."""
    replace: dict[int, NpuBandChain] = {}
    drop: set[int] = set()
    for h, b, c, a in find_chains(graph):
        ops = graph.ops
        head, mid, tail, add = ops[h], ops[b], ops[c], ops[a]
        assert isinstance(head, NpuConv2d) and isinstance(mid, NpuConv2d)
        assert isinstance(tail, NpuConv2d) and isinstance(add, NpuElementwise)
        chain = NpuBandChain(name=add.name, head=head, mid=mid, tail=tail, add=add)
        if keep(chain, (head, mid, tail, add)):
            replace[a] = chain
            drop |= {h, b, c}
    if not replace:
        return graph
    ops_out = tuple(replace.get(i, op) for i, op in enumerate(graph.ops) if i not in drop)
    # an NpuBandChain lives only inside compile_npu_graph, not in the seam's op list
    return NpuGraph(ops=ops_out, inputs=graph.inputs, outputs=graph.outputs)  # type: ignore[arg-type]


BandMemo = dict[tuple[object, ...], tuple[int, int]]  # (geometry, budget, io) -> (rows, est)


def chain_geometry(op: NpuBandChain) -> tuple[object, ...]:
    """Everything the chain's plan depends on besides hw, budget and residency."""
    add = op.add
    flat = (add.ofm.shape, add.ofm.dtype, add.ifm.dtype, add.ifm2.dtype)
    return (*(tiling_key(c) for c in op.parts[:3]), flat, add.ifm.name == op.tail.ofm.name)

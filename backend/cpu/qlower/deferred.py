"""Float layers that only pick or move values, computed on their input's stored integers.

A float layer (``run_on == "cpu"``) outputs real values. When it is a constant
pad, a max pool or a data movement (reshape, transpose, slice) and its input
holds stored integers ``x`` with QParams ``q`` (an integer layer's output, or
another such layer's deferred result), every output value is ``D_q(x')``:
``x'`` the same layer applied to the integers and ``D_q`` the executor's
dequantization (``float32((x - zp) * scale)``):

- movement re-indexes, so it commutes with any element-wise map;
- max pool: ``D_q`` is non-decreasing (``scale > 0``), so the window maximum
  of the reals is ``D_q`` of the integers' maximum; padding never wins as
  long as every window holds an input element (checked window by window: a
  dilation can step over a small input);
- constant pad: with the stored integer ``v`` whose ``D_q(v)`` is the pad
  value bit for bit (0.0 is ``v = zp``), padding the integers with ``v``
  (none for an infinity or NaN: the layer stays float).

Only for ``q`` whose every stored value round-trips, ``Q_q(D_q(v)) == v``, with
``D_q(v)`` finite (not so when ``D_q`` overflows float32, a scale near 1e37): an
integer layer reading the float result with ``q`` then reads the integers
themselves, and a float max pool's padding (float32's lowest) never wins.

So the lowering keeps a :class:`Deferred` value (the integers and ``q``) and
converts only where a consumer needs another representation:
:func:`to_float` dequantizes with ``q`` (the executor's float32 values, bit for
bit), :func:`to_ints` gives what an integer consumer reads, ``Q_t(D_q(x'))``
with the consumer's input QParams ``t``: for 8-bit types one table lookup
(:func:`requant_table`, computed in numpy with the executor's formulas;
nothing when ``t == q``), else the executor's dequantize and quantize in
Relax. BlazeFace's channel pads and max pools (float layers between integer
adds) then move int8 values instead of dequantizing to float32, padding and
quantizing back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .intops import dequantize, quantize, shape_of
from .lut import emit_lookup
from .movement import emit_movement

#: Layers that only re-index their single input.
REINDEX = ("reshape", "transpose", "slice")
_EIGHT_BIT = ("int8", "uint8")

#: A map of stored integers, ``v -> v`` or a table lookup's (to re-map a pad integer).
Remap = Callable[[int], int]
#: One deferred layer on stored integers: ``(builder, integers, remap) -> integers``; a pad
#: pads with ``remap(its pad integer)``.
Step = Callable[[relax.BlockBuilder, relax.Expr, Remap], relax.Expr]


@dataclass(frozen=True, slots=True)
class Deferred:
    """A float tensor held as stored integers: its real values are ``dequantize(ints, q)``.

    ``ints`` is ``steps`` applied in order to ``source`` (stored integers of ``q``):
    re-indexings, max pools and pads. :func:`to_ints` replays them on ``source``
    after its table lookup (which commutes with each: it is element-wise and
    non-decreasing; a pad integer ``v`` becomes ``table[v]``), so the lookup runs
    on the unpadded tensor.
    """

    ints: relax.Expr
    q: QParams
    source: relax.Expr
    steps: tuple[Step, ...] = ()

    def then(self, bb: relax.BlockBuilder, step: Step) -> Deferred:
        """This value with ``step`` applied."""
        ints = _emitted(bb, step(bb, self.ints, lambda v: v))
        return Deferred(ints, self.q, self.source, (*self.steps, step))


def _emitted(bb: relax.BlockBuilder, expr: relax.Expr) -> relax.Expr:
    return expr if isinstance(expr, relax.Var) else bb.emit(expr)


def _stored_values(dtype: str) -> np.ndarray:
    """The 256 stored values of an 8-bit type in table order (index ``v mod 256``)."""
    index = np.arange(256)
    return index - 256 * (index >= 128) if dtype == "int8" else index


def requant_table(src: QParams, dst: QParams) -> np.ndarray:
    """``Q_dst(D_src(v))`` for the 256 stored values ``v`` of 8-bit ``src``, indexed by
    ``v mod 256`` (:func:`~.lut.emit_lookup`'s order), as ``dst.dtype``.

    ``D_src`` is the executor's dequantization to float32, ``Q_dst`` its
    quantization (round half to even, saturate).
    """
    reals = src.dequantize(_stored_values(src.dtype)).astype(np.float32)
    return dst.quantize(reals)


def to_float(bb: relax.BlockBuilder, value: Deferred) -> relax.Expr:
    """The real values (float32) the executor holds for ``value``."""
    return bb.emit(dequantize(value.ints, value.q))


def to_ints(bb: relax.BlockBuilder, value: Deferred, dst: QParams) -> relax.Expr:
    """The stored integers (``dst.dtype``) an integer layer reads for ``value``.

    With ``dst == value.q`` these are ``value.ints`` themselves: integer moves keep the
    integers, and a float layer is deferred only when ``Q_q(D_q(v)) == v`` for every ``v``
    (:func:`defer_layer`).
    """
    if dst == value.q:
        return value.ints
    if value.q.dtype in _EIGHT_BIT and dst.dtype in _EIGHT_BIT:
        table = requant_table(value.q, dst)
        looked = emit_lookup(bb, value.source, table)
        for step in value.steps:
            looked = _emitted(bb, step(bb, looked, lambda v: int(table[v % 256])))
        return looked
    return bb.emit(quantize(dequantize(value.ints, value.q), dst))


def _pad_code(value: float, q: QParams) -> int | None:
    """The stored integer whose real value is ``value`` bit for bit, or None (also for
    infinities and NaN, which no stored integer's real value is)."""
    if not math.isfinite(value):
        return None
    code = int(np.rint(np.float64(value) / q.scale)) + q.zero_point
    if not q.qmin <= code <= q.qmax:
        return None
    got = np.float32(q.dequantize(np.asarray(code)))
    return code if got.tobytes() == np.float32(value).tobytes() else None


def _windows_hold_input(sizes: Sequence[int], geometry: Mapping[str, Sequence[int]]) -> bool:
    """Every pooling window (``pool_size``, ``strides``, ``padding``, ``dilation``) over an
    input of spatial ``sizes`` holds an input element. Checked window by window: with a
    dilation above an axis' size a window can fall between the input's ends although each
    pad is below the window size (pad 1, window 2, dilation 2 on a size-1 axis reads
    offsets -1 and 1)."""
    pool, strides, dilation = geometry["pool_size"], geometry["strides"], geometry["dilation"]
    padding, n = geometry["padding"], len(sizes)
    for i, size in enumerate(sizes):
        before, after, span = padding[i], padding[i + n], dilation[i] * (pool[i] - 1) + 1
        room = size + before + after - span
        if room < 0:
            return False
        for o in range(room // strides[i] + 1):
            start = o * strides[i] - before
            if not any(0 <= start + j * dilation[i] < size for j in range(pool[i])):
                return False
    return True


def _round_trips(q: QParams) -> bool:
    """``D_q(v)`` is finite and ``Q_q(D_q(v)) == v`` for every stored value ``v`` of
    ``q.dtype`` (the executor's float32 dequantization, then its quantization). False when
    ``D_q`` overflows float32 (a scale near 1e37: even ``D_q(qmin) = -inf`` alone, which
    round-trips, loses a float max pool's window to its padding, float32's lowest) or
    rounds distinct integers to one float."""
    lo, hi = np.iinfo(np.dtype(q.dtype)).min, np.iinfo(np.dtype(q.dtype)).max
    stored = np.arange(int(lo), int(hi) + 1)
    with np.errstate(over="ignore"):
        reals = q.dequantize(stored).astype(np.float32)
    finite = bool(np.all(np.isfinite(reals)))
    return finite and bool(np.array_equal(q.quantize(reals).astype(np.int64), stored))


def _stored_step(node: Node, x: Deferred) -> Step | None:
    """The integer form of a ``relax`` node's stored pad or max pool call, or None."""
    call = node.relax_call
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
        return None
    if len(call.args) != 1 or not isinstance(call.args[0], relax.Var):
        return None
    op, attrs = call.op.name, call.attrs
    if op == "relax.nn.pad" and str(attrs.pad_mode) == "constant":
        code = _pad_code(float(attrs.pad_value), x.q)
        if code is None:
            return None
        widths = [int(v) for v in attrs.pad_width]

        def pad(_bb: relax.BlockBuilder, ints: relax.Expr, remap: Remap) -> relax.Expr:
            return relax.op.nn.pad(ints, widths, "constant", float(remap(code)))

        return pad
    if op == "relax.nn.max_pool2d" and not bool(attrs.ceil_mode):
        layout = str(attrs.layout)
        if layout not in ("NCHW", "NHWC"):
            return None
        geometry = {
            "pool_size": tuple(int(v) for v in attrs.pool_size),
            "strides": tuple(int(v) for v in attrs.strides),
            "padding": tuple(int(v) for v in attrs.padding),
            "dilation": tuple(int(v) for v in attrs.dilation),
        }
        shape = shape_of(x.ints)
        sizes = [shape[layout.index("H")], shape[layout.index("W")]]
        if not _windows_hold_input(sizes, geometry):
            return None
        layouts = {"layout": layout, "out_layout": str(attrs.out_layout)}
        return lambda _bb, ints, _remap: relax.op.nn.max_pool2d(ints, **geometry, **layouts)
    return None


def defer_move(bb: relax.BlockBuilder, node: Node, x: Deferred) -> Deferred:
    """Re-indexing ``node`` (:data:`REINDEX`) applied to ``x``'s integers."""

    def move(bb: relax.BlockBuilder, ints: relax.Expr, _remap: Remap) -> relax.Expr:
        return emit_movement(bb, node, [ints])

    return x.then(bb, move)


def defer_layer(bb: relax.BlockBuilder, node: Node, x: Deferred, out_dtype: str) -> Deferred | None:
    """Float layer ``node`` (one input, ``x``) on stored integers, or None when it is not a
    re-indexing, constant pad or max pool this module proves exact (module docstring).

    ``out_dtype`` is the layer's float output type in the graph (only float32 qualifies).
    ``x.q`` must round-trip (:func:`_round_trips`): an integer layer reading the float
    result quantizes it, and :func:`to_ints` then gives ``x``'s integers unchanged.
    """
    if out_dtype != "float32" or x.q.scale <= 0 or not _round_trips(x.q):
        return None
    if node.op in REINDEX:
        return defer_move(bb, node, x)
    if node.op == "max_pool2d":
        geometry = {
            "pool_size": tuple(int(v) for v in node.attr("kernel")),
            "strides": tuple(int(v) for v in node.attr("strides")),
            "padding": tuple(int(v) for v in node.attr("padding")),
            "dilation": tuple(int(v) for v in node.attr("dilation")),
        }
        if not _windows_hold_input(shape_of(x.ints)[2:], geometry):
            return None
        return x.then(bb, lambda _bb, ints, _remap: relax.op.nn.max_pool2d(ints, **geometry))
    if node.op == "relax":
        step = _stored_step(node, x)
        return None if step is None else x.then(bb, step)
    return None


def resolve(
    bb: relax.BlockBuilder,
    value: relax.Expr | Deferred,
    dst: QParams | None,
    cache: dict[tuple[int, QParams | None], relax.Expr],
) -> relax.Expr:
    """``value`` as a consumer reads it: stored integers of ``dst``, or real values
    (``dst`` None); plain expressions pass through. Conversions are emitted once
    per ``(value, dst)`` (``cache``, keyed by the value's identity)."""
    if not isinstance(value, Deferred):
        return value
    key = (id(value), dst)
    if key not in cache:
        cache[key] = to_float(bb, value) if dst is None else to_ints(bb, value, dst)
    return cache[key]


def deferred_input(
    value: relax.Expr | Deferred, name: str, holds_ints: bool, tensors: Mapping[str, QParams]
) -> Deferred | None:
    """``value`` (tensor ``name``) as a :class:`Deferred`: itself, or stored integers of
    ``tensors[name]`` when the executor holds ``name`` as integers (``holds_ints``)."""
    if isinstance(value, Deferred):
        return value
    if holds_ints and name in tensors and not str(value.ty.dtype).startswith("float"):
        return Deferred(value, tensors[name], value)
    return None

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
  long as every window holds an input element (each pad below the window);
- constant pad: with the stored integer ``v`` whose ``D_q(v)`` is the pad
  value bit for bit (0.0 is ``v = zp``), padding the integers with ``v``.

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

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .intops import dequantize, quantize
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

    With ``dst == value.q`` these are ``value.ints`` themselves: ``Q_q(D_q(v)) == v``
    (``|v - zp| < 2^16``: the float32 rounding moves ``D_q(v) / scale`` far less than 0.5).
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
    """The stored integer whose real value is ``value`` bit for bit, or None."""
    code = int(np.rint(np.float64(value) / q.scale)) + q.zero_point
    if not q.qmin <= code <= q.qmax:
        return None
    got = np.float32(q.dequantize(np.asarray(code)))
    return code if got.tobytes() == np.float32(value).tobytes() else None


def _windows_hold_input(pool: tuple[int, ...], padding: tuple[int, ...]) -> bool:
    """Every pooling window holds an input element: each pad below the window size."""
    n = len(pool)
    return all(padding[i] < pool[i] and padding[i + n] < pool[i] for i in range(n))


def _stored_step(node: Node, x: Deferred) -> Step | None:
    """The integer form of a ``relax`` node's stored pad or max pool call, or None."""
    call = node.relax_call
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
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
        pool = tuple(int(v) for v in attrs.pool_size)
        padding = tuple(int(v) for v in attrs.padding)
        if not _windows_hold_input(pool, padding):
            return None
        geometry = {
            "pool_size": pool,
            "strides": tuple(int(v) for v in attrs.strides),
            "padding": padding,
            "dilation": tuple(int(v) for v in attrs.dilation),
            "layout": str(attrs.layout),
            "out_layout": str(attrs.out_layout),
        }
        return lambda _bb, ints, _remap: relax.op.nn.max_pool2d(ints, **geometry)
    return None


def defer_layer(bb: relax.BlockBuilder, node: Node, x: Deferred, out_dtype: str) -> Deferred | None:
    """Layer ``node`` (one input, ``x``) on stored integers, or None when it is not a
    re-indexing, constant pad or max pool this module proves exact (module docstring).

    ``out_dtype`` is the layer's float output type in the graph (only float32 qualifies).
    """
    if out_dtype != "float32" or x.q.scale <= 0:
        return None
    if node.op in REINDEX:

        def move(bb: relax.BlockBuilder, ints: relax.Expr, _remap: Remap) -> relax.Expr:
            return emit_movement(bb, node, [ints])

        return x.then(bb, move)
    if node.op == "max_pool2d":
        pool = tuple(int(v) for v in node.attr("kernel"))
        padding = tuple(int(v) for v in node.attr("padding"))
        if not _windows_hold_input(pool, padding):
            return None
        geometry = {
            "pool_size": pool,
            "strides": tuple(node.attr("strides")),
            "padding": padding,
            "dilation": tuple(node.attr("dilation")),
        }
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

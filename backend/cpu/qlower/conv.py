"""Integer convolution and fully connected layers in Relax, bit-exact to the NPU datapath.

Requires: an integer ``conv2d`` (NCHW input, OIHW int8 ``weights``, any
``groups`` incl. depthwise with a channel multiplier) or ``dense``
(``x @ weights``, ``(K, N)`` int8) layer of a
:class:`~npuc.midend.quantize.qmodel.QuantizedModel`, and its input as stored
integers.

Guarantees: the stored output integers the integer executor computes
(:meth:`~npuc.midend.quantize.int_exec.IntegerExecutor.conv_output`):

1. ``sum((x - ifm_zp) * w)`` formed exactly: the centred input is int16 for
   8-bit inputs (|x - zp| <= 255) and int32 for int16; the products are
   accumulated in int32 when the layer's bound ``max_c sum|w[c]| * max|x - zp|``
   is below 2^31 (no partial sum can overflow), else in int64;
2. ``acc48 = sat48(sum + (b16 << bias_shift))``,
   ``acc32 = sat32(rshift_round(acc48, pre_shift))``,
   ``y = rshift_round(acc32 * M[c], post_shift) + ofm_zp``, clamped to
   ``[act_min, act_max]`` and the output type, all in int64.

The overflow flag of the reference is not reproduced (only the values).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from tvm import relax

from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qparams import QParams

from .int8_conv import emit_int8_conv, emit_int8_dense
from .int8_grouped import emit_int8_grouped_conv
from .intops import (
    centered,
    clamp_store,
    i64_const,
    rshift_round,
    sat32,
    sat48,
    to_i64,
)

INT32_SAFE = 1 << 31


def accumulator_dtype(weights: np.ndarray, q: QParams, *, dense: bool) -> str:
    """``"int32"`` when no partial sum of ``(x - zp) * w`` can leave int32, else ``"int64"``.

    The bound is ``max over output channels of sum|w| * max|x - zp|`` (any
    partial sum is bounded by the full sum of absolute values).
    """
    w = np.abs(np.asarray(weights, np.int64))
    l1 = w.sum(axis=0) if dense else w.reshape(w.shape[0], -1).sum(axis=1)
    peak = max(q.zero_point - q.qmin, q.qmax - q.zero_point)
    return "int32" if int(l1.max(initial=0)) * peak < INT32_SAFE else "int64"


def _operand_dtype(q: QParams, acc: str) -> str:
    """Type of the centred input and the weights fed to the product (exact, narrow)."""
    if acc == "int64":
        return "int64"
    return "int16" if q.dtype in ("int8", "uint8") else "int32"


def emit_conv(
    bb: relax.BlockBuilder,
    node: Node,
    p: Mapping[str, Any],
    x: relax.Expr,
    xq: QParams,
    out: QParams,
) -> relax.Expr:
    """Stored output integers (``out.dtype``) of an integer conv2d or dense layer."""
    dense = node.op == "dense"
    fast = (emit_int8_dense if dense else emit_int8_conv)(bb, node, p, x, xq, out)
    if fast is None and not dense:
        fast = emit_int8_grouped_conv(bb, node, p, x, xq, out)
    if fast is not None:
        return fast
    weights = np.asarray(p["weights"])
    acc = accumulator_dtype(weights, xq, dense=dense)
    operand = _operand_dtype(xq, acc)
    xc = bb.emit(centered(x, xq.zero_point, operand))
    w = relax.const(weights.astype(operand), operand)
    if dense:
        sums = bb.emit(relax.op.matmul(xc, w, out_dtype=acc))
        channel_shape: tuple[int, ...] = (-1,)
    else:
        sums = bb.emit(
            relax.op.nn.conv2d(
                xc,
                w,
                strides=tuple(node.attr("strides")),
                padding=tuple(node.attr("padding")),
                dilation=tuple(node.attr("dilation")),
                groups=int(node.attr("groups")),
                out_dtype=acc,
            )
        )
        channel_shape = (1, -1, 1, 1)
    bias = np.asarray(p["b16"], np.int64) << int(p["bias_shift"])
    acc48 = sat48(relax.op.add(to_i64(sums), i64_const(bias.reshape(channel_shape))))
    acc32 = bb.emit(sat32(rshift_round(acc48, int(p["pre_shift"]))))
    m = np.asarray(p["ofm_multiplier"], np.int64).reshape(-1)
    m = m.reshape(channel_shape) if m.size > 1 else m.reshape(())
    y = rshift_round(relax.op.multiply(acc32, i64_const(m)), int(p["post_shift"]))
    if out.zero_point:
        y = relax.op.add(y, i64_const(out.zero_point))
    return bb.emit(clamp_store(y, int(p["act_min"]), int(p["act_max"]), out.dtype))

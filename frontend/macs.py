"""Multiply-accumulate counts of the compute-heavy ONNX operators.

What is counted: one MAC per multiply-accumulate of a convolution or a
matrix product, from the static shapes shape inference found:

* ``Conv``: N x C_out x prod(output spatial) x (C_in / group) x prod(kernel)
  (grouped and depthwise convolutions count only the channels a filter reads);
* ``ConvTranspose``: N x C_in x prod(input spatial) x (C_out / group) x prod(kernel);
* ``Gemm``: M x N x K; ``MatMul``: prod(broadcast batch dims) x M x N x K;
* ``LSTM`` / ``GRU`` (left whole, e.g. inside an ``If`` branch; those npuc
  unrolls are counted as their MatMuls): seq x batch x directions x
  gates x hidden x (input size + hidden).

Bias additions, element-wise operators, pooling, normalisation and
activations count zero MACs. Guarantees: a node whose shapes are not static
gets ``None`` (unknown), never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import onnx

Shapes = Mapping[str, tuple[int, ...]]

COUNTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU")


def node_macs(node: onnx.NodeProto, shapes: Shapes) -> int | None:
    """MACs of one node (0 for operators that are not counted, None if unknown)."""
    if node.op_type not in COUNTED_OPS or node.domain not in ("", "ai.onnx"):
        return 0
    ins = [shapes.get(name) if name else None for name in node.input]
    out = shapes.get(node.output[0])
    if node.op_type == "Conv":
        return _conv(ins, out, node)
    if node.op_type == "ConvTranspose":
        return _conv_transpose(ins, node)
    if node.op_type == "Gemm":
        return _gemm(ins, node)
    if node.op_type in ("LSTM", "GRU"):
        return _recurrent(ins)
    return _matmul(ins)


def _group(node: onnx.NodeProto) -> int:
    for a in node.attribute:
        if a.name == "group":
            return int(a.i)
    return 1


def _conv(ins: list, out: tuple[int, ...] | None, node: onnx.NodeProto) -> int | None:
    if len(ins) < 2 or ins[1] is None or out is None:
        return None
    weight = ins[1]  # (C_out, C_in / group, k...)
    return out[0] * out[1] * math.prod(out[2:]) * weight[1] * math.prod(weight[2:])


def _conv_transpose(ins: list, node: onnx.NodeProto) -> int | None:
    if len(ins) < 2 or ins[0] is None or ins[1] is None:
        return None
    x, weight = ins[0], ins[1]  # weight (C_in, C_out / group, k...)
    return x[0] * x[1] * math.prod(x[2:]) * weight[1] * math.prod(weight[2:])


def _recurrent(ins: list) -> int | None:
    if len(ins) < 3 or ins[0] is None or ins[1] is None or ins[2] is None:
        return None
    x, w, r = ins[0], ins[1], ins[2]  # X (seq, batch, I) either layout; W (dirs, gates*H, I)
    return x[0] * x[1] * w[0] * w[1] * (w[2] + r[2])


def _gemm(ins: list, node: onnx.NodeProto) -> int | None:
    if len(ins) < 2 or ins[0] is None or ins[1] is None:
        return None
    attrs = {a.name: a.i for a in node.attribute if a.name in ("transA", "transB")}
    a, b = ins[0], ins[1]
    m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
    n = b[0] if attrs.get("transB") else b[1]
    return m * n * k


def _matmul(ins: list) -> int | None:
    if len(ins) < 2 or ins[0] is None or ins[1] is None:
        return None
    a, b = list(ins[0]), list(ins[1])
    if len(a) == 1:
        a = [1, *a]
    if len(b) == 1:
        b = [*b, 1]
    m, k, n = a[-2], a[-1], b[-1]
    batch_a, batch_b = a[:-2], b[:-2]
    width = max(len(batch_a), len(batch_b))
    batch_a = [1] * (width - len(batch_a)) + batch_a
    batch_b = [1] * (width - len(batch_b)) + batch_b
    batch = math.prod(max(x, y) for x, y in zip(batch_a, batch_b, strict=True))
    return batch * m * n * k

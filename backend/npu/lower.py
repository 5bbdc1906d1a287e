"""Lower one partition of NPU-legal quantized layers to an :class:`~.ops.NpuGraph`.

Requires: a :class:`~.partition.Partition` whose layers passed
:func:`~.partition.npu_legal`. Guarantees: the graph's ops compute exactly what
:class:`npuc.midend.quantize.int_exec.IntegerExecutor` computes for those
layers, in NHWC storage (:mod:`.layout`): weights OIHW -> OHWI, dense (K, N) ->
1x1 weights (N, 1, 1, K), a constant operand of an element-wise layer expanded
to the full shape and fed as an extra graph input (its values in
``LoweredPartition.constants``), concat inputs requantized first, nearest
resize by integer factors (its index map checked by the partitioner).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from npuc.backend.npu.layout import concat_axis, move_chain, storage_shape, to_storage
from npuc.backend.npu.ops import (
    NpuConcat,
    NpuConv2d,
    NpuElementwise,
    NpuGraph,
    NpuLut,
    NpuOp,
    NpuPool,
    NpuRequant,
    NpuReshape,
    NpuResize,
    NpuSlice,
    NpuTensor,
    NpuTranspose,
)
from npuc.backend.npu.partition import Partition
from npuc.core.errors import UnsupportedError
from npuc.midend.quantize.graph import Node
from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.qparams import QParams

_ELTWISE = {"add": "add", "subtract": "sub", "multiply": "mul", "maximum": "max", "minimum": "min"}


@dataclass(frozen=True, slots=True)
class LoweredPartition:
    """A partition's NPU graph; ``constants``: storage values of the constant graph inputs."""

    partition: Partition
    graph: NpuGraph
    constants: dict[str, np.ndarray]


def npu_tensor(name: str, shape: tuple[int, ...], q: QParams) -> NpuTensor:
    """The NHWC descriptor of graph tensor ``name`` quantized by ``q``."""
    s = storage_shape(shape)
    if s is None:
        raise UnsupportedError(f"tensor {name!r} of shape {shape} has no NPU layout")
    return NpuTensor(
        name=name, shape=s, dtype=q.dtype, scale=float(q.scale), zero_point=int(q.zero_point)
    )


class _Lowerer:
    def __init__(self, qm: QuantizedModel) -> None:
        self.qm = qm
        self.constants: dict[str, np.ndarray] = {}
        self.const_tensors: list[NpuTensor] = []

    def t(self, name: str) -> NpuTensor:
        return npu_tensor(name, self.qm.graph.tensor_type(name).shape, self.qm.tensors[name])

    def lower(self, node: Node) -> list[NpuOp]:
        p = self.qm.layers[node.name].params
        out = self.t(node.name)
        op = node.op
        if op in ("conv2d", "dense"):
            return [self._conv(node, p, out)]
        if op in _ELTWISE:
            return self._eltwise(node, p, out)
        x = self.t(node.inputs[0])
        if op == "clip":
            return [
                NpuRequant(
                    name=node.name,
                    ifm=x,
                    ofm=out,
                    ofm_multiplier=int(p["ofm_multiplier"]),
                    post_shift=int(p["post_shift"]),
                    act_min=int(p["act_min"]),
                    act_max=int(p["act_max"]),
                )
            ]
        if op in ("max_pool2d", "avg_pool2d", "global_avg_pool"):
            return [self._pool(node, p, x, out)]
        if op == "unary":
            bits = int(p.get("lut_bits", 8))
            return [
                NpuLut(
                    name=node.name,
                    ifm=x,
                    ofm=out,
                    table=np.asarray(p["lut"]),
                    lut_bits=bits,
                    lut_f=16 - bits if x.dtype == "int16" else 8,
                )
            ]
        if op == "concat":
            return self._concat(node, p, out)
        if op in ("reshape", "transpose"):
            return self._move(node, x, out)
        if op == "slice":
            return [self._slice(node, x, out)]
        if op == "resize":
            return [self._resize(node, x, out)]
        raise UnsupportedError(f"layer {node.name!r}: no NPU lowering for {op}")

    def _conv(self, node: Node, p: Mapping[str, Any], out: NpuTensor) -> NpuConv2d:
        x = self.t(node.inputs[0])
        w = np.asarray(p["weights"], np.int8)
        if node.op == "dense":
            weights = np.ascontiguousarray(w.T[:, None, None, :])
            geometry: dict = {}
            groups = 1
        else:
            weights = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
            groups = int(node.attr("groups"))
            geometry = {
                "stride": tuple(node.attr("strides")),
                "dilation": tuple(node.attr("dilation")),
                "padding": tuple(node.attr("padding")),
            }
        cout = weights.shape[0]
        mult = np.asarray(p["ofm_multiplier"]).astype(np.uint16).reshape(-1)
        return NpuConv2d(
            name=node.name,
            ifm=x,
            ofm=out,
            weights=weights,
            bias=np.broadcast_to(np.asarray(p["b16"], np.int16), (cout,)).copy(),
            bias_shift=int(p["bias_shift"]),
            ofm_multiplier=mult,
            pre_shift=int(p["pre_shift"]),
            post_shift=int(p["post_shift"]),
            act_min=int(p["act_min"]),
            act_max=int(p["act_max"]),
            groups=1 if groups == 1 else x.shape[3],
            **geometry,
        )

    def _eltwise(self, node: Node, p: Mapping[str, Any], out: NpuTensor) -> list[NpuOp]:
        ops: list[NpuOp] = []
        operands = [self.t(n) for n in node.inputs]
        for i, x in enumerate(operands):
            if x.shape != out.shape:  # (1, 1, 1, C) -> (1, H, W, C): exact nearest upsampling
                full = NpuTensor(
                    name=f"{node.name}.bcast{i}",
                    shape=out.shape,
                    dtype=x.dtype,
                    scale=x.scale,
                    zero_point=x.zero_point,
                )
                ops.append(NpuResize(name=full.name, ifm=x, ofm=full))
                operands[i] = full
        if "const" in p:
            const = np.asarray(p["const"])
            expanded = np.broadcast_to(const, node.out.shape)
            name = f"{node.name}.const"
            t = NpuTensor(
                name=name,
                shape=out.shape,
                dtype=str(const.dtype),
                scale=float(p["const_scale"]),
                zero_point=int(p["const_zp"]),
            )
            self.constants[name] = np.ascontiguousarray(to_storage(np.asarray(expanded)))
            self.const_tensors.append(t)
            operands = [t, operands[0]] if node.attr("const_side") == "lhs" else [operands[0], t]
        ops.append(
            NpuElementwise(
                name=node.name,
                op=_ELTWISE[node.op],
                ifm=operands[0],
                ifm2=operands[1],
                ofm=out,
                ifm_multiplier=int(p.get("ifm_multiplier", 0)),
                ifm2_multiplier=int(p.get("ifm2_multiplier", 0)),
                ofm_multiplier=int(p.get("ofm_multiplier", 0)),
                post_shift=int(p["post_shift"]),
                act_min=int(p["act_min"]),
                act_max=int(p["act_max"]),
            )
        )
        return ops

    def _pool(self, node: Node, p: Mapping[str, Any], x: NpuTensor, out: NpuTensor) -> NpuPool:
        if node.op == "global_avg_pool":
            geometry: dict = {"kernel": (x.shape[1], x.shape[2])}
        else:
            geometry = {
                "kernel": tuple(node.attr("kernel")),
                "stride": tuple(node.attr("strides")),
                "padding": tuple(node.attr("padding")),
            }
        if node.op == "max_pool2d":
            lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}[out.dtype]
            return NpuPool(
                name=node.name, op="max", ifm=x, ofm=out, act_min=lo, act_max=hi, **geometry
            )
        return NpuPool(
            name=node.name,
            op="avg",
            ifm=x,
            ofm=out,
            ofm_multiplier=int(p["ofm_multiplier"]),
            post_shift=int(p["post_shift"]),
            act_min=int(p["act_min"]),
            act_max=int(p["act_max"]),
            **geometry,
        )

    def _concat(self, node: Node, p: Mapping[str, Any], out: NpuTensor) -> list[NpuOp]:
        ops: list[NpuOp] = []
        ifms = []
        q_out = self.qm.tensors[node.name]
        lo, hi = q_out.qmin, q_out.qmax
        for i, (name, (m, shift)) in enumerate(zip(node.inputs, p["input_requant"], strict=True)):
            x = self.t(name)
            if (int(m), int(shift)) == (1, 0) and self.qm.tensors[name] == q_out:
                ifms.append(x)
                continue
            rq = NpuTensor(
                name=f"{node.name}.in{i}",
                shape=x.shape,
                dtype=out.dtype,
                scale=out.scale,
                zero_point=out.zero_point,
            )
            ops.append(
                NpuRequant(
                    name=rq.name,
                    ifm=x,
                    ofm=rq,
                    ofm_multiplier=int(m),
                    post_shift=int(shift),
                    act_min=lo,
                    act_max=hi,
                )
            )
            ifms.append(rq)
        rank = len(node.out.shape)
        axis = concat_axis(rank, int(node.attr("axis")) % rank)
        ops.append(NpuConcat(name=node.name, ifms=tuple(ifms), ofm=out, axis=int(axis or 0)))
        return ops

    def _move(self, node: Node, x: NpuTensor, out: NpuTensor) -> list[NpuOp]:
        steps = move_chain(node, self.qm.graph.tensor_type(node.inputs[0]).shape)
        if steps is None:
            raise UnsupportedError(f"layer {node.name!r}: no exact HWC mapping")
        ops: list[NpuOp] = []
        current = x
        for i, (kind, arg) in enumerate(steps):
            last = i == len(steps) - 1
            dims = [current.shape[a] for a in arg] if kind == "transpose" else list(arg)
            shape = (int(dims[0]), int(dims[1]), int(dims[2]), int(dims[3]))
            nxt = (
                out
                if last
                else NpuTensor(
                    name=f"{node.name}.s{i}",
                    shape=shape,
                    dtype=out.dtype,
                    scale=out.scale,
                    zero_point=out.zero_point,
                )
            )
            name = node.name if last else nxt.name
            if kind == "transpose":
                ops.append(NpuTranspose(name=name, ifm=current, ofm=nxt, perm=tuple(arg)))
            else:
                ops.append(NpuReshape(name=name, ifm=current, ofm=nxt))
            current = nxt
        return ops

    def _slice(self, node: Node, x: NpuTensor, out: NpuTensor) -> NpuSlice:
        in_shape = self.qm.graph.tensor_type(node.inputs[0]).shape
        rank = len(in_shape)
        begin = [0, 0, 0, 0]
        for axis, b in zip(node.attr("axes"), node.attr("begin"), strict=True):
            a = int(axis) % rank
            start = range(in_shape[a])[slice(int(b), None)].start if in_shape[a] else 0
            begin[int(concat_axis(rank, a) or 0)] = int(start)
        return NpuSlice(name=node.name, ifm=x, ofm=out, begin=(0, begin[1], begin[2], begin[3]))

    def _resize(self, node: Node, x: NpuTensor, out: NpuTensor) -> NpuResize:
        return NpuResize(name=node.name, ifm=x, ofm=out)


def lower_partition(part: Partition, qm: QuantizedModel) -> LoweredPartition:
    """The NpuGraph of ``part`` (inputs: its border tensors, then the expanded constants)."""
    lw = _Lowerer(qm)
    ops: list[NpuOp] = []
    for name in part.layers:
        ops += lw.lower(qm.graph.node(name))
    inputs = tuple(lw.t(n) for n in part.inputs) + tuple(lw.const_tensors)
    outputs = tuple(lw.t(n) for n in part.outputs)
    graph = NpuGraph(ops=tuple(ops), inputs=inputs, outputs=outputs, name=part.name)
    return LoweredPartition(part, graph, lw.constants)

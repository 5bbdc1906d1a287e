"""Full-integer TFLite models: import as a float graph, keep the file's numbers.

A full-int8 TFLite model (``TFLiteConverter`` with a representative data set
and ``TFLITE_BUILTINS_INT8``; what Vela's users bring) stores int8/uint8
activations with one scale and zero point per tensor, int8 weights with
per-channel scales (axis 0 for ``CONV_2D`` and ``FULLY_CONNECTED``, OHWI and
(N, K); axis 3 for ``DEPTHWISE_CONV_2D``, 1HWC), int32 biases with scale
``scale_in * scale_w`` and ``QUANTIZE``/``DEQUANTIZE`` at its edges.

:func:`read_source_quant` records those numbers in a
:class:`~npuc.frontend.source_quant.SourceQuant` (format ``"tflite-int8"``)
together with the graph's structure under ONNX-style operator names (so
:mod:`npuc.midend.quantize.source_names` maps the TFLite names onto layers
unchanged). :class:`Int8AsFloatConverter` converts the model as a float graph:
every quantized tensor is the float ``scale * (q - zero_point)`` (constants
dequantized exactly in float64, then rounded once to float32), ``QUANTIZE``
and ``DEQUANTIZE`` are identities, fused activations become float clamps.

Weights are recorded in the layout the midend's layers use after
channels-first conversion: a ``CONV_2D`` weight OHWI -> OIHW, a
``DEPTHWISE_CONV_2D`` weight 1HWC -> (C, 1, H, W), both with their scales on
axis 0; a ``FULLY_CONNECTED`` weight keeps (N, K) (the name map finds its
transpose). The record keeps the file's tensor name.

Refused, naming the operator (:func:`quantization_problem`): int16
activations (the 16x8 scheme), dynamic-range models (int8 weights, float
activations), per-axis quantized activations and weights other than
int8/uint8 with a scale per tensor or channel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from tflite.TensorType import TensorType
from tvm import relax
from tvm.relax.frontend.tflite.tflite_frontend import get_tensor_name

from npuc.frontend.source_quant import (
    ActivationQuant,
    SourceGraph,
    SourceNode,
    SourceQuant,
    WeightQuant,
)
from npuc.frontend.tflite.converter import NpucTFLiteConverter

FORMAT = "tflite-int8"
_INT_TYPES = {TensorType.INT8: "int8", TensorType.UINT8: "uint8", TensorType.INT16: "int16"}
_NUMPY = {
    TensorType.INT8: np.int8,
    TensorType.UINT8: np.uint8,
    TensorType.INT16: np.int16,
    TensorType.INT32: np.int32,
    TensorType.INT64: np.int64,
}
ONNX_OPS: dict[str, str] = {
    "CONV_2D": "Conv", "DEPTHWISE_CONV_2D": "Conv", "FULLY_CONNECTED": "Gemm",
    "ADD": "Add", "SUB": "Sub", "MUL": "Mul", "DIV": "Div", "MAXIMUM": "Max",
    "MINIMUM": "Min", "RELU": "Relu", "RELU6": "Clip", "RELU_N1_TO_1": "Clip",
    "RELU_0_TO_1": "Clip", "MAX_POOL_2D": "MaxPool", "AVERAGE_POOL_2D": "AveragePool",
    "MEAN": "ReduceMean", "CONCATENATION": "Concat", "RESHAPE": "Reshape",
    "SQUEEZE": "Squeeze", "EXPAND_DIMS": "Unsqueeze", "TRANSPOSE": "Transpose",
    "SLICE": "Slice", "STRIDED_SLICE": "Slice", "SPLIT": "Split", "PAD": "Pad",
    "PADV2": "Pad", "RESIZE_BILINEAR": "Resize", "RESIZE_NEAREST_NEIGHBOR": "Resize",
    "SOFTMAX": "Softmax", "LOGISTIC": "Sigmoid", "TANH": "Tanh", "HARD_SWISH": "HardSwish",
    "LEAKY_RELU": "LeakyRelu", "QUANTIZE": "Identity", "DEQUANTIZE": "Identity",
}  # fmt: skip
"""TFLite builtin -> the ONNX operator the name map knows it as."""
_WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
HINT_INT8 = (
    "npuc maps full-integer int8 TFLite models (TFLiteConverter with a representative_dataset "
    "and TFLITE_BUILTINS_INT8); convert the model that way, or give npuc the float .tflite "
    "and calibration data (--calib)"
)


def _params(tensor: Any) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(scale float64, zero point int64, quantized axis) of a tensor, None if unquantized."""
    q = tensor.Quantization()
    if q is None:
        return None
    scale, zp = q.ScaleAsNumpy(), q.ZeroPointAsNumpy()
    if isinstance(scale, int) or scale.size == 0:
        return None
    zp_arr = np.zeros(scale.shape, np.int64) if isinstance(zp, int) else zp.astype(np.int64)
    return scale.astype(np.float64), zp_arr, int(q.QuantizedDimension())


def _is_const(model: Any, tensor: Any) -> bool:
    data = model.Buffers(tensor.Buffer()).DataAsNumpy()
    return not isinstance(data, int) and data.size > 0


def is_full_integer(model: Any, subgraph: Any) -> bool:
    """Whether some activation tensor carries int8/uint8/int16 quantization.

    An activation is a tensor with no buffer that is not unpacked from a
    constant (the output of ``DENSIFY``, sparse weights of a float model).
    """
    from tflite.BuiltinOperator import BuiltinOperator

    unpacked: set[int] = set()
    for index in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(index)
        code = model.OperatorCodes(op.OpcodeIndex())
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == BuiltinOperator.DENSIFY:
            unpacked.update(int(i) for i in op.OutputsAsNumpy())
    for i in range(subgraph.TensorsLength()):
        t = subgraph.Tensors(i)
        if i in unpacked or t.Type() not in _INT_TYPES or _params(t) is None:
            continue
        if not _is_const(model, t):
            return True
    return False


def quantization_problem(conv: NpucTFLiteConverter, op: Any, name: str) -> str | None:
    """Why npuc cannot map this operator of a full-integer model, or None."""
    for index in [*op.InputsAsNumpy(), *op.OutputsAsNumpy()]:
        if int(index) < 0:
            continue
        t = conv.subgraph.Tensors(int(index))
        params = _params(t)
        if params is None:
            continue
        const = _is_const(conv.model, t)
        if t.Type() == TensorType.INT16 and not const:
            return (
                f"int16 activation {t.Name().decode()!r} (16x8 quantization): npuc maps int8/uint8 "
                "TFLite activations; convert with TFLITE_BUILTINS_INT8, or give npuc the float "
                "model and --calib (npuc quantize --activation-bits 16)"
            )
        if not const and params[0].size > 1:
            return f"per-axis quantized activation {t.Name().decode()!r}"
        if t.Type() not in (*_INT_TYPES, TensorType.INT32):
            return f"quantized tensor {t.Name().decode()!r} of TFLite type {t.Type()}"
    return None


def _dequantize(values: np.ndarray, params: tuple[np.ndarray, np.ndarray, int]) -> np.ndarray:
    scale, zp, axis = params
    shape = [1] * values.ndim
    if scale.size > 1:
        shape[axis] = -1
    q = values.astype(np.int64) - zp.reshape(shape)
    return (q * scale.reshape(shape)).astype(np.float32)


class _FloatView:
    """A TFLite tensor seen as float32 (its quantization is recorded, not converted)."""

    def __init__(self, tensor: Any) -> None:
        self._tensor = tensor

    def Type(self) -> int:
        return int(TensorType.FLOAT32)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tensor, name)


class Int8AsFloatConverter(NpucTFLiteConverter):
    """The converter for full-integer models: every quantized tensor is its float value."""

    def npuc_converters(self) -> dict[str, Callable[..., Any]]:
        table = super().npuc_converters()
        table["QUANTIZE"] = self._identity
        table["DEQUANTIZE"] = self._identity
        return table

    def _identity(self, op: Any) -> relax.Expr:
        """QUANTIZE / DEQUANTIZE (and uint8 <-> int8 requantize): the float value is unchanged."""
        (data,) = self.get_input_tensors(op)[:1]
        return self.get_tensor_expr(data)

    def _quantization_problem(self, op: Any, name: str) -> str | None:
        return quantization_problem(self, op, name)

    def get_tensors(self, tensors_idx_list: Any) -> list[Any]:
        wrappers = super().get_tensors(tensors_idx_list)
        for w in wrappers:
            if w.tensor_idx >= 0 and w.qnn_params is not None:
                w.qnn_params = None
                w.tensor = _FloatView(w.tensor)
        return wrappers

    def get_tensor_value(self, tensor_wrapper: Any, is_sparse: bool = False) -> Any:
        tensor = tensor_wrapper.tensor
        if not isinstance(tensor, _FloatView):
            return super().get_tensor_value(tensor_wrapper, is_sparse)
        raw = tensor_wrapper.buffer.DataAsNumpy()
        values = np.frombuffer(raw, dtype=_NUMPY[tensor._tensor.Type()])
        if not is_sparse:
            values = values.reshape([int(d) for d in tensor.ShapeAsNumpy()])
        params = _params(tensor._tensor)
        return values if params is None else _dequantize(values, params)


def input_dtypes(subgraph: Any) -> dict[str, str]:
    """Quantized model inputs -> ``"float32"`` (npuc's interface takes the float values)."""
    out: dict[str, str] = {}
    for index in subgraph.InputsAsNumpy():
        t = subgraph.Tensors(int(index))
        if t.Type() in _INT_TYPES and _params(t) is not None:
            out[get_tensor_name(subgraph, int(index))] = "float32"
    return out


def read_source_quant(
    model: Any, subgraph: Any, op_names: Callable[[Any], str], notes: list[str]
) -> SourceQuant:
    """The file's activation scales, weights and graph structure (module docstring).

    ``op_names`` gives an operator's TFLite builtin name.
    """
    names = [get_tensor_name(subgraph, i) for i in range(subgraph.TensorsLength())]
    producers: dict[int, str] = {}
    ops = []
    for index in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(index)
        outs = [int(i) for i in op.OutputsAsNumpy()]
        label = names[outs[0]] if outs else f"op_{index}"
        for o in outs:
            producers[o] = op_names(op)
        ops.append((index, op, op_names(op), label))
    activations: dict[str, ActivationQuant] = {}
    weights: dict[str, WeightQuant] = {}
    consts: set[int] = set()
    for i in range(subgraph.TensorsLength()):
        t = subgraph.Tensors(i)
        if _is_const(model, t):
            consts.add(i)
            continue
        params = _params(t)
        if params is None or t.Type() not in _INT_TYPES:
            continue
        activations[names[i]] = ActivationQuant(
            scale=params[0].reshape(()) if params[0].size == 1 else params[0],
            zero_point=params[1].reshape(()) if params[1].size == 1 else params[1],
            dtype=_INT_TYPES[t.Type()],
            axis=None if params[0].size == 1 else params[2],
            node=names[i],
        )
    for _index, op, op_name, _label in ops:
        # A DEQUANTIZE's float output holds exactly its input's values: same parameters.
        src = names[int(op.InputsAsNumpy()[0])] if op.InputsLength() else ""
        if op_name == "DEQUANTIZE" and src in activations:
            for out in op.OutputsAsNumpy():
                activations.setdefault(names[int(out)], activations[src])
    folded = _folded_pads(subgraph, ops)
    nodes = []
    for _index, op, op_name, label in ops:
        if op_name in ("PAD", "PADV2") and int(op.OutputsAsNumpy()[0]) in folded:
            continue
        ins = [int(i) for i in op.InputsAsNumpy() if int(i) >= 0]
        ins = [folded.get(i, i) for i in ins]
        weight, l1 = None, None
        if op_name in _WEIGHT_OPS and len(ins) > 1:
            record = _weight_record(model, subgraph, ins[1], op_name, names[ins[1]])
            if record is not None:
                weights[names[ins[1]]] = record
                weight = names[ins[1]]
                deq = _dequantize(record.values, (record.scale, record.zero_point, record.axis))
                l1 = float(np.abs(deq.astype(np.float64)).sum())
        nodes.append(
            SourceNode(
                name=label,
                op_type=ONNX_OPS.get(op_name, op_name),
                inputs=tuple(names[i] for i in ins if i not in consts),
                outputs=tuple(names[int(i)] for i in op.OutputsAsNumpy()),
                weight=weight,
                weight_l1=l1,
            )
        )
    shapes = {
        names[i]: tuple(int(d) for d in subgraph.Tensors(i).ShapeAsNumpy())
        for i in range(subgraph.TensorsLength())
        if subgraph.Tensors(i).ShapeLength()
    }
    graph = SourceGraph(
        inputs=tuple(names[int(i)] for i in subgraph.InputsAsNumpy()),
        nodes=tuple(nodes),
        outputs=tuple(names[int(i)] for i in subgraph.OutputsAsNumpy()),
        shapes=shapes,
    )
    return SourceQuant(
        format=FORMAT, activations=activations, weights=weights, graph=graph, notes=tuple(notes)
    )


def _folded_pads(subgraph: Any, ops: list[tuple[int, Any, str, str]]) -> dict[int, int]:
    """PAD output -> PAD input for pads read only by convolutions (or max pools of ReLU outputs).

    The midend folds a zero pad into the convolution that reads it
    (``midend/fold_pad.py``); an int8 PAD pads with the zero point, i.e. float
    zero. The structure records the convolution as reading the PAD's input.
    """
    readers: dict[int, list[str]] = {}
    for _, op, name, _ in ops:
        for i in op.InputsAsNumpy():
            readers.setdefault(int(i), []).append(name)
    folded: dict[int, int] = {}
    for _, op, name, _ in ops:
        if name not in ("PAD", "PADV2"):
            continue
        out = int(op.OutputsAsNumpy()[0])
        src = int(op.InputsAsNumpy()[0])
        users = readers.get(out, [])
        ok = ["CONV_2D", "DEPTHWISE_CONV_2D"]
        if _non_negative(subgraph.Tensors(src)):
            ok.append("MAX_POOL_2D")  # the midend folds it after a ReLU too
        if users and all(u in ok for u in users):
            folded[out] = src
    return folded


def _non_negative(tensor: Any) -> bool:
    """Whether the tensor's int8/uint8 range starts at float 0 (a ReLU's output)."""
    params = _params(tensor)
    lowest = {TensorType.INT8: -128, TensorType.UINT8: 0}.get(tensor.Type())
    return params is not None and lowest is not None and int(params[1].reshape(-1)[0]) == lowest


def _weight_record(
    model: Any, subgraph: Any, index: int, op_name: str, name: str
) -> WeightQuant | None:
    """The int weights of a conv/FC in the layer's layout (module docstring), or None."""
    t = subgraph.Tensors(index)
    params = _params(t)
    if params is None or t.Type() not in _INT_TYPES or not _is_const(model, t):
        return None
    raw = model.Buffers(t.Buffer()).DataAsNumpy()
    shape = [int(d) for d in t.ShapeAsNumpy()]
    values = np.frombuffer(raw, dtype=_NUMPY[t.Type()]).reshape(shape).astype(np.int64)
    scale, zp, axis = params
    if op_name == "CONV_2D":  # OHWI -> OIHW, scales on O
        values, axis = values.transpose(0, 3, 1, 2), 0
    elif op_name == "DEPTHWISE_CONV_2D":  # 1HWC -> C1HW, scales on C
        values, axis = values.transpose(3, 0, 1, 2), 0 if axis == 3 else axis
    per = scale.size > 1
    return WeightQuant(
        values=np.ascontiguousarray(values),
        scale=scale if per else scale.reshape(()),
        zero_point=zp if per else zp.reshape(()),
        dtype=_INT_TYPES[t.Type()],
        axis=axis,
        tensor=name,
    )

"""QDQ ONNX models: strip QuantizeLinear/DequantizeLinear into a float graph, keep the numbers.

A QDQ model (onnxruntime ``quantize_static(quant_format=QDQ)``, NNCF, AIMET)
is a float graph with ``QuantizeLinear -> DequantizeLinear`` pairs on
activations and ``DequantizeLinear`` on integer weights and int32 biases.
:func:`strip_qdq` returns

* the float model: every activation pair removed (its consumers read the
  float tensor the pair quantized), every dequantized constant replaced by a
  float32 initializer ``(q - zp) * scale`` (so a float weight is exactly the
  file's integer times its scale);
* the recorded numbers (:class:`~npuc.frontend.source_quant.ActivationQuant`
  per tensor, :class:`~npuc.frontend.source_quant.WeightQuant` per weight)
  by the file's tensor names. When a pair's output is a graph output, the
  float tensor takes the output's name so that the model keeps its interface.

Refused, each naming the node and what to do (UnsupportedError):
the QOperator format (``QLinearConv``, ``ConvInteger``, ...), element types
other than int8/uint8/int16/uint16 (activations) and int8/uint8/int16/int32
(constants) such as int4 or float8, a non-constant scale or zero point, a
quantized tensor read by anything but a DequantizeLinear, and quantized model
inputs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from npuc.core.errors import UnsupportedError
from npuc.frontend.onnx.structure import node_label
from npuc.frontend.source_quant import (
    ActivationQuant,
    SourceGraph,
    SourceQuant,
    WeightQuant,
)

QOPERATOR_OPS = frozenset(
    {
        "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd",
        "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearConcat",
        "QLinearAveragePool", "QLinearGlobalAveragePool", "QGemm", "QLinearSoftmax",
        "QLinearReduceMean", "QLinearWhere", "DynamicQuantizeLinear", "QAttention",
        "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits",
    }
)  # fmt: skip
ACTIVATION_DTYPES = ("int8", "uint8", "int16", "uint16")
CONSTANT_DTYPES = ("int8", "uint8", "int16", "int32")
_HINT_FORMAT = (
    "npuc reads the QDQ format; quantize the float model again with "
    "onnxruntime.quantization.quantize_static(..., quant_format=QuantFormat.QDQ), "
    "or give npuc the float model and calibration data (--calib)"
)
_HINT_TYPE = (
    "the NPU's datapath stores int8/uint8/int16 activations and int8 weights; quantize with "
    "QuantType.QInt8 (or QUInt8/QInt16 activations), or give npuc the float model and --calib"
)


def is_qdq(model: onnx.ModelProto) -> bool:
    """Whether ``model`` has QuantizeLinear/DequantizeLinear nodes or QOperator nodes."""
    ops = {node.op_type for node in model.graph.node}
    return bool(ops & ({"QuantizeLinear", "DequantizeLinear"} | QOPERATOR_OPS))


def _dtype_name(elem_type: int) -> str:
    return str(onnx.TensorProto.DataType.Name(elem_type)).lower()


class _Stripper:
    def __init__(self, model: onnx.ModelProto, where: str) -> None:
        self.model = model
        self.where = where
        graph = model.graph
        self.consts: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.consts[node.output[0]] = node.attribute[0].t
        self.activations: dict[str, ActivationQuant] = {}
        self.dequantized: dict[str, WeightQuant] = {}
        self.notes: list[str] = []

    def fail(self, node: onnx.NodeProto, index: int, what: str, hint: str) -> UnsupportedError:
        return UnsupportedError(
            f"{self.where}: node {node_label(node, index)!r} ({node.op_type}): {what}", hint=hint
        )

    def array(self, name: str, node: onnx.NodeProto, index: int, role: str) -> np.ndarray:
        tensor = self.consts.get(name)
        if tensor is None:
            raise self.fail(
                node,
                index,
                f"its {role} {name!r} is computed at run time, not a constant",
                "npuc maps constant scales and zero points only; fold them into initializers",
            )
        return np.asarray(numpy_helper.to_array(tensor))

    def params(
        self, node: onnx.NodeProto, index: int, data_dtype: str | None
    ) -> tuple[np.ndarray, np.ndarray, str, int | None]:
        """(scale, zero_point, stored dtype, axis or None) of a Q or DQ node."""
        scale = self.array(node.input[1], node, index, "scale").astype(np.float64)
        if len(node.input) > 2 and node.input[2]:
            zp_tensor = self.consts.get(node.input[2])
            zp = self.array(node.input[2], node, index, "zero point")
            dtype = _dtype_name(zp_tensor.data_type) if zp_tensor is not None else "uint8"
        else:
            dtype = data_dtype or _output_dtype(node) or "uint8"
            zp = np.zeros(scale.shape, np.int64)
        if data_dtype is not None and data_dtype != dtype:
            dtype = data_dtype
        for attr in node.attribute:
            if attr.name == "block_size" and attr.i:
                raise self.fail(node, index, "blocked quantization (block_size)", _HINT_TYPE)
        axis = None
        if scale.size > 1:
            axis = 1
            for attr in node.attribute:
                if attr.name == "axis":
                    axis = int(attr.i)
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            bad = scale.reshape(-1)[~(np.isfinite(scale.reshape(-1)) & (scale.reshape(-1) > 0))]
            raise self.fail(
                node,
                index,
                f"scale {node.input[1]!r} holds {bad[0]:g}: scales must be positive and finite",
                "the file's quantization is broken; re-quantize the float model, or give npuc"
                " the float model and --calib",
            )
        return (
            scale.reshape(-1) if axis is not None else scale.reshape(()),
            (
                zp.astype(np.int64).reshape(-1)
                if axis is not None
                else zp.astype(np.int64).reshape(())
            ),
            dtype,
            axis,
        )

    def dequantize_constant(self, node: onnx.NodeProto, index: int) -> onnx.TensorProto:
        """A DequantizeLinear of a constant -> the float32 initializer; records the weight."""
        data = self.consts[node.input[0]]
        dtype = _dtype_name(data.data_type)
        if dtype not in CONSTANT_DTYPES:
            raise self.fail(node, index, f"{dtype} constant {node.input[0]!r}", _HINT_TYPE)
        q = np.asarray(numpy_helper.to_array(data)).astype(np.int64)
        scale, zp, _, axis = self.params(node, index, dtype)
        shape = [1] * q.ndim
        if axis is not None:
            axis = axis % q.ndim
            shape[axis] = q.shape[axis]
        value = ((q - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
        self.dequantized[node.output[0]] = WeightQuant(
            values=q,
            scale=scale,
            zero_point=zp,
            dtype=dtype,
            axis=0 if axis is None else axis,
            tensor=node.input[0],
        )
        return numpy_helper.from_array(value, node.output[0])


def _output_dtype(node: onnx.NodeProto) -> str | None:
    for attr in node.attribute:
        if attr.name == "output_dtype" and attr.i:
            return _dtype_name(attr.i)
    return None


def strip_qdq(model: onnx.ModelProto, where: str) -> tuple[onnx.ModelProto, SourceQuant | None]:
    """The float model and the recorded quantization (module docstring); ``None`` if not QDQ.

    Raises
    ------
    UnsupportedError
        A QDQ form npuc cannot map (module docstring), naming the node.
    """
    graph = model.graph
    for index, node in enumerate(graph.node):
        if node.op_type in QOPERATOR_OPS:
            raise UnsupportedError(
                f"{where}: node {node_label(node, index)!r} ({node.op_type}) is in the "
                "QOperator format (integer operators)",
                hint=_HINT_FORMAT,
            )
    if not is_qdq(model):
        return model, None
    st = _Stripper(model, where)
    graph_inputs = {v.name for v in graph.input}
    graph_outputs = {v.name for v in graph.output}
    producers = {out: (i, n) for i, n in enumerate(graph.node) for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    replace: dict[str, str] = {}  # DQ output -> float tensor it stands for
    rename: dict[str, str] = {}  # float tensor -> graph output name it takes
    new_inits: list[onnx.TensorProto] = []
    drop: set[int] = set()
    for index, node in enumerate(graph.node):
        if node.op_type == "DequantizeLinear" and node.input[0] in st.consts:
            new_inits.append(st.dequantize_constant(node, index))
            drop.add(index)
        elif node.op_type == "DequantizeLinear":
            if node.input[0] in graph_inputs:
                raise st.fail(
                    node,
                    index,
                    f"model input {node.input[0]!r} is already quantized",
                    "npuc takes float model inputs; export the model with float inputs",
                )
            made = producers.get(node.input[0])
            if made is None or made[1].op_type != "QuantizeLinear":
                op = made[1].op_type if made else "nothing"
                raise st.fail(
                    node, index, f"dequantizes {node.input[0]!r}, made by {op}", _HINT_FORMAT
                )
            drop.add(index)
        elif node.op_type == "QuantizeLinear":
            st_quantize(st, node, index, consumers, replace, rename, graph_outputs, new_inits)
            drop.add(index)

    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [n for i, n in enumerate(graph.node) if i not in drop]
    del out.graph.node[:]
    used_consts: set[str] = set()
    for node in kept:
        new = out.graph.node.add()
        new.CopyFrom(node)
        for k, name in enumerate(new.input):
            target = replace.get(name, name)
            new.input[k] = rename.get(target, target)
            used_consts.add(new.input[k])
        for k, name in enumerate(new.output):
            new.output[k] = rename.get(name, name)
    old_inits = [t for t in out.graph.initializer if t.name in used_consts]
    del out.graph.initializer[:]
    out.graph.initializer.extend(old_inits)
    out.graph.initializer.extend(t for t in new_inits if t.name in used_consts)
    del out.graph.value_info[:]
    for value in out.graph.output:
        value.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    activations = {rename.get(k, k): v for k, v in st.activations.items()}
    for float_name, output_name in rename.items():
        if float_name in st.activations:
            activations[float_name] = st.activations[float_name]
            activations[output_name] = st.activations[float_name]
    quant = SourceQuant(
        format="onnx-qdq",
        activations=activations,
        weights=dict(st.dequantized),
        graph=SourceGraph(inputs=(), nodes=(), outputs=()),
        notes=tuple(st.notes),
    )
    return out, quant


def st_quantize(
    st: _Stripper,
    node: onnx.NodeProto,
    index: int,
    consumers: Mapping[str, list[onnx.NodeProto]],
    replace: dict[str, str],
    rename: dict[str, str],
    graph_outputs: set[str],
    new_inits: list[onnx.TensorProto],
) -> None:
    """Record one QuantizeLinear and point its DequantizeLinear readers at its float input."""
    source = node.input[0]
    scale, zp, dtype, axis = st.params(node, index, None)
    users = consumers.get(node.output[0], [])
    if node.output[0] in graph_outputs or any(u.op_type != "DequantizeLinear" for u in users):
        other = next((u for u in users if u.op_type != "DequantizeLinear"), None)
        what = f"read by {other.op_type} {other.name!r}" if other else "a graph output"
        raise st.fail(
            node,
            index,
            f"its quantized tensor {node.output[0]!r} is {what}, not only dequantized",
            "npuc maps QuantizeLinear -> DequantizeLinear pairs; the model's interface and "
            "operators must be float",
        )
    if source in st.consts:
        # Q(constant weight) -> DQ: the weight as the pair leaves it.
        value = np.asarray(numpy_helper.to_array(st.consts[source]), np.float64)
        shape = [1] * value.ndim
        if axis is not None:
            shape[axis % value.ndim] = value.shape[axis % value.ndim]
        lo, hi = _QRANGE.get(dtype, (None, None))
        if lo is None:
            raise st.fail(node, index, f"{dtype} weight {source!r}", _HINT_TYPE)
        q = np.clip(np.rint(value / scale.reshape(shape)) + zp.reshape(shape), lo, hi)
        deq = ((q - zp.reshape(shape)) * scale.reshape(shape)).astype(np.float32)
        for user in users:
            new_inits.append(numpy_helper.from_array(deq, user.output[0]))
            st.dequantized[user.output[0]] = WeightQuant(
                values=q.astype(np.int64),
                scale=scale,
                zero_point=zp,
                dtype=dtype,
                axis=0 if axis is None else axis % value.ndim,
                tensor=source,
            )
        return
    if dtype not in ACTIVATION_DTYPES:
        raise st.fail(node, index, f"{dtype} activation {source!r}", _HINT_TYPE)
    record = ActivationQuant(scale=scale, zero_point=zp, dtype=dtype, axis=axis, node=node.name)
    previous = st.activations.get(source)
    if previous is not None and not _same(previous, record):
        st.notes.append(
            f"tensor {source!r} is quantized twice with different parameters "
            f"(nodes {previous.node!r} and {node.name!r}); npuc uses {node.name!r}'s"
        )
    st.activations[source] = record
    for user in users:
        dq_scale, dq_zp, _, _ = st.params(user, index, dtype)
        if not (np.array_equal(dq_scale, scale) and np.array_equal(dq_zp, zp)):
            raise st.fail(
                user,
                index,
                f"dequantizes {node.output[0]!r} with other parameters than "
                f"{node.name!r} quantized it",
                "a Q/DQ pair must share its scale and zero point",
            )
        replace[user.output[0]] = source
        if user.output[0] in graph_outputs:
            rename[source] = user.output[0]


_QRANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}


def _same(a: ActivationQuant, b: ActivationQuant) -> bool:
    return (
        a.dtype == b.dtype
        and np.array_equal(a.scale, b.scale)
        and np.array_equal(a.zero_point, b.zero_point)
    )

"""Small ONNX graphs and a direct importer for backend and runtime tests.

The backend is tested on its own, so these helpers import with TVM's ONNX
frontend directly and describe the interface by hand instead of going
through ``npuc.frontend`` (the driver and CLI tests cover that path).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import tvm
from onnx import TensorProto, helper, numpy_helper

from npuc.core.model_info import ModelInfo, TensorInfo

_ONNX_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.INT32: "int32"}


def conv_two_outputs(seed: int = 0) -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv(3x3, 8 filters) -> (Relu, Sigmoid): two outputs."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["relu_out"]),
        helper.make_node("Sigmoid", ["c"], ["sigmoid_out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            helper.make_tensor_value_info("relu_out", TensorProto.FLOAT, [1, 8, 8, 8]),
            helper.make_tensor_value_info("sigmoid_out", TensorProto.FLOAT, [1, 8, 8, 8]),
        ],
        [weight, bias],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def two_inputs_int32() -> onnx.ModelProto:
    """a[2,5] int32, b[2,5] int32 -> Mul(Add(a, b), a): an exact integer graph."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Mul", ["s", "a"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_inputs_int32",
        [
            helper.make_tensor_value_info("a", TensorProto.INT32, [2, 5]),
            helper.make_tensor_value_info("b", TensorProto.INT32, [2, 5]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2, 5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _tensor_infos(values: list[onnx.ValueInfoProto]) -> tuple[TensorInfo, ...]:
    infos = []
    for value in values:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value for d in tensor_type.shape.dim)
        infos.append(
            TensorInfo(name=value.name, shape=shape, dtype=_ONNX_DTYPES[tensor_type.elem_type])
        )
    return tuple(infos)


def import_onnx(
    model: onnx.ModelProto, source_path: str = "<memory>"
) -> tuple[tvm.IRModule, ModelInfo]:
    """TVM's ONNX importer plus a hand-made ModelInfo (static shapes only)."""
    from tvm.relax.frontend.onnx import from_onnx

    info = ModelInfo(
        source_path=source_path,
        source_format="onnx",
        source_sha256="0" * 64,
        inputs=_tensor_infos(list(model.graph.input)),
        outputs=_tensor_infos(list(model.graph.output)),
        layout="NCHW",
        opset=17,
    )
    return from_onnx(model), info


def save(model: onnx.ModelProto, folder: Path, name: str) -> Path:
    """Write ``model`` to ``folder/name.onnx``."""
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def conv_dynamic_batch() -> onnx.ModelProto:
    """:func:`conv_two_outputs` with a symbolic batch dimension ``N`` on ``x``."""
    model = conv_two_outputs()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for output in model.graph.output:
        output.type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def unsupported_det() -> onnx.ModelProto:
    """x[3,3] -> Det: an operator npuc does not compile."""
    graph = helper.make_graph(
        [helper.make_node("Det", ["x"], ["y"])],
        "unsupported_det",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

"""QDQ ONNX import (frontend/onnx/qdq.py): Q/DQ stripped into a float graph, numbers kept, and
the QDQ forms npuc cannot map refused naming the node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.core.errors import UnsupportedError
from npuc.frontend import load
from tests.tooling.qdq_models import float_graph, qdq_model, quantize_qdq, samples


def test_strip_keeps_the_files_numbers(tmp_path: Path) -> None:
    _, qdq = qdq_model(tmp_path, "residual")
    imported = load(qdq)
    quant = imported.source_quant
    assert quant is not None and quant.format == "onnx-qdq"
    file = onnx.load(str(qdq))
    inits = {t.name: numpy_helper.to_array(t) for t in file.graph.initializer}
    for node in file.graph.node:
        if node.op_type == "QuantizeLinear":
            got = quant.activations[node.input[0]]
            assert float(got.scale) == float(inits[node.input[1]])
            assert int(got.zero_point) == int(inits[node.input[2]])
            assert got.dtype == "int8" and got.axis is None
    w1 = quant.weights["w1_DequantizeLinear_Output"]
    np.testing.assert_array_equal(w1.values, inits["w1_quantized"].astype(np.int64), strict=True)
    np.testing.assert_array_equal(w1.scale, inits["w1_scale"].astype(np.float64), strict=True)
    assert w1.axis == 0
    # The float graph: no Q/DQ left, the interface unchanged.
    ops = {n.op_type for n in quant.graph.nodes}
    assert not ops & {"QuantizeLinear", "DequantizeLinear"}
    assert quant.graph.inputs == ("x",) and quant.graph.outputs == ("y",)
    assert [t.name for t in imported.info.outputs] == ["y"]
    assert {n.name: n.weight for n in quant.graph.nodes if n.weight}["conv1"] == (
        "w1_DequantizeLinear_Output"
    )


def test_float_model_has_no_source_quant(tmp_path: Path) -> None:
    path = tmp_path / "f.onnx"
    onnx.save(float_graph("residual"), str(path))
    assert load(path).source_quant is None


def test_qoperator_format_is_refused_naming_the_node(tmp_path: Path) -> None:
    from onnxruntime.quantization import QuantFormat

    float_path = tmp_path / "f.onnx"
    onnx.save(float_graph("residual"), str(float_path))
    path = quantize_qdq(
        float_path, tmp_path / "qop.onnx", samples(4), quant_format=QuantFormat.QOperator
    )
    with pytest.raises(UnsupportedError) as err:
        load(path)
    assert "QOperator format" in err.value.message
    assert "QLinearConv" in err.value.message or "QLinear" in err.value.message
    assert "QuantFormat.QDQ" in (err.value.hint or "")


def _dq_weight_model(data_type: int, values: list[int]) -> onnx.ModelProto:
    """x -> Conv(x, DQ(w)) with a 1x1x1x1 weight of ``data_type``."""
    weight = helper.make_tensor("wq", data_type, [1, 1, 1, 1], values)
    scale = numpy_helper.from_array(np.asarray(0.5, np.float32), "ws")
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], name="w_dq"),
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 1, 4, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 1, 4, 4))],
        [weight, scale],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize(
    ("data_type", "name"), [(TensorProto.INT4, "int4"), (TensorProto.FLOAT8E4M3FN, "float8e4m3fn")]
)
def test_unsupported_element_types_are_refused(data_type: int, name: str) -> None:
    with pytest.raises(UnsupportedError) as err:
        load(_dq_weight_model(data_type, [2]))
    assert "'w_dq'" in err.value.message and name in err.value.message
    assert "QuantType.QInt8" in (err.value.hint or "")


def test_quantized_model_input_is_refused() -> None:
    scale = numpy_helper.from_array(np.asarray(0.5, np.float32), "s")
    zp = numpy_helper.from_array(np.asarray(0, np.int8), "zp")
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["x"], name="in_dq"),
            helper.make_node("Relu", ["x"], ["y"], name="relu"),
        ],
        "g",
        [helper.make_tensor_value_info("xq", TensorProto.INT8, (1, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 4))],
        [scale, zp],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedError) as err:
        load(model)
    assert "'in_dq'" in err.value.message and "'xq' is already quantized" in err.value.message

"""Weights and values whose stored type or size is wrong fail with npuc's own error.

Each case is generated here: a small valid model is damaged in one way (raw
data one element too long or too short for several element types, an
unknown element type code on a weight, an input, an output), saved, and
loaded through ``npuc.frontend.load``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from npuc.core.errors import InvalidInputError
from npuc.frontend import load

_TYPES = [np.float32, np.int64, np.int32, np.float16, np.uint8]


def _model(weight: np.ndarray) -> onnx.ModelProto:
    """y = x + w (x fed, w an initializer of ``weight``'s type, cast to float32)."""
    nodes = [
        helper.make_node("Cast", ["w"], ["wf"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Add", ["x", "wf"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize("dtype", _TYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("extra_elements", [-1, 1, 3])
def test_raw_data_size_disagrees_with_dims(
    tmp_path: Path, dtype: type, extra_elements: int
) -> None:
    weight = np.arange(6, dtype=dtype).reshape(2, 3)
    model = _model(weight)
    tensor = model.graph.initializer[0]
    itemsize = np.dtype(dtype).itemsize
    if extra_elements < 0:
        tensor.raw_data = tensor.raw_data[: extra_elements * itemsize]
    else:
        tensor.raw_data = tensor.raw_data + b"\x01" * (extra_elements * itemsize)
    path = _save(model, tmp_path / "m.onnx")
    with pytest.raises(InvalidInputError, match=r"m\.onnx: weight 'w' .* bytes of data but holds"):
        load(path)


def test_typed_field_count_disagrees_with_dims(tmp_path: Path) -> None:
    model = _model(np.zeros((2, 3), dtype=np.float32))
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.float_data.extend([1.0] * 5)
    path = _save(model, tmp_path / "m.onnx")
    with pytest.raises(InvalidInputError, match=r"weight 'w' .* does not fit its dims"):
        load(path)


@pytest.mark.parametrize("code", [99, 1000, 64])
def test_unknown_weight_type(tmp_path: Path, code: int) -> None:
    model = _model(np.zeros((2, 3), dtype=np.float32))
    model.graph.initializer[0].data_type = code
    path = _save(model, tmp_path / "m.onnx")
    with pytest.raises(
        InvalidInputError, match=rf"(weight 'w' has element type code {code}|not a valid ONNX)"
    ):
        load(path)


@pytest.mark.parametrize("where", ["input", "output"])
@pytest.mark.parametrize("code", [99, 1000])
def test_unknown_value_type(tmp_path: Path, where: str, code: int) -> None:
    model = _model(np.zeros((2, 3), dtype=np.float32))
    value = model.graph.input[0] if where == "input" else model.graph.output[0]
    value.type.tensor_type.elem_type = code
    path = _save(model, tmp_path / "m.onnx")
    name = "x" if where == "input" else "y"
    with pytest.raises(
        InvalidInputError,
        match=rf"({where} '{name}' has element type code {code}|not a valid ONNX)",
    ):
        load(path)


def test_valid_weights_still_load(tmp_path: Path) -> None:
    path = _save(_model(np.ones((2, 3), dtype=np.float32)), tmp_path / "m.onnx")
    _, info = load(path)
    assert [t.name for t in info.outputs] == ["y"]

"""The conformance harness itself: input freezing, the verdict rule, the backend API."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tools.conformance.backend import NpucCpuBackend
from tools.conformance.constant_inputs import inputs_to_freeze
from tools.conformance.expectations import ExpectedFailure, judge
from tools.conformance.runner import assert_outputs_match


def _model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    inits: Sequence[onnx.TensorProto] = (),
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _tile_model() -> onnx.ModelProto:
    return _model(
        [helper.make_node("Tile", ["x", "repeats"], ["y"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("repeats", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
    )


def test_shape_input_is_frozen() -> None:
    assert inputs_to_freeze(_tile_model()) == ["repeats"]


def test_input_also_read_as_data_is_not_frozen() -> None:
    model = _model(
        [
            helper.make_node("Tile", ["x", "r"], ["y"]),
            helper.make_node("Cast", ["r"], ["z"], to=TensorProto.FLOAT),
        ],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("r", TensorProto.INT64, [2]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [2]),
        ],
    )
    assert inputs_to_freeze(model) == []


def test_never_freezes_every_input() -> None:
    data = numpy_helper.from_array(np.ones((2, 3), np.float32), "x")
    model = _model(
        [helper.make_node("Tile", ["x", "repeats"], ["y"])],
        [helper.make_tensor_value_info("repeats", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
        inits=[data],
    )
    assert inputs_to_freeze(model) == []


def test_judge() -> None:
    listed = ExpectedFailure(case="c", kind="declined", error="ValueError", reason="axes")
    assert judge("c", None, None).status == "passed"
    assert judge("c", None, listed).status == "FAILED"  # listed but passes: prune
    assert judge("c", ValueError("bad axes"), None).status == "FAILED"  # unlisted failure
    assert judge("c", ValueError("bad axes"), listed).status == "xfail"
    assert judge("c", ValueError("bad pads"), listed).status == "FAILED"  # other reason
    assert judge("c", KeyError("axes"), listed).status == "FAILED"  # other exception


def test_backend_api_runs_npuc() -> None:
    """The standard onnx Backend entry point compiles and runs through npuc."""
    model = _model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
    )
    x = np.linspace(-1.0, 1.0, 6, dtype=np.float32).reshape(2, 3)
    (y,) = NpucCpuBackend.run_model(model, [x])
    np.testing.assert_array_equal(y, np.maximum(x, 0.0), strict=True)


def test_frozen_input_must_be_fed_its_compiled_value() -> None:
    model = _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2])],
    )
    shape = np.array([3, 2], np.int64)
    assert inputs_to_freeze(model) == ["shape"]
    rep = NpucCpuBackend.prepare(model, constants={"shape": shape})
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = rep.run([x, shape])
    np.testing.assert_array_equal(y, x.reshape(3, 2), strict=True)
    with pytest.raises(ValueError, match="compiled as a constant"):
        rep.run([x, np.array([6, 1], np.int64)])


def test_comparison_is_onnx_rule() -> None:
    want = [np.array([1.0, np.nan], np.float32)]
    assert_outputs_match(want, [np.array([1.0005, np.nan], np.float32)], rtol=1e-3, atol=1e-7)
    with pytest.raises(AssertionError, match="dtype"):
        assert_outputs_match(want, [want[0].astype(np.float64)], rtol=1e-3, atol=1e-7)
    with pytest.raises(AssertionError, match="shape"):
        assert_outputs_match(want, [want[0][:1]], rtol=1e-3, atol=1e-7)
    with pytest.raises(AssertionError):
        assert_outputs_match(want, [np.array([1.01, np.nan], np.float32)], rtol=1e-3, atol=1e-7)
    with pytest.raises(AssertionError, match="outputs"):
        assert_outputs_match(want, [], rtol=1e-3, atol=1e-7)

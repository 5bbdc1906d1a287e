"""Bad ONNX inputs fail with one clear npuc error naming the file and the problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.frontend import load
from tests.frontend.onnx_graphs import (
    Case,
    GraphSpec,
    check_against_onnxruntime,
    const,
    make_model,
    random_feeds,
)


def _conv_model() -> onnx.ModelProto:
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    return make_model(GraphSpec([node], {"x": (1, 3, 6, 6)}, {"w": const((4, 3, 3, 3))}))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.onnx"
    with pytest.raises(InvalidInputError, match=r"absent\.onnx does not exist"):
        load(path)


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    with pytest.raises(InvalidInputError, match="is a folder"):
        load(folder)


def test_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 20)
    with pytest.raises(
        InvalidInputError, match=r"notes\.onnx is not (a valid ONNX file|an ONNX model)"
    ):
        load(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(InvalidInputError, match=r"empty\.onnx is not an ONNX model"):
        load(path)


@pytest.mark.parametrize("keep_fraction", [0.3, 0.6, 0.95])
def test_truncated(tmp_path: Path, keep_fraction: float) -> None:
    data = _conv_model().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(InvalidInputError, match=r"cut\.onnx") as info:
        load(path)
    assert info.value.hint


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_conv_model().SerializeToString())
    with pytest.raises(InvalidInputError, match=r"cannot tell the format of .*model\.bin"):
        load(path)


def test_external_data_loads(tmp_path: Path) -> None:
    model = _conv_model()
    path = tmp_path / "ext.onnx"
    onnx.save(
        model,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.weights",
        size_threshold=0,
    )
    assert (tmp_path / "ext.weights").stat().st_size == 4 * 3 * 3 * 3 * 4
    _mod, info = load(path)
    assert info.inputs[0].shape == (1, 3, 6, 6)
    assert info.outputs[0].shape == (1, 4, 6, 6)
    check_against_onnxruntime(Case(onnx.load(path), random_feeds({"x": (1, 3, 6, 6)})))


def test_external_data_missing(tmp_path: Path) -> None:
    path = tmp_path / "ext.onnx"
    onnx.save(
        _conv_model(),
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.weights",
        size_threshold=0,
    )
    (tmp_path / "ext.weights").unlink()
    with pytest.raises(
        InvalidInputError, match=r"external data file 'ext\.weights', which is missing"
    ):
        load(path)


def test_all_unsupported_nodes_listed_at_once() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="ok_relu"),
        helper.make_node("Sin", ["r"], ["s"], name="bad_sin"),
        helper.make_node("Resize", ["s", "", "sc"], ["z"], name="bad_resize", mode="cubic"),
        helper.make_node("TopK", ["z", "k"], ["y", "idx"], name="bad_topk"),
        helper.make_node("MaxPool", ["x"], ["mp", "mpi"], name="bad_pool", kernel_shape=[2, 2]),
    ]
    consts = {"sc": np.array([1, 1, 2, 2], np.float32), "k": np.array([2], np.int64)}
    model = make_model(GraphSpec(nodes, {"x": (1, 2, 4, 4)}, consts, outputs=("y", "mp")))
    with pytest.raises(UnsupportedError) as info:
        load(model)
    message = info.value.message
    assert info.value.exit_code == 4
    for name, op in (
        ("bad_sin", "Sin"),
        ("bad_resize", "Resize"),
        ("bad_topk", "TopK"),
        ("bad_pool", "MaxPool"),
    ):
        assert f"{name} ({op}, opset 18)" in message
    assert "ok_relu" not in message
    assert "mode='cubic' is not supported" in message
    assert "Indices output of MaxPool" in message
    assert "4 node(s)" in message


def test_foreign_domain_and_opset_range() -> None:
    nodes = [helper.make_node("Gelu", ["x"], ["y"], name="ms_gelu", domain="com.microsoft")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", 1, (2, 3))],
        [helper.make_tensor_value_info("y", 1, (2, 3))],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 8
    with pytest.raises(
        UnsupportedError, match=r"ms_gelu \(com\.microsoft\.Gelu.*domain 'com\.microsoft'"
    ):
        load(model)
    node = helper.make_node("Slice", ["x"], ["y"], name="old_slice", starts=[0], ends=[1])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", 1, (2, 3))],
        [helper.make_tensor_value_info("y", 1, (2, 3))],
    )
    older = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    older.ir_version = 8
    with pytest.raises(
        UnsupportedError, match=r"old_slice \(Slice, opset 9\): supported for opsets 10\.\.28"
    ):
        load(older)


def test_model_proto_not_modified() -> None:
    model = _conv_model()
    before = model.SerializeToString()
    load(model)
    assert model.SerializeToString() == before

"""ONNX names -> layer names by structure (midend/quantize/source_names.py), on float models."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from npuc.frontend import load
from npuc.frontend.onnx.prepare import prepare_onnx
from npuc.frontend.onnx.structure import source_graph
from npuc.frontend.source_quant import SourceGraph, SourceQuant
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.source_names import NameMap, map_source_names


def _names(model: onnx.ModelProto) -> NameMap:
    """The map of float ``model``: its layer graph against its cleaned ONNX graph."""
    graph = extract_graph(Pipeline(graph_passes())(load(model).mod))
    empty = SourceQuant(
        format="onnx",
        activations={},
        weights={},
        graph=SourceGraph(inputs=(), nodes=(), outputs=()),
    )
    structure = source_graph(prepare_onnx(model).model, empty).graph
    return map_source_names(graph, structure)


def _model(
    nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], out: tuple[int, ...]
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 3, 8, 8))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _w(name: str, seed: int) -> onnx.TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), name)


def test_branches_clamps_and_identities() -> None:
    """Two convs read x; Relu folds into the first; an Identity is an alias; Concat joins."""
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["ca"], pads=[1, 1, 1, 1], name="conv_a"),
        helper.make_node("Relu", ["ca"], ["ra"], name="relu_a"),
        helper.make_node("Conv", ["x", "wb"], ["cb"], pads=[1, 1, 1, 1], name="conv_b"),
        helper.make_node("Identity", ["cb"], ["ib"], name="id_b"),
        helper.make_node("Sigmoid", ["ib"], ["sb"], name="sig_b"),
        helper.make_node("Concat", ["ra", "sb"], ["y"], axis=1, name="cat"),
    ]
    names = _names(_model(nodes, [_w("wa", 1), _w("wb", 2)], (1, 8, 8, 8)))
    assert names.unmatched == ()
    conv_a, conv_b = names.nodes["conv_a"], names.nodes["conv_b"]
    assert conv_a != conv_b  # told apart by their weights, whatever the layer order
    assert names.layers[conv_a] == ("conv_a", "relu_a")
    assert names.layers[conv_b] == ("conv_b",)
    assert names.tensors["ra"] == conv_a and names.inside["ca"] == conv_a
    assert names.tensors["ib"] == conv_b  # Identity removed by the clean-up: cb is ib
    assert names.nodes["sig_b"].startswith("sigmoid") and names.nodes["cat"] == "concat_0"
    assert names.tensors["x"] == "x" and names.tensors["y"] == "concat_0"


def test_decomposed_operator_maps_piece_by_piece() -> None:
    """HardSigmoid imports as multiply + add with a clamp: both layers map to it, the last
    holds its output; the Mul after it (x * hardsigmoid(x)) matches normally."""
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("HardSigmoid", ["c"], ["h"], name="hsig"),
        helper.make_node("Mul", ["c", "h"], ["y"], name="mul"),
    ]
    names = _names(_model(nodes, [_w("wa", 1)], (1, 4, 8, 8)))
    assert names.unmatched == ()
    pieces = [layer for layer, src in names.layers.items() if src == ("hsig",)]
    assert len(pieces) >= 1
    assert names.tensors["h"] == pieces[-1] and names.nodes["hsig"] == pieces[-1]
    assert names.layers[names.tensors["y"]] == ("mul",)

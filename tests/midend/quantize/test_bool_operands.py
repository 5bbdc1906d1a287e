"""A float CPU layer with a bool operand between integer layers quantizes and runs.

torch.export writes PReLU as ``where(x > 0, x, a * x)``: the ``greater`` mask is
bool, so it gets no scale; the float ``where`` reads it as it is and its output,
read by a convolution, is quantized. (MTCNN's P/R/O-Nets exported to .pt2 failed
with "tensor 'greater_1' has no scale".)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from npuc.frontend import load
from npuc.midend.pipeline import Pipeline, graph_passes
from npuc.midend.quantize.calibrate import calibrate
from npuc.midend.quantize.config import QuantConfig
from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.int_exec import IntegerExecutor
from npuc.midend.quantize.quantize import quantize_model

SHAPE = (1, 3, 12, 12)


def _prelu_as_where() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32), "w2")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    slope = numpy_helper.from_array(np.full((1, 8, 1, 1), 0.25, np.float32), "slope")
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Greater", ["c1", "zero"], ["mask"]),
        helper.make_node("Mul", ["c1", "slope"], ["neg"]),
        helper.make_node("Where", ["mask", "c1", "neg"], ["act"]),
        helper.make_node("Conv", ["act", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "prelu_where",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 4, 12, 12))],
        [w1, w2, zero, slope],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_bool_mask_of_a_float_layer_gets_no_scale() -> None:
    mod, _ = load(_prelu_as_where())
    graph = extract_graph(Pipeline(graph_passes())(mod))
    fx = FloatExecutor(graph)
    rng = np.random.default_rng(1)
    samples = [{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(4)]
    config = QuantConfig()
    observers, seen = calibrate(graph, iter(samples), config, executor=fx)
    qm = quantize_model(graph, observers, config, calibration={"samples": seen})
    bool_tensors = [n.name for n in graph.nodes if not graph.tensor_type(n.name).is_float]
    assert bool_tensors, "the graph should keep a bool mask tensor"
    assert not set(bool_tensors) & set(qm.tensors)
    out = IntegerExecutor(qm).run(samples[0])[graph.outputs[0]]
    want = fx.run(samples[0])[graph.outputs[0]]
    got = out.dequantize() if hasattr(out, "dequantize") else out
    cosine = float(np.sum(got * want) / (np.linalg.norm(got) * np.linalg.norm(want)))
    assert cosine > 0.99, cosine

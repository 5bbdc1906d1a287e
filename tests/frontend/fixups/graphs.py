"""Tiny ONNX graphs with the exporter patterns the fix-ups rewrite, and a runner."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Sequence[int]],
    outputs: Mapping[str, Sequence[int] | None],
    initializers: Mapping[str, np.ndarray] | None = None,
) -> onnx.ModelProto:
    """A checked float32 model; an output shape of None leaves it to inference."""
    graph = helper.make_graph(
        list(nodes),
        "pattern",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs.items()],
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, None if s is None else list(s))
            for n, s in outputs.items()
        ],
        [numpy_helper.from_array(v, n) for n, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def convert_and_run(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """TVM's stock ``from_onnx`` with the feeds' shapes, then build and run on the CPU."""
    from tvm.relax.frontend.onnx import from_onnx

    from tests.tooling.cpu import run_relax_on_cpu

    mod = from_onnx(model, shape_dict={k: list(v.shape) for k, v in feeds.items()})
    return run_relax_on_cpu(mod, feeds)


def reference(model: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """onnxruntime's outputs in graph-output order."""
    from tests.tooling.reference import run_onnxruntime

    return list(run_onnxruntime(model, feeds).values())

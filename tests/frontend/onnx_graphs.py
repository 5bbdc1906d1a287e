"""Builders of tiny ONNX graphs for the frontend tests, and the check against onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


@dataclass(frozen=True)
class Case:
    """One operator-zoo case: a model, its feeds and the tolerances to compare with."""

    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    rtol: float = 1e-4
    atol: float = 1e-5
    input_shapes: dict[str, tuple[int, ...]] | None = None


@dataclass
class GraphSpec:
    """A single-node (or few-node) graph: inputs fed at run time, constants as initializers."""

    nodes: list[onnx.NodeProto]
    inputs: dict[str, tuple[int, ...]]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    outputs: Sequence[str] = ("y",)
    opset: int = 18


def make_model(spec: GraphSpec) -> onnx.ModelProto:
    graph = helper.make_graph(
        spec.nodes,
        "zoo",
        [helper.make_tensor_value_info(n, FLOAT, s) for n, s in spec.inputs.items()],
        [helper.make_tensor_value_info(n, FLOAT, None) for n in spec.outputs],
        initializer=[numpy_helper.from_array(v, n) for n, v in spec.consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", spec.opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def random_feeds(inputs: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs.items()}


def node_case(
    op: str,
    inputs: Mapping[str, tuple[int, ...]],
    *,
    consts: Mapping[str, np.ndarray] | None = None,
    input_order: Sequence[str] | None = None,
    opset: int = 18,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    outputs: Sequence[str] = ("y",),
    feeds: Mapping[str, np.ndarray] | None = None,
    **attrs: Any,
) -> Case:
    """A graph of one ``op`` node over ``inputs`` (fed) and ``consts`` (initializers)."""
    consts = dict(consts or {})
    order = list(input_order) if input_order is not None else [*inputs, *consts]
    node = helper.make_node(op, order, list(outputs), name=f"{op.lower()}_0", **attrs)
    model = make_model(GraphSpec([node], dict(inputs), consts, outputs, opset))
    return Case(model, dict(feeds) if feeds else random_feeds(inputs), rtol, atol)


def const(shape: Sequence[int], seed: int = 1, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def ints(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def check_against_onnxruntime(case: Case) -> None:
    """Import with npuc, run on the CPU, compare every output with onnxruntime."""
    from npuc.frontend import load
    from tests.tooling.cpu import run_relax_on_cpu
    from tests.tooling.reference import run_onnxruntime

    expected = run_onnxruntime(case.model, case.feeds)
    mod, info = load(case.model, case.input_shapes)
    got = run_relax_on_cpu(mod, case.feeds)
    assert [t.name for t in info.outputs] == list(expected)
    assert len(got) == len(expected)
    for out_info, actual, (name, want) in zip(info.outputs, got, expected.items(), strict=True):
        assert tuple(out_info.shape) == want.shape, name
        assert actual.shape == want.shape, name
        np.testing.assert_allclose(actual, want, rtol=case.rtol, atol=case.atol, err_msg=name)

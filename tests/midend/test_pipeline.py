"""The whole midend on an imported ONNX model: fewer ops, same numbers as onnxruntime."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.frontend.onnx import from_onnx

from npuc.midend.pipeline import MidendOptions, Pipeline, graph_passes, optimize
from npuc.midend.verify_well_formed import IllFormedIRError
from tests.tooling.cpu import run_relax_on_cpu
from tests.tooling.reference import run_onnxruntime

CHANNELS = 4
SHAPE = [1, 3, 8, 8]
OUT_SHAPE = [1, CHANNELS, 8, 8]


def _model() -> onnx.ModelProto:
    """Conv(+bias) -> BN -> Relu -> Identity -> no-op Reshape -> Dropout -> Sum -> BN."""
    rng = np.random.default_rng(0)

    def init(name: str, array: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(array.astype(np.float32), name)

    def bn_params(prefix: str) -> list[onnx.TensorProto]:
        return [
            init(f"{prefix}_gamma", rng.uniform(0.5, 1.5, CHANNELS)),
            init(f"{prefix}_beta", rng.standard_normal(CHANNELS)),
            init(f"{prefix}_mean", rng.standard_normal(CHANNELS)),
            init(f"{prefix}_var", rng.uniform(0.5, 1.5, CHANNELS)),
        ]

    def bn(inp: str, prefix: str, out: str) -> onnx.NodeProto:
        names = [f"{prefix}_{p}" for p in ("gamma", "beta", "mean", "var")]
        return helper.make_node("BatchNormalization", [inp, *names], [out], epsilon=1e-3)

    inits = [
        init("w", rng.standard_normal((CHANNELS, 3, 3, 3))),
        init("b", rng.standard_normal(CHANNELS)),
        *bn_params("bn1"),
        *bn_params("bn2"),
        numpy_helper.from_array(np.array(OUT_SHAPE, np.int64), "shape"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        bn("conv", "bn1", "bn1_out"),
        helper.make_node("Relu", ["bn1_out"], ["relu"]),
        helper.make_node("Identity", ["relu"], ["ident"]),
        helper.make_node("Reshape", ["ident", "shape"], ["reshaped"]),
        helper.make_node("Dropout", ["reshaped"], ["dropped"]),
        helper.make_node("Sum", ["dropped", "relu", "ident"], ["summed"]),
        bn("summed", "bn2", "y"),
    ]
    graph = helper.make_graph(
        nodes,
        "midend_pipeline",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, OUT_SHAPE)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return _model()


@pytest.fixture(scope="module")
def imported(model: onnx.ModelProto) -> tvm.IRModule:
    return from_onnx(model, keep_params_in_input=False)


def _op_counts(mod: tvm.IRModule) -> Counter[str]:
    counts: Counter[str] = Counter()
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                counts[value.op.name] += 1
            elif isinstance(value, relax.TupleGetItem):
                counts["TupleGetItem"] += 1
    return counts


def test_graph_passes_shrink_the_imported_graph(imported: tvm.IRModule) -> None:
    before = _op_counts(imported)
    assert before == {
        "relax.nn.conv2d": 1, "relax.reshape": 2, "relax.add": 1, "relax.nn.batch_norm": 2,
        "TupleGetItem": 8, "relax.nn.relu": 1, "relax.nn.dropout": 1,
        "relax.broadcast_to": 3, "relax.stack": 1, "relax.sum": 1,
    }  # fmt: skip
    optimized = Pipeline(graph_passes(), debug=True)(imported)
    # conv + folded BN bias, relu, Sum as two adds, the second BN as x * s + t.
    assert _op_counts(optimized) == {
        "relax.nn.conv2d": 1, "relax.add": 4, "relax.nn.relu": 1, "relax.multiply": 1,
    }  # fmt: skip
    assert sum(_op_counts(optimized).values()) < sum(before.values())
    # The whole graph-level list is idempotent.
    tvm.ir.assert_structural_equal(Pipeline(graph_passes())(optimized), optimized)


def test_optimized_model_matches_onnxruntime(
    model: onnx.ModelProto, imported: tvm.IRModule
) -> None:
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    expected = run_onnxruntime(model, {"x": x})["y"]
    optimized = optimize(imported, MidendOptions(debug=True))
    # A float build runs exactly the graph passes; lowering is the backend's.
    tvm.ir.assert_structural_equal(optimized, Pipeline(graph_passes())(imported))
    (got,) = run_relax_on_cpu(optimized, {"x": x})
    # BN folding reassociates the arithmetic: allow a few fp32 ulps of the output scale.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_debug_mode_names_the_pass_that_broke_the_ir(imported: tvm.IRModule) -> None:
    @tvm.transform.module_pass(opt_level=0, name="BreakIR")
    def break_ir(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        x = mod["main"].params[0]
        undefined = relax.Var("undefined", x.ty)  # returned but never bound
        return tvm.IRModule({"main": relax.Function([x], undefined, x.ty)})

    unchecked = Pipeline([break_ir])(imported)  # without debug: no check, the bad IR comes back
    with pytest.raises(ValueError, match="undefined is not defined"):
        relax.analysis.well_formed(unchecked)
    with pytest.raises(IllFormedIRError, match="after BreakIR"):
        Pipeline([break_ir], debug=True)(imported)

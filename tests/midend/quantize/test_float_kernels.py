"""Float layers as compiled kernels: the same arithmetic as numpy's float executor, built
deterministically, never fusable, and a batch gives the bits of its samples."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir, tirx
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.float_exec import FloatExecutor
from npuc.midend.quantize.float_kernels import (
    OPAQUE_PATTERN,
    SCHEDULED_ATTR,
    FloatKernels,
    build_kernel,
    kernel_param_types,
    source_functions,
)
from npuc.midend.quantize.graph import Graph


def _graph() -> Graph:
    @I.ir_module
    class Net:
        @R.function
        def main(x: R.Tensor((1, 4, 64), "float32")) -> R.Tensor((1, 256), "float32"):
            with R.dataflow():
                a = R.nn.softmax(x, axis=2)
                b = R.sigmoid(x)
                c = R.cumsum(b, axis=2)
                d = R.add(a, c)
                e = R.reshape(d, (1, 256))
                R.output(e)
            return e

    return extract_graph(Net)


def _sample(seed: int, batch: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((batch, 4, 64)) * 4).astype(np.float32)


def test_kernels_compute_what_the_float_executor_computes() -> None:
    graph = _graph()
    assert {"softmax", "unary", "relax", "add", "reshape"} <= {n.op for n in graph.nodes}
    kernels = FloatKernels(graph, [n.name for n in graph.nodes])
    env = FloatExecutor(graph).run({"x": _sample(0)})
    for node in graph.nodes:
        got = kernels.run(node, [env[n] for n in node.inputs])
        if node.op == "reshape":
            assert got is None and not kernels.has_kernel(node.name)
            continue
        assert got.dtype == np.float32, node.name
        # TVM's exp/tanh and summation order against numpy's: float32 rounding apart
        np.testing.assert_allclose(got, env[node.name], rtol=2e-6, atol=1e-6, err_msg=node.name)


def test_a_kernel_is_deterministic_opaque_and_scheduled() -> None:
    graph = _graph()
    node = next(n for n in graph.nodes if n.op == "softmax")
    types = kernel_param_types(graph, node)
    assert types is not None
    first = build_kernel(node, types, source_functions(graph))
    second = build_kernel(node, types, source_functions(graph))
    tvm.ir.assert_structural_equal(first.module, second.module)
    prim_funcs = [f for _, f in first.module.functions_items() if isinstance(f, tirx.PrimFunc)]
    assert prim_funcs
    for func in prim_funcs:
        assert int(func.attrs["op_pattern"]) == OPAQUE_PATTERN
        assert bool(func.attrs[SCHEDULED_ATTR])


def test_a_batch_gives_the_bits_of_each_sample() -> None:
    graph = _graph()
    kernels = FloatKernels(graph, [n.name for n in graph.nodes])
    node = next(n for n in graph.nodes if n.op == "softmax")
    batch = _sample(1, batch=3)
    together = kernels.run(node, [batch])
    apart = np.concatenate([kernels.run(node, [batch[i : i + 1]]) for i in range(3)])
    np.testing.assert_array_equal(together, apart, strict=True)
    assert kernels.run(node, [batch[:, :, :32]]) is None  # not the graph's shape


def _loop_kinds(func: tirx.PrimFunc) -> list[list[tirx.ForKind]]:
    """The loop kinds around each root block, outermost first."""
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    return [[sch.get(loop).kind for loop in sch.get_loops(b)] for b in blocks]


def test_parallel_loops_are_outer_spatial_loops_only() -> None:
    graph = _graph()
    node = next(n for n in graph.nodes if n.op == "softmax")
    shape = (1, 64, 128)  # 8192 rows: worth parallel
    types = [tvm.relax.TensorType(shape, "float32")]
    kernel = build_kernel(node, types, source_functions(graph))
    parallel = tirx.ForKind.PARALLEL
    for gv, func in kernel.module.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        for kinds in _loop_kinds(func):
            assert kinds[0] == parallel, (gv.name_hint, kinds)  # the fused outer loop
            assert kinds[-1] != parallel, (gv.name_hint, kinds)  # reduction or innermost

"""RelaxFallback: relax graph nodes compiled once and run through TVM, also from several threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tvm
from tvm.script import ir as I
from tvm.script import relax as R

from npuc.midend.quantize.extract import extract_graph
from npuc.midend.quantize.relax_fallback import RelaxFallback


def _module() -> tvm.IRModule:
    @I.ir_module
    class Cumsum:
        @R.function
        def main(x: R.Tensor((1, 4, 64), "float32")) -> R.Tensor((1, 4, 64), "float32"):
            with R.dataflow():
                y = R.cumsum(x, axis=2)
                R.output(y)
            return y

    return Cumsum


def test_relax_nodes_run_from_threads_like_one_thread() -> None:
    graph = extract_graph(_module())
    (node,) = [n for n in graph.nodes if n.op == "relax"]
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal((1, 4, 64)).astype(np.float32) for _ in range(200)]
    expected = [np.cumsum(x, axis=2, dtype=np.float32) for x in samples]
    fallback = RelaxFallback(graph)  # shared: the first calls build the VM concurrently
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda x: fallback.run(node, [x]), samples))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-5)

"""The pre-scheduled copy kernels of the integer path: concatenation
(:mod:`npuc.backend.cpu.qlower.concat_kernel`) and 8-bit table lookups
(:func:`npuc.backend.cpu.qlower.lut.make_lookup`).

Layers through the whole lowering equal the integer executor bit for bit;
sizes cross the kernels' internal boundaries (whole vectors and tails, the
parallel-row threshold, several rows, several lookup chunks with a partial one).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower.concat_kernel import PARALLEL_MIN_BYTES, emit_concat
from npuc.backend.cpu.qlower.lut import LOOKUP_CHUNK
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.qparams import QParams

from .harness import Case, assert_cases_exact, ints, node, qparams


def _concat_case(
    rng: np.random.Generator, name: str, shapes: list[tuple[int, ...]], axis: int, dtype: str
) -> Case:
    out = QParams(0.05, 3, dtype)
    inputs = {f"{name}_{i}": (ints(rng, dtype, s), out) for i, s in enumerate(shapes)}
    return Case(
        node=node(name, "concat", tuple(inputs), axis=axis),
        inputs=inputs,
        params={"input_requant": [(1, 0)] * len(shapes)},
        out=out,
    )


def test_concats_across_vector_tail_and_parallel_boundaries_are_bit_exact() -> None:
    rng = np.random.default_rng(40)
    big = int(np.ceil(np.sqrt(PARALLEL_MIN_BYTES))) + 3  # one int8 plane above the threshold
    cases = [
        _concat_case(rng, "wide", [(1, 1, big, big), (1, 2, big, big)], 1, "int8"),
        _concat_case(rng, "tails", [(1, 3, 5, 7), (1, 1, 5, 7), (1, 2, 5, 7)], 1, "uint8"),
        _concat_case(rng, "rows", [(1, 3, 4, 9), (1, 3, 2, 9)], 2, "int16"),
        _concat_case(rng, "last", [(2, 3, 4, 33), (2, 3, 4, 1)], 3, "int8"),
    ]
    assert_cases_exact(cases)


@pytest.mark.parametrize("dtype", ["float32", "int8", "int64"])
def test_emit_concat_equals_numpy_concatenate(dtype: str) -> None:
    rng = np.random.default_rng(41)
    values = [
        (rng.standard_normal(s) * 100).astype(dtype) for s in ((2, 5, 3), (2, 17, 3), (2, 1, 3))
    ]
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(v.shape, dtype)) for i, v in enumerate(values)]
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit_output(emit_concat(bb, params, -2, "t"))
        bb.emit_func_output(y)
    vm = relax.VirtualMachine(compile_module(bb.get(), host_target()), tvm.cpu())
    got = vm["main"](*(tvm.runtime.tensor(v) for v in values)).numpy()
    np.testing.assert_array_equal(got, np.concatenate(values, axis=1), strict=True)


def test_emit_concat_rejects_parts_that_do_not_line_up() -> None:
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType((1, 2, 3), "int8"))
    b = relax.Var("b", relax.TensorType((1, 2, 4), "int8"))
    with bb.function("main", [a, b]):
        with bb.dataflow(), pytest.raises(ValueError, match="do not line up"):
            emit_concat(bb, [a, b], 1, "bad")
        bb.emit_func_output(a)


AVX2 = CpuTarget(cpu_name="haswell", features=("avx", "avx2", "f16c", "fma"), num_cores=2)


@pytest.mark.parametrize(("dtype", "target"), [("int8", None), ("uint8", None), ("int8", AVX2)])
def test_lookups_over_several_chunks_are_bit_exact(dtype: str, target: CpuTarget | None) -> None:
    """Host vectors and an AVX2-only target (its 32-bit gathers; runs here too)."""
    rng = np.random.default_rng(42 if dtype == "int8" else 43)
    side = int(np.ceil(np.sqrt(2.5 * LOOKUP_CHUNK / 3)))  # three chunks, the last partial
    xq = qparams(rng, dtype)
    x = ints(rng, dtype, (1, 3, side, side))
    x.reshape(-1)[:2] = np.iinfo(x.dtype).min, np.iinfo(x.dtype).max
    cases = [
        Case(
            node=node(f"lut_{dtype}_{out}", "unary", (f"lut_{dtype}_{out}_x",), func="sigmoid"),
            inputs={f"lut_{dtype}_{out}_x": (x, xq)},
            params={"lut": ints(rng, "int16", (256,)), "lut_bits": 8},
            out=qparams(rng, out),
        )
        for out in ("int8", "uint8", "int16")
    ]
    assert_cases_exact(cases, target)

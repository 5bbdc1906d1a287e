"""The float kernels' schedule: reductions vectorised over the output's last axis inside
an unchanged reduction order, outer rows in parallel, pure copies inlined."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, s_tir, tirx

from npuc.midend.quantize.float_schedule import schedule_float_kernel


def _prim_funcs(mod: tvm.IRModule) -> dict[str, tirx.PrimFunc]:
    return {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)}


def _legalized(emit, shapes: list[tuple[int, ...]]) -> tvm.IRModule:
    """``emit(*params)`` legalised and fused (what :func:`build_kernel` compiles)."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"p{i}", relax.TensorType(s, "float32")) for i, s in enumerate(shapes)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(emit(*params))
        bb.emit_func_output(out)
    passes = [
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FuseOps(2),
        relax.transform.FuseTIR(),
        relax.transform.DeadCodeElimination(["main"]),
    ]
    return tvm.transform.Sequential(passes)(bb.get())


def _scheduled(mod: tvm.IRModule) -> tvm.IRModule:
    return tvm.IRModule(
        {
            gv: schedule_float_kernel(f) if isinstance(f, tirx.PrimFunc) else f
            for gv, f in mod.functions_items()
        }
    )


def _run(mod: tvm.IRModule, args: list[np.ndarray]) -> np.ndarray:
    vm = relax.VirtualMachine(tvm.compile(mod, "llvm"), tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()


def _loops(func: tirx.PrimFunc, block: str) -> list[tuple[int, tirx.ForKind]]:
    sch = s_tir.Schedule(func)
    return [(int(sch.get(lp).extent), sch.get(lp).kind) for lp in sch.get_loops(block)]


def _conv(x: relax.Expr, w: relax.Expr) -> relax.Expr:
    return relax.op.nn.conv2d(x, w, padding=(1, 1, 1, 1))


def test_a_convolution_runs_vectors_of_output_columns_in_parallel_rows() -> None:
    shapes = [(1, 3, 32, 24), (8, 3, 3, 3)]
    mod = _legalized(_conv, shapes)
    (func,) = _prim_funcs(_scheduled(mod)).values()
    parallel, vector = tirx.ForKind.PARALLEL, tirx.ForKind.VECTORIZED
    update = _loops(func, "conv2d_nchw_update")
    serial = tirx.ForKind.SERIAL
    # (n, c / 4, h) fused in parallel, 24 columns as 3 vectors of 8, then rc, ry, rx, then
    # 4 output channels (unrolled: they share each input vector), then the lanes
    assert update == [
        (2 * 32, parallel),
        (3, serial),
        (3, serial),
        (3, serial),
        (3, serial),
        (4, tirx.ForKind.UNROLLED),
        (8, vector),
    ]
    assert _loops(func, "conv2d_nchw_init")[-2:] == [(4, tirx.ForKind.UNROLLED), (8, vector)]
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    # the same terms in the same order per output element: float32 rounding of FMAs apart
    np.testing.assert_allclose(_run(_scheduled(mod), args), _run(mod, args), rtol=1e-5, atol=1e-5)


def test_columns_no_lane_count_divides_stay_scalar_rows_still_parallel() -> None:
    shapes = [(1, 3, 64, 7), (8, 3, 3, 3)]
    (func,) = _prim_funcs(_scheduled(_legalized(_conv, shapes))).values()
    kinds = [kind for _, kind in _loops(func, "conv2d_nchw")]
    assert kinds[0] == tirx.ForKind.PARALLEL
    assert tirx.ForKind.VECTORIZED not in kinds


def test_a_matmul_vectorises_its_output_columns() -> None:
    shapes = [(64, 32), (32, 48)]
    (func,) = _prim_funcs(_scheduled(_legalized(relax.op.matmul, shapes))).values()
    # 4 rows at a time share each vector of the right-hand side's row
    assert _loops(func, "matmul_update") == [
        (16, tirx.ForKind.PARALLEL),
        (3, tirx.ForKind.SERIAL),
        (32, tirx.ForKind.SERIAL),
        (4, tirx.ForKind.UNROLLED),
        (16, tirx.ForKind.VECTORIZED),
    ]


def test_reshape_and_transpose_copies_are_inlined() -> None:
    def depth_to_space(x: relax.Expr) -> relax.Expr:
        y = relax.op.reshape(x, (1, 2, 2, 2, 8, 16))
        y = relax.op.permute_dims(y, (0, 1, 4, 2, 5, 3))
        return relax.op.reshape(y, (1, 2, 16, 32))

    mod = _legalized(depth_to_space, [(1, 8, 8, 16)])
    (func,) = _prim_funcs(_scheduled(mod)).values()
    sch = s_tir.Schedule(func)
    assert len(sch.get_child_blocks(sch.get_sblock("root"))) == 1  # one pass over memory
    x = np.random.default_rng(1).standard_normal((1, 8, 8, 16)).astype(np.float32)
    np.testing.assert_array_equal(_run(_scheduled(mod), [x]), _run(mod, [x]), strict=True)

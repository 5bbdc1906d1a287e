"""The fallback rule recognises table lookups (reads at data-dependent positions) and keeps
them scalar but parallel; the results equal numpy's on this machine and on AVX2."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax, s_tir

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedules.fallback import FallbackRule, is_gather
from npuc.backend.cpu.schedules.loops import root_blocks
from npuc.core.target import CpuTarget, host_target

AVX2 = CpuTarget(cpu_name="haswell", features=("avx", "avx2", "fma"), num_cores=2)


def _lookup_module(shape: tuple[int, ...], table: np.ndarray) -> tvm.IRModule:
    """``main(x int8) -> (take(table, x, mode=wrap), x + 1)``: a gather and an element-wise op."""
    x = relax.Var("x", relax.TensorType(shape, "int8"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            looked = bb.emit(relax.op.take(relax.const(table, "int8"), x, axis=0, mode="wrap"))
            plus = bb.emit(relax.op.add(x, relax.const(np.int8(1), "int8")))
            out = bb.emit_output(relax.Tuple([looked, plus]))
        bb.emit_func_output(out)
    return bb.get()


def test_take_is_a_gather_and_an_add_is_not() -> None:
    table = np.arange(256, dtype=np.int64).astype(np.int8)
    fused = tvm.transform.Sequential(fusion_passes(host_target()))(
        _lookup_module((1, 4, 8, 8), table)
    )
    kinds = {}
    for gvar, func in fused.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            sch = s_tir.Schedule(func)
            kinds[gvar.name_hint] = [is_gather(sch, b) for b in root_blocks(sch)]
            assert FallbackRule().apply(func, host_target()) is not None
    assert any(all(k) for name, k in kinds.items() if "take" in name)
    assert all(not any(k) for name, k in kinds.items() if "take" not in name)


@pytest.mark.parametrize("target", [None, AVX2], ids=["host", "avx2"])
def test_scheduled_lookup_equals_numpy(target: CpuTarget | None) -> None:
    rng = np.random.default_rng(5)
    table = rng.integers(-128, 128, 256).astype(np.int8)
    x = rng.integers(-128, 128, (1, 8, 33, 65)).astype(np.int8)
    vm = relax.VirtualMachine(
        compile_module(_lookup_module(x.shape, table), target or host_target()), tvm.cpu()
    )
    looked, plus = vm["main"](tvm.runtime.tensor(x))
    np.testing.assert_array_equal(looked.numpy(), table[x.astype(np.int64) % 256], strict=True)
    np.testing.assert_array_equal(plus.numpy(), x + np.int8(1), strict=True)

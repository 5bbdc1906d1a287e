"""backend/cpu/fold_ubsw_prepare.py: the numpy preparation equals the TIR block's, element
for element, and the pass turns the block's calls on constants into constants.

The TIR block (:func:`~npuc.backend.cpu.schedules.int8_ubsw.make_prepare`) is compiled
and run on the weights as a model input (nothing folded), for layers with declining and
fitting tiles, lists of several lengths, stride 2 and dilation 2; its ``P`` must equal
:func:`~npuc.backend.cpu.schedules.int8_ubsw.prepare_numpy`'s (``assert_array_equal``,
strict). The exactness of whole kernels built through the pass is
``tests/backend/cpu/schedules/test_int8_ubsw.py``'s.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import tirx as T

from npuc.backend.cpu.fold_ubsw_prepare import FoldUbswPrepare, prepare_spec
from npuc.backend.cpu.qlower.int8_conv import pack_constants, plan_conv
from npuc.backend.cpu.schedules import int8_ubsw
from npuc.backend.cpu.schedules.int8_spec import ConvKernelSpec
from npuc.midend.quantize.qparams import QParams

from .schedules.test_int8_avx2 import OUT
from .schedules.test_int8_ubsw import _boundary_weights, _conv, _extreme_input, _real_like


def _layers() -> list[tuple[ConvKernelSpec, np.ndarray]]:
    rng = np.random.default_rng(2)
    s8 = QParams(0.05, -128, "int8")
    mixed = _boundary_weights(rng, 16, 40, 3)
    mixed[4:8] = 127  # a declining tile
    mixed[9, :, 0, :] = 127  # a long list within its tile's pool
    cases = [
        _conv("mixed", mixed, _extreme_input(rng, s8, (1, 40, 12, 12)), s8),
        _conv("s2", _real_like(rng, 24, 24, 3), _extreme_input(rng, s8, (1, 24, 15, 16)), s8, 2),
        _conv(
            "bnd1", _boundary_weights(rng, 12, 64, 1), _extreme_input(rng, s8, (1, 64, 7, 7)), s8
        ),
    ]
    out = []
    for case in cases:
        ((x, xq),) = case.inputs.values()
        spec = plan_conv(case.node, case.params, x.shape, xq, OUT)
        assert spec is not None and int8_ubsw.applies(spec)
        out.append((spec, pack_constants(spec, case.params)[0]))
    # dilation 2 (the spec's geometry only: the preparation reads no input)
    spec, w = out[1]
    out.append((ConvKernelSpec.from_attr({**spec.to_attr(), "dil_h": 2, "dil_w": 2}), w))
    return out


def _prepare_module(spec: ConvKernelSpec, w: np.ndarray) -> tuple[tvm.IRModule, tuple]:
    prepare = int8_ubsw.make_prepare(spec)
    p_shape = (int8_ubsw.layout(spec)[2], spec.kh * spec.kw, spec.cg)

    @T.prim_func(private=True, s_tir=True)
    def func(W: T.Buffer(w.shape, "int32"), P: T.Buffer(p_shape, "int32")) -> None:
        prepare(W, P)

    bb = relax.BlockBuilder()
    x = relax.Var("w", relax.TensorType(w.shape, "int32"))
    with bb.function("main", [x]):
        gvar = bb.add_func(func, "prepare")
        out = bb.emit(relax.call_tir(gvar, (x,), relax.TensorType(p_shape, "int32")))
        bb.emit_func_output(out)
    return bb.get(), p_shape


@pytest.mark.parametrize("index", range(4))
def test_numpy_preparation_equals_the_tir_block(index: int) -> None:
    spec, w = _layers()[index]
    mod, _ = _prepare_module(spec, w)
    assert prepare_spec(mod["prepare"]) == spec
    vm = relax.VirtualMachine(relax.build(mod, "llvm"), tvm.cpu())
    expected = vm["main"](tvm.runtime.tensor(w)).numpy()
    got = int8_ubsw.prepare_numpy(spec, w)
    np.testing.assert_array_equal(got, expected, strict=True)
    if index == 0:  # the mixed layer really has both tile forms
        counts = int8_ubsw.layout(spec)[0]
        per_row = got.reshape(-1)[counts + 1 : counts + 2 * spec.ocp : 2]
        assert (per_row == -1).any() and (per_row > 0).any()


def test_pass_folds_calls_on_constants_only() -> None:
    spec, w = _layers()[1]
    mod, p_shape = _prepare_module(spec, w)
    gvar = mod.get_global_var("prepare")
    bb = relax.BlockBuilder()
    x = relax.Var("w", relax.TensorType(w.shape, "int32"))
    with bb.function("main", [x]):
        on_const = bb.emit(
            relax.call_tir(gvar, (relax.const(w),), relax.TensorType(p_shape, "int32"))
        )
        on_input = bb.emit(relax.call_tir(gvar, (x,), relax.TensorType(p_shape, "int32")))
        bb.emit_func_output(relax.Tuple([on_const, on_input]))
    two = bb.get()
    two["prepare"] = mod["prepare"]
    folded = FoldUbswPrepare()(two)
    text = folded["main"].script()
    assert text.count("call_tir") == 1, text
    folded = relax.transform.DeadCodeElimination()(folded)
    vm = relax.VirtualMachine(relax.build(folded, "llvm"), tvm.cpu())
    const_p, input_p = vm["main"](tvm.runtime.tensor(w))
    np.testing.assert_array_equal(const_p.numpy(), input_p.numpy(), strict=True)

"""The compact weight passes (int8 + scale, float16) and the load-time lift, on small graphs.

A weight-int8 library must compute exactly what the float library computes with
the dequantized weights ``q * s`` (the dequantization moved to load time, the
kernels unchanged): compared with rtol/atol 1e-5 (same kernels, same order of
summation; only the weight values' rounding to float32 differs).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu import compile_module, host_target
from npuc.backend.cpu.lift_weight_transforms import LiftWeightTransforms
from npuc.backend.cpu.lowering import fusion_passes, schedule_passes, weight_passes
from npuc.backend.cpu.prepack_weights import PrepackWeights
from npuc.backend.cpu.quantize_weights_int8 import QuantizeWeightsInt8, quantize_per_channel
from npuc.backend.cpu.store_weights_fp16 import StoreWeightsFp16
from npuc.backend.cpu.weight_storage import STORED_WEIGHTS_FUNC, TRANSFORM_FUNC

RNG = np.random.default_rng(3)
CONV_W = (RNG.standard_normal((16, 8, 3, 3)) * 0.2).astype(np.float32)  # 1152 elements
CONV_W[5] = 0.0  # an all-zero output channel: scale 1, q 0
FC_W = RNG.standard_normal((16, 80)).astype(np.float32)  # 1280 elements
SMALL_W = RNG.standard_normal((4, 8, 1, 1)).astype(np.float32)  # 32 elements: stays float


def _module(conv_w: np.ndarray = CONV_W, fc_w: np.ndarray = FC_W) -> tvm.IRModule:
    """x[1,8,12,12] -> conv(w) + conv(w) (one shared weight) -> relu -> mean -> matmul(fc_w),
    plus a 1x1 conv with a small weight: two outputs."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 12, 12), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            shared = relax.const(conv_w)
            a = bb.emit(relax.op.nn.conv2d(x, shared, padding=1))
            b = bb.emit(relax.op.nn.conv2d(x, shared, padding=1))
            r = bb.emit(relax.op.nn.relu(relax.op.add(a, b)))
            m = bb.emit(relax.op.mean(r, axis=[2, 3]))
            y = bb.emit(relax.op.matmul(m, relax.const(fc_w)))
            s = bb.emit(relax.op.nn.conv2d(x, relax.const(SMALL_W)))
            out = bb.emit_output(relax.Tuple([y, s]))
        bb.emit_func_output(out)
    return bb.get()


def _dequantized(weight: np.ndarray, axis: int) -> np.ndarray:
    q, scale = quantize_per_channel(weight, axis)
    return q.astype(np.float32) * scale


def _stored(mod: tvm.IRModule) -> list[np.ndarray]:
    body = mod[STORED_WEIGHTS_FUNC].body
    result = body.body if isinstance(body, relax.SeqExpr) else body
    return [field.value.numpy() for field in result.fields]


def _run(executable: tvm.runtime.Executable, x: np.ndarray) -> list[np.ndarray]:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    weights = list(vm[TRANSFORM_FUNC]()) if vm.module.implements_function(TRANSFORM_FUNC) else []
    out = vm["main"](tvm.runtime.tensor(x), *weights)
    return [field.numpy() for field in out]


def test_quantize_per_channel_is_symmetric_and_within_half_a_step() -> None:
    q, scale = quantize_per_channel(CONV_W, 0)
    assert q.dtype == np.int8 and scale.shape == (16, 1, 1, 1) and scale.dtype == np.float32
    assert int(q.min()) >= -127 and int(q.max()) <= 127
    assert (np.abs(q).reshape(16, -1).max(axis=1)[np.arange(16) != 5] == 127).all()
    assert scale[5, 0, 0, 0] == 1.0 and not q[5].any()
    assert (np.abs(q * scale - CONV_W) <= scale / 2 * (1 + 1e-6)).all()


def test_int8_pass_makes_the_large_weights_int8_parameters() -> None:
    mod = QuantizeWeightsInt8()(_module())
    main = mod["main"]
    # The shared conv weight is stored once; the 32-element weight stays a float32 constant.
    assert [str(p.ty.dtype) for p in main.params] == ["float32", "int8", "int8"]
    assert int(main.attrs["num_input"]) == 1
    stored = _stored(mod)
    np.testing.assert_array_equal(stored[0], quantize_per_channel(CONV_W, 0)[0], strict=True)
    np.testing.assert_array_equal(stored[1], quantize_per_channel(FC_W, 1)[0], strict=True)


def test_fp16_pass_stores_float16_and_keeps_weights_it_cannot_hold() -> None:
    mod = StoreWeightsFp16()(_module())
    assert [str(p.ty.dtype) for p in mod["main"].params] == ["float32", "float16", "float16"]
    np.testing.assert_array_equal(_stored(mod)[0], CONV_W.astype(np.float16), strict=True)
    huge = FC_W * 1e5  # beyond float16's 65504: stays float32
    mod = StoreWeightsFp16()(_module(fc_w=huge))
    assert [str(p.ty.dtype) for p in mod["main"].params] == ["float32", "float16"]


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_int8_pass_keeps_weights_holding_inf_or_nan_float(bad: float) -> None:
    fc_w = FC_W.copy()
    fc_w[3, 7] = bad  # inf/nan has no int8 code: the weight stays float32 as given
    mod = QuantizeWeightsInt8()(_module(fc_w=fc_w))
    assert [str(p.ty.dtype) for p in mod["main"].params] == ["float32", "int8"]


@pytest.mark.parametrize("mode", [QuantizeWeightsInt8, StoreWeightsFp16])
def test_passes_are_idempotent_and_skip_small_weights(mode: type) -> None:
    once = mode()(_module())
    tvm.ir.assert_structural_equal(mode()(once), once)
    small_only = _module()
    tvm.ir.assert_structural_equal(mode(min_elements=10_000)(small_only), small_only)


def test_lift_leaves_a_float_module_alone() -> None:
    mod = _module()
    tvm.ir.assert_structural_equal(LiftWeightTransforms()(mod), mod)


@pytest.mark.parametrize("precision", ["weight-int8", "fp16-weights"])
def test_lift_leaves_main_only_float_weights(precision: str) -> None:
    target = host_target(num_cores=1)
    passes = weight_passes(precision) + fusion_passes(target) + schedule_passes(target)
    mod = tvm.transform.Sequential([*passes, PrepackWeights(), LiftWeightTransforms()])(_module())
    names = {gvar.name_hint for gvar in mod.get_global_vars()}
    assert STORED_WEIGHTS_FUNC not in names and TRANSFORM_FUNC in names
    assert len(mod[TRANSFORM_FUNC].params) == 0
    main = mod["main"]
    weights = list(main.params)[int(main.attrs["num_input"]) :]
    # Float32 weights only: the shared conv weight once per conv (stored once, made float
    # at load for each use), the matmul weight.
    assert len(weights) == 3 and all(str(w.ty.dtype) == "float32" for w in weights)
    assert "int8" not in main.script() and "float16" not in main.script()


def test_weight_passes_refuse_an_unknown_precision() -> None:
    with pytest.raises(ValueError, match="not one of float, weight-int8, fp16-weights"):
        weight_passes("int4")


@pytest.mark.parametrize(
    ("precision", "conv_w", "fc_w"),
    [
        (
            "weight-int8",
            _dequantized(CONV_W, 0),
            _dequantized(FC_W, 1),
        ),
        ("fp16-weights", CONV_W.astype(np.float16), FC_W.astype(np.float16)),
    ],
)
def test_library_equals_the_float_library_on_the_stored_weights(
    precision: str, conv_w: np.ndarray, fc_w: np.ndarray
) -> None:
    target = host_target(num_cores=1)
    compact = compile_module(_module(), target, precision=precision)
    vm = relax.VirtualMachine(compact, tvm.cpu())
    assert vm.module.implements_function(TRANSFORM_FUNC)
    reference = compile_module(
        _module(conv_w.astype(np.float32), fc_w.astype(np.float32)), target, precision="float"
    )
    x = RNG.standard_normal((1, 8, 12, 12)).astype(np.float32)
    for got, want in zip(_run(compact, x), _run(reference, x), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

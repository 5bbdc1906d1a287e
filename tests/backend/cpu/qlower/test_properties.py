"""Property tests of the integer building blocks, compiled once and fed many drawn inputs.

- requantization (``rshift_round(v * M, s) + zp``, clamp, store) matches the
  integer reference over the whole int32 range of ``v``, for multipliers and
  shifts at the ends of their fields;
- quantize at a float -> integer boundary matches ``QParams.quantize``
  (round half to even, saturate), ties and huge values included; dequantize
  matches ``QParams.dequantize`` as float32.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tvm import relax

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.qlower.intops import dequantize, quantize, requant
from npuc.core.intref.arith import clamp_activation, rshift_round
from npuc.core.target import host_target
from npuc.midend.quantize.qparams import QParams

N = 64
# (multiplier, post_shift, ofm_zp, (act_min, act_max), dtype)
REQUANTS = (
    (32767, 0, 0, (-128, 127), "int8"),
    (32767, 46, 5, (-32768, 32767), "int16"),
    (1, 1, -3, (-100, 90), "int8"),
    (12345, 20, 17, (0, 255), "uint8"),
    (0, 7, 9, (-128, 127), "int8"),
    (32767, 31, -32768, (-32768, 32767), "int16"),
)
QPARAMS = (QParams(0.25, -3, "int8"), QParams(0.0078125, 128, "uint8"), QParams(3e-4, 7, "int16"))


def _vm(build: Any) -> Any:
    bb = relax.BlockBuilder()
    build(bb)
    return relax.VirtualMachine(compile_module(bb.get(), host_target()), tvm.cpu())


@functools.cache
def requant_vm() -> Any:
    def build(bb: relax.BlockBuilder) -> None:
        v = relax.Var("v", relax.TensorType((N,), "int64"))
        with bb.function("main", [v]):
            with bb.dataflow():
                outs = [bb.emit(requant(v, m, s, zp, b, d)) for m, s, zp, b, d in REQUANTS]
                result = bb.emit_output(relax.Tuple(outs))
            bb.emit_func_output(result)

    return _vm(build)


@functools.cache
def boundary_vm() -> Any:
    def build(bb: relax.BlockBuilder) -> None:
        x = relax.Var("x", relax.TensorType((N,), "float32"))
        with bb.function("main", [x]):
            with bb.dataflow():
                outs = []
                for q in QPARAMS:
                    stored = bb.emit(quantize(x, q))
                    outs += [stored, bb.emit(dequantize(stored, q))]
                result = bb.emit_output(relax.Tuple(outs))
            bb.emit_func_output(result)

    return _vm(build)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.int64, N, elements=st.integers(-(2**31), 2**31 - 1)))
def test_requant_matches_the_reference_over_int32(v: np.ndarray) -> None:
    got = requant_vm()["main"](tvm.runtime.tensor(v))
    for out, (m, s, zp, (lo, hi), dtype) in zip(got, REQUANTS, strict=True):
        want = clamp_activation(rshift_round(v * m, s) + zp, lo, hi, dtype)
        np.testing.assert_array_equal(out.numpy(), want.astype(dtype), strict=True)


_STEPS = st.integers(-(2**17), 2**17).map(lambda k: k / 2)  # integers and exact ties
_HUGE = st.floats(-1e30, 1e30, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(_STEPS, _HUGE), min_size=N, max_size=N), st.sampled_from((0, 1, 2)))
def test_quantize_and_dequantize_match_qparams(values: list[float], which: int) -> None:
    q = QPARAMS[which]
    x = (np.asarray(values, np.float64) * q.scale).astype(np.float32)
    got = boundary_vm()["main"](tvm.runtime.tensor(x))
    stored, real = got[2 * which].numpy(), got[2 * which + 1].numpy()
    np.testing.assert_array_equal(stored, q.quantize(x), strict=True)
    np.testing.assert_array_equal(real, q.dequantize(q.quantize(x)).astype(np.float32), strict=True)

"""schedules/tir_macro.py: kernels built with its ``macro`` equal those ``T.macro`` builds.

Every int8 kernel family (each dot kind with and without the ``vpmaddubsw`` form, a
strided and a matrix-vector layer) is built twice, once with
:func:`~npuc.backend.cpu.schedules.tir_macro.macro` (the modules' own) and once with
the modules' ``macro`` replaced by ``T.macro``; the PrimFuncs must be structurally
equal (``tvm.ir.assert_structural_equal``, names included).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm.script import tirx as T

from npuc.backend.cpu.qlower.int8_conv import plan_conv
from npuc.backend.cpu.schedules import (
    int8_amx,
    int8_avx2,
    int8_epilogue,
    int8_kernel,
    int8_matvec,
    int8_pack,
    int8_ubsw,
)
from npuc.backend.cpu.schedules.int8_spec import DOT_KINDS
from npuc.midend.quantize.qparams import QParams

from ..qlower.harness import Case
from .test_int8_avx2 import OUT
from .test_int8_ubsw import _conv, _extreme_input, _real_like

MODULES = (int8_amx, int8_avx2, int8_epilogue, int8_kernel, int8_matvec, int8_pack, int8_ubsw)


def _specs() -> list:
    rng = np.random.default_rng(5)
    s8 = QParams(0.05, -128, "int8")
    cases: list[Case] = [
        _conv("c3", _real_like(rng, 12, 24, 3), _extreme_input(rng, s8, (1, 24, 9, 10)), s8),
        _conv("s2", _real_like(rng, 8, 16, 3), _extreme_input(rng, s8, (1, 16, 11, 12)), s8, 2),
        _conv("dense", _real_like(rng, 16, 64, 1), _extreme_input(rng, s8, (1, 64, 1, 1)), s8),
    ]
    specs = []
    for case in cases:
        ((x, xq),) = case.inputs.values()
        spec = plan_conv(case.node, case.params, x.shape, xq, OUT)
        assert spec is not None, case.node.name
        specs.append(spec)
    return specs


@pytest.mark.parametrize("kind", sorted(DOT_KINDS))
def test_kernels_equal_those_of_t_macro(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = _specs()
    ours = [int8_kernel.make_kernel(s, DOT_KINDS[kind]) for s in specs]
    for module in MODULES:
        monkeypatch.setattr(module, "macro", T.macro)
    stock = [int8_kernel.make_kernel(s, DOT_KINDS[kind]) for s in specs]
    for a, b in zip(ours, stock, strict=True):
        tvm.ir.assert_structural_equal(a, b, map_free_vars=False)

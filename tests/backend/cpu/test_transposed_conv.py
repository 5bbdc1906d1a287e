"""The direct transposed-convolution lowering equals TVM's stock one (float32, NCHW/IOHW)."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from tvm import relax

from npuc.backend.cpu.legalize_ops import LegalizeOps
from npuc.backend.cpu.lowering import fusion_passes, schedule_passes
from npuc.backend.cpu.schedule_pass import ScheduleReport
from npuc.core.target import host_target

#: (C, O, H, W, kernel, stride, padding (t, l, b, r), output padding, groups)
CASES = [
    (4, 3, 5, 8, 2, 2, (0, 0, 0, 0), (0, 0), 1),  # PP-OCR det upsampling: scheduling rule
    (3, 2, 3, 16, 3, 3, (0, 0, 0, 0), (0, 0), 1),  # stride 3: scheduling rule
    (4, 3, 5, 7, 2, 2, (0, 0, 0, 0), (0, 0), 1),  # odd width: fallback schedule
    (3, 5, 4, 6, 4, 2, (1, 1, 1, 1), (0, 0), 1),  # two taps per dimension
    (2, 3, 5, 4, 2, 2, (0, 1, 1, 0), (1, 1), 1),  # asymmetric, output padding: bounds checks
    (3, 2, 4, 5, 3, 2, (1, 1, 1, 1), (1, 1), 1),  # 3 % 2 != 0: stock kernel
    (4, 4, 4, 4, 2, 2, (0, 0, 0, 0), (0, 0), 2),  # groups: stock kernel
]


def _module(c: int, o: int, h: int, w: int, k: int, s: int, pad: tuple, opad: tuple, g: int):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, c, h, w), "float32"))
    wt = relax.Var("w", relax.TensorType((c, o // g, k, k), "float32"))
    with bb.function("main", [x, wt]):
        with bb.dataflow():
            y = bb.emit(
                relax.op.nn.conv2d_transpose(
                    x, wt, strides=s, padding=pad, output_padding=opad, groups=g
                )
            )
            z = bb.emit(relax.op.sigmoid(relax.op.add(y, relax.const(0.5, "float32"))))
            out = bb.emit_output(z)
        bb.emit_func_output(out)
    return bb.get()


def _run(mod: tvm.IRModule, args: list[np.ndarray]) -> np.ndarray:
    exe = tvm.compile(mod, "llvm")
    vm = relax.VirtualMachine(exe, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"k{c[4]}s{c[5]}p{c[6]}op{c[7]}g{c[8]}")
def test_direct_lowering_matches_stock(case: tuple) -> None:
    c, o, h, w, k, _s, _pad, _opad, g = case
    mod = _module(*case)
    rng = np.random.default_rng(0)
    args = [
        rng.standard_normal((1, c, h, w)).astype(np.float32),
        rng.standard_normal((c, o // g, k, k)).astype(np.float32),
    ]
    stock = _run(relax.transform.LegalizeOps()(mod), args)
    target = host_target(num_cores=1)
    report = ScheduleReport()
    passes = fusion_passes(target) + schedule_passes(target, report)
    ours = _run(tvm.transform.Sequential(passes)(mod), args)
    assert ours.shape == stock.shape
    np.testing.assert_allclose(ours, stock, rtol=1e-5, atol=1e-5)
    upsampling = case[6] == (0, 0, 0, 0) and case[7] == (0, 0) and g == 1 and w % 4 == 0
    assert ("conv2d_transpose" in report.counts()) == (upsampling and k == case[5])


def test_direct_kernel_replaces_the_dilated_copies() -> None:
    legal = LegalizeOps()(_module(*CASES[0]))
    script = "\n".join(
        f.script() for f in legal.functions.values() if isinstance(f, tvm.tirx.PrimFunc)
    )
    assert "data_dilate" not in script and "data_pad" not in script
    assert 'T.sblock("conv2d_transpose")' in script

"""Grouped convolutions (1 < groups, not depthwise) through the int8 kernels, one call per
group, equal the integer executor bit for bit; ineligible ones keep the generic path."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tvm import relax

from npuc.backend.cpu.qlower.int8_grouped import emit_int8_grouped_conv
from npuc.core.target import host_target

from .harness import DTYPES, Case, assert_cases_exact, ints, node, qparams
from .test_conv import _out_stage


def grouped_case(rng: np.random.Generator, index: int) -> Case:
    """A random grouped conv2d: 2-4 groups of 2-7 input channels (not multiples of 4
    too), 1-6 output channels each."""
    groups = int(rng.integers(2, 5))
    cin_g, cout_g = int(rng.integers(1, 8)), int(rng.integers(1, 7))
    cin_g = max(cin_g, 2)  # not depthwise-like
    kh, kw = (int(k) for k in rng.choice([1, 3], size=2))
    stride = tuple(int(s) for s in rng.integers(1, 3, size=2))
    pads = tuple(int(p) for p in rng.integers(0, 2, size=4))
    h, w = kh + int(rng.integers(0, 12)), kw + int(rng.integers(0, 20))
    xq = qparams(rng, ("int8", "uint8")[index % 2])
    out = qparams(rng, str(rng.choice(DTYPES)))
    cin, cout = groups * cin_g, groups * cout_g
    name = f"gconv{index}"
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), strides=list(stride), padding=list(pads),
                  dilation=[1, 1], groups=groups),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (1, cin, h, w)), xq)},
        params={"weights": ints(rng, "int8", (cout, cin_g, kh, kw)),
                **_out_stage(rng, cout, xq, out, taps=cin_g * kh * kw, extreme=index % 3 == 0)},
        out=out,
    )  # fmt: skip


def _takes_int8_kernels(case: Case) -> bool:
    (x, xq), = case.inputs.values()  # fmt: skip
    assert case.out is not None
    bb = relax.BlockBuilder()
    var = relax.Var("x", relax.TensorType(x.shape, xq.dtype))
    with bb.function("main", [var]):
        with bb.dataflow():
            y = emit_int8_grouped_conv(bb, case.node, case.params, var, xq, case.out)
            out = bb.emit_output(y if y is not None else var)
        bb.emit_func_output(out)
    return y is not None


@pytest.mark.slow  # ~15 s: one compilation of 8 layers
def test_grouped_convolutions_are_bit_exact() -> None:
    rng = np.random.default_rng(5)
    cases = [grouped_case(rng, i) for i in range(8)]
    assert all(_takes_int8_kernels(c) for c in cases)
    assert_cases_exact(cases, host_target(num_cores=2))


@pytest.mark.parametrize("what", ["int16_input", "groups_1", "depthwise"])
def test_other_layers_are_left_to_the_other_paths(what: str) -> None:
    rng = np.random.default_rng(9)
    case = grouped_case(rng, 0)
    (x, _), = case.inputs.values()  # fmt: skip
    if what == "int16_input":
        wide = qparams(rng, "int16")
        case = replace(case, inputs={"x": (x.astype(np.int16), wide)})
    elif what == "groups_1":
        groups = int(case.node.attr("groups"))
        w = np.tile(np.asarray(case.params["weights"]), (1, groups, 1, 1))
        case = replace(
            case,
            node=replace(case.node, attrs={**case.node.attrs, "groups": 1}),
            params={**case.params, "weights": w},
        )
    else:
        c = x.shape[1]
        case = replace(
            case,
            node=replace(case.node, attrs={**case.node.attrs, "groups": c}),
            params={**case.params, "weights": ints(rng, "int8", (c, 1, 1, 1)),
                    "b16": ints(rng, "int16", (c,)),
                    "ofm_multiplier": np.ones(c, np.uint16)},
        )  # fmt: skip
    assert not _takes_int8_kernels(case)

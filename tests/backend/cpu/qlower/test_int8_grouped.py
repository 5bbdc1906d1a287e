"""Grouped convolutions (1 < groups, not depthwise) through one packing and one int8 kernel
call equal the integer executor bit for bit on every kernel variant (groups 2-8, channels
per group multiples of 4 or not, strided and padded 3x3, batch 2); ineligible ones keep
the generic path.

The default suite checks a representative subset of the seeded sweep on every variant
(lowered once, compiled per variant); the ``slow`` sweep checks all of it."""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
from tvm import relax

from npuc.backend.cpu.qlower.int8_grouped import (
    emit_int8_grouped_conv,
    group_channel_groups,
    plan_grouped,
)
from npuc.backend.cpu.schedules.int8_kernel import DOT_KINDS, SPEC_ATTR, ConvKernelSpec, make_kernel

from .harness import (
    DTYPES,
    Case,
    LoweredCases,
    ints,
    lower_cases,
    node,
    qparams,
)
from .test_conv import _out_stage
from .test_int8_conv import KINDS, assert_exact_on_variant

#: (groups, input channels per group) of the cases: multiples of 4 and not, groups 2-8.
SHAPES = ((2, 4), (3, 8), (4, 6), (8, 2), (4, 34), (3, 5), (2, 12), (8, 7), (4, 28), (2, 3))


def grouped_case(rng: np.random.Generator, index: int) -> Case:
    """A random grouped conv2d of :data:`SHAPES` ``[index % 10]`` with 1-9 output channels
    per group, 1x1 or 3x3 (strides 1-2, padding 0-1), batch 1 or 2 (``index // 2`` odd)."""
    groups, cin_g = SHAPES[index % len(SHAPES)]
    cout_g = int(rng.integers(1, 10))
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
        inputs={f"{name}_x": (ints(rng, xq.dtype, (1 + index // 2 % 2, cin, h, w)), xq)},
        params={"weights": ints(rng, "int8", (cout, cin_g, kh, kw)),
                **_out_stage(rng, cout, xq, out, taps=cin_g * kh * kw, extreme=index % 3 == 0)},
        out=out,
    )  # fmt: skip


def _lowered(case: Case) -> tuple[str, bool]:
    """The case's layer through :func:`emit_int8_grouped_conv` as a one-function module's
    TVMScript, and whether the int8 lowering took it (else the function returns ``x``)."""
    (x, xq), = case.inputs.values()  # fmt: skip
    assert case.out is not None
    bb = relax.BlockBuilder()
    var = relax.Var("x", relax.TensorType(x.shape, xq.dtype))
    with bb.function("main", [var]):
        with bb.dataflow():
            y = emit_int8_grouped_conv(bb, case.node, case.params, var, xq, case.out)
            out = bb.emit_output(y if y is not None else var)
        bb.emit_func_output(out)
    return bb.get()["main"].script(), y is not None


def _takes_int8_kernels(case: Case) -> bool:
    return _lowered(case)[1]


#: Sweep indices the default suite keeps: 8 groups of 2 channels (batch 2, strided), 4
#: groups of 34 (3x1), 2 groups of 12 (3x3, batch 2): channels per group off and on
#: multiples of 4, int8 and uint8 inputs, the extreme and the ordinary output stage.
SMALL = (3, 4, 6)


@functools.cache
def _grouped_cases(full: bool) -> LoweredCases:
    """The seeded 12-case sweep or its :data:`SMALL` subset, each case checked to take the
    int8 kernels, lowered once per process and compiled per kernel variant."""
    rng = np.random.default_rng(5)
    cases = [grouped_case(rng, i) for i in range(12)]
    if not full:
        cases = [cases[i] for i in SMALL]
    lowered = lower_cases(cases)
    functions = {gv.name_hint for gv in lowered.module.functions}
    missing = [c.node.name for c in cases if f"int8_conv_{c.node.name}" not in functions]
    assert not missing, f"not lowered to the int8 kernel: {missing}"
    return lowered


@pytest.mark.parametrize("kind", KINDS)
def test_grouped_convolutions_are_bit_exact(kind: str) -> None:
    assert_exact_on_variant(kind, _grouped_cases(full=False))


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_grouped_convolutions_are_bit_exact_on_the_whole_sweep(kind: str) -> None:
    assert_exact_on_variant(kind, _grouped_cases(full=True))


def test_one_packing_and_one_kernel_call_for_all_groups() -> None:
    """No slices, no per-group calls, no concatenation: one packing and one kernel."""
    case = grouped_case(np.random.default_rng(2), 4)  # 4 groups of 34 channels
    text, taken = _lowered(case)
    assert taken
    assert text.count("R.call_tir(") == 2, text
    assert "strided_slice" not in text and "concat" not in text, text


@pytest.mark.parametrize(("c_g", "groups", "want"), [(8, 4, 2), (34, 4, 9), (6, 4, 2), (5, 3, 2)])
def test_each_group_reads_the_channel_groups_holding_its_channels(
    c_g: int, groups: int, want: int
) -> None:
    """``c_g = 34``: groups start at channels 0, 34, 68, 102 (offsets 0, 2, 0, 2 in their
    groups of 4): 9 groups of 4 cover each, as padding 34 to 36 would."""
    assert group_channel_groups(c_g, groups) == want
    for g in range(groups):
        first, last = g * c_g // 4, (g * c_g + c_g - 1) // 4
        assert last - first + 1 <= want


def test_grouped_spec_reads_every_input_channel_group() -> None:
    case = grouped_case(np.random.default_rng(3), 4)
    (x, xq), = case.inputs.values()  # fmt: skip
    assert case.out is not None
    planned = plan_grouped(case.node, case.params, x.shape, xq, case.out)
    assert planned is not None
    spec, params = planned
    assert spec.groups == 4 and spec.group_cin == 34
    assert spec.x_groups == -(-x.shape[1] // 4)
    for g, q in enumerate(params):
        w = np.asarray(q["weights"])
        start = g * 34 % 4
        assert not w[:, :start].any() and not w[:, start + 34 :].any()


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


def test_grouped_kernel_builds_for_every_dot_kind_and_needs_its_channels() -> None:
    """The grouped spec's kernel is built for every dot kind (the bit-exact test runs the
    ones this machine has); a grouped spec without its channels per group is refused."""
    case = grouped_case(np.random.default_rng(3), 4)
    (x, xq), = case.inputs.values()  # fmt: skip
    assert case.out is not None
    planned = plan_grouped(case.node, case.params, x.shape, xq, case.out)
    assert planned is not None
    spec = planned[0]
    for kind in DOT_KINDS.values():
        kernel = make_kernel(spec, kind)
        assert ConvKernelSpec.from_attr(kernel.attrs[SPEC_ATTR]) == spec
    with pytest.raises(ValueError, match="group_cin"):
        replace(spec, group_cin=0)

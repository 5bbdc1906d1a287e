"""Integer depthwise convolution through the exact TIR kernel (qlower/depthwise.py and the
int_depthwise schedule rule) equals the integer executor bit for bit, on this machine's
widest vectors and on an AVX2-only target (which runs here too).

Cases cover every storage type in and out (int16 inputs sum in float64), channel
multipliers, strides 1-3, dilations, asymmetric padding, widths below, at and above
one vector (overlapping strips), and the output stage at its extremes (48-bit
saturation, 32-bit saturation after the ahead shift, post shifts up to 47).
"""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.cpu.qlower.depthwise import plan_depthwise, tail_offset
from npuc.backend.cpu.schedules.int_depthwise import (
    DepthwiseSpec,
    IntDepthwiseRule,
    acc_lanes,
    choose_strip,
    make_kernel,
)
from npuc.core.target import CpuTarget, host_target
from npuc.midend.quantize.graph import TensorType
from npuc.midend.quantize.qparams import QParams

from .harness import DTYPES, Case, assert_cases_exact, ints, node, qparams
from .test_conv import _out_stage

AVX2 = CpuTarget(cpu_name="haswell", features=("avx", "avx2", "f16c", "fma"), num_cores=2)
AVX512 = CpuTarget(
    cpu_name="icelake-server", features=("avx", "avx2", "avx512f", "avx512vnni"), num_cores=2
)


def depthwise_case(rng: np.random.Generator, index: int) -> Case:
    """A random depthwise layer (channel multiplier 1-2) and its input."""
    c = int(rng.integers(2, 6))
    mult = int(rng.integers(1, 3)) if index % 3 == 0 else 1
    kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
    dil = tuple(int(d) for d in rng.integers(1, 3, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 4, size=2))
    pads = tuple(int(p) for p in rng.integers(0, 3, size=4))
    h = max(1, dil[0] * (kh - 1) + 1 - pads[0] - pads[2]) + int(rng.integers(0, 6))
    w = max(1, dil[1] * (kw - 1) + 1 - pads[1] - pads[3]) + int(rng.integers(0, 50))
    xq, out = qparams(rng, str(rng.choice(DTYPES))), qparams(rng, str(rng.choice(DTYPES)))
    name = f"dw{index}"
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), strides=list(stride), padding=list(pads),
                  dilation=list(dil), groups=c),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (1, c, h, w)), xq)},
        params={"weights": ints(rng, "int8", (c * mult, 1, kh, kw)),
                **_out_stage(rng, c * mult, xq, out, taps=kh * kw, extreme=index % 4 == 0)},
        out=out,
    )  # fmt: skip


@pytest.mark.parametrize("target", [None, AVX2], ids=["host", "avx2"])
def test_random_depthwise_layers_are_bit_exact(target: CpuTarget | None) -> None:
    rng = np.random.default_rng(11 if target is None else 12)
    assert_cases_exact([depthwise_case(rng, i) for i in range(20)], target)


def test_mobilenet_shapes_are_bit_exact_on_both_targets() -> None:
    """Wide planes (several strips per row, stride 2 phases) at MobileNet sizes; narrow
    stride-2 planes (the flat kernel's column-pair fill in blocks of 4 and 8 pairs)."""
    rng = np.random.default_rng(13)
    cases = []
    shapes = [(8, 57, 1, "int8"), (6, 64, 2, "uint8"), (5, 14, 2, "int8"), (4, 28, 2, "uint8")]
    for i, (c, hw, stride, dtype) in enumerate(shapes):
        xq, out = QParams(0.1, int(rng.integers(-20, 20)), dtype), qparams(rng, "int8")
        if dtype == "uint8":
            xq = QParams(0.1, 131, dtype)
        cases.append(
            Case(
                node=node(
                    f"m{i}",
                    "conv2d",
                    (f"m{i}_x",),
                    strides=[stride] * 2,
                    padding=[1, 1, 1, 1],
                    dilation=[1, 1],
                    groups=c,
                ),
                inputs={f"m{i}_x": (ints(rng, dtype, (1, c, hw, hw)), xq)},
                params={
                    "weights": ints(rng, "int8", (c, 1, 3, 3)),
                    **_out_stage(rng, c, xq, out, taps=9, extreme=False),
                },
                out=out,
            )
        )
    for target in (None, AVX2):
        assert_cases_exact(cases, target)


def _plan(op_groups: int, weights: np.ndarray, xq: QParams) -> object:
    n = node("p", "conv2d", ("x",), strides=[1, 1], padding=[1, 1, 1, 1], dilation=[1, 1],
             groups=op_groups)  # fmt: skip
    n = type(n)(name=n.name, op=n.op, inputs=n.inputs, out=TensorType(shape=(1,), dtype="float32"),
                attrs=n.attrs, consts=n.consts)  # fmt: skip
    cout = weights.shape[0]
    params = {"weights": weights, "b16": np.zeros(cout, np.int16), "bias_shift": 0,
              "ofm_multiplier": np.full(cout, 1000, np.uint16), "pre_shift": 0,
              "post_shift": 12, "act_min": -128, "act_max": 127}  # fmt: skip
    return plan_depthwise(n, params, (1, 4, 9, 9), xq, QParams(0.1, 0, "int8"))


def test_plan_takes_depthwise_only_and_picks_an_exact_accumulator() -> None:
    w = np.full((4, 1, 3, 3), -128, np.int8)
    planned = _plan(4, w, QParams(0.1, 0, "int8"))
    assert planned is not None and planned[0].acc == "float32"  # 9 * 128 * 128 < 2^24
    planned = _plan(4, w, QParams(0.1, -32768, "int16"))
    assert planned is not None and planned[0].acc == "float64"  # 9 * 128 * 65535 >= 2^24
    assert _plan(2, np.zeros((4, 2, 3, 3), np.int8), QParams(0.1, 0, "int8")) is None  # grouped
    assert _plan(1, np.zeros((4, 4, 3, 3), np.int8), QParams(0.1, 0, "int8")) is None  # dense


@pytest.mark.parametrize("ow", [1, 3, 4, 7, 14, 16, 28, 31, 56, 112, 150])
@pytest.mark.parametrize("lanes", [4, 8, 16])
def test_strips_cover_the_row_with_little_waste(ow: int, lanes: int) -> None:
    strip = choose_strip(ow, lanes)
    assert 1 <= strip <= ow
    strips = -(-ow // strip)
    assert strips * strip - ow < max(strip, 1)  # the last strip overlaps less than one strip
    if ow >= lanes:
        assert strip % lanes == 0


def test_rule_remakes_only_its_kernels_for_the_target() -> None:
    rng = np.random.default_rng(3)
    case = depthwise_case(rng, 1)
    ((_name, (x, xq)),) = case.inputs.items()
    shaped = type(case.node)(name=case.node.name, op="conv2d", inputs=case.node.inputs,
                             out=TensorType(shape=(1,), dtype="float32"), attrs=case.node.attrs,
                             consts={})  # fmt: skip
    assert case.out is not None
    planned = plan_depthwise(shaped, case.params, x.shape, xq, case.out)
    assert planned is not None
    spec = planned[0]
    reference = make_kernel(spec, 4)
    rule = IntDepthwiseRule()
    for target in (AVX2, AVX512, host_target()):
        made = rule.apply(reference, target)
        assert made is not None
        assert acc_lanes(target, spec.acc) in (2, 4, 8, 16)
    assert rule.apply(reference.without_attr("npuc.int_depthwise"), AVX2) is None


@pytest.mark.parametrize(
    ("stride", "pad_l", "pad_r", "w"),
    [(2, 1, 1, 64), (3, 2, 0, 20), (2, 0, 1, 9), (3, 1, 1, 2), (2, 1, 0, 1), (4, 3, 2, 5)],
)
def test_strided_plane_fill_edges_are_bit_exact(
    stride: int, pad_l: int, pad_r: int, w: int
) -> None:
    """The strided plane fill: one loop over the columns every phase holds, then each
    phase's edge columns (left padding, a width the stride does not divide, inputs
    narrower than the stride: no common column at all)."""
    rng = np.random.default_rng(100 + 10 * stride + w)
    xq, out = qparams(rng, "int8"), qparams(rng, "int8")
    kw = min(3, w + pad_l + pad_r)
    cases = [
        Case(
            node=node(f"s{i}", "conv2d", (f"s{i}_x",), strides=[1, stride],
                      padding=[1, pad_l, 1, pad_r], dilation=[1, 1], groups=3),
            inputs={f"s{i}_x": (ints(rng, dtype, (1, 3, 5, w)), xq if dtype == "int8" else
                                QParams(0.1, 120, "uint8"))},
            params={"weights": ints(rng, "int8", (3, 1, 3, kw)),
                    **_out_stage(rng, 3, xq, out, taps=3 * kw, extreme=False)},
            out=out,
        )
        for i, dtype in enumerate(("int8", "uint8"))
    ]  # fmt: skip
    for target in (None, AVX2):
        assert_cases_exact(cases, target)


GENERIC = CpuTarget(cpu_name="x86-64", features=("sse2",), num_cores=2)


def planned_case(case: Case) -> tuple[DepthwiseSpec, dict[str, np.ndarray], np.ndarray]:
    """The kernel spec and constants ``plan_depthwise`` gives ``case``, and its float input."""
    ((_name, (x, xq)),) = case.inputs.items()
    shaped = type(case.node)(name=case.node.name, op="conv2d", inputs=case.node.inputs,
                             out=TensorType(shape=(1,), dtype="float32"), attrs=case.node.attrs,
                             consts={})  # fmt: skip
    assert case.out is not None and xq is not None
    planned = plan_depthwise(shaped, case.params, x.shape, xq, case.out)
    assert planned is not None
    return planned[0], planned[1], x


def _spec_of(case: Case) -> DepthwiseSpec:
    return planned_case(case)[0]


def tail_case(rng: np.random.Generator, index: int) -> Case:
    """A depthwise layer (batch 2, 3x3 or 5x5, stride 1-2, odd sizes) whose output stage
    sits at the extremes the integer tail must handle: multipliers 0, 1 and 32767 among
    random ones, 16-bit biases at +-2^15 shifted up to 14, post shifts from 0 to 30 (the
    small ones leave the tail to the float64 stage), activation clamps and saturation."""
    in_dtype = ("int8", "uint8", "int16")[index % 3]
    out_dtype = ("int8", "uint8", "int16", "int8")[index % 4]
    c, k, stride = int(rng.integers(2, 7)), int(rng.choice([3, 5])), int(rng.integers(1, 3))
    h, w = int(rng.integers(k, 12)) | 1, int(rng.integers(k, 40)) | 1
    pad = k // 2
    xq, out = qparams(rng, in_dtype), qparams(rng, out_dtype)
    m = rng.integers(0, 32768, size=c).astype(np.uint16)
    m[: min(3, c)] = rng.permutation(np.array([0, 1, 32767], np.uint16))[: min(3, c)]
    b16 = ints(rng, "int16", (c,))
    b16[0], b16[-1] = -32768, 32767
    info = np.iinfo(np.dtype(out_dtype))
    act_min = int(info.min) if index % 2 else int(rng.integers(int(info.min), 0))
    name = f"t{index}"
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), strides=[stride, stride],
                  padding=[pad, pad, pad - 1 if index % 5 == 0 else pad, pad], dilation=[1, 1],
                  groups=c),
        inputs={f"{name}_x": (ints(rng, in_dtype, (2, c, h, w)), xq)},
        params={"weights": ints(rng, "int8", (c, 1, k, k)), "b16": b16,
                "bias_shift": int(rng.integers(0, 15)), "ofm_multiplier": m, "pre_shift": 0,
                "post_shift": int(rng.integers(0, 31)), "act_min": act_min,
                "act_max": int(rng.integers(max(act_min, 0), int(info.max) + 1))},
        out=out,
    )  # fmt: skip


@pytest.mark.parametrize(
    "target",
    [None, AVX2, pytest.param(GENERIC, marks=pytest.mark.slow)],
    ids=["host", "avx2", "generic"],
)
def test_integer_tail_is_bit_exact_at_the_extremes(target: CpuTarget | None) -> None:
    """The integer tail (``tail_k``) against the executor's requantisation, a seeded sweep:
    both stages must occur (tail where its bounds hold, float64 stage elsewhere)."""
    rng = np.random.default_rng(21)
    cases = [tail_case(rng, i) for i in range(24)]
    tails = [_spec_of(case).tail_k for case in cases]
    assert any(tails) and not all(tails), tails
    assert_cases_exact(cases, target)


def test_tail_offset_bounds() -> None:
    """``K`` exceeds every |floor(x)| and keeps ``(x + K) * 2^post`` below 2^52, else 0."""
    for bound, m, post, zp in [(1 << 17, 32767, 19, -128), (1 << 30, 32767, 0, 0),
                               (1, 0, 0, 32767), (1 << 40, 32767, 40, 5)]:  # fmt: skip
        k = tail_offset(bound, m, post, zp)
        worst = ((bound * m + (1 << post)) >> post) + abs(zp) + 1
        if k:
            assert k & (k - 1) == 0 and worst < k <= 1 << 30
            assert bound * m + ((k + abs(zp) + 1) << post) < 1 << 52
        else:
            assert 2 * worst > 1 << 30 or bound * m + ((2 * worst) << post) >= 1 << 52

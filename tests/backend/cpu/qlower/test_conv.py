"""Integer conv2d (regular, grouped, depthwise with a channel multiplier) and dense, compiled
for the CPU, equal the integer executor bit for bit.

Cases are drawn from seeded generators and checked many per compilation
(compiling costs seconds; hypothesis would compile once per example): the
default suite runs a subset of every kind in one compilation, ``slow`` the
whole sweeps. They
cover every storage type in and out, any zero point, strides, dilations,
asymmetric padding, extreme multipliers (0 and 32767), ahead shifts that
saturate the 32-bit stage, post shifts up to 47, 16-bit biases shifted up to
31 bits, and accumulators that need int64.
"""

from __future__ import annotations

import numpy as np
import pytest

from npuc.backend.cpu.qlower.conv import accumulator_dtype
from npuc.midend.quantize.qparams import QParams

from .harness import DTYPES, Case, assert_cases_exact, ints, node, qparams


def _out_stage(
    rng: np.random.Generator, cout: int, xq: QParams, out: QParams, taps: int, extreme: bool
) -> dict[str, object]:
    """The output stage: shifts that keep the outputs spread over the output type, or
    (``extreme``) uniform over their whole fields (mostly saturated or zero outputs)."""
    info = np.iinfo(np.dtype(out.dtype))
    act_min = int(rng.integers(int(info.min), int(info.max) + 1))
    if not extreme:
        act_min = int(info.min) if rng.random() < 0.7 else act_min
    multipliers = rng.integers(0, 32768, size=cout).astype(np.uint16)
    multipliers[: cout // 3] = rng.choice([0, 1, 32767], size=cout // 3)
    # log2 of a typical |sum((x - zp) * w)|: sqrt(taps) * |w| ~ 2^6 * |x - zp| ~ range / 2
    acc_bits = int(0.5 * np.log2(max(taps, 1)) + 6 + np.log2(xq.qmax - xq.qmin) - 1)
    pre = int(rng.integers(0, max(1, acc_bits - 20) + 1))
    post = acc_bits - pre + 15 - (np.iinfo(np.dtype(out.dtype)).bits - 2) + int(rng.integers(-2, 3))
    return {
        "b16": ints(rng, "int16", (cout,)),
        "bias_shift": int(
            rng.integers(20, 32) if extreme else rng.integers(0, max(1, acc_bits - 14))
        ),
        "ofm_multiplier": multipliers,
        "pre_shift": int(rng.integers(0, 17)) if extreme else pre,
        "post_shift": int(rng.integers(0, 48)) if extreme else max(0, post),
        "act_min": act_min,
        "act_max": int(rng.integers(act_min, int(info.max) + 1)) if extreme else int(info.max),
    }


def conv_case(rng: np.random.Generator, index: int) -> Case:
    """A random conv2d layer (regular, grouped or depthwise) and its input."""
    kind = ("regular", "grouped", "depthwise")[index % 3]
    groups = {"regular": 1, "grouped": 2, "depthwise": int(rng.integers(1, 5))}[kind]
    cin = groups * int(rng.integers(1, 4)) if kind == "grouped" else groups
    if kind == "regular":
        cin = int(rng.integers(1, 7))
    cout = groups * int(rng.integers(1, 3)) if kind != "regular" else int(rng.integers(1, 7))
    kh, kw = (int(k) for k in rng.integers(1, 4, size=2))
    dil = tuple(int(d) for d in rng.integers(1, 3, size=2))
    stride = tuple(int(s) for s in rng.integers(1, 3, size=2))
    pads = tuple(int(p) for p in rng.integers(0, 3, size=4))
    h = max(1, dil[0] * (kh - 1) + 1 - pads[0] - pads[2]) + int(rng.integers(0, 5))
    w = max(1, dil[1] * (kw - 1) + 1 - pads[1] - pads[3]) + int(rng.integers(0, 5))
    xq, out = qparams(rng, str(rng.choice(DTYPES))), qparams(rng, str(rng.choice(DTYPES)))
    name = f"conv{index}"
    return Case(
        node=node(name, "conv2d", (f"{name}_x",), strides=list(stride), padding=list(pads),
                  dilation=list(dil), groups=groups),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (1, cin, h, w)), xq)},
        params={"weights": ints(rng, "int8", (cout, cin // groups, kh, kw)),
                **_out_stage(rng, cout, xq, out, taps=cin // groups * kh * kw,
                             extreme=index % 4 == 0)},
        out=out,
    )  # fmt: skip


def dense_case(rng: np.random.Generator, index: int) -> Case:
    """A random fully connected layer over a 2-D or 3-D input."""
    k, n = int(rng.integers(1, 40)), int(rng.integers(1, 9))
    lead = (1,) if index % 2 else (1, int(rng.integers(1, 4)))
    xq, out = qparams(rng, str(rng.choice(DTYPES))), qparams(rng, str(rng.choice(DTYPES)))
    name = f"dense{index}"
    return Case(
        node=node(name, "dense", (f"{name}_x",)),
        inputs={f"{name}_x": (ints(rng, xq.dtype, (*lead, k)), xq)},
        params={
            "weights": ints(rng, "int8", (k, n)),
            **_out_stage(rng, n, xq, out, taps=k, extreme=index % 4 == 0),
        },
        out=out,
    )


def test_random_convolutions_and_dense_layers_are_bit_exact() -> None:
    """The first 12 convolutions of seed 0 (every kind, ``index % 3``, with and without the
    extreme output stage, ``index % 4``) and 8 dense layers (2-D and 3-D inputs), one
    compilation; the ``slow`` tests below run the whole sweeps."""
    convs, dense = np.random.default_rng(0), np.random.default_rng(2)
    assert_cases_exact(
        [conv_case(convs, i) for i in range(12)] + [dense_case(dense, i) for i in range(8)]
    )


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_random_convolutions_are_bit_exact(seed: int) -> None:
    rng = np.random.default_rng(seed)
    assert_cases_exact([conv_case(rng, i) for i in range(24)])


@pytest.mark.slow
def test_random_dense_layers_are_bit_exact() -> None:
    rng = np.random.default_rng(2)
    assert_cases_exact([dense_case(rng, i) for i in range(16)])


def test_int16_extremes_accumulate_in_int64_and_saturate() -> None:
    """int16 input at its extremes x weights -128 over 64x3x3: the sums need int64
    (|sum| ~ 2^32) and saturate the 32-bit stage with pre_shift 0."""
    xq = QParams(0.1, -32768, "int16")
    weights = np.full((2, 64, 3, 3), -128, np.int8)
    weights[1] = 127
    assert accumulator_dtype(weights, xq, dense=False) == "int64"
    x = np.full((1, 64, 3, 3), 32767, np.int16)
    x[0, :, 1, 1] = -32768
    out = QParams(0.1, 3, "int16")
    params = {"weights": weights, "b16": np.array([32767, -32768], np.int16), "bias_shift": 31,
              "ofm_multiplier": np.array([32767, 32767], np.uint16), "pre_shift": 0,
              "post_shift": 16, "act_min": -32768, "act_max": 32767}  # fmt: skip
    cases = [
        Case(
            node=node(
                f"c{pad}",
                "conv2d",
                (f"x{pad}",),
                strides=[1, 1],
                padding=[pad] * 4,
                dilation=[1, 1],
                groups=1,
            ),
            inputs={f"x{pad}": (x, xq)},
            params=params,
            out=out,
        )
        for pad in (0, 1)
    ]
    assert_cases_exact(cases)

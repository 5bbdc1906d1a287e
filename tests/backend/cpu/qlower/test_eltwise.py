"""Integer element-wise layers, clamps and average pools, compiled for the CPU, equal the
integer executor bit for bit.

Seeded cases, many per compilation (see harness): every storage type per
operand, any zero points, multipliers over the whole 15-bit range, post
shifts 0..47 (saturating the outputs and, for multiply, reaching the 48-bit
intermediate), broadcasting, constant operands on either side.
"""

from __future__ import annotations

import numpy as np

from .harness import DTYPES, Case, assert_cases_exact, ints, node, qparams

BINARY = ("add", "subtract", "multiply", "maximum", "minimum")


def _clamp(rng: np.random.Generator, dtype: str) -> dict[str, int]:
    info = np.iinfo(np.dtype(dtype))
    lo = int(rng.integers(int(info.min), int(info.max) + 1)) if rng.random() < 0.3 else info.min
    return {"act_min": int(lo), "act_max": int(info.max)}


def binary_case(rng: np.random.Generator, index: int) -> Case:
    """A random element-wise layer over two tensors (one broadcast) or a tensor and a constant."""
    op = BINARY[index % len(BINARY)]
    name = f"{op}{index}"
    qa, qb, out = (qparams(rng, str(rng.choice(DTYPES))) for _ in range(3))
    shape = (1, 3, 4, 5)
    other = ((1, 3, 1, 1), (1, 1, 4, 5), shape)[index % 3]
    params = {
        "ifm_multiplier": int(rng.integers(0, 32768)),
        "ifm2_multiplier": int(rng.integers(0, 32768)),
        "ofm_multiplier": int(rng.integers(0, 32768)),
        "post_shift": int(rng.integers(0, 48) if index % 4 == 0 else rng.integers(10, 24)),
        **_clamp(rng, out.dtype),
    }
    inputs = {f"{name}_a": (ints(rng, qa.dtype, shape), qa)}
    attrs = {}
    if index % 5 == 4:  # a constant operand, stored as the output type
        const_q = qparams(rng, out.dtype)
        params.update(
            const=ints(rng, out.dtype, other),
            const_scale=const_q.scale,
            const_zp=const_q.zero_point,
        )
        attrs["const_side"] = "lhs" if index % 2 else "rhs"
    else:
        inputs[f"{name}_b"] = (ints(rng, qb.dtype, other), qb)
    return Case(node=node(name, op, tuple(inputs), **attrs), inputs=inputs, params=params, out=out)


def requant_case(rng: np.random.Generator, index: int) -> Case:
    """A random clip, average pool (padding counted) or global average pool."""
    op = ("clip", "avg_pool2d", "global_avg_pool")[index % 3]
    name = f"{op}{index}"
    xq, out = qparams(rng, str(rng.choice(DTYPES))), qparams(rng, str(rng.choice(DTYPES)))
    attrs: dict[str, object] = {}
    if op == "avg_pool2d":
        kernel = [int(k) for k in rng.integers(1, 4, size=2)]
        attrs = {
            "kernel": kernel,
            "strides": [int(s) for s in rng.integers(1, 3, size=2)],
            "padding": [int(rng.integers(0, k)) for k in (*kernel, *kernel)],
            "dilation": [1, 1],
            "count_include_pad": True,
        }
    params = {
        "ofm_multiplier": int(rng.integers(0, 32768)),
        "post_shift": int(rng.integers(0, 48) if index % 4 == 0 else rng.integers(12, 22)),
        **_clamp(rng, out.dtype),
    }
    inputs = {f"{name}_x": (ints(rng, xq.dtype, (1, 3, 6, 7)), xq)}
    return Case(node=node(name, op, tuple(inputs), **attrs), inputs=inputs, params=params, out=out)


def test_random_elementwise_layers_are_bit_exact() -> None:
    rng = np.random.default_rng(10)
    assert_cases_exact([binary_case(rng, i) for i in range(30)])


def test_random_clips_and_average_pools_are_bit_exact() -> None:
    rng = np.random.default_rng(11)
    assert_cases_exact([requant_case(rng, i) for i in range(18)])


def test_global_pool_sum_saturates_to_int32() -> None:
    """int16 extremes over 256x256 positions: the sum (2^31.9) leaves int32 and saturates."""
    from npuc.midend.quantize.qparams import QParams

    xq = QParams(0.1, -32768, "int16")
    x = np.full((1, 1, 256, 256), 32767, np.int16)
    params = {"ofm_multiplier": 1, "post_shift": 16, "act_min": -32768, "act_max": 32767}
    out = QParams(0.1, 0, "int16")
    case = Case(node=node("g", "global_avg_pool", ("x",)), inputs={"x": (x, xq)}, params=params,
                out=out)  # fmt: skip
    assert_cases_exact([case])

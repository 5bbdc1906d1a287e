"""Element-wise, pooling, LUT, requant and data movement on the NPU == the integer reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from npuc.backend.npu.ops import (
    NpuConcat,
    NpuGraph,
    NpuLut,
    NpuPad,
    NpuRequant,
    NpuReshape,
    NpuResize,
    NpuSlice,
    NpuTensor,
    NpuTranspose,
)
from npuc.core.errors import UnsupportedError
from tests.backend.npu.graphs import CONFIGS, compile_and_check, eltwise, pool, tensor

SETTINGS = settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)
shapes = st.tuples(st.just(1), st.integers(1, 12), st.integers(1, 12), st.integers(1, 40))


def _run(graph: NpuGraph, config: str, seed: int, budget: float | None = None) -> None:
    hw = CONFIGS[config]
    try:
        compile_and_check(
            graph,
            hw,
            np.random.default_rng(seed),
            sram_budget=None if budget is None else int(hw.sram_bytes * budget),
        )
    except UnsupportedError:
        assume(False)


@pytest.mark.parametrize("config", sorted(CONFIGS))
@SETTINGS
@given(
    shape=shapes,
    op=st.sampled_from(["add", "sub", "mul", "max", "min"]),
    seed=st.integers(0, 2**31),
    budget=st.sampled_from([None, 0.25]),
)
def test_eltwise(config: str, shape: tuple, op: str, seed: int, budget: float | None) -> None:
    rng = np.random.default_rng(seed)
    a, b = tensor("a", shape, "int8", -2), tensor("b", shape, "int8", 3)
    e = eltwise(rng, a, b, op)
    _run(NpuGraph(ops=(e,), inputs=(a, b), outputs=(e.ofm,)), config, seed, budget)


@st.composite
def pools(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["max", "avg", "global"]))
    h, w = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    if kind == "global":
        return {"op": "avg", "hw": (h, w), "kernel": (h, w), "stride": (1, 1), "pad": (0,) * 4}
    kh, kw = draw(st.integers(1, min(h, 4))), draw(st.integers(1, min(w, 4)))
    pad = (
        draw(st.integers(0, kh - 1)),
        draw(st.integers(0, kw - 1)),
        draw(st.integers(0, kh - 1)),
        draw(st.integers(0, kw - 1)),
    )
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return {"op": kind, "hw": (h, w), "kernel": (kh, kw), "stride": stride, "pad": pad}


@pytest.mark.parametrize("config", sorted(CONFIGS))
@SETTINGS
@given(
    p=pools(),
    c=st.integers(1, 40),
    dtype=st.sampled_from(["int8", "uint8", "int16"]),
    seed=st.integers(0, 2**31),
)
def test_pool(config: str, p: dict, c: int, dtype: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = tensor("x", (1, *p["hw"], c), dtype, 0 if dtype != "uint8" else 128)
    op = pool(rng, x, op=p["op"], kernel=p["kernel"], stride=p["stride"], padding=p["pad"])
    _run(NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,)), config, seed)


@SETTINGS
@given(
    shape=shapes,
    in_dtype=st.sampled_from(["int8", "uint8", "int16"]),
    out_dtype=st.sampled_from(["int8", "int16"]),
    seed=st.integers(0, 2**31),
)
def test_lut_and_requant(shape: tuple, in_dtype: str, out_dtype: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = tensor("x", shape, in_dtype)
    y = tensor("y", shape, out_dtype, 1)
    lo, hi = (-128, 127) if out_dtype == "int8" else (-32768, 32767)
    bits = int(rng.integers(4, 11)) if in_dtype == "int16" else 8
    entries = (1 << bits) + 1 if in_dtype == "int16" else 256
    lut = NpuLut(
        name="lut",
        ifm=x,
        ofm=y,
        table=rng.integers(lo, hi + 1, entries).astype(out_dtype),
        lut_bits=bits,
        lut_x_min=-32768,
        lut_f=16 - bits if in_dtype == "int16" else 8,
    )
    z = tensor("z", shape, "int8", -7)
    rq = NpuRequant(
        name="rq",
        ifm=y,
        ofm=z,
        ofm_multiplier=int(rng.integers(1, 32768)),
        post_shift=15 if out_dtype == "int8" else 22,
        act_min=-128,
        act_max=127,
    )
    _run(NpuGraph(ops=(lut, rq), inputs=(x,), outputs=(y, z)), "npu-tiny", seed)


@SETTINGS
@given(
    a=shapes,
    extra=st.integers(1, 20),
    axis=st.integers(1, 3),
    seed=st.integers(0, 2**31),
    config=st.sampled_from(sorted(CONFIGS)),
)
def test_concat_slice_reshape(a: tuple, extra: int, axis: int, seed: int, config: str) -> None:
    rng = np.random.default_rng(seed)
    b_shape = list(a)
    b_shape[axis] = extra
    x1, x2 = tensor("x1", a, "int8", 2), tensor("x2", tuple(b_shape), "int8", 2)  # type: ignore[arg-type]
    out = list(a)
    out[axis] += extra
    cat = NpuConcat(
        name="cat",
        ifms=(x1, x2),
        ofm=tensor("cat_out", tuple(out), "int8", 2),  # type: ignore[arg-type]
        axis=axis,
    )
    begin = tuple(int(rng.integers(0, d)) for d in out)
    size = tuple(int(rng.integers(1, d - b + 1)) for d, b in zip(out, begin, strict=True))
    sl = NpuSlice(
        name="slice",
        ifm=cat.ofm,
        ofm=tensor("s", (1, *size[1:]), "int8", 2),  # type: ignore[arg-type]
        begin=(0, *begin[1:]),
    )  # type: ignore[arg-type]
    n = int(np.prod(size))
    rs = NpuReshape(
        name="reshape",
        ifm=sl.ofm,
        ofm=NpuTensor(name="r", shape=(1, 1, n, 1), dtype="int8", scale=0.05, zero_point=2),
    )
    _run(NpuGraph(ops=(cat, sl, rs), inputs=(x1, x2), outputs=(cat.ofm, rs.ofm)), config, seed)


@SETTINGS
@given(
    shape=shapes,
    pads=st.tuples(*[st.integers(0, 3)] * 4),
    factors=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    perm=st.permutations([1, 2, 3]),
    dtype=st.sampled_from(["int8", "int16"]),
    seed=st.integers(0, 2**31),
    config=st.sampled_from(sorted(CONFIGS)),
)
def test_pad_resize_transpose(
    shape: tuple, pads: tuple, factors: tuple, perm: list, dtype: str, seed: int, config: str
) -> None:
    _, h, w, c = shape
    x = tensor("x", shape, dtype, 3)
    t, left, b, r = pads
    pad = NpuPad(
        name="pad", ifm=x, ofm=tensor("p", (1, h + t + b, w + left + r, c), dtype, 3), padding=pads
    )
    _, ph, pw, _ = pad.ofm.shape
    fh, fw = factors
    up = NpuResize(name="up", ifm=pad.ofm, ofm=tensor("u", (1, ph * fh, pw * fw, c), dtype, 3))
    full = (0, *perm)
    tr = NpuTranspose(
        name="tr",
        ifm=up.ofm,
        perm=full,  # type: ignore[arg-type]
        ofm=tensor("t", tuple(up.ofm.shape[i] for i in full), dtype, 3),
    )  # type: ignore[arg-type]
    graph = NpuGraph(ops=(pad, up, tr), inputs=(x,), outputs=(pad.ofm, tr.ofm))
    _run(graph, config, seed)

"""Tap packing (im2col by DMA): packed == plain == the integer reference, bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from npuc.backend.npu.compile import compile_npu_graph
from npuc.backend.npu.lower_tap_conv import interleave
from npuc.backend.npu.ops import NpuConv2d, NpuGraph, NpuIm2col
from npuc.backend.npu.reference import run_reference
from npuc.backend.npu.schedule import Access, Step
from npuc.backend.npu.tap_pack import MIN_GAIN, VARIANTS, choose, eligible, pack_graph, rewrite
from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.isa.types import Unit
from tests.backend.npu.graphs import (
    CONFIGS,
    compile_and_check,
    conv,
    pool,
    random_input,
    tensor,
)

CHOICES = (*VARIANTS, *(f"{v}+interleaved" for v in VARIANTS))


@st.composite
def low_channel_convs(draw: st.DrawFn) -> dict:
    """A regular convolution with 1-8 input channels: kernels, strides, dilations, paddings."""
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3])))
    ext = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    padding = tuple(draw(st.integers(0, ext[i % 2] - 1)) for i in range(4))
    h = draw(st.integers(max(1, ext[0] - padding[0] - padding[2]), 16))
    w = draw(st.integers(max(1, ext[1] - padding[1] - padding[3]), 16))
    return {
        "seed": draw(st.integers(0, 2**32 - 1)),
        "h": h,
        "w": w,
        "cin": draw(st.integers(1, 8)),
        "cout": draw(st.integers(1, 40)),
        "kernel": (kh, kw),
        "stride": stride,
        "dilation": dilation,
        "padding": padding,
        "dtype": draw(st.sampled_from(["int8", "uint8", "int16"])),
    }


def _graph(p: dict) -> NpuGraph:
    rng = np.random.default_rng(p["seed"])
    dtype = p["dtype"]
    zp = {"int8": int(rng.integers(-20, 20)), "uint8": int(rng.integers(100, 160)), "int16": 0}
    x = tensor("x", (1, p["h"], p["w"], p["cin"]), dtype, zp[dtype])
    op = conv(
        rng,
        x,
        cout=p["cout"],
        kernel=p["kernel"],
        stride=p["stride"],
        dilation=p["dilation"],
        padding=p["padding"],
        per_channel=bool(rng.integers(0, 2)),
        bias=bool(rng.integers(0, 4)),
    )
    return NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,))


def _packed_graph(graph: NpuGraph, choice: str) -> NpuGraph:
    (op,) = graph.ops
    assert isinstance(op, NpuConv2d)
    return dataclasses.replace(graph, ops=rewrite(op, choice))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(p=low_channel_convs(), variant=st.sampled_from(CHOICES))
def test_packed_reference_equals_plain_reference(p: dict, variant: str) -> None:
    """im2col + the reshaped convolution compute the plain convolution (integer reference)."""
    graph = _graph(p)
    inputs = {"x": random_input(np.random.default_rng(p["seed"]), graph.inputs[0])}
    plain = run_reference(graph, inputs)["y"]
    pk = _packed_graph(graph, variant)
    pk.validate()
    np.testing.assert_array_equal(run_reference(pk, inputs)["y"], plain, strict=True)


@pytest.mark.parametrize("config", sorted(CONFIGS))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(p=low_channel_convs(), variant=st.sampled_from(CHOICES), fraction=st.floats(0.1, 1.0))
def test_packed_program_matches_reference(
    config: str, p: dict, variant: str, fraction: float
) -> None:
    """The forced variant (two ops or interleaved), under a random SRAM budget, is exact."""
    graph = _graph(p)
    hw = CONFIGS[config]
    try:
        compiled, _ = compile_and_check(
            _packed_graph(graph, variant),
            hw,
            np.random.default_rng(p["seed"] + 1),
            sram_budget=int(hw.sram_bytes * fraction),
        )
    except UnsupportedError:
        assume(False)  # a band or a pixel does not fit this budget
    second = "NpuTapConv2d" if variant.endswith("+interleaved") else "NpuConv2d"
    assert [s.kind for s in compiled.ops] == ["NpuIm2col", second]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(p=low_channel_convs())
def test_compiler_choice_matches_reference_and_beats_plain(p: dict) -> None:
    """Whatever the compiler chooses is exact; packing is chosen only below the plain estimate."""
    graph = _graph(p)
    hw = CONFIGS["npu-s"]
    (op,) = graph.ops
    assert isinstance(op, NpuConv2d)
    try:
        variant, ests = choose(op, hw, hw.sram_bytes)
        compiled, _ = compile_and_check(graph, hw, np.random.default_rng(p["seed"] + 2))
    except UnsupportedError:
        assume(False)
    if variant is None:
        assert len(compiled.ops) == 1
    else:
        assert ests[variant] < ests["plain"] * (1 - MIN_GAIN)
        assert [s.name for s in compiled.ops] == ["conv.taps", "conv"]


def test_first_layer_is_packed_and_exact() -> None:
    """A 3-channel 7x7/2 first layer (ResNet-50 conv1 in small) is packed; results unchanged."""
    rng = np.random.default_rng(11)
    x = tensor("x", (1, 40, 36, 3), "int8", -7)
    op = conv(rng, x, cout=40, kernel=(7, 7), stride=(2, 2), padding=(3, 3, 3, 3))
    graph = NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,))
    hw = CONFIGS["npu-s"]
    assert eligible(op, hw)
    assert len(pack_graph(graph, hw, hw.sram_bytes).ops) == 2
    packed_prog, _ = compile_and_check(graph, hw, np.random.default_rng(1))
    plain = compile_npu_graph(graph, hw, tap_packing=False)
    assert packed_prog.ops[0].kind == "NpuIm2col"
    assert packed_prog.est_cycles < plain.est_cycles


def test_wide_input_and_depthwise_are_not_eligible() -> None:
    rng = np.random.default_rng(2)
    hw = CONFIGS["npu-s"]
    wide = conv(rng, tensor("x", (1, 8, 8, 16), "int8"), cout=8, kernel=(3, 3))
    dw = conv(rng, tensor("x", (1, 8, 8, 3), "int8"), cout=3, kernel=(3, 3), depthwise=True)
    one = conv(rng, tensor("x", (1, 8, 8, 3), "int8"), cout=8, kernel=(1, 1))
    assert not any(eligible(op, hw) for op in (wide, dw, one))


def test_im2col_validate_names_the_op() -> None:
    x = tensor("x", (1, 6, 6, 3), "int8")
    bad = NpuIm2col(name="g", ifm=x, ofm=tensor("t", (1, 4, 4, 26), "int8"), kernel=(3, 3))
    with pytest.raises(InvalidInputError, match=r"'g'.*ofm shape"):
        bad.validate()
    with pytest.raises(InvalidInputError, match=r"'g'.*padding"):
        dataclasses.replace(bad, padding=(3, 0, 0, 0)).validate()
    with pytest.raises(UnsupportedError, match="'g'"):
        dataclasses.replace(bad, ofm=tensor("t", (1, 4, 4, 27), "int8", 1)).validate()


def _step(unit: Unit, tag: str, dram: tuple[int, int], write: bool) -> Step:
    return Step(
        "dma_store" if write else "dma_load", unit, {}, (Access("dram", *dram, write),), tag
    )


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    reads=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 60)), max_size=12),
    lookahead=st.integers(0, 3),
)
def test_interleave_keeps_each_order_and_every_read_after_its_writes(
    rows: list[int], reads: list[tuple[int, int]], lookahead: int
) -> None:
    """Merging keeps both step orders and puts each packed read after the writes it overlaps."""
    gather, at = [], 0
    for i, n in enumerate(rows):  # gather stores ascending rows of the packed tensor at [0, at)
        gather.append(_step(Unit.DMA_OUT, f"g{i}", (at, at + n), True))
        at += n
    conv = [_step(Unit.DMA_IN, f"c{i}", (lo, lo + n), False) for i, (lo, n) in enumerate(reads)]
    merged = interleave(gather, conv, 0, at, lookahead)
    assert [s for s in merged if s.tag.startswith("g")] == gather
    assert [s for s in merged if s.tag.startswith("c")] == conv
    pos = {s.tag: i for i, s in enumerate(merged)}
    for c in conv:
        (r,) = c.accesses
        for g in gather:
            (w,) = g.accesses
            if w.lo < r.hi and r.lo < w.hi:
                assert pos[g.tag] < pos[c.tag]


def test_packed_first_layer_feeds_the_pool_from_sram() -> None:
    """conv1 (tap-packed) -> max pool -> 1x1: conv1's output stays in SRAM for the pool."""
    rng = np.random.default_rng(12)
    x = tensor("x", (1, 40, 36, 3), "int8", -7)
    c1 = conv(rng, x, cout=32, kernel=(7, 7), stride=(2, 2), padding=(3, 3, 3, 3), ofm_name="y1")
    p = pool(rng, c1.ofm, op="max", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1))
    head = conv(rng, p.ofm, cout=16, kernel=(1, 1), name="head", ofm_name="z")
    graph = NpuGraph(ops=(c1, p, head), inputs=(x,), outputs=(head.ofm,))
    hw = CONFIGS["npu-s"]
    compiled, _ = compile_and_check(graph, hw, np.random.default_rng(3))
    assert [s.kind for s in compiled.ops][:2] == ["NpuIm2col", "NpuTapConv2d"]
    assert compiled.cascade is not None and "y1" in compiled.cascade.names
    assert "output stays in SRAM for pool" in compiled.ops[1].sram_resident
    off = compile_npu_graph(graph, hw, cascade=False)
    saved = sum(o.dram_bytes for o in off.ops[:3]) - sum(o.dram_bytes for o in compiled.ops[:3])
    assert saved >= 2 * c1.ofm.nbytes  # neither stored by conv1 nor loaded by the pool

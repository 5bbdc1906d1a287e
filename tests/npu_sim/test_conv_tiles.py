"""Tiled convolution: bounded working memory, and tiled == untiled bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from npuc.cli.main import main
from npuc.core.hw.config import NPU_M
from npuc.core.isa.builder import ProgramBuilder
from npuc.npu_sim import conv_tiles
from npuc.npu_sim import functional as fn
from npuc.npu_sim.conv_tiles import Geometry, tiles
from tests.tooling.fuzz import time_bound


@st.composite
def geometries(draw: st.DrawFn) -> Geometry:
    in_hw = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, 9)) for _ in range(4))
    out_hw = fn.conv_out_hw(in_hw, kernel, stride, dilation, pads)  # type: ignore[arg-type]
    assume(out_hw[0] >= 1 and out_hw[1] >= 1)
    return Geometry(in_hw, out_hw, kernel, stride, dilation, pads)  # type: ignore[arg-type]


def _reaches_input(geo: Geometry, oy: int, ox: int) -> bool:
    """Brute force: does some tap of output (oy, ox) read a real input pixel?"""
    rows = {oy * geo.stride[0] + ky * geo.dilation[0] - geo.pads[0] for ky in range(geo.kernel[0])}
    cols = {ox * geo.stride[1] + kx * geo.dilation[1] - geo.pads[1] for kx in range(geo.kernel[1])}
    return any(0 <= r < geo.in_hw[0] for r in rows) and any(0 <= c < geo.in_hw[1] for c in cols)


@settings(max_examples=200, deadline=None)
@given(geo=geometries(), budget=st.integers(1, 64))
def test_tiles_cover_every_position_that_sees_input_once(geo: Geometry, budget: int) -> None:
    old = conv_tiles.WORK_ELEMENTS
    conv_tiles.WORK_ELEMENTS = budget
    try:
        covered = np.zeros(geo.out_hw, dtype=np.int64)
        for t in tiles(geo, geo.kernel[0] * geo.kernel[1], 1):
            covered[slice(*t.oy), slice(*t.ox)] += 1
            for oy in range(*t.oy):  # no tap that reads input is left out
                for ky in range(geo.kernel[0]):
                    row = oy * geo.stride[0] + ky * geo.dilation[0] - geo.pads[0]
                    assert not 0 <= row < geo.in_hw[0] or t.ky[0] <= ky < t.ky[1]
            for ox in range(*t.ox):
                for kx in range(geo.kernel[1]):
                    col = ox * geo.stride[1] + kx * geo.dilation[1] - geo.pads[1]
                    assert not 0 <= col < geo.in_hw[1] or t.kx[0] <= kx < t.kx[1]
    finally:
        conv_tiles.WORK_ELEMENTS = old
    want = np.array(
        [
            [_reaches_input(geo, oy, ox) for ox in range(geo.out_hw[1])]
            for oy in range(geo.out_hw[0])
        ]
    )
    assert covered.max() <= 1  # no position twice
    assert not (want & (covered == 0)).any()  # skipped positions see only padding


@settings(max_examples=120, deadline=None)
@given(geo=geometries(), data=st.data())
def test_tiled_equals_untiled_bit_for_bit(geo: Geometry, data: st.DataObject) -> None:
    depthwise = data.draw(st.booleans())
    cin = data.draw(st.integers(1, 4))
    cout = cin * data.draw(st.integers(1, 2)) if depthwise else data.draw(st.integers(1, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-32768, 32768, (*geo.in_hw, cin)).astype(np.int16)
    w = rng.integers(-128, 128, (cout, *geo.kernel, 1 if depthwise else cin)).astype(np.int8)
    bias = rng.integers(-32768, 32768, cout).astype(np.int16)
    args = dict(
        bias_shift=data.draw(st.integers(0, 16)),
        ifm_zp=data.draw(st.integers(-32768, 32767)),
        stride=geo.stride,
        dilation=geo.dilation,
        pads=geo.pads,
        depthwise=depthwise,
    )
    whole, whole_flag = fn.conv_accumulate(x, w, bias, **args)  # type: ignore[arg-type]
    old = conv_tiles.WORK_ELEMENTS
    conv_tiles.WORK_ELEMENTS = data.draw(st.integers(1, 40))
    try:
        tiled, tiled_flag = fn.conv_accumulate(x, w, bias, **args)  # type: ignore[arg-type]
    finally:
        conv_tiles.WORK_ELEMENTS = old
    np.testing.assert_array_equal(tiled, whole, strict=True)
    assert tiled_flag == whole_flag


@pytest.mark.parametrize("depthwise", [False, True])
def test_huge_padded_kernel_over_one_pixel(depthwise: bool) -> None:
    """1x1 input, 255x255 kernel, padding 254: a whole im2col would be 31.5 GiB.

    Each output position sees the single pixel through exactly one tap:
    acc[oy, ox] = (x - zp) * w[254 - oy, 254 - ox] + bias << shift.
    """
    rng = np.random.default_rng(7)
    x = np.array([[[-77]]], dtype=np.int8)
    w = rng.integers(-128, 128, (1, 255, 255, 1)).astype(np.int8)
    bias = np.array([1234], dtype=np.int16)
    acc, overflow = fn.conv_accumulate(
        x,
        w,
        bias,
        bias_shift=3,
        ifm_zp=5,
        stride=(1, 1),
        dilation=(1, 1),
        pads=(254, 254, 254, 254),
        depthwise=depthwise,
    )
    want = (-77 - 5) * w[0, ::-1, ::-1, 0].astype(np.int64) + (1234 << 3)
    np.testing.assert_array_equal(acc[..., 0], want, strict=True)
    assert not overflow


def test_tiles_of_the_huge_case_stay_within_the_budget() -> None:
    geo = Geometry((1, 1), (255, 255), (255, 255), (1, 1), (1, 1), (254, 254, 254, 254))
    count = 0
    for t in tiles(geo, 255 * 255, 1):
        count += 1
        im2col = t.positions * (t.ky[1] - t.ky[0]) * (t.kx[1] - t.kx[0])
        assert im2col <= conv_tiles.WORK_ELEMENTS
        assert geo.slab_elements(t, 1) <= conv_tiles.WORK_ELEMENTS
    assert count > 0


def test_huge_padded_conv_program_simulates_through_the_cli(tmp_path: Path) -> None:
    """The handed case's kind end to end: a valid program, `npuc sim`, exact outputs."""
    rng = np.random.default_rng(11)
    weights = rng.integers(-128, 128, (1, 255, 255, 1)).astype(np.int8)
    b = ProgramBuilder(NPU_M)
    w = b.constant("w", weights)
    x = b.input("x", (1, 1, 1, 1), "int8", scale=1.0)
    y = b.output("y", (1, 255, 255, 1), "int8", scale=1.0)
    x_s, w_s, y_s = b.sram("x_s", 64), b.sram("w_s", 255 * 255), b.sram("y_s", 255 * 255)
    b.emit("dma_load", dram_addr=w, sram_addr=w_s, row_bytes=255 * 255)
    b.emit("dma_load", dram_addr=x, sram_addr=x_s, row_bytes=1, signal="mac")
    geometry = dict(ifm_h=1, ifm_w=1, ifm_c=1, ofm_h=255, ofm_w=255, ofm_c=1, kh=255, kw=255)
    pads = dict(pad_top=254, pad_left=254, pad_bottom=254, pad_right=254)
    b.emit(
        "conv", ifm_addr=x_s, ifm_dtype="int8", ofm_addr=y_s, ofm_dtype="int8", w_addr=w_s,
        ofm_multiplier=1, post_shift=0, wait="dma_in", signal="dma_out", **geometry, **pads,
    )  # fmt: skip
    b.emit("dma_store", dram_addr=y, sram_addr=y_s, row_bytes=255 * 255, wait="mac")
    program = tmp_path / "p.npub"
    b.build().save(program)
    np.save(tmp_path / "x.npy", np.full((1, 1, 1, 1), -2, np.int8))
    argv = ["sim", str(program), "--input", f"x={tmp_path / 'x.npy'}"]
    with time_bound(120.0):
        assert main([*argv, "--output", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as out:
        want = np.clip(-2 * weights[0, ::-1, ::-1, 0].astype(np.int64), -128, 127)
        np.testing.assert_array_equal(out["y"][0, :, :, 0], want.astype(np.int8), strict=True)

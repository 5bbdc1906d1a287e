"""Tiled pooling: bounded time and memory, and bit-exact with the golden model (core/intref)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from npuc.cli.main import main
from npuc.core import intref
from npuc.core.hw.config import NPU_L
from npuc.core.isa.builder import ProgramBuilder
from npuc.npu_sim import conv_tiles
from npuc.npu_sim import functional as fn
from npuc.npu_sim.conv_tiles import Geometry, pool_tiles
from tests.tooling.fuzz import time_bound

DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16}


@st.composite
def pool_geometries(draw: st.DrawFn) -> Geometry:
    in_hw = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    kernel = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, 8)) for _ in range(4))
    out_hw = fn.conv_out_hw(in_hw, kernel, stride, (1, 1), pads)  # type: ignore[arg-type]
    assume(out_hw[0] >= 1 and out_hw[1] >= 1)
    return Geometry(in_hw, out_hw, kernel, stride, (1, 1), pads)  # type: ignore[arg-type]


def _golden(kind: str, x: np.ndarray, geo: Geometry, q: dict[str, int], dtype: str) -> np.ndarray:
    info = np.iinfo(DTYPES[dtype])
    common = dict(kernel=geo.kernel, stride=geo.stride, pads=geo.pads, ofm_dtype=dtype)
    act = dict(act_min=int(info.min), act_max=int(info.max))
    if kind == "max":
        return intref.max_pool(x, **common, **act)  # type: ignore[arg-type]
    y, _ = intref.avg_pool(x, **common, **act, **q)  # type: ignore[arg-type]
    return y


@settings(max_examples=150, deadline=None)
@given(
    geo=pool_geometries(),
    kind=st.sampled_from(["max", "avg"]),
    dtype=st.sampled_from(sorted(DTYPES)),
    work=st.integers(1, 64),
    data=st.data(),
)
def test_tiled_pool_equals_the_golden_model(
    geo: Geometry, kind: str, dtype: str, work: int, data: st.DataObject
) -> None:
    info = np.iinfo(DTYPES[dtype])
    c = data.draw(st.integers(1, 4))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(info.min, int(info.max) + 1, (*geo.in_hw, c)).astype(DTYPES[dtype])
    q = dict(
        ifm_zp=data.draw(st.integers(int(info.min), int(info.max))),
        ofm_zp=data.draw(st.integers(int(info.min), int(info.max))),
        ofm_multiplier=data.draw(st.integers(0, 1 << 15)),
        post_shift=data.draw(st.integers(0, 24)),
    )
    old = conv_tiles.POOL_WORK
    conv_tiles.POOL_WORK = work  # many small tiles, each with its own taps
    try:
        y, _ = fn.pool(kind, x, kernel=geo.kernel, stride=geo.stride, pads=geo.pads, **q)
    finally:
        conv_tiles.POOL_WORK = old
    got = fn.store_as(y, int(info.min), int(info.max), np.dtype(DTYPES[dtype]))
    want = _golden(kind, x, geo, q, dtype)
    np.testing.assert_array_equal(got, want.astype(DTYPES[dtype]), strict=True)


@settings(max_examples=100, deadline=None)
@given(geo=pool_geometries(), work=st.integers(1, 64), c=st.integers(1, 3))
def test_pool_tiles_cover_each_position_once_within_the_work_bound(
    geo: Geometry, work: int, c: int
) -> None:
    old = conv_tiles.POOL_WORK
    conv_tiles.POOL_WORK = work
    try:
        covered = np.zeros(geo.out_hw, dtype=np.int64)
        for t in pool_tiles(geo, c):
            covered[slice(*t.oy), slice(*t.ox)] += 1
            taps = (t.ky[1] - t.ky[0]) * (t.kx[1] - t.kx[0])
            assert t.positions == 1 or t.positions * taps * c <= work
    finally:
        conv_tiles.POOL_WORK = old
    assert covered.max() <= 1


def test_avg_pool_sum_overflow_is_flagged_like_the_golden_model() -> None:
    x = np.full((182, 182, 1), 32767, dtype=np.int16)  # 182 * 182 * 65535 > 2**31
    q = dict(ifm_zp=-32768, ofm_zp=0, ofm_multiplier=1, post_shift=0)
    y, overflow = fn.pool("avg", x, kernel=(182, 182), stride=(1, 1), pads=(0, 0, 0, 0), **q)
    _, want_overflow = intref.avg_pool(
        x, kernel=(182, 182), stride=(1, 1), pads=(0, 0, 0, 0), act_min=-32768, act_max=32767,
        ofm_dtype="int16", **q,
    )  # fmt: skip
    assert overflow and want_overflow
    np.testing.assert_array_equal(y, np.full((1, 1, 1), 2**31 - 1, dtype=np.int64), strict=True)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_huge_padded_window_over_one_pixel(kind: str) -> None:
    """1x1x64 input, 255x255 window, padding 254: every window holds the one pixel.

    Max: the pixel itself (padding is skipped). Avg: the padding counts as
    ifm_zp, so the sum is ``x - ifm_zp`` and the output its requantized value.
    """
    x = np.random.default_rng(3).integers(-128, 128, (1, 1, 64)).astype(np.int8)
    q = dict(ifm_zp=3, ofm_zp=-2, ofm_multiplier=1 << 14, post_shift=15)
    pads = (254, 254, 254, 254)
    with time_bound(60.0):
        y, overflow = fn.pool(kind, x, kernel=(255, 255), stride=(1, 1), pads=pads, **q)
    d = x[0, 0].astype(np.int64) - 3
    pixel = x[0, 0].astype(np.int64) if kind == "max" else ((d << 14) + (1 << 14)) >> 15
    pixel = pixel if kind == "max" else pixel - 2
    np.testing.assert_array_equal(y, np.broadcast_to(pixel, (255, 255, 64)), strict=True)
    assert not overflow


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_huge_padded_pool_program_simulates_through_the_cli(tmp_path: Path, kind: str) -> None:
    """A valid program with a 255x255 pool window over a padded 1x1x64 input, `npuc sim`."""
    b = ProgramBuilder(NPU_L)  # 4 MiB SRAM holds the 255x255x64 output
    x = b.input("x", (1, 1, 1, 64), "int8", scale=1.0)
    y = b.output("y", (1, 255, 255, 64), "int8", scale=1.0)
    out_bytes = 255 * 255 * 64
    x_s, y_s = b.sram("x_s", 64), b.sram("y_s", out_bytes)
    b.emit("dma_load", dram_addr=x, sram_addr=x_s, row_bytes=64, signal="itp")
    geometry = dict(ifm_h=1, ifm_w=1, ifm_c=64, ofm_h=255, ofm_w=255, kh=255, kw=255)
    pads = dict(pad_top=254, pad_left=254, pad_bottom=254, pad_right=254)
    b.emit(
        "pool", op=kind, ifm_addr=x_s, ifm_dtype="int8", ofm_addr=y_s, ofm_dtype="int8",
        ofm_multiplier=1, post_shift=0, wait="dma_in", signal="dma_out", **geometry, **pads,
    )  # fmt: skip
    b.emit("dma_store", dram_addr=y, sram_addr=y_s, row_bytes=out_bytes, wait="itp")
    program = tmp_path / "p.npub"
    b.build().save(program)
    pixel = np.arange(-32, 32, dtype=np.int8)
    np.save(tmp_path / "x.npy", pixel.reshape(1, 1, 1, 64))
    argv = ["sim", str(program), "--input", f"x={tmp_path / 'x.npy'}"]
    with time_bound(120.0):
        assert main([*argv, "--output", str(tmp_path / "y.npz")]) == 0
    with np.load(tmp_path / "y.npz") as out:
        want = np.broadcast_to(pixel, (1, 255, 255, 64))  # avg: M=1, shift 0, zps 0
        np.testing.assert_array_equal(out["y"], want, strict=True)

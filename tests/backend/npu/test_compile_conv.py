"""Convolutions compiled for the NPU == the integer reference, bit for bit, tiled or not."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from npuc.backend.npu.ops import NpuGraph
from npuc.core.errors import UnsupportedError
from tests.backend.npu.graphs import CONFIGS, compile_and_check, conv, pool, tensor

KINDS = ("regular", "depthwise", "strided", "dilated", "padded", "fc")


@st.composite
def conv_layers(draw: st.DrawFn, kind: str | None = None) -> dict:
    kind = kind or draw(st.sampled_from(KINDS))
    p: dict = {"kind": kind, "seed": draw(st.integers(0, 2**32 - 1))}
    if kind == "fc":
        p.update(
            h=1,
            w=1,
            cin=draw(st.integers(1, 80)),
            cout=draw(st.integers(1, 40)),
            kernel=(1, 1),
            stride=(1, 1),
            dilation=(1, 1),
            padding=(0, 0, 0, 0),
        )
        return p
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if kind == "strided" else (1, 1)
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if kind == "dilated" else (1, 1)
    ext = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    if kind in ("padded", "depthwise", "dilated"):
        padding = (
            draw(st.integers(0, ext[0] - 1)),
            draw(st.integers(0, ext[1] - 1)),
            draw(st.integers(0, ext[0] - 1)),
            draw(st.integers(0, ext[1] - 1)),
        )
    else:
        padding = (0, 0, 0, 0)
    h = draw(st.integers(max(1, ext[0] - padding[0] - padding[2]), 14))
    w = draw(st.integers(max(1, ext[1] - padding[1] - padding[3]), 14))
    cin = draw(st.integers(1, 40))
    cout = cin * draw(st.integers(1, 2)) if kind == "depthwise" else draw(st.integers(1, 40))
    p.update(
        h=h,
        w=w,
        cin=cin,
        cout=cout,
        kernel=(kh, kw),
        stride=stride,
        dilation=dilation,
        padding=padding,
        dtype=draw(st.sampled_from(["int8", "uint8", "int16"])),
    )
    return p


def _graph(p: dict) -> NpuGraph:
    rng = np.random.default_rng(p["seed"])
    dtype = p.get("dtype", "int8")
    zp = 0 if dtype == "int16" else int(rng.integers(-5, 5)) + (128 if dtype == "uint8" else 0)
    x = tensor("x", (1, p["h"], p["w"], p["cin"]), dtype, zp)
    op = conv(
        rng,
        x,
        cout=p["cout"],
        kernel=p["kernel"],
        stride=p["stride"],
        dilation=p["dilation"],
        padding=p["padding"],
        depthwise=p["kind"] == "depthwise",
        per_channel=bool(rng.integers(0, 2)),
        bias=bool(rng.integers(0, 4)),
    )
    return NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,))


def _check(p: dict, config: str, budget_fraction: float | None) -> None:
    graph = _graph(p)
    hw = CONFIGS[config]
    budget = None if budget_fraction is None else int(hw.sram_bytes * budget_fraction)
    try:
        compile_and_check(graph, hw, np.random.default_rng(p["seed"] + 1), sram_budget=budget)
    except UnsupportedError:
        assume(False)  # this layer does not fit this SRAM at all (no width tiling yet)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("config", sorted(CONFIGS))
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_conv_matches_reference(kind: str, config: str, data: st.DataObject) -> None:
    _check(data.draw(conv_layers(kind)), config, None)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(p=conv_layers(), fraction=st.floats(0.05, 1.0))
def test_tiled_equals_untiled_under_random_sram_budgets(p: dict, fraction: float) -> None:
    """Any SRAM budget gives the reference's result (and so the untiled one)."""
    _check(p, "npu-s", fraction)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(p=conv_layers(), config=st.sampled_from(sorted(CONFIGS)), fraction=st.floats(0.02, 1.0))
def test_conv_many_shapes_slow(p: dict, config: str, fraction: float) -> None:
    _check(p, config, fraction)


def test_tiny_sram_forces_tiling_and_stays_exact() -> None:
    """A 3x3 conv that cannot fit the tiny config untiled is split into bands and blocks."""
    rng = np.random.default_rng(7)
    x = tensor("x", (1, 20, 20, 24), "int8", -3)
    op = conv(rng, x, cout=48, kernel=(3, 3), padding=(1, 1, 1, 1))
    graph = NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,))
    compiled, result = compile_and_check(graph, CONFIGS["npu-tiny"], rng)
    stats = compiled.ops[0]
    assert stats.sram_peak_bytes <= CONFIGS["npu-tiny"].sram_bytes
    assert "1 band(s)" not in stats.tiling
    assert result.stats.sram_peak_bytes <= CONFIGS["npu-tiny"].sram_bytes


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize(
    ("lut_in_dtype", "ofm_dtype", "bits"),
    [("int8", "int8", 8), ("uint8", "int16", 8), ("int16", "int8", 6)],
)
def test_conv_with_fused_lut(config: str, lut_in_dtype: str, ofm_dtype: str, bits: int) -> None:
    """The output stage's table lookup replaces the clamp, tiled or not."""
    rng = np.random.default_rng(bits)
    x = tensor("x", (1, 11, 9, 20), "int8", 3)
    base = conv(rng, x, cout=36, kernel=(3, 3), padding=(1, 1, 1, 1))
    entries = (1 << bits) + 1 if lut_in_dtype == "int16" else 256
    lo, hi = (-128, 127) if ofm_dtype == "int8" else (-32768, 32767)
    op = dataclasses.replace(
        base,
        ofm=tensor("y", base.ofm.shape, ofm_dtype, 0),
        act_min=lo,
        act_max=hi,
        post_shift=base.post_shift - (8 if lut_in_dtype == "int16" else 0),
        lut=rng.integers(lo, hi + 1, entries).astype(ofm_dtype),
        lut_in_dtype=lut_in_dtype,
        lut_bits=bits,
        lut_x_min=-32768,
        lut_f=16 - bits if lut_in_dtype == "int16" else 8,
    )
    graph = NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,))
    compile_and_check(graph, CONFIGS[config], rng)


@pytest.mark.parametrize("kind", ["conv", "dilated", "depthwise", "pool"])
def test_wide_layer_splits_columns_on_tiny_sram(kind: str) -> None:
    """No full-width band fits 16 KiB, so the columns are split too (with halos), exactly."""
    rng = np.random.default_rng(3)
    x = tensor("x", (1, 7, 301, 16), "int8", -1)
    if kind == "pool":
        op = pool(rng, x, op="avg", kernel=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1))
    else:
        op = conv(
            rng,
            x,
            cout=16,
            kernel=(3, 3),
            padding=(2, 1, 2, 2) if kind == "dilated" else (1, 1, 1, 1),
            dilation=(2, 2) if kind == "dilated" else (1, 1),
            stride=(1, 2),
            depthwise=kind == "depthwise",
        )
    graph = NpuGraph(ops=(op,), inputs=(x,), outputs=(op.ofm,))
    compiled, _ = compile_and_check(graph, CONFIGS["npu-tiny"], rng)
    assert "column block(s)" in compiled.ops[0].tiling

"""Cycle counts: hand-computed single instructions and schedules, and monotonicity.

npu-m: 32x32 array, fill 64, 16 B/cycle DRAM, latency 100, 64-B bursts,
32 ITP lanes, ITP fill 8.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core.hw.config import NPU_M, NPU_S
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.isa.instructions import make
from npuc.npu_sim import simulate
from npuc.npu_sim.timing import instruction_cycles


def conv(**kw: int):  # type: ignore[no-untyped-def]
    base = dict(
        ifm_addr=0,
        ifm_h=8,
        ifm_w=8,
        ifm_c=16,
        ifm_dtype=0,
        ofm_addr=0x10000,
        ofm_h=8,
        ofm_w=8,
        ofm_c=32,
        ofm_dtype=0,
        w_addr=0x20000,
        post_shift=0,
    )
    base.update(kw)
    return make("conv", **base)


@pytest.mark.parametrize(
    ("ins", "cycles"),
    [
        # 1 KiB contiguous: 100 + 1024/16
        (make("dma_load", dram_addr=0, sram_addr=0, row_bytes=1024), 164),
        # 16 runs of 16 B: each billed as a 64-B burst -> 100 + 16*64/16, as slow as 1 KiB
        (
            make(
                "dma_load",
                dram_addr=0,
                sram_addr=0,
                row_bytes=16,
                row_count=16,
                dram_row_stride_bytes=64,
                sram_row_stride_bytes=16,
            ),
            164,
        ),
        # 10 x 10 runs of 100 B: 100 + ceil(10000/16)
        (
            make(
                "dma_store",
                dram_addr=0,
                sram_addr=0,
                row_bytes=100,
                row_count=10,
                plane_count=10,
                dram_row_stride_bytes=100,
                dram_plane_stride_bytes=1000,
                sram_row_stride_bytes=100,
                sram_plane_stride_bytes=1000,
            ),
            725,
        ),
        # 3x3 conv 16->32 on 8x8: folds 1*1*9, each max(64, 32) = 64, + fill 64
        (conv(kh=3, kw=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1), 640),
        # 1x1 conv 64->64 on 4x4: folds 2*2, each max(16, 32) = 32 (weight load bound), + 64
        (conv(ifm_h=4, ifm_w=4, ifm_c=64, ofm_h=4, ofm_w=4, ofm_c=64), 192),
        # int16 activations: stream doubles to 128 per fold
        (
            conv(kh=3, kw=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1, ifm_dtype=2),
            64 + 9 * 128,
        ),
        # depthwise 64 channels 3x3: folds ceil(64/32)*9 = 18, each 64
        (
            conv(
                kh=3,
                kw=3,
                pad_top=1,
                pad_left=1,
                pad_bottom=1,
                pad_right=1,
                ifm_c=64,
                ofm_c=64,
                depthwise=1,
            ),
            64 + 18 * 64,
        ),
        # batch-1 FC 256 -> 100: folds 4*8, each max(1, 32): weight loading dominates
        (
            make(
                "fc",
                ifm_addr=0,
                ifm_n=1,
                ifm_k=256,
                ifm_dtype=0,
                ofm_addr=4096,
                ofm_c=100,
                ofm_dtype=0,
                w_addr=8192,
                post_shift=0,
            ),
            64 + 32 * 32,
        ),
        (
            make(
                "eltwise",
                op=0,
                ifm_addr=0,
                ifm_dtype=0,
                ifm2_addr=0,
                ifm2_dtype=0,
                ofm_addr=0,
                ofm_dtype=0,
                count=1000,
                ifm_zp=0,
                ifm2_zp=0,
                ofm_zp=0,
                ifm_multiplier=1,
                post_shift=0,
            ),
            8 + 32,
        ),
        (
            make("lut", ifm_addr=0, ifm_dtype=0, ofm_addr=0, ofm_dtype=0, count=1000, lut_addr=0),
            8 + 32,
        ),
        # int16 LUT interpolates at half rate: ceil(2000/32)
        (
            make(
                "lut",
                ifm_addr=0,
                ifm_dtype=2,
                ofm_addr=0,
                ofm_dtype=2,
                count=1000,
                lut_addr=0,
                lut_bits=6,
            ),
            8 + 63,
        ),
        # 2x2/2 pool 8x8x16 -> 4x4x16: 256 outputs * 4 taps / 32 lanes
        (
            make(
                "pool",
                op=0,
                ifm_addr=0,
                ifm_h=8,
                ifm_w=8,
                ifm_c=16,
                ifm_dtype=0,
                ofm_addr=0,
                ofm_h=4,
                ofm_w=4,
                ofm_dtype=0,
                kh=2,
                kw=2,
                stride_h=2,
                stride_w=2,
            ),
            8 + 32,
        ),
        (make("sync", unit=2), 1),
        (make("end"), 0),
    ],
)
def test_hand_computed_instruction_cycles(ins, cycles: int) -> None:  # type: ignore[no-untyped-def]
    assert instruction_cycles(ins, NPU_M) == cycles


def test_preset_changes_cost() -> None:
    # npu-s: 16x16 array, fill 32: folds ceil(32/16)*ceil(16/16)*9 = 18, each max(64, 16)
    ins = conv(kh=3, kw=3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1)
    assert instruction_cycles(ins, NPU_S) == 32 + 18 * 64


def _pipeline_program() -> ProgramBuilder:
    """load x (1 KiB) -> conv 1x1 16->16 on 8x8 -> store, plus an unrelated 2 KiB load."""
    b = ProgramBuilder(NPU_M)
    w_addr = b.constant("w", np.eye(16, dtype=np.int8))
    x_addr = b.input("x", (8, 8, 16), "int8", scale=1.0)
    ofm_addr = b.output("y", (8, 8, 16), "int8", scale=1.0)
    b.emit(
        "dma_load",
        dram_addr=x_addr,
        sram_addr=0,
        row_bytes=1024,
        signal=0,
    )
    b.emit(
        "dma_load",
        dram_addr=w_addr,
        sram_addr=0x1000,
        row_bytes=256,
        signal=0b0010,  # in-order DMA_IN: the w load ending implies x loaded
    )
    b.emit(
        "conv",
        wait=0b0001,
        signal=0b1000,
        ifm_addr=0,
        ifm_h=8,
        ifm_w=8,
        ifm_c=16,
        ifm_dtype=0,
        ofm_addr=0x2000,
        ofm_h=8,
        ofm_w=8,
        ofm_c=16,
        ofm_dtype=0,
        w_addr=0x1000,
        ofm_multiplier=1,
        post_shift=0,
    )
    b.emit("dma_store", wait=0b0010, dram_addr=ofm_addr, sram_addr=0x2000, row_bytes=1024)
    b.emit("dma_load", dram_addr=x_addr, sram_addr=0x8000, row_bytes=2048 - 1024)
    return b


def test_tokens_serialise_units_and_units_overlap() -> None:
    b = _pipeline_program()
    x = np.arange(1024, dtype=np.int64).reshape(8, 8, 16) % 100
    result = simulate(b.build(), {"x": x.astype(np.int8)}, NPU_M, trace=True)
    events = {e["args"]["index"]: e["args"] for e in result.trace_events if e["ph"] == "X"}
    # DMA_IN: x 0..164, w 164..280 (100 + 256/16), third load 280..444 (100 + 1024/16)
    assert (events[0]["start_cycle"], events[0]["end_cycle"]) == (0, 164)
    assert (events[1]["start_cycle"], events[1]["end_cycle"]) == (164, 280)
    assert (events[4]["start_cycle"], events[4]["end_cycle"]) == (280, 444)
    # conv waits for the w load's token: 280 .. 280 + 64 + 1*max(64, 32)
    assert (events[2]["start_cycle"], events[2]["end_cycle"]) == (280, 408)
    assert events[2]["stall_cycles"] == 280
    # store waits for the conv: 408 .. 408 + 164; runs while DMA_IN is still busy
    assert (events[3]["start_cycle"], events[3]["end_cycle"]) == (408, 572)
    assert result.stats.total_cycles == 572
    mac = result.stats.units[1]
    assert (mac.busy_cycles, mac.stall_cycles, mac.idle_cycles) == (128, 280, 572 - 128 - 280)
    np.testing.assert_array_equal(result.outputs["y"], x.astype(np.int8), strict=True)
    assert result.stats.dram_read_bytes == 1024 + 256 + 1024
    assert result.stats.dram_written_bytes == 1024
    assert result.stats.macs == 64 * 16 * 16
    # SRAM high-water mark: the third load ends at 0x8000 + 1024
    assert result.stats.sram_peak_bytes == 0x8000 + 1024


@st.composite
def conv_fields(draw: st.DrawFn) -> dict[str, int]:
    return dict(
        ofm_h=draw(st.integers(1, 64)),
        ofm_w=draw(st.integers(1, 64)),
        ifm_c=draw(st.integers(1, 300)),
        ofm_c=draw(st.integers(1, 300)),
        kh=draw(st.integers(1, 7)),
        kw=draw(st.integers(1, 7)),
        ifm_dtype=draw(st.sampled_from([0, 2])),
    )


@settings(max_examples=300, deadline=None)
@given(
    conv_fields(), st.sampled_from(["ofm_h", "ofm_w", "ifm_c", "ofm_c", "kh", "kw", "ifm_dtype"])
)
def test_conv_cycles_never_decrease_when_work_grows(fields: dict[str, int], grow: str) -> None:
    # Geometry consistency does not matter to the cost model; it reads only these fields.
    small = conv(**{**fields, "ifm_h": fields["ofm_h"], "ifm_w": fields["ofm_w"]})
    bigger = dict(fields)
    bigger[grow] = 2 if grow == "ifm_dtype" else fields[grow] + 1
    large = conv(**{**bigger, "ifm_h": bigger["ofm_h"], "ifm_w": bigger["ofm_w"]})
    for hw in (NPU_S, NPU_M):
        assert instruction_cycles(large, hw) >= instruction_cycles(small, hw)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 5000),
    st.integers(1, 50),
    st.integers(1, 50),
    st.sampled_from(["run", "n1", "n2"]),
)
def test_dma_and_itp_cycles_never_decrease(run: int, n1: int, n2: int, grow: str) -> None:
    def dma(r: int, a: int, b: int) -> int:
        ins = make(
            "dma_load",
            dram_addr=0,
            sram_addr=0,
            row_bytes=r,
            row_count=a,
            plane_count=b,
            dram_row_stride_bytes=r,
            dram_plane_stride_bytes=r * a,
            sram_row_stride_bytes=r,
            sram_plane_stride_bytes=r * a,
        )
        return instruction_cycles(ins, NPU_M)

    grown = (run + (grow == "run"), n1 + (grow == "n1"), n2 + (grow == "n2"))
    assert dma(*grown) >= dma(run, n1, n2)
    count = run * n1

    def elt(n: int) -> int:
        return instruction_cycles(
            make(
                "requant",
                ifm_addr=0,
                ifm_dtype=0,
                ofm_addr=0,
                ofm_dtype=0,
                count=n,
                ofm_multiplier=1,
                post_shift=0,
            ),
            NPU_M,
        )

    assert elt(count + 1) >= elt(count)

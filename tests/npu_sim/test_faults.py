"""Every simulator fault has a program that triggers it; faults are SimulatorFault, not crashes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from npuc.core import intref
from npuc.core.errors import InvalidInputError, SimulatorFault
from npuc.core.hw.config import NPU_M, NPU_S
from npuc.core.isa.builder import ProgramBuilder
from npuc.npu_sim import simulate


def run(b: ProgramBuilder, inputs: dict[str, np.ndarray] | None = None, **kw):  # type: ignore[no-untyped-def]
    return simulate(b.build(), inputs or {}, b.hw, **kw)


def requant(**kw: int) -> dict[str, int]:
    base = dict(
        ifm_addr=0,
        ifm_dtype=0,
        ofm_addr=0x100,
        ofm_dtype=0,
        count=16,
        ofm_multiplier=1,
        post_shift=0,
    )
    base.update(kw)
    return base


def test_sram_out_of_range() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit("dma_load", dram_addr=0, sram_addr=NPU_M.sram_bytes - 10, row_bytes=64)
    with pytest.raises(
        SimulatorFault, match=r"instruction 0 \(dma_load\) destination: SRAM .* outside"
    ):
        run(b)


def test_dram_out_of_range() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit("dma_store", dram_addr=NPU_M.dram_bytes - 4, sram_addr=0, row_bytes=8)
    with pytest.raises(SimulatorFault, match=r"DRAM access .* outside"):
        run(b)


def test_strided_region_end_out_of_range() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit(
        "dma_load",
        dram_addr=0,
        sram_addr=0,
        row_bytes=64,
        row_count=2,
        sram_row_stride_bytes=NPU_M.sram_bytes,
    )
    with pytest.raises(SimulatorFault, match="outside"):
        run(b)


def test_misaligned_int16_operand() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit("requant", **requant(ifm_addr=1, ifm_dtype=2))
    with pytest.raises(SimulatorFault, match="not aligned to 2 bytes"):
        run(b)


def test_output_overlapping_input_faults_but_exact_in_place_is_allowed() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit("requant", **requant(ifm_addr=0, ofm_addr=8))  # partial overlap
    with pytest.raises(SimulatorFault, match=r"overlaps .* input"):
        run(b)
    b = ProgramBuilder(NPU_M)
    b.emit("requant", **requant(ifm_addr=0, ofm_addr=0, ofm_zp=3))  # exactly in place: fine
    run(b)
    b = ProgramBuilder(NPU_M)
    b.emit("requant", **requant(ifm_addr=0, ofm_addr=0, ofm_dtype=2))  # same address, other size
    with pytest.raises(SimulatorFault, match="overlaps"):
        run(b)


def test_conv_output_may_not_overlap_weights() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit(
        "conv",
        ifm_addr=0,
        ifm_h=4,
        ifm_w=4,
        ifm_c=8,
        ifm_dtype=0,
        ofm_addr=0x200,
        ofm_h=4,
        ofm_w=4,
        ofm_c=8,
        ofm_dtype=0,
        w_addr=0x210,
        ofm_multiplier=1,
        post_shift=0,
    )
    with pytest.raises(SimulatorFault, match=r"ofm .* overlaps instruction 0 \(conv\) weights"):
        run(b)


def test_dma_write_descriptor_writing_bytes_twice() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit(
        "dma_load",
        dram_addr=0,
        sram_addr=0,
        row_bytes=64,
        row_count=2,
        dram_row_stride_bytes=64,
        sram_row_stride_bytes=32,
    )
    with pytest.raises(SimulatorFault, match="writes some bytes twice"):
        run(b)


def test_multiplier_above_15_bits() -> None:
    b = ProgramBuilder(NPU_M)
    ofm_multiplier_addr = b.constant("m", np.full(8, 40000, dtype=np.uint16))
    b.emit("dma_load", dram_addr=ofm_multiplier_addr, sram_addr=0x400, row_bytes=16, signal=0b0010)
    b.emit(
        "conv",
        wait=1,
        ifm_addr=0,
        ifm_h=1,
        ifm_w=1,
        ifm_c=8,
        ifm_dtype=0,
        ofm_addr=0x200,
        ofm_h=1,
        ofm_w=1,
        ofm_c=8,
        ofm_dtype=0,
        w_addr=0x100,
        ofm_multiplier_per_channel=1,
        ofm_multiplier_addr=0x400,
        post_shift=0,
    )
    with pytest.raises(SimulatorFault, match="multiplier 40000 exceeds"):
        run(b)


def test_deadlock_names_blocked_instructions_and_tokens() -> None:
    b = ProgramBuilder(NPU_M)
    b.emit("sync", unit=1, wait=0b0100)  # MAC waits for ITP, which never signals
    b.emit("sync", unit=2, wait=0b0010)  # ITP waits for MAC: a cycle
    with pytest.raises(
        SimulatorFault, match=r"deadlock.*instruction 0 \(sync\) on MAC waits .* ITP"
    ):
        run(b)


def test_step_limit() -> None:
    b = ProgramBuilder(NPU_M)
    for _ in range(5):
        b.emit("sync", unit=2)
    run(b, max_steps=5)
    with pytest.raises(SimulatorFault, match="step limit: more than 4"):
        run(b, max_steps=4)


def test_data_race_without_token() -> None:
    b = ProgramBuilder(NPU_M)
    x = b.input("x", (256,), "int8", scale=1.0)
    b.emit("dma_load", dram_addr=x, sram_addr=0, row_bytes=256)  # no signal to the ITP
    b.emit("requant", **requant(ifm_addr=0, ofm_addr=0x1000, count=256))
    with pytest.raises(
        SimulatorFault, match=r"data race: .*requant.* input .*dma_load.* destination"
    ):
        run(b, {"x": np.zeros(256, np.int8)})
    # Interleaved but disjoint strided regions running concurrently are not a race.
    b = ProgramBuilder(NPU_M)
    b.emit(
        "dma_load",
        dram_addr=0,
        sram_addr=0,
        row_bytes=16,
        row_count=8,
        dram_row_stride_bytes=16,
        sram_row_stride_bytes=32,
    )
    b.emit(
        "dma_store",
        dram_addr=0x1000,
        sram_addr=16,
        row_bytes=16,
        row_count=8,
        dram_row_stride_bytes=16,
        sram_row_stride_bytes=32,
    )
    run(b)


def test_overflow_is_reported_or_faults_on_request() -> None:
    # Average pool over 182x182 int16 values at distance 65535 from the zero point:
    # the 32-bit window sum (33124 * 65535 > 2^31) saturates.
    b = ProgramBuilder(NPU_M)
    x = b.input("x", (182, 182, 1), "int16", scale=1.0)
    y = b.output("y", (1, 1, 1), "int16", scale=1.0)
    n = 182 * 182 * 2
    b.emit("dma_load", dram_addr=x, sram_addr=0, row_bytes=n, signal=0b0100)
    b.emit(
        "pool",
        wait=1,
        signal=0b1000,
        op=1,
        ifm_addr=0,
        ifm_h=182,
        ifm_w=182,
        ifm_c=1,
        ifm_dtype=2,
        ofm_addr=n,
        ofm_h=1,
        ofm_w=1,
        ofm_dtype=2,
        kh=182,
        kw=182,
        ifm_zp=-32768,
        ofm_multiplier=1,
        post_shift=0,
    )
    b.emit("dma_store", wait=0b0100, dram_addr=y, sram_addr=n, row_bytes=2)
    inputs = {"x": np.full((182, 182, 1), 32767, np.int16)}
    result = run(b, inputs)
    assert [(o.index, o.mnemonic) for o in result.overflow] == [(1, "pool")]
    assert result.stats.overflow_count == 1
    assert int(result.outputs["y"][0, 0, 0]) == 32767  # saturated sum, then saturated to int16
    with pytest.raises(SimulatorFault, match=r"instruction 1 \(pool\): saturation"):
        run(b, inputs, fault_on_overflow=True)


def test_accumulator_overflow_in_conv() -> None:
    # The 48-bit accumulator needs > 8.39M int16 taps at full scale (65535 * 128 each, plus the
    # bias 32767 << 31): a 128x128 kernel over 520 channels on a 32 MiB-SRAM device.
    hw = dataclasses.replace(NPU_M, name="big-sram", sram_bytes=32 << 20)
    side, cin = 128, 520
    k = side * side * cin
    assert 65535 * 128 * k + (32767 << 31) > (1 << 47) - 1
    b = ProgramBuilder(hw)
    w_addr = b.constant("w", np.full(k, -128, np.int8))
    bias_addr = b.constant("bias", np.array([32767], np.int16))
    x = b.input("x", (side, side, cin), "int16", scale=1.0)
    y = b.output("y", (1, 1, 1), "int16", scale=1.0)
    b.emit("dma_load", dram_addr=x, sram_addr=0, row_bytes=2 * k)
    b.emit("dma_load", dram_addr=w_addr, sram_addr=2 * k, row_bytes=k)
    b.emit("dma_load", dram_addr=bias_addr, sram_addr=3 * k, row_bytes=2, signal=0b0010)
    b.emit(
        "conv",
        wait=1,
        signal=0b1000,
        ifm_addr=0,
        ifm_h=side,
        ifm_w=side,
        ifm_c=cin,
        ifm_dtype=2,
        ofm_addr=3 * k + 64,
        ofm_h=1,
        ofm_w=1,
        ofm_c=1,
        ofm_dtype=2,
        w_addr=2 * k,
        kh=side,
        kw=side,
        has_bias=1,
        bias_addr=3 * k,
        bias_shift=31,
        ifm_zp=32767,
        ofm_multiplier=1,
        post_shift=0,
    )
    b.emit("dma_store", wait=0b0010, dram_addr=y, sram_addr=3 * k + 64, row_bytes=2)
    result = run(b, {"x": np.full((side, side, cin), -32768, np.int16)})
    assert [(o.index, o.mnemonic) for o in result.overflow] == [(3, "conv")]
    assert result.stats.overflow_count == 1
    # The accumulator saturates at +(2^47 - 1); the output stage of the instruction above
    # (pre_shift 0, sat32, M = 1, post_shift 0, ofm_zp 0, default clamp) then stores int16.
    stage = intref.OutputStage(
        pre_shift=0,
        post_shift=0,
        multipliers=np.array([1], np.uint16),
        ofm_zp=0,
        act_min=-32768,
        act_max=65535,
        ofm_dtype="int16",
    )
    expected = intref.apply_output_stage(np.array([[[[(1 << 47) - 1]]]], np.int64), stage)
    assert int(expected.reshape(())) == 32767  # 2^47 - 1 -> sat32 2^31 - 1 -> int16 32767
    np.testing.assert_array_equal(
        result.outputs["y"], expected.reshape(1, 1, 1).astype(np.int16), strict=True
    )


def test_program_for_another_config_is_refused() -> None:
    b = ProgramBuilder(NPU_S)
    b.emit("sync", unit=2)
    with pytest.raises(InvalidInputError, match="built for hardware config"):
        simulate(b.build(), {}, NPU_M)


def test_bad_inputs_are_input_errors() -> None:
    b = ProgramBuilder(NPU_M)
    b.input("x", (4, 4), "int8", scale=1.0)
    with pytest.raises(InvalidInputError, match="missing"):
        run(b, {})
    with pytest.raises(InvalidInputError, match="shape"):
        run(b, {"x": np.zeros((4, 5), np.int8)})
    with pytest.raises(InvalidInputError, match="quantized int8"):
        run(b, {"x": np.zeros((4, 4), np.float32)})
    with pytest.raises(InvalidInputError, match="outside the int8 range"):
        run(b, {"x": np.full((4, 4), 300)})
    run(b, {"x": np.full((4, 4), 100)})  # int64 values inside the range are accepted

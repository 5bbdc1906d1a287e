"""int16 LUT with a narrow domain (lut_x_min, lut_f fields): simulator vs integer reference.

Bit-exact through whole programs (the standalone LUT and the LUT fused into
FC), plus the field rules the assembler and loader enforce.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npuc.core import intref
from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import NPU_M
from npuc.core.isa.builder import ProgramBuilder
from npuc.core.isa.checks import check_instruction
from npuc.core.isa.instructions import make
from npuc.npu_sim import simulate

MAC, ITP, DMA_OUT = 0b0010, 0b0100, 0b1000
INT16 = 2


@settings(max_examples=60, deadline=None)
@given(
    lut_bits=st.integers(1, 10),
    x_min=st.integers(-32768, 32767),
    f=st.integers(0, 16),
    data=st.data(),
)
def test_lut_instruction_bit_exact(lut_bits: int, x_min: int, f: int, data: st.DataObject) -> None:
    entries = (1 << lut_bits) + 1
    table = np.array(
        data.draw(st.lists(st.integers(-32768, 32767), min_size=entries, max_size=entries)),
        np.int16,
    )
    x = np.array(data.draw(st.lists(st.integers(-32768, 32767), min_size=1, max_size=50)), np.int16)
    n = x.size
    b = ProgramBuilder(NPU_M)
    t_dram = b.constant("table", table)
    x_dram = b.input("x", (n,), "int16", scale=1.0)
    y_dram = b.output("y", (n,), "int16", scale=1.0)
    t_sram = 2 * n + (-2 * n % 64)
    y_sram = t_sram + 2 * entries + (-2 * entries % 64)
    b.emit("dma_load", dram_addr=x_dram, sram_addr=0, row_bytes=2 * n)
    b.emit("dma_load", dram_addr=t_dram, sram_addr=t_sram, row_bytes=2 * entries, signal=ITP)
    b.emit(
        "lut",
        wait=0b0001,
        signal=DMA_OUT,
        ifm_addr=0,
        ifm_dtype=INT16,
        ofm_addr=y_sram,
        ofm_dtype=INT16,
        count=n,
        lut_addr=t_sram,
        lut_bits=lut_bits,
        lut_x_min=x_min,
        lut_f=f,
    )
    b.emit("dma_store", wait=ITP, dram_addr=y_dram, sram_addr=y_sram, row_bytes=2 * n)
    got = simulate(b.build(), {"x": x}, b.hw).outputs["y"]
    expected = intref.saturate(
        intref.lut_lookup(x, table, in_dtype="int16", lut_bits=lut_bits, x_min=x_min, f=f),
        "int16",
    ).astype(np.int16)
    np.testing.assert_array_equal(got, expected, strict=True)


def test_fused_lut_in_fc_uses_the_domain_fields() -> None:
    rng = np.random.default_rng(5)
    k, cout, lut_bits, x_min, f = 16, 8, 4, -2000, 8  # table covers [-2000, 2096]
    x = rng.integers(-128, 128, (1, k)).astype(np.int8)
    w = rng.integers(-128, 128, (cout, k)).astype(np.int8)
    table = np.sort(rng.integers(-30000, 30000, (1 << lut_bits) + 1)).astype(np.int16)
    b = ProgramBuilder(NPU_M)
    w_dram, t_dram = b.constant("w", w), b.constant("table", table)
    x_dram = b.input("x", (1, k), "int8", scale=1.0)
    y_dram = b.output("y", (1, cout), "int16", scale=1.0)
    b.emit("dma_load", dram_addr=x_dram, sram_addr=0, row_bytes=k)
    b.emit("dma_load", dram_addr=w_dram, sram_addr=0x100, row_bytes=w.size)
    b.emit("dma_load", dram_addr=t_dram, sram_addr=0x200, row_bytes=table.nbytes, signal=MAC)
    fc = dict(
        ifm_addr=0,
        ifm_n=1,
        ifm_k=k,
        ifm_dtype=0,
        ofm_addr=0x300,
        ofm_c=cout,
        ofm_dtype=INT16,
        w_addr=0x100,
        ofm_multiplier=20000,
        post_shift=10,
        lut_en=1,
        lut_addr=0x200,
        lut_in_dtype=INT16,
        lut_bits=lut_bits,
        lut_x_min=x_min,
        lut_f=f,
    )
    b.emit("fc", wait=0b0001, signal=DMA_OUT, **fc)
    b.emit("dma_store", wait=MAC, dram_addr=y_dram, sram_addr=0x300, row_bytes=2 * cout)
    got = simulate(b.build(), {"x": x}, b.hw).outputs["y"]
    stage = intref.OutputStage(
        pre_shift=0,
        post_shift=10,
        multipliers=np.array([20000], np.uint16),
        ofm_zp=0,
        act_min=-32768,
        act_max=65535,
        ofm_dtype="int16",
        lut=table,
        lut_in_dtype="int16",
        lut_bits=lut_bits,
        lut_x_min=x_min,
        lut_f=f,
    )
    y, _ = intref.fully_connected(x, w, np.zeros(cout, np.int16), stage, bias_shift=0, ifm_zp=0)
    expected = y.astype(np.int16)
    np.testing.assert_array_equal(got, expected, strict=True)
    assert len(np.unique(expected)) > 1  # the inputs do span the table


def test_reference_interpolates_and_clamps_to_the_domain() -> None:
    # k = 2: 5 entries at x = -10, -2, 6, 14, 22 (f = 3, steps of 8)
    table = np.array([0, 100, 200, 300, 400], np.int16)
    x = np.array([-32768, -11, -10, -6, 21, 22, 23, 32767], np.int16)
    got = intref.lut_lookup(x, table, in_dtype="int16", lut_bits=2, x_min=-10, f=3)
    # -6: i 0, t 4 -> 0 + rshift_round(400, 3) = 50; 21: i 3, t 7 -> 300 + (700 + 4) >> 3 = 388
    np.testing.assert_array_equal(got, np.array([0, 0, 0, 50, 388, 400, 400, 400]), strict=True)


@pytest.mark.parametrize(("field", "value"), [("lut_x_min", 0), ("lut_f", 3), ("lut_bits", 4)])
def test_domain_fields_must_stay_default_for_8bit_tables(field: str, value: int) -> None:
    base = dict(ifm_addr=0, ifm_dtype=0, ofm_addr=64, ofm_dtype=0, count=4, lut_addr=128)
    check_instruction(make("lut", **base))
    with pytest.raises(InvalidInputError, match=f"{field} must be"):
        check_instruction(make("lut", **base, **{field: value}))

"""Cycle cost of one instruction (spec sections 3 and 6; formulas in docs/npu_isa.md).

Pure functions of the instruction's geometry and the hardware configuration;
the executor (``npu_sim.executor``) places these durations on the four unit
timelines. Choices where the spec leaves room (documented in docs/npu_sim.md):

- MAC: ``mac_pipeline_fill_cycles`` (a config field; presets: rows + cols)
  once per CONV/FC, then ``folds * max(stream, mac_rows)`` where ``stream`` is
  the output pixels (FC: rows ``ifm_n``), doubled for int16 activations (half
  rate): weight loading (``mac_rows`` cycles per fold) does not depend on the
  activation width, so only the streaming part doubles.
- ITP: ``itp_fill_cycles + ceil(work / itp_lanes)`` with ``work`` = elements;
  POOL reads ``kh * kw`` inputs per output element; LUT:
  ``npuc.core.isa.fields.LUT_TIMING`` (an int16 LUT interpolates at half rate,
  ``work = 2 * count``).
- DMA: ``dma_latency_cycles + ceil(sum over runs of max(run_bytes,
  dma_burst_bytes) / dram_bytes_per_cycle)`` over the DRAM side's maximal
  contiguous runs (descriptor rows adjacent in DRAM merge into one run,
  :meth:`StridedRegion.maximal_runs`); every run shorter than a burst costs a
  whole burst.
- SYNC: 1 cycle; END: 0.
"""

from __future__ import annotations

from npuc.core.hw.config import HwConfig
from npuc.core.isa.instructions import Instruction
from npuc.npu_sim.memory import StridedRegion

SYNC_CYCLES = 1


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for non-negative integers."""
    return -(-a // b)


def dma_cycles(*, runs: tuple[tuple[int, int], ...], hw: HwConfig) -> int:
    """DMA cost: latency plus the bus time of ``runs`` (``(run_bytes, how_many)`` pairs).

    Each run shorter than ``hw.dma_burst_bytes`` is billed as a full burst.
    """
    billed = sum(n * max(run_bytes, hw.dma_burst_bytes) for run_bytes, n in runs)
    return hw.dma_latency_cycles + ceil_div(billed, hw.dram_bytes_per_cycle)


def dram_region(v: dict[str, int]) -> StridedRegion:
    """The DRAM side of a DMA descriptor (field values ``v``) as a strided region."""
    return StridedRegion(
        v["dram_addr"],
        v["row_bytes"],
        v["row_count"],
        v["dram_row_stride_bytes"],
        v["plane_count"],
        v["dram_plane_stride_bytes"],
    )


def conv_folds(*, cout: int, cin: int, kh: int, kw: int, depthwise: bool, hw: HwConfig) -> int:
    """``ceil(Cout/rows) * ceil(Cin/cols) * kh * kw``; depthwise: ``ceil(Cout/rows) * kh * kw``."""
    cin_blocks = 1 if depthwise else ceil_div(cin, hw.mac_cols)
    return ceil_div(cout, hw.mac_rows) * cin_blocks * kh * kw


def mac_cycles(*, out_pixels: int, folds: int, int16_activations: bool, hw: HwConfig) -> int:
    """MAC cost: fill + ``folds * max(stream, rows)``, stream doubled for int16 activations."""
    stream = out_pixels * (2 if int16_activations else 1)
    return hw.mac_pipeline_fill_cycles + folds * max(stream, hw.mac_rows)


def itp_cycles(*, work: int, hw: HwConfig) -> int:
    """ITP cost: fill + ``ceil(work / lanes)``."""
    return hw.itp_fill_cycles + ceil_div(work, hw.itp_lanes)


def instruction_cycles(ins: Instruction, hw: HwConfig) -> int:
    """Cycles ``ins`` occupies its unit."""
    v = ins.values()
    m = ins.mnemonic
    if m in ("dma_load", "dma_store"):
        return dma_cycles(runs=dram_region(v).maximal_runs(), hw=hw)
    if m == "conv":
        folds = conv_folds(
            cout=v["ofm_c"],
            cin=v["ifm_c"],
            kh=v["kh"],
            kw=v["kw"],
            depthwise=bool(v["depthwise"]),
            hw=hw,
        )
        return mac_cycles(
            out_pixels=v["ofm_h"] * v["ofm_w"],
            folds=folds,
            int16_activations=ins.dtype("ifm_dtype") == "int16",
            hw=hw,
        )
    if m == "fc":
        folds = conv_folds(cout=v["ofm_c"], cin=v["ifm_k"], kh=1, kw=1, depthwise=False, hw=hw)
        return mac_cycles(
            out_pixels=v["ifm_n"],
            folds=folds,
            int16_activations=ins.dtype("ifm_dtype") == "int16",
            hw=hw,
        )
    if m in ("eltwise", "requant"):
        return itp_cycles(work=v["count"], hw=hw)
    if m == "lut":
        return itp_cycles(work=v["count"] * (2 if ins.dtype("ifm_dtype") == "int16" else 1), hw=hw)
    if m == "pool":
        return itp_cycles(work=v["ofm_h"] * v["ofm_w"] * v["ifm_c"] * v["kh"] * v["kw"], hw=hw)
    if m == "sync":
        return SYNC_CYCLES
    return 0  # end

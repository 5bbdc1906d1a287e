"""Where a layer's cycles go to waste on the MAC array and the DMA, and the shape change that helps.

Requires: the layer's NPU ops (:mod:`.ops`), the program instructions the
compiler emitted for them, and the hardware config. Uses the spec's cost rules
(as :mod:`.perf` restates them) on the emitted instructions, so the numbers
are the cycles the simulator charges, split by cause:

- ``idle_rows``: output-channel blocks that do not fill the array's
  ``mac_rows`` (``ceil(Cout / rows)`` passes; 17 channels on 16 rows take
  two passes, the second with one busy row);
- ``idle_cols``: input channels that do not fill the ``mac_cols`` columns
  (``ceil(Cin / cols)`` passes);
- ``depthwise``: a depthwise conv uses one column per channel group (spec
  section 3), so it runs at ``mac_rows`` MACs/cycle at best;
- ``weight_load``: tiles with fewer pixels than ``mac_rows`` wait for the
  weight tile to load (``max(pixels, rows)`` per fold);
- ``pipeline_fill``: ``mac_pipeline_fill_cycles`` once per CONV instruction;
- ``padding``: kernel taps that read the zero-point padding (they cost MAC
  cycles and add nothing);
- ``dma_burst``: contiguous DRAM runs shorter than ``dma_burst_bytes`` are
  billed as a whole burst.

Each entry: ``kind``, ``cycles`` (unit cycles lost), ``fraction`` (of the
unit's cycles for this layer), ``detail``, ``fix`` (the shape change that
would remove it, or ""), ``flag`` (``cycles >= FLAG_FRACTION`` of the
layer's cycles on that unit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from npuc.backend.npu import perf
from npuc.backend.npu.ops import NpuConv2d, NpuOp
from npuc.core.hw.config import HwConfig
from npuc.core.isa.instructions import Instruction

#: A waste entry is flagged when it costs at least this share of the unit's cycles.
FLAG_FRACTION = 0.05


def _valid_taps(size: int, out: int, k: int, stride: int, dil: int, pad: int) -> int:
    """(output position, tap) pairs along one axis that read inside the input."""
    o = np.arange(out)[:, None]
    t = np.arange(k)[None, :]
    pos = o * stride - pad + t * dil
    return int(((pos >= 0) & (pos < size)).sum())


def padding_fraction(op: NpuConv2d) -> float:
    """Share of the conv's (output pixel, tap) pairs that read padding, in [0, 1)."""
    _, h, w, _ = op.ifm.shape
    _, oh, ow, _ = op.ofm.shape
    kh, kw = op.kernel
    top, left, _, _ = op.padding
    valid = _valid_taps(h, oh, kh, op.stride[0], op.dilation[0], top) * _valid_taps(
        w, ow, kw, op.stride[1], op.dilation[1], left
    )
    return 1.0 - valid / (oh * ow * kh * kw)


def _entry(kind: str, cycles: float, total: int, detail: str, fix: str = "") -> dict[str, Any]:
    fraction = cycles / total if total else 0.0
    return {
        "kind": kind,
        "cycles": round(cycles),
        "fraction": round(fraction, 4),
        "detail": detail,
        "fix": fix,
        "flag": fraction >= FLAG_FRACTION,
    }


def _cut(passes: int) -> str:
    """What removing one of ``passes`` MAC passes does ("halve ...", "cut ... by 20%")."""
    if passes == 2:
        return "halve this layer's MAC passes"
    return f"cut this layer's MAC passes by {1 / passes:.0%}"


def _channel_fix(what: str, count: int, lanes: int, lane_name: str) -> tuple[float, str]:
    """(busy share of the lanes, the suggested change) for ``count`` channels on ``lanes``."""
    passes = perf.ceil_div(count, lanes)
    fill = count / (passes * lanes)
    if count % lanes == 0:
        return 1.0, ""
    if count < lanes:
        return fill, (
            f"only {count} of {lanes} array {lane_name} are busy: up to {lanes} {what} "
            "channels cost the same MAC cycles"
        )
    down = count // lanes * lanes
    fix = (
        f"{what} channels {count} -> {down} would {_cut(passes)} ({passes} -> {passes - 1}); "
        f"{passes * lanes} channels cost the same as {count}"
    )
    return fill, fix


def mac_waste(
    ops: Sequence[NpuOp], instructions: Sequence[Instruction], hw: HwConfig
) -> list[dict[str, Any]]:
    """MAC-array waste of a layer's CONV/FC instructions (module docstring); [] without any."""
    convs = [op for op in ops if isinstance(op, NpuConv2d)]
    rows, cols = hw.mac_rows, hw.mac_cols
    busy = stream_cycles = load_extra = fills = count = 0
    idle_rows = idle_cols = useful = 0.0
    cin = 0
    for ins in instructions:
        if ins.mnemonic not in ("conv", "fc"):
            continue
        v = ins.values()
        depthwise = ins.mnemonic == "conv" and bool(v["depthwise"])
        cin = v["ifm_c"] if ins.mnemonic == "conv" else v["ifm_k"]
        row_passes = perf.ceil_div(v["ofm_c"], rows)
        col_passes = 1 if depthwise else perf.ceil_div(cin, cols)
        if ins.mnemonic == "conv":
            folds = row_passes * col_passes * v["kh"] * v["kw"]
            pixels = v["ofm_h"] * v["ofm_w"]
        else:
            folds = row_passes * col_passes
            pixels = v["ifm_n"]
        stream = pixels * (2 if ins.dtype("ifm_dtype") == "int16" else 1)
        busy += hw.mac_pipeline_fill_cycles + folds * max(stream, rows)
        stream_cycles += folds * stream
        load_extra += folds * max(rows - stream, 0)
        fills += hw.mac_pipeline_fill_cycles
        count += 1
        row_fill = v["ofm_c"] / (row_passes * rows)
        col_fill = 1 / cols if depthwise else cin / (col_passes * cols)
        idle_rows += folds * stream * (1 - row_fill)
        idle_cols += folds * stream * row_fill * (1 - col_fill)
        useful += folds * stream * row_fill * col_fill
    if not busy or not convs:
        return []
    op = convs[-1]
    cout = op.ofm.shape[3]
    out: list[dict[str, Any]] = []
    if idle_rows:
        row_fill, row_fix = _channel_fix("out", cout, rows, "rows")
        out.append(
            _entry(
                "idle_rows",
                idle_rows,
                busy,
                f"{cout} output channels on {rows} array rows: "
                f"{perf.ceil_div(cout, rows)} pass(es), {row_fill:.0%} of the rows busy",
                row_fix,
            )
        )
    if op.groups > 1:
        out.append(
            _entry(
                "depthwise",
                idle_cols,
                busy,
                f"depthwise: one of {cols} array columns per channel group (spec), "
                f"at most {rows} MACs/cycle",
            )
        )
    elif idle_cols:
        col_fill, col_fix = _channel_fix("in", cin, cols, "columns")
        packed = cin != op.ifm.shape[3]
        what = f"{cin} input channels" + (
            f" ({op.ifm.shape[3]} with {op.kernel[0]}x{op.kernel[1]} taps packed)" if packed else ""
        )
        out.append(
            _entry(
                "idle_cols",
                idle_cols,
                busy,
                f"{what} on {cols} array columns: "
                f"{perf.ceil_div(cin, cols)} pass(es), {col_fill:.0%} busy",
                col_fix + " (set by the producing layer)" if col_fix and not packed else "",
            )
        )
    pad = padding_fraction(op)
    if pad > 0:
        oh, ow = op.ofm.shape[1:3]
        out.append(
            _entry(
                "padding",
                useful * pad,
                busy,
                f"{pad:.0%} of the kernel taps read padding ({op.kernel[0]}x{op.kernel[1]} "
                f"on a {oh}x{ow} output)",
                "inherent to 'same' padding on small maps" if pad >= 0.2 else "",
            )
        )
    if load_extra:
        out.append(
            _entry(
                "weight_load",
                load_extra,
                busy,
                f"tiles of fewer than {rows} pixels: each fold waits {rows} cycles for its "
                "weights (batch-1 fully connected layers, small maps)",
                "more pixels per weight tile (batch, larger maps) amortise the weight loads",
            )
        )
    out.append(
        _entry(
            "pipeline_fill",
            fills,
            busy,
            f"{hw.mac_pipeline_fill_cycles} fill cycles x {count} CONV instruction(s)",
        )
    )
    return [e for e in out if e["cycles"] > 0]


def dma_waste(instructions: Sequence[Instruction], hw: HwConfig) -> list[dict[str, Any]]:
    """DMA burst overhead of a layer's loads and stores (module docstring); [] without any."""
    total = burst = short_runs = 0
    narrowest = None
    for ins in instructions:
        if ins.mnemonic not in ("dma_load", "dma_store"):
            continue
        v = ins.values()
        cycles = perf.dma_cycles(
            hw,
            row_bytes=v["row_bytes"],
            row_count=v["row_count"],
            plane_count=v["plane_count"],
            dram_row_stride_bytes=v["dram_row_stride_bytes"],
            dram_plane_stride_bytes=v["dram_plane_stride_bytes"],
        )
        moved = v["row_bytes"] * v["row_count"] * v["plane_count"]
        ideal = hw.dma_latency_cycles + perf.ceil_div(max(moved, 1), hw.dram_bytes_per_cycle)
        total += cycles
        if cycles > ideal:
            burst += cycles - ideal
            short_runs += 1
            narrowest = v["row_bytes"] if narrowest is None else min(narrowest, v["row_bytes"])
    if not burst:
        return []
    return [
        _entry(
            "dma_burst",
            burst,
            total,
            f"{short_runs} transfer(s) with DRAM runs shorter than the {hw.dma_burst_bytes} B "
            f"burst (narrowest row {narrowest} B) are billed whole bursts",
            f"rows of at least {hw.dma_burst_bytes} B (width x channels x bytes) avoid it",
        )
    ]

"""``simulate(program, inputs, hw)``: run a validated NPU program, return outputs and statistics.

Guarantees: the program is validated against ``hw`` first (a program built
for another configuration is refused with InvalidInputError); inputs must
match the I/O table by name and shape, with integer values in the tensor's
type range; a fault during the run raises SimulatorFault and returns nothing
partial. Statistics (docs/npu_sim.md):

- ``total_cycles``: cycle at which the last unit finishes.
- per unit ``busy_cycles`` (executing), ``stall_cycles`` (head instruction
  waiting for tokens while the unit is free), ``idle_cycles`` (the rest).
- ``dram_read_bytes`` / ``dram_written_bytes``: bytes moved by DMA_LOAD / DMA_STORE.
- ``sram_peak_bytes``: high-water mark, one past the highest SRAM byte any
  instruction read or wrote (the smallest SRAM this program runs in).
- ``mac_utilisation``: useful MACs / (total_cycles * mac_rows * mac_cols).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from npuc.core.errors import InvalidInputError
from npuc.core.hw.config import HwConfig
from npuc.core.isa.program import Program
from npuc.core.isa.types import Unit
from npuc.npu_sim.executor import OverflowRecord, run_schedule
from npuc.npu_sim.hazards import Hazard
from npuc.npu_sim.memory import Memory
from npuc.npu_sim.trace import trace_events

DEFAULT_MAX_STEPS = 10_000_000


@dataclass(frozen=True, slots=True)
class UnitStats:
    """Time accounting of one unit, in cycles."""

    name: str
    instructions: int
    busy_cycles: int
    stall_cycles: int
    idle_cycles: int


@dataclass(frozen=True, slots=True)
class SimStats:
    """Whole-run statistics (see the module docstring for definitions)."""

    total_cycles: int
    seconds: float
    instructions: int
    units: tuple[UnitStats, ...]
    dram_read_bytes: int
    dram_written_bytes: int
    sram_peak_bytes: int
    macs: int
    mac_utilisation: float
    overflow_count: int

    def to_json(self) -> dict[str, Any]:
        """Plain-dict form for ``--json`` output."""
        out: dict[str, Any] = {k: getattr(self, k) for k in self.__slots__ if k != "units"}
        out["units"] = {
            u.name: {
                "instructions": u.instructions,
                "busy_cycles": u.busy_cycles,
                "stall_cycles": u.stall_cycles,
                "idle_cycles": u.idle_cycles,
            }
            for u in self.units
        }
        return out


@dataclass(frozen=True, slots=True)
class SimResult:
    """Outputs by name, statistics, trace events (empty unless requested), overflows, hazards.

    ``hazards`` is empty unless ``simulate(..., fault_on_hazard=False)`` (by
    default the first hazard is a fault).
    """

    outputs: dict[str, np.ndarray]
    stats: SimStats
    trace_events: list[dict[str, Any]]
    overflow: tuple[OverflowRecord, ...]
    hazards: tuple[Hazard, ...] = ()


def _check_input(name: str, value: np.ndarray, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    array = np.asarray(value)
    if array.shape != shape:
        raise InvalidInputError(
            f"input {name!r} has shape {array.shape}, the program expects {shape}",
            hint="reshape the array (layout is the program's, e.g. NHWC)",
        )
    if array.dtype == np.dtype(dtype):
        return array
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidInputError(
            f"input {name!r} has dtype {array.dtype}, the program expects quantized {dtype}",
            hint="quantize the input with the scale and zero point of the program's I/O table",
        )
    info = np.iinfo(np.dtype(dtype))
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise InvalidInputError(
            f"input {name!r} holds values outside the {dtype} range [{info.min}, {info.max}]"
        )
    return array.astype(dtype)


def simulate(
    program: Program,
    inputs: dict[str, np.ndarray],
    hw: HwConfig,
    *,
    trace: bool = False,
    max_steps: int = DEFAULT_MAX_STEPS,
    fault_on_overflow: bool = False,
    fault_on_hazard: bool = True,
) -> SimResult:
    """Run ``program`` on the modeled NPU ``hw``.

    Parameters
    ----------
    program
        A program (validated here against ``hw``).
    inputs
        One array per program input, by name.
    trace
        Also return Chrome trace events (one track per unit).
    max_steps
        Fault after this many executed instructions.
    fault_on_overflow
        Fault on the first saturation instead of reporting it in ``overflow``.
    fault_on_hazard
        Fault (SimulatorFault, "data race") on the first SRAM hazard: two units
        touching a common byte, one writing, with no chain of tokens ordering
        them. False: run on and list every hazard in ``SimResult.hazards``.
    """
    program.validate(hw)
    expected = {t.name for t in program.inputs}
    if set(inputs) != expected:
        missing, unknown = sorted(expected - set(inputs)), sorted(set(inputs) - expected)
        raise InvalidInputError(
            f"inputs do not match the program: missing {missing}, unknown {unknown}",
            hint=f"the program's inputs are {sorted(expected)}",
        )
    sram = Memory("SRAM", hw.sram_bytes)
    dram = Memory("DRAM", hw.dram_bytes)
    constants = np.frombuffer(program.constants, dtype=np.uint8)
    dram.data[program.const_dram_addr : program.const_dram_addr + constants.size] = constants
    for t in program.inputs:
        data = _check_input(t.name, inputs[t.name], t.shape, t.dtype)
        raw = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        dram.data[t.dram_addr : t.dram_addr + raw.size] = raw
    result = run_schedule(
        program.instructions,
        hw,
        sram,
        dram,
        max_steps=max_steps,
        fault_on_overflow=fault_on_overflow,
        fault_on_hazard=fault_on_hazard,
    )
    outputs = {}
    for t in program.outputs:
        raw = dram.data[t.dram_addr : t.dram_addr + t.nbytes]
        outputs[t.name] = (
            raw.view(np.dtype(t.dtype).newbyteorder("<")).astype(t.dtype).reshape(t.shape)
        )
    total = result.total_cycles
    units = []
    for u in Unit:
        recs = [r for r in result.records if r.unit == int(u)]
        busy = sum(r.end_cycle - r.start_cycle for r in recs)
        stall = sum(r.stall_cycles for r in recs)
        units.append(UnitStats(u.name, len(recs), busy, stall, total - busy - stall))
    stats = SimStats(
        total_cycles=total,
        seconds=hw.cycles_to_seconds(total),
        instructions=len(result.records),
        units=tuple(units),
        dram_read_bytes=result.dram_read_bytes,
        dram_written_bytes=result.dram_written_bytes,
        sram_peak_bytes=sram.high_water_bytes,
        macs=result.macs,
        mac_utilisation=result.macs / (total * hw.macs_per_cycle) if total else 0.0,
        overflow_count=len(result.overflows),
    )
    events = trace_events(list(result.records), hw.clock_hz) if trace else []
    return SimResult(
        outputs=outputs,
        stats=stats,
        trace_events=events,
        overflow=result.overflows,
        hazards=result.hazards,
    )

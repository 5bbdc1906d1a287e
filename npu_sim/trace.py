"""Per-instruction trace in Chrome trace-event JSON (opens in Perfetto / chrome://tracing).

One process ("npu"), one thread (track) per unit. Every executed instruction
is a complete event (``"ph": "X"``) with ``ts``/``dur`` in microseconds at the
configured clock, and its instruction index, opcode and cycle numbers in
``args``. Thread-name metadata events (``"ph": "M"``) label the tracks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from npuc.core.isa.types import Unit

TRACE_PID = 1


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One executed instruction on one unit, in cycles."""

    index: int
    mnemonic: str
    unit: int
    start_cycle: int
    end_cycle: int
    stall_cycles: int


def trace_events(records: list[TraceRecord], clock_hz: float) -> list[dict[str, Any]]:
    """Chrome trace events (metadata first) for ``records`` at ``clock_hz``."""
    us_per_cycle = 1e6 / clock_hz
    events: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": TRACE_PID, "tid": 0, "args": {"name": "npu"}}
    ]
    for unit in Unit:
        events.append(
            {
                "name": "thread_name",
                "ph": "M",
                "pid": TRACE_PID,
                "tid": int(unit),
                "args": {"name": unit.name},
            }
        )
        events.append(
            {
                "name": "thread_sort_index",
                "ph": "M",
                "pid": TRACE_PID,
                "tid": int(unit),
                "args": {"sort_index": int(unit)},
            }
        )
    for r in records:
        events.append(
            {
                "name": r.mnemonic,
                "cat": Unit(r.unit).name,
                "ph": "X",
                "pid": TRACE_PID,
                "tid": r.unit,
                "ts": r.start_cycle * us_per_cycle,
                "dur": (r.end_cycle - r.start_cycle) * us_per_cycle,
                "args": {
                    "index": r.index,
                    "start_cycle": r.start_cycle,
                    "end_cycle": r.end_cycle,
                    "stall_cycles": r.stall_cycles,
                },
            }
        )
    return events


def trace_json(events: list[dict[str, Any]]) -> str:
    """The JSON document (object form, with ``displayTimeUnit``) for a trace file."""
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ns"}, indent=None)

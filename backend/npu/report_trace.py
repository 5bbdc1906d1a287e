"""The report's Chrome trace: one process per NPU partition, one track per unit, a span per layer.

Loadable in chrome://tracing and Perfetto (trace-event JSON, object form).
For each layer and unit the span runs from the layer's first instruction
start to its last instruction end on that unit (``args``: op, busy cycles,
instructions); a ``layers`` track holds each layer's whole span. Times are
microseconds at the config's clock. ``npuc run --trace`` writes the
per-instruction trace instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from npuc.backend.npu.report import UNITS, trace_records

LAYERS_TID = len(UNITS)


def _meta(pid: int, tid: int, name: str) -> list[dict[str, Any]]:
    return [
        {"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": name}},
        {
            "name": "thread_sort_index",
            "ph": "M",
            "pid": pid,
            "tid": tid,
            "args": {"sort_index": tid},
        },
    ]


def layer_trace(
    report: Mapping[str, Any],
    traces: Sequence[Sequence[Mapping[str, Any]]],
    layer_ranges: Sequence[Mapping[str, Sequence[int]]],
    clock_hz: float,
) -> str:
    """The trace JSON. ``traces``: per partition the simulator's events of one run;
    ``layer_ranges``: per partition, layer -> its instruction indices."""
    us = 1e6 / clock_hz
    ops = {r["layer"]: r["op"] for r in report["layers"]}
    events: list[dict[str, Any]] = []
    for pi, (part, trace) in enumerate(zip(report["partitions"], traces, strict=False)):
        pid = pi + 1
        events.append(
            {
                "name": "process_name",
                "ph": "M",
                "pid": pid,
                "tid": 0,
                "args": {"name": part["name"]},
            }
        )
        for tid, unit in enumerate(UNITS):
            events += _meta(pid, tid, unit)
        events += _meta(pid, LAYERS_TID, "layers")
        by_index = {}
        for rec in trace_records(trace):
            by_index[rec[0]] = rec
        for layer, indices in layer_ranges[pi].items():
            recs = [by_index[i] for i in indices if i in by_index]
            if not recs:
                continue
            groups: dict[int, list[tuple[int, int, int, int]]] = {LAYERS_TID: recs}
            for r in recs:
                groups.setdefault(r[1], []).append(r)
            for tid, mine in sorted(groups.items()):
                start = min(r[2] for r in mine)
                end = max(r[3] for r in mine)
                events.append(
                    {
                        "name": layer,
                        "cat": "layer" if tid == LAYERS_TID else UNITS[tid],
                        "ph": "X",
                        "pid": pid,
                        "tid": tid,
                        "ts": start * us,
                        "dur": (end - start) * us,
                        "args": {
                            "op": ops.get(layer, ""),
                            "start_cycle": start,
                            "end_cycle": end,
                            "busy_cycles": sum(r[3] - r[2] for r in mine),
                            "instructions": len(mine),
                        },
                    }
                )
    return json.dumps({"traceEvents": events, "displayTimeUnit": "ns"})

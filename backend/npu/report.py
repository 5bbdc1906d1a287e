"""The per-layer performance report of an NPU build (JSON and a short terminal table).

Per layer: op, input/output shapes, MACs, the compiler's cycle estimate (the
layer's span in the replay of its emitted schedule), simulated cycles (the
layer's instruction span in a simulator trace, when given), MAC utilisation
(MACs / (cycles x MAC array)), DRAM bytes, SRAM peak, tiling, NPU or CPU and
why. Totals per partition and for the model. Spans of neighbouring layers
overlap (DMA of one layer under the MACs of the previous), so per-layer
cycles do not add up to the total.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from npuc.core.hw.config import HwConfig


def _spans(events: Sequence[Mapping[str, Any]]) -> dict[int, tuple[int, int]]:
    out = {}
    for e in events:
        args = e.get("args", {})
        if e.get("ph") == "X" and "index" in args:
            out[int(args["index"])] = (int(args["start_cycle"]), int(args["end_cycle"]))
    return out


def layer_report(
    build: Any,
    hw: HwConfig,
    traces: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    sim_cycles: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The report dict of ``build`` (:class:`~.build.NpuBuild`); ``traces``: per partition, the
    simulator's trace events of one run; ``sim_cycles``: per partition total cycles."""
    graph = build.qm.graph
    array = hw.mac_rows * hw.mac_cols
    stats_by_op: dict[str, tuple[int, Any]] = {}
    for pi, compiled in enumerate(build.compiled):
        for st in compiled.ops:
            stats_by_op[st.name] = (pi, st)
    layers = []
    for pl in build.placements:
        node = graph.node(pl.layer)
        row: dict[str, Any] = {
            "layer": pl.layer,
            "op": node.attr("func") or node.op,
            "inputs": [list(graph.tensor_type(n).shape) for n in node.inputs],
            "output": list(node.out.shape),
            "target": pl.target,
            "reason": pl.reason,
        }
        if pl.target == "npu" and pl.layer in stats_by_op:
            pi, st = stats_by_op[pl.layer]
            est = max(st.sched_end - st.sched_start, 1)
            row.update(
                partition=pi,
                macs=st.macs,
                est_cycles=est,
                dram_bytes=st.dram_bytes,
                sram_peak_bytes=st.sram_peak_bytes,
                tiling=st.tiling,
            )
            if traces is not None and pi < len(traces):
                spans = _spans(traces[pi])
                idx = range(st.first_instruction, st.first_instruction + st.instructions)
                got = [spans[i] for i in idx if i in spans]
                if got:
                    sim = max(e for _, e in got) - min(s for s, _ in got)
                    row["sim_cycles"] = sim
                    row["mac_utilisation"] = st.macs / (max(sim, 1) * array)
            row.setdefault("mac_utilisation", st.macs / (est * array))
        layers.append(row)
    parts = []
    for pi, compiled in enumerate(build.compiled):
        macs = sum(st.macs for st in compiled.ops)
        entry: dict[str, Any] = {
            "name": build.partitions[pi].name,
            "layers": len(compiled.ops),
            "macs": macs,
            "est_cycles": compiled.est_cycles,
            "sram_peak_bytes": compiled.sram_peak_bytes,
            "dram_scratch_bytes": compiled.dram_scratch_bytes,
        }
        if sim_cycles is not None and pi < len(sim_cycles):
            entry["sim_cycles"] = sim_cycles[pi]
            entry["mac_utilisation"] = macs / (max(sim_cycles[pi], 1) * array)
        parts.append(entry)
    est = sum(p["est_cycles"] for p in parts)
    totals: dict[str, Any] = {
        "hw": hw.name,
        "npu_layers": sum(p.target == "npu" for p in build.placements),
        "cpu_layers": sum(p.target == "cpu" for p in build.placements),
        "macs": sum(p["macs"] for p in parts),
        "est_cycles": est,
    }
    if sim_cycles is not None:
        total = int(sum(sim_cycles))
        totals["sim_cycles"] = total
        totals["time_ms"] = hw.cycles_to_seconds(total) * 1e3
        totals["mac_utilisation"] = totals["macs"] / (max(total, 1) * array)
    return {"totals": totals, "partitions": parts, "layers": layers}


def write_report(directory: Path, report: Mapping[str, Any]) -> Path:
    """Write ``report.json`` into ``directory`` (created) atomically; returns its path."""
    from npuc.core.fileio import write_text_atomic

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "report.json"
    write_text_atomic(path, json.dumps(report, indent=1, sort_keys=True) + "\n")
    return path


def report_table(report: Mapping[str, Any], top: int = 10) -> list[str]:
    """A short table: the ``top`` layers by cycles, then the totals."""
    key = "sim_cycles" if "sim_cycles" in report["totals"] else "est_cycles"
    rows = sorted(
        (r for r in report["layers"] if r["target"] == "npu"), key=lambda r: -r.get(key, 0)
    )[:top]
    lines = [f"  {'layer':<24} {'op':<16} {'MACs':>12} {key:>11} {'util':>6} {'DRAM B':>10}"]
    for r in rows:
        lines.append(
            f"  {r['layer']:<24} {r['op']:<16} {r['macs']:>12,} {r.get(key, 0):>11,}"
            f" {r['mac_utilisation']:>6.1%} {r['dram_bytes']:>10,}"
        )
    t = report["totals"]
    lines.append(
        f"  total: {t['macs']:,} MACs, {t.get(key, 0):,} cycles ({key}),"
        f" {t['npu_layers']} NPU / {t['cpu_layers']} CPU layers"
    )
    return lines

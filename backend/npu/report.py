"""The performance report of an NPU build: per layer, per partition, totals (docs/npu_compiler.md).

:func:`layer_report` turns an :class:`~.build.NpuBuild` (or the same parts
recompiled from a ``.npuc``) plus one simulated run's trace into a plain dict:

- per layer: op, shapes, MACs, ``sim_cycles`` (the cycles the layer adds to
  the simulated run: how far it moves the latest finish time, so they sum to
  the partition's total; a layer hidden under its neighbours adds few; the
  parts of a row-band chain, which run interleaved, share their chain's
  cycles in proportion to their estimates),
  ``sim_span_cycles`` (its first instruction's start to its last one's end;
  spans of neighbours overlap), busy cycles per unit, the compiler's
  tiling-model estimate (``est_cycles``, :mod:`.perf`, what chose the tiling)
  and its error ``(est - sim) / sim``, ``layer_cycles`` (the larger of
  ``sim_cycles`` and its busiest unit's cycles: the time it needs at least),
  MAC utilisation ``macs / (layer_cycles * rows * cols)`` (at most 1), DRAM
  bytes read / written and the layer's lower bound
  (weights, inputs and outputs once), SRAM peak, tiling, ``cascade`` (the
  tensors kept in SRAM, None when none), NPU or CPU and why, the quantization
  similarity when known, and the waste (:mod:`.report_waste`);
- totals: cycles, time at the config's clock, utilisation, DRAM traffic vs
  the model's lower bound (constants and partition inputs/outputs once), the
  depthwise layers' share of the time.

Trace events are the simulator's Chrome events (``ph == "X"`` with
``args.index``, ``args.start_cycle``, ``args.end_cycle``, ``tid`` = unit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from npuc.backend.npu.ops import NpuConv2d, NpuOp, op_inputs
from npuc.backend.npu.report_waste import dma_waste, mac_waste
from npuc.core.hw.config import HwConfig
from npuc.core.isa.program import Program
from npuc.core.isa.types import Unit

UNITS = tuple(u.name for u in Unit)
#: One executed instruction: (instruction index, unit, start cycle, end cycle).
Record = tuple[int, int, int, int]


def trace_records(events: Sequence[Mapping[str, Any]]) -> list[Record]:
    """``(index, unit, start, end)`` of every executed instruction in ``events``."""
    out = []
    for e in events:
        args = e.get("args", {})
        if e.get("ph") == "X" and "index" in args:
            out.append(
                (
                    int(args["index"]),
                    int(e["tid"]),
                    int(args["start_cycle"]),
                    int(args["end_cycle"]),
                )
            )
    return out


def _layer_of(op_name: str) -> str:
    return op_name.split(".")[0]


def _constant_bytes(program: Program, instructions: Sequence[int]) -> int:
    """Distinct constant-section bytes the instructions load (weights, biases, tables once)."""
    lo, hi = program.const_dram_addr, program.const_dram_addr + len(program.constants)
    seen: dict[int, int] = {}
    for i in instructions:
        ins = program.instructions[i]
        if ins.mnemonic == "dma_load":
            v = ins.values()
            if lo <= v["dram_addr"] < hi:
                moved = v["row_bytes"] * v["row_count"] * v["plane_count"]
                seen[v["dram_addr"]] = max(seen.get(v["dram_addr"], 0), moved)
    return sum(seen.values())


def _io_bytes(ops: Sequence[NpuOp]) -> int:
    made = {op.ofm.name for op in ops}
    read = {t.name: t.nbytes for op in ops for t in op_inputs(op) if t.name not in made}
    used = {t.name for op in ops for t in op_inputs(op)}
    written = {op.ofm.name: op.ofm.nbytes for op in ops if op.ofm.name not in used}
    return sum(read.values()) + sum(written.values())


def _npu_row(
    ops: Sequence[NpuOp],
    stats: Sequence[Any],
    program: Program,
    records: Sequence[Record] | None,
    hw: HwConfig,
) -> dict[str, Any]:
    """The NPU fields of one layer from its ops, their OpStats and the run's records."""
    indices = [i for st in stats for i in st.instruction_list()]
    instructions = [program.instructions[i] for i in indices]
    read = written = 0
    for ins in instructions:
        if ins.mnemonic in ("dma_load", "dma_store"):
            v = ins.values()
            moved = v["row_bytes"] * v["row_count"] * v["plane_count"]
            if ins.mnemonic == "dma_load":
                read += moved
            else:
                written += moved
    macs = sum(st.macs for st in stats)
    row: dict[str, Any] = {
        "macs": macs,
        "est_cycles": sum(st.est_cycles for st in stats),
        "replay_cycles": max(st.sched_end for st in stats) - min(st.sched_start for st in stats),
        "dram_read_bytes": read,
        "dram_written_bytes": written,
        "dram_bytes": read + written,
        "dram_lower_bound_bytes": _io_bytes(ops)
        + sum(_constant_bytes(program, st.instruction_list()) for st in stats),
        "sram_peak_bytes": max(st.sram_peak_bytes for st in stats),
        "tiling": "; ".join(st.tiling for st in stats if st.tiling),
        "cascade": "; ".join(c for st in stats if (c := getattr(st, "sram_resident", ""))) or None,
        "depthwise": any(isinstance(op, NpuConv2d) and op.groups > 1 for op in ops),
        "arithmetic_intensity": macs / max(read + written, 1),
        "waste": mac_waste(ops, instructions, hw) + dma_waste(instructions, hw),
    }
    if records is not None:
        wanted = set(indices)
        mine = [r for r in records if r[0] in wanted]
        if mine:
            span = max(r[3] for r in mine) - min(r[2] for r in mine)
            row["sim_span_cycles"] = span
            row["sim_start_cycle"] = min(r[2] for r in mine)
            row["sim_end_cycle"] = max(r[3] for r in mine)
            units = dict.fromkeys(UNITS, 0)
            for _, unit, start, end in mine:
                units[Unit(unit).name] += end - start
            row["unit_busy_cycles"] = units
    return row


def layer_report(
    build: Any,
    hw: HwConfig,
    traces: Sequence[Sequence[Mapping[str, Any]]] | None = None,
    sim_cycles: Sequence[int] | None = None,
    similarity: Mapping[str, float] | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The report dict (module docstring) of ``build`` for ``hw``.

    ``build``: an :class:`~.build.NpuBuild` (``qm``, ``placements``,
    ``partitions``, ``lowered``, ``compiled``); ``traces``: per partition, the
    simulator's trace events of one run; ``sim_cycles``: per partition total
    cycles of that run; ``similarity``: layer -> accumulated cosine against the
    float model; ``notes``: lines kept in ``totals.notes``.
    """
    graph = build.qm.graph
    array = hw.mac_rows * hw.mac_cols
    ops_of: dict[str, list[NpuOp]] = {}
    stats_of: dict[str, tuple[int, list[Any]]] = {}
    for pi, (lp, compiled) in enumerate(zip(build.lowered, build.compiled, strict=True)):
        for op in lp.graph.ops:
            ops_of.setdefault(_layer_of(op.name), []).append(op)
        for st in compiled.ops:
            stats_of.setdefault(_layer_of(st.name), (pi, []))[1].append(st)
    records = [trace_records(t) for t in traces] if traces is not None else None
    region_of = {
        name: c.entry for c in getattr(build, "cpu_regions", []) for name in c.entry.layers
    }
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
        if pl.layer in region_of:  # compiled (LLVM), or on the integer executor and why
            entry = region_of[pl.layer]
            row["cpu_region"] = {"name": entry.name, "compiled": entry.compiled}
            if entry.fallback_reason is not None:
                row["cpu_region"]["fallback_reason"] = entry.fallback_reason
        if similarity is not None and pl.layer in similarity:
            row["similarity"] = {"cosine": round(float(similarity[pl.layer]), 6)}
        if pl.target == "npu" and pl.layer in stats_of:
            pi, stats = stats_of[pl.layer]
            row["partition"] = pi
            recs = records[pi] if records is not None and pi < len(records) else None
            row.update(
                _npu_row(ops_of.get(pl.layer, []), stats, build.compiled[pi].program, recs, hw)
            )
        layers.append(row)
    parts = _partitions(build, layers, sim_cycles, array)
    return {
        "totals": _totals(build, hw, layers, parts, notes),
        "partitions": parts,
        "layers": layers,
    }


def _partitions(
    build: Any, layers: list[dict[str, Any]], sim_cycles: Sequence[int] | None, array: int
) -> list[dict[str, Any]]:
    """Per partition totals; assigns each layer's ``sim_cycles`` (finish-time increments)."""
    parts = []
    for pi, compiled in enumerate(build.compiled):
        macs = sum(st.macs for st in compiled.ops)
        program = compiled.program
        entry: dict[str, Any] = {
            "name": build.partitions[pi].name,
            "layers": len({_layer_of(st.name) for st in compiled.ops}),
            "macs": macs,
            "est_cycles": sum(st.est_cycles for st in compiled.ops),
            "replay_cycles": compiled.est_cycles,
            "sram_peak_bytes": compiled.sram_peak_bytes,
            "dram_scratch_bytes": compiled.dram_scratch_bytes,
            "dram_lower_bound_bytes": len(program.constants)
            + sum(t.nbytes for t in (*program.inputs, *program.outputs)),
        }
        if sim_cycles is not None and pi < len(sim_cycles):
            total = int(sim_cycles[pi])
            latest = 0
            for row in layers:
                if row.get("partition") == pi and "sim_end_cycle" in row:
                    cycles = max(row["sim_end_cycle"] - latest, 0)
                    latest = max(latest, row["sim_end_cycle"])
                    row["sim_cycles"] = cycles
                    own = max(cycles, *row["unit_busy_cycles"].values())
                    row["layer_cycles"] = own
                    row["mac_utilisation"] = row["macs"] / (max(own, 1) * array)
                    row["macs_per_cycle"] = row["macs"] / max(own, 1)
                    if cycles:  # a layer wholly hidden under its neighbours has no ratio
                        row["est_error"] = (row["est_cycles"] - cycles) / cycles
            _split_chains([r for r in layers if r.get("partition") == pi], array)
            entry["sim_cycles"] = total
            entry["unattributed_cycles"] = total - latest
            entry["mac_utilisation"] = macs / (max(total, 1) * array)
        parts.append(entry)
    return parts


def _split_chains(rows: list[dict[str, Any]], array: int) -> None:
    """The parts of a row-band chain run interleaved, so finish-time increments say little
    about each: the chain's simulated cycles are split among its parts in proportion to
    their estimates (each part's error is then the chain's)."""
    chains: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if str(row.get("tiling", "")).startswith("row-band chain") and "sim_cycles" in row:
            chains.setdefault(row["tiling"], []).append(row)
    for parts in chains.values():
        total = sum(r["sim_cycles"] for r in parts)
        est = sum(r["est_cycles"] for r in parts)
        for row in parts:
            cycles = round(total * row["est_cycles"] / est) if est else total // len(parts)
            row["sim_cycles"] = cycles
            own = max(cycles, *row["unit_busy_cycles"].values())
            row["layer_cycles"] = own
            row["mac_utilisation"] = row["macs"] / (max(own, 1) * array)
            row["macs_per_cycle"] = row["macs"] / max(own, 1)
            row.pop("est_error", None)
            if cycles:
                row["est_error"] = (row["est_cycles"] - cycles) / cycles


def _totals(
    build: Any,
    hw: HwConfig,
    layers: list[dict[str, Any]],
    parts: list[dict[str, Any]],
    notes: Sequence[str],
) -> dict[str, Any]:
    array = hw.mac_rows * hw.mac_cols
    npu = [r for r in layers if "macs" in r]
    read = sum(r["dram_read_bytes"] for r in npu)
    written = sum(r["dram_written_bytes"] for r in npu)
    bound = sum(p["dram_lower_bound_bytes"] for p in parts)
    totals: dict[str, Any] = {
        "hw": hw.name,
        "clock_hz": hw.clock_hz,
        "mac_rows": hw.mac_rows,
        "mac_cols": hw.mac_cols,
        "dram_bytes_per_cycle": hw.dram_bytes_per_cycle,
        "npu_layers": sum(p.target == "npu" for p in build.placements),
        "cpu_layers": sum(p.target == "cpu" for p in build.placements),
        "macs": sum(p["macs"] for p in parts),
        "est_cycles": sum(p["est_cycles"] for p in parts),
        "replay_cycles": sum(p["replay_cycles"] for p in parts),
        "dram_read_bytes": read,
        "dram_written_bytes": written,
        "dram_bytes": read + written,
        "dram_lower_bound_bytes": bound,
        "dram_over_lower_bound": (read + written) / bound if bound else None,
        "notes": list(notes),
    }
    if all("sim_cycles" in p for p in parts) and parts:
        total = sum(p["sim_cycles"] for p in parts)
        totals["sim_cycles"] = total
        totals["time_ms"] = hw.cycles_to_seconds(total) * 1e3
        totals["mac_utilisation"] = totals["macs"] / (max(total, 1) * array)
        totals["est_error"] = (totals["est_cycles"] - total) / max(total, 1)
        totals["replay_error"] = (totals["replay_cycles"] - total) / max(total, 1)
        depthwise = sum(r.get("sim_cycles", 0) for r in npu if r["depthwise"])
        totals["depthwise_share"] = depthwise / max(total, 1)
        waste: dict[str, int] = {}
        for r in npu:
            for w in r["waste"]:
                waste[w["kind"]] = waste.get(w["kind"], 0) + w["cycles"]
        totals["waste_cycles"] = waste
    return totals


def report_table(report: Mapping[str, Any], top: int = 10, *, cpu_layers: bool = True) -> list[str]:
    """A short table: the ``top`` NPU layers by simulated (else estimated) cycles, the totals,
    then (``cpu_layers``) up to ``top`` CPU layers with the reason."""
    t = report["totals"]
    key = "sim_cycles" if "sim_cycles" in t else "est_cycles"
    npu = [r for r in report["layers"] if "macs" in r]
    rows = sorted(npu, key=lambda r: -r.get(key, 0))[:top]
    lines = [
        f"  {'layer':<28} {'op':<10} {'MACs':>12} {'cycles':>10} {'est':>10}"
        f" {'err':>6} {'util':>6} {'DRAM B':>10}  waste"
    ]
    for r in rows:
        err = f"{r['est_error']:+.0%}" if "est_error" in r else "-"
        flagged = [w["kind"] for w in r["waste"] if w["flag"]]
        util = f"{r['mac_utilisation']:.1%}" if "mac_utilisation" in r else "-"
        lines.append(
            f"  {r['layer'][:28]:<28} {r['op'][:10]:<10} {r['macs']:>12,} {r.get(key, 0):>10,}"
            f" {r['est_cycles']:>10,} {err:>6} {util:>6} {r['dram_bytes']:>10,}"
            f"  {','.join(flagged)}"
        )
    line = f"  total: {t['macs']:,} MACs, {t.get(key, 0):,} cycles ({key})"
    if "time_ms" in t:
        line += f", {t['time_ms']:.3f} ms, MAC utilisation {t['mac_utilisation']:.1%}"
    lines.append(line)
    lines.append(
        f"  DRAM {t['dram_bytes']:,} B ({t['dram_over_lower_bound'] or 0:.2f}x the lower bound"
        f" {t['dram_lower_bound_bytes']:,} B); {t['npu_layers']} NPU / {t['cpu_layers']} CPU layers"
    )
    cpu = [r for r in report["layers"] if r["target"] == "cpu"] if cpu_layers else []
    lines += [f"  cpu: {r['layer']} ({r['op']}): {r['reason']}{_region(r)}" for r in cpu[:top]]
    if len(cpu) > top:
        lines.append(f"  ... {len(cpu) - top} more CPU layer(s) in report.json")
    return lines


def _region(row: Mapping[str, Any]) -> str:
    """`` [cpu_1: compiled]`` or `` [cpu_1 on the integer executor: reason]`` (or nothing)."""
    region = row.get("cpu_region")
    if region is None:
        return ""
    if region["compiled"]:
        return f" [{region['name']}: compiled]"
    return f" [{region['name']} on the integer executor: {region['fallback_reason']}]"

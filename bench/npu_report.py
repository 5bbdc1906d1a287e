"""bench/results/npu.md from bench/npu.py's results (totals, targets, per-layer tables)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from npu_vela_parse import TARGETS, VelaLayer, is_mac_layer, match_mac_layers

from npuc.core.fileio import write_text_atomic
from npuc.core.hw.config import preset

# Issue 13's targets: (network, hw) -> list of (what, key, comparison, bound).
TARGETS_13: dict[tuple[str, str], list[tuple[str, str, str, float]]] = {
    ("resnet50", "npu-s"): [
        ("MAC/cycle", "macs_per_cycle", ">=", 200),
        ("DRAM B/inference", "dram_bytes", "<=", 80e6),
    ],
    ("mobilenetv2", "npu-s"): [("MAC/cycle", "macs_per_cycle", ">=", 100)],
    ("resnet50", "npu-m"): [
        ("cycles", "cycles", "<=", 5.5e6),
        ("DRAM B/inference", "dram_bytes", "<=", 35e6),
    ],
    ("mobilenetv2", "npu-m"): [("cycles", "cycles", "<=", 1.25e6)],
}
# The issue author's Vela 5.2 numbers (Arm's own system configs).
AUTHOR_VELA = {
    ("resnet50", "npu-s"): "173 MAC/cycle (23.65 M cycles), DRAM 110 MB",
    ("resnet50", "npu-m"): "5.52 M cycles, DRAM 45.7 MB (weights 25.5 MB)",
    ("mobilenetv2", "npu-s"): "93 MAC/cycle",
    ("mobilenetv2", "npu-m"): "1.00 M cycles",
}
COMPILE_TARGET_S = 60.0


def _m(v: float) -> str:
    return f"{v / 1e6:.2f} M"


def _mb(v: float) -> str:
    return f"{v / 1e6:.1f} MB"


def ours_totals(npuc: Mapping[str, Any]) -> dict[str, float] | None:
    """cycles, macs, MAC/cycle, DRAM bytes, SRAM peak from an npuc report; None on failure."""
    report = npuc.get("report")
    if report is None:
        return None
    t = report["totals"]
    cycles = float(t.get("sim_cycles") or t["est_cycles"])
    return {
        "cycles": cycles,
        "macs": float(t["macs"]),
        "macs_per_cycle": float(t["macs"]) / max(cycles, 1.0),
        "dram_bytes": float(t.get("dram_bytes", 0)),
        "sram_peak": float(
            max((p.get("sram_peak_bytes", 0) for p in report["partitions"]), default=0)
        ),
        "npu_layers": float(t["npu_layers"]),
        "cpu_layers": float(t["cpu_layers"]),
    }


def vela_totals(vela: Mapping[str, Any]) -> dict[str, float] | None:
    s = vela.get("summary")
    if s is None:
        return None
    return {
        "cycles": float(s["cycles"]),
        "macs": float(s["macs"]),
        "macs_per_cycle": s["macs"] / max(s["cycles"], 1),
        "dram_bytes": float(s["dram_bytes"]),
        "sram_peak": float(s["sram_used_bytes"]),
        "weights": float(s["encoded_weight_bytes"]),
    }


def _setup(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "| npuc preset | Vela accelerator | clock | MACs/cycle | DRAM B/cycle | burst B |"
        " DMA latency | SRAM (Vela arena cache) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted({r["hw"] for r in results["runs"]}, reverse=True):
        hw, t = preset(name), TARGETS[name]
        lines.append(
            f"| {name} | {t.accelerator} | {hw.clock_hz / 1e9:g} GHz | {hw.macs_per_cycle} |"
            f" {hw.dram_bytes_per_cycle} | {hw.dma_burst_bytes} | {hw.dma_latency_cycles} |"
            f" {hw.sram_bytes // 1024} KiB |"
        )
    return lines


def _totals_table(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "| network | config | cycles npuc | cycles Vela | npuc/Vela | MAC/cycle npuc | MAC/cycle"
        " Vela | DRAM/inf npuc | DRAM/inf Vela | SRAM peak npuc | SRAM used Vela |"
        " NPU/CPU layers npuc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        o, v = ours_totals(run["npuc"]), vela_totals(run["vela"])
        name = f"| {run['network']} | {run['hw']} |"
        if o is None or v is None:
            err = run["npuc"].get("error") or run["vela"].get("error")
            lines.append(f"{name} failed: {err} |" + " |" * 9)
            continue
        lines.append(
            f"{name} {_m(o['cycles'])} | {_m(v['cycles'])} | {o['cycles'] / v['cycles']:.2f} |"
            f" {o['macs_per_cycle']:.0f} | {v['macs_per_cycle']:.0f} | {_mb(o['dram_bytes'])} |"
            f" {_mb(v['dram_bytes'])} | {o['sram_peak'] / 1024:.0f} KiB |"
            f" {v['sram_peak'] / 1024:.0f} KiB | {o['npu_layers']:.0f}/{o['cpu_layers']:.0f} |"
        )
    return lines


def _targets_table(results: Mapping[str, Any]) -> list[str]:
    lines = [
        "| network | config | target | npuc | hit? | Vela (this run) | issue author's Vela |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        key = (run["network"], run["hw"])
        o, v = ours_totals(run["npuc"]), vela_totals(run["vela"])
        for what, field, cmp, bound in TARGETS_13.get(key, []):
            shown = _mb(bound) if "DRAM" in what else (_m(bound) if what == "cycles" else bound)
            if o is None:
                lines.append(f"| {key[0]} | {key[1]} | {what} {cmp} {shown} | failed | miss | | |")
                continue
            got = o[field]
            hit = got >= bound if cmp == ">=" else got <= bound
            fmt = _mb if "DRAM" in what else (_m if what == "cycles" else (lambda x: f"{x:.0f}"))
            theirs = fmt(v[field]) if v else "-"
            lines.append(
                f"| {key[0]} | {key[1]} | {what} {cmp} {shown} | {fmt(got)} |"
                f" {'**hit**' if hit else '**miss**'} | {theirs} | {AUTHOR_VELA.get(key, '')} |"
            )
    return lines


def _compile_table(results: Mapping[str, Any]) -> list[str]:
    source = results.get("source", "float")
    calibrated = f"calibration on {results['calib_samples']}"
    lines = [
        f"npuc builds run {results.get('jobs', 1)} at a time (the compile-time builds below them"
        " alone); Vela runs alone. Wall seconds; load = 1/5/15-minute load averages before.",
        "",
        "| network | config | npuc build | s | load before | Vela s | npuc/Vela |"
        f" < {COMPILE_TARGET_S:.0f} s? |",
        "|---|---|---|---|---|---|---|---|",
    ]
    vela_s = {(r["network"], r["hw"]): r["vela"].get("seconds", 0.0) for r in results["runs"]}
    rows = [(r["network"], r["hw"], r["npuc"]) for r in results["runs"]]
    rows += [(c["network"], c["hw"], c) for c in results.get("compile", [])]
    for network, hw, n in rows:
        s = n.get("build_seconds", 0.0)
        vs = vela_s.get((network, hw), 0.0)
        load = ", ".join(f"{x:.1f}" for x in n.get("build_load", []))
        src = n.get("source", source)
        kind = "int8 file, no calibration" if src == "int8" else f"float file, {calibrated}"
        lines.append(
            f"| {network} | {hw} | {kind} | {s:.1f} | {load} | {vs:.1f} |"
            f" {s / max(vs, 1e-9):.1f}x | {'yes' if s < COMPILE_TARGET_S else 'no'} |"
        )
    return lines


def _kind(layer: Mapping[str, Any]) -> str:
    if layer.get("depthwise"):
        return "dw"
    if layer["op"] == "dense":
        return "fc"
    shapes = layer.get("inputs") or [[0, 0]]
    cin = shapes[0][1] if len(shapes[0]) > 1 else 0
    return f"conv cin={cin}"


def _layer_table(run: Mapping[str, Any]) -> list[str]:
    report = run["npuc"].get("report")
    if report is None or "layers" not in run["vela"]:
        return ["(no per-layer data: a side failed)"]
    vela = [VelaLayer(**v) for v in run["vela"]["layers"]]
    layers = [r for r in report["layers"] if r.get("target") == "npu"]
    lines = [
        "| # | npuc layer | kind | output | MACs | Vela cycles | npuc cycles | npuc/Vela |"
        " MAC/c Vela | MAC/c npuc | npuc DRAM KB | npuc waste |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (v, o) in enumerate(match_mac_layers(vela, layers)):
        vc = v.cycles if v else 0
        oc = int(o.get("sim_cycles") or o.get("est_cycles") or 0) if o else 0
        macs = (v.macs if v else 0) or (int(o["macs"]) if o else 0)
        waste = ""
        if o and o.get("waste"):
            worst = max(o["waste"], key=lambda w: w.get("cycles", 0))
            if worst.get("cycles", 0) > 0.1 * max(oc, 1):
                waste = f"{worst['kind']} {worst['cycles']:,}"
        lines.append(
            f"| {i} | {o['layer'] if o else '-'} | {_kind(o) if o else v.op if v else ''} |"
            f" {'x'.join(map(str, o['output'][1:])) if o else ''} | {macs:,} | {vc:,} | {oc:,} |"
            f" {oc / vc if vc and oc else 0:.2f} | {macs / vc if vc else 0:.0f} |"
            f" {macs / oc if oc else 0:.0f} | {int(o.get('dram_bytes', 0)) / 1e3 if o else 0:.0f} |"
            f" {waste} |"
        )
    other_v = sum(x.cycles for x in vela if not is_mac_layer(x))
    other_o = sum(int(r.get("sim_cycles") or 0) for r in layers if not r.get("macs"))
    lines.append(
        f"| | all other layers (add, pool, pad, softmax, ...) | | | 0 | {other_v:,} |"
        f" {other_o:,} | | | | | |"
    )
    return lines


def _breakdown(run: Mapping[str, Any]) -> list[str]:
    """Where the cycles go, by layer kind, on both sides."""
    report = run["npuc"].get("report")
    if report is None or "layers" not in run["vela"]:
        return []
    vela = [VelaLayer(**v) for v in run["vela"]["layers"]]
    layers = [r for r in report["layers"] if r.get("target") == "npu"]
    groups: dict[str, list[int]] = {}
    for v, o in match_mac_layers(vela, layers):
        kind = _kind(o) if o else "unmatched"
        if kind.startswith("conv"):
            kind = "first conv (3 channels)" if kind == "conv cin=3" else "conv"
        g = groups.setdefault(kind, [0, 0, 0])
        g[0] += v.cycles if v else 0
        g[1] += int(o.get("sim_cycles") or 0) if o else 0
        g[2] += (v.macs if v else 0) or (int(o["macs"]) if o else 0)
    g = groups.setdefault("other (no MACs)", [0, 0, 0])
    g[0] += sum(x.cycles for x in vela if not is_mac_layer(x))
    g[1] += sum(int(r.get("sim_cycles") or 0) for r in layers if not r.get("macs"))
    lines = ["| kind | MACs | Vela cycles | npuc cycles | npuc - Vela |", "|---|---|---|---|---|"]
    for kind, (vc, oc, macs) in sorted(groups.items(), key=lambda kv: -(kv[1][1] - kv[1][0])):
        lines.append(f"| {kind} | {macs / 1e6:.1f} M | {_m(vc)} | {_m(oc)} | {_m(oc - vc)} |")
    waste = report["totals"].get("waste_cycles")
    if waste:
        parts = ", ".join(f"{k} {_m(c)}" for k, c in sorted(waste.items(), key=lambda kv: -kv[1]))
        lines.append("")
        lines.append(f"npuc's own waste accounting (report totals): {parts}.")
    return lines


def write_markdown(results: Mapping[str, Any], out: Path) -> None:
    """Write the whole results page to ``out``."""
    weights = {r["convert"].get("weights", "?") for r in results["runs"]}
    lines = [
        "# npuc vs Arm Vela 5.2: ResNet-50 and MobileNetV2 (issue 13)",
        "",
        "Generated by `bench/npu.py` (`make bench-npu`); notes and explanations in"
        " [npu_notes.md](npu_notes.md).",
        f"Run {results['started']} - {results.get('finished', '(unfinished)')},"
        f" {results['cores']} cores, load averages (1/5/15 min) at start"
        f" {results['load_start']}, at end {results.get('load_end', '-')};"
        f" npuc at `{results['git']}`"
        + (
            f" plus uncommitted changes to {', '.join(results['dirty'])}."
            if results.get("dirty")
            else "."
        ),
        "",
        f"Keras weights: **{', '.join(sorted(weights))}** (random initialisation; the weight"
        " download host is unreachable here). Cycle counts depend on shapes only; Vela's"
        " weight compression depends on values, so its weight DRAM bytes here are those of"
        " random weights (they compress less than trained ones).",
        f"The int8 TFLite file is calibrated on {results['calib_samples']} crops of the bundled"
        " photos; Vela compiles it. "
        + (
            "npuc compiles the very same int8 file (its scales and int8 weights: the"
            " pre-quantized TFLite import)."
            if results.get("source") == "int8"
            else "npuc compiles the float TFLite file and quantizes it itself on the same crops."
        )
        + " Vela numbers are its performance estimate; npuc numbers are its cycle-approximate"
        " simulator on one inference (layers on the host, the input transpose and the"
        " softmax, are not NPU cycles).",
        "",
        "## Configurations",
        "",
        *_setup(results),
        "",
        "Vela's SRAM: Arm's own settings for the core (16 B/cycle per AXI port, 32-cycle"
        " latency; 2 ports on the U85); npuc's SRAM feeds its MAC array directly.",
        "",
        "## Totals per inference",
        "",
        *_totals_table(results),
        "",
        "## Issue 13 targets",
        "",
        *_targets_table(results),
        "",
        "## Compile time",
        "",
        *_compile_table(results),
        "",
    ]
    for run in results["runs"]:
        lines += [f"## {run['network']} on {run['hw']} ({TARGETS[run['hw']].accelerator})", ""]
        lines += _breakdown(run)
        lines += ["", "Convolution and fully connected layers, matched in order by MAC count:", ""]
        lines += _layer_table(run)
        lines.append("")
    write_text_atomic(out, "\n".join(lines))

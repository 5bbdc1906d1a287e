"""The NPU performance report as one self-contained HTML page (jinja2 template, matplotlib plots).

:func:`render_html` takes the dict of :func:`.report.layer_report` and returns
the page: totals, notes, a roofline plot (per NPU layer: MACs per layer
cycle (the larger of the cycles it adds and its busiest unit's) vs
arithmetic intensity in MACs per DRAM byte; the compute roof
is the MAC array ``rows x cols``, the memory roof ``dram_bytes_per_cycle``
MACs/byte x intensity), the per-layer unit busy cycles stacked (DMA-in, MAC,
ITP, DMA-out, as the simulator counts them), the flagged waste with its fix,
and the per-layer table. Plots are inline base64 PNG; no external files,
scripts or fonts are referenced.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import jinja2
import numpy as np

from npuc.backend.npu.report import UNITS

#: Flagged waste entries listed in the page's waste table (all are in the per-layer table).
SHOWN_WASTE = 25

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>npuc NPU performance report</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 5px; text-align: right; }
td.l, th.l { text-align: left; }
tr.cpu { color: #777; }
.flag { color: #a00; }
</style></head><body>
<h1>NPU performance report</h1>
<h2>Totals</h2>
<ul>{% for line in summary %}<li>{{ line }}</li>{% endfor %}</ul>
{% if notes %}<h3>Notes</h3><ul>{% for n in notes %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
<h2>Plots</h2>
{% for title, png in plots %}<figure><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
<figcaption>{{ title }}</figcaption></figure>{% endfor %}
<h2>Waste flagged (at least {{ flag_pct }} of a unit's cycles in the layer)</h2>
{% if flagged %}<p>{{ flagged|length }} entries, most cycles first{% if flagged|length > shown %};
the first {{ shown }} shown, all in report.json and the per-layer table{% endif %}.</p>
<table><tr><th class="l">layer</th><th class="l">kind</th><th>cycles</th>
<th>share</th><th class="l">what</th><th class="l">shape change</th></tr>
{% for f in flagged[:shown] %}<tr><td class="l">{{ f.layer }}</td><td class="l">{{ f.kind }}</td>
<td>{{ f.cycles }}</td><td>{{ f.share }}</td><td class="l">{{ f.detail }}</td>
<td class="l">{{ f.fix }}</td></tr>{% endfor %}</table>{% else %}<p>None.</p>{% endif %}
<h2>Per layer</h2>
<p>cycles: simulated cycles the layer adds to the run (they sum to the total); span: its first
instruction's start to its last one's end (neighbours overlap); est: the compiler's tiling model
(perf.py) and its error vs cycles; util: MACs / (layer cycles x array MACs), layer cycles being
the larger of cycles and its busiest unit's; lower bound: weights,
inputs and outputs moved once; cosine: quantization similarity (integer vs float).</p>
<table><tr>{% for h in header %}<th class="{{ 'l' if loop.index0 < 3 else '' }}">{{ h }}</th>
{% endfor %}</tr>
{% for r in rows %}<tr class="{{ r.cls }}">{% for v in r.cells %}
<td class="{{ 'l' if loop.index0 < 3 or loop.index0 >= r.left_from else '' }}">{{ v }}</td>
{% endfor %}</tr>{% endfor %}</table>
</body></html>
"""

_HEADER = (
    "layer", "op", "target", "output", "MACs", "cycles", "span", "est", "err", "util",
    "DRAM read", "DRAM written", "lower bound", "SRAM peak", "cosine", "tiling", "waste / reason",
)  # fmt: skip


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _timed(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in report["layers"] if "sim_cycles" in r]


def roofline_png(report: Mapping[str, Any]) -> str:
    """The roofline plot (module docstring) as base64 PNG."""
    from matplotlib.figure import Figure

    t = report["totals"]
    peak = t["mac_rows"] * t["mac_cols"]
    bw = t["dram_bytes_per_cycle"]
    rows = [r for r in _timed(report) if r["macs"] and r["sim_cycles"]]
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    xs = np.array([max(r["arithmetic_intensity"], 1e-3) for r in rows] or [1.0])
    lo, hi = min(xs.min(), peak / bw) / 4, max(xs.max(), peak / bw) * 4
    grid = np.geomspace(lo, hi, 200)
    ax.plot(grid, np.minimum(peak, bw * grid), "k-", label=f"roof: {peak} MACs/cycle, {bw} B/cycle")
    dw_roof = np.minimum(t["mac_rows"], bw * grid)
    ax.plot(grid, dw_roof, "k:", label=f"depthwise roof: {t['mac_rows']} MACs/cycle")
    for dw in (False, True):
        sel = [r for r in rows if r["depthwise"] == dw]
        if sel:
            ax.scatter(
                [max(r["arithmetic_intensity"], 1e-3) for r in sel],
                [max(r["macs_per_cycle"], 1e-3) for r in sel],
                s=18,
                marker="^" if dw else "o",
                label="depthwise" if dw else "other layers",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (MACs / DRAM byte)")
    ax.set_ylabel("MACs / layer cycle (simulated)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _png(fig)


def breakdown_png(report: Mapping[str, Any]) -> str:
    """Per-layer unit busy cycles, stacked by unit, as base64 PNG."""
    from matplotlib.figure import Figure

    rows = _timed(report)
    x = np.arange(len(rows))
    fig = Figure(figsize=(max(8.0, min(30.0, 0.15 * len(rows))), 4))
    ax = fig.add_subplot()
    bottom = np.zeros(len(rows))
    for unit in UNITS:
        values = np.array([r["unit_busy_cycles"][unit] for r in rows], dtype=float)
        ax.bar(x, values, bottom=bottom, label=unit, width=0.8)
        bottom += values
    step = max(1, len(rows) // 60)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([r["layer"] for r in rows][::step], rotation=90, fontsize=6)
    ax.set_ylabel("busy cycles per unit (stacked)")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return _png(fig)


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


def _summary(t: Mapping[str, Any]) -> list[str]:
    out = [
        f"hardware {t['hw']}: {t['mac_rows']}x{t['mac_cols']} MAC array, "
        f"{t['dram_bytes_per_cycle']} DRAM B/cycle, {t['clock_hz'] / 1e9:g} GHz",
        f"{t['npu_layers']} NPU layer(s), {t['cpu_layers']} CPU layer(s), {t['macs']:,} MACs",
        f"compiler estimate: {t['est_cycles']:,} cycles (sum of per-layer tiling models), "
        f"{t['replay_cycles']:,} (schedule replay)",
        f"DRAM traffic {t['dram_bytes']:,} B (read {t['dram_read_bytes']:,}, written "
        f"{t['dram_written_bytes']:,}); lower bound {t['dram_lower_bound_bytes']:,} B",
    ]
    if "sim_cycles" in t:
        out.insert(
            2,
            f"simulated: {t['sim_cycles']:,} cycles = {t['time_ms']:.3f} ms, MAC utilisation "
            f"{t['mac_utilisation']:.1%}, depthwise layers {t['depthwise_share']:.1%} of the time",
        )
        out.append(
            f"estimate error: tiling models {t['est_error']:+.1%}, "
            f"schedule replay {t['replay_error']:+.1%}"
        )
    return out


def _cells(r: Mapping[str, Any]) -> list[Any]:
    head = [r["layer"], r["op"], r["target"], "x".join(map(str, r["output"]))]
    cos = r.get("similarity", {}).get("cosine")
    cos_text = "" if cos is None else f"{cos:.4f}"
    if "macs" not in r:
        return [*head, *[""] * 10, cos_text, "", r["reason"]]
    flagged = "; ".join(f"{w['kind']}: {w['fix'] or w['detail']}" for w in r["waste"] if w["flag"])
    return [
        *head,
        f"{r['macs']:,}",
        f"{r.get('sim_cycles', ''):,}" if "sim_cycles" in r else "",
        f"{r.get('sim_span_cycles', ''):,}" if "sim_span_cycles" in r else "",
        f"{r['est_cycles']:,}",
        f"{r['est_error']:+.1%}" if "est_error" in r else "",
        _pct(r.get("mac_utilisation")),
        f"{r['dram_read_bytes']:,}",
        f"{r['dram_written_bytes']:,}",
        f"{r['dram_lower_bound_bytes']:,}",
        f"{r['sram_peak_bytes']:,}",
        cos_text,
        r["tiling"],
        flagged,
    ]


def render_html(report: Mapping[str, Any]) -> str:
    """The report page (module docstring) as a string."""
    from npuc.backend.npu.report_waste import FLAG_FRACTION

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    t = report["totals"]
    plots = []
    if _timed(report):
        plots = [
            (
                "Roofline: per NPU layer, simulated MACs/cycle vs MACs per DRAM byte",
                roofline_png(report),
            ),
            ("Per-layer busy cycles by unit (simulator)", breakdown_png(report)),
        ]
    flagged = sorted(
        (
            {**w, "layer": r["layer"], "share": f"{w['fraction']:.0%}"}
            for r in report["layers"]
            for w in r.get("waste", [])
            if w["flag"]
        ),
        key=lambda w: -int(w["cycles"]),
    )
    return env.from_string(_TEMPLATE).render(
        summary=_summary(t),
        notes=t.get("notes", []),
        plots=plots,
        flag_pct=f"{FLAG_FRACTION:.0%}",
        flagged=flagged,
        shown=SHOWN_WASTE,
        header=_HEADER,
        rows=[
            {"cells": _cells(r), "cls": "cpu" if r["target"] == "cpu" else "", "left_from": 15}
            for r in report["layers"]
        ],
    )

"""The accuracy report as one self-contained HTML page (jinja2 template, matplotlib plots).

:func:`render_html` returns the page: summary (samples, whole-model metrics,
a red banner when calibration was random), the plots as inline base64 PNG
(accumulated vs isolated SQNR per layer, flagged layers marked; weight-only
vs activation-only SQNR), the flagged layers, weight-outlier warnings,
accumulator overflows and the per-layer table with every error column of
:mod:`.analysis` and the chosen scheme and range. No external files,
scripts or fonts are referenced.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import jinja2
import numpy as np

from .analysis import COLUMNS, FLOAT_SQNR_DB, AccuracyReport, LayerReport

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>npuc quantization accuracy report</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 2px 5px; text-align: right; }
td.l, th.l { text-align: left; }
tr.flag { background: #fde2e2; }
tr.cpu { color: #777; }
.banner { background: #c62828; color: white; padding: 0.6em; font-weight: bold; }
.warn { color: #8a4b00; }
</style></head><body>
<h1>Quantization accuracy report</h1>
{% if random %}<p class="banner">Calibrated on RANDOM data: the ranges, and so every number
below, do not describe real inputs.</p>{% endif %}
<h2>Summary</h2>
<ul>
<li>{{ report.samples }} evaluation sample(s); per-layer columns over {{ report.layer_samples }}.
All numbers are computed on the integer executor (the golden model).</li>
{% for line in metrics %}<li>{{ line }}</li>{% endfor %}
<li>{{ npu }} integer layer(s), {{ cpu }} float (CPU) layer(s);
{{ flagged|length }} flagged; {{ report.weight_warnings|length }} weight-outlier warning(s).</li>
{% if calibration %}<li>calibration: {{ calibration }}</li>{% endif %}
</ul>
<h2>Plots</h2>
{% for title, png in plots %}<figure><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
<figcaption>{{ title }}</figcaption></figure>{% endfor %}
<h2>Flagged layers (sudden drop)</h2>
{% if flagged %}<ul>{% for row in flagged %}<li><b>{{ row.name }}</b> ({{ row.kind }}):
{{ row.flag }}</li>{% endfor %}</ul>{% else %}<p>None.</p>{% endif %}
<h2>Weight-outlier warnings</h2>
{% if report.weight_warnings %}<ul>{% for w in report.weight_warnings %}
<li class="warn">{{ w }}</li>{% endfor %}</ul>{% else %}<p>None.</p>{% endif %}
{% if report.overflow %}<p class="banner">48-bit accumulator overflow in:
{{ report.overflow|join(", ") }}</p>{% endif %}
<h2>Per layer</h2>
<p>cos: cosine similarity, dB: SQNR, max: max abs error (tensor units); accumulated: the
integer model up to the layer; isolated: the layer alone fed the float inputs; W / A:
fake-quant with only weights / only activations quantized; FQ: full fake-quant;
FQ&ne;int: integer vs fake-quant (accumulated, and isolated).</p>
<table>
<tr><th class="l">#</th><th class="l">layer</th><th class="l">kind</th><th class="l">run on</th>
<th class="l">scheme</th><th>scale</th><th>zp</th><th class="l">range</th>
<th>acc cos</th><th>acc dB</th><th>acc max</th><th>iso cos</th><th>iso dB</th><th>iso max</th>
<th>W dB</th><th>A dB</th><th>FQ dB</th><th>FQ&ne;int dB</th><th>FQ&ne;int iso max</th>
<th class="l">flag / reason</th></tr>
{% for r in rows %}<tr class="{{ r.cls }}"><td class="l">{{ loop.index0 }}</td>
<td class="l">{{ r.name }}{% if r.source %}<br><small>{{ r.source }}</small>{% endif %}</td>
<td class="l">{{ r.kind }}</td><td class="l">{{ r.run_on }}</td>
<td class="l">{{ r.scheme }}</td><td>{{ r.scale }}</td><td>{{ r.zp }}</td>
<td class="l">{{ r.range }}</td>{% for v in r.cells %}<td>{{ v }}</td>{% endfor %}
<td class="l">{{ r.note }}</td></tr>
{% endfor %}</table>
</body></html>
"""

_CELLS = (
    ("accumulated", "cosine"),
    ("accumulated", "sqnr_db"),
    ("accumulated", "max_abs_error"),
    ("isolated", "cosine"),
    ("isolated", "sqnr_db"),
    ("isolated", "max_abs_error"),
    ("weights_only", "sqnr_db"),
    ("activations_only", "sqnr_db"),
    ("fake_quant", "sqnr_db"),
    ("fake_vs_integer", "sqnr_db"),
    ("fake_vs_integer_isolated", "max_abs_error"),
)
assert {c for c, _ in _CELLS} <= set(COLUMNS)


def _cell(x: float, metric: str) -> str:
    if math.isnan(x):
        return ""
    if math.isinf(x):
        return "exact" if x > 0 else "-inf"
    if metric == "cosine":
        return f"{x:.5f}"
    if metric == "sqnr_db":
        return f"{x:.1f}"
    return f"{x:.3g}"


def _scheme_text(scheme: dict[str, Any]) -> str:
    parts = []
    if "dtype" in scheme:
        parts.append(str(scheme["dtype"]))
    if "q_mode_activation" in scheme:
        parts.append(str(scheme["q_mode_activation"])[:4])
        parts.append(str(scheme["q_strategy_activation"]))
    if "q_mode_weight" in scheme:
        parts.append(f"W {scheme['q_mode_weight']} {scheme['q_strategy_weight']}")
    if "post_shift" in scheme:
        parts.append(f"shift {scheme['post_shift']}")
    return ", ".join(parts)


def _row(row: LayerReport) -> dict[str, Any]:
    scheme = dict(row.scheme)
    rng = scheme.get("range")
    return {
        "name": row.name,
        "source": ", ".join(row.source),
        "kind": row.kind,
        "run_on": row.run_on,
        "scheme": _scheme_text(scheme),
        "scale": f"{scheme['scale']:.4g}" if "scale" in scheme else "",
        "zp": scheme.get("zero_point", ""),
        "range": f"[{float(rng[0]):.4g}, {float(rng[1]):.4g}]" if rng else "",
        "cells": [_cell(row.metric(c, m), m) for c, m in _CELLS],
        "note": row.flag or (row.reason if row.run_on == "cpu" else ""),
        "cls": "flag" if row.flag else ("cpu" if row.run_on == "cpu" else ""),
    }


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _series(rows: list[LayerReport], column: str) -> np.ndarray:
    values = [row.metric(column, "sqnr_db") for row in rows]
    return np.array([min(v, FLOAT_SQNR_DB) if not math.isnan(v) else np.nan for v in values])


def plots(report: AccuracyReport) -> list[tuple[str, str]]:
    """``(title, base64 PNG)`` of each plot (the integer layers, in graph order)."""
    from matplotlib.figure import Figure

    rows = [r for r in report.layers if r.run_on == "npu"]
    if not rows:
        return []
    x = np.arange(len(rows))
    width = max(8.0, min(30.0, 0.12 * len(rows)))
    out = []
    fig = Figure(figsize=(width, 3.6))
    ax = fig.add_subplot()
    ax.plot(x, _series(rows, "accumulated"), "-o", ms=3, label="accumulated")
    ax.plot(x, _series(rows, "isolated"), "-s", ms=3, label="isolated")
    flagged = [i for i, r in enumerate(rows) if r.flag]
    if flagged:
        ax.plot(x[flagged], _series(rows, "accumulated")[flagged], "rv", ms=8, label="flagged")
    _finish(ax, rows, x, "SQNR (dB, capped at 100)")
    out.append(("Per-layer SQNR: accumulated vs isolated (integer executor vs float)", _png(fig)))
    if any("weights_only" in r.errors for r in rows):
        fig = Figure(figsize=(width, 3.6))
        ax = fig.add_subplot()
        ax.plot(x, _series(rows, "weights_only"), "-o", ms=3, label="weights only")
        ax.plot(x, _series(rows, "activations_only"), "-s", ms=3, label="activations only")
        ax.plot(x, _series(rows, "accumulated"), ":", color="gray", label="integer (accumulated)")
        _finish(ax, rows, x, "SQNR (dB, capped at 100)")
        out.append(("Weight-only vs activation-only contributions (fake-quant)", _png(fig)))
    return out


def _finish(ax: Any, rows: list[LayerReport], x: np.ndarray, ylabel: str) -> None:
    step = max(1, len(rows) // 60)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([r.name for r in rows][::step], rotation=90, fontsize=6)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def render_html(report: AccuracyReport) -> str:
    """The report page (module docstring) as a string."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(_TEMPLATE)
    calibration = ", ".join(f"{k}: {v}" for k, v in report.calibration.items())
    return template.render(
        report=report,
        random=report.random_calibration,
        metrics=report.metric_lines(),
        npu=sum(r.run_on == "npu" for r in report.layers),
        cpu=sum(r.run_on == "cpu" for r in report.layers),
        flagged=report.flagged(),
        calibration=calibration,
        plots=plots(report),
        rows=[_row(r) for r in report.layers],
    )

"""The markdown table of bench/accuracy.py, from its saved JSON rows."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

METRIC_NAMES = {
    "top1_agreement": "top-1 agreement",
    "char_accuracy": "char acc",
    "line_accuracy": "exact lines",
}

NOTES = """\
## What each tool needed

- **onnxruntime** `quantize_static` (QDQ, `per_channel=True`, QInt8 weights and
  activations, calibration fed in chunks of 8 samples via `CalibStridedMinMax`; with
  `CalibMaxIntermediateOutputs` instead, onnxruntime 1.32's MinMax drops each full
  chunk and fails with "No data is collected"):
  - *Entropy*: `quantize_static` keeps 128 histogram bins, which gives exactly
    MinMax's ranges; the ranges here come from
    `create_calibrator(num_bins=2048, num_quantized_bins=128)` and are handed to
    `quantize_static` through `calibration_cache_path`.
  - *Percentile 99.99* with `CalibTensorRangeSymmetric=False` (asymmetric range).
  - PP-OCRv4 rec as shipped stores Conv/MatMul weights as Constant nodes at
    opset 12: onnxruntime then quantizes the weights as activations (per-channel
    has no effect). The hand fix (`ort_ready_copy` in bench/accuracy_data.py)
    moves the Constants to initializers and converts to opset 13; the float
    outputs are unchanged. Rows marked *hand-fixed model* used it.
- **NNCF** `nncf.quantize` on the ONNX model, CPU, presets PERFORMANCE / MIXED,
  fast bias correction (its default) on, `subset_size` = all calibration
  samples; evaluated with onnxruntime. On PP-OCRv4 rec it got the hand-fixed model.
- **npuc**: the model file as shipped (no hand fix), W8A8 with per-channel int8
  weights, asymmetric int8 activations with `mse` ranges, bias correction on
  (`QuantConfig()` defaults); every number comes from the integer executor
  (`IntegerExecutor`), i.e. the exact NPU datapath, not a fake-quant simulation.
- **AIMET-ONNX** was not run: `pip install aimet-onnx` (2.42.0) would replace
  the project's torch 2.13 with torch 2.14.1 and pull ~20 CUDA wheels
  (several GB) into the shared environment, which is not a quick install here.
"""


PLANNED = (
    ("MobileNetV2", "onnxruntime", "MinMax"),
    ("MobileNetV2", "onnxruntime", "Entropy (2048 bins)"),
    ("MobileNetV2", "onnxruntime", "Percentile 99.99 (asymmetric)"),
    ("MobileNetV2", "nncf", "PERFORMANCE + bias correction"),
    ("MobileNetV2", "nncf", "MIXED + bias correction"),
    ("MobileNetV2", "npuc", "QuantConfig() defaults"),
    ("MobileNetV2", "npuc", "activations extrema"),
    ("MobileNetV2", "npuc", "activations 99.99percentile"),
    ("MobileNetV2", "npuc", "activations kld"),
    ("PP-OCRv4 rec", "float", "onnxruntime fp32"),
    ("PP-OCRv4 rec", "onnxruntime", "MinMax, model as shipped"),
    ("PP-OCRv4 rec", "onnxruntime", "MinMax"),
    ("PP-OCRv4 rec", "onnxruntime", "Entropy (2048 bins)"),
    ("PP-OCRv4 rec", "onnxruntime", "Percentile 99.99 (asymmetric)"),
    ("PP-OCRv4 rec", "nncf", "PERFORMANCE + bias correction"),
    ("PP-OCRv4 rec", "nncf", "MIXED + bias correction"),
    ("PP-OCRv4 rec", "npuc", "QuantConfig() defaults"),
)
"""(model, tool, setting) of every job bench/accuracy.py runs; missing ones are listed."""


def _missing(rows: list[dict]) -> str:
    done = {(r["model"], r["tool"], r["setting"]) for r in rows}
    missing = [" / ".join(p) for p in PLANNED if p not in done]
    if not missing:
        return ""
    return (
        "Not measured in this run (did not finish in the time available): "
        + "; ".join(missing)
        + ".\n"
    )


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _metrics(row: dict) -> str:
    if "error" in row:
        return f"failed: {row['error']}"
    return ", ".join(f"{METRIC_NAMES.get(k, k)} {v:.3f}" for k, v in row["metrics"].items())


def _spread(rows: list[dict]) -> str:
    values = [
        r["metrics"]["top1_agreement"]
        for r in rows
        if r["model"] == "MobileNetV2"
        and r["tool"] == "npuc"
        and r["setting"] == "QuantConfig() defaults"
        and "metrics" in r
    ]
    if len(values) < 2:
        return "npuc spread over disjoint calibration subsets: fewer than 2 subsets finished.\n"
    return (
        f"npuc MobileNetV2 top-1 agreement over {len(values)} disjoint calibration subsets "
        f"of 64 crops: {', '.join(f'{v:.3f}' for v in values)} -> spread "
        f"{max(values) - min(values):.3f} (target <= 0.02).\n"
    )


def write_report(rows_path: Path, out: Path, *, command: str) -> None:
    """Write ``out`` from the JSON rows in ``rows_path`` (later rows replace equal keys)."""
    latest: dict[tuple, dict] = {}
    if rows_path.exists():
        for line in rows_path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                latest[(row["model"], row["tool"], row["setting"], row["calib"])] = row
    rows = list(latest.values())
    lines = [
        "# Post-training quantization accuracy: npuc beside its peers",
        "",
        f"Machine: {_cpu_name()}, {os.cpu_count()} cores (shared with other jobs;"
        " load average 10-13 while this ran)."
        f" Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
        f"Command: `{command}`",
        "",
        "Same calibration and evaluation samples for every tool, disjoint: MobileNetV2 on random",
        "crops of the bundled photos (calibration seed 101, evaluation seed 202), metric top-1",
        "agreement with the float model; PP-OCRv4 rec on text lines rendered with Pillow from two",
        "disjoint word lists, metrics character accuracy (1 - edit distance / length) and",
        "exact-line accuracy against the rendered string. All int8 rows: int8 per-channel",
        "weights, int8 activations. Times in seconds (quantize = everything from the float",
        "file to the quantized model, calibration included; eval = all evaluation samples).",
        "",
        "| model | tool | setting | calibration | result | quantize s | eval s | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    order = {"float": 0, "onnxruntime": 1, "nncf": 2, "npuc": 3}
    for r in sorted(rows, key=lambda r: (r["model"], order.get(r["tool"], 9))):
        lines.append(
            f"| {r['model']} | {r['tool']} | {r['setting']} | {r['calib']} | {_metrics(r)} | "
            f"{r.get('quantize_s', '-')} | {r.get('eval_s', '-')} | {r.get('note', '')} |"
        )
    lines += ["", _spread(rows), _missing(rows), NOTES]
    run_notes = out.with_name("accuracy_notes.md")  # hand-written notes on this run
    if run_notes.exists():
        lines += ["", run_notes.read_text()]
    out.write_text("\n".join(lines))

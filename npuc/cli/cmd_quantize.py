"""``npuc quantize``: post-training quantization exact to the NPU's integer datapath.

Writes the quantized model (``-o model.npuq``), the per-layer template
(``model.npuq.layers.json``, editable and read back with ``--layer-config``)
and, with ``--report DIR``, the accuracy report. Accuracy numbers always come
from the integer executor (what the NPU computes), never from fake-quant alone.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.cli.quant_options import (
    add_quant_flags,
    config_from_args,
    list_fields,
    preprocess_from_args,
)
from npuc.core.errors import InvalidInputError

DESCRIPTION = """\
Quantize a float model (ONNX, TFLite, PyTorch .pt2) on representative inputs
so that every integer is what the NPU computes: int8 weights per channel,
int8/int16 activations, 16-bit bias with one bias shift, 15-bit multipliers
with one post-shift per layer, lookup tables for sigmoid/tanh/SiLU/...

  npuc quantize model.onnx --calib data/ -o model.npuq --report report/

--calib takes an .npy (N samples), an .npz (one array per input), a folder of
.npy/.npz files or images, a text file listing files, module:function, or
'random' (only to try the flow: the report is marked). Per-layer settings:
edit the written model.npuq.layers.json and pass it back with --layer-config.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="quantize a model to the NPU's integer datapath",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", help="model file (.onnx, .tflite, .pt2)")
    parser.add_argument("--calib", metavar="DATA", help="calibration data (see above)")
    parser.add_argument("--calib-limit", type=int, metavar="N", help="use at most N samples")
    parser.add_argument("-o", "--output", metavar="OUT.npuq", help="quantized model to write")
    parser.add_argument("--report", metavar="DIR", help="write the accuracy report (JSON, HTML)")
    parser.add_argument(
        "--eval",
        metavar="DATA",
        help="evaluation samples for the report, disjoint from --calib (default: --calib's)",
    )
    parser.add_argument("--eval-limit", type=int, metavar="N", help="report samples (default 32)")
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME",
        help="whole-model metric: top1_agreement, top5_agreement, output_cosine, "
        "module:function (repeatable)",
    )
    parser.add_argument(
        "--dump", metavar="DIR", help="write every layer's float/fake-quant/int tensors (.npz)"
    )
    parser.add_argument(
        "--list-fields", action="store_true", help="print every configuration field and exit"
    )
    common.add_input_shape_flag(parser)
    add_quant_flags(parser)
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def source_nodes(model: Any, source_graph: Any) -> dict[str, list[str]]:
    """Layer name -> the source model's node names it came from (ONNX; ``{}`` otherwise).

    A pre-quantized model's quantizer recorded them; for a float model they come from
    :func:`npuc.midend.quantize.source_names.map_source_names` over the imported
    ``source_graph``. Layers without a source node (made by a pass) are left out.
    """
    recorded = model.calibration.get("source_nodes")
    if recorded:
        return {layer: list(nodes) for layer, nodes in recorded.items() if nodes}
    if source_graph is None:
        return {}
    from npuc.midend.quantize.source_names import map_source_names

    names = map_source_names(model.graph, source_graph)
    return {layer: list(nodes) for layer, nodes in names.layers.items() if nodes}


def by_layer_names(config: Any, mod: Any, source_graph: Any) -> Any:
    """``config`` with ONNX node names in ``--float-layers`` and ``--layer-config`` replaced by
    the layers they became (:func:`npuc.midend.quantize.config_names.config_by_source_names`)."""
    from npuc.midend.quantize.config_names import config_by_source_names

    return config_by_source_names(config, mod, source_graph)


def layer_template(model: Any, sources: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The per-layer JSON: editable fields, and a read-only ``display`` block per layer
    (``source_nodes``: the ONNX node names of each layer, from ``sources``)."""
    sources = sources or {}
    layers: dict[str, Any] = {}
    for node in model.graph.nodes:
        layer = model.layers[node.name]
        out = model.tensors.get(node.name)
        display: dict[str, Any] = {"kind": layer.kind, "run_on": layer.run_on}
        if node.name in sources:
            display["source_nodes"] = sources[node.name]
        if layer.reason:
            display["reason"] = layer.reason
        if out is not None:
            display.update(scale=out.scale, zero_point=out.zero_point, dtype=out.dtype)
        for key in ("pre_shift", "post_shift", "bias_shift", "scale_error"):
            if key in layer.params:
                display[key] = layer.params[key]
        if "ofm_multiplier" in layer.params:
            m = layer.params["ofm_multiplier"]
            display["ofm_multiplier"] = (
                [int(m.min()), int(m.max())] if hasattr(m, "min") else int(m)
            )
        meta = model.calibration
        if meta.get("pre_quantized"):
            display["pre_quantized"] = meta.get("note")
            display["forced_changes"] = [
                c["detail"] for c in meta.get("forced_changes", []) if c["layer"] == node.name
            ]
        layers[node.name] = {**layer.config.to_json(), "display": display}
    return {"layers": layers}


def run(args: argparse.Namespace) -> CommandResult:
    if args.list_fields:
        text = list_fields()
        return CommandResult(data={"fields": text.splitlines()}, text=text)
    if not args.model:
        raise InvalidInputError("no model given", hint="npuc quantize model.onnx --calib DATA")
    source = common.existing_file(args.model, "model file")
    out_path = Path(args.output) if args.output else Path(source.stem + ".npuq")
    if out_path.suffix != ".npuq":
        raise InvalidInputError(f"-o {out_path}: a quantized model is written as .npuq")
    config = config_from_args(args)
    preprocess = preprocess_from_args(args)
    if args.calib_limit is not None and args.calib_limit < 1:
        raise InvalidInputError(f"--calib-limit {args.calib_limit}: must be at least 1")
    _check_report_flags(args)
    shapes = common.parse_input_shapes(args.input_shape)

    import numpy as np

    from npuc.cli.quant_report import evaluation_samples
    from npuc.frontend import load
    from npuc.midend.pipeline import Pipeline, graph_passes
    from npuc.midend.quantize.api import quantize_module, quantize_prequantized
    from npuc.midend.quantize.calib_data import load_calibration
    from npuc.midend.quantize.calib_set import calibration_samples, finite_samples
    from npuc.midend.quantize.serialize import save_quantized

    timings_s: dict[str, float] = {}
    start = time.monotonic()
    imported = load(source, shapes)
    mod, info, prequant = imported.mod, imported.info, imported.source_quant
    if args.calib is None and prequant is None:
        raise InvalidInputError(
            "npuc quantize needs calibration data: representative inputs decide every scale",
            hint="pass --calib DIR|FILE.npz|FILE.npy (or --calib random to try the flow)",
        )
    mod = Pipeline(graph_passes())(mod)
    config = by_layer_names(config, mod, imported.source_graph)
    timings_s["import"] = time.monotonic() - start
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        calib = (
            load_calibration(args.calib, info.inputs, preprocess=preprocess, limit=args.calib_limit)
            if args.calib is not None
            else None
        )
        evaluation = (
            evaluation_samples(
                args.eval, info.inputs, preprocess=preprocess, limit=args.eval_limit or 32
            )
            if args.eval
            else None
        )
        samples = (
            calibration_samples(
                calib, limit=config.calibration_samples or None, trim_infinity=config.trim_infinity
            )
            if calib is not None
            else None
        )
        # The report's samples are chosen (and refused) before anything is written.
        limit = args.eval_limit or 32
        chosen = None
        if (args.report or args.dump) and evaluation is not None:
            chosen = evaluation
        elif (args.report or args.dump) and calib is not None:
            chosen = finite_samples(calib, limit=limit, role="calibration")
        elif args.report or args.dump:
            raise InvalidInputError(
                "--report and --dump need samples to run: this pre-quantized model got none",
                hint="pass --eval DATA (or --calib DATA)",
            )
        start = time.monotonic()
        # Infinities kept under --trim-infinity make NaNs downstream; the warning above
        # names them, so numpy's own floating-point warnings would only repeat it.
        with np.errstate(all="ignore" if config.trim_infinity else "warn", under="ignore"):
            if prequant is not None:  # a QDQ model: its own scales, no calibration needed
                model = quantize_prequantized(
                    mod, prequant, config, samples=samples, show_progress=not args.json
                )
            else:
                assert calib is not None and samples is not None
                model = quantize_module(
                    mod,
                    samples,
                    config,
                    calibration={"source": str(args.calib), "is_random": bool(calib.is_random)},
                    show_progress=not args.json,
                )
    notes = list(dict.fromkeys(str(w.message) for w in caught))  # each warning once
    timings_s["quantize"] = time.monotonic() - start
    save_quantized(model, out_path)
    template_path = Path(str(out_path) + ".layers.json")
    sources = source_nodes(model, imported.source_graph)
    common_write_json(template_path, layer_template(model, sources))
    npu = [layer for layer in model.layers.values() if layer.run_on == "npu"]
    cpu = [layer for layer in model.layers.values() if layer.run_on != "npu"]
    data: dict[str, Any] = {
        "output": str(out_path),
        "layer_config": str(template_path),
        "layers": {"integer": len(npu), "float": len(cpu)},
        "float_layers": {layer.name: layer.reason for layer in cpu},
        "source_nodes": sources,
        "calibration": dict(model.calibration),
        "timings_s": timings_s,
        "notes": notes,
    }
    lines = [
        f"quantized {source.name} -> {out_path} ({out_path.stat().st_size:,} bytes)",
        f"  layers: {len(npu)} integer (NPU datapath), {len(cpu)} float (CPU)",
        *calibration_lines(model, args.calib, calib),
        f"  per-layer settings: {template_path} (edit, then pass --layer-config)",
        f"  time: import {timings_s['import']:.1f} s, quantize {timings_s['quantize']:.1f} s",
    ]
    lines += [
        f"  float: {layer.name} "
        f"({_named(layer.kind, sources.get(layer.name), info.source_format)}): {layer.reason}"
        for layer in cpu[:20]
    ]
    if len(cpu) > 20:
        lines.append(f"  ... and {len(cpu) - 20} more float layers (see --json)")
    lines += [f"  warning: {n}" for n in notes]
    if args.report or args.dump:
        from npuc.cli.quant_report import write_dump, write_quant_report

        assert chosen is not None  # chosen before quantizing
        if args.report:
            report_lines, report_data = write_quant_report(
                model,
                chosen,
                Path(args.report),
                metrics=args.metric,
                limit=limit,
                disjoint=bool(args.eval),
                show_progress=not args.json,
                sources=sources,
            )
            lines += report_lines
            data["report"] = report_data
        if args.dump:
            lines += write_dump(model, chosen[0], Path(args.dump))
    return CommandResult(data=data, text="\n".join(lines))


def _named(kind: str, nodes: list[str] | None, source_format: str) -> str:
    """``conv2d, ONNX Conv_3 + Relu_4`` (or just the kind when the source is unknown).

    A TFLite model's operators are named by their first output tensor.
    """
    label = "TFLite" if source_format == "tflite" else "ONNX"
    return f"{kind}, {label} {' + '.join(nodes)}" if nodes else kind


def _check_report_flags(args: argparse.Namespace) -> None:
    """Refuse report flags that would be ignored: ``--eval`` needs ``--report`` or ``--dump``."""
    if args.eval is not None and not (args.report or args.dump):
        raise InvalidInputError(
            f"--eval {args.eval}: evaluation data is only read by --report DIR (and --dump DIR); "
            "without them it would be ignored",
            hint=f"add --report report/ to measure accuracy on {args.eval}, or drop --eval",
        )
    if args.metric and not args.report:
        raise InvalidInputError(
            f"--metric {args.metric[0]}: metrics are only computed for --report DIR",
            hint="add --report report/, or use npuc eval model.npuq --data DATA --metric NAME",
        )
    if args.eval_limit is not None and not args.report:
        raise InvalidInputError(
            "--eval-limit: only --report DIR evaluates samples", hint="add --report report/"
        )
    if args.eval_limit is not None and args.eval_limit < 1:
        raise InvalidInputError(f"--eval-limit {args.eval_limit}: must be at least 1")


def calibration_lines(model: Any, calib_arg: str | None, calib: Any) -> list[str]:
    """The terminal lines on where the scales came from (and every forced change)."""
    meta = model.calibration
    if not meta.get("pre_quantized"):
        random = " (RANDOM: accuracy numbers are meaningless)" if calib.is_random else ""
        return [f"  calibration: {meta.get('samples')} samples from {calib_arg}{random}"]
    lines = [f"  {meta.get('note')}"]
    if calib_arg is not None:
        lines.append(
            f"  calibration: {meta.get('samples', 0)} samples from {calib_arg}, used only for "
            "tensors the model leaves float (and for --report)"
        )
    changes = meta.get("forced_changes", [])
    lines.append(
        f"  forced changes: {len(changes)}"
        + (" (the NPU uses every number of the file as is)" if not changes else "")
    )
    lines += [f"    {c['layer']} ({c['kind']}): {c['detail']}" for c in changes]
    lines += [f"  note: {n}" for n in meta.get("source_notes", [])]
    if meta.get("unmatched_layers"):
        lines.append(
            "  layers not found in the source model: " + ", ".join(meta["unmatched_layers"])
        )
    return lines


def common_write_json(path: Path, data: dict[str, Any]) -> None:
    from npuc.core.fileio import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False) + "\n")

"""``npuc inspect``: what a model takes and gives, its operators, size, MACs and support.

Unsupported operators are listed, not raised: inspect exits 0 for a model it
can read, so it is the way to see everything a model needs before building.
A compiled library (``model.so``) is summarised from its sidecar instead
(:mod:`npuc.cli.inspect_library`: interface, precision, target).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from npuc.cli import common
from npuc.cli.common import CommandResult

if TYPE_CHECKING:
    from npuc.frontend.inspect import ModelSummary

TOP_LAYERS = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="summarise a model: inputs, outputs, operators, parameters, MACs, support",
        description="Summarise a model (ONNX, TFLite, PyTorch .pt2): its inputs and outputs, "
        "operator histogram, parameter count, multiply-accumulates per layer and the "
        "operators npuc cannot compile.",
    )
    parser.add_argument(
        "model", help="model file (.onnx, .tflite, .pt2) or a library built by npuc (.so)"
    )
    common.add_input_shape_flag(parser)
    common.add_input_value_flag(parser)
    parser.add_argument(
        "--all-layers",
        action="store_true",
        help=f"list every layer's MACs, not the top {TOP_LAYERS}",
    )
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> CommandResult:
    from npuc.frontend.inspect import summarize

    source = common.existing_file(args.model, "model file")
    if source.suffix == ".so":
        from npuc.cli.inspect_library import inspect_library

        return inspect_library(source)
    summary = summarize(
        source,
        common.parse_input_shapes(args.input_shape),
        common.parse_input_values(args.input_value),
    )
    return CommandResult(data=summary.to_json(), text=render(summary, all_layers=args.all_layers))


def _count(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def render(summary: ModelSummary, *, all_layers: bool = False) -> str:
    """The human-readable table of a summary."""
    kind = {"onnx": f"ONNX opset {summary.opset}", "tflite": "TFLite", "torch": "PyTorch .pt2"}
    lines = [f"{summary.source_path}  ({kind.get(summary.source_format, summary.source_format)})"]
    lines.append("")
    declared = {t.name: t for t in summary.declared_inputs}
    lines.append(f"{'inputs':<8} {'name':<28} {'shape':<20} dtype")
    for t in summary.inputs:
        shape = t.shape_str()
        if t.name in declared and declared[t.name].shape != t.shape:
            shape += f" (declared {declared[t.name].shape_str()})"
        lines.append(f"{'':<8} {t.name:<28} {shape:<20} {t.dtype}")
    lines.append(f"{'outputs':<8} {'name':<28} {'shape':<20} dtype")
    for t in summary.outputs:
        lines.append(f"{'':<8} {t.name:<28} {t.shape_str():<20} {t.dtype}")
    lines.append("")
    ops = ", ".join(f"{op} {n}" for op, n in summary.op_histogram.items())
    lines.append(f"operators  {sum(summary.op_histogram.values())} nodes: {ops}")
    lines.append(f"parameters {_count(summary.parameter_count)} ({summary.parameter_count:,})")
    lines.append(f"MACs       {_count(summary.total_macs)} ({summary.total_macs:,})")
    layers = sorted(summary.layers, key=lambda x: -(x.macs or 0))
    shown = layers if all_layers else layers[:TOP_LAYERS]
    if shown:
        title = "all layers" if all_layers else f"top {len(shown)} of {len(layers)} layers"
        lines.append(f"\n{title} by MACs:")
        lines.append(f"  {'node':<40} {'op':<14} {'MACs':>12} {'share':>6}")
        for layer in shown:
            share = (layer.macs or 0) / summary.total_macs * 100 if summary.total_macs else 0.0
            macs = "unknown" if layer.macs is None else f"{layer.macs:,}"
            lines.append(
                f"  {layer.node_name[:40]:<40} {layer.op_type:<14} {macs:>12} {share:5.1f}%"
            )
    lines.append(f"\n({summary.macs_note})")
    if summary.unsupported:
        lines.append(f"\nunsupported: {len(summary.unsupported)} node(s) npuc cannot compile:")
        lines.extend(f"  {u.describe()}" for u in summary.unsupported)
    else:
        lines.append("\nsupported: every node can be compiled by npuc")
    return "\n".join(lines)

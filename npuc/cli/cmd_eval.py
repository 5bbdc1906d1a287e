"""``npuc eval``: whole-model metrics of a quantized model next to its float model.

Runs the float layer graph and the integer executor (what the NPU computes)
on the same samples and prints each metric side by side.
"""

from __future__ import annotations

import argparse
from typing import Any

from npuc.cli import common
from npuc.cli.common import CommandResult
from npuc.core.errors import InvalidInputError

DESCRIPTION = """\
Evaluate a quantized model (.npuq from `npuc quantize`) against its float
model on samples (same forms as --calib), e.g.

  npuc eval model.npuq --data eval/ --metric top1_agreement --metric output_cosine

Metrics: top1_agreement, top5_agreement, output_cosine, top1_accuracy and
top5_accuracy (with --labels FILE.npy), or module:function for your own.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="compare a quantized model with its float model on data",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("quantized", help="quantized model (.npuq)")
    parser.add_argument("--data", required=True, metavar="DATA", help="evaluation samples")
    parser.add_argument("--limit", type=int, metavar="N", help="use at most N samples")
    parser.add_argument("--labels", metavar="FILE.npy", help="class index per sample")
    parser.add_argument("--metric", action="append", default=[], metavar="NAME")
    common.add_common_flags(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> CommandResult:
    import numpy as np

    from npuc.cli.quant_report import evaluation_samples
    from npuc.core.model_info import TensorInfo
    from npuc.midend.quantize.analysis import AnalysisOptions, analyze
    from npuc.midend.quantize.serialize import load_quantized

    path = common.existing_file(args.quantized, "quantized model")
    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit {args.limit}: must be at least 1")
    if path.suffix.lower() in (".npuc", ".onnx", ".tflite", ".pt2", ".so"):
        what = "an NPU artifact" if path.suffix.lower() == ".npuc" else "not a quantized model"
        raise InvalidInputError(
            f"{path}: {what}; npuc eval takes the .npuq written by `npuc quantize`",
            hint="quantize the float model first: npuc quantize MODEL --calib DATA -o m.npuq,"
            " then npuc eval m.npuq --data DATA (a .npuc is checked with npuc verify)",
        )
    model = load_quantized(path)
    inputs = [
        TensorInfo(name=n, shape=tuple(ty.shape), dtype=ty.dtype) for n, ty in model.graph.inputs
    ]
    samples = evaluation_samples(args.data, inputs, limit=args.limit)
    labels = None
    if args.labels:
        labels = np.load(common.existing_file(args.labels, "labels file"), allow_pickle=False)
        if labels.shape[0] < len(samples):
            raise InvalidInputError(
                f"--labels {args.labels}: {labels.shape[0]} labels for {len(samples)} samples"
            )
        labels = labels[: len(samples)]
    metrics = tuple(args.metric) or ("top1_agreement", "top5_agreement", "output_cosine")
    options = AnalysisOptions(metrics=metrics, layer_samples=1, fake_quant=False)
    report = analyze(
        model, samples, options=options, labels=labels, total=len(samples),
        show_progress=not args.json,
    )  # fmt: skip
    lines = [f"{path.name}: {report.samples} samples from {args.data}"]
    lines += [f"  {name:20s} " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
              for name, values in report.model_metrics.items()]  # fmt: skip
    result = {
        "samples": report.samples,
        "metrics": {k: dict(v) for k, v in report.model_metrics.items()},
    }
    return CommandResult(data=result, text="\n".join(lines))

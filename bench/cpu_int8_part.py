"""The int8 columns of ``bench/cpu.py``: npuc's integer CPU library vs onnxruntime QDQ int8.

For an ONNX model this is ``bench/cpu_int8.bench_model`` itself (same
quantizers, same timing, same agreement measure), given the model's
calibration samples:

- real models: real samples, as ``bench/cpu_int8.py`` makes them (ImageNet
  crops, rendered text lines, photo crops for YOLOv8n), plus rendered text
  pages preprocessed as PP-OCR det does for the detector, and photo crops
  preprocessed as BlazeFace does (``[-1, 1]``, NHWC) for the TFLite model;
- onnx's light graphs (placeholder weights): standard-normal random samples,
  marked as such in the table (the timing is what they are for).

A TFLite model has no onnxruntime column (onnxruntime cannot read it; the
float reference there is LiteRT): only npuc's int8 library is built, and timed
interleaved with LiteRT float (``bench/interleave.py``, as the ONNX models'
four libraries are in ``bench_model``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cpu_int8
import numpy as np
from bench_target import bench_target
from interleave import Ratio, interleaved

from tools.datasets import random_crops

Samples = Callable[[int, int], np.ndarray]  # (count, seed) -> (count, *input shape[1:]) float32


@dataclass(frozen=True, slots=True)
class Int8Cells:
    """What the int8 columns show for one model; ``None`` where not measured."""

    npuc_ms: float | None
    ort_s8s8_ms: float | None
    ort_u8s8_ms: float | None
    compile_s: float | None
    cosine: float | None
    """Mean cosine of npuc int8's first output against the float model's."""
    calibration: str
    """``real`` or ``random``."""
    error: str = ""
    """Why the int8 part failed, when it did (the float columns still stand)."""
    vs_ort: Ratio | None = None
    """npuc int8 / the faster onnxruntime QDQ variant, per interleaved round."""
    vs_float: Ratio | None = None
    """npuc int8 / the float reference (onnxruntime, LiteRT for TFLite), per round."""

    @property
    def ort_best_ms(self) -> float | None:
        """The faster of onnxruntime's two QDQ variants."""
        known = [t for t in (self.ort_s8s8_ms, self.ort_u8s8_ms) if t is not None]
        return min(known) if known else None


def _ppocr_det(count: int, seed: int) -> np.ndarray:
    """Rendered 480x640 text pages (4-8 lines of ``bench/cpu_int8.py``'s word lists: the
    calibration words for its calibration seed, else the evaluation words), PP-OCR det's
    preprocessing (BGR, ``(x / 255 - 0.5) / 0.5``), NCHW. Photo crops hold almost no text:
    the detector's probability map is then ~0 everywhere and the int8 cosine meaningless."""
    from tests.tooling import images

    words = cpu_int8._CALIB_WORDS if seed == cpu_int8.CALIB_SEED else cpu_int8._EVAL_WORDS
    rng = np.random.default_rng(seed)
    pages = []
    for k in range(count):
        lines = cpu_int8._lines(words, int(rng.integers(4, 9)), seed=seed * 1000 + k)
        page = images.text_page(lines, font_size=int(rng.integers(20, 36)), height=480, width=640)
        pages.append(images.ppocr_det_input(page, limit_side_len=480))
    return np.concatenate(pages)


def _blazeface(count: int, seed: int) -> np.ndarray:
    """Photo crops at 128x128, RGB, scaled to ``[-1, 1]``, NHWC (BlazeFace front's input)."""
    crops = random_crops(count, height=128, width=128, seed=seed)
    return (crops.astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def _random(shape: tuple[int, ...]) -> Samples:
    def make(count: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.standard_normal((count, *shape[1:])).astype(np.float32)

    return make


def samples_for(name: str, shape: tuple[int, ...]) -> tuple[Samples, str]:
    """Calibration/evaluation samples for bench model ``name`` and whether they are real."""
    real = {m.name: m.samples for m in cpu_int8.MODELS}
    real["ppocrv4_det"] = _ppocr_det
    real["blazeface"] = _blazeface
    if name in real:
        return real[name], "real"
    return _random(shape), "random"


def bench_int8(
    name: str,
    locate: Callable[[Path], Path],
    input_name: str,
    shape: tuple[int, ...],
    args: argparse.Namespace,
    folder: Path,
) -> Int8Cells:
    """The int8 cells of one model (``args``: threads, repeats, calib, eval)."""
    samples, kind = samples_for(name, shape)
    path = locate(folder)
    if path.suffix == ".tflite":
        return _npuc_only(name, path, input_name, shape, samples, args, folder)
    model = cpu_int8.Int8Model(
        name, locate, input_name, shape, samples, False, f"{kind} calibration"
    )
    row = cpu_int8.bench_model(model, args, folder)
    return Int8Cells(
        npuc_ms=row.npuc_int8_ms,
        ort_s8s8_ms=row.ort_int8_ms,
        ort_u8s8_ms=row.ort_u8s8_ms,
        compile_s=row.compile_s,
        cosine=row.cos_npuc,
        calibration=kind,
        vs_ort=row.timing.ratio(cpu_int8.NPUC, (cpu_int8.S8S8, cpu_int8.U8S8)),
        vs_float=row.timing.ratio(cpu_int8.NPUC, cpu_int8.FLOAT),
    )


def _npuc_only(
    name: str,
    path: Path,
    input_name: str,
    shape: tuple[int, ...],
    samples: Samples,
    args: argparse.Namespace,
    folder: Path,
) -> Int8Cells:
    """npuc's int8 library of a TFLite model: compile time, latency (interleaved with
    LiteRT float), cosine vs npuc float."""
    from cpu import _reference

    from npuc import runtime
    from npuc.backend.cpu.qlower.library import build_int8_library

    calib_path = folder / f"{name}_calib.npz"
    np.savez(calib_path, **{input_name: samples(args.calib, cpu_int8.CALIB_SEED)})
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build_int8_library(
            path,
            folder / f"{name}_int8.so",
            str(calib_path),
            bench_target(getattr(args, "isa", "host"), args.threads),
            input_shapes={input_name: shape},
        )
    compile_s = time.monotonic() - start
    runtime.configure_threads(args.threads)
    compiled = runtime.load(built.result.library_path)
    evaluate = samples(args.eval, cpu_int8.EVAL_SEED)
    feeds = [{input_name: np.ascontiguousarray(x[None])} for x in evaluate]
    _, run_ref = _reference(path, args.threads)
    fns = {"npuc": lambda: compiled.run(feeds[0]), "ref": lambda: run_ref(feeds[0])}
    batch = getattr(args, "batch", 3)
    timing = interleaved(fns, args.repeats, batch, budget_s=cpu_int8.INT8_BUDGET_S)
    float_model = runtime.load(folder / f"{name}.so")  # the float build of bench/cpu.py
    got = [next(iter(compiled.run(f).values())) for f in feeds]
    want = [next(iter(float_model.run(f).values())) for f in feeds]
    cosine = float(np.mean([cpu_int8._cosine(g, w) for g, w in zip(got, want, strict=True)]))
    vs_float = timing.ratio("npuc", "ref")
    return Int8Cells(
        timing.median_ms("npuc"), None, None, compile_s, cosine, "real", vs_float=vs_float
    )

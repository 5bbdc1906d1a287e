"""The onnx package's "light" model-zoo graphs: import, build, run, compare.

Each graph (ResNet-50, DenseNet-121, Inception v1/v2, ShuffleNet,
SqueezeNet, VGG-19, ZFNet-512, AlexNet) is imported with npuc, compiled for
the CPU and run on the input onnx's backend test runner uses for them
(``arange(n) / n``); the output must match both the stored expected output
(``light_*_output_0.pb``) and onnxruntime at rtol=1e-4, atol=1e-5. These
graphs have placeholder weights, so they test import and graph structure,
not trained accuracy. The larger graphs take minutes to compile and run: all
but SqueezeNet and ShuffleNet are ``slow``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from npuc.frontend import load
from tests.tooling.cpu import run_relax_on_cpu
from tests.tooling.reference import run_onnxruntime

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
FAST = ("squeezenet", "shufflenet")
SLOW = (
    "resnet50",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "vgg19",
    "zfnet512",
    "bvlc_alexnet",
)
RTOL, ATOL = 1e-4, 1e-5


def _runner_input(shape: tuple[int, ...]) -> np.ndarray:
    """The input onnx's backend runner feeds the light models (``random=False``)."""
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def _check(name: str) -> None:
    path = LIGHT_DIR / f"light_{name}.onnx"
    start = time.monotonic()
    mod, info = load(path)
    imported = time.monotonic()
    assert info.source_format == "onnx" and info.layout == "NCHW" and len(info.inputs) == 1
    feeds = {info.inputs[0].name: _runner_input(info.inputs[0].shape)}
    (got,) = run_relax_on_cpu(mod, feeds)
    done = time.monotonic()
    stored = numpy_helper.to_array(onnx.load_tensor(str(LIGHT_DIR / f"light_{name}_output_0.pb")))
    reference = next(iter(run_onnxruntime(str(path), feeds).values()))
    assert got.shape == stored.shape == tuple(info.outputs[0].shape)
    np.testing.assert_allclose(got, stored, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, reference, rtol=RTOL, atol=ATOL)
    print(f"{name}: import {imported - start:.1f} s, build+run {done - imported:.1f} s")


@pytest.mark.parametrize("name", FAST)
def test_light_model_fast(name: str) -> None:
    _check(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_light_model_slow(name: str) -> None:
    _check(name)

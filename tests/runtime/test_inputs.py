"""check_inputs: order, names, and array shapes preserved as given."""

import numpy as np

from npuc.core.model_info import ModelInfo, TensorInfo
from npuc.runtime.inputs import check_inputs

INFO = ModelInfo(
    source_path="m.onnx",
    source_format="onnx",
    source_sha256="0" * 64,
    inputs=(
        TensorInfo(name="x", shape=(2, 3), dtype="float32"),
        TensorInfo(name="bias", shape=(), dtype="float32"),
    ),
    outputs=(TensorInfo(name="y", shape=(2, 3), dtype="float32"),),
)


def test_scalar_input_stays_zero_dimensional() -> None:
    x = np.ones((2, 3), np.float32)
    arrays = check_inputs(INFO, {"bias": np.array(0.5, np.float32), "x": x})
    assert [a.shape for a in arrays] == [(2, 3), ()]


def test_non_contiguous_input_is_made_contiguous() -> None:
    x = np.ones((3, 2), np.float32).T
    assert not x.flags.c_contiguous
    (got, _) = check_inputs(INFO, {"x": x, "bias": np.array(0.0, np.float32)})
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, x, strict=True)

"""check_inputs: order, names, and array shapes preserved as given; DeclaredInputs takes
only inputs check_inputs would return unchanged."""

from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest

from npuc.core.model_info import ModelInfo, TensorInfo
from npuc.runtime.inputs import DeclaredInputs, check_inputs

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


def test_declared_inputs_take_exactly_what_check_inputs_returns_unchanged() -> None:
    declared = DeclaredInputs.of(INFO)
    assert declared is not None
    x, bias = np.ones((2, 3), np.float32), np.array(0.5, np.float32)
    feeds = {"bias": bias, "x": x}
    got = declared.exact_arrays(feeds)
    assert got is not None
    assert [a is b for a, b in zip(got, check_inputs(INFO, feeds), strict=True)] == [True, True]


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize(
    "feeds",
    [
        {"x": np.ones((2, 3), np.float64), "bias": np.array(0.5, np.float32)},  # dtype
        {"x": np.ones((3, 2), np.float32), "bias": np.array(0.5, np.float32)},  # shape
        {"x": np.ones((3, 2), np.float32).T, "bias": np.array(0.5, np.float32)},  # order
        {"x": np.ones((2, 3), np.float32).view(_Sub), "bias": np.array(0.5, np.float32)},
        {"x": np.ones((2, 3), np.float32).tolist(), "bias": np.array(0.5, np.float32)},
        {"x": np.ones((2, 3), np.float32)},  # missing
        {"x": np.ones((2, 3), np.float32), "bias": np.array(0.5, np.float32), "z": 1},
        {"y": np.ones((2, 3), np.float32), "bias": np.array(0.5, np.float32)},  # unknown
        {"x": np.ones((2, 3), np.dtype(">f4")), "bias": np.array(0.5, np.float32)},
    ],
)
def test_declared_inputs_leave_everything_else_to_check_inputs(feeds: dict) -> None:
    declared = DeclaredInputs.of(INFO)
    assert declared is not None
    assert declared.exact_arrays(feeds) is None


def test_declared_inputs_decline_symbolic_shapes_and_unknown_dtypes() -> None:
    symbolic = replace(INFO, inputs=(TensorInfo(name="x", shape=("n", 3), dtype="float32"),))
    exotic = replace(INFO, inputs=(TensorInfo(name="x", shape=(2, 3), dtype="no_such_dtype"),))
    bad_dim = TensorInfo(name="x", shape=(3.5, 8), dtype="float32")  # type: ignore[arg-type]
    fractional = replace(INFO, inputs=(bad_dim,))
    assert DeclaredInputs.of(symbolic) is None
    assert DeclaredInputs.of(exotic) is None
    assert DeclaredInputs.of(fractional) is None  # int(3.5) would accept a (3, 8) array


@pytest.mark.parametrize("container", [list, tuple, OrderedDict])
def test_declared_inputs_take_only_dicts(container: type) -> None:
    declared = DeclaredInputs.of(INFO)
    assert declared is not None
    pairs = [("x", np.ones((2, 3), np.float32)), ("bias", np.array(0.5, np.float32))]
    feeds = container(pairs) if container is OrderedDict else container(v for _, v in pairs)
    assert declared.exact_arrays(feeds) is None  # check_inputs accepts or explains

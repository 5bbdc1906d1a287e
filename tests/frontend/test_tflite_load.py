"""load_tflite's contract: ModelInfo, input shapes, and every way a file can be refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.fileio import sha256_file
from npuc.frontend import ImportedModel, load
from npuc.frontend.tflite import load_tflite
from tests.frontend.test_tflite_ops import TFLiteGraph
from tests.tooling.cpu import run_relax_on_cpu


def _expand_dims_model(path: Path) -> Path:
    g = TFLiteGraph()
    x = g.tensor("images", (2, 3))
    ax = g.tensor("axis", (1,), "int32", np.array([1]))
    y = g.tensor("expanded", (2, 1, 3))
    g.op("EXPAND_DIMS", [x, ax], [y])
    return g.save(path, [x], [y])


def test_model_info_and_dispatch(tmp_path: Path) -> None:
    path = _expand_dims_model(tmp_path / "m.tflite")
    imported = load(path)
    assert isinstance(imported, ImportedModel)
    info = imported.info
    assert (info.source_format, info.layout) == ("tflite", "NHWC")
    assert info.source_path == str(path) and info.source_sha256 == sha256_file(path)
    assert [(t.name, t.shape, t.dtype) for t in info.inputs] == [("images", (2, 3), "float32")]
    assert [(t.name, t.shape) for t in info.outputs] == [("expanded", (2, 1, 3))]
    assert [p.name for p in imported.mod["main"].params] == ["images"]


def test_input_shapes_override(tmp_path: Path) -> None:
    path = _expand_dims_model(tmp_path / "m.tflite")
    mod, info = load_tflite(path, {"images": (5, 3)})
    assert info.inputs[0].shape == (5, 3) and info.outputs[0].shape == (5, 1, 3)
    x = np.arange(15, dtype=np.float32).reshape(5, 3)
    (y,) = run_relax_on_cpu(mod, {"images": x})
    np.testing.assert_array_equal(y, x[:, None, :], strict=True)


@pytest.mark.parametrize(
    ("shapes", "needle", "hint"),
    [
        ({"image": (2, 3)}, "'image', which is not a model input", "inputs are: images"),
        ({"images": (2, 3, 1)}, r"shape \[2, 3, 1\] does not fit the model's \[2, 3\]", "one per"),
        ({"images": (0, 3)}, "does not fit", "positive"),
    ],
)
def test_bad_input_shapes(
    tmp_path: Path, shapes: dict[str, tuple[int, ...]], needle: str, hint: str
) -> None:
    path = _expand_dims_model(tmp_path / "m.tflite")
    with pytest.raises(InvalidInputError, match=needle) as err:
        load_tflite(path, shapes)
    assert hint in (err.value.hint or "")


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read TFLite model"):
        load_tflite(tmp_path / "absent.tflite")
    onnx_like = tmp_path / "model.tflite"
    onnx_like.write_bytes(b"\x08\x07\x12\x04test" + bytes(64))
    with pytest.raises(InvalidInputError, match="not a TFLite flatbuffer"):
        load_tflite(onnx_like)
    full = _expand_dims_model(tmp_path / "full.tflite").read_bytes()
    cut = tmp_path / "cut.tflite"
    for size in (12, 40, len(full) // 2, len(full) - 8):
        cut.write_bytes(full[:size])
        with pytest.raises(InvalidInputError, match="corrupt or truncated TFLite flatbuffer"):
            load_tflite(cut)


def test_all_unsupported_ops_reported_at_once(tmp_path: Path) -> None:
    g = TFLiteGraph()
    x = g.tensor("x", (1, 8))
    a = g.tensor("a", (1, 8))
    b = g.tensor("b", (1, 8))
    c = g.tensor("c", (1, 8))
    q = g.tensor("q", (1, 8), "int16", quant=(0.1, 0))
    qs = g.tensor("qs", (8,), "int16", quant=(0.1, 0))
    g.op("RELU", [x], [a])  # supported: must not be listed
    g.op("CUSTOM:MyFancyOp", [a], [b])
    g.op("SKIP_GRAM", [b], [c])
    g.op("SQUEEZE", [q], [qs])  # int16 activations (16x8 quantization): unsupported
    path = g.save(tmp_path / "bad.tflite", [x, q], [c, qs])
    with pytest.raises(UnsupportedError) as err:
        load_tflite(path)
    msg = err.value.message
    assert "3 operator(s)" in msg
    assert "#1 CUSTOM(MyFancyOp) (output 'b')" in msg
    assert "#2 SKIP_GRAM (output 'c')" in msg and "no converter" in msg
    assert "#3 SQUEEZE (output 'qs'): int16 activation 'q' (16x8 quantization)" in msg
    assert "TFLITE_BUILTINS_INT8" in (err.value.hint or "")
    assert "RELU" not in msg
    assert err.value.exit_code == 4 and err.value.hint


def test_dynamic_range_quantization_is_named(tmp_path: Path) -> None:
    g = TFLiteGraph()
    x = g.tensor("x", (1, 4))
    w = g.tensor("w", (2, 4), "int8", np.ones((2, 4)), quant=(0.5, 0))
    y = g.tensor("y", (1, 2))
    g.op("FULLY_CONNECTED", [x, w], [y])
    path = g.save(tmp_path / "dr.tflite", [x], [y])
    with pytest.raises(UnsupportedError, match=r"#0 FULLY_CONNECTED .*dynamic-range"):
        load_tflite(path)


def test_conversion_failure_names_the_operator(tmp_path: Path) -> None:
    g = TFLiteGraph()
    x = g.tensor("x", (2, 3))
    y = g.tensor("y", (2, 3))
    ax = g.tensor("runtime_axis", (1,), "int32")  # axis is a graph input, not a constant
    z = g.tensor("z", (2, 1, 3))
    g.op("RELU", [x], [y])
    g.op("EXPAND_DIMS", [y, ax], [z])
    path = g.save(tmp_path / "dyn_axis.tflite", [x, ax], [z])
    with pytest.raises(UnsupportedError, match=r"#1 EXPAND_DIMS \(output 'z'\)"):
        load_tflite(path)

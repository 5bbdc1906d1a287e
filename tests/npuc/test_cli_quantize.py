"""``npuc quantize`` end to end on a tiny ONNX model: outputs, options, and every bad input.

The model (real-valued random weights, seeded): Conv+bias -> Relu -> depthwise
Conv -> Add (residual) -> GlobalAveragePool -> Flatten -> Gemm -> Sigmoid on a
1x3x8x8 input. Layer names are npuc's (``conv2d_0``, ``conv2d_1``, ``add_0``,
``global_avg_pool_0``, ``reshape_0``, ``dense_0``, ``sigmoid_0``).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.midend.quantize.qmodel import QuantizedModel
from npuc.midend.quantize.serialize import load_quantized

SHAPE = (1, 3, 8, 8)
CONVS = ("conv2d_0", "conv2d_1")


def _tiny_onnx() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def init(name: str, shape: tuple[int, ...], scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    inits = [
        init("w1", (8, 3, 3, 3), 0.3), init("b1", (8,), 0.1),
        init("w2", (8, 1, 3, 3), 0.3), init("b2", (8,), 0.1),
        init("w3", (5, 8), 0.3), init("b3", (5,), 0.1),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Add", ["r1", "c2"], ["a"], name="add"),
        helper.make_node("GlobalAveragePool", ["a"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["fc"], name="fc", transB=1),
        helper.make_node("Sigmoid", ["fc"], ["y"], name="sig"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_quantize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 5))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``t.onnx`` and ``cal.npy`` (6 samples, N x 3 x 8 x 8 float32)."""
    root = tmp_path_factory.mktemp("quantize")
    onnx.save(_tiny_onnx(), root / "t.onnx")
    rng = np.random.default_rng(1)
    np.save(root / "cal.npy", rng.standard_normal((6, *SHAPE[1:])).astype(np.float32))
    return root


def npuc(*args: str | Path) -> tuple[int, str, str]:
    """``npuc.cli.main.main`` in this process; returns (exit code, stdout, stderr)."""
    from npuc.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def quantize(work: Path, out: str, *extra: str | Path) -> tuple[dict[str, Any], QuantizedModel]:
    """Quantize ``t.onnx`` on ``cal.npy`` (no bias correction unless ``extra`` says so)."""
    if not any(str(e) == "--optimization" for e in extra):
        extra = (*extra, "--optimization", "none")
    if not any(str(e) == "--calib" for e in extra):
        extra = (*extra, "--calib", work / "cal.npy")
    code, stdout, stderr = npuc("quantize", work / "t.onnx", "-o", work / out, "--json", *extra)
    assert code == 0, stdout + stderr
    return json.loads(stdout), load_quantized(work / out)


def error(*args: str | Path) -> tuple[int, dict[str, Any]]:
    """A failing ``npuc quantize ... --json``: (exit code, the JSON error object)."""
    code, stdout, _ = npuc("quantize", *args, "--json")
    return code, json.loads(stdout)


@pytest.fixture(scope="module")
def baseline(work: Path) -> tuple[dict[str, Any], QuantizedModel]:
    return quantize(work, "base.npuq")


def test_writes_model_and_layer_template(
    work: Path, baseline: tuple[dict[str, Any], QuantizedModel]
) -> None:
    data, model = baseline
    assert data["output"] == str(work / "base.npuq")
    assert data["layers"] == {"integer": 7, "float": 0}
    assert data["calibration"] == {
        "source": str(work / "cal.npy"),
        "is_random": False,
        "samples": 6,
    }
    template = json.loads(Path(data["layer_config"]).read_text())["layers"]
    assert set(template) == set(model.layers) == {
        "conv2d_0", "conv2d_1", "add_0", "global_avg_pool_0", "reshape_0", "dense_0", "sigmoid_0"
    }  # fmt: skip
    conv = template["conv2d_0"]
    assert conv["run_on"] == "npu" and conv["q_bits_activation"] == 8
    assert conv["display"]["post_shift"] == model.layers["conv2d_0"].params["post_shift"]
    assert conv["display"]["zero_point"] == model.tensors["conv2d_0"].zero_point
    # Default preset asymmetricpc: one weight scale per output channel.
    assert model.layers["conv2d_0"].params["weight_scales"].shape == (8,)


def test_text_output_names_files(work: Path) -> None:
    code, stdout, _ = npuc(
        "quantize", work / "t.onnx", "--calib", work / "cal.npy", "-o", work / "text.npuq",
        "--optimization", "none",
    )  # fmt: skip
    assert code == 0
    assert "7 integer" in stdout and "text.npuq.layers.json" in stdout


def test_list_fields_lists_every_field() -> None:
    from npuc.midend.quantize.config import LAYER_FIELDS, MODEL_FIELDS

    code, stdout, _ = npuc("quantize", "--list-fields")
    assert code == 0
    for name in (*LAYER_FIELDS, *MODEL_FIELDS):
        assert name in stdout, name
    code, stdout, _ = npuc("quantize", "--list-fields", "--json")
    assert code == 0
    listed = "\n".join(json.loads(stdout)["fields"])
    assert all(name in listed for name in (*LAYER_FIELDS, *MODEL_FIELDS))


def test_deterministic_bytes(work: Path, baseline: tuple[dict[str, Any], QuantizedModel]) -> None:
    quantize(work, "again.npuq")
    assert (work / "again.npuq").read_bytes() == (work / "base.npuq").read_bytes()


def test_calib_random_is_marked(work: Path) -> None:
    data, model = quantize(work, "random.npuq", "--calib", "random")
    assert data["calibration"]["is_random"] is True
    assert model.calibration["is_random"] is True


def test_calib_npz_folder_with_bias_correction(work: Path) -> None:
    folder = work / "calfolder"
    folder.mkdir()
    samples = np.load(work / "cal.npy")
    for i in range(4):
        np.savez(folder / f"s{i}.npz", x=samples[i : i + 1])
    data, model = quantize(
        work, "folder.npuq", "--calib", folder, "--optimization", "bias_correction"
    )
    assert data["calibration"]["samples"] == 4
    assert model.config.bias_correction is True


def test_layer_config_round_trip(
    work: Path, baseline: tuple[dict[str, Any], QuantizedModel]
) -> None:
    template = json.loads((work / "base.npuq.layers.json").read_text())
    template["layers"]["conv2d_1"]["run_on"] = "cpu"
    template["layers"]["dense_0"]["q_bits_activation"] = 16
    edited = work / "edited.json"
    edited.write_text(json.dumps(template))
    data, model = quantize(work, "edited.npuq", "--layer-config", edited)
    assert model.layers["conv2d_1"].run_on == "cpu"
    assert "conv2d_1" in data["float_layers"]
    assert model.tensors["dense_0"].dtype == "int16"
    assert model.layers["conv2d_0"].run_on == "npu"
    assert model.tensors["conv2d_0"].dtype == "int8"


def test_float_layers_and_op_types(work: Path) -> None:
    data, model = quantize(
        work, "float.npuq", "--float-layers", "add_0", "--float-op-types", "Conv"
    )
    assert {n for n, layer in model.layers.items() if layer.run_on == "cpu"} == {
        "add_0", *CONVS
    }  # fmt: skip
    assert data["layers"] == {"integer": 4, "float": 3}


def test_quantizer_symmetric_per_tensor(work: Path) -> None:
    _, model = quantize(work, "sym.npuq", "--quantizer", "symmetric")
    assert all(q.zero_point == 0 for q in model.tensors.values())
    for name in CONVS:
        scales = np.asarray(model.layers[name].params["weight_scales"])
        assert np.unique(scales).size == 1, name
        assert model.layers[name].config.q_mode_weight == "per_tensor"


def test_quantizer_symmetricpc_per_channel(work: Path) -> None:
    _, model = quantize(work, "sympc.npuq", "--quantizer", "symmetricpc")
    assert all(q.zero_point == 0 for q in model.tensors.values())
    scales = np.asarray(model.layers["conv2d_0"].params["weight_scales"])
    assert np.unique(scales).size == 8


def test_activation_bits_16(work: Path) -> None:
    _, model = quantize(work, "a16.npuq", "--activation-bits", "16")
    assert {q.dtype for q in model.tensors.values()} == {"int16"}


def test_toml_config_equals_flags(work: Path) -> None:
    toml = work / "npuc.toml"
    toml.write_text('[quantize]\nquantizer = "symmetric"\nactivation_bits = 16\n')
    _, model = quantize(work, "toml.npuq", "--config", toml)
    assert {q.dtype for q in model.tensors.values()} == {"int16"}
    assert all(q.zero_point == 0 for q in model.tensors.values())


def test_missing_calib_explains(work: Path) -> None:
    code, err = error(work / "t.onnx", "-o", work / "x.npuq")
    assert code == 3
    assert "calibration data" in err["message"] and "--calib random" in err["hint"]


def test_calib_wrong_shape_names_file_and_sample(work: Path) -> None:
    folder = work / "badshape"
    folder.mkdir()
    good = np.zeros(SHAPE, np.float32)
    for i in range(2):
        np.save(folder / f"s{i}.npy", good)
    np.save(folder / "s2.npy", np.zeros((1, 3, 9, 9), np.float32))
    code, err = error(work / "t.onnx", "--calib", folder, "-o", work / "x.npuq")
    assert code == 3
    assert "s2.npy" in err["message"] and "sample 2" in err["message"]
    assert "1x3x8x8" in err["message"]


def test_calib_wrong_input_name(work: Path) -> None:
    bad = work / "badname.npz"
    np.savez(bad, y=np.zeros(SHAPE, np.float32))
    code, err = error(work / "t.onnx", "--calib", bad, "-o", work / "x.npuq")
    assert code == 3
    assert "badname.npz" in err["message"] and "sample 0" in err["message"]
    assert "'y'" in err["message"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"no_such_layer": {"run_on": "cpu"}}, "no_such_layer is not in the model"),
        ({"conv2d_0": {"bogus": 1}}, "unknown field(s) bogus"),
        ({"conv2d_0": {"q_bits_activation": 12}}, "q_bits_activation = 12"),
    ],
)
def test_bad_layer_config(work: Path, entry: dict[str, Any], expected: str) -> None:
    path = work / "bad_layers.json"
    path.write_text(json.dumps({"layers": entry}))
    code, err = error(work / "t.onnx", "--calib", work / "cal.npy", "--layer-config", path)
    assert code == 3
    assert expected in err["message"]


def test_unknown_strategy_lists_valid_ones(work: Path) -> None:
    code, err = error(work / "t.onnx", "--calib", "random", "--q-strategy-activation", "foo")
    assert code == 3
    assert "'foo'" in err["message"] and "kld" in err["hint"]


def test_bad_toml(work: Path) -> None:
    bad = work / "bad.toml"
    bad.write_text("[quantize\nfoo = ")
    code, err = error(work / "t.onnx", "--calib", "random", "--config", bad)
    assert code == 3
    assert "bad.toml" in err["message"] and "TOML" in err["message"]


def test_unknown_toml_key(work: Path) -> None:
    bad = work / "unknown.toml"
    bad.write_text("[quantize]\nno_such_option = 1\n")
    code, err = error(work / "t.onnx", "--calib", "random", "--config", bad)
    assert code == 3
    assert "no_such_option" in err["message"]


def test_unknown_optimization(work: Path) -> None:
    code, err = error(work / "t.onnx", "--calib", "random", "--optimization", "adaround")
    assert code == 3
    assert "adaround" in err["message"] and "bias_correction" in err["hint"]


def test_output_must_be_npuq(work: Path) -> None:
    code, err = error(work / "t.onnx", "--calib", "random", "-o", work / "x.bin")
    assert code == 3
    assert ".npuq" in err["message"]


def test_missing_model(work: Path) -> None:
    code, err = error(work / "nosuch.onnx", "--calib", "random")
    assert code == 3
    assert "nosuch.onnx" in err["message"]


def test_unknown_float_layer(work: Path) -> None:
    code, err = error(work / "t.onnx", "--calib", "random", "--float-layers", "zzz")
    assert code == 3
    assert "zzz" in err["message"] and "conv2d_0" in err["hint"]


def test_calib_images_use_config_preprocess(work: Path) -> None:
    from PIL import Image

    folder = work / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    code, err = error(work / "t.onnx", "--calib", folder, "-o", work / "x.npuq")
    assert code == 3 and "[preprocess]" in err["message"] and "img0.png" in err["message"]
    toml = work / "pre.toml"
    toml.write_text('[preprocess]\npreset = "unit"\nresize = 8\ncenter_crop = 8\n')
    data, _ = quantize(work, "images.npuq", "--calib", folder, "--config", toml)
    assert data["calibration"]["samples"] == 4


def test_quantizer_none_keeps_every_layer_float(work: Path) -> None:
    data, model = quantize(work, "none.npuq", "--quantizer", "none")
    assert data["layers"] == {"integer": 0, "float": 7}
    assert all(layer.run_on == "cpu" for layer in model.layers.values())

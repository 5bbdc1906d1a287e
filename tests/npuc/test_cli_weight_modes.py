"""``npuc build --target cpu --precision weight-int8 | fp16-weights``: compact-weight libraries.

A small ONNX model whose conv (32x16x3x3) and Gemm (64x40) weights are above
the 1024-element threshold is built in each mode; the libraries run (the
runtime dequantizes the weights at load) and stay close to onnxruntime's float
result: fp16 weights rtol/atol 2e-3 (float16 keeps 11 significant bits),
int8 weights cosine >= 0.999 and atol 0.05 (per-channel steps of max|w|/127).
Options the modes do not take are refused with exit code 3 and what to do.
(The size gain is tested on a real model, tests/backend/cpu/test_weight_modes_real.py:
on a model this small the load-time kernels outweigh the 20 kB the weights save.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.npuc.test_cli_quantize import npuc as cli
from tests.tooling.reference import run_onnxruntime

SHAPE = (1, 16, 8, 8)


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    inits = [
        numpy_helper.from_array((rng.standard_normal((32, 16, 3, 3)) * 0.1).astype("f4"), "w"),
        numpy_helper.from_array((rng.standard_normal(32) * 0.1).astype("f4"), "b"),
        numpy_helper.from_array((rng.standard_normal((32, 40)) * 0.2).astype("f4"), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "weights",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 40])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("weight_modes")
    onnx.save(_model(), root / "m.onnx")
    np.save(root / "x.npy", np.random.default_rng(6).standard_normal(SHAPE).astype(np.float32))
    return root


def _build_and_run(work: Path, precision: str) -> tuple[dict[str, object], np.ndarray]:
    lib = work / f"{precision}.so"
    code, out, err = cli(
        "build", work / "m.onnx", "--precision", precision, "-o", lib, "--json"
    )  # fmt: skip
    assert code == 0, out + err
    built = json.loads(out)
    code, out, err = cli("run", lib, "--input", work / "x.npy", "--output", work / "y.npz")
    assert code == 0, out + err
    return built, np.load(work / "y.npz")["y"]


@pytest.mark.parametrize("precision", ["weight-int8", "fp16-weights"])
def test_compact_library_runs_close_to_onnxruntime(work: Path, precision: str) -> None:
    built, got = _build_and_run(work, precision)
    assert built["precision"] == precision
    sidecar = json.loads((work / f"{precision}.so.json").read_text())
    assert sidecar["model"]["extra"]["precision"] == precision
    code, out, err = cli("inspect", work / f"{precision}.so", "--json")
    assert code == 0, out + err
    shown = json.loads(out)
    assert shown["precision"] == precision and shown["matches_sidecar"] is True
    assert shown["inputs"] == [{"name": "x", "shape": list(SHAPE), "dtype": "float32"}]
    want = run_onnxruntime(_model(), {"x": np.load(work / "x.npy")})["y"]
    if precision == "fp16-weights":
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    else:
        cosine = float(got.ravel() @ want.ravel() / np.linalg.norm(got) / np.linalg.norm(want))
        assert cosine >= 0.999
        np.testing.assert_allclose(got, want, atol=0.05)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "weight-int8", "--calib", "x.npy"], "needs no calibration data"),
        (["--precision", "fp16-weights", "--calib", "x.npy"], "needs no calibration data"),
        (["--precision", "weight-int8", "--target", "npu"], "applies to --target cpu"),
        (["--precision", "fp16-weights", "--target", "npu"], "applies to --target cpu"),
    ],
)
def test_bad_combinations_are_refused(work: Path, args: list[str], message: str) -> None:
    args = [str(work / a) if a.endswith(".npy") else a for a in args]
    code, out, err = cli("build", work / "m.onnx", "-o", work / "bad.so", *args)
    assert code == 3, out + err
    assert message in err and "hint:" in err
    assert not (work / "bad.so").exists()


def test_raw_on_a_float_weight_library_is_refused(work: Path) -> None:
    lib = work / "fp16-weights.so"
    if not lib.exists():
        _build_and_run(work, "fp16-weights")
    code, out, err = cli("run", lib, "--input", work / "x.npy", "--raw")
    assert code == 3, out + err
    assert "fp16-weights library" in err and "drop --raw" in err


def test_inspect_refuses_an_unknown_precision_in_the_sidecar(work: Path) -> None:
    lib = work / "fp16-weights.so"
    if not lib.exists():
        _build_and_run(work, "fp16-weights")
    edited = work / "edited.so"
    edited.write_bytes(lib.read_bytes())
    sidecar = json.loads((work / "fp16-weights.so.json").read_text())
    sidecar["model"]["extra"]["precision"] = "bogus"
    (work / "edited.so.json").write_text(json.dumps(sidecar))
    code, out, err = cli("inspect", edited)
    assert code == 3, out + err
    assert "unknown precision 'bogus'" in err and "edited.so.json" in err

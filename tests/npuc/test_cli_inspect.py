"""``npuc inspect``: human table, --json summary, --input-shape, and error exits."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import helper

from tests.frontend.onnx_graphs import GraphSpec, const, make_model


def _npuc(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the real console entry point in a subprocess (startup cost ~10 s: one test uses it)."""
    return subprocess.run(
        [sys.executable, "-m", "npuc.cli.main", *args], capture_output=True, text=True, check=False
    )


def _npuc_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``npuc.cli.main.main`` in this process: same code path, no interpreter start-up."""
    from npuc.cli.main import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _dynamic_conv(path: Path) -> Path:
    """Conv (4 filters, 3x3, pad 1) over x: batch x 3 x H x W, plus an unsupported Sin."""
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Sin", ["c"], ["y"], name="sin"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4, "h", "w"])],
        initializer=[onnx.numpy_helper.from_array(const((4, 3, 3, 3)), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_inspect_json_with_input_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _dynamic_conv(tmp_path / "m.onnx")
    code, out, err = _npuc_in_process(
        capsys, "inspect", str(path), "--input-shape", "x=2x3x8x8", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["inputs"] == [{"name": "x", "shape": [2, 3, 8, 8], "dtype": "float32"}]
    assert data["declared_inputs"][0]["shape"] == ["batch", 3, "h", "w"]
    assert data["outputs"][0]["shape"] == [2, 4, 8, 8]
    assert data["total_macs"] == 2 * 4 * 8 * 8 * 3 * 3 * 3
    assert data["layers"] == [{"node_name": "conv", "op_type": "Conv", "macs": 13824}]
    assert data["parameter_count"] == 108
    assert [u["node_name"] for u in data["unsupported"]] == ["sin"]


def test_inspect_human_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _dynamic_conv(tmp_path / "m.onnx")
    code, out, err = _npuc_in_process(capsys, "inspect", str(path), "--input-shape", "x=1x3x4x4")
    assert code == 0, err
    assert "1x3x4x4 (declared batchx3xhxw)" in out
    assert "MACs       1.73 k (1,728)" in out
    assert "unsupported: 1 node(s)" in out and "sin (Sin, opset 17)" in out


def test_inspect_missing_shape_exits_3_with_flag_hint(tmp_path: Path) -> None:
    path = _dynamic_conv(tmp_path / "m.onnx")
    proc = _npuc("inspect", str(path))
    assert proc.returncode == 3
    assert "--input-shape x=Nx3xNxN" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_inspect_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _npuc_in_process(capsys, "inspect", str(tmp_path / "absent.onnx"))
    assert code == 3 and "does not exist" in err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00\xff" * 100)
    code, out, err = _npuc_in_process(capsys, "inspect", str(bad), "--json")
    assert code == 3
    assert json.loads(out)["error"] == "InvalidInputError"
    model = _dynamic_conv(tmp_path / "m.onnx")
    code, out, err = _npuc_in_process(capsys, "inspect", str(model), "--input-shape", "x=1xAx3")
    assert code == 3 and "cannot read shape '1xAx3'" in err


def test_inspect_static_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "relu.onnx"
    onnx.save(make_model(GraphSpec([helper.make_node("Relu", ["x"], ["y"])], {"x": (2, 3)})), path)
    code, out, err = _npuc_in_process(capsys, "inspect", str(path))
    assert code == 0, err
    assert "supported: every node can be compiled" in out

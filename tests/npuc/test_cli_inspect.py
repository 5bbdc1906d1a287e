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


def test_inspect_pt2_counts_macs_and_names_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Conv 3->4, 3x3 on 1x3x8x8 -> 1x4x6x6: 4*36 * 3*9 = 3888 MACs; Linear 4->2: 8 MACs;
    ConvTranspose 4->2, 2x2 stride 2 on 1x4x6x6: 4*36 * 2*4 = 1152 MACs."""
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.fc = torch.nn.Linear(4, 2)
            self.up = torch.nn.ConvTranspose2d(4, 2, 2, stride=2)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            y = self.conv(x)
            return {"logits": self.fc(y.mean((2, 3))), "mask": self.up(y)}

    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(Net(), (torch.zeros(1, 3, 8, 8),)), path)
    code, out, err = _npuc_in_process(capsys, "inspect", str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["source_format"] == "torch"
    assert [(o["name"], o["shape"]) for o in data["outputs"]] == [
        ("logits", [1, 2]),
        ("mask", [1, 2, 12, 12]),
    ]
    assert sorted(x["macs"] for x in data["layers"]) == [8, 1152, 3888]
    assert data["total_macs"] == 8 + 1152 + 3888
    assert data["parameter_count"] == 4 * 27 + 4 + 8 + 2 + 4 * 2 * 4 + 2
    assert data["op_histogram"]["nn.conv2d"] == 1 and data["unsupported"] == []
    code, out, err = _npuc_in_process(capsys, "inspect", str(path))
    assert code == 0 and "PyTorch .pt2" in out and "every node can be compiled" in out


def test_inspect_tflite_lists_unsupported_operators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from tests.frontend.test_tflite_ops import TFLiteGraph

    g = TFLiteGraph()
    x = g.tensor("x", (2, 3))
    w = g.tensor("w", (2, 3), "float32", np.ones((2, 3), np.float32))
    y = g.tensor("y", (2, 3))
    g.op("ADD", [x, w], [y])
    path = g.save(tmp_path / "add.tflite", [x], [y])
    code, out, err = _npuc_in_process(capsys, "inspect", str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["source_format"] == "tflite" and data["parameter_count"] == 6
    assert data["op_histogram"] == {"add": 1} and data["unsupported"] == []
    z = g.tensor("z", (2, 3))
    g.op("SKIP_GRAM", [y], [z])
    path = g.save(tmp_path / "bad.tflite", [x], [z])
    code, out, err = _npuc_in_process(capsys, "inspect", str(path))
    assert code == 0, err
    assert "unsupported: 1 node(s)" in out and "SKIP_GRAM" in out


def test_inspect_state_dict_explains_export(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from npuc.cli.main import main

    path = tmp_path / "weights.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    assert main(["inspect", str(path)]) == 3


def test_inspect_input_value_folds_if(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.frontend.fixups.test_inline_constant_if import CONV_MACS, _branch, _model

    path = tmp_path / "by_rate.onnx"
    onnx.save(_model(_branch("a", 6, seed=1), _branch("b", 6, seed=2)), path)
    code, out, err = _npuc_in_process(capsys, "inspect", str(path), "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["op_histogram"]["Conv"] == 12 and data["total_macs"] == 12 * CONV_MACS
    assert [u["op_type"] for u in data["unsupported"]] == ["If"]
    code, out, err = _npuc_in_process(
        capsys, "inspect", str(path), "--input-value", "rate=16000", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["unsupported"] == [] and data["total_macs"] == 6 * CONV_MACS
    assert [t["name"] for t in data["inputs"]] == ["x"]
    code, out, err = _npuc_in_process(capsys, "inspect", str(path), "--input-value", "rate")
    assert code == 3 and "name=value" in err

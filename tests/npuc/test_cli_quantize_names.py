"""``npuc quantize`` shows the ONNX node names each layer came from.

The tiny model's nodes are named ``conv1``, ``relu1``, ``dw``, ``add``, ``gap``,
``flat``, ``fc`` and ``sig`` (tests/npuc/test_cli_quantize.py); the convolution
layer ``conv2d_0`` folds ``conv1`` and its ``relu1``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.npuc.test_cli_quantize import SHAPE, _tiny_onnx, npuc

SOURCES = {
    "conv2d_0": ["conv1", "relu1"], "conv2d_1": ["dw"], "add_0": ["add"],
    "global_avg_pool_0": ["gap"], "reshape_0": ["flat"], "dense_0": ["fc"], "sigmoid_0": ["sig"],
}  # fmt: skip


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("names")
    onnx.save(_tiny_onnx(), root / "t.onnx")
    rng = np.random.default_rng(1)
    np.save(root / "cal.npy", rng.standard_normal((4, *SHAPE[1:])).astype(np.float32))
    code, stdout, err = npuc(
        "quantize", root / "t.onnx", "--calib", root / "cal.npy", "-o", root / "t.npuq",
        "--optimization", "none", "--report", root / "report", "--float-layers", "conv2d_1",
    )  # fmt: skip
    assert code == 0, stdout + err
    return root, stdout


def test_layer_template_and_json_name_onnx_nodes(quantized: tuple[Path, str]) -> None:
    root, _ = quantized
    template = json.loads((root / "t.npuq.layers.json").read_text())["layers"]
    assert {name: entry["display"]["source_nodes"] for name, entry in template.items()} == SOURCES
    code, stdout, _ = npuc(
        "quantize", root / "t.onnx", "--calib", root / "cal.npy", "-o", root / "j.npuq",
        "--optimization", "none", "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(stdout)["source_nodes"] == SOURCES


def test_terminal_table_and_float_lines_name_onnx_nodes(quantized: tuple[Path, str]) -> None:
    _, stdout = quantized
    assert "float: conv2d_1 (conv2d, ONNX dw):" in stdout
    assert "source node" in stdout
    row = next(line for line in stdout.splitlines() if "conv2d_0" in line)
    assert "conv1, relu1" in row


def test_report_json_and_html_name_onnx_nodes(quantized: tuple[Path, str]) -> None:
    from npuc.midend.quantize.accuracy_report import read_report

    root, _ = quantized
    report = read_report(root / "report" / "report.json")
    sources = {row.name: list(row.source) for row in report.layers if row.source}
    assert sources == SOURCES
    html = (root / "report" / "report.html").read_text()
    assert "conv1, relu1" in html


def test_float_layers_and_layer_config_take_onnx_node_names(
    quantized: tuple[Path, str],
) -> None:
    """``--float-layers dw,relu1`` and a layer-config entry ``fc`` name ONNX nodes: they reach
    the layers those nodes became (``relu1`` is folded into ``conv2d_0``)."""
    from npuc.midend.quantize.serialize import load_quantized

    root, _ = quantized
    (root / "lc.json").write_text(json.dumps({"layers": {"fc": {"q_bits_activation": 16}}}))
    code, stdout, err = npuc(
        "quantize", root / "t.onnx", "--calib", root / "cal.npy", "-o", root / "n.npuq",
        "--optimization", "none", "--float-layers", "dw,relu1", "--layer-config",
        root / "lc.json", "--json",
    )  # fmt: skip
    assert code == 0, stdout + err
    assert set(json.loads(stdout)["float_layers"]) == {"conv2d_0", "conv2d_1"}
    model = load_quantized(root / "n.npuq")
    assert model.tensors["dense_0"].dtype == "int16"
    assert model.config.float_layers == ("conv2d_1", "conv2d_0")
    code, stdout, _ = npuc(
        "quantize", root / "t.onnx", "--calib", root / "cal.npy", "--float-layers", "nosuch",
        "--json",
    )  # fmt: skip
    assert code == 3
    assert "nosuch is not in the model" in json.loads(stdout)["message"]

"""Output paths a user can get wrong on the NPU commands: ``npuc report -o DIR`` and
``npuc build --target npu --report DIR`` under a path whose parent is a file exit 3
naming the folder, before anything is compiled or written (no artifact left behind)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from npuc.cli.main import main
from tests.tooling.qdq_models import SHAPE, qdq_model


@pytest.fixture(scope="module")
def qdq(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return qdq_model(tmp_path_factory.mktemp("qdq"), "residual")[1]


def test_build_report_under_a_file_exits_3_and_writes_no_artifact(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "m.npuc"
    argv = ["build", str(qdq), "--target", "npu", "-o", str(out)]
    assert main([*argv, "--report", str(tmp_path / "afile" / "sub"), "--json"]) == 3
    err = json.loads(capsys.readouterr().out)
    assert err["error"] == "InvalidInputError"
    assert "cannot create report directory" in err["message"]
    assert "afile is not a folder" in err["message"]
    assert not out.exists()


def test_report_command_under_a_file_exits_3(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.npuc"
    assert main(["build", str(qdq), "--target", "npu", "-o", str(out)]) == 0
    (tmp_path / "afile").write_text("x")
    capsys.readouterr()
    assert main(["report", str(out), "-o", str(tmp_path / "afile" / "sub" / "r")]) == 3
    err = capsys.readouterr().err
    assert "error: cannot create report directory" in err
    assert "afile is not a folder" in err
    assert "internal error" not in err and "Traceback" not in err


@pytest.mark.parametrize("value", [0.0, float("nan"), -0.5])
def test_qdq_scale_zero_nan_or_negative_names_the_scale(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], value: float
) -> None:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(qdq))
    name = next(n.input[1] for n in model.graph.node if n.name == "r1_QuantizeLinear")
    for t in model.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(np.array(value, np.float32), name))
    bad = tmp_path / "bad_scale.onnx"
    onnx.save(model, str(bad))
    out = tmp_path / "m.npuq"
    assert main(["quantize", str(bad), "-o", str(out)]) == 4
    err = capsys.readouterr().err
    assert f"node 'r1_QuantizeLinear' (QuantizeLinear): scale '{name}' holds" in err
    assert "scales must be positive and finite" in err
    assert "hint: the file's quantization is broken; re-quantize" in err
    assert not out.exists()


@pytest.fixture(scope="module")
def npuq(qdq: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("npuq") / "m.npuq"
    assert main(["quantize", str(qdq), "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("command", ["verify", "run", "rename-report"])
def test_a_npuq_given_where_a_npuc_is_expected_says_what_it_is(
    npuq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    import numpy as np

    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 8, 8), np.float32))
    if command == "verify":
        argv = ["verify", str(npuq)]
    elif command == "run":
        argv = ["run", str(npuq), "--input", f"x={x}"]
    else:  # a .npuq renamed to .npuc
        renamed = tmp_path / "renamed.npuc"
        renamed.write_bytes(npuq.read_bytes())
        argv = ["report", str(renamed), "-o", str(tmp_path / "rep")]
    capsys.readouterr()
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "a quantized model (.npuq" in err
    assert "hint: build" in err and "--target npu" in err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("suffix", [".npuc", ".onnx"])
def test_eval_on_a_npuc_or_a_float_model_says_to_give_the_npuq(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    import numpy as np

    data = tmp_path / "d.npy"
    np.save(data, np.zeros((1, 3, 8, 8), np.float32))
    model = tmp_path / f"m{suffix}"
    model.write_bytes(qdq.read_bytes())
    assert main(["eval", str(model), "--data", str(data), "--json"]) == 3
    err = json.loads(capsys.readouterr().out)
    assert "npuc eval takes the .npuq written by `npuc quantize`" in err["message"]
    assert "npuc quantize MODEL --calib DATA -o m.npuq" in err["hint"]


def test_build_npu_takes_onnx_node_names_in_float_layers_like_quantize(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.npuc"
    argv = ["build", str(qdq), "--target", "npu", "-o", str(out)]
    assert main([*argv, "--float-layers", "conv2", "--show-cpu-ops"]) == 0  # conv2d_1's node
    assert "cpu: conv2d_1 (conv2d): float layer: configured to run float" in (
        capsys.readouterr().out
    )
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()
    assert main([*argv, "--float-layers", "nosuch", "--json"]) == 3
    err = json.loads(capsys.readouterr().out)
    assert err["message"] == "--float-layers name nosuch is not in the model"
    assert "conv2d_1" in err["hint"] and "or by source node name: " in err["hint"]
    assert "conv2" in err["hint"].split("source node name: ")[1].split(", ")


@pytest.mark.parametrize("as_json", [True, False])
def test_an_error_keeps_its_exit_code_when_the_reader_closed_the_pipe(
    tmp_path: Path, as_json: bool
) -> None:
    import subprocess
    import sys

    argv = [sys.executable, "-m", "npuc.cli.main", "quantize", str(tmp_path / "missing.onnx")]
    proc = subprocess.Popen(
        argv + (["--json"] if as_json else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if not as_json else subprocess.DEVNULL,
    )
    # `npuc ... | head -0`: the reader is gone before npuc prints its error
    stream = proc.stdout if as_json else proc.stderr
    assert stream is not None
    stream.close()
    assert proc.wait(timeout=120) == 3
    if not as_json:
        assert proc.stdout is not None
        assert proc.stdout.read() == b""
        proc.stdout.close()


def test_output_under_a_file_says_the_folder_is_a_file(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "m.npuq"
    assert main(["quantize", str(qdq), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert f"error: cannot write {out}: folder {tmp_path / 'afile'} is a file, not a folder" in err


def test_build_npu_json_has_what_the_text_says(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from onnxruntime.quantization import QuantType

    _, model = qdq_model(
        tmp_path, "residual", weight_type=QuantType.QUInt8, activation_type=QuantType.QUInt8
    )
    out = tmp_path / "m.npuc"
    argv = ["build", str(model), "--target", "npu", "-o", str(out), "--float-layers", "fc"]
    assert main([*argv, "--io-dtype", "int8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["bytes"] == out.stat().st_size
    assert data["npu_layers"] == 6 and data["partitions"] == 1
    assert [c["layer"] for c in data["cpu_layers"]] == ["dense_0"]
    assert data["estimated_npu_cycles"] > 0
    assert data["interface"]["x"]["interface"]["dtype"] == "int8"
    assert data["calibration"]["pre_quantized"] is True
    kinds = {c["kind"] for c in data["calibration"]["forced_changes"]}
    assert "weight_zero_point" in kinds  # uint8 weights with zero point 128


def test_report_top_must_not_be_negative(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path / "m.npuc"), "--top", "-1"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: --top -1: must be 0 or more")
    assert not (tmp_path / "m_report").exists()


def test_build_says_when_fewer_golden_samples_were_stored(
    qdq: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(5)
    np.save(tmp_path / "two.npy", rng.standard_normal((2, *SHAPE)).astype(np.float32))
    out = tmp_path / "m.npuc"
    argv = ["build", str(qdq), "--target", "npu", "--calib", str(tmp_path / "two.npy")]
    assert main([*argv, "--golden", "5", "-o", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert any("--golden 5: only 2 sample(s)" in note for note in data["notes"])
    assert main(["verify", str(out)]) == 0
    assert "golden sample 1:" in capsys.readouterr().out

"""An artifact's CPU regions run from their compiled libraries: outputs equal the integer
executor's, the loader refuses a modified library or a CPU that lacks its features, two
builds are byte-identical, and a region lowering refuses stays on the executor, said so."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

import npuc.backend.cpu.qlower as qlower
import npuc.runtime.cpu_regions as runtime_regions
from npuc.cli.main import main
from npuc.core.cpu_region_format import FLOAT_TOLERANCE
from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.target import CpuTarget
from npuc.midend.quantize.int_exec import IntTensor
from npuc.runtime.npu_model import NpuModel, load_npuc
from npuc.runtime.verify_stages import verify_artifact
from tests.backend.npu.cpu_region_nets import region_net_onnx, shuffle_net_onnx


def _build(folder: Path, model: onnx.ModelProto, name: str, *extra: str) -> Path:
    onnx.save(model, str(folder / f"{name}.onnx"))
    out = folder / f"{name}.npuc"
    argv = [str(folder / f"{name}.onnx"), "--target", "npu", "--calib", "random", "-o", str(out)]
    assert main(["build", *argv, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def shuffle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _build(tmp_path_factory.mktemp("cpu_regions"), shuffle_net_onnx(), "shuffle")


def _raw_equals_executor(model: NpuModel, x: np.ndarray) -> None:
    raw = model.run({"x": x}, raw=True)
    expected = model.int_exec.run({"x": x})
    for key, name in zip(model.output_names, model.qm.graph.outputs, strict=True):
        want = expected[name]
        assert isinstance(want, IntTensor)
        np.testing.assert_array_equal(raw[key], want.values.astype(want.qparams.dtype), strict=True)


def test_integer_regions_run_compiled_and_bit_exact(shuffle: Path, tmp_path: Path) -> None:
    model = load_npuc(shuffle)
    assert len(model.cpu_regions) == 2 and model.partitions
    manifest = model.artifact.manifest if model.artifact else {}
    assert all(e["library"] and e["fallback_reason"] is None for e in manifest["cpu_regions"])
    rng = np.random.default_rng(5)
    for _ in range(3):
        _raw_equals_executor(model, rng.standard_normal((1, 3, 8, 8)).astype(np.float32) * 2)
    # The CLI (`npuc run --raw`) gives the same integers.
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out.npz"
    assert (
        main(
            [
                "run",
                str(shuffle),
                "--input",
                f"x={tmp_path / 'x.npy'}",
                "--raw",
                "--output",
                str(out),
            ]
        )
        == 0
    )
    expected = model.int_exec.run({"x": x})
    with np.load(out) as cli:
        for key, name in zip(model.output_names, model.qm.graph.outputs, strict=True):
            want = expected[name]
            np.testing.assert_array_equal(cli[key], want.values.astype(want.qparams.dtype))
    assert verify_artifact(shuffle)[-1] == "bit-exact"


def test_two_builds_are_byte_identical(shuffle: Path, tmp_path: Path) -> None:
    again = _build(tmp_path, shuffle_net_onnx(), "shuffle")
    assert again.read_bytes() == shuffle.read_bytes()


def _rewrite(src: Path, dst: Path, member: str, change: bytes) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == member:
                data = data[: len(data) // 2] + change + data[len(data) // 2 + len(change) :]
            zout.writestr(info, data)


def test_a_modified_library_is_refused(shuffle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npuc"
    _rewrite(shuffle, bad, "cpu/cpu_0.so", b"\x90\x90\x90\x90")
    with pytest.raises(InvalidInputError, match=r"cpu_0.*SHA-256.*damaged or was modified"):
        load_npuc(bad)
    assert main(["verify", str(bad)]) == 3


def test_an_interface_unlike_the_model_is_refused(shuffle: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.npuc"
    with zipfile.ZipFile(shuffle) as zin, zipfile.ZipFile(bad, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["cpu_regions"][0]["inputs"][0]["shape"][1] += 1
                data = json.dumps(manifest).encode()
            zout.writestr(info, data)
    with pytest.raises(InvalidInputError, match=r"cpu_0.*is recorded as \(1, 9, 8, 8\) int8"):
        load_npuc(bad)


def test_a_library_for_missing_cpu_features_is_refused(
    shuffle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = CpuTarget(cpu_name="generic", features=(), num_cores=1)
    monkeypatch.setattr(runtime_regions, "host_target", lambda: bare)
    with pytest.raises(InvalidInputError, match=r"needs features this machine .* lacks") as err:
        load_npuc(shuffle)
    assert "rebuild" in (err.value.hint or "")


def test_float_and_integer_regions_verify(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _build(tmp_path, region_net_onnx(), "region", "--show-cpu-ops", "--threads", "1")
    assert "CPU regions: 4 compiled (LLVM), 0 on the integer executor" in capsys.readouterr().out
    model = load_npuc(path)
    assert {r.entry.target.num_cores for r in model.cpu_regions if r.entry.target} == {1}
    x = np.random.default_rng(9).standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = model.run_env({"x": x})
    expected = model.int_exec.run({"x": x})
    shuffle_region = model.cpu_regions[0]  # the 5-D channel shuffle: integers, exact
    for spec in shuffle_region.entry.outputs:
        np.testing.assert_array_equal(got[spec.name].values, expected[spec.name].values)
    # `npuc run --raw`: the conv after the softmax gives the executor's integers (the
    # softmax's last-bit differences round to the same int8 here); the matmul output is
    # float and agrees within the stated tolerance.
    raw = model.run({"x": x}, raw=True)
    for key, name in zip(model.output_names, model.qm.graph.outputs, strict=True):
        want = expected[name]
        if isinstance(want, IntTensor):
            np.testing.assert_array_equal(raw[key], want.values.astype(want.qparams.dtype))
        else:
            atol = FLOAT_TOLERANCE * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(raw[key], want, rtol=0, atol=atol)
    assert main(["verify", str(path)]) == 0
    out = capsys.readouterr().out
    assert "float CPU layers: within float tolerance" in out
    assert out.strip().endswith("NPU partitions and integer CPU layers: bit-exact")
    # `npuc report` says per CPU layer which region runs it, compiled.
    assert main(["report", str(path), "-o", str(tmp_path / "report")]) == 0
    assert "cpu: softmax_0 (softmax): " in (table := capsys.readouterr().out)
    assert "[cpu_1: compiled]" in table
    layers = json.loads((tmp_path / "report" / "report.json").read_text())["layers"]
    row = next(r for r in layers if r["layer"] == "softmax_0")
    assert row["cpu_region"] == {"name": "cpu_1", "compiled": True}


def test_a_region_lowering_refuses_runs_on_the_executor_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise UnsupportedError("integer reshape has no CPU lowering")

    monkeypatch.setattr(qlower, "lower_layers", refuse)
    path = _build(tmp_path, shuffle_net_onnx(), "refused", "--show-cpu-ops")
    out = capsys.readouterr().out
    assert "CPU regions: 0 compiled (LLVM), 2 on the integer executor" in out
    assert "not lowered to the CPU library: integer reshape has no CPU lowering" in out
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert not [n for n in zf.namelist() if n.startswith("cpu/")]
    assert all("integer reshape" in e["fallback_reason"] for e in manifest["cpu_regions"])
    model = load_npuc(path)
    assert model.cpu_regions == []
    _raw_equals_executor(
        model, np.random.default_rng(4).standard_normal((1, 3, 8, 8)).astype(np.float32)
    )
    assert main(["verify", str(path)]) == 0
    assert "cpu_0 (3 layer(s) from reshape_0): not lowered" in capsys.readouterr().out
    assert main(["report", str(path), "-o", str(tmp_path / "report")]) == 0
    assert "[cpu_0 on the integer executor: not lowered" in capsys.readouterr().out


@pytest.mark.slow
def test_ppocr_det_runs_its_cpu_regions_compiled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real model: PP-OCRv4 det (its two transposed convolutions are float CPU layers
    between NPU partitions). The float results of the libraries differ from numpy's in
    the last bits, but on these inputs no quantization downstream lands on another
    integer, so `npuc run --raw` equals the integer executor bit for bit (measured on
    golden and fresh inputs; verify states it per sample)."""
    from tools.real_models import PPOCR_DET

    try:
        source = PPOCR_DET.path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    out = tmp_path / "det.npuc"
    argv = ["build", str(source), "--target", "npu", "--calib", "random"]
    argv += ["--calib-limit", "1", "--golden", "1", "--input-shape", "x=1x3x64x64"]
    argv += ["--show-cpu-ops", "-o", str(out)]
    assert main(argv) == 0
    assert "CPU regions: 2 compiled (LLVM), 0 on the integer executor" in capsys.readouterr().out
    model = load_npuc(out)
    rng = np.random.default_rng(11)
    for _ in range(2):
        _raw_equals_executor(model, rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    assert main(["verify", str(out)]) == 0
    assert "0 of 4096 integers differ" in capsys.readouterr().out

"""Build a library from a small model, check its sidecar and the atomic write."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tvm

import npuc
from npuc import runtime
from npuc.backend.cpu import build_library, compile_module, host_target, read_sidecar
from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.fileio import sha256_file
from npuc.core.model_info import TensorInfo
from tests.backend.cpu.small_models import conv_two_outputs, import_onnx, two_inputs_int32
from tests.tooling.reference import run_onnxruntime


@pytest.fixture(scope="module")
def conv_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mod, info = import_onnx(conv_two_outputs(), source_path="conv.onnx")
    out = tmp_path_factory.mktemp("lib") / "conv.so"
    result = build_library(mod, info, host_target(num_cores=1), out)
    assert result.library_path == out and result.sidecar_path == Path(f"{out}.json")
    assert result.library_bytes == out.stat().st_size > 0
    assert set(result.timings_s) == {"compile", "write"}
    return out


def test_library_matches_onnxruntime(conv_library: Path) -> None:
    model = conv_two_outputs()
    x = np.random.default_rng(7).standard_normal((1, 3, 8, 8)).astype(np.float32)
    got = runtime.load(conv_library).run({"x": x})
    want = run_onnxruntime(model, {"x": x})
    assert list(got) == ["relu_out", "sigmoid_out"]
    for name in want:
        # fp32 3x3x3 convolution: TVM and onnxruntime sum in different orders.
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


def test_sidecar_describes_the_library(conv_library: Path) -> None:
    data = json.loads(Path(f"{conv_library}.json").read_text())
    assert data["format"] == "npuc-cpu-library" and data["format_version"] == 2
    assert data["library"] == {"name": "conv.so", "sha256": sha256_file(conv_library)}
    assert data["model"]["inputs"] == [{"name": "x", "shape": [1, 3, 8, 8], "dtype": "float32"}]
    assert [o["name"] for o in data["model"]["outputs"]] == ["relu_out", "sigmoid_out"]
    assert data["model"]["source_sha256"] == "0" * 64
    host = host_target(num_cores=1)
    assert data["target"]["cpu_name"] == host.cpu_name
    assert data["target"]["features"] == list(host.features)
    assert data["target"]["num_cores"] == 1
    assert data["target"]["has_avx512"] == host.has_avx512
    assert data["build"]["npuc_version"] == npuc.__version__
    assert data["build"]["tvm_version"] == tvm.__version__
    assert set(data["build"]) == {"npuc_version", "tvm_version"}  # no times: deterministic
    assert read_sidecar(conv_library).info.inputs[0].shape == (1, 3, 8, 8)


def test_integer_graph_is_bit_exact() -> None:
    mod, info = import_onnx(two_inputs_int32())
    model = runtime.from_executable(compile_module(mod, host_target()), info)
    rng = np.random.default_rng(3)
    a = rng.integers(-1000, 1000, (2, 5), dtype=np.int32)
    b = rng.integers(-1000, 1000, (2, 5), dtype=np.int32)
    np.testing.assert_array_equal(model.run({"a": a, "b": b})["y"], (a + b) * a, strict=True)


def _failing_export(self: object, path: str, *args: object, **kwargs: object) -> None:
    Path(path).write_bytes(b"half a library")
    raise RuntimeError("linker failed")


def test_failed_build_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod, info = import_onnx(two_inputs_int32())
    monkeypatch.setattr(tvm.runtime.Executable, "export_library", _failing_export)
    with pytest.raises(RuntimeError, match="linker failed"):
        build_library(mod, info, host_target(), tmp_path / "m.so")
    assert list(tmp_path.iterdir()) == []


def test_failed_build_keeps_existing_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod, info = import_onnx(two_inputs_int32())
    (tmp_path / "m.so").write_bytes(b"old library")
    (tmp_path / "m.so.json").write_text("old sidecar")
    monkeypatch.setattr(tvm.runtime.Executable, "export_library", _failing_export)
    with pytest.raises(RuntimeError, match="linker failed"):
        build_library(mod, info, host_target(), tmp_path / "m.so")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.so", "m.so.json"]
    assert (tmp_path / "m.so").read_bytes() == b"old library"
    assert (tmp_path / "m.so.json").read_text() == "old sidecar"


def test_dynamic_input_is_refused(tmp_path: Path) -> None:
    mod, info = import_onnx(two_inputs_int32())
    dynamic = TensorInfo(name="a", shape=("batch", 5), dtype="int32")
    info = dataclasses.replace(info, inputs=(dynamic, info.inputs[1]))
    with pytest.raises(UnsupportedError, match=r"input 'a' has a dynamic shape batchx5"):
        build_library(mod, info, host_target(), tmp_path / "m.so")
    assert list(tmp_path.iterdir()) == []


def test_output_must_be_a_shared_library(tmp_path: Path) -> None:
    mod, info = import_onnx(two_inputs_int32())
    with pytest.raises(InvalidInputError, match=r"must end in \.so"):
        build_library(mod, info, host_target(), tmp_path / "m.dll")


def test_two_builds_are_byte_identical(tmp_path: Path) -> None:
    """Same model, same options, two folders: the library and its sidecar match byte for byte."""
    outputs = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        mod, info = import_onnx(conv_two_outputs(), source_path="conv.onnx")
        build_library(mod, info, host_target(num_cores=1), tmp_path / run / "conv.so")
        outputs.append(tmp_path / run)
    for name in ("conv.so", "conv.so.json"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name


_KILLED_BUILD = """
import os, signal, sys
from pathlib import Path
import tvm
from npuc.backend.cpu import build_library, host_target
from tests.backend.cpu.small_models import import_onnx, two_inputs_int32

real_export = tvm.runtime.Executable.export_library

def export_then_die(self, path, *args, **kwargs):
    real_export(self, path, *args, **kwargs)  # the library is half written ...
    os.kill(os.getpid(), signal.SIGKILL)       # ... when the build is killed

tvm.runtime.Executable.export_library = export_then_die
mod, info = import_onnx(two_inputs_int32())
build_library(mod, info, host_target(), Path(sys.argv[1]))
"""


def test_killed_build_leaves_nothing_the_next_build_does_not_remove(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out_dir, sys_tmp = tmp_path / "out", tmp_path / "systmp"
    out_dir.mkdir()
    sys_tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(sys_tmp)}
    repo = Path(__file__).resolve().parents[3]
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_BUILD, str(out_dir / "m.so")],
        cwd=repo,
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert list(sys_tmp.iterdir()) == [], "a killed build left files in the system temp folder"
    leftovers = sorted(p.name for p in out_dir.iterdir())
    assert leftovers, "the kill came during the write, so temporaries exist"
    assert all(name.startswith(".m.so.npuc-tmp-") for name in leftovers), leftovers
    mod, info = import_onnx(two_inputs_int32())
    build_library(mod, info, host_target(), out_dir / "m.so")
    assert sorted(p.name for p in out_dir.iterdir()) == ["m.so", "m.so.json"]

"""``npuc build`` and ``npuc run`` as a user runs them (subprocesses).

Happy paths compare the CLI's outputs with onnxruntime; every bad input must
give its documented exit code (docs/cli.md), one ``error:`` line on stderr
(or a JSON error object with ``--json``) and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from npuc.core.fileio import sha256_file
from tests.backend.cpu.small_models import (
    conv_dynamic_batch,
    conv_two_outputs,
    save,
    unsupported_det,
)
from tests.tooling.reference import run_onnxruntime

RTOL, ATOL = 1e-5, 1e-5  # fp32 3x3 convolution, summed in different orders


def npuc(*args: str | Path, cwd: Path, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
    """``npuc ARGS`` in a subprocess from ``cwd``; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "npuc.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=timeout_s,
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli")
    conv = save(conv_two_outputs(), folder, "conv")
    save(conv_dynamic_batch(), folder, "dynamic")
    save(unsupported_det(), folder, "det")
    (folder / "notes.onnx").write_text("this is not a protobuf\n")
    data = conv.read_bytes()
    (folder / "truncated.onnx").write_bytes(data[: len(data) // 2])
    rng = np.random.default_rng(11)
    np.save(folder / "x.npy", rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    np.save(folder / "x2.npy", rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    np.save(folder / "x_f64.npy", rng.standard_normal((1, 3, 8, 8)))
    np.save(folder / "x_small.npy", rng.standard_normal((1, 3, 4, 4)).astype(np.float32))
    return folder


@pytest.fixture(scope="module")
def built(work: Path) -> subprocess.CompletedProcess[str]:
    return npuc("build", "conv.onnx", "--target", "cpu", "-o", "conv.so", cwd=work)


def test_build_writes_library_and_summary(
    work: Path, built: subprocess.CompletedProcess[str]
) -> None:
    assert built.returncode == 0, built.stderr
    assert built.stdout.startswith("built conv.so (")
    assert "inputs:  x 1x3x8x8 float32" in built.stdout
    assert "outputs: relu_out 1x8x8x8 float32, sigmoid_out 1x8x8x8 float32" in built.stdout
    sidecar = json.loads((work / "conv.so.json").read_text())
    assert sidecar["model"]["source_sha256"] == sha256_file(work / "conv.onnx")
    assert sidecar["library"]["sha256"] == sha256_file(work / "conv.so")


def test_run_json_and_npz_match_onnxruntime(
    work: Path, built: subprocess.CompletedProcess[str]
) -> None:
    assert built.returncode == 0, built.stderr
    proc = npuc("run", "conv.so", "--input", "x=x.npy", "--output", "out.npz", "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert [o["name"] for o in data["outputs"]] == ["relu_out", "sigmoid_out"]
    assert data["outputs"][0]["shape"] == [1, 8, 8, 8] and data["outputs"][0]["dtype"] == "float32"
    assert data["output_file"] == "out.npz"
    want = run_onnxruntime(onnx.load(str(work / "conv.onnx")), {"x": np.load(work / "x.npy")})
    with np.load(work / "out.npz") as got:
        assert sorted(got.files) == sorted(want)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL)
    assert data["outputs"][0]["max"] == pytest.approx(float(want["relu_out"].max()), rel=RTOL)


def test_build_json_with_input_shape_then_run_bare_input(work: Path) -> None:
    proc = npuc(
        "build", "dynamic.onnx", "-o", "dyn.so", "--input-shape", "x=2x3x8x8", "--threads", "1",
        "--json", cwd=work,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["inputs"] == [{"name": "x", "shape": [2, 3, 8, 8], "dtype": "float32"}]
    assert data["target"]["num_cores"] == 1
    assert set(data["timings_s"]) == {"startup", "import", "optimize", "compile", "write", "total"}
    assert data["library"]["bytes"] == (work / "dyn.so").stat().st_size

    run = npuc("run", "dyn.so", "--input", "x2.npy", cwd=work)  # single input: name optional
    assert run.returncode == 0, run.stderr
    want = run_onnxruntime(conv_dynamic_batch(), {"x": np.load(work / "x2.npy")})
    assert "relu_out: 2x8x8x8 float32" in run.stdout
    assert f"max {float(want['relu_out'].max()):.6g}" in run.stdout


def test_run_reports_its_threads_and_says_when_they_are_capped(work: Path) -> None:
    built = npuc("build", "conv.onnx", "-o", "t1.so", "--threads", "1", cwd=work)
    assert built.returncode == 0, built.stderr
    plain = npuc("run", "t1.so", "--input", "x=x.npy", "--json", cwd=work)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["threads"] == 1  # as built
    assert json.loads(plain.stdout)["notes"] == []
    capped = npuc("run", "t1.so", "--input", "x=x.npy", "--threads", "999", "--json", cwd=work)
    assert capped.returncode == 0, capped.stderr
    data = json.loads(capped.stdout)
    env_cap = os.environ.get("TVM_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    cap = int(env_cap or len(os.sched_getaffinity(0)))
    assert data["threads"] == min(cap, 999)
    assert data["notes"] == [
        f"--threads 999: TVM's thread pool holds at most {cap} threads here (the CPUs this "
        f"process may use, or TVM_NUM_THREADS); running {cap}"
    ]
    text = npuc("run", "t1.so", "--input", "x=x.npy", "--threads", "999", cwd=work)
    assert f"on {cap} thread(s)" in text.stdout and "note: --threads 999" in text.stdout


def test_run_profile_times_every_kernel(work: Path) -> None:
    built = npuc("build", "conv.onnx", "-o", "p1.so", "--threads", "1", cwd=work)
    assert built.returncode == 0, built.stderr
    args = ("run", "p1.so", "--input", "x=x.npy", "--profile", "--runs", "2")
    proc = npuc(*args, "--json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    profile = json.loads(proc.stdout)["profile"]
    assert profile["runs"] == 2 and profile["threads"] == 1 and profile["run_ms"] > 0
    (conv,) = [k for k in profile["kernels"] if "conv2d" in k["function"]]
    assert conv["calls_per_run"] == 1 and conv["shapes"][0] == [1, 3, 8, 8]
    sidecar = json.loads((work / "p1.so.json").read_text())
    rules = sidecar["model"]["extra"]["schedule_rules"]  # names before weight pre-packing
    assert conv["rule"] == rules[conv["function"].removesuffix("_prepacked")] == "conv2d"
    text = npuc(*args, cwd=work)
    assert text.returncode == 0 and "profile: " in text.stdout and conv["function"] in text.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--runs", "3"], "--runs counts --profile's timed runs"),
     (["--runs", "20"], "--runs counts --profile's timed runs"), (["--profile", "--runs", "0"],
     "--runs 0: must be at least 1")],
)  # fmt: skip
def test_run_profile_flags_are_checked(work: Path, extra: list[str], message: str) -> None:
    built = npuc("build", "conv.onnx", "-o", "p2.so", "--threads", "1", cwd=work)
    assert built.returncode == 0, built.stderr
    proc = npuc("run", "p2.so", "--input", "x=x.npy", *extra, cwd=work)
    assert proc.returncode == 3 and message in proc.stderr and "Traceback" not in proc.stderr


BUILD_ERRORS = [
    (["build", "missing.onnx"], 3, "model file missing.onnx does not exist"),
    (["build", "notes.onnx"], 3, "notes.onnx is not a valid ONNX file"),
    (["build", "truncated.onnx"], 3, "truncated.onnx is not a valid ONNX"),
    (["build", "det.onnx"], 4, "cannot be compiled (operators: Det)"),
    (["build", "dynamic.onnx"], 3, "input shapes are not fixed for"),
    (["build", "conv.onnx", "--target", "npu"], 3, "an NPU build writes a .npuc file"),
]


@pytest.mark.parametrize(("args", "code", "message"), BUILD_ERRORS, ids=lambda v: str(v)[:30])
def test_build_errors(work: Path, args: list[str], code: int, message: str) -> None:
    proc = npuc(*args, "-o", "bad.so", cwd=work)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error: ") and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (work / "bad.so").exists() and not (work / "bad.so.json").exists()


def test_npu_build_without_calibration(work: Path) -> None:
    """A float model built for the NPU without --calib is refused before anything is written."""
    proc = npuc("build", "conv.onnx", "--target", "npu", "-o", "bad.npuc", cwd=work)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("error: --target npu needs calibration data")
    assert "--calib" in proc.stderr and "Traceback" not in proc.stderr
    assert not (work / "bad.npuc").exists()


RUN_ERRORS = [
    (["--input", "x=x_small.npy"], "input 'x': expected shape 1x3x8x8, got 1x3x4x4"),
    (["--input", "x=x_f64.npy"], "input 'x': expected dtype float32, got float64"),
    (
        ["--input", "images=x.npy"],
        "unknown input 'images'; the model's inputs are x (1x3x8x8 float32)",
    ),
]


@pytest.mark.parametrize(("args", "message"), RUN_ERRORS, ids=("shape", "dtype", "name"))
def test_run_input_errors(
    work: Path, built: subprocess.CompletedProcess[str], args: list[str], message: str
) -> None:
    assert built.returncode == 0, built.stderr
    proc = npuc("run", "conv.so", *args, "--json", cwd=work)
    assert proc.returncode == 3
    payload = json.loads(proc.stdout)
    assert payload["error"] == "InvalidInputError" and payload["exit_code"] == 3
    assert message in payload["message"]
    assert "Traceback" not in proc.stderr

"""``npuc build --target npu``, ``npuc run model.npuc``, ``npuc verify`` end to end on a small
mixed network (conv, depthwise, SE block on the CPU, concat, pools, resize, transpose, dense)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from npuc.cli.main import main
from tests.backend.npu.qmodels import mixed_net_onnx


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("npu")
    onnx.save(mixed_net_onnx(), str(d / "mixed.onnx"))
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.standard_normal((3, 1, 3, 16, 16)).astype(np.float32))
    np.save(d / "x.npy", rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    argv = [str(d / "mixed.onnx"), "--target", "npu", "--calib", str(d / "calib.npz")]
    assert main(["build", *argv, "-o", str(d / "m.npuc"), "--report", str(d / "rep")]) == 0
    assert main(["build", *argv, "-o", str(d / "m2.npuc")]) == 0
    return d


def test_build_is_deterministic_and_reports(built: Path) -> None:
    assert (built / "m.npuc").read_bytes() == (built / "m2.npuc").read_bytes()
    report = json.loads((built / "rep" / "report.json").read_text())
    cpu = [r for r in report["layers"] if r["target"] == "cpu"]
    assert [r["op"] for r in cpu] == ["softmax"] and "float layer" in cpu[0]["reason"]
    npu = [r for r in report["layers"] if r["target"] == "npu"]
    assert all(r["sim_cycles"] > 0 and r["est_cycles"] > 0 for r in npu)
    assert report["totals"]["sim_cycles"] == sum(p["sim_cycles"] for p in report["partitions"])
    with zipfile.ZipFile(built / "m.npuc") as zf:
        names = zf.namelist()
    assert "manifest.json" in names and not any(n.endswith(".pkl") for n in names)


def test_run_sim_equals_ref(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outs = {}
    for engine in ("sim", "ref"):
        out = built / f"{engine}.npz"
        args = ["run", str(built / "m.npuc"), "--input", f"x={built / 'x.npy'}"]
        assert main([*args, "--engine", engine, "--raw", "--output", str(out)]) == 0
        outs[engine] = dict(np.load(out))
    assert outs["sim"].keys() == outs["ref"].keys()
    for name, value in outs["sim"].items():
        np.testing.assert_array_equal(value, outs["ref"][name])


def test_run_threads_size_the_cpu_regions_pool(built: Path) -> None:
    """``--threads`` applies to a .npuc file's CPU regions too (it was ignored before)."""
    args = ["run", str(built / "m.npuc"), "--input", f"x={built / 'x.npy'}", "--json"]
    done = subprocess.run(  # the pool is process-global: a process of its own
        [sys.executable, "-m", "npuc.cli.main", *args, "--threads", "1"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["threads"] == 1 and data["notes"] == []


def test_run_profile_is_for_cpu_libraries(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", str(built / "m.npuc"), "--input", f"x={built / 'x.npy'}", "--profile"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "--profile times the kernels of a CPU library" in err and "--trace" in err


def test_verify_bit_exact_and_names_mismatch(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(built / "m.npuc")]) == 0
    assert capsys.readouterr().out.strip().endswith("bit-exact")
    tampered = tmp_path / "t.npuc"
    with zipfile.ZipFile(built / "m.npuc") as src, zipfile.ZipFile(tampered, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("golden/0/out/"):
                arr = np.load(io.BytesIO(data))
                arr.flat[3] += 1
                buf = io.BytesIO()
                np.save(buf, arr)
                data = buf.getvalue()
            dst.writestr(info, data)
    assert main(["verify", str(tampered)]) == 6
    err = capsys.readouterr().err
    assert "golden sample 0" in err and "softmax_0" in err and "1 of 10 values differ" in err


def test_build_without_calib_is_refused(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(built / "mixed.onnx"), "--target", "npu"]) == 3
    assert "--calib" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["not_zip", "format", "hw", "program"])
def test_damaged_artifact_is_refused(
    built: Path, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.npuc"
    if damage == "not_zip":
        bad.write_bytes(b"PK\x03\x04 not really a zip")
    else:
        with zipfile.ZipFile(built / "m.npuc") as src, zipfile.ZipFile(bad, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename == "manifest.json" and damage != "program":
                    manifest = json.loads(data)
                    if damage == "format":
                        manifest["format_version"] = 99
                    else:
                        manifest["hw"]["fields"]["sram_bytes"] *= 2
                    data = json.dumps(manifest).encode()
                elif info.filename.endswith(".npub") and damage == "program":
                    data = data[: len(data) // 2]
                dst.writestr(info, data)
    assert main(["verify", str(bad)]) == 3
    err = capsys.readouterr().err
    assert "bad.npuc" in err or "program" in err
    assert "Traceback" not in err

"""``npuc.runtime.load("m.npuc").run(...)``: a built NPU artifact runs without the compiler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

import npuc.runtime
from npuc.cli.main import main
from npuc.core.cpu_region_format import FLOAT_TOLERANCE
from npuc.core.errors import InvalidInputError
from npuc.midend.quantize.int_exec import IntTensor
from npuc.runtime.npu_model import NpuModel
from npuc.runtime.verify_stages import verify_artifact
from tests.backend.npu.qmodels import mixed_net_onnx


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("npu_runtime")
    onnx.save(mixed_net_onnx(), str(d / "mixed.onnx"))
    rng = np.random.default_rng(1)
    np.savez(d / "calib.npz", x=rng.standard_normal((3, 1, 3, 16, 16)).astype(np.float32))
    np.save(d / "x.npy", rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    argv = [str(d / "mixed.onnx"), "--target", "npu", "--calib", str(d / "calib.npz")]
    assert main(["build", *argv, "-o", str(d / "m.npuc")]) == 0
    return d


def test_load_npuc_runs_like_the_cli_and_the_integer_executor(built: Path) -> None:
    model = npuc.runtime.load(built / "m.npuc")
    assert isinstance(model, NpuModel)
    x = np.load(built / "x.npy")
    floats = model.run({"x": x})
    raw = model.run({"x": x}, raw=True)
    assert list(floats) == list(raw) == model.output_names
    # Outputs carry the source model's names (an exported model's are often numbers).
    assert model.output_names == [o.name for o in mixed_net_onnx().graph.output]
    internal = dict(zip(model.output_names, model.qm.graph.outputs, strict=True))
    expected = model.int_exec.run({"x": x})
    env = model.run_env({"x": x})
    borders = [t for p in model.partitions for t in p.outputs]
    assert borders
    for name in borders:  # every NPU partition output, bit for bit
        np.testing.assert_array_equal(env[name].values, expected[name].values, strict=True)
    for name, value in raw.items():
        want = expected[internal[name]]
        if isinstance(want, IntTensor):
            np.testing.assert_array_equal(value, want.values.astype(want.qparams.dtype))
            np.testing.assert_array_equal(floats[name], want.dequantize().astype(np.float32))
        else:  # a float layer compiled for the CPU (softmax here): raw and float agree
            np.testing.assert_array_equal(value, floats[name], strict=True)
            atol = FLOAT_TOLERANCE * max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(value, want, rtol=0, atol=atol, strict=True)
        assert floats[name].dtype == np.float32
    # The CLI (`npuc run m.npuc`) gives the same floats.
    out = built / "cli.npz"
    args = ["run", str(built / "m.npuc"), "--input", f"x={built / 'x.npy'}", "--output", str(out)]
    assert main(args) == 0
    with np.load(out) as cli:
        for name, value in floats.items():
            np.testing.assert_array_equal(value, cli[name])
    assert all(s.cycles for s in model.stats)


def test_verify_artifact_from_the_runtime(built: Path) -> None:
    lines = verify_artifact(built / "m.npuc")
    # The softmax at the end runs compiled: its output is within float tolerance.
    assert lines[0] == "CPU regions: 1 compiled (LLVM), 0 on the integer executor"
    assert lines[1].startswith("golden sample 0:")
    assert lines[-1] == "NPU partitions and integer CPU layers: bit-exact"


def test_wrong_inputs_are_named(built: Path) -> None:
    model = npuc.runtime.load(str(built / "m.npuc"))
    with pytest.raises(InvalidInputError, match="missing \\['x'\\]"):
        model.run({"y": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(InvalidInputError, match="input 'x': shape"):
        model.run({"x": np.zeros((1, 3, 8, 8), np.float32)})


def test_missing_npuc_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        npuc.runtime.load(tmp_path / "absent.npuc")


def test_reference_engine_is_the_same_code_path(built: Path) -> None:
    """``engine="ref"`` (``npuc run --engine ref``) runs through the runtime with the compiler's
    reference runner: bit-exact with the simulator; without a runner it is a clear error."""
    from npuc.cli.npu_exec import reference_runner

    model = npuc.runtime.load(built / "m.npuc")
    x = {"x": np.load(built / "x.npy")}
    with pytest.raises(InvalidInputError, match="engine 'ref': no reference runner"):
        model.run(x, engine="ref")
    with pytest.raises(InvalidInputError, match="engine 'fast': not one of sim, ref"):
        model.run(x, engine="fast")
    sim = model.run(x, raw=True)
    cycles = [list(s.cycles) for s in model.stats]
    model.reference = reference_runner(model)
    ref = model.run(x, raw=True, engine="ref")
    assert [list(s.cycles) for s in model.stats] == cycles  # the reference adds no cycles
    for name, value in sim.items():
        np.testing.assert_array_equal(ref[name], value, strict=True)

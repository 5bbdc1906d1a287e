"""The driver builds the target value once from the command line's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from npuc import driver
from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.hw.config import DEFAULT_PRESET, preset
from npuc.core.target import TARGET_KINDS, CpuTarget, NpuTarget, host_core_count


def test_cpu_target_from_options() -> None:
    target = driver.make_target("cpu", num_threads=1)
    assert isinstance(target, CpuTarget) and target.num_cores == 1
    default = driver.make_target("cpu")
    assert isinstance(default, CpuTarget) and default.num_cores == host_core_count()


def test_npu_target_defaults_to_the_default_preset() -> None:
    target = driver.make_target("npu")
    assert target == NpuTarget(hw=preset(DEFAULT_PRESET), quantization=None)
    assert driver.make_target("npu", hw=preset("npu-s")) == NpuTarget(hw=preset("npu-s"))


def test_unknown_target_kind_lists_the_known_ones() -> None:
    with pytest.raises(InvalidInputError, match="unknown target 'gpu'") as err:
        driver.make_target("gpu")
    assert err.value.hint == f"use one of: {', '.join(TARGET_KINDS)}"


def test_thread_count_checked_once_with_the_flag_to_fix() -> None:
    with pytest.raises(
        InvalidInputError, match="number of threads must be at least 1, got 0"
    ) as err:
        driver.make_target("cpu", num_threads=0)
    assert err.value.hint == "pass --threads 1 or more"


def test_npu_build_is_refused_before_any_work(tmp_path: Path) -> None:
    missing = tmp_path / "never-read.onnx"  # not read: the target is refused first
    with pytest.raises(UnsupportedError, match="--target npu is not implemented yet"):
        driver.build(missing, out_path=tmp_path / "m.so", target=driver.make_target("npu"))


def test_tvm_failure_after_import_is_npucs_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    import tvm
    from onnx import TensorProto, helper

    import npuc.midend.pipeline as pipeline
    from npuc.core.errors import UnsupportedError
    from npuc.driver import build

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "m.onnx")

    def failing_optimize(*args: object, **kwargs: object) -> None:
        raise tvm.error.InternalError("Check failed: (begin <= end) is false: lowering")

    monkeypatch.setattr(pipeline, "optimize", failing_optimize)
    with pytest.raises(UnsupportedError) as info:
        build(tmp_path / "m.onnx", out_path=tmp_path / "m.so")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'm.onnx'}: the model passed npuc's checks")
    assert "TVM failed while optimizing it" in message and "TVM says: InternalError" in message
    assert "gap in npuc" in str(info.value.hint)
    assert not (tmp_path / "m.so").exists()

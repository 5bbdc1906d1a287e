"""Tuning database: tasks and their ranking, records applied by the build, bad databases.

The MetaSchedule search itself is slow (minutes on 2 shared cores); it runs
end to end in ``tests/npuc/test_cli_tune.py`` (marked slow). Here records
are written by hand from a small schedule, so the build's use of a database
is checked in seconds: tuned kernels counted, outputs equal onnxruntime's.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax, s_tir, tirx
from tvm.s_tir import meta_schedule as ms

from npuc.backend.cpu.build import compile_module
from npuc.backend.cpu.lowering import fusion_passes
from npuc.backend.cpu.schedule_pass import RULE_ATTR, TUNED_RULE, ScheduleCpu, ScheduleReport
from npuc.backend.cpu.schedules.loops import root_blocks
from npuc.backend.cpu.tuning import TuneOptions, extract_tasks, hand_scheduled
from npuc.backend.cpu.tuning_db import DB_FILES, open_tuning_db, task_module, tuned_function
from npuc.backend.cpu.tuning_measure import kernel_seconds
from npuc.backend.cpu.tuning_search import _stop_on_interrupt
from npuc.backend.cpu.tuning_tasks import TuningTask
from npuc.core.errors import InvalidInputError
from npuc.core.target import CpuTarget, host_target
from npuc.midend.pipeline import optimize
from tests.backend.cpu.small_models import conv_two_outputs, import_onnx
from tests.tooling.reference import run_onnxruntime

RTOL, ATOL = 1e-5, 1e-5  # fp32 3x3 convolution, summed in different orders
TARGET = host_target(2)


def _fused(model: object) -> tvm.IRModule:
    mod, _info = import_onnx(model)  # type: ignore[arg-type]
    return tvm.transform.Sequential(fusion_passes(TARGET))(optimize(mod))


def _two_equal_convs() -> object:
    """x[1,8,8,8] -> (Conv 3x3 -> Relu) twice, same shapes, different weights: equal kernels."""
    rng = np.random.default_rng(5)
    weights = [
        numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), f"w{i}")
        for i in range(2)
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_equal_convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _write_record(folder: Path, func: tirx.PrimFunc, target: tvm.target.Target) -> None:
    """A database with one record for ``func``: its outer loop in parallel, inner vectorised."""
    key = task_module(func)
    sch = s_tir.Schedule(key)
    for block in root_blocks(sch):
        loops = sch.get_loops(block)
        sch.parallel(loops[0])
    db = ms.database.JSONDatabase(work_dir=str(folder))
    record = ms.database.TuningRecord(
        sch.trace, db.commit_workload(key), [1e-6], target, ms.arg_info.ArgInfo.from_prim_func(func)
    )
    db.commit_tuning_record(record)


def test_tasks_are_distinct_kernels_ranked_by_flops_times_calls() -> None:
    tasks = extract_tasks(_fused(conv_two_outputs()))
    by_name = {t.name: t for t in tasks}
    assert len(by_name) == len(tasks)
    # multiply-adds + bias (the sigmoid output's fast exp is a long polynomial per
    # element, so on this 8x8 model it may outrank the conv)
    assert by_name["fused_conv2d_add"].flops == 2 * 8 * 8 * 8 * 3 * 3 * 3 + 8 * 8 * 8
    assert [t.cost for t in tasks] == sorted((t.cost for t in tasks), reverse=True)
    assert all(t.calls == 1 for t in tasks)

    tasks = extract_tasks(_fused(_two_equal_convs()))  # one kernel, called twice
    assert len(tasks) == 1
    assert tasks[0].calls == 2 and tasks[0].cost == 2 * tasks[0].flops


def _conv_task() -> TuningTask:
    return next(t for t in extract_tasks(_fused(conv_two_outputs())) if "conv2d" in t.name)


def test_hand_scheduled_is_what_the_build_uses() -> None:
    task = _conv_task()
    rule, func = hand_scheduled(task, TARGET)
    assert rule == "conv2d" and str(func.attrs[RULE_ATTR]) == "conv2d"
    assert kernel_seconds(func, TARGET, repeat=2, min_repeat_ms=1) > 0


def test_build_applies_records_and_matches_onnxruntime(tmp_path: Path) -> None:
    model = conv_two_outputs()
    task = _conv_task()
    _write_record(tmp_path, task.func, TARGET.to_tvm())

    mod, _info = import_onnx(model)
    mod = optimize(mod)
    report = ScheduleReport()
    executable = compile_module(mod, TARGET, tuning_db=tmp_path, report=report)
    assert report.rule_of[task.name] == TUNED_RULE
    assert report.counts()[TUNED_RULE] == 1 and not report.failures

    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    got = [o.numpy() for o in vm["main"](tvm.runtime.tensor(x))]
    want = run_onnxruntime(model, {"x": x})
    for value, name in zip(got, ("relu_out", "sigmoid_out"), strict=True):
        np.testing.assert_allclose(value, want[name], rtol=RTOL, atol=ATOL)


def test_without_database_the_hand_rules_apply(tmp_path: Path) -> None:
    fused = _fused(conv_two_outputs())
    report = ScheduleReport()
    ScheduleCpu(TARGET, report=report)(fused)
    assert TUNED_RULE not in report.counts()


def test_record_of_another_cpu_is_not_used(tmp_path: Path) -> None:
    task = _conv_task()
    other = "znver3" if TARGET.cpu_name != "znver3" else "icelake-server"
    _write_record(tmp_path, task.func, tvm.target.Target({"kind": "llvm", "mcpu": other}))
    assert tuned_function(open_tuning_db(tmp_path), task.func, TARGET) is None
    same = CpuTarget(cpu_name=other, features=TARGET.features, num_cores=2)
    assert tuned_function(open_tuning_db(tmp_path), task.func, same) is not None


def test_missing_folder_or_files_are_refused_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=f"{tmp_path / 'nowhere'}: no such folder"):
        open_tuning_db(tmp_path / "nowhere")
    (tmp_path / DB_FILES[0]).write_text("")
    with pytest.raises(InvalidInputError, match=f"{tmp_path}: database_tuning_record.json missing"):
        open_tuning_db(tmp_path)


def test_unfinished_tuning_folder_says_to_tune_again(tmp_path: Path) -> None:
    (tmp_path / "search").mkdir()
    with pytest.raises(InvalidInputError, match="did not finish") as info:
        open_tuning_db(tmp_path)
    assert "continues from the candidates" in str(info.value.hint)


def test_first_ctrl_c_requests_a_stop_second_interrupts() -> None:
    previous = signal.getsignal(signal.SIGINT)
    with _stop_on_interrupt() as stop:
        assert not stop.is_set()
        signal.raise_signal(signal.SIGINT)
        assert stop.is_set()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is previous


def test_corrupt_database_is_refused_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / DB_FILES[0]).write_text("not json {\n")
    (tmp_path / DB_FILES[1]).write_text("")
    with pytest.raises(InvalidInputError, match=f"tuning database {tmp_path} is corrupt"):
        open_tuning_db(tmp_path)
    with pytest.raises(InvalidInputError, match="is corrupt"):
        compile_module(optimize(import_onnx(conv_two_outputs())[0]), TARGET, tuning_db=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"trials": 0}, "--trials must be at least 1"),
        ({"max_tasks": 0}, "--tasks must be at least 1"),
        ({"time_budget_s": 0.0}, "--time-budget must be a finite number of seconds > 0"),
        ({"time_budget_s": float("inf")}, "--time-budget must be a finite"),
        ({"time_budget_s": float("nan")}, "--time-budget must be a finite"),
    ],
)
def test_tune_options_are_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        TuneOptions(**kwargs)  # type: ignore[arg-type]

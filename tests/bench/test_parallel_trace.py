"""bench/parallel_trace.py: the shim records every parallel launch of a loaded TVM library,
each task on its thread, and the summaries add them up as documented."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tvm
from tvm.script import tirx as T

from npuc.core.target import host_target
from npuc.runtime import configure_threads

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trace() -> ModuleType:
    if sys.platform != "linux" or shutil.which("gcc") is None or shutil.which("nm") is None:
        pytest.skip("needs Linux, gcc and nm")
    spec = importlib.util.spec_from_file_location(
        "parallel_trace", ROOT / "bench" / "parallel_trace.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@T.prim_func(s_tir=True)
def _three_launches(A: T.Buffer((3, 64), "float32")) -> None:  # type: ignore[valid-type]
    for i in range(3):  # a serial loop around a parallel one: one launch per i
        for j in T.parallel(2):
            for v in range(32):
                A[i, j * 32 + v] = A[i, j * 32 + v] + T.float32(1)


def test_every_launch_and_task_is_recorded(trace: ModuleType, tmp_path: Path) -> None:
    threads = configure_threads(2)
    mod = tvm.IRModule({"three": _three_launches.with_attr("global_symbol", "three")})
    path = tmp_path / "three.so"
    tvm.compile(mod, target=host_target().to_tvm()).export_library(str(path))
    lib = tvm.runtime.load_module(str(path))
    a = tvm.runtime.tensor(np.zeros((3, 64), "float32"))
    tracer = trace.Tracer(path, tmp_path)
    runs = tracer.trace(lambda: lib["three"](a), 4)
    np.testing.assert_array_equal(a.numpy(), np.full((3, 64), 4, np.float32), strict=True)
    assert len(runs) == 4
    for run in runs:
        assert len(run.launches) == 3
        for launch in run.launches:
            assert launch.kernel == runs[0].launches[0].kernel  # one kernel
            assert sorted(launch.tasks) == list(range(threads))
            assert 0 <= launch.start_us <= launch.end_us <= run.wall_us
            for start, end in launch.tasks.values():
                assert launch.start_us <= start <= end <= launch.end_us
    for run in runs:  # one run's parts add up to its wall time
        t = trace.summary([run])
        assert t["launches"] == 3 and t["ideal"] <= t["in_launches"] <= t["wall"]
        parts = t["before_first"] + t["in_launches"] + t["gaps"] + t["after_last"]
        assert parts == pytest.approx(t["wall"], rel=1e-9)
    (row,) = trace.per_kernel(runs)
    assert row["per_run"] == 3 and row["kernel"] == runs[0].launches[0].kernel

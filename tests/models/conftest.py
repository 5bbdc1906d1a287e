"""Fixtures for the real-model tests: import with npuc, run on the CPU and in onnxruntime."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from tools.real_models import RealModel


@dataclass(frozen=True, slots=True)
class ModelRun:
    """One model run through npuc on the CPU and through onnxruntime on the same feeds.

    ``tvm`` and ``ort`` hold the outputs in graph-output order.
    """

    tvm: list[np.ndarray]
    ort: list[np.ndarray]
    output_names: list[str]
    load_s: float
    compile_and_run_s: float


RunModel = Callable[[RealModel, np.ndarray], ModelRun]


@pytest.fixture
def run_model(record_property: Callable[[str, object], None]) -> RunModel:
    """``run_model(model, batch)``: ``npuc.frontend.load`` with the batch's shape, then run.

    The load and compile+run times and the max abs error per output are
    recorded as junit properties and printed (``pytest -s`` shows them).
    """
    from npuc.frontend import load
    from tests.tooling.cpu import run_relax_on_cpu
    from tests.tooling.reference import run_onnxruntime

    def run(model: RealModel, batch: np.ndarray) -> ModelRun:
        path = model.path()
        start = time.perf_counter()
        imported = load(path, {model.input_name: list(batch.shape)})
        load_s = time.perf_counter() - start
        feeds = {model.input_name: batch}
        start = time.perf_counter()
        tvm_out = run_relax_on_cpu(imported.mod, feeds)
        compile_and_run_s = time.perf_counter() - start
        ort = run_onnxruntime(str(path), feeds)
        names = [t.name for t in imported.info.outputs]
        assert list(ort) == names, f"output names differ: onnxruntime {list(ort)} vs npuc {names}"
        assert len(tvm_out) == len(names)
        errors = [
            float(np.abs(got - ort[name]).max()) for got, name in zip(tvm_out, names, strict=True)
        ]
        record_property("load_s", round(load_s, 2))
        record_property("compile_and_run_s", round(compile_and_run_s, 2))
        record_property("max_abs_error", errors)
        print(
            f"{model.key} {batch.shape}: load {load_s:.1f} s, "
            f"compile+run {compile_and_run_s:.1f} s, max abs error {errors}"
        )
        return ModelRun(
            tvm=tvm_out,
            ort=[ort[n] for n in names],
            output_names=names,
            load_s=load_s,
            compile_and_run_s=compile_and_run_s,
        )

    return run

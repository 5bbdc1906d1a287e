"""``profile_model``: every function ``main`` calls, timed inside real runs; the hook is removed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tvm

from npuc import runtime
from npuc.backend.cpu import compile_module, host_target
from npuc.core.errors import InvalidInputError
from npuc.core.model_info import ModelInfo
from npuc.runtime.profile import ModelProfile, profile_model, profile_table
from npuc.runtime.thread_pool import pool_threads
from tests.backend.cpu.small_models import conv_two_outputs, import_onnx

X = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def built() -> tuple[tvm.runtime.Executable, ModelInfo]:
    mod, info = import_onnx(conv_two_outputs())
    return compile_module(mod, host_target()), info


@pytest.fixture(scope="module")
def model(built: tuple[tvm.runtime.Executable, ModelInfo]) -> runtime.CompiledModel:
    return runtime.from_executable(*built)


@pytest.fixture(scope="module")
def profile(model: runtime.CompiledModel) -> ModelProfile:
    return profile_model(model, {"x": X}, runs=3, warmup=1)


def test_profile_lists_the_kernels_with_their_shapes(profile: ModelProfile) -> None:
    names = [k.function for k in profile.kernels]
    assert len(names) == len(set(names))
    conv = [k for k in profile.kernels if "conv2d" in k.function]
    assert len(conv) == 1 and conv[0].calls_per_run == 1
    assert conv[0].shapes[0] == (1, 3, 8, 8)  # the input, then weights..., the output
    assert conv[0].shapes[-1][-2:] == (8, 8)
    times = [k.us_per_run for k in profile.kernels]
    assert all(t > 0 for t in times) and times == sorted(times, reverse=True)
    assert profile.kernels_ms == pytest.approx(sum(times) / 1e3)
    assert profile.run_ms > 0 and profile.runs == 3 and profile.threads == pool_threads()
    data = profile.as_json()
    assert [k["function"] for k in data["kernels"]] == names
    assert data["kernels"][names.index(conv[0].function)]["shapes"][0] == [1, 3, 8, 8]


def test_profile_table_names_every_kernel_or_counts_the_rest(profile: ModelProfile) -> None:
    full = "\n".join(profile_table(profile, top=len(profile.kernels)))
    assert all(k.function in full for k in profile.kernels) and "more)" not in full
    short = profile_table(profile, top=1)
    assert short[-1].strip().endswith(f"({len(profile.kernels) - 1} more)")


def test_the_hook_is_removed_after_profiling(model: runtime.CompiledModel) -> None:
    seen: list[str] = []

    def count(_func: object, name: str, before: bool, _ret: object, *_args: object) -> int:
        seen.append(name)
        return 0

    with model.instrumented(count):
        instrumented = model.run({"x": X})
    during = len(seen)
    assert during > 0
    out = model.run({"x": X})
    assert len(seen) == during
    for name, value in out.items():  # the hook does not change results
        np.testing.assert_array_equal(value, instrumented[name], strict=True)


@pytest.mark.parametrize(("runs", "warmup"), [(0, 1), (-2, 1), (3, -1)])
def test_bad_run_counts_are_refused(model: runtime.CompiledModel, runs: int, warmup: int) -> None:
    with pytest.raises(InvalidInputError, match="runs must be at least 1"):
        profile_model(model, {"x": X}, runs=runs, warmup=warmup)


def test_bad_inputs_are_refused_before_timing(model: runtime.CompiledModel) -> None:
    with pytest.raises(InvalidInputError, match="x"):
        profile_model(model, {"x": X[:, :2]}, runs=2)


def test_a_library_without_recorded_rules_says_so(
    built: tuple[tvm.runtime.Executable, ModelInfo],
) -> None:
    """Libraries built before npuc recorded schedule rules (this fixture's description has
    none), or with an unreadable record, show '-' for every kernel and a note (a list there
    raised AttributeError: an internal error of ``npuc run --profile``)."""
    executable, info = built
    for extra in ({}, {"schedule_rules": ["conv2d"]}):
        old = runtime.from_executable(executable, dataclasses.replace(info, extra=extra))
        found = profile_model(old, {"x": X}, runs=1, warmup=0)
        assert not found.rules_recorded and not found.as_json()["rules_recorded"]
        assert all(k.rule == "" for k in found.kernels)
        assert "records no schedule rules" in "\n".join(profile_table(found))
    recorded = dataclasses.replace(info, extra={"schedule_rules": {}})
    found = profile_model(runtime.from_executable(executable, recorded), {"x": X}, runs=1)
    assert found.rules_recorded and "records no" not in "\n".join(profile_table(found))

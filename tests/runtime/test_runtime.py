"""Loading libraries and checking inputs: every user mistake gets a clear error."""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from npuc import runtime
from npuc.backend.cpu import build_library, compile_module, host_target
from npuc.core.errors import InvalidInputError
from npuc.core.fileio import sha256_file
from npuc.runtime.thread_pool import configured_threads
from tests.backend.cpu.small_models import conv_two_outputs, import_onnx, two_inputs_int32


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mod, info = import_onnx(two_inputs_int32())
    out = tmp_path_factory.mktemp("lib") / "ints.so"
    build_library(mod, info, host_target(), out)
    return out


@pytest.fixture(scope="module")
def model() -> runtime.CompiledModel:
    mod, info = import_onnx(two_inputs_int32())
    return runtime.from_executable(compile_module(mod, host_target()), info)


def _copy(library: Path, folder: Path) -> Path:
    dest = folder / library.name
    shutil.copy(library, dest)
    shutil.copy(f"{library}.json", f"{dest}.json")
    return dest


A = np.arange(10, dtype=np.int32).reshape(2, 5)


def test_load_and_run(library: Path) -> None:
    loaded = runtime.load(library)
    assert [t.name for t in loaded.info.inputs] == ["a", "b"]
    out = loaded.run({"b": A, "a": A.T.copy().T})  # order of the mapping does not matter
    np.testing.assert_array_equal(out["y"], 2 * A * A, strict=True)


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2,
    reason="needs >= 2 CPUs: with one, pinning to one core leaves the affinity unchanged",
)
def test_caller_keeps_its_cpus(library: Path) -> None:
    """TVM's thread pool pins the configuring thread to one core; the runtime undoes that."""
    before = os.sched_getaffinity(0)
    runtime.configure_threads(2)
    loaded = runtime.load(library)
    loaded.run({"a": A, "b": A})
    assert os.sched_getaffinity(0) == before


def test_non_contiguous_input_is_accepted(model: runtime.CompiledModel) -> None:
    wide = np.arange(20, dtype=np.int32).reshape(2, 10)[:, ::2]
    np.testing.assert_array_equal(
        model.run({"a": wide, "b": A})["y"], (wide + A) * wide, strict=True
    )


def test_runs_refill_inputs_and_return_their_own_outputs(model: runtime.CompiledModel) -> None:
    """Input tensors are kept from run to run; outputs are copies the next run leaves alone."""
    caller_a = A.copy()
    first = model.run({"a": caller_a, "b": A})["y"]
    second = model.run({"a": A + 1, "b": A})["y"]
    np.testing.assert_array_equal(first, (A + A) * A, strict=True)
    np.testing.assert_array_equal(second, (A + 1 + A) * (A + 1), strict=True)
    np.testing.assert_array_equal(caller_a, A, strict=True)  # the caller's array is untouched


def test_runs_from_several_threads_take_turns(model: runtime.CompiledModel) -> None:
    """Threads share the model's input tensors: each run still sees its own inputs."""

    def runs(offset: int) -> bool:
        a = A + offset
        return all(np.array_equal(model.run({"a": a, "b": A})["y"], (a + A) * a) for _ in range(25))

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(runs, range(8)))


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({"a": A, "b": A, "c": A}, r"unknown input 'c'; the model's inputs are a \(2x5 int32\)"),
        ({"a": A}, r"missing input 'b'; the model's inputs are a \(2x5 int32\), b \(2x5 int32\)"),
        ({"a": A, "b": A.astype(np.int64)}, r"input 'b': expected dtype int32, got int64"),
        ({"a": A, "b": A.reshape(5, 2)}, r"input 'b': expected shape 2x5, got 5x2"),
        ({"a": A, "b": np.int32(3)}, r"input 'b': expected a numpy array, got int32"),
        ({"a": A[0], "b": A}, r"input 'a': expected shape 2x5, got 5"),
    ],
)
def test_bad_inputs(model: runtime.CompiledModel, feeds: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        model.run(feeds)  # type: ignore[arg-type]


def test_missing_library(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"compiled model .*nope\.so does not exist"):
        runtime.load(tmp_path / "nope.so")


def test_model_file_instead_of_library(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    with pytest.raises(InvalidInputError, match=r"m\.onnx is a model file, not a compiled library"):
        runtime.load(tmp_path / "m.onnx")


def test_missing_sidecar(library: Path, tmp_path: Path) -> None:
    copy = _copy(library, tmp_path)
    Path(f"{copy}.json").unlink()
    with pytest.raises(InvalidInputError, match=r"its description .*ints\.so\.json is missing"):
        runtime.load(copy)


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ("{not json", r"cannot read the library description"),
        ('{"format": "something-else"}', r"not a valid npuc library description"),
        ('{"format": "npuc-cpu-library", "format_version": 1}', r"not a valid npuc library"),
    ],
)
def test_corrupt_sidecar(library: Path, tmp_path: Path, sidecar: str, message: str) -> None:
    copy = _copy(library, tmp_path)
    Path(f"{copy}.json").write_text(sidecar)
    with pytest.raises(InvalidInputError, match=message):
        runtime.load(copy)


def test_truncated_library(library: Path, tmp_path: Path) -> None:
    copy = _copy(library, tmp_path)
    copy.write_bytes(copy.read_bytes()[:1000])
    with pytest.raises(InvalidInputError, match=r"does not match its description .*SHA-256"):
        runtime.load(copy)


def test_unloadable_library(library: Path, tmp_path: Path) -> None:
    """A file that matches its sidecar but is no shared object (written by hand)."""
    copy = _copy(library, tmp_path)
    copy.write_bytes(b"\x7fELF but not really")
    sidecar = json.loads(Path(f"{copy}.json").read_text())
    sidecar["library"]["sha256"] = sha256_file(copy)
    Path(f"{copy}.json").write_text(json.dumps(sidecar))
    with pytest.raises(InvalidInputError, match=r"ints\.so: cannot load the library"):
        runtime.load(copy)


def test_library_for_another_cpu(library: Path, tmp_path: Path) -> None:
    copy = _copy(library, tmp_path)
    sidecar = json.loads(Path(f"{copy}.json").read_text())
    sidecar["target"]["cpu_name"] = "future-cpu"
    sidecar["target"]["features"] = sorted([*sidecar["target"]["features"], "zz-future-ext"])
    Path(f"{copy}.json").write_text(json.dumps(sidecar))
    with pytest.raises(
        InvalidInputError, match=r"built for a future-cpu CPU .* lacks: zz-future-ext"
    ):
        runtime.load(copy)


def test_bad_thread_count() -> None:
    with pytest.raises(InvalidInputError, match="number of threads must be at least 1, got 0"):
        runtime.configure_threads(0)


def test_loading_models_never_resizes_the_thread_pool(library: Path) -> None:
    """The pool is the process's: sized once, then loading a model leaves it alone."""
    runtime.configure_threads(1)
    first = runtime.load(library)
    second = runtime.load(library)
    assert configured_threads() == 1
    for model in (first, second):
        np.testing.assert_array_equal(model.run({"a": A, "b": A})["y"], 2 * A * A, strict=True)


def test_a_library_rebuilt_at_the_same_path_is_loaded_anew(tmp_path: Path) -> None:
    """Build, load, rebuild another model to the same path, load again: the second load runs
    the second model. dlopen hands back a library already loaded under the same name, so the
    second load ran the first build (breaker, 2026-12-01)."""
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    path = tmp_path / "m.so"
    outputs = []
    for seed in (0, 1):
        mod, info = import_onnx(conv_two_outputs(seed))
        build_library(mod, info, host_target(), path)
        outputs.append(runtime.load(path).run({"x": x})["sigmoid_out"])
        fresh = tmp_path / f"fresh{seed}.so"  # the same build under a name never loaded
        build_library(mod, info, host_target(), fresh)
        np.testing.assert_array_equal(outputs[-1], runtime.load(fresh).run({"x": x})["sigmoid_out"])
    assert not np.array_equal(outputs[0], outputs[1])


def test_load_without_a_temporary_folder(library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No writable temporary folder (for the link that keeps rebuilt libraries apart): the
    library still loads, from its own path."""
    import npuc.runtime.compiled_model as compiled_model

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError("read-only")

    monkeypatch.setattr(compiled_model.tempfile, "TemporaryDirectory", refuse)
    loaded = runtime.load(library)
    assert isinstance(loaded, runtime.CompiledModel)
    np.testing.assert_array_equal(loaded.run({"a": A, "b": A})["y"], 2 * A * A, strict=True)


@pytest.mark.parametrize(
    ("dtype", "checked"),
    [("float32", True), ("float16", True), ("int8", False), ("no_such_dtype", False)],
)
def test_int8_libraries_finite_check_covers_numpy_float_inputs(dtype: str, checked: bool) -> None:
    """Which declared inputs an int8 library checks for NaN/inf; an unknown dtype name
    must not stop the model from loading (it is not a numpy float)."""
    from npuc.runtime.compiled_model import _is_float

    assert _is_float(dtype) is checked

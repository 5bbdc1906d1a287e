"""Load a compiled CPU library and run it on checked inputs.

A :class:`CompiledModel` wraps a TVM Relax virtual machine and the model's
:class:`~npuc.core.model_info.ModelInfo`. :func:`load` opens ``model.so`` with
its ``model.so.json`` sidecar and refuses, with a clear
:class:`~npuc.core.errors.InvalidInputError`, a missing or corrupt library or
sidecar, a library that does not match its sidecar (SHA-256), or one built
for CPU features this machine lacks. :meth:`CompiledModel.run` checks inputs
(:mod:`.inputs`) and returns outputs by name, tuples flattened in
``ModelInfo`` order. Loading or running a model leaves the calling thread's
CPU affinity as it was (TVM's thread pool would pin it to one core). Models
do not size TVM's thread pool: :mod:`.thread_pool` does, once per process.
A model keeps its input tensors from run to run (refilled in place) and copies
its outputs out before returning, so runs of one model from several threads
take turns (a lock); different models run concurrently.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from npuc.core.artifact_format import WEIGHT_TRANSFORM_FUNC, read_sidecar
from npuc.core.errors import InvalidInputError
from npuc.core.fileio import sha256_file
from npuc.core.model_info import ModelInfo
from npuc.core.target import host_core_count, host_target
from npuc.runtime.inputs import DeclaredInputs, check_inputs
from npuc.runtime.thread_pool import caller_affinity_kept, ensure_threads

if TYPE_CHECKING:
    from npuc.runtime.npu_model import NpuModel

# Files `npuc run` is often given by mistake instead of the library built from them.
_MODEL_SUFFIXES = (".onnx", ".tflite", ".pt2", ".pt", ".pth")


class CompiledModel:
    """A model ready to run on this CPU.

    Parameters
    ----------
    executable
        A Relax executable or a loaded library module.
    info
        The model's interface; inputs and outputs are matched against it.

    Parallel kernels run on TVM's process-wide thread pool, sized by
    :mod:`npuc.runtime.thread_pool` (not by the model).

    A library with compact weights (``--precision weight-int8`` / ``fp16-weights``)
    stores them as int8 or float16; its ``main_transform_params()`` turns them
    into the float32 (packed) weights ``main`` takes after its inputs. That runs
    once, here, and the result is kept for every :meth:`run` (memory: the float32
    weights, as for a float library).
    """

    def __init__(
        self, executable: tvm.runtime.Executable | tvm.runtime.Module, info: ModelInfo
    ) -> None:
        self.info = info
        self._vm = relax.VirtualMachine(executable, tvm.cpu())
        self._main = self._vm["main"]
        self._weights: list[tvm.runtime.Tensor] = []
        self._inputs: list[_InputSlot | None] = [None] * len(info.inputs)
        self._lock = threading.Lock()
        self._declared = DeclaredInputs.of(info)
        self._finite_checked = tuple(
            (i, t.name)
            for i, t in enumerate(info.inputs)
            if info.extra.get("precision") == "int8" and _is_float(t.dtype)
        )
        if self._vm.module.implements_function(WEIGHT_TRANSFORM_FUNC):
            with caller_affinity_kept():
                self._weights = list(self._vm[WEIGHT_TRANSFORM_FUNC]())

    def run(self, inputs: Mapping[str, np.ndarray], *, raw: bool = False) -> dict[str, np.ndarray]:
        """Run once on ``inputs`` (name -> array); return outputs by name.

        An integer library (``npuc build --target cpu --precision int8``) returns the
        stored integers of its quantized outputs; they are dequantized to float32 with
        the scale and zero point its description records (``model.extra
        ["quantized_outputs"]``: real = (q - zero_point) * scale), unless ``raw``.

        Raises
        ------
        InvalidInputError
            An input is unknown or missing, or has the wrong shape or dtype; or, for an
            integer library, a float input holds NaN or infinite values (it quantizes its
            inputs, where they have no value; the integer executor and ``npuc run`` of an
            NPU build refuse them too).
        """
        arrays = self._declared.exact_arrays(inputs) if self._declared else None
        if arrays is None:
            arrays = check_inputs(self.info, inputs)
        _check_finite(self._finite_checked, arrays)
        with self._lock, caller_affinity_kept():
            tensors = [self._input_tensor(i, a) for i, a in enumerate(arrays)]
            result = self._main(*tensors, *self._weights)
            flat = _flatten(result)  # copied out before the next run reuses the input tensors
        if len(flat) != len(self.info.outputs):
            raise RuntimeError(
                f"the library returned {len(flat)} outputs but its description lists "
                f"{len(self.info.outputs)}"
            )
        outputs = {t.name: value for t, value in zip(self.info.outputs, flat, strict=True)}
        return outputs if raw else _dequantized(outputs, self.info)

    @contextlib.contextmanager
    def instrumented(self, instrument: Callable[..., int]) -> Iterator[None]:
        """Within the block, :meth:`run` calls ``instrument`` around every call its VM makes.

        TVM's Relax VM hook: ``instrument(func, name, before, ret, *args)``, called
        before (``before`` true) and after each call, returns 0 to go on. Runs from
        other threads meanwhile are instrumented too. Used by
        :func:`npuc.runtime.profile.profile_model`.
        """
        with self._lock:
            self._vm.set_instrument(instrument)
        try:
            yield
        finally:
            with self._lock:
                self._vm.set_instrument(None)

    def _input_tensor(self, index: int, array: np.ndarray) -> tvm.runtime.Tensor:
        """Input ``index`` holding ``array``: a tensor kept from run to run, refilled in place.

        A new tensor per run cost more than its copy (BlazeFace's 196 KB input: ~0.15 ms
        of a 1.6 ms run, fresh memory in a cold cache). A new shape (a symbolic dimension)
        gets a new tensor.
        """
        slot = self._inputs[index]
        if slot is None or slot.shape != array.shape:
            slot = _InputSlot.holding(array)
            self._inputs[index] = slot
        elif slot.view is not None:
            np.copyto(slot.view, array)
        else:
            slot.tensor.copyfrom(array)
        return slot.tensor


def _is_float(dtype: str) -> bool:
    """Whether numpy knows ``dtype`` as a floating type (an unknown name is not)."""
    try:
        return bool(np.issubdtype(np.dtype(dtype), np.floating))
    except TypeError:
        return False


def _check_finite(checked: tuple[tuple[int, str], ...], arrays: list[np.ndarray]) -> None:
    """Raise when a float input of an integer library (``checked``: its index and name, as
    ``CompiledModel`` lists them) holds NaN or an infinity."""
    for index, name in checked:
        if not np.isfinite(arrays[index]).all():
            raise InvalidInputError(
                f"input {name!r} holds NaN or infinite values; this int8 library "
                "quantizes its inputs to integers, where they have no value",
                hint="clean the input (np.nan_to_num) before running",
            )


@dataclass(frozen=True, slots=True)
class _InputSlot:
    """The TVM tensor of one input and a numpy view of its memory (``None``: no view)."""

    tensor: tvm.runtime.Tensor
    view: np.ndarray | None
    shape: tuple[int, ...]

    @staticmethod
    def holding(array: np.ndarray) -> _InputSlot:
        """A new slot holding a copy of ``array`` (C-contiguous, the declared dtype)."""
        tensor = tvm.runtime.tensor(array)
        try:
            view: np.ndarray | None = np.from_dlpack(tensor)
        except (TypeError, BufferError, RuntimeError):  # a dtype numpy cannot view
            view = None
        return _InputSlot(tensor, view, array.shape)


def _dequantized(outputs: dict[str, np.ndarray], info: ModelInfo) -> dict[str, np.ndarray]:
    """Quantized outputs of an integer library as float32 real values; others unchanged."""
    quantized = info.extra.get("quantized_outputs") or {}
    result = dict(outputs)
    for name, q in quantized.items():
        if name in result:
            real = (result[name].astype(np.float64) - int(q["zero_point"])) * float(q["scale"])
            result[name] = real.astype(np.float32)
    return result


def _flatten(value: object) -> list[np.ndarray]:
    if isinstance(value, tvm.runtime.Tensor):
        return [_copied(value)]
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__"):
        flat: list[np.ndarray] = []
        for item in value:  # type: ignore[attr-defined]
            flat.extend(_flatten(item))
        return flat
    raise RuntimeError(f"unexpected value {type(value).__name__} returned by the library")


def _copied(tensor: tvm.runtime.Tensor) -> np.ndarray:
    """A numpy copy of ``tensor`` (through DLPack: 2.5 us for 57 KB, ``numpy()`` took 9.5)."""
    try:
        return np.from_dlpack(tensor).copy()
    except (TypeError, BufferError, RuntimeError):  # a dtype numpy cannot view
        return tensor.numpy()


def from_executable(executable: tvm.runtime.Executable, info: ModelInfo) -> CompiledModel:
    """Wrap an in-memory executable (from ``npuc.backend.cpu.compile_module``)."""
    return CompiledModel(executable, info)


def load(path: str | Path) -> CompiledModel | NpuModel:
    """Load ``path`` (a ``.so`` written by ``npuc build``) and its sidecar.

    A ``.npuc`` NPU artifact gives an :class:`~npuc.runtime.npu_model.NpuModel`
    instead (NPU partitions on the simulator; ``run(inputs, raw=False)``).

    If this process has not sized TVM's thread pool yet
    (:func:`~npuc.runtime.thread_pool.configure_threads`), it is sized here to
    the threads the library was built for, capped at this machine's cores.

    Parameters
    ----------
    path
        The library; ``<path>.json`` must sit beside it.

    Raises
    ------
    InvalidInputError
        Missing, corrupt or mismatched library or sidecar; a model file given
        instead of a library; CPU features this machine lacks.
    """
    path = Path(path)
    if path.suffix.lower() == ".npuc":
        from npuc.runtime.npu_model import load_npuc

        return load_npuc(path)
    hint = f"rebuild it with `npuc build <model> --target cpu -o {path}`"
    if not path.is_file():
        raise InvalidInputError(f"compiled model {path} does not exist", hint="check the path")
    if path.suffix.lower() in _MODEL_SUFFIXES:
        raise InvalidInputError(
            f"{path} is a model file, not a compiled library",
            hint=f"compile it first: npuc build {path} --target cpu -o {path.stem}.so",
        )
    sidecar = read_sidecar(path)
    if sha256_file(path) != sidecar.library_sha256:
        raise InvalidInputError(
            f"{path} does not match its description {path}.json (SHA-256 differs): "
            "the library is corrupt or the two files come from different builds",
            hint=hint,
        )
    missing = sorted(set(sidecar.target.features) - set(host_target().features))
    if missing:
        raise InvalidInputError(
            f"{path} was built for a {sidecar.target.cpu_name} CPU and needs features this "
            f"machine lacks: {', '.join(missing[:8])}",
            hint=f"{hint} on this machine",
        )
    try:
        module = _load_library(path)
    except Exception as exc:  # TVM reports dlopen and format errors as generic errors
        raise InvalidInputError(f"{path}: cannot load the library ({exc})", hint=hint) from exc
    # Unless the application sized the pool: as many threads as the build asked
    # for, but never more than this machine gives the process (built on 64, run on 2).
    ensure_threads(min(sidecar.target.num_cores, host_core_count()))
    return CompiledModel(module, sidecar.info)


def _load_library(path: Path) -> tvm.runtime.Module:
    """``tvm.runtime.load_module`` of ``path`` under a name never loaded before.

    dlopen hands back a library already loaded under the same name even when
    the file has been replaced since, so a model rebuilt to the same path and
    loaded again in one process ran the old build. Through a symbolic link in
    a fresh temporary folder the loader compares the file itself (device and
    inode): the same file still shares its loaded copy, a rebuilt one is
    loaded anew.
    """
    # tvm_ffi's loader, not tvm.runtime.load_module: that one resolves the link first.
    try:
        folder = tempfile.TemporaryDirectory(prefix="npuc-load-", ignore_cleanup_errors=True)
    except OSError:  # no temporary folder: the plain path (a rebuild stays stale)
        return tvm_ffi.load_module(str(path))
    with folder:
        link = Path(folder.name) / "library.so"
        try:
            link.symlink_to(path.resolve())
        except OSError:  # no symbolic links there: the plain path too
            link = path
        return tvm_ffi.load_module(str(link))

"""Load a compiled CPU library and run it on checked inputs.

A :class:`CompiledModel` wraps a TVM Relax virtual machine and the model's
:class:`~npuc.core.model_info.ModelInfo`. :func:`load` opens ``model.so`` with
its ``model.so.json`` sidecar and refuses, with a clear
:class:`~npuc.core.errors.InvalidInputError`, a missing or corrupt library or
sidecar, a library that does not match its sidecar (SHA-256), or one built
for CPU features this machine lacks. :meth:`CompiledModel.run` checks inputs
(:mod:`.inputs`) and returns outputs by name, tuples flattened in
``ModelInfo`` order. Loading or running a model leaves the calling thread's
CPU affinity as it was (TVM's thread pool would pin it to one core).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from npuc.core.artifact_format import read_sidecar
from npuc.core.errors import InvalidInputError
from npuc.core.fileio import sha256_file
from npuc.core.model_info import ModelInfo
from npuc.core.target import host_core_count, host_target
from npuc.runtime.inputs import check_inputs

# TVM's thread-pool affinity mode "big cores" (threading_backend.h: kBig = 1).
_AFFINITY_BIG_CORES = 1
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
    num_threads
        Size of TVM's thread pool for parallel kernels; ``None`` keeps TVM's default.
        The pool belongs to the process, so the last model to set it wins.
    """

    def __init__(
        self,
        executable: tvm.runtime.Executable | tvm.runtime.Module,
        info: ModelInfo,
        *,
        num_threads: int | None = None,
    ) -> None:
        self.info = info
        self.num_threads = num_threads
        if num_threads is not None:
            if num_threads < 1:
                raise InvalidInputError(f"number of threads must be at least 1, got {num_threads}")
            with _caller_affinity_kept():
                tvm.get_global_func("runtime.config_threadpool")(_AFFINITY_BIG_CORES, num_threads)
        self._vm = relax.VirtualMachine(executable, tvm.cpu())
        self._main = self._vm["main"]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once on ``inputs`` (name -> array); return outputs by name.

        Raises
        ------
        InvalidInputError
            An input is unknown or missing, or has the wrong shape or dtype.
        """
        arrays = check_inputs(self.info, inputs)
        with _caller_affinity_kept():
            result = self._main(*(tvm.runtime.tensor(a) for a in arrays))
        flat = _flatten(result)
        if len(flat) != len(self.info.outputs):
            raise RuntimeError(
                f"the library returned {len(flat)} outputs but its description lists "
                f"{len(self.info.outputs)}"
            )
        return {t.name: value for t, value in zip(self.info.outputs, flat, strict=True)}


@contextlib.contextmanager
def _caller_affinity_kept() -> Iterator[None]:
    """Give the calling thread back the CPUs it had.

    TVM's thread pool pins the thread that configures it or first runs a
    parallel kernel to one core; threads the caller starts later (another
    library's pool, say) would inherit that single core.
    """
    cpus = os.sched_getaffinity(0)
    try:
        yield
    finally:
        if os.sched_getaffinity(0) != cpus:
            os.sched_setaffinity(0, cpus)


def _flatten(value: object) -> list[np.ndarray]:
    if isinstance(value, tvm.runtime.Tensor):
        return [value.numpy()]
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__"):
        flat: list[np.ndarray] = []
        for item in value:  # type: ignore[attr-defined]
            flat.extend(_flatten(item))
        return flat
    raise RuntimeError(f"unexpected value {type(value).__name__} returned by the library")


def from_executable(
    executable: tvm.runtime.Executable, info: ModelInfo, *, num_threads: int | None = None
) -> CompiledModel:
    """Wrap an in-memory executable (from ``npuc.backend.cpu.compile_module``)."""
    return CompiledModel(executable, info, num_threads=num_threads)


def load(path: str | Path, *, num_threads: int | None = None) -> CompiledModel:
    """Load ``path`` (a ``.so`` written by ``npuc build``) and its sidecar.

    Parameters
    ----------
    path
        The library; ``<path>.json`` must sit beside it.
    num_threads
        As for :class:`CompiledModel`; ``None`` uses the core count it was built for.
    """
    path = Path(path)
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
        module = tvm.runtime.load_module(str(path))
    except Exception as exc:  # TVM reports dlopen and format errors as generic errors
        raise InvalidInputError(f"{path}: cannot load the library ({exc})", hint=hint) from exc
    # Default: as many threads as the build asked for, but never more than this
    # machine gives the process (a library built on 64 cores runs on 2).
    threads = (
        min(sidecar.target.num_cores, host_core_count()) if num_threads is None else num_threads
    )
    return CompiledModel(module, sidecar.info, num_threads=threads)

"""The compiler driver: model file -> compiled artifact, stage by stage.

:func:`build` runs the stages in the order data flows, each timed and shown
on the progress bar:

0. ``startup``  — loading the compiler's own modules (TVM), timed but not a progress step;
1. ``import``   — ``npuc.frontend.load``: read, fix input shapes, check support, convert to Relax;
2. ``optimize`` — ``npuc.midend.pipeline.optimize``: target-independent graph passes;
3. ``compile``  — ``npuc.backend.cpu.compile_module``: legalize, fuse, TIR lowering, LLVM codegen;
4. ``write``    — the shared library and its JSON sidecar, atomically.

The target is a value (:class:`~npuc.core.target.CpuTarget` or
:class:`~npuc.core.target.NpuTarget`) built once by :func:`make_target` from
the command-line options and passed down; no stage below reads a target name.
Only CPU builds exist today; an :class:`NpuTarget` raises
:class:`~npuc.core.errors.UnsupportedError` (exit code 4) until the NPU compiler
lands. Options are checked before any work starts, so a bad output path or
target fails in milliseconds, not after the import.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from npuc.core.errors import InvalidInputError, NpucError, UnsupportedError
from npuc.core.hw.config import HwConfig
from npuc.core.progress import Progress, null_progress
from npuc.core.target import TARGET_KINDS, CpuTarget, NpuTarget, Target, host_target

if TYPE_CHECKING:
    from npuc.backend.cpu import BuildResult

BUILD_STAGES = ("import", "optimize", "compile", "write")


def make_target(kind: str, *, num_threads: int | None = None, hw: HwConfig | None = None) -> Target:
    """Build the target value from the command line's options, once.

    Parameters
    ----------
    kind
        One of :data:`~npuc.core.target.TARGET_KINDS` (``--target``).
    num_threads
        CPU: threads the generated code may use (``--threads``); default every
        core this process may use.
    hw
        NPU: the hardware configuration; default the default preset.

    Raises
    ------
    InvalidInputError
        Unknown ``kind`` or ``num_threads < 1``.
    """
    if kind == "cpu":
        return host_target(num_threads)
    if kind == "npu":
        from npuc.core.hw.config import DEFAULT_PRESET, preset

        return NpuTarget(hw=hw if hw is not None else preset(DEFAULT_PRESET))
    raise InvalidInputError(
        f"unknown target {kind!r}", hint=f"use one of: {', '.join(TARGET_KINDS)}"
    )


def check_buildable(target: Target) -> CpuTarget:
    """Return ``target`` if npuc can build for it today; raise otherwise."""
    if isinstance(target, NpuTarget):
        raise UnsupportedError(
            "--target npu is not implemented yet (the NPU compiler arrives in a later release)",
            hint="use --target cpu to build a native library for this machine",
        )
    return target


def check_output_path(out_path: Path) -> None:
    """A CPU library path must end in ``.so`` and sit in an existing folder."""
    if out_path.suffix != ".so":
        raise InvalidInputError(
            f"output {out_path}: a CPU library must end in .so", hint="e.g. -o model.so"
        )
    folder = out_path.parent if str(out_path.parent) else Path(".")
    if not folder.is_dir():
        raise InvalidInputError(
            f"cannot write {out_path}: folder {folder} does not exist",
            hint="create the folder first or choose another output path",
        )


def build(
    source: str | os.PathLike[str],
    *,
    out_path: str | os.PathLike[str],
    target: Target | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: Progress | None = None,
    input_values: Mapping[str, str] | None = None,
    precision: str = "float",
    tuning_db: str | os.PathLike[str] | None = None,
) -> BuildResult:
    """Compile the model at ``source`` for ``target`` into ``out_path``.

    Parameters
    ----------
    source
        An ONNX, TFLite or PyTorch exported-program file.
    out_path
        The library to write (``model.so``; ``model.so.json`` is written beside it).
    target
        From :func:`make_target`; default this machine's CPU with every core.
        An :class:`~npuc.core.target.NpuTarget` is not implemented yet.
    input_shapes
        Shapes for inputs with symbolic dimensions, by input name.
    input_values
        ONNX inputs fixed to constants, by name (``{"sample_rate": "16000"}``;
        see :func:`npuc.frontend.load`); they are not inputs of the library.
    progress
        A 4-step progress bar (import, optimize, compile, write), or ``None``.
    precision
        How the library stores weights: ``float`` (default), ``weight-int8``
        (int8 + per-channel scale) or ``fp16-weights`` (float16); see
        :func:`npuc.backend.cpu.lowering.weight_passes`.
    tuning_db
        Folder written by ``npuc tune`` (``--tuning-db``): every kernel with a
        record there gets its tuned schedule instead of the hand rule; checked
        before the import starts.

    Returns
    -------
    BuildResult
        Paths, sizes, target and per-stage ``timings_s``.

    Raises
    ------
    InvalidInputError, UnsupportedError
        For bad files, options or unsupported models (see ``npuc.core.errors``).
    """
    cpu_target = check_buildable(target if target is not None else host_target())
    out_path = Path(out_path)
    check_output_path(out_path)
    progress = progress if progress is not None else null_progress()
    timings_s: dict[str, float] = {}

    # Loading TVM (and the torch it pulls in) takes seconds: time it on its own
    # so that ``import`` measures reading and converting the model.
    start_s = time.monotonic()
    from npuc.backend.cpu import build_library
    from npuc.frontend import load
    from npuc.midend.pipeline import MidendOptions, optimize

    timings_s["startup"] = time.monotonic() - start_s
    if tuning_db is not None:
        from npuc.backend.cpu.tuning_db import check_tuning_db_path

        check_tuning_db_path(Path(tuning_db))

    progress.step("import", n=0)
    start_s = time.monotonic()
    mod, info = load(source, input_shapes, input_values)
    timings_s["import"] = time.monotonic() - start_s
    progress.step("optimize")

    start_s = time.monotonic()
    with tvm_failures_as_npuc_errors(source, "optimizing"):
        mod = optimize(mod, MidendOptions())
    timings_s["optimize"] = time.monotonic() - start_s
    progress.step("compile")

    with tvm_failures_as_npuc_errors(source, "compiling"):
        result = build_library(
            mod,
            info,
            cpu_target,
            out_path,
            progress=progress,
            precision=precision,
            tuning_db=Path(tuning_db) if tuning_db is not None else None,
        )
    return dataclasses.replace(result, timings_s={**timings_s, **result.timings_s})


@contextlib.contextmanager
def tvm_failures_as_npuc_errors(source: str | os.PathLike[str], stage: str) -> Iterator[None]:
    """Turn an unexpected TVM failure in ``stage`` into npuc's own UnsupportedError.

    The model passed the support check and the import's shape guard, so a
    TVM failure after import (lowering, code generation) is a gap in npuc.
    The message says so in npuc's words, with TVM's first line only as a
    detail; npuc's own errors pass through unchanged. The Relax module no
    longer carries ONNX node names, so the model is named, not the node.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, NpucError) or not _raised_in_tvm(exc):
            raise
        text = str(exc).strip()
        first = text.splitlines()[0][:200] if text else ""
        raise UnsupportedError(
            f"{source}: the model passed npuc's checks, but TVM failed while {stage} it, "
            f"so npuc cannot compile it (TVM says: {type(exc).__name__}: {first})",
            hint="this is a gap in npuc, not a fault in your model; please report it with "
            "the model (rerun with --debug for the traceback)",
        ) from exc


def _raised_in_tvm(exc: BaseException) -> bool:
    """True when ``exc`` is a TVM error type or was raised inside TVM's Python or FFI code."""
    import tvm

    if isinstance(exc, tvm.error.InternalError | tvm.error.DiagnosticError | tvm.error.OpError):
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return any(part in where for part in ("/tvm/", "/tvm_ffi/"))

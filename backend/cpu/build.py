"""Compile an optimised Relax module for the host CPU and write the artifact.

:func:`compile_module` gives an in-memory :class:`tvm.runtime.Executable`
(tests, the conformance suite). :func:`build_library` also writes the
artifact: a native shared library (``Executable.export_library``, linked by
the system C compiler) and its JSON sidecar (:mod:`.artifact`). Both files go
through :func:`npuc.core.fileio.atomic_path`: the sidecar is renamed into place
first and the library last, only when everything before succeeded, so a
failing build leaves no new file and never clobbers an existing library.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tvm
from tvm import relax

from npuc.backend.cpu.lowering import cpu_relax_pipeline
from npuc.backend.cpu.schedule_pass import ScheduleReport
from npuc.backend.cpu.tuning_db import open_tuning_db
from npuc.core.artifact_format import LibrarySidecar, sidecar_path
from npuc.core.errors import InvalidInputError, UnsupportedError
from npuc.core.fileio import atomic_path, sha256_file, workspace_beside, write_text_atomic
from npuc.core.model_info import ModelInfo
from npuc.core.progress import Progress, null_progress
from npuc.core.target import CpuTarget
from npuc.core.version import __version__


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildResult:
    """What a build wrote and how long each stage took.

    ``timings_s`` maps stage names (``import``, ``optimize``, ``compile``,
    ``write``) to wall-clock seconds; the backend fills ``compile`` and
    ``write``, the driver adds the earlier stages.
    """

    library_path: Path
    sidecar_path: Path
    library_bytes: int
    sidecar_bytes: int
    info: ModelInfo
    target: CpuTarget
    timings_s: dict[str, float] = field(default_factory=dict)
    #: Kernels per schedule rule (``"tuned"``: from ``--tuning-db``), see ScheduleReport.
    schedule_counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "library": {"path": str(self.library_path), "bytes": self.library_bytes},
            "sidecar": {"path": str(self.sidecar_path), "bytes": self.sidecar_bytes},
            "inputs": [t.to_json() for t in self.info.inputs],
            "outputs": [t.to_json() for t in self.info.outputs],
            "target": self.target.to_json(),
            "timings_s": dict(self.timings_s),
            "schedules": dict(self.schedule_counts),
        }


def check_interface(mod: tvm.IRModule, info: ModelInfo) -> None:
    """Check that ``mod["main"]`` takes exactly ``info.inputs``, with static shapes.

    A compiled library runs on fixed shapes only; a symbolic dimension means
    the user did not fix it at import.
    """
    params = list(mod["main"].params)
    if len(params) != len(info.inputs):
        raise ValueError(
            f"module main takes {len(params)} parameters but the model info lists "
            f"{len(info.inputs)} inputs"
        )
    for param, tensor in zip(params, info.inputs, strict=True):
        if not tensor.is_static:
            raise UnsupportedError(
                f"input {tensor.name!r} has a dynamic shape {tensor.shape_str()}; "
                "a CPU library needs fixed shapes",
                hint=f"fix it with --input-shape {tensor.name}=<dims>, e.g. 1x3x224x224",
            )
        sinfo = param.ty
        shape = getattr(sinfo, "shape", None)
        dims = getattr(shape, "values", None)
        if dims is None or not all(isinstance(d, tvm.tirx.IntImm) for d in dims):
            raise UnsupportedError(
                f"input {tensor.name!r} of the Relax module has a symbolic shape",
                hint=f"fix it with --input-shape {tensor.name}=<dims>",
            )
        got = tuple(int(d) for d in dims)
        if got != tensor.shape or str(sinfo.dtype) != tensor.dtype:
            raise ValueError(
                f"input {tensor.name!r}: module has {got} {sinfo.dtype}, model info has "
                f"{tensor.shape} {tensor.dtype}"
            )


def compile_module(
    mod: tvm.IRModule,
    target: CpuTarget,
    *,
    precision: str = "float",
    tuning_db: str | Path | None = None,
    report: ScheduleReport | None = None,
) -> tvm.runtime.Executable:
    """Compile ``mod`` (as the midend leaves it) for ``target``, in memory.

    Parameters
    ----------
    mod
        Relax module with a ``main`` function, as ``npuc.midend.pipeline.optimize``
        returns it; legalized, fused and lowered here (:mod:`.lowering`).
    target
        The CPU to compile for (see :func:`~npuc.core.target.host_target`).
    precision
        How weights are stored: ``float`` (default), ``weight-int8`` or
        ``fp16-weights`` (:func:`.lowering.weight_passes`). With compact weights the
        executable has a ``main_transform_params()`` function giving ``main``'s
        float32 weights: ``main(*inputs, *main_transform_params())``; the runtime
        calls it once at load.
    tuning_db
        Folder of a tuning database written by ``npuc tune``: kernels with a
        record get the tuned schedule (:mod:`.tuning_db`). Raises
        :class:`~npuc.core.errors.InvalidInputError` naming it when it is
        missing or corrupt.
    report
        Filled with the schedule rule chosen per kernel.
    """
    tvm_target = target.to_tvm()
    db = open_tuning_db(tuning_db) if tuning_db is not None else None
    pipeline = cpu_relax_pipeline(target, report, precision=precision, tuning_db=db)
    return relax.build(mod, tvm_target, relax_pipeline=pipeline)


def build_library(
    mod: tvm.IRModule,
    info: ModelInfo,
    target: CpuTarget,
    out_path: str | Path,
    *,
    progress: Progress | None = None,
    precision: str = "float",
    tuning_db: str | Path | None = None,
) -> BuildResult:
    """Compile ``mod`` and write ``out_path`` (shared library) plus ``out_path.json``.

    Parameters
    ----------
    mod, target, precision, tuning_db
        As for :func:`compile_module`; the sidecar records ``precision``
        (``model.extra["precision"]``) unless ``info`` already names one.
    info
        The model's interface and provenance (from the frontend); stored in the sidecar.
    out_path
        Destination of the library; must end in ``.so``.
    progress
        Advanced once after compiling and once after writing.
    """
    out_path = Path(out_path)
    if out_path.suffix != ".so":
        raise InvalidInputError(
            f"output {out_path}: a CPU library must end in .so", hint="e.g. -o model.so"
        )
    progress = progress if progress is not None else null_progress()
    check_interface(mod, info)
    if "precision" not in info.extra:
        info = dataclasses.replace(info, extra={**info.extra, "precision": precision})

    start_s = time.monotonic()
    report = ScheduleReport()
    executable = compile_module(
        mod, target, precision=precision, tuning_db=tuning_db, report=report
    )
    compile_s = time.monotonic() - start_s
    progress.step("write")
    # Which rule scheduled each kernel, for `npuc run --profile` (names before TVM's
    # weight pre-packing adds its `_prepacked` suffix).
    info = dataclasses.replace(
        info, extra={**info.extra, "schedule_rules": dict(sorted(report.rule_of.items()))}
    )

    start_s = time.monotonic()
    side_path = sidecar_path(out_path)
    with atomic_path(out_path) as tmp_library, workspace_beside(out_path) as work:
        executable.export_library(str(tmp_library), workspace_dir=str(work))
        library_bytes = tmp_library.stat().st_size
        sidecar = LibrarySidecar(
            info=info,
            target=target,
            library_name=out_path.name,
            library_sha256=sha256_file(tmp_library),
            npuc_version=__version__,
            tvm_version=tvm.__version__,
        )
        write_text_atomic(side_path, json.dumps(sidecar.to_json(), indent=2) + "\n")
    write_s = time.monotonic() - start_s
    progress.step("done")
    return BuildResult(
        library_path=out_path,
        sidecar_path=side_path,
        library_bytes=library_bytes,
        sidecar_bytes=side_path.stat().st_size,
        info=info,
        target=target,
        timings_s={"compile": compile_s, "write": write_s},
        schedule_counts=report.counts(),
    )

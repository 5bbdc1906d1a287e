"""The host-CPU backend: Relax -> TVM's LLVM codegen -> native shared library.

Public API: :func:`compile_module` (in-memory executable) and
:func:`build_library` (``model.so`` + ``model.so.json``). What to compile for
(:class:`CpuTarget`, :func:`host_target`) and the sidecar format
(:func:`read_sidecar`) live in the core (:mod:`npuc.core.target`,
:mod:`npuc.core.artifact_format`) and are re-exported here.
"""

from npuc.backend.cpu.build import BuildResult, build_library, compile_module
from npuc.core.artifact_format import LibrarySidecar, read_sidecar, sidecar_path
from npuc.core.target import CpuTarget, host_core_count, host_target

__all__ = [
    "BuildResult",
    "CpuTarget",
    "LibrarySidecar",
    "build_library",
    "compile_module",
    "host_core_count",
    "host_target",
    "read_sidecar",
    "sidecar_path",
]

"""The host-CPU backend: Relax -> TVM's LLVM codegen -> native shared library.

Public API: :func:`host_target` / :class:`CpuTarget` (what to compile for),
:func:`compile_module` (in-memory executable), :func:`build_library`
(``model.so`` + ``model.so.json``) and :func:`read_sidecar`.
"""

from npuc.backend.cpu.artifact import LibrarySidecar, read_sidecar, sidecar_path
from npuc.backend.cpu.build import BuildResult, build_library, compile_module
from npuc.backend.cpu.target import CpuTarget, host_core_count, host_target

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
